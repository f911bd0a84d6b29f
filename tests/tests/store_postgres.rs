//! The exported conformance suites against PostgreSQL
//! (`INTERLOCK_POSTGRES_URL`; each test in a schema of its own).

use interlock_tests::services::postgres;

interlock::event_store_conformance!(postgres_event_store, postgres);
interlock::snapshot_store_conformance!(postgres_snapshot_store, postgres);
interlock::idempotency_store_conformance!(postgres_idempotency_store, postgres);
interlock::checkpoint_store_conformance!(postgres_checkpoint_store, postgres);
interlock::dead_letter_store_conformance!(postgres_dead_letter_store, postgres);
interlock::saga_state_store_conformance!(postgres_saga_state_store, postgres);
