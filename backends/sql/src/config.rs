//! Configuration shared by the SQL backends: the errors, identifier
//! validation, URLs whose secrets are redacted everywhere, and reading the
//! environment. Each driver's settings are in its own module
//! (`SqliteConfig`, `PostgresConfig`).

use std::fmt;
use std::time::Duration;

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
pub(crate) fn validate_identifier(setting: &'static str, value: &str) -> Result<(), ConfigError> {
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
    #[cfg(feature = "postgres")]
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

/// Replaces the password of `scheme://user:password@host` and the value
/// of a `password=` or `pass=` query parameter with `***`. Text that is not
/// a URL shows its scheme only, since the rest may hold a secret.
pub(crate) fn redact(text: &str) -> String {
    let Ok(mut url) = url::Url::parse(text) else {
        return match text.split_once(':') {
            Some((scheme, _)) => format!("{scheme}:<unparsable URL>"),
            None => "<unparsable URL>".to_owned(),
        };
    };
    if url.password().is_some() {
        // Fails only for URLs that cannot carry a password.
        let _ = url.set_password(Some("***"));
    }
    let secret = |key: &str| key.eq_ignore_ascii_case("password") || key.eq_ignore_ascii_case("pass");
    if url.query_pairs().any(|(key, _)| secret(&key)) {
        let pairs: Vec<(String, String)> = url
            .query_pairs()
            .map(|(key, value)| {
                let value = if secret(&key) {
                    "***".to_owned()
                } else {
                    value.into_owned()
                };
                (key.into_owned(), value)
            })
            .collect();
        url.query_pairs_mut().clear().extend_pairs(pairs);
    }
    url.to_string()
}

/// Where `from_env` reads its variables: the process environment, or a
/// lookup of the caller's (a file, a secret manager, a test's map). Blank
/// values count as unset.
pub(crate) struct Vars<'a>(pub(crate) &'a dyn Fn(&str) -> Option<String>);

impl Vars<'_> {
    pub(crate) fn get(&self, name: &'static str) -> Option<String> {
        (self.0)(name).filter(|v| !v.trim().is_empty())
    }

    pub(crate) fn u32(&self, name: &'static str, setting: &'static str) -> Result<Option<u32>, ConfigError> {
        self.get(name)
            .map(|v| {
                v.parse::<u32>().map_err(|e| ConfigError::InvalidValue {
                    setting,
                    reason: format!("`{v}`: {e}"),
                })
            })
            .transpose()
    }

    pub(crate) fn millis(&self, name: &'static str, setting: &'static str) -> Result<Option<Duration>, ConfigError> {
        self.get(name)
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
}

/// The process environment, as a lookup.
pub(crate) fn process_env(name: &str) -> Option<String> {
    std::env::var(name).ok()
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
    }
}

#[cfg(test)]
mod redaction_tests {
    use super::redact;

    #[test]
    fn passwords_in_the_authority_and_the_query_are_redacted() {
        assert_eq!(
            redact("postgres://bob:s3cret@db:5432/x"),
            "postgres://bob:***@db:5432/x"
        );
        let shown = redact("postgres://db/x?user=bob&password=s3cret&sslmode=require");
        assert_eq!(shown, "postgres://db/x?user=bob&password=***&sslmode=require");
        assert_eq!(redact("postgres://db/x"), "postgres://db/x");
        let unparsable = redact("postgres://bob:s3cret@[db/x");
        assert!(!unparsable.contains("s3cret"), "{unparsable}");
    }
}
