//! Segments: one subscriber split into N parts by a hash of the stream id,
//! each with its own checkpoint and lease, so several instances of an
//! application share one projection's work.
//!
//! Every event of a stream falls in the same segment, so per-stream order
//! holds. Each segment reads the whole (filtered) log and handles the
//! events of its streams; the others only move its checkpoint.
//!
//! **Balance.** The instances running a segmented subscriber announce
//! themselves with a *member* lease of their own (`<name>[members]/<id>`,
//! in the same lease table). From the live members, sorted by id, each
//! instance computes its share (`N / members`, one more for the first
//! `N % members`): below it, it claims free or expired segments; above it,
//! it releases the segments it holds beyond it, and another member claims
//! them. When a member dies, its member lease and segment leases expire
//! together, the survivors' shares grow and they claim its segments.
//!
//! **Changing N.** Segment `i` of `N` keeps its checkpoint under
//! `<name>[i/N]`, so a new count starts from new checkpoints. With
//! `ProjectionConfig::resegment_from(M)`, a segment without a checkpoint
//! of its own starts from the least advanced of the `M` old ones, and
//! skips every event the old segment of its stream had already handled
//! (its position is at or below that old checkpoint). The old layout must
//! be stopped first: its checkpoints are read as they stand.

use std::collections::BTreeSet;
use std::time::Instant;

use super::Ownership;
use crate::domain::ids::{Position, StreamId, Timestamp};
use crate::store::{CheckpointStore, LeaseClaim, StoreError};

/// The most segments a subscriber can have.
pub(crate) const MAX_SEGMENTS: u32 = 1024;

/// The segment of `stream` among `count`: XXH3 (64 bit) of the tenant,
/// type and id (each after a 0x1f separator), modulo `count`. Part of the
/// stored layout (checkpoints are per segment), so it must never change:
/// XXH3's output is fixed by its specification.
pub(crate) fn segment_of(stream: &StreamId, count: u32) -> u32 {
    let mut hasher = xxhash_rust::xxh3::Xxh3::new();
    if let Some(tenant) = stream.tenant() {
        hasher.update(tenant.as_str().as_bytes());
    }
    hasher.update(&[0x1f]);
    hasher.update(stream.aggregate_type().as_bytes());
    hasher.update(&[0x1f]);
    hasher.update(stream.aggregate_id().as_bytes());
    u32::try_from(hasher.digest() % u64::from(count.max(1))).unwrap_or(0)
}

/// The checkpoint (and lease) name of segment `index` of `count` of the
/// subscriber `base`: `base` itself when it is not split.
pub(crate) fn segment_name(base: &str, index: u32, count: u32) -> String {
    if count <= 1 {
        base.to_owned()
    } else {
        format!("{base}[{index}/{count}]")
    }
}

/// Which part of a split subscriber one [`Subscriber`](super::Subscriber) runs.
pub(crate) struct Segment {
    pub(crate) index: u32,
    pub(crate) count: u32,
    /// The count of the layout this one takes over from, and the names of
    /// its checkpoints (see the module docs).
    pub(crate) previous: Option<(u32, Vec<String>)>,
    pub(crate) balance: std::sync::Arc<Balance>,
}

impl Segment {
    /// Segment `index` of `count` of `base`, taking over from `previous`
    /// segments when set.
    pub(crate) fn new(
        base: &str,
        index: u32,
        count: u32,
        previous: Option<u32>,
        balance: std::sync::Arc<Balance>,
    ) -> Self {
        Self {
            index,
            count,
            previous: previous.map(|m| (m, (0..m).map(|j| segment_name(base, j, m)).collect())),
            balance,
        }
    }

    /// Whether `stream`'s events are this segment's.
    pub(crate) fn covers(&self, stream: &StreamId) -> bool {
        segment_of(stream, self.count) == self.index
    }

    /// Whether the previous layout already handled the event at `position`
    /// of `stream`, given its checkpoints `handed`.
    pub(crate) fn handled_before(&self, handed: &[Position], stream: &StreamId, position: Position) -> bool {
        match &self.previous {
            Some((count, _)) => handed
                .get(segment_of(stream, *count) as usize)
                .is_some_and(|old| position <= *old),
            None => false,
        }
    }
}

/// How the segments of one subscriber are shared among the instances
/// running it (see the module docs).
pub(crate) struct Balance {
    /// The prefix of the member leases' names.
    members: String,
    count: u32,
    /// The segments this instance holds.
    held: parking_lot::Mutex<BTreeSet<u32>>,
    view: tokio::sync::Mutex<View>,
}

#[derive(Default)]
struct View {
    share: u32,
    member_token: Option<u64>,
    refreshed: Option<Instant>,
    /// This instance left (it is shutting down): it claims nothing more,
    /// and does not renew its membership.
    left: bool,
}

impl Balance {
    /// The balance of the `count` segments of subscriber `base`.
    pub(crate) fn new(base: &str, count: u32) -> Self {
        Self {
            members: format!("{base}[members]/"),
            count,
            held: parking_lot::Mutex::default(),
            view: tokio::sync::Mutex::default(),
        }
    }

    /// How many segments this instance should hold: renews its member
    /// lease and counts the live members, at most once per renewal
    /// interval.
    pub(crate) async fn share(&self, checkpoints: &dyn CheckpointStore, own: &Ownership) -> Result<u32, StoreError> {
        let mut view = self.view.lock().await;
        if view.left {
            return Ok(0);
        }
        if let Some(refreshed) = view.refreshed
            && refreshed.elapsed() < own.renew_every
        {
            return Ok(view.share);
        }
        let now = Timestamp::now();
        let me = format!("{}{}", self.members, own.instance);
        if let LeaseClaim::Held(lease) = checkpoints.claim_lease(&me, &own.instance, now, own.lease).await? {
            view.member_token = Some(lease.token);
        }
        let mut live: Vec<String> = checkpoints
            .leases()
            .await?
            .into_iter()
            .filter(|l| l.subscriber.starts_with(&self.members) && l.expires_at > now)
            .map(|l| l.owner)
            .collect();
        live.push(own.instance.to_string());
        live.sort();
        live.dedup();
        let members = u32::try_from(live.len()).unwrap_or(u32::MAX).max(1);
        let rank = live.iter().position(|m| **m == *own.instance).unwrap_or(0);
        let rank = u32::try_from(rank).unwrap_or(u32::MAX);
        view.share = self.count / members + u32::from(rank < self.count % members);
        view.refreshed = Some(Instant::now());
        Ok(view.share)
    }

    /// Whether this instance may claim one more segment.
    pub(crate) fn has_room(&self, share: u32) -> bool {
        self.held.lock().len() < share as usize
    }

    /// Whether segment `index`, held here, is one too many for `share`:
    /// it is then counted as released (the caller gives its lease up).
    pub(crate) fn release_if_over(&self, index: u32, share: u32) -> bool {
        let mut held = self.held.lock();
        if held.len() > share as usize && held.remove(&index) {
            return true;
        }
        false
    }

    /// Segment `index` is held here now.
    pub(crate) fn claimed(&self, index: u32) {
        self.held.lock().insert(index);
    }

    /// Segment `index` is no longer held here.
    pub(crate) fn dropped(&self, index: u32) {
        self.held.lock().remove(&index);
    }

    /// Ends this instance's membership (at shutdown), so the others count
    /// it out at once.
    pub(crate) async fn leave(&self, checkpoints: &dyn CheckpointStore, own: &Ownership) {
        let token = {
            let mut view = self.view.lock().await;
            view.left = true;
            view.member_token.take()
        };
        if let Some(token) = token {
            let me = format!("{}{}", self.members, own.instance);
            if let Err(e) = checkpoints.release_lease(&me, token).await {
                tracing::warn!(member = %me, error = %e, "cannot end the membership; it expires by itself");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stream_has_one_segment_and_the_hash_never_changes() {
        let stream = StreamId::new("account", "42");
        // Fixed values (XXH3 of "\x1faccount\x1f<id>", checked against
        // Python's `xxhash`): a change of the hash would move streams
        // between stored checkpoints.
        assert_eq!(segment_of(&stream, 1), 0);
        assert_eq!(
            segment_of(&stream, 1 << 31),
            (2_005_021_412_720_489_842_u64 % (1 << 31)) as u32
        );
        assert_eq!(
            (0..8)
                .map(|i| segment_of(&StreamId::new("account", i.to_string()), 4))
                .collect::<Vec<_>>(),
            [3, 0, 2, 2, 2, 3, 3, 1]
        );
        let tenant =
            crate::domain::ids::TenantId::new("acme").map(|t| StreamId::new("account", "42").in_tenant(Some(t)));
        assert!(tenant.is_ok_and(|t| segment_of(&t, 1 << 31) != segment_of(&stream, 1 << 31)));
    }

    #[test]
    fn streams_spread_over_the_segments() {
        let mut per = [0u32; 4];
        for i in 0..4000 {
            per[segment_of(&StreamId::new("account", format!("acc-{i}")), 4) as usize] += 1;
        }
        assert!(per.iter().all(|n| (800..1200).contains(n)), "{per:?}");
    }

    #[test]
    fn names() {
        assert_eq!(segment_name("projection:p", 0, 1), "projection:p");
        assert_eq!(segment_name("projection:p", 2, 4), "projection:p[2/4]");
    }
}
