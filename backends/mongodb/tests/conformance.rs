//! The exported conformance suites against a MongoDB-wire server
//! (`INTERLOCK_MONGODB_URI`, started by `scripts/mongodb.sh`; each test in
//! a database of its own).

// A required server that cannot be opened fails the test loudly.
#![allow(clippy::panic)]

use interlock_mongodb::{MongoConfig, MongoStore};

/// A store in a fresh database, or `None` without a URI (a loud skip, or
/// a failure under `INTERLOCK_REQUIRE_SERVICES=1`).
async fn mongodb() -> Option<MongoStore> {
    let Some(uri) = std::env::var(MongoConfig::URI_VAR).ok().filter(|u| !u.is_empty()) else {
        interlock::testing::skip_or_fail("MongoDB (set INTERLOCK_MONGODB_URI; scripts/mongodb.sh starts a server)");
        return None;
    };
    let database = format!("t_{}", ulid::Ulid::new().to_string().to_lowercase());
    match MongoStore::open(MongoConfig::new(uri).database(database)).await {
        Ok(store) => Some(store),
        Err(e) => {
            if interlock::testing::services_required() {
                panic!("MongoDB is required but cannot be opened: {e}");
            }
            eprintln!("!!!!!!!! MongoDB not reachable: {e}");
            None
        }
    }
}

interlock::event_store_conformance!(mongodb_event_store, mongodb);
interlock::snapshot_store_conformance!(mongodb_snapshot_store, mongodb);
interlock::checkpoint_store_conformance!(mongodb_checkpoint_store, mongodb);
interlock::idempotency_store_conformance!(mongodb_idempotency_store, mongodb);
interlock::dead_letter_store_conformance!(mongodb_dead_letter_store, mongodb);
interlock::saga_state_store_conformance!(mongodb_saga_state_store, mongodb);

#[tokio::test]
async fn health_and_statistics() {
    use interlock::store::{EventMetadata, EventStore, ExpectedVersion, NewEvent};
    let Some(store) = mongodb().await else { return };
    let health = store.health_check().await;
    assert!(
        health.reachable && health.latency.is_some() && health.error.is_none(),
        "{health:?}"
    );
    let event = |name: &'static str| NewEvent {
        event_id: interlock::EventId::new(),
        name: name.into(),
        schema_version: interlock::SchemaVersion(1),
        payload: bytes::Bytes::from_static(b"{}"),
        metadata: EventMetadata::default(),
    };
    for (kind, id) in [("a.type", "1"), ("a.type", "2"), ("b.type", "1")] {
        store
            .append(
                &interlock::StreamId::new(kind, id),
                ExpectedVersion::Any,
                vec![event("x.happened"), event("y.happened")],
            )
            .await
            .expect("append");
    }
    let stats = store.statistics().await.expect("statistics");
    assert_eq!((stats.events, stats.streams, stats.snapshots, stats.head), (6, 3, 0, 6));
    assert_eq!(stats.events_by_name.get("x.happened"), Some(&3));
    assert_eq!(stats.events_by_aggregate_type.get("a.type"), Some(&4));
}
