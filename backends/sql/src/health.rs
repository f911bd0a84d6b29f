//! Health and statistics of a SQL store.

use std::collections::BTreeMap;

/// Whether the store answers, and in what shape.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Health {
    /// The backend (`sqlite`, `postgres`).
    pub backend: &'static str,
    /// Whether a query succeeded just now.
    pub reachable: bool,
    /// Connections open in the pool.
    pub pool_size: u32,
    /// Of those, idle.
    pub pool_idle: usize,
    /// The schema version the database is at (`None` when unreachable).
    pub schema_version: Option<i64>,
    /// The error, when unreachable.
    pub error: Option<String>,
}

/// Counts of what the store holds.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Statistics {
    /// Events stored.
    pub events: u64,
    /// Distinct streams.
    pub streams: u64,
    /// Snapshots stored.
    pub snapshots: u64,
    /// Events per event name.
    pub events_by_name: BTreeMap<String, u64>,
    /// Events per aggregate type.
    pub events_by_aggregate_type: BTreeMap<String, u64>,
}
