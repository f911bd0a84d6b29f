//! Settings of the PostgreSQL backend.

use std::time::Duration;

use interlock::store::GroupCommit;

use crate::config::{ConfigError, SecretUrl, Vars, process_env, validate_identifier};

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
    /// How long the server lets a session sit idle inside a transaction
    /// before it ends it (default 10 s). A process paused mid-transaction
    /// (SIGSTOP, a long GC pause, a stalled network) would otherwise hold
    /// its locks for as long as it is paused, and keep another instance
    /// from taking its subscribers over; ended, its transaction rolls back
    /// and its late work is refused by the lease's fence.
    pub idle_in_transaction_timeout: Option<Duration>,
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
            idle_in_transaction_timeout: Some(Duration::from_secs(10)),
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
        let url = vars
            .get("INTERLOCK_POSTGRES_URL")
            .ok_or(ConfigError::MissingVariable("INTERLOCK_POSTGRES_URL"))?;
        let mut config = Self::new(url);
        if let Some(s) = vars.get("INTERLOCK_POSTGRES_SCHEMA") {
            config.schema = s;
        }
        if let Some(p) = vars.get("INTERLOCK_TABLE_PREFIX") {
            config.table_prefix = p;
        }
        if let Some(n) = vars.u32("INTERLOCK_POSTGRES_MAX_CONNECTIONS", "max connections")? {
            config.max_connections = n;
        }
        if let Some(n) = vars.u32("INTERLOCK_POSTGRES_MIN_CONNECTIONS", "min connections")? {
            config.min_connections = n;
        }
        if let Some(t) = vars.millis("INTERLOCK_POSTGRES_CONNECT_TIMEOUT_MS", "connect timeout")? {
            config.connect_timeout = t;
        }
        if let Some(t) = vars.millis("INTERLOCK_POSTGRES_STATEMENT_TIMEOUT_MS", "statement timeout")? {
            config.statement_timeout = (!t.is_zero()).then_some(t);
        }
        if let Some(t) = vars.millis(
            "INTERLOCK_POSTGRES_IDLE_IN_TRANSACTION_TIMEOUT_MS",
            "idle in transaction timeout",
        )? {
            config.idle_in_transaction_timeout = (!t.is_zero()).then_some(t);
        }
        if let Some(n) = vars.u32("INTERLOCK_GROUP_COMMIT_MAX_BATCH", "group commit batch")? {
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

    /// Sets the idle-in-transaction timeout (`None` for none).
    pub fn idle_in_transaction_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.idle_in_transaction_timeout = timeout;
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
        // PostgreSQL truncates identifiers past 63 bytes (so two names could
        // become one) and refuses such a NOTIFY channel: check every name
        // the store derives, now rather than at the first append.
        let derived = crate::schema::DERIVED_NAMES
            .iter()
            .map(|suffix| format!("{}{suffix}", self.table_prefix))
            .chain([
                self.schema.clone(),
                format!("{}_{}events", self.schema, self.table_prefix),
            ]);
        for name in derived {
            if name.len() > POSTGRES_MAX_IDENTIFIER {
                return Err(ConfigError::InvalidValue {
                    setting: "schema / table prefix",
                    reason: format!(
                        "`{name}` (derived from them) is {} bytes; PostgreSQL identifiers have at most {POSTGRES_MAX_IDENTIFIER}",
                        name.len()
                    ),
                });
            }
        }
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

/// PostgreSQL's longest identifier, in bytes (`NAMEDATALEN - 1`).
const POSTGRES_MAX_IDENTIFIER: usize = 63;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_redacted() {
        let config = PostgresConfig::new("postgres://bob:s3cret@db/x");
        for shown in [format!("{config:?}"), config.url.to_string()] {
            assert!(!shown.contains("s3cret"), "{shown}");
        }
    }

    #[test]
    fn derived_names_past_the_identifier_limit_are_refused_at_validation() {
        let prefix = "p".repeat(45);
        let config = PostgresConfig::new("postgres://x/y").table_prefix(prefix.as_str());
        match config.validate() {
            Err(ConfigError::InvalidValue { reason, .. }) => {
                assert!(reason.contains("idempotency_by_until"), "{reason}")
            }
            other => panic!("accepted: {other:?}"),
        }
        // The NOTIFY channel joins schema and prefix.
        let config = PostgresConfig::new("postgres://x/y")
            .schema("s".repeat(40))
            .table_prefix("t".repeat(20));
        assert!(matches!(config.validate(), Err(ConfigError::InvalidValue { .. })));
        assert!(
            PostgresConfig::new("postgres://x/y")
                .table_prefix("app_")
                .validate()
                .is_ok()
        );
    }

    #[test]
    fn invalid_settings_are_reported() {
        let config = PostgresConfig::new("mysql://x").schema("ok");
        assert!(matches!(config.validate(), Err(ConfigError::InvalidUrl { .. })));
        let config = PostgresConfig::new("postgres://x/y").max_connections(0);
        assert!(matches!(config.validate(), Err(ConfigError::InvalidValue { .. })));
    }

    fn from(vars: &[(&str, &str)]) -> Result<PostgresConfig, ConfigError> {
        let vars: std::collections::HashMap<String, String> =
            vars.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
        PostgresConfig::from_env_with(|name| vars.get(name).cloned())
    }

    #[test]
    fn from_env_reads_every_variable() {
        let config = from(&[
            ("INTERLOCK_POSTGRES_URL", "postgres://app@db:5433/orders"),
            ("INTERLOCK_POSTGRES_SCHEMA", "orders"),
            ("INTERLOCK_TABLE_PREFIX", "es_"),
            ("INTERLOCK_POSTGRES_MAX_CONNECTIONS", "20"),
            ("INTERLOCK_POSTGRES_MIN_CONNECTIONS", "2"),
            ("INTERLOCK_POSTGRES_CONNECT_TIMEOUT_MS", "750"),
            ("INTERLOCK_POSTGRES_STATEMENT_TIMEOUT_MS", "0"),
            ("INTERLOCK_GROUP_COMMIT_MAX_BATCH", "16"),
        ])
        .expect("valid");
        assert_eq!(config.url, SecretUrl::new("postgres://app@db:5433/orders"));
        assert_eq!(
            (config.schema.as_str(), config.table_prefix.as_str()),
            ("orders", "es_")
        );
        assert_eq!((config.max_connections, config.min_connections), (20, 2));
        assert_eq!(config.connect_timeout, Duration::from_millis(750));
        assert_eq!(config.statement_timeout, None);
        assert_eq!(config.group_commit.max_batch, 16);

        let config = from(&[
            ("INTERLOCK_POSTGRES_URL", "postgres://x/y"),
            ("INTERLOCK_POSTGRES_STATEMENT_TIMEOUT_MS", "2500"),
        ])
        .expect("valid");
        assert_eq!(config.statement_timeout, Some(Duration::from_millis(2500)));
        assert_eq!(config.schema, PostgresConfig::new("postgres://x/y").schema);
    }

    #[test]
    fn from_env_refuses_missing_and_malformed_values() {
        assert_eq!(from(&[]), Err(ConfigError::MissingVariable("INTERLOCK_POSTGRES_URL")));
        for (name, value) in [
            ("INTERLOCK_POSTGRES_MAX_CONNECTIONS", "0"),
            ("INTERLOCK_POSTGRES_MAX_CONNECTIONS", "ten"),
            ("INTERLOCK_POSTGRES_MIN_CONNECTIONS", "-3"),
            ("INTERLOCK_POSTGRES_CONNECT_TIMEOUT_MS", "soon"),
            ("INTERLOCK_POSTGRES_MIN_CONNECTIONS", "11"),
            ("INTERLOCK_GROUP_COMMIT_MAX_BATCH", "0"),
        ] {
            let result = from(&[("INTERLOCK_POSTGRES_URL", "postgres://x/y"), (name, value)]);
            assert!(
                matches!(result, Err(ConfigError::InvalidValue { .. })),
                "{name}={value}: {result:?}"
            );
        }
        let result = from(&[
            ("INTERLOCK_POSTGRES_URL", "postgres://x/y"),
            ("INTERLOCK_POSTGRES_SCHEMA", "a;b"),
        ]);
        assert!(
            matches!(result, Err(ConfigError::InvalidIdentifier { .. })),
            "{result:?}"
        );
        let result = from(&[("INTERLOCK_POSTGRES_URL", "mysql://x/y")]);
        assert!(matches!(result, Err(ConfigError::InvalidUrl { .. })), "{result:?}");
    }
}
