//! The [`SnapshotStore`] conformance suite.

use bytes::Bytes;

use crate::domain::ids::{StreamId, Timestamp, Version};
use crate::store::{Snapshot, SnapshotStore};

fn snapshot(version: u64, state_version: u32, payload: &'static str) -> Snapshot {
    Snapshot {
        version: Version(version),
        state_version,
        payload: Bytes::from_static(payload.as_bytes()),
        taken_at: Timestamp(1_700_000_000_000_000 + version as i64),
    }
}

fn stream() -> StreamId {
    StreamId::new("conf.snap", ulid::Ulid::new().to_string())
}

/// A saved snapshot loads back whole; a stream without one loads `None`.
pub async fn save_and_load<S: SnapshotStore>(store: S) {
    let s = stream();
    assert_eq!(store.load(&s).await.expect("load"), None);
    let snap = snapshot(10, 3, r#"{"balance":5}"#);
    store.save(&s, snap.clone()).await.expect("save");
    assert_eq!(store.load(&s).await.expect("load"), Some(snap));
}

/// A later snapshot replaces an earlier one; an earlier one never replaces a later one.
pub async fn latest_wins<S: SnapshotStore>(store: S) {
    let s = stream();
    store.save(&s, snapshot(10, 1, "{}")).await.expect("save");
    store.save(&s, snapshot(20, 1, r#"{"v":20}"#)).await.expect("save");
    store.save(&s, snapshot(15, 1, r#"{"v":15}"#)).await.expect("save");
    assert_eq!(
        store.load(&s).await.expect("load"),
        Some(snapshot(20, 1, r#"{"v":20}"#))
    );
}

/// Snapshots of different streams do not mix.
pub async fn streams_are_isolated<S: SnapshotStore>(store: S) {
    let (a, b) = (stream(), stream());
    store.save(&a, snapshot(1, 1, r#"{"a":1}"#)).await.expect("save");
    assert_eq!(store.load(&b).await.expect("load"), None);
    store.save(&b, snapshot(2, 1, r#"{"b":2}"#)).await.expect("save");
    assert_eq!(store.load(&a).await.expect("load"), Some(snapshot(1, 1, r#"{"a":1}"#)));
}

/// A deleted snapshot is gone; other streams keep theirs; deleting a stream
/// without one is not an error.
pub async fn delete_removes_one_stream<S: SnapshotStore>(store: S) {
    let (a, b) = (stream(), stream());
    store.save(&a, snapshot(3, 1, "{}")).await.expect("save");
    store.save(&b, snapshot(4, 1, "{}")).await.expect("save");
    store.delete(&a).await.expect("delete");
    assert_eq!(store.load(&a).await.expect("load"), None);
    assert_eq!(store.load(&b).await.expect("load"), Some(snapshot(4, 1, "{}")));
    store.delete(&a).await.expect("delete again");
    // A snapshot saved after the delete is kept, even of an older version.
    store.save(&a, snapshot(1, 1, "{}")).await.expect("save");
    assert_eq!(store.load(&a).await.expect("load"), Some(snapshot(1, 1, "{}")));
}
