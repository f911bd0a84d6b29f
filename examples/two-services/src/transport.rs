//! The broker both services use, chosen by `INTERLOCK_TRANSPORT`.

use std::sync::Arc;

use interlock::store::EventTransport;

/// The environment variable that names the broker.
pub const TRANSPORT_VAR: &str = "INTERLOCK_TRANSPORT";

/// Why no transport could be opened.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    /// The broker named is not one this example knows.
    #[error("{TRANSPORT_VAR}={0:?}: expected `nats`")]
    Unknown(String),
    /// NATS's settings.
    #[error(transparent)]
    NatsConfig(#[from] interlock::nats::NatsConfigError),
    /// NATS refused.
    #[error(transparent)]
    Nats(#[from] interlock::nats::NatsError),
}

/// Opens the broker named by `INTERLOCK_TRANSPORT` (default `nats`), from
/// its own variables. It connects in the background: a service may start
/// before its broker, and its relay retries until the broker is up.
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
        other => Err(TransportError::Unknown(other.to_owned())),
    }
}
