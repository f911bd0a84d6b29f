//! Users whose usernames are unique across every user, enforced by the
//! event store itself: no second database, no reservation aggregate.
//!
//! The handlers of `Register` and `ChangeUsername` are declared
//! `consistency = category` and read the view `Usernames`, folded from
//! every event of the `signup.user` category. The runtime catches the view
//! up before each of these commands and appends the handler's events only
//! if no user event was written since; when one was (another instance
//! registered a name first), the command runs again on the newer view,
//! and its handler refuses the taken name.

use std::collections::HashMap;

use interlock::prelude::*;

/// Why a user command was refused.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum SignupError {
    /// Another user holds the name.
    #[error("username `{0}` is taken")]
    Taken(String),
    /// The user is registered already.
    #[error("user is registered already")]
    AlreadyRegistered,
    /// The user is not registered.
    #[error("user is not registered")]
    NotRegistered,
    /// The name is empty or too long.
    #[error("a username has 1 to 32 characters")]
    Invalid,
}

/// A user registered with a name.
#[derive(Event, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[event(name = "signup.user_registered")]
pub struct UserRegistered {
    /// The name.
    pub username: String,
}

/// A user changed their name.
#[derive(Event, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[event(name = "signup.username_changed")]
pub struct UsernameChanged {
    /// The name given up.
    pub from: String,
    /// The new name.
    pub to: String,
}

/// Register a user under a name nobody holds.
#[derive(Command, Serialize, Deserialize, Clone, Debug)]
pub struct Register {
    /// The user.
    #[aggregate_id]
    pub user: Ulid,
    /// The name wanted.
    pub username: String,
}

/// Change a user's name to one nobody holds.
#[derive(Command, Serialize, Deserialize, Clone, Debug)]
pub struct ChangeUsername {
    /// The user.
    #[aggregate_id]
    pub user: Ulid,
    /// The name wanted.
    pub username: String,
}

/// Who holds which name: the view the handlers decide on, and a
/// projection answering `OwnerOf`.
#[derive(Default, Debug)]
pub struct Usernames {
    owners: HashMap<String, String>,
}

/// The user holding a name, if any.
#[derive(Clone, Debug)]
pub struct OwnerOf(pub String);

#[projection(model = memory)]
impl Usernames {
    #[handles_event]
    fn registered(&mut self, e: &UserRegistered, meta: &EventMeta) {
        self.owners
            .insert(e.username.clone(), meta.stream.aggregate_id().to_owned());
    }

    #[handles_event]
    fn changed(&mut self, e: &UsernameChanged, meta: &EventMeta) {
        self.owners.remove(&e.from);
        self.owners.insert(e.to.clone(), meta.stream.aggregate_id().to_owned());
    }

    #[handles_query]
    fn owner(&self, q: OwnerOf) -> Option<String> {
        self.owners.get(&q.0).cloned()
    }
}

impl Usernames {
    /// Whether someone holds `name`.
    #[must_use]
    pub fn is_taken(&self, name: &str) -> bool {
        self.owners.contains_key(name)
    }

    /// How many names are held.
    #[must_use]
    pub fn len(&self) -> usize {
        self.owners.len()
    }

    /// Whether no name is held.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.owners.is_empty()
    }
}

/// A user.
#[derive(Default, Debug)]
pub struct User {
    username: Option<String>,
}

fn valid(name: &str) -> Result<(), SignupError> {
    if name.is_empty() || name.chars().count() > 32 {
        Err(SignupError::Invalid)
    } else {
        Ok(())
    }
}

#[aggregate(name = "signup.user")]
impl User {
    #[handles_command(consistency = category)]
    fn register(&self, cmd: Register, #[view] names: &Usernames) -> Result<UserRegistered, SignupError> {
        if self.username.is_some() {
            return Err(SignupError::AlreadyRegistered);
        }
        valid(&cmd.username)?;
        if names.is_taken(&cmd.username) {
            return Err(SignupError::Taken(cmd.username));
        }
        Ok(UserRegistered { username: cmd.username })
    }

    #[handles_command(consistency = category)]
    fn change(&self, cmd: ChangeUsername, #[view] names: &Usernames) -> Result<Option<UsernameChanged>, SignupError> {
        let Some(current) = &self.username else {
            return Err(SignupError::NotRegistered);
        };
        valid(&cmd.username)?;
        if *current == cmd.username {
            return Ok(None);
        }
        if names.is_taken(&cmd.username) {
            return Err(SignupError::Taken(cmd.username));
        }
        Ok(Some(UsernameChanged {
            from: current.clone(),
            to: cmd.username,
        }))
    }

    #[applies_event]
    fn registered(&mut self, e: &UserRegistered) {
        self.username = Some(e.username.clone());
    }

    #[applies_event]
    fn changed(&mut self, e: &UsernameChanged) {
        self.username = Some(e.to.clone());
    }
}

impl User {
    /// The user's name, once registered.
    #[must_use]
    pub fn username(&self) -> Option<&str> {
        self.username.as_deref()
    }
}
