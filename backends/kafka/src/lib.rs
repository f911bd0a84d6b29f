//! The Kafka transport of Interlock: committed events published to other
//! services by an idempotent producer, consumed by consumer groups.
//!
//! ```no_run
//! # async fn example() -> Result<(), Box<dyn std::error::Error>> {
//! use interlock::prelude::*;
//! use interlock_kafka::{KafkaConfig, KafkaTransport};
//!
//! let kafka = KafkaTransport::open(KafkaConfig::from_env()?).await?;
//! let orders = Application::builder().publish_to("kafka", kafka.clone()).build().await?;
//! let shipping = Application::builder().consume_from("shipping", kafka).build().await?;
//! # Ok(()) }
//! ```
//!
//! # Topic, keys, headers, payload
//!
//! One topic (`interlock-events` by default), created with one partition
//! when missing and provisioning is allowed. Each event is one message
//! keyed by its stream id (so one aggregate's events share a partition
//! and stay in order); the value is the stored payload, unchanged; the
//! headers carry the rest of the recorded event (`interlock::store::header`:
//! event id, stream, version, position, name, schema version, recorded-at,
//! correlation, causation and command ids, user headers as
//! `Interlock-Header-<key>`).
//!
//! # Guarantees
//!
//! - **Publishing**: an idempotent producer with `acks=all`; a page of
//!   events is enqueued at once and every delivery report awaited before
//!   a relay marks its progress. A relay that restarts publishes again
//!   from its checkpoint; consumers skip what they handled.
//! - **Consuming**: a consumer group per consumer name. An event's offset
//!   is stored only after every subscriber of the application handled it
//!   (and saved its checkpoint), and committed every 200 ms; a consumer
//!   that dies, or loses its partition in a rebalance, resumes after the
//!   last committed offset, and the subscribers skip what they had
//!   handled (their checkpoint, saved with a transactional read model's
//!   rows): effectively once.
//! - **One partition**: a consuming application's checkpoints are
//!   positions in the producer's log, an order one partition keeps and
//!   several do not; consumers refuse a topic of more partitions
//!   ([`KafkaError::Partitioned`]). Scale the consuming side by
//!   segmenting its subscribers instead.
//! - **Poison**: an event whose handler fails is retried and parked by the
//!   subscriber as usual. Kafka counts no deliveries, so there is no
//!   delivery limit. A message without the envelope is skipped (it stays
//!   in the topic).
//! - **Faults**: unreachable brokers are `StoreError::Unavailable` after
//!   the request timeout (30 s); relays and the consumer loop retry, and
//!   librdkafka reconnects by itself.
//!
//! librdkafka is built from its bundled source (no system library, no
//! cmake: its own configure script, about a minute on 2 cores).

mod config;
mod health;
mod transport;

pub use self::config::{KafkaConfig, KafkaConfigError};
pub use self::health::KafkaHealth;
pub use self::transport::{KafkaError, KafkaTransport};
