//! Health: whether the brokers answer, and the topic's extent.

use std::time::{Duration, Instant};

use crate::transport::KafkaTransport;

/// Whether the brokers answer, how fast, and the topic's partitions.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KafkaHealth {
    /// Whether the topic's metadata came back just now.
    pub reachable: bool,
    /// How long it took.
    pub latency: Option<Duration>,
    /// The topic's partitions (`None`: it does not exist).
    pub partitions: Option<usize>,
    /// The error, when unreachable (without the password).
    pub error: Option<String>,
}

impl KafkaTransport {
    /// Asks the brokers for the topic's metadata (within the request timeout).
    pub async fn health_check(&self) -> KafkaHealth {
        let started = Instant::now();
        match self.partitions().await {
            Ok(partitions) => KafkaHealth {
                reachable: true,
                latency: Some(started.elapsed()),
                partitions,
                error: None,
            },
            Err(e) => KafkaHealth {
                reachable: false,
                latency: None,
                partitions: None,
                error: Some(self.config().scrub(&e.to_string())),
            },
        }
    }
}
