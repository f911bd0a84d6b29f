//! Conformance suites for backend implementers (feature `testing`).
//!
//! Every storage trait has a suite of async checks, generic over the
//! implementation, and a macro that turns the suite into `#[test]`s:
//!
//! ```ignore
//! interlock::event_store_conformance!(memory, || async { Some(MemoryEventStore::new()) });
//! ```
//!
//! The factory is called once per test and returns a fresh, empty store, or
//! `None` when the backend is not reachable: the test then prints a loud
//! "skipped" line, or fails when `INTERLOCK_REQUIRE_SERVICES=1`.

#![allow(clippy::panic, clippy::unwrap_used, clippy::expect_used)] // assertions are the point

pub mod aggregate_cache;
pub mod checkpoint_store;
pub mod dead_letter_store;
pub mod event_store;
pub mod idempotency_store;
pub mod saga_state_store;
pub mod snapshot_store;
pub mod transport;

use std::future::Future;

/// Runs one conformance check on a multi-threaded runtime, with a store the
/// factory makes on that runtime (connection pools are tied to the runtime
/// that opened them). A factory returning `None` (an unreachable backend)
/// is a loud skip, or a failure when `INTERLOCK_REQUIRE_SERVICES=1`.
pub fn run<S, M, MFut, F, Fut>(suite: &str, case: &str, factory: M, check: F)
where
    M: FnOnce() -> MFut,
    MFut: Future<Output = Option<S>>,
    F: FnOnce(S) -> Fut,
    Fut: Future<Output = ()>,
{
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
        .expect("a tokio runtime");
    runtime.block_on(async move {
        match factory().await {
            Some(store) => check(store).await,
            None => skip_or_fail(&format!("{suite}::{case}")),
        }
    });
}

/// Whether tests must fail instead of skipping when a service is missing.
#[must_use]
pub fn services_required() -> bool {
    std::env::var("INTERLOCK_REQUIRE_SERVICES").is_ok_and(|v| v == "1")
}

/// Reports a missing backend: a loud skip, or a failure under
/// `INTERLOCK_REQUIRE_SERVICES=1`.
pub fn skip_or_fail(what: &str) {
    if services_required() {
        panic!("{what}: the backend service is not reachable and INTERLOCK_REQUIRE_SERVICES=1");
    }
    eprintln!("!!!!!!!! SKIPPED {what}: backend service not reachable (set its URL variable to run it) !!!!!!!!");
}

/// Generates one `#[test]` per case of a suite, in a module named `$name`.
#[doc(hidden)]
#[macro_export]
macro_rules! __conformance_tests {
    ($suite:ident, $name:ident, $factory:expr, [$($case:ident),* $(,)?]) => {
        mod $name {
            #[allow(unused_imports)]
            use super::*;
            $(
                #[test]
                fn $case() {
                    $crate::testing::run(stringify!($name), stringify!($case), $factory, $crate::testing::$suite::$case);
                }
            )*
        }
    };
}

/// Runs the [`EventStore`](crate::store::EventStore) conformance suite as
/// tests in module `$name`; `$factory` is `|| async { Option<Store> }`.
#[macro_export]
macro_rules! event_store_conformance {
    ($name:ident, $factory:expr) => {
        $crate::__conformance_tests!(
            event_store,
            $name,
            $factory,
            [
                append_and_read_back,
                append_now_is_append_or_nothing,
                metadata_round_trips,
                empty_stream,
                empty_append_is_a_no_op,
                expected_version_conflict,
                expected_any,
                read_stream_ranges,
                streams_are_isolated_by_aggregate_type,
                global_order_and_paging,
                filters,
                atomic_batch_under_race,
                concurrent_appends_lose_nothing,
                application_contention,
                rewrite_in_place,
                head_and_watch,
                scans_both_ways,
                atomic_append_across_streams,
                conditions_on_scopes,
                category_claims_under_contention,
                log_counter_under_contention,
                tenants_are_isolated,
            ]
        );
    };
}

/// Runs the [`AggregateCache`](crate::store::AggregateCache) conformance
/// suite as tests in module `$name`.
#[macro_export]
macro_rules! aggregate_cache_conformance {
    ($name:ident, $factory:expr) => {
        $crate::__conformance_tests!(
            aggregate_cache,
            $name,
            $factory,
            [put_then_take, later_version_wins, invalidate_drops_one_stream]
        );
    };
}

/// Runs the [`SnapshotStore`](crate::store::SnapshotStore) conformance
/// suite as tests in module `$name`.
#[macro_export]
macro_rules! snapshot_store_conformance {
    ($name:ident, $factory:expr) => {
        $crate::__conformance_tests!(
            snapshot_store,
            $name,
            $factory,
            [
                save_and_load,
                latest_wins,
                streams_are_isolated,
                delete_removes_one_stream
            ]
        );
    };
}

/// Runs the [`IdempotencyStore`](crate::store::IdempotencyStore)
/// conformance suite as tests in module `$name`.
#[macro_export]
macro_rules! idempotency_store_conformance {
    ($name:ident, $factory:expr) => {
        $crate::__conformance_tests!(
            idempotency_store,
            $name,
            $factory,
            [
                claim_complete_replay,
                release_allows_retry,
                expired_claims_and_purge,
                one_claim_wins
            ]
        );
    };
}

/// Runs the [`CheckpointStore`](crate::store::CheckpointStore)
/// conformance suite as tests in module `$name`.
#[macro_export]
macro_rules! checkpoint_store_conformance {
    ($name:ident, $factory:expr) => {
        $crate::__conformance_tests!(
            checkpoint_store,
            $name,
            $factory,
            [
                save_and_load,
                reset_to_start,
                advance_only_moves_forward,
                subscribers_are_isolated,
                leases_are_claimed_renewed_and_taken_over,
                checkpoint_saves_are_fenced_by_the_lease,
                one_owner_under_contention,
            ]
        );
    };
}

/// Runs the [`DeadLetterStore`](crate::store::DeadLetterStore)
/// conformance suite as tests in module `$name`.
#[macro_export]
macro_rules! dead_letter_store_conformance {
    ($name:ident, $factory:expr) => {
        $crate::__conformance_tests!(
            dead_letter_store,
            $name,
            $factory,
            [park_and_list, repark_replaces, remove]
        );
    };
}

/// Runs the [`SagaStateStore`](crate::store::SagaStateStore) conformance
/// suite as tests in module `$name`.
#[macro_export]
macro_rules! saga_state_store_conformance {
    ($name:ident, $factory:expr) => {
        $crate::__conformance_tests!(
            saga_state_store,
            $name,
            $factory,
            [create_save_load, optimistic_versioning, deadlines]
        );
    };
}

/// Runs the [`EventTransport`](crate::store::EventTransport) conformance
/// suite as tests in module `$name`; `$factory` is
/// `|| async { Option<(Transport, Transport)> }`: two transports on the
/// same broker and names, as two processes would open them.
#[macro_export]
macro_rules! transport_conformance {
    ($name:ident, $factory:expr) => {
        $crate::__conformance_tests!(
            transport,
            $name,
            $factory,
            [
                publish_order_per_stream,
                envelope_round_trips,
                unacknowledged_deliveries_come_again,
                consumers_have_their_own_cursors,
                redelivered_after_a_crash,
                receive_waits_for_a_publish,
                republished_events_are_handled_once,
            ]
        );
    };
}
