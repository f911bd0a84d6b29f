//! The event transport seam: committed events published to other services,
//! consumed with acknowledgement (at-least-once).
//!
//! A producing application relays its log to a transport
//! (`ApplicationBuilder::publish_to`); a consuming application feeds its
//! projections and sagas from it (`ApplicationBuilder::consume_from`)
//! instead of from its own event store. Broker implementations (NATS
//! JetStream, Kafka) live in backend crates.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use parking_lot::Mutex;

use super::{RecordedEvent, StoreError};
use crate::domain::ids::{EventId, Position};
use crate::future::BoxFuture;

/// One event delivered to a consumer.
#[derive(Clone, Debug, PartialEq)]
pub struct Delivery {
    /// The event, as committed by the producer.
    pub event: RecordedEvent,
    /// Its offset in the transport, for acknowledgement.
    pub offset: u64,
}

/// Publishes committed events and delivers them to named consumers.
pub trait EventTransport: Send + Sync + 'static {
    /// Publishes events, in order. Publishing an event again (a relay that
    /// restarted) must not deliver it twice to a consumer that acknowledged it.
    fn publish<'a>(&'a self, events: &'a [RecordedEvent]) -> BoxFuture<'a, Result<(), StoreError>>;

    /// Up to `max` deliveries for `consumer` after its last acknowledged
    /// offset, waiting up to `wait` when there are none. Deliveries not
    /// acknowledged come again (at-least-once).
    fn receive<'a>(
        &'a self,
        consumer: &'a str,
        max: usize,
        wait: Duration,
    ) -> BoxFuture<'a, Result<Vec<Delivery>, StoreError>>;

    /// Acknowledges every delivery of `consumer` up to `offset`.
    fn ack<'a>(&'a self, consumer: &'a str, offset: u64) -> BoxFuture<'a, Result<(), StoreError>>;
}

/// A transport in process memory: one log, a cursor per consumer.
#[derive(Debug, Default)]
pub struct MemoryTransport {
    inner: Mutex<MemoryLog>,
    published: tokio::sync::Notify,
}

#[derive(Debug, Default)]
struct MemoryLog {
    log: Vec<RecordedEvent>,
    ids: HashSet<EventId>,
    acked: HashMap<String, u64>,
}

impl MemoryTransport {
    /// An empty transport.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    fn pending(&self, consumer: &str, max: usize) -> Vec<Delivery> {
        let inner = self.inner.lock();
        let from = inner.acked.get(consumer).copied().unwrap_or(0) as usize;
        inner
            .log
            .iter()
            .enumerate()
            .skip(from)
            .take(max)
            .map(|(i, e)| Delivery {
                event: e.clone(),
                offset: i as u64 + 1,
            })
            .collect()
    }
}

impl EventTransport for MemoryTransport {
    fn publish<'a>(&'a self, events: &'a [RecordedEvent]) -> BoxFuture<'a, Result<(), StoreError>> {
        let mut inner = self.inner.lock();
        for e in events {
            if inner.ids.insert(e.event_id) {
                inner.log.push(e.clone());
            }
        }
        drop(inner);
        self.published.notify_waiters();
        Box::pin(std::future::ready(Ok(())))
    }

    fn receive<'a>(
        &'a self,
        consumer: &'a str,
        max: usize,
        wait: Duration,
    ) -> BoxFuture<'a, Result<Vec<Delivery>, StoreError>> {
        Box::pin(async move {
            let notified = self.published.notified();
            let ready = self.pending(consumer, max);
            if !ready.is_empty() || wait.is_zero() {
                return Ok(ready);
            }
            let _ = tokio::time::timeout(wait, notified).await;
            Ok(self.pending(consumer, max))
        })
    }

    fn ack<'a>(&'a self, consumer: &'a str, offset: u64) -> BoxFuture<'a, Result<(), StoreError>> {
        let mut inner = self.inner.lock();
        let acked = inner.acked.entry(consumer.to_owned()).or_default();
        *acked = (*acked).max(offset);
        Box::pin(std::future::ready(Ok(())))
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
    fn ack<'a>(&'a self, consumer: &'a str, offset: u64) -> BoxFuture<'a, Result<(), StoreError>> {
        (**self).ack(consumer, offset)
    }
}

/// A transactional outbox: a store that records, in the same transaction as
/// each append, that the events are to be published. A relay reads the
/// pending events in position order, publishes them, then marks them
/// published, so every committed event is published at least once, also
/// by a relay running outside the application that wrote it.
pub trait Outbox: Send + Sync + 'static {
    /// Up to `limit` events not yet marked published, in position order.
    fn pending(&self, limit: usize) -> BoxFuture<'_, Result<Vec<RecordedEvent>, StoreError>>;

    /// Marks events published (by position).
    fn mark_published<'a>(&'a self, positions: &'a [Position]) -> BoxFuture<'a, Result<(), StoreError>>;
}

impl<O: Outbox + ?Sized> Outbox for std::sync::Arc<O> {
    fn pending(&self, limit: usize) -> BoxFuture<'_, Result<Vec<RecordedEvent>, StoreError>> {
        (**self).pending(limit)
    }
    fn mark_published<'a>(&'a self, positions: &'a [Position]) -> BoxFuture<'a, Result<(), StoreError>> {
        (**self).mark_published(positions)
    }
}
