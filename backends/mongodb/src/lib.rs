//! The MongoDB backend of Interlock, on the official `mongodb` driver.
//!
//! [`MongoStore`] keeps every store of an application in one database:
//! events, snapshots, idempotency records, checkpoints (with the ownership
//! leases of several instances), dead letters, saga state and deadlines.
//!
//! | collection | one document per | `_id` | indexes |
//! |---|---|---|---|
//! | `events` | event: `event_id`, `tenant` (`""` for none), `aggregate_type`, `aggregate_id`, `version`, `name`, `schema_version`, `payload`, `metadata`, `recorded_at` | its global position | unique (tenant, type, id, version), unique `event_id`, (`name`, position), (`aggregate_type`, position), (`tenant`, position) |
//! | `streams` | stream: `tenant`, `aggregate_type`, `aggregate_id`, `version`, `created_at`, `updated_at` | tenant, type and id joined by U+001F | |
//! | `counters` | the log: `last`, its head | `"position"` | |
//! | `snapshots` | stream: `version`, `state_version`, `payload`, `taken_at` | as in `streams` | |
//! | `checkpoints` | subscriber: `position` | its name | |
//! | `leases` | subscriber: `owner`, `token`, `expires_at` (µs) | its name | |
//! | `idempotency` | command: `state` (`claimed`/`done`), `until`, the outcome, `expires_at` (µs) and `expires` (a date) | the command id | TTL on `expires` |
//! | `dead_letters` | (subscriber, event): `subscriber`, `position`, `event` (as in `events`), `error`, `attempts`, `parked_at` | subscriber and event id joined by U+001F | (`subscriber`, `position`) |
//! | `sagas` | saga instance: `saga`, `key`, `state`, `version`, `last_position`, `failure` | saga and key joined by U+001F | |
//! | `outbox` | event not yet published (with the outbox on) | its position | |
//! | `deadlines` | deadline: `saga`, `key`, `due` (µs), `name`, `schema_version`, `payload`, `correlation_id` | its id | (`saga`, `due`), (`saga`, `key`) |
//!
//! Collection names take the configured prefix (`es_events`, ...).
//! Payloads are stored as the BSON of their JSON, queryable from the
//! mongo shell (`db.events.find({"payload.amount": {$gt: 100}})`), or as
//! their raw bytes where BSON cannot hold them losslessly (see
//! `documents`): a payload always reads back byte for byte.
//!
//! Appends run in multi-document transactions that take positions from
//! the counter document; concurrent appends of one process share a
//! transaction (the runtime's group committer). See `events` for why the
//! log is gap-safe. The server must support transactions (a replica set,
//! or a server that offers them standalone).
//!
//! With `MongoConfig::outbox(true)` it is also a transactional `Outbox`
//! (`outbox`: the positions of the events not yet published).
//!
//! # The test server
//!
//! The tests run against SecantusDB, a MongoDB-wire server from PyPI,
//! started by `scripts/mongodb.sh` (as a separate process). Where it
//! differs from MongoDB, this crate relies only on behaviour both share:
//! transactions on a standalone server, duplicate-key errors (11000) and
//! write conflicts (112, labelled `TransientTransactionError`), change
//! streams with resume tokens.

mod checkpoints;
mod config;
mod dead_letters;
mod documents;
mod driver;
mod events;
mod health;
mod idempotency;
mod open;
mod outbox;
mod sagas;
mod snapshots;
mod store;
mod watch;

pub use self::config::{MongoConfig, MongoConfigError};
pub use self::health::{MongoHealth, MongoStatistics};
pub use self::open::MongoOpenError;
pub use self::store::MongoStore;
