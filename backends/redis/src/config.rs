//! How to reach Redis, the prefix of every key, timeouts and lifetimes;
//! the password never leaves in a message.

use std::fmt;
use std::time::Duration;

/// The settings of a [`RedisStore`](crate::RedisStore).
///
/// ```
/// # use interlock_redis::RedisConfig;
/// let config = RedisConfig::new("redis://:secret@cache-1:6379/0").prefix("bank:");
/// assert!(!format!("{config:?}").contains("secret"));
/// assert_eq!(config.redacted_url(), "redis://:***@cache-1:6379/0");
/// ```
#[derive(Clone, PartialEq, Eq)]
#[must_use]
pub struct RedisConfig {
    pub(crate) url: String,
    pub(crate) prefix: String,
    pub(crate) connect_timeout: Duration,
    pub(crate) operation_timeout: Duration,
    pub(crate) snapshot_ttl: Option<Duration>,
    pub(crate) cache_ttl: Duration,
    pub(crate) claim_retention: Duration,
}

/// Why a configuration cannot be used.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RedisConfigError {
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

impl RedisConfig {
    /// The environment variable of the URL.
    pub const URL_VAR: &'static str = "INTERLOCK_REDIS_URL";
    /// The environment variable of the key prefix.
    pub const PREFIX_VAR: &'static str = "INTERLOCK_REDIS_PREFIX";
    /// The environment variable of the operation timeout, in milliseconds.
    pub const TIMEOUT_VAR: &'static str = "INTERLOCK_REDIS_TIMEOUT_MS";

    /// A store on `url` (`redis://[user][:password]@host:port[/db]`, or
    /// `rediss://` for TLS), keys under `interlock:`, 2 s to connect and
    /// 2 s per operation, snapshots kept until replaced, cached states
    /// for an hour, expired claims kept 7 days.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            prefix: "interlock:".into(),
            connect_timeout: Duration::from_secs(2),
            operation_timeout: Duration::from_secs(2),
            snapshot_ttl: None,
            cache_ttl: Duration::from_secs(3600),
            claim_retention: Duration::from_secs(7 * 24 * 3600),
        }
    }

    /// From `INTERLOCK_REDIS_URL` (required), `INTERLOCK_REDIS_PREFIX` and
    /// `INTERLOCK_REDIS_TIMEOUT_MS` (optional).
    ///
    /// # Errors
    ///
    /// [`RedisConfigError::Missing`] without a URL; an invalid value.
    pub fn from_env() -> Result<Self, RedisConfigError> {
        let url = std::env::var(Self::URL_VAR).map_err(|_| RedisConfigError::Missing(Self::URL_VAR))?;
        let mut config = Self::new(url);
        if let Ok(prefix) = std::env::var(Self::PREFIX_VAR) {
            config = config.prefix(prefix);
        }
        if let Ok(ms) = std::env::var(Self::TIMEOUT_VAR) {
            let ms: u64 = ms.parse().map_err(|_| RedisConfigError::InvalidValue {
                setting: Self::TIMEOUT_VAR,
                reason: format!("`{ms}` is not a number of milliseconds"),
            })?;
            config = config.timeouts(Duration::from_millis(ms), Duration::from_millis(ms));
        }
        config.validate()?;
        Ok(config)
    }

    /// The prefix of every key (`bank:` gives `bank:idem:...`): 1 to 64
    /// letters, digits and `_ - . :`, so that `SCAN` patterns and
    /// redis-cli see it as typed.
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// How long to wait for a connection, and for each operation's answer:
    /// past it an operation fails with `StoreError::Unavailable` (a
    /// stopped server does not hang a command).
    pub fn timeouts(mut self, connect: Duration, operation: Duration) -> Self {
        self.connect_timeout = connect;
        self.operation_timeout = operation;
        self
    }

    /// Snapshots expire this long after they are saved (a snapshot is a
    /// cache of the event store: an expired one costs a longer load).
    pub fn snapshot_ttl(mut self, ttl: Option<Duration>) -> Self {
        self.snapshot_ttl = ttl;
        self
    }

    /// How long a cached aggregate state is kept after it was last put
    /// (1 hour by default).
    pub fn cache_ttl(mut self, ttl: Duration) -> Self {
        self.cache_ttl = ttl;
        self
    }

    /// How long an idempotency claim is kept once taken: past its lease it
    /// tells whoever takes it over that its holder died
    /// (`Claim::Reclaimed`); past this retention it is gone and a new
    /// claim is a plain `Claimed`. Longer than any lease.
    pub fn claim_retention(mut self, retention: Duration) -> Self {
        self.claim_retention = retention;
        self
    }

    /// The key prefix.
    #[must_use]
    pub fn key_prefix(&self) -> &str {
        &self.prefix
    }

    /// The URL with its password replaced by `***`, for messages.
    #[must_use]
    pub fn redacted_url(&self) -> String {
        redact(&self.url)
    }

    /// The first setting that cannot work, with why.
    ///
    /// # Errors
    ///
    /// [`RedisConfigError::InvalidValue`].
    pub fn validate(&self) -> Result<(), RedisConfigError> {
        let invalid = |setting, reason: &str| {
            Err(RedisConfigError::InvalidValue {
                setting,
                reason: reason.into(),
            })
        };
        match url::Url::parse(&self.url) {
            Ok(url) if matches!(url.scheme(), "redis" | "rediss") && url.has_host() => {}
            _ => return invalid("url", "must be a `redis://` or `rediss://` URL with a host"),
        }
        let prefix_ok = !self.prefix.is_empty()
            && self.prefix.len() <= 64
            && self
                .prefix
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | ':'));
        if !prefix_ok {
            return invalid("prefix", "must be 1 to 64 letters, digits and `_ - . :`");
        }
        if self.connect_timeout.is_zero() || self.operation_timeout.is_zero() {
            return invalid("timeouts", "must be longer than zero");
        }
        if self.snapshot_ttl.is_some_and(|t| t.as_millis() == 0) {
            return invalid("snapshot_ttl", "must be at least a millisecond");
        }
        if self.cache_ttl.as_millis() == 0 {
            return invalid("cache_ttl", "must be at least a millisecond");
        }
        if self.claim_retention < Duration::from_secs(1) {
            return invalid("claim_retention", "must be at least a second");
        }
        Ok(())
    }
}

/// `url` with its password replaced by `***` (and not a URL: said so,
/// never shown).
pub(crate) fn redact(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) => {
            if parsed.password().is_some() {
                // Only fails for URLs that cannot have a password.
                let _ = parsed.set_password(Some("***"));
            }
            parsed.to_string()
        }
        Err(_) => "<not a URL>".into(),
    }
}

/// Replaces every occurrence of `url`'s password in `text` (driver errors
/// may quote the URL).
pub(crate) fn scrub(text: &str, url: &str) -> String {
    match url::Url::parse(url).ok().and_then(|u| u.password().map(str::to_owned)) {
        Some(password) if !password.is_empty() => text.replace(&password, "***"),
        _ => text.to_owned(),
    }
}

impl fmt::Debug for RedisConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisConfig")
            .field("url", &self.redacted_url())
            .field("prefix", &self.prefix)
            .field("connect_timeout", &self.connect_timeout)
            .field("operation_timeout", &self.operation_timeout)
            .field("snapshot_ttl", &self.snapshot_ttl)
            .field("cache_ttl", &self.cache_ttl)
            .field("claim_retention", &self.claim_retention)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_never_show_and_bad_settings_are_named() {
        let config = RedisConfig::new("redis://app:hunter2@cache:6379/2");
        assert_eq!(config.redacted_url(), "redis://app:***@cache:6379/2");
        assert!(!format!("{config:?}").contains("hunter2"));
        assert_eq!(
            scrub("failed for redis://app:hunter2@cache", &config.url),
            "failed for redis://app:***@cache"
        );
        assert_eq!(redact("not a url"), "<not a URL>");
        assert!(config.validate().is_ok());
        let setting = |c: RedisConfig| match c.validate() {
            Err(RedisConfigError::InvalidValue { setting, .. }) => setting,
            other => unreachable!("expected an invalid value, got {other:?}"),
        };
        assert_eq!(setting(RedisConfig::new("http://cache")), "url");
        assert_eq!(setting(RedisConfig::new("redis://c").prefix("")), "prefix");
        assert_eq!(setting(RedisConfig::new("redis://c").prefix("a b")), "prefix");
        assert_eq!(setting(RedisConfig::new("redis://c").prefix("x*")), "prefix");
        assert_eq!(
            setting(RedisConfig::new("redis://c").timeouts(Duration::ZERO, Duration::from_secs(1))),
            "timeouts"
        );
        assert_eq!(
            setting(RedisConfig::new("redis://c").claim_retention(Duration::from_millis(5))),
            "claim_retention"
        );
    }
}
