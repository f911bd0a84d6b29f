//! SQLite and PostgreSQL backends of Interlock, on sqlx.
//!
//! [`SqliteStore`] (feature `sqlite`, the embedded backend) and
//! [`PostgresStore`] (feature `postgres`) each implement every storage
//! trait of the runtime — `EventStore`, `SnapshotStore`, `IdempotencyStore`,
//! `CheckpointStore`, `DeadLetterStore`, `SagaStateStore`, `Outbox` — on one
//! database, and pass the runtime's conformance suites. Pass a store to
//! `ApplicationBuilder::backend` to use it for all of them. No feature is on
//! by default: enable the driver you use, and only it is compiled.
//!
//! Both are [`SqlStore`]s: the storage traits are written once, over the
//! [`Driver`](driver::Driver) contract (see [`driver`]), and each driver adds what differs
//! per database — its primitive calls, its batch append behind the
//! runtime's group committer (`interlock::store::GroupCommitter`), and its
//! way of opening. Concurrent appends share batches; settings in
//! `interlock::store::GroupCommit`.
//!
//! A SQL read model that shares a store's transactions (registered with
//! `ProjectionConfig::transactions(store)`, the store implementing
//! `interlock::store::ReadModelTransactions`; or by hand with
//! [`SqliteStore::begin`] and `save_checkpoint_in`) gets them as
//! [`SqliteTransaction`] / [`PostgresTransaction`]; it writes its own
//! statements with `sqlx` (0.9, the same driver feature) as a dependency of
//! its own — this crate does not re-export it.
//!
//! Queries are built at runtime from validated identifiers with every value
//! bound (no compile-time checked queries, so building needs no database).
//! The schema is created and migrated on open; `table_prefix` (and on
//! PostgreSQL `schema`) let several applications or tests share a database.
//!
//! # The schema
//!
//! | table | holds |
//! |---|---|
//! | `{prefix}events` | `position` (primary key, global order), `event_id` (unique), `aggregate_type`, `aggregate_id`, `version` (unique per stream), `event_name`, `schema_version`, `payload` (bytes, JSON), `metadata` (JSON), `recorded_at` (µs), `tenant` (`''` for none; part of the stream's key) |
//! | `{prefix}positions` | one row: the last position assigned (locked by each append until commit) |
//! | `{prefix}snapshots` | latest snapshot per stream |
//! | `{prefix}idempotency` | command ids: claimed (with a lease) or done (with the outcome and an expiry) |
//! | `{prefix}checkpoints` | subscriber → last position processed |
//! | `{prefix}dead_letters` | parked events per subscriber, with the error and attempts |
//! | `{prefix}saga_instances`, `{prefix}saga_deadlines` | saga state per (saga, key) with a version; scheduled deadlines |
//! | `{prefix}outbox` | positions appended but not yet published (with `outbox(true)`) |
//! | `{prefix}schema_migrations` | applied schema versions |

#![cfg_attr(docsrs, feature(doc_cfg))]
// Without a driver feature the shared code has no user.
#![cfg_attr(not(any(feature = "sqlite", feature = "postgres")), allow(dead_code, unused_imports))]

// The layout, like sqlx's, bottom up (no module imports one above it;
// `tests/tests/architecture_layers.rs` checks there are no cycles): the
// contract (`driver`), `error`, `config`, `schema`, `queries`, `rows`,
// `append`; the store (`store/`: `SqlStore`, `DriverBatch`, migrations,
// one file per storage trait), `health`; one directory per driver
// (`sqlite/`, `postgres/`: its `Driver` and `DriverBatch` impls, config,
// open, batch append).
mod append;
mod config;
pub mod driver;
mod error;
mod health;
mod queries;
mod rows;
mod schema;
mod store;

#[cfg(feature = "postgres")]
#[cfg_attr(docsrs, doc(cfg(feature = "postgres")))]
mod postgres;
#[cfg(feature = "sqlite")]
#[cfg_attr(docsrs, doc(cfg(feature = "sqlite")))]
mod sqlite;

#[doc(inline)]
pub use crate::config::{ConfigError, SecretUrl};
#[doc(inline)]
pub use crate::health::{Health, Statistics};
#[cfg(feature = "postgres")]
#[doc(inline)]
pub use crate::postgres::{PostgresConfig, PostgresDriver, PostgresStore, PostgresTransaction};
#[cfg(feature = "sqlite")]
#[doc(inline)]
pub use crate::sqlite::{SqliteConfig, SqliteDriver, SqliteLocation, SqliteStore, SqliteTransaction};
#[doc(inline)]
pub use crate::store::{DriverBatch, SqlStore};
