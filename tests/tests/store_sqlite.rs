//! The exported conformance suites against SQLite, in a file and in memory.

use interlock_tests::services::{sqlite_file, sqlite_memory};

interlock::event_store_conformance!(sqlite_file_event_store, sqlite_file);
interlock::snapshot_store_conformance!(sqlite_file_snapshot_store, sqlite_file);
interlock::idempotency_store_conformance!(sqlite_file_idempotency_store, sqlite_file);
interlock::checkpoint_store_conformance!(sqlite_file_checkpoint_store, sqlite_file);
interlock::dead_letter_store_conformance!(sqlite_file_dead_letter_store, sqlite_file);
interlock::saga_state_store_conformance!(sqlite_file_saga_state_store, sqlite_file);

interlock::event_store_conformance!(sqlite_memory_event_store, sqlite_memory);
interlock::snapshot_store_conformance!(sqlite_memory_snapshot_store, sqlite_memory);
interlock::idempotency_store_conformance!(sqlite_memory_idempotency_store, sqlite_memory);
interlock::checkpoint_store_conformance!(sqlite_memory_checkpoint_store, sqlite_memory);
interlock::dead_letter_store_conformance!(sqlite_memory_dead_letter_store, sqlite_memory);
interlock::saga_state_store_conformance!(sqlite_memory_saga_state_store, sqlite_memory);
