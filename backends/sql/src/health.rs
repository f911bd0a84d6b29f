//! Health and statistics of a SQL store.

use std::collections::BTreeMap;

use interlock::store::StoreError;
use sqlx::{AssertSqlSafe, SqlSafeStr};

use crate::driver::{Driver, SqlRow};
use crate::rows::u64_of;
use crate::schema::schema_version_query;
use crate::store::SqlStore;

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

impl<D: Driver> SqlStore<D> {
    /// Whether the database answers, the pool's state and the schema
    /// version. Never fails: an unreachable database is `reachable: false`
    /// with the error.
    pub async fn health_check(&self) -> Health {
        let sql = AssertSqlSafe(schema_version_query(&self.queries().tables)).into_sql_str();
        let version = self.fetch_int(sql, &[]).await;
        Health {
            backend: D::NAME,
            reachable: version.is_ok(),
            pool_size: self.pool().size(),
            pool_idle: self.pool().num_idle(),
            error: version.as_ref().err().map(ToString::to_string),
            schema_version: version.ok(),
        }
    }

    /// Counts of events, streams and snapshots, by event name and aggregate
    /// type.
    ///
    /// # Errors
    ///
    /// When the database fails.
    pub async fn statistics(&self) -> Result<Statistics, StoreError> {
        let t = &self.queries().tables;
        let count =
            |sql: String| async move { self.fetch_int(AssertSqlSafe(sql).into_sql_str(), &[]).await.map(u64_of) };
        let grouped = |column: &'static str| {
            let sql = format!("SELECT {column}, COUNT(*) FROM {} GROUP BY {column}", t.events);
            async move {
                let rows = self.fetch_all(AssertSqlSafe(sql).into_sql_str(), &[]).await?;
                let mut out = BTreeMap::new();
                for row in rows {
                    out.insert(
                        row.text(0).map_err(Self::error)?,
                        u64_of(row.int(1).map_err(Self::error)?),
                    );
                }
                Ok::<_, StoreError>(out)
            }
        };
        Ok(Statistics {
            events: count(format!("SELECT COUNT(*) FROM {}", t.events)).await?,
            streams: count(format!(
                "SELECT COUNT(*) FROM (SELECT DISTINCT tenant, aggregate_type, aggregate_id FROM {}) s",
                t.events
            ))
            .await?,
            snapshots: count(format!("SELECT COUNT(*) FROM {}", t.snapshots)).await?,
            events_by_name: grouped("event_name").await?,
            events_by_aggregate_type: grouped("aggregate_type").await?,
        })
    }
}
