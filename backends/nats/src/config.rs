//! How to reach NATS, which JetStream stream and subjects carry the events,
//! and how consumers acknowledge; credentials never leave in a message.

use std::fmt;
use std::time::Duration;

/// The settings of a [`NatsTransport`](crate::NatsTransport).
///
/// ```
/// # use interlock_nats::NatsConfig;
/// let config = NatsConfig::new("nats://orders:secret@nats-1:4222").stream("ORDERS").subject_root("orders.events");
/// assert!(!format!("{config:?}").contains("secret"));
/// assert_eq!(config.redacted_url(), "nats://orders:***@nats-1:4222");
/// ```
#[derive(Clone, PartialEq, Eq)]
#[must_use]
pub struct NatsConfig {
    pub(crate) url: String,
    pub(crate) token: Option<String>,
    pub(crate) stream: String,
    pub(crate) subject_root: String,
    pub(crate) client_name: String,
    pub(crate) provision: bool,
    pub(crate) connect_in_background: bool,
    pub(crate) connect_timeout: Duration,
    pub(crate) request_timeout: Duration,
    pub(crate) ack_wait: Duration,
    pub(crate) redelivery_backoff: Vec<Duration>,
    pub(crate) max_deliveries: Option<u32>,
    pub(crate) duplicate_window: Duration,
    pub(crate) max_age: Option<Duration>,
    pub(crate) replicas: usize,
}

/// Why a configuration cannot be used.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NatsConfigError {
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

fn invalid(setting: &'static str, reason: impl Into<String>) -> NatsConfigError {
    NatsConfigError::InvalidValue {
        setting,
        reason: reason.into(),
    }
}

impl NatsConfig {
    /// The environment variable of the server URL(s).
    pub const URL_VAR: &'static str = "INTERLOCK_NATS_URL";
    /// The environment variable of an authentication token.
    pub const TOKEN_VAR: &'static str = "INTERLOCK_NATS_TOKEN";
    /// The environment variable of the JetStream stream's name.
    pub const STREAM_VAR: &'static str = "INTERLOCK_NATS_STREAM";
    /// The environment variable of the subject root.
    pub const SUBJECT_ROOT_VAR: &'static str = "INTERLOCK_NATS_SUBJECT_ROOT";
    /// The environment variable of the client's name.
    pub const CLIENT_NAME_VAR: &'static str = "INTERLOCK_NATS_CLIENT_NAME";
    /// The environment variable that allows (`true`) or forbids (`false`)
    /// creating the stream.
    pub const PROVISION_VAR: &'static str = "INTERLOCK_NATS_PROVISION";
    /// The environment variable of the acknowledgement wait, milliseconds.
    pub const ACK_WAIT_VAR: &'static str = "INTERLOCK_NATS_ACK_WAIT_MS";
    /// The environment variable of the delivery limit (`0`: none).
    pub const MAX_DELIVERIES_VAR: &'static str = "INTERLOCK_NATS_MAX_DELIVERIES";

    /// A transport on `url` (`nats://[user:password@]host:port`, several
    /// separated by commas; `tls://` for TLS), stream `INTERLOCK_EVENTS`
    /// on subjects `interlock.events.<type>.<id>`, created when missing;
    /// 5 s to connect and per request; redelivery 30 s after a delivery
    /// that was not acknowledged; an event delivered 10 times without an
    /// acknowledgement is parked by the consuming application; the
    /// server drops a republished event within 2 minutes.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            token: None,
            stream: "INTERLOCK_EVENTS".into(),
            subject_root: "interlock.events".into(),
            client_name: "interlock".into(),
            provision: true,
            connect_in_background: false,
            connect_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(5),
            ack_wait: Duration::from_secs(30),
            redelivery_backoff: Vec::new(),
            max_deliveries: Some(10),
            duplicate_window: Duration::from_secs(120),
            max_age: None,
            replicas: 1,
        }
    }

    /// From `INTERLOCK_NATS_URL` (required) and, when set,
    /// `INTERLOCK_NATS_TOKEN`, `INTERLOCK_NATS_STREAM`,
    /// `INTERLOCK_NATS_SUBJECT_ROOT`, `INTERLOCK_NATS_CLIENT_NAME`,
    /// `INTERLOCK_NATS_PROVISION`, `INTERLOCK_NATS_ACK_WAIT_MS`,
    /// `INTERLOCK_NATS_MAX_DELIVERIES`; checked as [`NatsConfig::validate`] does.
    ///
    /// # Errors
    ///
    /// [`NatsConfigError::Missing`] without a URL; an invalid value.
    pub fn from_env() -> Result<Self, NatsConfigError> {
        let var = |name: &'static str| std::env::var(name).ok().filter(|v| !v.is_empty());
        let url = var(Self::URL_VAR).ok_or(NatsConfigError::Missing(Self::URL_VAR))?;
        let mut config = Self::new(url);
        if let Some(token) = var(Self::TOKEN_VAR) {
            config = config.token(token);
        }
        if let Some(stream) = var(Self::STREAM_VAR) {
            config = config.stream(stream);
        }
        if let Some(root) = var(Self::SUBJECT_ROOT_VAR) {
            config = config.subject_root(root);
        }
        if let Some(name) = var(Self::CLIENT_NAME_VAR) {
            config = config.client_name(name);
        }
        if let Some(provision) = var(Self::PROVISION_VAR) {
            config = config.provision(match provision.as_str() {
                "true" | "1" | "yes" => true,
                "false" | "0" | "no" => false,
                other => {
                    return Err(invalid(
                        Self::PROVISION_VAR,
                        format!("expected true or false, not {other:?}"),
                    ));
                }
            });
        }
        if let Some(ms) = var(Self::ACK_WAIT_VAR) {
            let ms: u64 = ms
                .parse()
                .map_err(|_| invalid(Self::ACK_WAIT_VAR, format!("expected milliseconds, not {ms:?}")))?;
            config = config.ack_wait(Duration::from_millis(ms));
        }
        if let Some(n) = var(Self::MAX_DELIVERIES_VAR) {
            let n: u32 = n
                .parse()
                .map_err(|_| invalid(Self::MAX_DELIVERIES_VAR, format!("expected a count, not {n:?}")))?;
            config = config.max_deliveries((n > 0).then_some(n));
        }
        config.validate()?;
        Ok(config)
    }

    /// Authenticates with a token (instead of a user and password in the URL).
    pub fn token(mut self, token: impl Into<String>) -> Self {
        self.token = Some(token.into());
        self
    }

    /// The JetStream stream that stores the events.
    pub fn stream(mut self, name: impl Into<String>) -> Self {
        self.stream = name.into();
        self
    }

    /// The subjects' root: events go to `<root>.<aggregate type>.<id>`.
    pub fn subject_root(mut self, root: impl Into<String>) -> Self {
        self.subject_root = root.into();
        self
    }

    /// The client's name, as the server's monitoring shows it.
    pub fn client_name(mut self, name: impl Into<String>) -> Self {
        self.client_name = name.into();
        self
    }

    /// Whether the stream (and consumers) may be created when missing
    /// (default true); when not, a missing stream is
    /// [`NatsError::MissingStream`](crate::NatsError::MissingStream).
    pub fn provision(mut self, allowed: bool) -> Self {
        self.provision = allowed;
        self
    }

    /// Opens at once even when no server answers, and connects (and
    /// provisions) in the background: a service starts before its broker,
    /// and its relay retries until it is up. Default false: `open` fails
    /// when the server does not answer within the connect timeout.
    pub fn connect_in_background(mut self, background: bool) -> Self {
        self.connect_in_background = background;
        self
    }

    /// How long connecting may take.
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// How long a request (a publish's acknowledgement, a fetch) may take.
    pub fn request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = timeout;
        self
    }

    /// How long after a delivery without acknowledgement the server
    /// delivers it again (to this consumer, or to the next instance).
    pub fn ack_wait(mut self, wait: Duration) -> Self {
        self.ack_wait = wait;
        self
    }

    /// Delays between redeliveries, one per attempt (the last repeats),
    /// instead of the acknowledgement wait.
    pub fn redelivery_backoff(mut self, delays: Vec<Duration>) -> Self {
        self.redelivery_backoff = delays;
        self
    }

    /// After how many deliveries without an acknowledgement the consuming
    /// application parks an event as a dead letter (`None`: never). The
    /// server itself never drops an unacknowledged event.
    pub fn max_deliveries(mut self, limit: Option<u32>) -> Self {
        self.max_deliveries = limit;
        self
    }

    /// Within how long the server drops a message whose id (the event id)
    /// it stored already.
    pub fn duplicate_window(mut self, window: Duration) -> Self {
        self.duplicate_window = window;
        self
    }

    /// How long the stream keeps events (default: until removed by hand).
    pub fn max_age(mut self, age: Option<Duration>) -> Self {
        self.max_age = age;
        self
    }

    /// The stream's replicas in a cluster (default 1).
    pub fn replicas(mut self, replicas: usize) -> Self {
        self.replicas = replicas;
        self
    }

    /// The stream's name.
    #[must_use]
    pub fn stream_name(&self) -> &str {
        &self.stream
    }

    /// The subject root.
    #[must_use]
    pub fn root(&self) -> &str {
        &self.subject_root
    }

    /// The server URL(s) with passwords and tokens replaced by `***`.
    #[must_use]
    pub fn redacted_url(&self) -> String {
        redact(&self.url)
    }

    /// Checks every setting (names the server would refuse, a zero wait).
    ///
    /// # Errors
    ///
    /// [`NatsConfigError::InvalidValue`] naming the setting.
    pub fn validate(&self) -> Result<(), NatsConfigError> {
        if self.url.split(',').all(|u| u.trim().is_empty()) {
            return Err(invalid("url", "no server given"));
        }
        for server in self.url.split(',').map(str::trim) {
            let parsed = url::Url::parse(server)
                .or_else(|_| url::Url::parse(&format!("nats://{server}")))
                .map_err(|e| invalid("url", format!("{}: {e}", redact(server))))?;
            if !matches!(parsed.scheme(), "nats" | "tls" | "ws" | "wss") {
                return Err(invalid(
                    "url",
                    format!("{}: the scheme must be nats, tls, ws or wss", redact(server)),
                ));
            }
        }
        if self.stream.is_empty()
            || self.stream.len() > 255
            || self
                .stream
                .chars()
                .any(|c| c.is_whitespace() || c.is_control() || matches!(c, '.' | '*' | '>' | '/' | '\\'))
        {
            return Err(invalid(
                "stream",
                format!(
                    "{:?}: 1 to 255 characters, no whitespace, `.`, `*`, `>`, `/` or `\\`",
                    self.stream
                ),
            ));
        }
        if self.subject_root.split('.').any(|token| {
            token.is_empty()
                || token
                    .chars()
                    .any(|c| c.is_whitespace() || c.is_control() || matches!(c, '*' | '>'))
        }) {
            return Err(invalid(
                "subject_root",
                format!(
                    "{:?}: dot-separated tokens, none empty, no whitespace or wildcards",
                    self.subject_root
                ),
            ));
        }
        if self.client_name.chars().any(char::is_control) {
            return Err(invalid("client_name", "no control characters"));
        }
        for (setting, value) in [
            ("connect_timeout", self.connect_timeout),
            ("request_timeout", self.request_timeout),
            ("ack_wait", self.ack_wait),
            ("duplicate_window", self.duplicate_window),
        ] {
            if value.is_zero() {
                return Err(invalid(setting, "must be more than zero"));
            }
        }
        if self.max_deliveries == Some(0) {
            return Err(invalid("max_deliveries", "at least 1 (or None for no limit)"));
        }
        if self.replicas == 0 || self.replicas > 5 {
            return Err(invalid("replicas", "1 to 5"));
        }
        Ok(())
    }
}

/// `url` (one or several, comma-separated) with each password, or a
/// user part alone (a token), replaced by `***`. Text that does not parse
/// as a URL is hidden whole after its scheme.
pub(crate) fn redact(urls: &str) -> String {
    urls.split(',')
        .map(|server| {
            let server = server.trim();
            match url::Url::parse(server) {
                Ok(mut parsed) if parsed.has_host() => {
                    if parsed.password().is_some() {
                        let _ = parsed.set_password(Some("***"));
                    } else if !parsed.username().is_empty() {
                        let _ = parsed.set_username("***");
                    }
                    parsed.to_string().trim_end_matches('/').to_owned()
                }
                _ if server.contains('@') => "***".to_owned(),
                _ => server.to_owned(),
            }
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// Replaces the configured URL's secrets in an error's text.
pub(crate) fn scrub(text: &str, config: &NatsConfig) -> String {
    let mut text = text.to_owned();
    for server in config.url.split(',') {
        if let Ok(parsed) = url::Url::parse(server.trim()) {
            for secret in [parsed.password().unwrap_or_default(), parsed.username()] {
                if secret.len() >= 3 {
                    text = text.replace(secret, "***");
                }
            }
        }
    }
    if let Some(token) = config.token.as_deref().filter(|t| !t.is_empty()) {
        text = text.replace(token, "***");
    }
    text
}

impl fmt::Debug for NatsConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NatsConfig")
            .field("url", &self.redacted_url())
            .field("token", &self.token.as_ref().map(|_| "***"))
            .field("stream", &self.stream)
            .field("subject_root", &self.subject_root)
            .field("client_name", &self.client_name)
            .field("provision", &self.provision)
            .field("connect_in_background", &self.connect_in_background)
            .field("ack_wait", &self.ack_wait)
            .field("max_deliveries", &self.max_deliveries)
            .field("duplicate_window", &self.duplicate_window)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn secrets_are_redacted_everywhere() {
        let config = NatsConfig::new("nats://u:hunter22@a:4222, nats://tok3n@b:4222").token("t0ken");
        assert_eq!(config.redacted_url(), "nats://u:***@a:4222,nats://***@b:4222");
        let debug = format!("{config:?}");
        for secret in ["hunter22", "tok3n", "t0ken"] {
            assert!(!debug.contains(secret), "{debug}");
        }
        assert_eq!(
            scrub("auth failed for hunter22 / tok3n / t0ken", &config),
            "auth failed for *** / *** / ***"
        );
    }

    #[test]
    fn names_the_server_refuses_are_rejected() {
        assert!(NatsConfig::new("nats://127.0.0.1:4222").validate().is_ok());
        assert!(NatsConfig::new("127.0.0.1:4222").validate().is_ok(), "a bare host:port");
        for (config, setting) in [
            (NatsConfig::new("").stream("S"), "url"),
            (NatsConfig::new("http://x:1"), "url"),
            (NatsConfig::new("nats://x:1").stream("a.b"), "stream"),
            (NatsConfig::new("nats://x:1").stream("a b"), "stream"),
            (NatsConfig::new("nats://x:1").subject_root("a..b"), "subject_root"),
            (NatsConfig::new("nats://x:1").subject_root("a.>"), "subject_root"),
            (NatsConfig::new("nats://x:1").ack_wait(Duration::ZERO), "ack_wait"),
            (NatsConfig::new("nats://x:1").max_deliveries(Some(0)), "max_deliveries"),
        ] {
            match config.validate() {
                Err(NatsConfigError::InvalidValue { setting: s, .. }) => assert_eq!(s, setting),
                other => panic!("{config:?}: {other:?}"),
            }
        }
    }
}
