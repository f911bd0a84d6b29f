//! The Redis backend of Interlock: the stores that suit a fast shared
//! memory with expiry, for several instances of an application.
//!
//! [`RedisStore`] implements `AggregateCache` (hot aggregate states shared
//! by every instance, for aggregates with snapshots), `IdempotencyStore` (claims with a lease,
//! outcomes that expire by themselves), `SagaStateStore` (optimistic
//! versions as compare-and-set, deadlines in a sorted set),
//! `SnapshotStore` (with an optional TTL) and `CheckpointStore` (with the
//! ownership leases of several instances). Events do **not** belong in
//! Redis: keep them in a durable event store and use Redis beside it.
//!
//! # Keys
//!
//! Every key starts with the configured prefix (`interlock:` by default);
//! parts that come from users are escaped (`%` as `%25`, `:` as `%3A`).
//!
//! | key | type | holds |
//! |---|---|---|
//! | `cache:<tenant>:<type>:<id>` | hash | `version`, `state_version`, `state` (encoded as its snapshot); expires after the cache TTL |
//! | `idem:<command id>` | hash | `state` `claimed` + `until` (µs), or `done` + `stream` (JSON), `version`, `output`, `recorded_at`, `expires_at`, `fingerprint`; expires by itself |
//! | `snap:<tenant>:<type>:<id>` | hash | `version`, `state_version`, `payload`, `taken_at` |
//! | `ckpt:<subscriber>` | string | the position |
//! | `lease:<subscriber>` | hash | `owner`, `token`, `expires_at` (µs) |
//! | `saga:<saga>:<key>` | hash | `state`, `version`, `last_position`, `failure` (JSON) |
//! | `sagadl:<saga>:<key>` | set | the instance's deadline ids |
//! | `due:<saga>` | sorted set | deadline ids by due time (µs) |
//! | `dl:<saga>:<id>` | hash | `key`, `due`, `name`, `schema_version`, `payload`, `correlation_id` |
//!
//! Numbers are decimal strings and payloads their bytes, so `redis-cli
//! HGETALL` shows what is stored. Every change that reads before it writes
//! is one Lua script, atomic on the server. A value of another type under
//! one of these keys, or a field that does not parse, is
//! `StoreError::Corrupt` naming the key, never a panic.
//!
//! One Redis server (or a primary with replicas); the scripts touch keys
//! of several hash slots, so Redis Cluster is not supported.

mod cache;
mod checkpoints;
mod config;
mod health;
mod idempotency;
mod keys;
mod replies;
mod sagas;
mod snapshots;
mod store;

pub use self::config::{RedisConfig, RedisConfigError};
pub use self::health::{RedisHealth, RedisStatistics};
pub use self::store::{RedisOpenError, RedisStore};
