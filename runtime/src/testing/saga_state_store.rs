//! The [`SagaStateStore`] conformance suite.

use std::sync::Arc;

use bytes::Bytes;
use ulid::Ulid;

use crate::domain::ids::{CausationId, Position, SchemaVersion, Timestamp, Version};
use crate::store::StoreError;
use crate::store::{SagaChange, SagaFailure, SagaStateStore, ScheduledDeadline};

fn saga() -> String {
    format!("conf.saga_{}", Ulid::new())
}

fn save(state: &'static str, position: u64) -> SagaChange {
    SagaChange::Save {
        state: Bytes::from_static(state.as_bytes()),
        last_position: Position(position),
        schedule: Vec::new(),
        cancel: Vec::new(),
        failure: None,
    }
}

fn deadline(saga: &str, key: &str, due: i64) -> ScheduledDeadline {
    ScheduledDeadline {
        id: Ulid::new(),
        saga: saga.to_owned(),
        key: key.to_owned(),
        due: Timestamp(due),
        name: "conf.timeout".into(),
        schema_version: SchemaVersion(1),
        payload: Bytes::from_static(br#"{"k":1}"#),
        correlation_id: Some(crate::domain::ids::CorrelationId::new()),
    }
}

/// Instances are created at version 1, saved with +1, loaded back whole.
pub async fn create_save_load<S: SagaStateStore>(store: S) {
    let s = saga();
    assert_eq!(store.load(&s, "k").await.expect("load"), None);
    assert_eq!(
        store
            .apply(&s, "k", Version(0), save(r#"{"a":1}"#, 5))
            .await
            .expect("create"),
        Version(1)
    );
    assert_eq!(
        store
            .apply(&s, "k", Version(1), save(r#"{"a":2}"#, 9))
            .await
            .expect("save"),
        Version(2)
    );
    let instance = store.load(&s, "k").await.expect("load").expect("instance");
    assert_eq!(instance.state, Bytes::from_static(br#"{"a":2}"#));
    assert_eq!((instance.version, instance.last_position), (Version(2), Position(9)));
    assert_eq!(instance.failure, None);
    assert_eq!(store.load(&s, "other").await.expect("load"), None);

    // A failure recorded for compensation is kept whole, and cleared by
    // the next save without one.
    let failure = SagaFailure {
        during: "conf.step".into(),
        error: "refused: \"insufficient funds\"".into(),
        refused: true,
        cause: CausationId::Event(crate::domain::ids::EventId::new()),
        correlation_id: Some(crate::domain::ids::CorrelationId::new()),
    };
    let failed = SagaChange::Save {
        state: Bytes::from_static(br#"{"a":3}"#),
        last_position: Position(9),
        schedule: Vec::new(),
        cancel: Vec::new(),
        failure: Some(failure.clone()),
    };
    store
        .apply(&s, "k", Version(2), failed)
        .await
        .expect("record the failure");
    let instance = store.load(&s, "k").await.expect("load").expect("instance");
    assert_eq!(instance.failure, Some(failure));
    store.apply(&s, "k", Version(3), save("{}", 9)).await.expect("save");
    assert_eq!(
        store.load(&s, "k").await.expect("load").expect("instance").failure,
        None
    );
}

/// A stale expected version is a conflict and changes nothing.
pub async fn optimistic_versioning<S: SagaStateStore>(store: S) {
    let s = saga();
    store.apply(&s, "k", Version(0), save("{}", 1)).await.expect("create");
    for expected in [Version(0), Version(2)] {
        match store.apply(&s, "k", expected, save(r#"{"lost":true}"#, 2)).await {
            Err(StoreError::Conflict { actual, .. }) => assert_eq!(actual, Version(1)),
            other => panic!("expected a conflict, got {other:?}"),
        }
    }
    assert_eq!(
        store.load(&s, "k").await.expect("load").expect("instance").state,
        Bytes::from_static(b"{}")
    );
    // Concurrent writers on one version: exactly one wins.
    let store = Arc::new(store);
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let (store, s) = (Arc::clone(&store), s.clone());
        tasks.push(tokio::spawn(async move {
            store.apply(&s, "k", Version(1), save("{}", 3)).await.is_ok()
        }));
    }
    let mut wins = 0;
    for t in tasks {
        wins += usize::from(t.await.expect("join"));
    }
    assert_eq!(wins, 1);
}

/// Deadlines are due by time, earliest first, per saga; cancelled with the
/// save that handles them; all removed when the instance is deleted.
pub async fn deadlines<S: SagaStateStore>(store: S) {
    let (s, other) = (saga(), saga());
    let early = deadline(&s, "k", 100);
    let late = deadline(&s, "k", 300);
    let foreign = deadline(&other, "k", 50);
    let change = SagaChange::Save {
        state: Bytes::from_static(b"{}"),
        last_position: Position(1),
        schedule: vec![late.clone(), early.clone()],
        cancel: Vec::new(),
        failure: None,
    };
    store.apply(&s, "k", Version(0), change).await.expect("create");
    let change = SagaChange::Save {
        state: Bytes::from_static(b"{}"),
        last_position: Position(1),
        schedule: vec![foreign.clone()],
        cancel: Vec::new(),
        failure: None,
    };
    store.apply(&other, "k", Version(0), change).await.expect("create");
    assert!(store.due(&s, Timestamp(99), 10).await.expect("due").is_empty());
    assert_eq!(
        store.due(&s, Timestamp(100), 10).await.expect("due"),
        vec![early.clone()]
    );
    assert_eq!(
        store.due(&s, Timestamp(1000), 10).await.expect("due"),
        vec![early.clone(), late.clone()]
    );
    assert_eq!(
        store.due(&s, Timestamp(1000), 1).await.expect("due"),
        vec![early.clone()]
    );

    // Handling `early` cancels it in the same change.
    let change = SagaChange::Save {
        state: Bytes::from_static(br#"{"fired":1}"#),
        last_position: Position(1),
        schedule: Vec::new(),
        cancel: vec![early.id],
        failure: None,
    };
    assert!(store.is_scheduled(&s, early.id).await.expect("scheduled"));
    store.apply(&s, "k", Version(1), change).await.expect("save");
    assert!(!store.is_scheduled(&s, early.id).await.expect("fired"));
    assert!(store.is_scheduled(&s, late.id).await.expect("scheduled"));
    assert!(!store.is_scheduled(&other, late.id).await.expect("another saga's"));
    assert_eq!(
        store.due(&s, Timestamp(1000), 10).await.expect("due"),
        vec![late.clone()]
    );
    // A failed (conflicting) change cancels nothing.
    let stale = SagaChange::Save {
        state: Bytes::new(),
        last_position: Position(1),
        schedule: Vec::new(),
        cancel: vec![foreign.id],
        failure: None,
    };
    assert!(store.apply(&other, "k", Version(7), stale).await.is_err());
    assert_eq!(
        store.due(&other, Timestamp(1000), 10).await.expect("due"),
        vec![foreign]
    );

    store
        .apply(&s, "k", Version(2), SagaChange::Delete)
        .await
        .expect("delete");
    assert_eq!(store.load(&s, "k").await.expect("load"), None);
    assert!(store.due(&s, Timestamp(1000), 10).await.expect("due").is_empty());
    assert!(
        !store
            .is_scheduled(&s, late.id)
            .await
            .expect("deleted with the instance")
    );
}
