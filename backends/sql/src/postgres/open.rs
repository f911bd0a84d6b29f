//! Opening a PostgreSQL store: the pool, the schema, the listener.

use std::str::FromStr;

use interlock::store::StoreError;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{AssertSqlSafe, Executor};

use super::{PostgresConfig, PostgresState, PostgresStore};
use crate::config::ConfigError;
use crate::queries::Queries;
use crate::schema::Tables;
use crate::store::{Committer, Parts};

fn unavailable(config: &PostgresConfig, e: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable {
        backend: "postgres",
        source: format!("cannot connect to {}: {e}", config.url.redacted()).into(),
    }
}

impl PostgresStore {
    /// Connects, creates the schema if missing and migrates the tables.
    ///
    /// # Errors
    ///
    /// [`StoreError::Backend`] for an invalid configuration,
    /// [`StoreError::Unavailable`] naming the redacted URL when the server
    /// cannot be reached, or when called outside a tokio runtime.
    pub async fn open(config: PostgresConfig) -> Result<Self, StoreError> {
        let invalid = |e: ConfigError| StoreError::Backend {
            backend: "postgres",
            source: Box::new(e),
        };
        config.validate().map_err(invalid)?;
        let options = PgConnectOptions::from_str(config.url.expose()).map_err(|e| {
            invalid(ConfigError::InvalidUrl {
                backend: "postgres",
                url: config.url.redacted(),
                reason: e.to_string(),
            })
        })?;
        let committer = Committer::start(config.group_commit)?;
        let statement_timeout = config.statement_timeout;
        let idle_timeout = config.idle_in_transaction_timeout;
        let pool = PgPoolOptions::new()
            .max_connections(config.max_connections)
            .min_connections(config.min_connections)
            .acquire_timeout(config.connect_timeout)
            .after_connect(move |conn, _| {
                Box::pin(async move {
                    // The statements are fixed; a generic plan spares
                    // re-planning the batch append on every execution.
                    conn.execute("SET plan_cache_mode = force_generic_plan").await?;
                    if let Some(t) = statement_timeout {
                        let sql = format!("SET statement_timeout = {}", t.as_millis());
                        conn.execute(AssertSqlSafe(sql)).await?;
                    }
                    if let Some(t) = idle_timeout {
                        let sql = format!("SET idle_in_transaction_session_timeout = {}", t.as_millis());
                        conn.execute(AssertSqlSafe(sql)).await?;
                    }
                    Ok(())
                })
            })
            .connect_with(options)
            .await
            .map_err(|e| unavailable(&config, e))?;
        let schema = config.schema.clone();
        let tables = Tables::new(Some(&schema), &config.table_prefix);
        let state = PostgresState {
            channel: format!("{schema}_{}events", config.table_prefix),
            fast_append: super::batch::statement(&tables),
        };
        let notify = config.notify;
        let parts = Parts {
            pool,
            queries: Queries::new(tables, " FOR SHARE"),
            config,
            state,
            head_watch: notify,
        };
        let store = Self::assemble(committer, parts);
        let create_schema = format!("CREATE SCHEMA IF NOT EXISTS \"{schema}\"");
        if let Err(e) = store.pool().execute(AssertSqlSafe(create_schema)).await {
            // Concurrent creators race on the catalog; the schema exists then.
            if !crate::error::is_unique_violation(&e) {
                return Err(PostgresStore::error(e));
            }
        }
        store.migrate().await?;
        if notify {
            super::listen::start(&store).await;
        }
        Ok(store)
    }
}
