//! Ownership: a subscriber that several instances run holds a lease in
//! its checkpoint store; it processes only while it holds it, claims or
//! renews it when due, takes it over when it expires (reloading the
//! checkpoint its predecessor left), steps down when it is lost, and
//! releases it at shutdown. A segment also keeps to its instance's share.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use super::{HandlerFailure, Progress, Subscriber, SubscriptionError};
use crate::domain::ids::Timestamp;
use crate::store::{LeaseClaim, StoreError};

/// How a subscriber shares the store with other instances of the
/// application: it runs only while it holds its lease.
#[derive(Clone, Debug)]
pub(crate) struct Ownership {
    /// This instance's id.
    pub(crate) instance: Arc<str>,
    /// How long a claim holds.
    pub(crate) lease: Duration,
    /// How often the owner renews.
    pub(crate) renew_every: Duration,
}

impl Ownership {
    /// Instance `instance` with the default leases: 10 s, renewed every 3 s.
    pub(crate) fn of(instance: Arc<str>) -> Self {
        Self {
            instance,
            lease: Duration::from_secs(10),
            renew_every: Duration::from_secs(3),
        }
    }
}

impl Subscriber {
    /// Runs only while this instance holds the subscriber's lease; `token`
    /// is the cell the handler reads the lease's token from.
    pub(crate) fn owned(mut self, ownership: Ownership, token: Arc<AtomicU64>) -> Self {
        self.ownership = Some(ownership);
        self.token = token;
        self
    }

    /// Whether this instance may process now: without ownership always;
    /// with it, when it holds the lease (claiming or renewing it when due).
    /// A lease newly held reloads the checkpoint the previous owner left.
    pub(super) async fn hold(&self, progress: &mut Progress) -> Result<bool, SubscriptionError> {
        let Some(own) = &self.ownership else {
            return Ok(true);
        };
        if let Some((_, renewed)) = &progress.lease
            && renewed.elapsed() < own.renew_every
        {
            return Ok(true);
        }
        if let Some(segment) = &self.segment {
            let share = segment
                .balance
                .share(self.checkpoints.as_ref(), own)
                .await
                .map_err(|e| self.store_error(e))?;
            if progress.lease.is_some() && segment.balance.release_if_over(segment.index, share) {
                tracing::info!(subscriber = %self.name, share, "more segments held than this instance's share; handing one over");
                self.release_held(progress).await;
                return Ok(false);
            }
            if progress.lease.is_none() && !segment.balance.has_room(share) {
                return Ok(false);
            }
        }
        let claim = self
            .checkpoints
            .claim_lease(&self.name, &own.instance, Timestamp::now(), own.lease)
            .await
            .map_err(|e| self.store_error(e))?;
        match claim {
            LeaseClaim::Held(lease) => {
                let held_before = progress.lease.as_ref().map(|(l, _)| l.token);
                if held_before != Some(lease.token) {
                    tracing::info_span!("subscriber_takeover", subscriber = %self.name).in_scope(|| {
                        tracing::info!(
                            instance = %own.instance,
                            token = lease.token,
                            "this instance owns the subscriber now"
                        );
                    });
                    metrics::counter!(
                        "interlock_subscriber_takeovers_total",
                        "subscriber" => self.name.clone(),
                        "instance" => own.instance.to_string()
                    )
                    .increment(1);
                    self.load(progress).await?;
                    if let Some(segment) = &self.segment {
                        segment.balance.claimed(segment.index);
                    }
                }
                self.token.store(lease.token, Ordering::Release);
                progress.lease = Some((lease, std::time::Instant::now()));
                Ok(true)
            }
            LeaseClaim::Taken(lease) => {
                if progress.lease.is_some() {
                    tracing::info!(subscriber = %self.name, owner = %lease.owner, "lost the subscriber to another instance");
                }
                self.step_down(progress);
                Ok(false)
            }
        }
    }

    /// Whether this instance runs the subscriber now (always, without
    /// ownership; else when it holds the lease, claiming or renewing it).
    pub(crate) async fn owns(&self) -> Result<bool, SubscriptionError> {
        let mut progress = self.progress.lock().await;
        self.hold(&mut progress).await
    }

    /// No longer the owner: nothing is processed until a claim holds again
    /// (which reloads the checkpoint).
    pub(super) fn step_down(&self, progress: &mut Progress) {
        if progress.lease.is_some()
            && let Some(own) = &self.ownership
        {
            metrics::counter!(
                "interlock_subscriber_step_downs_total",
                "subscriber" => self.name.clone(),
                "instance" => own.instance.to_string()
            )
            .increment(1);
        }
        progress.lease = None;
        progress.loaded = false;
        self.token.store(0, Ordering::Release);
        if let Some(segment) = &self.segment {
            segment.balance.dropped(segment.index);
        }
    }

    /// Gives the lease up (at shutdown), so another instance takes over at
    /// once instead of after it expires.
    pub(crate) async fn release(&self) {
        let mut progress = self.progress.lock().await;
        self.release_held(&mut progress).await;
        if let (Some(segment), Some(own)) = (&self.segment, &self.ownership) {
            segment.balance.leave(self.checkpoints.as_ref(), own).await;
        }
    }

    /// Gives up the lease held, if any, and steps down.
    pub(super) async fn release_held(&self, progress: &mut Progress) {
        if let Some((lease, _)) = progress.lease.take() {
            self.step_down(progress);
            if let Err(e) = self.checkpoints.release_lease(&self.name, lease.token).await {
                tracing::warn!(subscriber = %self.name, error = %e, "cannot release the lease; it expires by itself");
            }
        }
    }

    /// Whether a handler failed because the lease it saved under is lost
    /// (a transactional read model's fenced checkpoint): the subscriber
    /// steps down instead of retrying or parking the event.
    pub(super) fn lost_lease(&self, progress: &mut Progress, failure: &HandlerFailure) -> bool {
        let lost = failed_on_lost_lease(failure);
        if lost {
            tracing::info!(subscriber = %self.name, "the lease was taken over; stepping down");
            self.step_down(progress);
        }
        lost
    }
}

/// Whether a handler's failure is a checkpoint save refused by the lease.
pub(super) fn failed_on_lost_lease(failure: &HandlerFailure) -> bool {
    matches!(
        failure.0.downcast_ref::<StoreError>(),
        Some(StoreError::LeaseLost { .. })
    )
}
