//! The [`CheckpointStore`] conformance suite.

use std::sync::Arc;

use crate::domain::ids::Position;
use crate::store::CheckpointStore;

fn name(prefix: &str) -> String {
    format!("{prefix}:{}", ulid::Ulid::new())
}

/// A saved checkpoint loads back; an unknown subscriber has none.
pub async fn save_and_load<S: CheckpointStore>(store: S) {
    let sub = name("conf.cp");
    assert_eq!(store.load(&sub).await.expect("load"), None);
    store.save(&sub, Position(42)).await.expect("save");
    assert_eq!(store.load(&sub).await.expect("load"), Some(Position(42)));
    store.save(&sub, Position(43)).await.expect("save");
    assert_eq!(store.load(&sub).await.expect("load"), Some(Position(43)));
}

/// A checkpoint can be reset to the start (projection rebuild).
pub async fn reset_to_start<S: CheckpointStore>(store: S) {
    let sub = name("conf.cp_reset");
    store.save(&sub, Position(1000)).await.expect("save");
    store.save(&sub, Position::START).await.expect("reset");
    assert_eq!(store.load(&sub).await.expect("load"), Some(Position::START));
}

/// Subscribers' checkpoints are independent, also under concurrent saves.
pub async fn subscribers_are_isolated<S: CheckpointStore>(store: S) {
    let store = Arc::new(store);
    let names: Vec<String> = (0..8).map(|_| name("conf.cp_iso")).collect();
    let mut tasks = Vec::new();
    for (i, sub) in names.iter().enumerate() {
        let store = Arc::clone(&store);
        let sub = sub.clone();
        tasks.push(tokio::spawn(async move {
            for p in 1..=20u64 {
                store.save(&sub, Position(p * 100 + i as u64)).await.expect("save");
            }
        }));
    }
    for t in tasks {
        t.await.expect("join");
    }
    for (i, sub) in names.iter().enumerate() {
        assert_eq!(store.load(sub).await.expect("load"), Some(Position(2000 + i as u64)));
    }
}
