//! The [`DeadLetterStore`] conformance suite.

use bytes::Bytes;

use crate::domain::ids::{EventId, Position, SchemaVersion, StreamId, Timestamp, Version};
use crate::store::{DeadLetter, DeadLetterStore};
use crate::store::{EventMetadata, RecordedEvent};

fn letter(subscriber: &str, position: u64, error: &str) -> DeadLetter {
    DeadLetter {
        subscriber: subscriber.to_owned(),
        event: RecordedEvent {
            event_id: EventId::new(),
            stream: StreamId::new("conf.dlq", "1"),
            version: Version(position),
            position: Position(position),
            name: "conf.poison".into(),
            schema_version: SchemaVersion(2),
            payload: Bytes::from(format!(r#"{{"n":{position}}}"#)),
            metadata: EventMetadata {
                timestamp: Some(Timestamp(1_700_000_000_000_000)),
                ..EventMetadata::default()
            },
        },
        error: error.to_owned(),
        attempts: 5,
        parked_at: Timestamp(1_700_000_000_000_001),
    }
}

fn subscriber() -> String {
    format!("conf.dlq:{}", ulid::Ulid::new())
}

/// Parked letters list back whole, in position order, per subscriber.
pub async fn park_and_list<S: DeadLetterStore>(store: S) {
    let (a, b) = (subscriber(), subscriber());
    let late = letter(&a, 9, "late");
    let early = letter(&a, 3, "early: \"quoted\" ü");
    store.park(late.clone()).await.expect("park");
    store.park(early.clone()).await.expect("park");
    store.park(letter(&b, 5, "other")).await.expect("park");
    assert_eq!(store.list(&a).await.expect("list"), vec![early, late]);
    assert_eq!(store.list(&b).await.expect("list").len(), 1);
}

/// Parking the same event again replaces its letter (a failed replay).
pub async fn repark_replaces<S: DeadLetterStore>(store: S) {
    let a = subscriber();
    let mut l = letter(&a, 4, "first");
    store.park(l.clone()).await.expect("park");
    l.attempts = 6;
    l.error = "second".into();
    store.park(l.clone()).await.expect("park");
    assert_eq!(store.list(&a).await.expect("list"), vec![l]);
}

/// A removed letter is gone; others stay.
pub async fn remove<S: DeadLetterStore>(store: S) {
    let a = subscriber();
    let (one, two) = (letter(&a, 1, "one"), letter(&a, 2, "two"));
    store.park(one.clone()).await.expect("park");
    store.park(two.clone()).await.expect("park");
    store.remove(&a, one.event.event_id).await.expect("remove");
    assert_eq!(store.list(&a).await.expect("list"), vec![two]);
}
