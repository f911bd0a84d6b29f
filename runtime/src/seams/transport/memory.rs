//! A transport in process memory: one log, a cursor per consumer.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use parking_lot::Mutex;

use super::{Delivery, EventTransport, Receipt};
use crate::domain::ids::EventId;
use crate::future::BoxFuture;
use crate::store::{RecordedEvent, StoreError};

/// A transport in process memory: one log (an event published twice is
/// kept once), a cursor per consumer.
#[derive(Debug, Default)]
pub struct MemoryTransport {
    inner: Mutex<MemoryLog>,
    published: tokio::sync::Notify,
}

#[derive(Debug, Default)]
struct MemoryLog {
    log: Vec<RecordedEvent>,
    ids: HashSet<EventId>,
    consumers: HashMap<String, Cursor>,
}

/// A consumer's acknowledged offset, and how often each offset after it
/// was handed out.
#[derive(Debug, Default)]
struct Cursor {
    acked: u64,
    handed: HashMap<u64, u32>,
}

impl MemoryTransport {
    /// An empty transport.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    fn pending(&self, consumer: &str, max: usize) -> Vec<Delivery> {
        let mut inner = self.inner.lock();
        let MemoryLog { log, consumers, .. } = &mut *inner;
        let cursor = consumers.entry(consumer.to_owned()).or_default();
        let from = usize::try_from(cursor.acked).unwrap_or(usize::MAX);
        log.iter()
            .enumerate()
            .skip(from)
            .take(max)
            .map(|(i, e)| {
                let offset = i as u64 + 1;
                let attempt = cursor.handed.entry(offset).or_default();
                *attempt = attempt.saturating_add(1);
                Delivery {
                    event: e.clone(),
                    receipt: Receipt { partition: 0, offset },
                    attempt: *attempt,
                }
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

    fn ack<'a>(&'a self, consumer: &'a str, receipt: Receipt) -> BoxFuture<'a, Result<(), StoreError>> {
        let mut inner = self.inner.lock();
        let cursor = inner.consumers.entry(consumer.to_owned()).or_default();
        cursor.acked = cursor.acked.max(receipt.offset);
        let acked = cursor.acked;
        cursor.handed.retain(|offset, _| *offset > acked);
        Box::pin(std::future::ready(Ok(())))
    }
}
