//! The broker both services use, chosen by `INTERLOCK_TRANSPORT`.

use std::sync::Arc;

use interlock::store::EventTransport;

/// The environment variable that names the broker.
pub const TRANSPORT_VAR: &str = "INTERLOCK_TRANSPORT";

/// Why no transport could be opened.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    /// The broker named is not one this example knows.
    #[error("{TRANSPORT_VAR}={0:?}: expected `nats` or `kafka`")]
    Unknown(String),
    /// NATS's settings.
    #[error(transparent)]
    NatsConfig(#[from] interlock::nats::NatsConfigError),
    /// NATS refused.
    #[error(transparent)]
    Nats(#[from] interlock::nats::NatsError),
    /// Kafka's settings.
    #[error(transparent)]
    KafkaConfig(#[from] interlock::kafka::KafkaConfigError),
    /// Kafka refused.
    #[error(transparent)]
    Kafka(#[from] interlock::kafka::KafkaError),
}

/// Opens the broker named by `INTERLOCK_TRANSPORT` (`nats`, the default,
/// or `kafka`), from its own variables (`INTERLOCK_NATS_*`,
/// `INTERLOCK_KAFKA_*`). NATS connects in the background (a service may
/// start before its broker); Kafka's client connects by itself, but the
/// topic is checked (or created) at start.
///
/// # Errors
///
/// An unknown broker, or its invalid configuration.
pub async fn from_env() -> Result<Arc<dyn EventTransport>, TransportError> {
    let name = std::env::var(TRANSPORT_VAR).unwrap_or_else(|_| "nats".into());
    match name.as_str() {
        "nats" => {
            let config = interlock::nats::NatsConfig::from_env()?.connect_in_background(true);
            Ok(Arc::new(interlock::nats::NatsTransport::open(config).await?))
        }
        "kafka" => {
            let config = interlock::kafka::KafkaConfig::from_env()?;
            Ok(Arc::new(interlock::kafka::KafkaTransport::open(config).await?))
        }
        other => Err(TransportError::Unknown(other.to_owned())),
    }
}
