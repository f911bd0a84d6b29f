//! Errors out of the stack back to `CommandError`.

use crate::pipeline::error::CommandError;

/// An error a layer's service may return: `CommandError<E>` itself, or a
/// boxed error (what tower's own layers return), which becomes
/// [`CommandError::Layer`] unless it is a boxed `CommandError<E>`.
pub trait IntoCommandError<E> {
    /// The error as a `CommandError`.
    fn into_command_error(self) -> CommandError<E>;
}

impl<E> IntoCommandError<E> for CommandError<E> {
    fn into_command_error(self) -> CommandError<E> {
        self
    }
}

impl<E: std::error::Error + Send + Sync + 'static> IntoCommandError<E> for Box<dyn std::error::Error + Send + Sync> {
    fn into_command_error(self) -> CommandError<E> {
        match self.downcast::<CommandError<E>>() {
            Ok(e) => *e,
            Err(other) => CommandError::Layer(other),
        }
    }
}
