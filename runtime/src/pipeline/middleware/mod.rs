//! Middleware on tower: dispatch is a `tower::Service` per command type,
//! with typed requests ([`CommandRequest<C>`]) and typed responses
//! (`Dispatched<C::Output>`, `CommandError<C::Error>`). Any `tower::Layer`
//! whose service forwards those applies, including tower's own
//! (`ConcurrencyLimitLayer`, `LoadShedLayer`, ...).
//!
//! The stack a command walks, outermost first: the user's layers (first
//! added is outermost), [`Idempotent`], [`CommandService`].

mod error;
mod idempotency;
mod request;
mod retry;
mod service;
mod timeout;
mod tracing;

pub use self::error::IntoCommandError;
pub use self::idempotency::Idempotent;
pub use self::request::{CommandContext, CommandRequest};
pub use self::retry::{Retry, RetryLayer};
pub use self::service::{CommandService, CoreService};
pub use self::timeout::{Timeout, TimeoutLayer};
pub use self::tracing::{Traced, TracingLayer};
