//! SQLite and PostgreSQL backends of Interlock, on sqlx.
//!
//! [`SqliteStore`] (feature `sqlite`, the embedded default) and
//! [`PostgresStore`] (feature `postgres`) each implement every storage
//! trait of the runtime — `EventStore`, `SnapshotStore`, `IdempotencyStore`,
//! `CheckpointStore`, `DeadLetterStore`, `SagaStateStore` — on one database,
//! and pass the runtime's conformance suites. Pass a store to
//! `ApplicationBuilder::backend` to use it for all of them.
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
//! | `{prefix}events` | `position` (primary key, global order), `event_id` (unique), `aggregate_type`, `aggregate_id`, `version` (unique per stream), `event_name`, `schema_version`, `payload` (bytes, JSON), `metadata` (JSON), `recorded_at` (µs) |
//! | `{prefix}positions` | one row: the last position assigned (locked by each append until commit) |
//! | `{prefix}snapshots` | latest snapshot per stream |
//! | `{prefix}idempotency` | command ids: claimed (with a lease) or done (with the outcome and an expiry) |
//! | `{prefix}checkpoints` | subscriber → last position processed |
//! | `{prefix}dead_letters` | parked events per subscriber, with the error and attempts |
//! | `{prefix}saga_instances`, `{prefix}saga_deadlines` | saga state per (saga, key) with a version; scheduled deadlines |
//! | `{prefix}outbox` | positions appended but not yet published (with `outbox(true)`) |
//! | `{prefix}schema_migrations` | applied schema versions |

#![cfg_attr(docsrs, feature(doc_cfg))]

mod admin;
pub mod config;
mod group;
pub mod health;
mod sql;
mod store;

#[cfg(feature = "postgres")]
#[cfg_attr(docsrs, doc(cfg(feature = "postgres")))]
mod postgres;
#[cfg(feature = "sqlite")]
#[cfg_attr(docsrs, doc(cfg(feature = "sqlite")))]
mod sqlite;
#[cfg(feature = "sqlite")]
mod sqlite_batch;

#[doc(inline)]
pub use crate::config::{ConfigError, PostgresConfig, SecretUrl, SqliteConfig, SqliteLocation};
#[doc(inline)]
pub use crate::group::GroupCommit;
#[doc(inline)]
pub use crate::health::{Health, Statistics};
#[cfg(feature = "postgres")]
#[doc(inline)]
pub use crate::postgres::PostgresStore;
#[cfg(feature = "sqlite")]
#[doc(inline)]
pub use crate::sqlite::SqliteStore;

/// The sqlx version this crate uses, for SQL read models that share its
/// transactions (`SqliteStore::begin`, `save_checkpoint_in`).
pub use sqlx;
