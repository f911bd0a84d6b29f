//! How to reach the database, where the collections go, and the
//! concerns of reads and writes; credentials never leave in a message.

use std::fmt;
use std::time::Duration;

/// The settings of a [`MongoStore`](crate::MongoStore).
///
/// ```
/// # use interlock_mongodb::MongoConfig;
/// let config = MongoConfig::new("mongodb://app:secret@db-1:27017/?replicaSet=rs0")
///     .database("bank")
///     .prefix("es_");
/// assert!(!format!("{config:?}").contains("secret"));
/// ```
#[derive(Clone, PartialEq, Eq)]
#[must_use]
pub struct MongoConfig {
    pub(crate) uri: String,
    pub(crate) database: String,
    pub(crate) prefix: String,
    pub(crate) majority: bool,
    pub(crate) journal: bool,
    pub(crate) connect_timeout: Duration,
    pub(crate) operation_timeout: Duration,
    pub(crate) max_batch: usize,
    pub(crate) outbox: bool,
}

/// Why a configuration cannot be used.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MongoConfigError {
    /// A required environment variable is not set.
    #[error("the environment variable `{0}` is not set")]
    Missing(&'static str),
    /// A setting's value cannot work.
    #[error("`{setting}`: {reason}")]
    InvalidValue {
        /// The setting.
        setting: &'static str,
        /// Why.
        reason: String,
    },
}

impl MongoConfig {
    /// The environment variable of the URI.
    pub const URI_VAR: &'static str = "INTERLOCK_MONGODB_URI";
    /// The environment variable of the database name.
    pub const DATABASE_VAR: &'static str = "INTERLOCK_MONGODB_DATABASE";
    /// The environment variable of the collection prefix.
    pub const PREFIX_VAR: &'static str = "INTERLOCK_MONGODB_PREFIX";

    /// A store on `uri` (a `mongodb://` or `mongodb+srv://` connection
    /// string), in the database the URI names (`mongodb://host/bank`), else
    /// `interlock`; no collection prefix, writes acknowledged by a majority
    /// and journaled, majority reads.
    pub fn new(uri: impl Into<String>) -> Self {
        let uri = uri.into();
        Self {
            database: database_of(&uri).unwrap_or("interlock").to_owned(),
            uri,
            prefix: String::new(),
            majority: true,
            journal: true,
            connect_timeout: Duration::from_secs(10),
            operation_timeout: Duration::from_secs(30),
            max_batch: 64,
            outbox: false,
        }
    }

    /// From `INTERLOCK_MONGODB_URI` (required), `INTERLOCK_MONGODB_DATABASE`
    /// and `INTERLOCK_MONGODB_PREFIX` (optional).
    ///
    /// # Errors
    ///
    /// [`MongoConfigError::Missing`] without a URI; an invalid value.
    pub fn from_env() -> Result<Self, MongoConfigError> {
        let uri = std::env::var(Self::URI_VAR).map_err(|_| MongoConfigError::Missing(Self::URI_VAR))?;
        let mut config = Self::new(uri);
        if let Ok(database) = std::env::var(Self::DATABASE_VAR) {
            config = config.database(database);
        }
        if let Ok(prefix) = std::env::var(Self::PREFIX_VAR) {
            config = config.prefix(prefix);
        }
        config.validate()?;
        Ok(config)
    }

    /// The database of the collections.
    pub fn database(mut self, name: impl Into<String>) -> Self {
        self.database = name.into();
        self
    }

    /// A prefix of every collection name (`es_` gives `es_events`, ...):
    /// up to 32 letters, digits and `_`.
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// The write concern: acknowledged by a majority of the replica set
    /// (else by the primary alone), and journaled (else in memory). Both
    /// by default: an acknowledged event survives a failover.
    pub fn write_concern(mut self, majority: bool, journal: bool) -> Self {
        self.majority = majority;
        self.journal = journal;
        self
    }

    /// How long to wait for a server (at start, and before each operation
    /// while none answers: unless the URI sets `connectTimeoutMS` or
    /// `serverSelectionTimeoutMS`), and how long appends retry conflicts.
    pub fn timeouts(mut self, connect: Duration, operation: Duration) -> Self {
        self.connect_timeout = connect;
        self.operation_timeout = operation;
        self
    }

    /// Appends committed together in one transaction at most (1 turns
    /// group commit off).
    pub fn max_batch(mut self, appends: usize) -> Self {
        self.max_batch = appends;
        self
    }

    /// The database of the collections.
    #[must_use]
    pub fn database_name(&self) -> &str {
        &self.database
    }

    /// Records every appended event in the `outbox` collection, in the
    /// append's transaction, for a relay to publish
    /// (`ApplicationBuilder::publish_outbox_to`): off by default.
    pub fn outbox(mut self, enabled: bool) -> Self {
        self.outbox = enabled;
        self
    }

    /// The URI with its password replaced by `***`, for messages.
    #[must_use]
    pub fn redacted_uri(&self) -> String {
        redact(&self.uri)
    }

    /// The first setting that cannot work, with why.
    ///
    /// # Errors
    ///
    /// [`MongoConfigError::InvalidValue`].
    pub fn validate(&self) -> Result<(), MongoConfigError> {
        let invalid = |setting, reason: &str| {
            Err(MongoConfigError::InvalidValue {
                setting,
                reason: reason.into(),
            })
        };
        if !(self.uri.starts_with("mongodb://") || self.uri.starts_with("mongodb+srv://")) {
            return invalid("uri", "must start with `mongodb://` or `mongodb+srv://`");
        }
        let database_ok = !self.database.is_empty()
            && self.database.len() <= 63
            && !self.database.chars().any(|c| {
                matches!(
                    c,
                    '/' | '\\' | '.' | ' ' | '"' | '$' | '*' | '<' | '>' | ':' | '|' | '?' | '\0'
                )
            });
        if !database_ok {
            return invalid(
                "database",
                "must be 1 to 63 characters, none of / \\ . space \" $ * < > : | ?",
            );
        }
        let prefix_ok = self.prefix.len() <= 32
            && self.prefix.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
            && !self.prefix.starts_with("system");
        if !prefix_ok {
            return invalid(
                "prefix",
                "must be up to 32 letters, digits and `_`, not starting with `system`",
            );
        }
        if self.connect_timeout.is_zero() || self.operation_timeout.is_zero() {
            return invalid("timeouts", "must be longer than zero");
        }
        if self.max_batch == 0 {
            return invalid("max_batch", "must be at least 1");
        }
        Ok(())
    }
}

/// The database a URI names in its path (`mongodb://host/db?...`).
fn database_of(uri: &str) -> Option<&str> {
    let (_, rest) = uri.split_once("://")?;
    let (_, path) = rest.split_once('/')?;
    let name = path.split('?').next()?;
    (!name.is_empty()).then_some(name)
}

/// `uri` with the password of its user info replaced by `***`.
pub(crate) fn redact(uri: &str) -> String {
    let Some((scheme, rest)) = uri.split_once("://") else {
        return "<not a URI>".into();
    };
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    match authority.rsplit_once('@') {
        Some((user_info, hosts)) => {
            let user = user_info.split_once(':').map_or(user_info, |(user, _)| user);
            let shown = if user_info.contains(':') {
                format!("{user}:***")
            } else {
                user.to_owned()
            };
            format!("{scheme}://{shown}@{hosts}{}", redact_query(tail))
        }
        None => format!("{scheme}://{authority}{}", redact_query(tail)),
    }
}

/// Hides secrets that can ride in the options of a connection string.
fn redact_query(tail: &str) -> String {
    let Some((path, query)) = tail.split_once('?') else {
        return tail.to_owned();
    };
    let options: Vec<String> = query
        .split('&')
        .map(|pair| match pair.split_once('=') {
            Some((key, _))
                if key.eq_ignore_ascii_case("password")
                    || key.to_ascii_lowercase().contains("secret")
                    || key.eq_ignore_ascii_case("authMechanismProperties") =>
            {
                format!("{key}=***")
            }
            _ => pair.to_owned(),
        })
        .collect();
    format!("{path}?{}", options.join("&"))
}

impl fmt::Debug for MongoConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MongoConfig")
            .field("uri", &self.redacted_uri())
            .field("database", &self.database)
            .field("prefix", &self.prefix)
            .field("majority", &self.majority)
            .field("journal", &self.journal)
            .field("connect_timeout", &self.connect_timeout)
            .field("operation_timeout", &self.operation_timeout)
            .field("max_batch", &self.max_batch)
            .field("outbox", &self.outbox)
            .finish()
    }
}

impl fmt::Display for MongoConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (database `{}`)", self.redacted_uri(), self.database)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_never_show() {
        for (uri, shown) in [
            (
                "mongodb://app:s3cr%40t@db-1:27017,db-2/bank?replicaSet=rs0",
                "mongodb://app:***@db-1:27017,db-2/bank?replicaSet=rs0",
            ),
            (
                "mongodb://app@db/?authSource=admin",
                "mongodb://app@db/?authSource=admin",
            ),
            ("mongodb://db:27017", "mongodb://db:27017"),
            (
                "mongodb+srv://u:p@cluster.example.net/?password=x&w=majority",
                "mongodb+srv://u:***@cluster.example.net/?password=***&w=majority",
            ),
        ] {
            assert_eq!(redact(uri), shown);
            let config = MongoConfig::new(uri);
            assert!(!format!("{config:?}{config}").contains("s3cr"));
        }
    }

    #[test]
    fn the_database_comes_from_the_uri() {
        assert_eq!(MongoConfig::new("mongodb://h:1/bank?w=1").database, "bank");
        assert_eq!(MongoConfig::new("mongodb://h:1/?w=1").database, "interlock");
        assert_eq!(MongoConfig::new("mongodb://h:1").database, "interlock");
    }

    #[test]
    fn bad_settings_are_refused() {
        let base = || MongoConfig::new("mongodb://localhost");
        assert!(base().validate().is_ok());
        for (config, setting) in [
            (MongoConfig::new("postgres://x"), "uri"),
            (base().database("a.b"), "database"),
            (base().database(""), "database"),
            (base().prefix("es-"), "prefix"),
            (base().prefix("system_"), "prefix"),
            (base().prefix("x".repeat(33)), "prefix"),
            (base().max_batch(0), "max_batch"),
            (base().timeouts(Duration::ZERO, Duration::from_secs(1)), "timeouts"),
        ] {
            match config.validate() {
                Err(MongoConfigError::InvalidValue { setting: s, .. }) => assert_eq!(s, setting),
                other => panic!("{config:?} accepted: {other:?}"),
            }
        }
    }
}
