//! The application's background tasks: followers of projections, sagas
//! and relays, outbox publishers, the transport consumer, deadline pollers
//! and the idempotency cleanup.

use std::sync::{Arc, Weak};
use std::time::Duration;

use super::Inner;
use crate::domain::backoff::Backoff;
use crate::domain::ids::Timestamp;
use crate::processes::relay::drain_outbox;
use crate::store::{EventTransport, IdempotencyStore, Outbox};

impl Inner {
    /// Starts every background task on the current tokio runtime.
    pub(super) fn start_background(self: &Arc<Self>) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            tracing::warn!("no tokio runtime: projections and sagas are not followed in the background");
            return;
        };
        for relay in &self.relays {
            runtime.spawn(Arc::clone(relay).follow(self.shutdown.subscribe()));
        }
        for (outbox, transport) in &self.outboxes {
            runtime.spawn(outbox_loop(
                Arc::clone(outbox),
                Arc::clone(transport),
                self.shutdown.subscribe(),
            ));
        }
        if self.consume_from.is_some() {
            runtime.spawn(consume_loop(Arc::downgrade(self), self.shutdown.subscribe()));
        } else {
            for subscriber in self.subscribers() {
                runtime.spawn(Arc::clone(subscriber).follow(self.shutdown.subscribe()));
            }
        }
        let purge_every = self.dispatcher.settings.idempotency_purge_every;
        if !purge_every.is_zero() {
            runtime.spawn(purge_loop(
                Arc::clone(&self.dispatcher.idempotency),
                purge_every,
                self.shutdown.subscribe(),
            ));
        }
        for (poller, poll, subscriber) in self.deadline_pollers.lock().drain(..) {
            let bus = Arc::clone(&self.dispatcher) as Arc<dyn crate::pipeline::bus::CommandBus>;
            runtime.spawn(poller(
                bus,
                Arc::clone(&self.sagas_store),
                subscriber,
                poll,
                self.shutdown.subscribe(),
            ));
        }
    }
}

/// Feeds the application's subscribers from its transport until shutdown.
async fn consume_loop(inner: Weak<Inner>, shutdown: tokio::sync::watch::Receiver<bool>) {
    let policy = Backoff::new(u32::MAX, Duration::from_millis(200), Duration::from_secs(5));
    let mut waits = policy.delays();
    loop {
        if *shutdown.borrow() {
            return;
        }
        let Some(inner) = inner.upgrade() else { return };
        let result = inner.consume(256, Duration::from_millis(200)).await;
        drop(inner);
        match result {
            Ok(_) => waits = policy.delays(),
            Err(e) => {
                tracing::warn!(error = %e, "consuming the transport failed; retrying");
                tokio::time::sleep(waits.next().unwrap_or(policy.max)).await;
            }
        }
    }
}

/// Deletes expired idempotency records every `every`, until shutdown.
async fn purge_loop(
    store: Arc<dyn IdempotencyStore>,
    every: Duration,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            () = tokio::time::sleep(every) => {}
            _ = shutdown.changed() => {}
        }
        if *shutdown.borrow() {
            return;
        }
        match store.purge_expired(Timestamp::now()).await {
            Ok(0) => {}
            Ok(purged) => tracing::debug!(purged, "expired idempotency records deleted"),
            Err(e) => tracing::warn!(error = %e, "idempotency cleanup failed; retrying later"),
        }
    }
}

/// Drains an outbox into its transport every 100 ms, until shutdown.
async fn outbox_loop(
    outbox: Arc<dyn Outbox>,
    transport: Arc<dyn EventTransport>,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    loop {
        if let Err(e) = drain_outbox(outbox.as_ref(), transport.as_ref()).await {
            tracing::warn!(error = %e, "publishing the outbox failed; retrying");
        }
        tokio::select! {
            () = tokio::time::sleep(Duration::from_millis(100)) => {}
            _ = shutdown.changed() => {}
        }
        if *shutdown.borrow() {
            return;
        }
    }
}
