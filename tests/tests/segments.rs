//! A projection split into segments by stream: the segments spread over
//! the instances sharing a store, each event is handled once and in its
//! stream's order, an instance that leaves hands its segments over, and
//! the count of segments can change without applying anything twice.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use interlock::prelude::*;
use interlock::store::{EventStore, MemoryCheckpointStore, MemoryEventStore};
use interlock::{BuildError, ProjectionConfig, SubscriptionError};
use interlock_tests::bank::*;

/// Long enough that a loaded machine never lets a live owner's lease
/// lapse (which would move segments and make the shares below flap).
const LEASE: Duration = Duration::from_secs(3);

/// What one handled event leaves in the shared "table": which instance
/// handled it, its stream, version and id.
type Row = (String, String, u64, String);

/// A durable projection writing to a table all instances share.
struct SegmentLog {
    instance: String,
    rows: Arc<parking_lot::Mutex<Vec<Row>>>,
}

#[projection(name = "tests.segment_log", model = durable)]
impl SegmentLog {
    #[handles_event]
    fn deposited(&mut self, _: &MoneyDeposited, meta: &EventMeta) {
        self.rows.lock().push((
            self.instance.clone(),
            meta.stream.aggregate_id().to_owned(),
            meta.version.0,
            meta.event_id.to_string(),
        ));
    }
}

struct Shared {
    store: Arc<MemoryEventStore>,
    checkpoints: Arc<MemoryCheckpointStore>,
    rows: Arc<parking_lot::Mutex<Vec<Row>>>,
    accounts: Vec<Ulid>,
    deposits: u64,
}

impl Shared {
    async fn new(accounts: usize) -> Self {
        let store = Arc::new(MemoryEventStore::new());
        let writer = app_on(Arc::clone(&store)).await;
        let mut ids = Vec::new();
        for _ in 0..accounts {
            let account = Ulid::new();
            writer
                .dispatch(OpenAccount {
                    account,
                    owner: "s".into(),
                })
                .await
                .expect("open");
            ids.push(account);
        }
        Self {
            store,
            checkpoints: Arc::new(MemoryCheckpointStore::new()),
            rows: Arc::default(),
            accounts: ids,
            deposits: 0,
        }
    }

    async fn deposit(&mut self, n: u64) {
        let writer = app_on(Arc::clone(&self.store)).await;
        for _ in 0..n {
            self.deposits += 1;
            let account = self.accounts[(self.deposits as usize) % self.accounts.len()];
            writer
                .dispatch(Deposit {
                    account,
                    amount: self.deposits,
                    id: None,
                })
                .await
                .expect("deposit");
        }
    }

    async fn instance(&self, id: &str, config: ProjectionConfig, background: bool) -> Application {
        let builder = Application::builder()
            .shared_event_store(self.store.clone())
            .checkpoint_store(Arc::clone(&self.checkpoints))
            .projection_with(
                SegmentLog {
                    instance: id.to_owned(),
                    rows: Arc::clone(&self.rows),
                },
                config,
            )
            .background(background);
        let builder = if id.is_empty() {
            builder
        } else {
            builder
                .instance_id(id)
                .subscriber_leases(LEASE, Duration::from_millis(50))
        };
        builder.build().await.expect("build")
    }

    /// Every deposit handled exactly once, and each stream's in order.
    fn assert_each_once_in_order(&self) {
        let rows = self.rows.lock().clone();
        let ids: BTreeSet<&str> = rows.iter().map(|r| r.3.as_str()).collect();
        assert_eq!(ids.len(), rows.len(), "no event handled twice");
        assert_eq!(rows.len() as u64, self.deposits, "every deposit handled");
        let mut last: BTreeMap<&str, u64> = BTreeMap::new();
        for (_, stream, version, _) in &rows {
            let previous = last.insert(stream, *version).unwrap_or(0);
            assert!(
                *version > previous,
                "stream {stream}: version {version} after {previous}"
            );
        }
    }
}

/// Who owns each segment now (unexpired leases).
async fn owners(app: &Application) -> BTreeMap<String, String> {
    let now = interlock::Timestamp::now();
    app.subscriber_statuses()
        .await
        .expect("statuses")
        .into_iter()
        .filter(|s| s.name.starts_with("projection:tests.segment_log["))
        .filter_map(|s| {
            let owner = s.owner.filter(|_| s.lease_expires_at.is_some_and(|t| t > now))?;
            Some((s.name, owner))
        })
        .collect()
}

/// Waits until the four segments are held as `shares` (instance -> count).
async fn until_shared(app: &Application, shares: &[(&str, usize)], within: Duration) -> Duration {
    let started = Instant::now();
    let want: BTreeMap<String, usize> = shares.iter().map(|(i, n)| ((*i).to_owned(), *n)).collect();
    let mut seen = BTreeMap::new();
    while started.elapsed() < within {
        let owners = owners(app).await;
        seen = BTreeMap::new();
        for owner in owners.values() {
            *seen.entry(owner.clone()).or_insert(0) += 1;
        }
        if owners.len() == 4 && seen == want {
            return started.elapsed();
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("segments held as {seen:?}, not {want:?}, after {within:?}");
}

async fn until_handled(shared: &Shared, within: Duration) {
    let started = Instant::now();
    while started.elapsed() < within && (shared.rows.lock().len() as u64) < shared.deposits {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Anything applied twice would show now.
    tokio::time::sleep(Duration::from_millis(100)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_segments_spread_over_instances_and_move_when_one_leaves() {
    let mut shared = Shared::new(16).await;
    shared.deposit(100).await;
    let four = || ProjectionConfig::catch_up().segments(4);

    // One instance holds all four.
    let a = shared.instance("a", four(), true).await;
    until_shared(&a, &[("a", 4)], Duration::from_secs(5)).await;
    // A second and a third join: the shares become 2 + 1 + 1 (the first
    // members by id take the remainder).
    let b = shared.instance("b", four(), true).await;
    until_shared(&a, &[("a", 2), ("b", 2)], Duration::from_secs(5)).await;
    shared.deposit(50).await;
    let c = shared.instance("c", four(), true).await;
    until_shared(&a, &[("a", 2), ("b", 1), ("c", 1)], Duration::from_secs(5)).await;
    shared.deposit(50).await;
    until_handled(&shared, Duration::from_secs(5)).await;
    shared.assert_each_once_in_order();
    let handled_by: BTreeSet<String> = shared.rows.lock().iter().map(|r| r.0.clone()).collect();
    assert_eq!(
        handled_by.len(),
        3,
        "all three instances did some of the work: {handled_by:?}"
    );

    // One leaves: it releases its segments and membership, the others
    // take them over at once (no lease to wait out).
    a.shutdown();
    let moved = until_shared(&b, &[("b", 2), ("c", 2)], Duration::from_secs(5)).await;
    assert!(moved < LEASE, "handed over in {moved:?}, before the lease ends");
    shared.deposit(50).await;
    until_handled(&shared, Duration::from_secs(5)).await;
    shared.assert_each_once_in_order();

    // The status of the split projection sums its segments up.
    let status = b
        .projection_handle::<SegmentLog>()
        .expect("handle")
        .status()
        .await
        .expect("status");
    assert_eq!(status.name, "projection:tests.segment_log");
    assert_eq!(status.segments.len(), 4);
    assert!(status.owned_here);
    assert_eq!(status.owner, None, "two instances own its segments");
    b.shutdown();
    c.shutdown();
}

#[tokio::test]
async fn segments_in_one_instance_handle_every_event_once() {
    let mut shared = Shared::new(7).await;
    shared.deposit(60).await;
    let app = shared
        .instance("", ProjectionConfig::catch_up().segments(3), false)
        .await;
    let handle = app.projection_handle::<SegmentLog>().expect("handle");
    handle.catch_up().await.expect("catch up");
    shared.assert_each_once_in_order();
    let statuses = app.subscriber_statuses().await.expect("statuses");
    let names: Vec<&str> = statuses.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "projection:tests.segment_log[0/3]",
            "projection:tests.segment_log[1/3]",
            "projection:tests.segment_log[2/3]"
        ]
    );
    assert!(statuses.iter().all(|s| s.events_behind == 0 && s.owner.is_none()));
}

#[tokio::test]
async fn changing_the_count_of_segments_applies_nothing_twice() {
    let mut shared = Shared::new(9).await;
    shared.deposit(40).await;
    // Unsplit first; then 2 segments taking over from it; then 5 from 2.
    let whole = shared.instance("", ProjectionConfig::catch_up(), false).await;
    whole
        .projection_handle::<SegmentLog>()
        .expect("handle")
        .catch_up()
        .await
        .expect("catch up");
    drop(whole);
    shared.deposit(30).await;

    let two = shared
        .instance("", ProjectionConfig::catch_up().segments(2).resegment_from(1), false)
        .await;
    let handle = two.projection_handle::<SegmentLog>().expect("handle");
    // Only part of the way: the two segments end at different positions.
    let head = shared.store.head().await.expect("head");
    let first_segment = two.subscriber_statuses().await.expect("statuses");
    assert_eq!(first_segment[0].checkpoint, first_segment[1].checkpoint);
    handle.catch_up().await.expect("catch up");
    assert_eq!(handle.status().await.expect("status").checkpoint, head);
    // A rebuild would replay into the old checkpoints' skips: refused.
    assert!(matches!(
        two.rebuild_projection(SegmentLog {
            instance: String::new(),
            rows: Arc::default()
        })
        .await,
        Err(SubscriptionError::Resegmenting { .. })
    ));
    shared.assert_each_once_in_order();
    drop(two);
    shared.deposit(30).await;

    let five = shared
        .instance("", ProjectionConfig::catch_up().segments(5).resegment_from(2), false)
        .await;
    five.projection_handle::<SegmentLog>()
        .expect("handle")
        .catch_up()
        .await
        .expect("catch up");
    shared.assert_each_once_in_order();
}

#[tokio::test]
async fn a_split_that_cannot_work_fails_the_build() {
    let shared = Shared::new(1).await;
    let build = |config: ProjectionConfig| {
        Application::builder()
            .shared_event_store(shared.store.clone())
            .projection_with(
                SegmentLog {
                    instance: String::new(),
                    rows: Arc::default(),
                },
                config,
            )
            .background(false)
            .build()
    };
    for (config, says) in [
        (ProjectionConfig::catch_up().segments(0), "must be 1 to 1024, not 0"),
        (
            ProjectionConfig::catch_up().segments(5000),
            "must be 1 to 1024, not 5000",
        ),
        (ProjectionConfig::inline().segments(2), "an inline projection"),
        (
            ProjectionConfig::catch_up().segments(3).resegment_from(3),
            "names the count it already has",
        ),
        (
            ProjectionConfig::catch_up().resegment_from(0),
            "`resegment_from` must be 1 to 1024",
        ),
    ] {
        match build(config).await {
            Err(BuildError::InvalidSubscriberConfig { setting, reason, .. }) => {
                assert_eq!(setting, "segments");
                assert!(reason.contains(says), "{reason}");
            }
            other => panic!("expected a segments error, got {:?}", other.map(|_| ())),
        }
    }
}
