//! The exported conformance suites against the in-memory backends.

use interlock::store::MemoryAggregateCache;
use interlock::store::MemoryEventStore;
use interlock::store::MemoryIdempotencyStore;
use interlock::store::MemorySnapshotStore;

interlock::event_store_conformance!(memory_event_store, || async { Some(MemoryEventStore::new()) });
interlock::aggregate_cache_conformance!(memory_aggregate_cache, || async {
    Some(MemoryAggregateCache::new(100))
});
interlock::snapshot_store_conformance!(memory_snapshot_store, || async { Some(MemorySnapshotStore::new()) });
interlock::idempotency_store_conformance!(memory_idempotency_store, || async {
    Some(MemoryIdempotencyStore::new())
});
interlock::checkpoint_store_conformance!(memory_checkpoint_store, || async {
    Some(interlock::store::MemoryCheckpointStore::new())
});
interlock::dead_letter_store_conformance!(memory_dead_letter_store, || async {
    Some(interlock::store::MemoryDeadLetterStore::new())
});
interlock::saga_state_store_conformance!(memory_saga_state_store, || async {
    Some(interlock::store::MemorySagaStateStore::new())
});
