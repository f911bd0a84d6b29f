//! Health and statistics of a MongoDB store.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use futures_util::TryStreamExt;
use interlock::store::StoreError;
use mongodb::bson::{Document, doc};

use crate::driver::as_u64;
use crate::store::MongoStore;

/// Whether the server answers, and how fast.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MongoHealth {
    /// Whether a `ping` succeeded just now.
    pub reachable: bool,
    /// How long it took.
    pub latency: Option<Duration>,
    /// The server's version, from `buildInfo`.
    pub server_version: Option<String>,
    /// The error, when unreachable (the URI redacted).
    pub error: Option<String>,
}

/// Counts of what the store holds.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MongoStatistics {
    /// Events stored.
    pub events: u64,
    /// Streams.
    pub streams: u64,
    /// Snapshots stored.
    pub snapshots: u64,
    /// The head of the log.
    pub head: u64,
    /// Events per event name.
    pub events_by_name: BTreeMap<String, u64>,
    /// Events per aggregate type.
    pub events_by_aggregate_type: BTreeMap<String, u64>,
}

impl MongoStore {
    /// Whether the server answers, its latency and version. Never fails:
    /// an unreachable server is `reachable: false` with the error.
    pub async fn health_check(&self) -> MongoHealth {
        let database = self.inner.client.database(self.config().database_name());
        let began = Instant::now();
        match database.run_command(doc! { "ping": 1 }).await {
            Ok(_) => {
                let latency = began.elapsed();
                let server_version = database
                    .run_command(doc! { "buildInfo": 1 })
                    .await
                    .ok()
                    .and_then(|info| info.get_str("version").ok().map(ToOwned::to_owned));
                MongoHealth {
                    reachable: true,
                    latency: Some(latency),
                    server_version,
                    error: None,
                }
            }
            Err(e) => MongoHealth {
                reachable: false,
                latency: None,
                server_version: None,
                error: Some(self.error(e).to_string()),
            },
        }
    }

    /// Counts of events, streams and snapshots, by event name and aggregate
    /// type.
    ///
    /// # Errors
    ///
    /// When the server fails.
    pub async fn statistics(&self) -> Result<MongoStatistics, StoreError> {
        let c = self.collections();
        let count = |collection: &mongodb::Collection<Document>| {
            let collection = collection.clone();
            async move { collection.count_documents(doc! {}).await.map_err(|e| self.error(e)) }
        };
        let grouped = |field: &'static str| async move {
            let groups: Vec<Document> = c
                .events
                .aggregate([doc! { "$group": { "_id": format!("${field}"), "n": { "$sum": 1 } } }])
                .await
                .map_err(|e| self.error(e))?
                .try_collect()
                .await
                .map_err(|e| self.error(e))?;
            let mut out = BTreeMap::new();
            for group in groups {
                let n = group.get("n").and_then(as_u64).unwrap_or(0);
                out.insert(group.get_str("_id").unwrap_or("?").to_owned(), n);
            }
            Ok::<_, StoreError>(out)
        };
        Ok(MongoStatistics {
            events: count(&c.events).await?,
            streams: count(&c.streams).await?,
            snapshots: count(&c.snapshots).await?,
            head: interlock::store::EventStore::head(self).await?.0,
            events_by_name: grouped("name").await?,
            events_by_aggregate_type: grouped("aggregate_type").await?,
        })
    }
}
