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
