//! The NATS JetStream transport of Interlock: committed events published
//! to other services, consumed by durable pull consumers.
//!
//! ```no_run
//! # async fn example() -> Result<(), Box<dyn std::error::Error>> {
//! use interlock::prelude::*;
//! use interlock_nats::{NatsConfig, NatsTransport};
//!
//! let nats = NatsTransport::open(NatsConfig::from_env()?).await?;
//! // The producing service relays its log (or its outbox) ...
//! let orders = Application::builder().publish_to("nats", nats.clone()).build().await?;
//! // ... and a consuming service feeds its projections and sagas from it.
//! let shipping = Application::builder().consume_from("shipping", nats).build().await?;
//! # Ok(()) }
//! ```
//!
//! # Subjects, headers, payload
//!
//! One JetStream stream (`INTERLOCK_EVENTS` by default) takes the subjects
//! `<root>.>` (root `interlock.events`); each event goes to
//! `<root>.<aggregate type>.<aggregate id>`, both tokens percent-encoded
//! where they hold anything but letters, digits, `-` and `_` (so an id
//! with a `.` or a wildcard stays one token). The message body is the
//! stored payload, unchanged; the headers carry the rest of the recorded
//! event (`interlock::store::header`: event id, stream, version, position,
//! name, schema version, recorded-at, correlation, causation and command
//! ids, and each user header as `Interlock-Header-<key>`), plus
//! `Nats-Msg-Id` = the event id.
//!
//! # Guarantees
//!
//! - **Publishing** waits for the JetStream acknowledgement of every
//!   event; a relay (log or outbox) marks its progress only after it.
//!   The server drops an event published again within its duplicate
//!   window (2 minutes by default); beyond it, consumers skip it.
//! - **Order**: one stream, so every consumer receives events in the
//!   order they were published, which is the producer's position order.
//! - **Delivery** is at least once: a durable pull consumer per consumer
//!   name, explicit acknowledgement after every subscriber handled the
//!   event (and saved its checkpoint); what was not acknowledged is
//!   delivered again after the ack wait (30 s), or the configured backoff.
//!   The consuming application skips an event at or below a subscriber's
//!   checkpoint, so handling is effectively once; a transactional read
//!   model saves that checkpoint in its own transaction.
//! - **Poison**: an event whose handler fails is retried and parked by the
//!   subscriber as usual; one delivered more than `max_deliveries` times
//!   (10) without an acknowledgement — it crashed its consumer each time —
//!   is parked without being handled again. A message on these subjects
//!   that is not an Interlock event is terminated for the consumer and
//!   stays in the stream.
//! - **Faults**: an unreachable server is `StoreError::Unavailable`; the
//!   relays and the consumer loop retry with backoff, and the client
//!   reconnects by itself. `NatsConfig::connect_in_background` lets a
//!   service start before its server.

mod config;
mod health;
mod subjects;
mod transport;

pub use self::config::{NatsConfig, NatsConfigError};
pub use self::health::NatsHealth;
pub use self::transport::{NatsError, NatsTransport};
