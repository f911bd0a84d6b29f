//! The event transport seam: committed events published to other services,
//! consumed with acknowledgement (at-least-once).
//!
//! A producing application relays its log to a transport
//! (`ApplicationBuilder::publish_to`), or an outbox relay publishes what
//! its store recorded in the outbox (`publish_outbox_to`); a consuming
//! application feeds its projections and sagas from it
//! (`ApplicationBuilder::consume_from`) instead of from its own event
//! store. Broker implementations (NATS JetStream, Kafka) live in backend
//! crates and pass the exported conformance suite
//! (`interlock::transport_conformance!`).
//!
//! **Delivery.** At least once, in publish order per partition (a broker
//! that partitions keys each message by its stream id, so one aggregate's
//! events stay in order). A consuming application turns that into
//! effectively-once handling: each subscriber skips an event at or below
//! its checkpoint (the producer's global position), and a transactional
//! read model saves that checkpoint in the transaction of its rows.
//!
//! Beside this file: `memory` (the in-process transport), `envelope` (the
//! message headers both brokers write), `outbox`.

use std::time::Duration;

use super::{RecordedEvent, StoreError};
use crate::future::BoxFuture;

mod envelope;
mod memory;
mod outbox;

pub use self::envelope::{Envelope, EnvelopeError, header};
pub use self::memory::MemoryTransport;
pub use self::outbox::Outbox;

/// Where a delivery sits in its transport, to acknowledge it: the
/// partition (0 for a transport without partitions) and the offset
/// within it (increasing in delivery order).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Receipt {
    /// The partition (Kafka), or 0.
    pub partition: u32,
    /// The offset in the partition (Kafka), the stream sequence (NATS).
    pub offset: u64,
}

/// One event delivered to a consumer.
#[derive(Clone, Debug, PartialEq)]
pub struct Delivery {
    /// The event, as committed by the producer.
    pub event: RecordedEvent,
    /// Where it sits, for acknowledgement.
    pub receipt: Receipt,
    /// How many times it was delivered to this consumer, this one
    /// included (1: the first time), as far as the transport knows.
    pub attempt: u32,
}

/// Publishes committed events and delivers them to named consumers.
pub trait EventTransport: Send + Sync + 'static {
    /// Publishes events, in order, and returns once the transport holds
    /// all of them (a broker's acknowledgement): a relay marks its
    /// progress only after that. Publishing an event again (a relay that
    /// restarted) may deliver it again; consumers skip what they handled.
    fn publish<'a>(&'a self, events: &'a [RecordedEvent]) -> BoxFuture<'a, Result<(), StoreError>>;

    /// Up to `max` deliveries for `consumer`, waiting up to `wait` when
    /// there are none. Deliveries not acknowledged come again
    /// (at-least-once): a delivery this instance handed out and did not
    /// see acknowledged comes first in its next answer.
    fn receive<'a>(
        &'a self,
        consumer: &'a str,
        max: usize,
        wait: Duration,
    ) -> BoxFuture<'a, Result<Vec<Delivery>, StoreError>>;

    /// Acknowledges `receipt` of `consumer` (and, on a partitioned log,
    /// everything before it in its partition): it does not come again.
    fn ack<'a>(&'a self, consumer: &'a str, receipt: Receipt) -> BoxFuture<'a, Result<(), StoreError>>;

    /// After how many deliveries of one event a consuming application
    /// parks it in its dead letters instead of handling it again (an
    /// event that keeps crashing its consumer before the acknowledgement).
    /// `None`: never.
    fn max_deliveries(&self) -> Option<u32> {
        None
    }
}

impl<T: EventTransport + ?Sized> EventTransport for std::sync::Arc<T> {
    fn publish<'a>(&'a self, events: &'a [RecordedEvent]) -> BoxFuture<'a, Result<(), StoreError>> {
        (**self).publish(events)
    }
    fn receive<'a>(
        &'a self,
        consumer: &'a str,
        max: usize,
        wait: Duration,
    ) -> BoxFuture<'a, Result<Vec<Delivery>, StoreError>> {
        (**self).receive(consumer, max, wait)
    }
    fn ack<'a>(&'a self, consumer: &'a str, receipt: Receipt) -> BoxFuture<'a, Result<(), StoreError>> {
        (**self).ack(consumer, receipt)
    }
    fn max_deliveries(&self) -> Option<u32> {
        (**self).max_deliveries()
    }
}
