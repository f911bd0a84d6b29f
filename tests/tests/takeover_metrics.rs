//! Every takeover of a subscriber counts in the
//! `interlock_subscriber_takeovers_total` metric, by subscriber and
//! instance. (Its own test binary: it installs the process's recorder.)

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use interlock::ProjectionConfig;
use interlock::prelude::*;
use interlock::store::{MemoryCheckpointStore, MemoryEventStore};
use interlock_tests::bank::*;
use metrics_util::debugging::{DebugValue, DebuggingRecorder, Snapshotter};

#[derive(Default)]
struct Deposits;

#[projection(name = "tests.metered", model = durable)]
impl Deposits {
    #[handles_event]
    fn deposited(&mut self, _: &MoneyDeposited) {}
}

/// The takeovers of the projection counted so far, by instance (the
/// debugging recorder's snapshots hand out counters' increments since the
/// last snapshot, so they are added up here).
struct Takeovers {
    snapshotter: Snapshotter,
    totals: parking_lot::Mutex<BTreeMap<String, u64>>,
}

impl Takeovers {
    fn of(&self, instance: &str) -> u64 {
        let mut totals = self.totals.lock();
        for (key, .., value) in self.snapshotter.snapshot().into_vec() {
            let key = key.key();
            let label = |name: &str| key.labels().find(|l| l.key() == name).map(|l| l.value().to_owned());
            if key.name() != "interlock_subscriber_takeovers_total"
                || label("subscriber").as_deref() != Some("projection:tests.metered")
            {
                continue;
            }
            if let (Some(instance), DebugValue::Counter(n)) = (label("instance"), value) {
                *totals.entry(instance).or_default() += n;
            }
        }
        totals.get(instance).copied().unwrap_or(0)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_takeover_is_counted_by_subscriber_and_instance() {
    let recorder = DebuggingRecorder::new();
    let counted = Takeovers {
        snapshotter: recorder.snapshotter(),
        totals: parking_lot::Mutex::default(),
    };
    recorder.install().expect("the only recorder of this test binary");

    let store = Arc::new(MemoryEventStore::new());
    let checkpoints = Arc::new(MemoryCheckpointStore::new());
    let instance = |id: &'static str| {
        Application::builder()
            .shared_event_store(store.clone())
            .checkpoint_store(Arc::clone(&checkpoints))
            .projection_with(Deposits, ProjectionConfig::catch_up())
            .instance_id(id)
            .subscriber_leases(Duration::from_secs(3), Duration::from_millis(50))
            .build()
    };
    let until = async |instance: &str, count: u64| {
        let started = Instant::now();
        while counted.of(instance) < count && started.elapsed() < Duration::from_secs(5) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        counted.of(instance)
    };
    let a = instance("a").await.expect("build");
    assert_eq!(until("a", 1).await, 1, "the first instance took the projection");
    let b = instance("b").await.expect("build");
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(counted.of("b"), 0, "the lease is a's");
    a.shutdown();
    assert_eq!(until("b", 1).await, 1, "b took it over when a released it");
    assert_eq!(counted.of("a"), 1);
    b.shutdown();
}
