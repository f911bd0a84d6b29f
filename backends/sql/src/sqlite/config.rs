//! Settings of the SQLite backend.

use std::path::PathBuf;
use std::time::Duration;

use interlock::store::GroupCommit;

use crate::config::{ConfigError, Vars, process_env, validate_identifier};

/// Where a SQLite database lives.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SqliteLocation {
    /// A file, created if missing.
    File(PathBuf),
    /// A private in-memory database (for tests), shared by the store's
    /// connections and gone with the store.
    Memory,
}

/// Settings of [`SqliteStore`](crate::SqliteStore).
///
/// Environment variables read by [`SqliteConfig::from_env`]:
/// `INTERLOCK_SQLITE_PATH` (required; `:memory:` for an in-memory database),
/// `INTERLOCK_SQLITE_WAL` (`true`/`false`, default `true`),
/// `INTERLOCK_SQLITE_BUSY_TIMEOUT_MS` (default 5000),
/// `INTERLOCK_SQLITE_MAX_CONNECTIONS` (default 4),
/// `INTERLOCK_TABLE_PREFIX` (default `interlock_`).
#[derive(Clone, Debug, PartialEq, Eq)]
#[must_use]
pub struct SqliteConfig {
    /// The database.
    pub location: SqliteLocation,
    /// Write-ahead logging (default on): readers do not block the writer.
    pub wal: bool,
    /// How long a connection waits for a lock (default 5 s).
    pub busy_timeout: Duration,
    /// Connections in the pool (default 4).
    pub max_connections: u32,
    /// Prefix of every table name (default `interlock_`).
    pub table_prefix: String,
    /// Group commit of concurrent appends (default on, 64 per transaction).
    pub group_commit: GroupCommit,
    /// `true` (default): every commit is synced to disk (`synchronous=FULL`),
    /// so it survives a power loss. `false`: `synchronous=NORMAL`, which in
    /// WAL mode survives a crash of the process but may lose the last
    /// commits on a power loss, for much higher write rates.
    pub durable_commits: bool,
    /// Record every append in the transactional outbox table too (default
    /// off), for `ApplicationBuilder::publish_outbox_to`.
    pub outbox: bool,
}

impl SqliteConfig {
    /// A database in the file at `path`.
    pub fn file(path: impl Into<PathBuf>) -> Self {
        Self {
            location: SqliteLocation::File(path.into()),
            wal: true,
            busy_timeout: Duration::from_secs(5),
            max_connections: 4,
            table_prefix: "interlock_".into(),
            group_commit: GroupCommit::default(),
            durable_commits: true,
            outbox: false,
        }
    }

    /// Records every append in the transactional outbox table too.
    pub fn outbox(mut self, on: bool) -> Self {
        self.outbox = on;
        self
    }

    /// A private in-memory database.
    pub fn memory() -> Self {
        Self {
            location: SqliteLocation::Memory,
            ..Self::file("")
        }
    }

    /// Reads the settings from the environment (see the type's docs).
    ///
    /// # Errors
    ///
    /// When `INTERLOCK_SQLITE_PATH` is unset or a value does not parse.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_env_with(process_env)
    }

    /// [`Self::from_env`] with the variables looked up by `lookup` instead
    /// of in the process environment (a configuration file, a secret
    /// manager, a test).
    ///
    /// # Errors
    ///
    /// As [`Self::from_env`].
    pub fn from_env_with(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let vars = Vars(&lookup);
        let path = vars
            .get("INTERLOCK_SQLITE_PATH")
            .ok_or(ConfigError::MissingVariable("INTERLOCK_SQLITE_PATH"))?;
        let mut config = if path == ":memory:" {
            Self::memory()
        } else {
            Self::file(path)
        };
        if let Some(wal) = vars.get("INTERLOCK_SQLITE_WAL") {
            config.wal = match wal.as_str() {
                "true" | "1" | "on" => true,
                "false" | "0" | "off" => false,
                other => {
                    return Err(ConfigError::InvalidValue {
                        setting: "INTERLOCK_SQLITE_WAL",
                        reason: format!("`{other}` is not true or false"),
                    });
                }
            };
        }
        if let Some(sync) = vars.get("INTERLOCK_SQLITE_SYNCHRONOUS") {
            config.durable_commits = match sync.as_str() {
                "full" => true,
                "normal" => false,
                other => {
                    return Err(ConfigError::InvalidValue {
                        setting: "INTERLOCK_SQLITE_SYNCHRONOUS",
                        reason: format!("`{other}` is not full or normal"),
                    });
                }
            };
        }
        if let Some(t) = vars.millis("INTERLOCK_SQLITE_BUSY_TIMEOUT_MS", "busy timeout")? {
            config.busy_timeout = t;
        }
        if let Some(n) = vars.u32("INTERLOCK_SQLITE_MAX_CONNECTIONS", "max connections")? {
            config.max_connections = n;
        }
        if let Some(p) = vars.get("INTERLOCK_TABLE_PREFIX") {
            config.table_prefix = p;
        }
        if let Some(n) = vars.u32("INTERLOCK_GROUP_COMMIT_MAX_BATCH", "group commit batch")? {
            config.group_commit.max_batch = n as usize;
        }
        config.validate()?;
        Ok(config)
    }

    /// Sets the table prefix.
    pub fn table_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.table_prefix = prefix.into();
        self
    }

    /// Chooses between commits synced to disk (`true`, the default) and
    /// faster commits that survive a process crash but not a power loss.
    pub fn durable_commits(mut self, durable: bool) -> Self {
        self.durable_commits = durable;
        self
    }

    /// Turns write-ahead logging on or off.
    pub fn wal(mut self, on: bool) -> Self {
        self.wal = on;
        self
    }

    /// Sets the busy timeout.
    pub fn busy_timeout(mut self, timeout: Duration) -> Self {
        self.busy_timeout = timeout;
        self
    }

    /// Sets the pool size.
    pub fn max_connections(mut self, n: u32) -> Self {
        self.max_connections = n;
        self
    }

    /// Sets group commit: at most `max_batch` appends per transaction (1
    /// turns it off), waiting up to `max_wait` for more.
    pub fn group_commit(mut self, max_batch: usize, max_wait: Duration) -> Self {
        self.group_commit = GroupCommit { max_batch, max_wait };
        self
    }

    /// Checks the settings.
    ///
    /// # Errors
    ///
    /// An invalid table prefix or a zero pool size.
    pub fn validate(&self) -> Result<(), ConfigError> {
        validate_identifier("table prefix", &self.table_prefix)?;
        if self.max_connections == 0 {
            return Err(ConfigError::InvalidValue {
                setting: "max connections",
                reason: "must be at least 1".into(),
            });
        }
        if self.group_commit.max_batch == 0 || self.group_commit.max_batch > 500 {
            return Err(ConfigError::InvalidValue {
                setting: "group commit batch",
                reason: "must be from 1 to 500 on SQLite".into(),
            });
        }
        if let SqliteLocation::File(path) = &self.location
            && path.as_os_str().is_empty()
        {
            return Err(ConfigError::InvalidValue {
                setting: "path",
                reason: "the SQLite path is empty".into(),
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invalid_settings_are_reported() {
        let config = SqliteConfig::memory().table_prefix("x; DROP TABLE events; --");
        assert!(matches!(config.validate(), Err(ConfigError::InvalidIdentifier { .. })));
        let config = SqliteConfig::memory().group_commit(501, Duration::ZERO);
        assert!(matches!(config.validate(), Err(ConfigError::InvalidValue { .. })));
        assert!(SqliteConfig::memory().validate().is_ok());
    }

    fn from(vars: &[(&str, &str)]) -> Result<SqliteConfig, ConfigError> {
        let vars: std::collections::HashMap<String, String> =
            vars.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
        SqliteConfig::from_env_with(|name| vars.get(name).cloned())
    }

    #[test]
    fn from_env_reads_every_variable() {
        let config = from(&[
            ("INTERLOCK_SQLITE_PATH", "/tmp/app.db"),
            ("INTERLOCK_SQLITE_WAL", "off"),
            ("INTERLOCK_SQLITE_SYNCHRONOUS", "normal"),
            ("INTERLOCK_SQLITE_BUSY_TIMEOUT_MS", "1234"),
            ("INTERLOCK_SQLITE_MAX_CONNECTIONS", "7"),
            ("INTERLOCK_TABLE_PREFIX", "app_"),
            ("INTERLOCK_GROUP_COMMIT_MAX_BATCH", "32"),
        ])
        .expect("valid");
        assert_eq!(config.location, SqliteLocation::File("/tmp/app.db".into()));
        assert!(!config.wal && !config.durable_commits);
        assert_eq!(config.busy_timeout, Duration::from_millis(1234));
        assert_eq!(config.max_connections, 7);
        assert_eq!(config.table_prefix, "app_");
        assert_eq!(config.group_commit.max_batch, 32);

        // Unset (or blank) variables keep the defaults.
        let config = from(&[("INTERLOCK_SQLITE_PATH", ":memory:"), ("INTERLOCK_SQLITE_WAL", " ")]).expect("valid");
        assert_eq!(config, SqliteConfig::memory());
    }

    #[test]
    fn from_env_refuses_missing_and_malformed_values() {
        assert_eq!(from(&[]), Err(ConfigError::MissingVariable("INTERLOCK_SQLITE_PATH")));
        for (name, value) in [
            ("INTERLOCK_SQLITE_WAL", "maybe"),
            ("INTERLOCK_SQLITE_SYNCHRONOUS", "extra"),
            ("INTERLOCK_SQLITE_BUSY_TIMEOUT_MS", "-1"),
            ("INTERLOCK_SQLITE_MAX_CONNECTIONS", "0"),
            ("INTERLOCK_SQLITE_MAX_CONNECTIONS", "many"),
            ("INTERLOCK_GROUP_COMMIT_MAX_BATCH", "100000"),
        ] {
            let result = from(&[("INTERLOCK_SQLITE_PATH", ":memory:"), (name, value)]);
            assert!(
                matches!(result, Err(ConfigError::InvalidValue { .. })),
                "{name}={value}: {result:?}"
            );
        }
        let result = from(&[("INTERLOCK_SQLITE_PATH", ":memory:"), ("INTERLOCK_TABLE_PREFIX", "x-y")]);
        assert!(
            matches!(result, Err(ConfigError::InvalidIdentifier { .. })),
            "{result:?}"
        );
    }
}
