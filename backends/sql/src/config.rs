//! Configuration of the SQL backends, from code or the environment, with
//! names validated as identifiers and secrets redacted everywhere.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use crate::group::GroupCommit;

/// Why a configuration cannot be used. Reported when the store is opened,
/// never at first use.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// A table prefix or schema name is not a plain SQL identifier.
    #[error("invalid {setting} `{value}`: use 1 to 48 characters of a-z, 0-9 and _, not starting with a digit")]
    InvalidIdentifier {
        /// The setting (`table prefix`, `schema`).
        setting: &'static str,
        /// The value given.
        value: String,
    },
    /// The connection URL cannot be parsed.
    #[error("invalid {backend} URL `{url}`: {reason}")]
    InvalidUrl {
        /// The backend.
        backend: &'static str,
        /// The URL, password redacted.
        url: String,
        /// What is wrong.
        reason: String,
    },
    /// A pool size or timeout of zero.
    #[error("invalid {setting}: {reason}")]
    InvalidValue {
        /// The setting.
        setting: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// A required environment variable is not set.
    #[error("environment variable `{0}` is not set")]
    MissingVariable(&'static str),
}

/// Checks that `value` is a plain identifier: `[a-z_][a-z0-9_]{0,47}`.
/// Table, schema and channel names are built from such values only; every
/// other value is a bound parameter.
///
/// # Errors
///
/// [`ConfigError::InvalidIdentifier`] otherwise.
pub fn validate_identifier(setting: &'static str, value: &str) -> Result<(), ConfigError> {
    let ok = !value.is_empty()
        && value.len() <= 48
        && value
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        && !value.as_bytes()[0].is_ascii_digit();
    // An empty table prefix is allowed (plain table names).
    if ok || (setting == "table prefix" && value.is_empty()) {
        Ok(())
    } else {
        Err(ConfigError::InvalidIdentifier {
            setting,
            value: value.to_owned(),
        })
    }
}

/// A connection URL whose password never appears in `Debug`, `Display`,
/// errors or logs.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretUrl(String);

impl SecretUrl {
    /// Wraps a URL.
    pub fn new(url: impl Into<String>) -> Self {
        Self(url.into())
    }

    /// The full URL, for connecting only.
    pub(crate) fn expose(&self) -> &str {
        &self.0
    }

    /// The URL with any password replaced by `***`.
    #[must_use]
    pub fn redacted(&self) -> String {
        redact(&self.0)
    }
}

impl fmt::Debug for SecretUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretUrl({})", self.redacted())
    }
}

impl fmt::Display for SecretUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}

/// Replaces the password of `scheme://user:password@host` and of a
/// `password=` query parameter with `***`.
pub(crate) fn redact(url: &str) -> String {
    let mut out = url.to_owned();
    if let Some(scheme_end) = out.find("://") {
        let rest_start = scheme_end + 3;
        let authority_end = out[rest_start..].find(['/', '?']).map_or(out.len(), |i| rest_start + i);
        if let Some(at) = out[rest_start..authority_end].rfind('@') {
            let userinfo = &out[rest_start..rest_start + at];
            if let Some(colon) = userinfo.find(':') {
                let start = rest_start + colon + 1;
                out.replace_range(start..rest_start + at, "***");
            }
        }
    }
    for key in ["password=", "pass="] {
        let mut from = 0;
        while let Some(i) = out[from..].find(key) {
            let start = from + i + key.len();
            let end = out[start..].find('&').map_or(out.len(), |j| start + j);
            out.replace_range(start..end, "***");
            from = start + 3;
        }
    }
    out
}

fn env(name: &'static str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

fn env_u32(name: &'static str, setting: &'static str) -> Result<Option<u32>, ConfigError> {
    env(name)
        .map(|v| {
            v.parse::<u32>().map_err(|e| ConfigError::InvalidValue {
                setting,
                reason: format!("`{v}`: {e}"),
            })
        })
        .transpose()
}

fn env_millis(name: &'static str, setting: &'static str) -> Result<Option<Duration>, ConfigError> {
    env(name)
        .map(|v| {
            v.parse::<u64>()
                .map(Duration::from_millis)
                .map_err(|e| ConfigError::InvalidValue {
                    setting,
                    reason: format!("`{v}`: {e}"),
                })
        })
        .transpose()
}

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
        let path = env("INTERLOCK_SQLITE_PATH").ok_or(ConfigError::MissingVariable("INTERLOCK_SQLITE_PATH"))?;
        let mut config = if path == ":memory:" {
            Self::memory()
        } else {
            Self::file(path)
        };
        if let Some(wal) = env("INTERLOCK_SQLITE_WAL") {
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
        if let Some(sync) = env("INTERLOCK_SQLITE_SYNCHRONOUS") {
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
        if let Some(t) = env_millis("INTERLOCK_SQLITE_BUSY_TIMEOUT_MS", "busy timeout")? {
            config.busy_timeout = t;
        }
        if let Some(n) = env_u32("INTERLOCK_SQLITE_MAX_CONNECTIONS", "max connections")? {
            config.max_connections = n;
        }
        if let Some(p) = env("INTERLOCK_TABLE_PREFIX") {
            config.table_prefix = p;
        }
        if let Some(n) = env_u32("INTERLOCK_GROUP_COMMIT_MAX_BATCH", "group commit batch")? {
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

/// Settings of [`PostgresStore`](crate::PostgresStore).
///
/// Environment variables read by [`PostgresConfig::from_env`]:
/// `INTERLOCK_POSTGRES_URL` (required, e.g. `postgres://user:pass@host/db`),
/// `INTERLOCK_POSTGRES_SCHEMA` (default `public`),
/// `INTERLOCK_TABLE_PREFIX` (default `interlock_`),
/// `INTERLOCK_POSTGRES_MAX_CONNECTIONS` (default 10),
/// `INTERLOCK_POSTGRES_MIN_CONNECTIONS` (default 0),
/// `INTERLOCK_POSTGRES_CONNECT_TIMEOUT_MS` (default 5000),
/// `INTERLOCK_POSTGRES_STATEMENT_TIMEOUT_MS` (default 30000; 0 for none).
#[derive(Clone, Debug, PartialEq, Eq)]
#[must_use]
pub struct PostgresConfig {
    /// The connection URL (its password is redacted when shown).
    pub url: SecretUrl,
    /// The schema of the tables (created if missing; default `public`).
    pub schema: String,
    /// Prefix of every table name (default `interlock_`).
    pub table_prefix: String,
    /// Largest pool size (default 10).
    pub max_connections: u32,
    /// Connections kept open (default 0).
    pub min_connections: u32,
    /// How long to wait for a connection (default 5 s).
    pub connect_timeout: Duration,
    /// Per-statement limit set on every connection (default 30 s).
    pub statement_timeout: Option<Duration>,
    /// Group commit of concurrent appends (default on, 64 per transaction).
    pub group_commit: GroupCommit,
    /// `LISTEN/NOTIFY` for live subscriptions (default on). Off, every
    /// commit is a little cheaper and subscribers poll.
    pub notify: bool,
    /// Record every append in the transactional outbox table too (default
    /// off), for `ApplicationBuilder::publish_outbox_to`.
    pub outbox: bool,
}

impl PostgresConfig {
    /// Settings for the database at `url`.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: SecretUrl::new(url),
            schema: "public".into(),
            table_prefix: "interlock_".into(),
            max_connections: 10,
            min_connections: 0,
            connect_timeout: Duration::from_secs(5),
            statement_timeout: Some(Duration::from_secs(30)),
            group_commit: GroupCommit::default(),
            notify: true,
            outbox: false,
        }
    }

    /// Records every append in the transactional outbox table too.
    pub fn outbox(mut self, on: bool) -> Self {
        self.outbox = on;
        self
    }

    /// Turns `LISTEN/NOTIFY` on (the default) or off (subscribers poll).
    pub fn notify(mut self, on: bool) -> Self {
        self.notify = on;
        self
    }

    /// Reads the settings from the environment (see the type's docs).
    ///
    /// # Errors
    ///
    /// When `INTERLOCK_POSTGRES_URL` is unset or a value does not parse.
    pub fn from_env() -> Result<Self, ConfigError> {
        let url = env("INTERLOCK_POSTGRES_URL").ok_or(ConfigError::MissingVariable("INTERLOCK_POSTGRES_URL"))?;
        let mut config = Self::new(url);
        if let Some(s) = env("INTERLOCK_POSTGRES_SCHEMA") {
            config.schema = s;
        }
        if let Some(p) = env("INTERLOCK_TABLE_PREFIX") {
            config.table_prefix = p;
        }
        if let Some(n) = env_u32("INTERLOCK_POSTGRES_MAX_CONNECTIONS", "max connections")? {
            config.max_connections = n;
        }
        if let Some(n) = env_u32("INTERLOCK_POSTGRES_MIN_CONNECTIONS", "min connections")? {
            config.min_connections = n;
        }
        if let Some(t) = env_millis("INTERLOCK_POSTGRES_CONNECT_TIMEOUT_MS", "connect timeout")? {
            config.connect_timeout = t;
        }
        if let Some(t) = env_millis("INTERLOCK_POSTGRES_STATEMENT_TIMEOUT_MS", "statement timeout")? {
            config.statement_timeout = (!t.is_zero()).then_some(t);
        }
        if let Some(n) = env_u32("INTERLOCK_GROUP_COMMIT_MAX_BATCH", "group commit batch")? {
            config.group_commit.max_batch = n as usize;
        }
        config.validate()?;
        Ok(config)
    }

    /// Sets the schema.
    pub fn schema(mut self, schema: impl Into<String>) -> Self {
        self.schema = schema.into();
        self
    }

    /// Sets the table prefix.
    pub fn table_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.table_prefix = prefix.into();
        self
    }

    /// Sets the largest pool size.
    pub fn max_connections(mut self, n: u32) -> Self {
        self.max_connections = n;
        self
    }

    /// Sets the connect timeout.
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Sets the statement timeout (`None` for none).
    pub fn statement_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.statement_timeout = timeout;
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
    /// An invalid schema or prefix, a zero pool size, or a URL that is not
    /// `postgres://` / `postgresql://`.
    pub fn validate(&self) -> Result<(), ConfigError> {
        validate_identifier("schema", &self.schema)?;
        validate_identifier("table prefix", &self.table_prefix)?;
        if self.max_connections == 0 {
            return Err(ConfigError::InvalidValue {
                setting: "max connections",
                reason: "must be at least 1".into(),
            });
        }
        if self.min_connections > self.max_connections {
            return Err(ConfigError::InvalidValue {
                setting: "min connections",
                reason: "cannot exceed max connections".into(),
            });
        }
        if self.group_commit.max_batch == 0 {
            return Err(ConfigError::InvalidValue {
                setting: "group commit batch",
                reason: "must be at least 1".into(),
            });
        }
        if self.connect_timeout.is_zero() {
            return Err(ConfigError::InvalidValue {
                setting: "connect timeout",
                reason: "must be longer than zero".into(),
            });
        }
        let url = self.url.expose();
        if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
            return Err(ConfigError::InvalidUrl {
                backend: "postgres",
                url: self.url.redacted(),
                reason: "expected postgres://user:password@host:port/database".into(),
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers_are_plain() {
        for ok in ["interlock_", "a", "_x9", "t_01abc"] {
            assert!(validate_identifier("schema", ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "9a",
            "A",
            "x;drop table y",
            "x\"",
            "a b",
            "x-y",
            "é",
            &"a".repeat(49),
        ] {
            assert!(validate_identifier("schema", bad).is_err(), "{bad}");
        }
        assert!(validate_identifier("table prefix", "").is_ok());
    }

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(
            redact("postgres://bob:s3cret@db:5432/x"),
            "postgres://bob:***@db:5432/x"
        );
        assert_eq!(redact("postgres://bob@db/x"), "postgres://bob@db/x");
        assert_eq!(
            redact("postgres://db/x?user=a&password=p4ss&ssl=1"),
            "postgres://db/x?user=a&password=***&ssl=1"
        );
        let config = PostgresConfig::new("postgres://bob:s3cret@db/x");
        for shown in [format!("{config:?}"), config.url.to_string()] {
            assert!(!shown.contains("s3cret"), "{shown}");
        }
    }

    #[test]
    fn invalid_settings_are_reported() {
        let config = PostgresConfig::new("mysql://x").schema("ok");
        assert!(matches!(config.validate(), Err(ConfigError::InvalidUrl { .. })));
        let config = PostgresConfig::new("postgres://x/y").max_connections(0);
        assert!(matches!(config.validate(), Err(ConfigError::InvalidValue { .. })));
        let config = SqliteConfig::memory().table_prefix("x; DROP TABLE events; --");
        assert!(matches!(config.validate(), Err(ConfigError::InvalidIdentifier { .. })));
    }
}
