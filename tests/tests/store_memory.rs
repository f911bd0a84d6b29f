//! The exported conformance suites against the in-memory backends.

use interlock::MemoryEventStore;
use interlock::idempotency::MemoryIdempotencyStore;
use interlock::snapshot::MemorySnapshotStore;

interlock::event_store_conformance!(memory_event_store, || async { Some(MemoryEventStore::new()) });
interlock::snapshot_store_conformance!(memory_snapshot_store, || async { Some(MemorySnapshotStore::new()) });
interlock::idempotency_store_conformance!(memory_idempotency_store, || async {
    Some(MemoryIdempotencyStore::new())
});
interlock::checkpoint_store_conformance!(memory_checkpoint_store, || async {
    Some(interlock::subscription::MemoryCheckpointStore::new())
});
interlock::dead_letter_store_conformance!(memory_dead_letter_store, || async {
    Some(interlock::subscription::MemoryDeadLetterStore::new())
});
interlock::saga_state_store_conformance!(memory_saga_state_store, || async {
    Some(interlock::saga::MemorySagaStateStore::new())
});
