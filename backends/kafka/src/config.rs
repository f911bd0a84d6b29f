//! How to reach the brokers, which topic carries the events, the
//! consumer groups; the password never leaves in a message.

use std::fmt;
use std::time::Duration;

/// The settings of a [`KafkaTransport`](crate::KafkaTransport).
///
/// ```
/// # use interlock_kafka::KafkaConfig;
/// let config = KafkaConfig::new("kafka-1:9092,kafka-2:9092").topic("orders-events").credentials("orders", "secret");
/// assert!(!format!("{config:?}").contains("secret"));
/// ```
#[derive(Clone, PartialEq, Eq)]
#[must_use]
pub struct KafkaConfig {
    pub(crate) brokers: String,
    pub(crate) topic: String,
    pub(crate) client_id: String,
    pub(crate) group_prefix: String,
    pub(crate) provision: bool,
    pub(crate) connect_in_background: bool,
    pub(crate) partitions: i32,
    pub(crate) replication: i32,
    pub(crate) credentials: Option<(String, String)>,
    pub(crate) request_timeout: Duration,
    pub(crate) session_timeout: Duration,
    pub(crate) commit_interval: Duration,
}

/// Why a configuration cannot be used.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KafkaConfigError {
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

fn invalid(setting: &'static str, reason: impl Into<String>) -> KafkaConfigError {
    KafkaConfigError::InvalidValue {
        setting,
        reason: reason.into(),
    }
}

impl KafkaConfig {
    /// The environment variable of the bootstrap brokers.
    pub const BROKERS_VAR: &'static str = "INTERLOCK_KAFKA_BROKERS";
    /// The environment variable of the topic.
    pub const TOPIC_VAR: &'static str = "INTERLOCK_KAFKA_TOPIC";
    /// The environment variable of the client id.
    pub const CLIENT_ID_VAR: &'static str = "INTERLOCK_KAFKA_CLIENT_ID";
    /// The environment variable of the consumer groups' prefix.
    pub const GROUP_PREFIX_VAR: &'static str = "INTERLOCK_KAFKA_GROUP_PREFIX";
    /// The environment variable that allows (`true`) or forbids (`false`)
    /// creating the topic.
    pub const PROVISION_VAR: &'static str = "INTERLOCK_KAFKA_PROVISION";
    /// The environment variable of the SASL/PLAIN user.
    pub const USERNAME_VAR: &'static str = "INTERLOCK_KAFKA_USERNAME";
    /// The environment variable of the SASL/PLAIN password.
    pub const PASSWORD_VAR: &'static str = "INTERLOCK_KAFKA_PASSWORD";

    /// A transport on the bootstrap `brokers` (`host:port`, several
    /// separated by commas), topic `interlock-events` (created with one
    /// partition when missing), consumer groups `interlock-<consumer>`,
    /// 30 s per request, offsets committed every 200 ms.
    pub fn new(brokers: impl Into<String>) -> Self {
        Self {
            brokers: brokers.into(),
            topic: "interlock-events".into(),
            client_id: "interlock".into(),
            group_prefix: "interlock-".into(),
            provision: true,
            connect_in_background: false,
            partitions: 1,
            replication: 1,
            credentials: None,
            request_timeout: Duration::from_secs(30),
            session_timeout: Duration::from_secs(10),
            commit_interval: Duration::from_millis(200),
        }
    }

    /// From `INTERLOCK_KAFKA_BROKERS` (required) and, when set,
    /// `INTERLOCK_KAFKA_TOPIC`, `INTERLOCK_KAFKA_CLIENT_ID`,
    /// `INTERLOCK_KAFKA_GROUP_PREFIX`, `INTERLOCK_KAFKA_PROVISION`,
    /// `INTERLOCK_KAFKA_USERNAME` with `INTERLOCK_KAFKA_PASSWORD`;
    /// checked as [`KafkaConfig::validate`] does.
    ///
    /// # Errors
    ///
    /// [`KafkaConfigError::Missing`] without brokers; an invalid value.
    pub fn from_env() -> Result<Self, KafkaConfigError> {
        let var = |name: &'static str| std::env::var(name).ok().filter(|v| !v.is_empty());
        let brokers = var(Self::BROKERS_VAR).ok_or(KafkaConfigError::Missing(Self::BROKERS_VAR))?;
        let mut config = Self::new(brokers);
        if let Some(topic) = var(Self::TOPIC_VAR) {
            config = config.topic(topic);
        }
        if let Some(id) = var(Self::CLIENT_ID_VAR) {
            config = config.client_id(id);
        }
        if let Some(prefix) = var(Self::GROUP_PREFIX_VAR) {
            config = config.group_prefix(prefix);
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
        match (var(Self::USERNAME_VAR), var(Self::PASSWORD_VAR)) {
            (Some(user), Some(password)) => config = config.credentials(user, password),
            (None, None) => {}
            (Some(_), None) => return Err(KafkaConfigError::Missing(Self::PASSWORD_VAR)),
            (None, Some(_)) => return Err(KafkaConfigError::Missing(Self::USERNAME_VAR)),
        }
        config.validate()?;
        Ok(config)
    }

    /// The topic the events go to.
    pub fn topic(mut self, topic: impl Into<String>) -> Self {
        self.topic = topic.into();
        self
    }

    /// The client id the brokers see.
    pub fn client_id(mut self, id: impl Into<String>) -> Self {
        self.client_id = id.into();
        self
    }

    /// The prefix of consumer groups: consumer `shipping` reads as group
    /// `<prefix>shipping`.
    pub fn group_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.group_prefix = prefix.into();
        self
    }

    /// Whether the topic may be created when missing (default true).
    pub fn provision(mut self, allowed: bool) -> Self {
        self.provision = allowed;
        self
    }

    /// Opens at once even when no broker answers, and finds (or creates)
    /// the topic on first use: a service starts before its brokers, and
    /// its relay retries until they are up. Default false: `open` fails
    /// when no broker answers within the request timeout.
    pub fn connect_in_background(mut self, background: bool) -> Self {
        self.connect_in_background = background;
        self
    }

    /// Partitions and replicas of a topic this transport creates
    /// (default 1 and 1). Consumers read a topic of one partition only
    /// (see the crate docs).
    pub fn topic_layout(mut self, partitions: i32, replication: i32) -> Self {
        self.partitions = partitions;
        self.replication = replication;
        self
    }

    /// SASL/PLAIN credentials.
    pub fn credentials(mut self, username: impl Into<String>, password: impl Into<String>) -> Self {
        self.credentials = Some((username.into(), password.into()));
        self
    }

    /// How long a produce (its acknowledgement) or an admin request may take.
    pub fn request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = timeout;
        self
    }

    /// How long a group member may be silent before the group rebalances.
    pub fn session_timeout(mut self, timeout: Duration) -> Self {
        self.session_timeout = timeout;
        self
    }

    /// How often the offsets of handled events are committed.
    pub fn commit_interval(mut self, interval: Duration) -> Self {
        self.commit_interval = interval;
        self
    }

    /// The topic's name.
    #[must_use]
    pub fn topic_name(&self) -> &str {
        &self.topic
    }

    /// The bootstrap brokers (they hold no secret: credentials are apart).
    #[must_use]
    pub fn brokers(&self) -> &str {
        &self.brokers
    }

    /// Checks every setting.
    ///
    /// # Errors
    ///
    /// [`KafkaConfigError::InvalidValue`] naming the setting.
    pub fn validate(&self) -> Result<(), KafkaConfigError> {
        let servers: Vec<&str> = self.brokers.split(',').map(str::trim).collect();
        if servers.iter().all(|s| s.is_empty()) {
            return Err(invalid("brokers", "no broker given"));
        }
        for server in servers {
            let (host, port) = server
                .rsplit_once(':')
                .ok_or_else(|| invalid("brokers", format!("{server:?}: expected host:port")))?;
            if host.is_empty() || host.contains('@') || port.parse::<u16>().is_err() {
                return Err(invalid(
                    "brokers",
                    format!("{server:?}: expected host:port (credentials go apart)"),
                ));
            }
        }
        let legal = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-');
        if self.topic.is_empty()
            || self.topic.len() > 249
            || !self.topic.chars().all(legal)
            || self.topic == "."
            || self.topic == ".."
        {
            return Err(invalid(
                "topic",
                format!("{:?}: 1 to 249 of `A-Z a-z 0-9 . _ -`", self.topic),
            ));
        }
        if !self.group_prefix.chars().all(legal) {
            return Err(invalid("group_prefix", "only `A-Z a-z 0-9 . _ -`"));
        }
        if self.client_id.is_empty() || !self.client_id.chars().all(legal) {
            return Err(invalid("client_id", "1 or more of `A-Z a-z 0-9 . _ -`"));
        }
        if self.partitions < 1 || self.replication < 1 {
            return Err(invalid("topic_layout", "at least one partition and one replica"));
        }
        for (setting, value) in [
            ("request_timeout", self.request_timeout),
            ("session_timeout", self.session_timeout),
            ("commit_interval", self.commit_interval),
        ] {
            if value.is_zero() {
                return Err(invalid(setting, "must be more than zero"));
            }
        }
        Ok(())
    }

    /// Replaces the password in an error's text.
    pub(crate) fn scrub(&self, text: &str) -> String {
        match &self.credentials {
            Some((_, password)) if !password.is_empty() => text.replace(password.as_str(), "***"),
            _ => text.to_owned(),
        }
    }
}

impl fmt::Debug for KafkaConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KafkaConfig")
            .field("brokers", &self.brokers)
            .field("topic", &self.topic)
            .field("client_id", &self.client_id)
            .field("group_prefix", &self.group_prefix)
            .field("provision", &self.provision)
            .field("credentials", &self.credentials.as_ref().map(|(user, _)| (user, "***")))
            .field("request_timeout", &self.request_timeout)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_password_is_redacted() {
        let config = KafkaConfig::new("a:9092").credentials("u", "hunter22");
        assert!(!format!("{config:?}").contains("hunter22"));
        assert_eq!(config.scrub("SASL failed with hunter22"), "SASL failed with ***");
    }

    #[test]
    fn settings_the_brokers_refuse_are_rejected() {
        assert!(KafkaConfig::new("127.0.0.1:9092, b:9093").validate().is_ok());
        for (config, setting) in [
            (KafkaConfig::new(""), "brokers"),
            (KafkaConfig::new("host"), "brokers"),
            (KafkaConfig::new("u:p@host:9092"), "brokers"),
            (KafkaConfig::new("h:1").topic("a b"), "topic"),
            (KafkaConfig::new("h:1").topic(".."), "topic"),
            (KafkaConfig::new("h:1").group_prefix("a/b"), "group_prefix"),
            (KafkaConfig::new("h:1").topic_layout(0, 1), "topic_layout"),
        ] {
            match config.validate() {
                Err(KafkaConfigError::InvalidValue { setting: s, .. }) => assert_eq!(s, setting, "{config:?}"),
                other => panic!("{config:?}: {other:?}"),
            }
        }
    }
}
