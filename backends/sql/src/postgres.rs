//! The PostgreSQL backend.

use std::str::FromStr;
use std::sync::{Arc, Weak};
use std::time::Duration;

use interlock::{Position, StoreError};
use sqlx::postgres::{PgConnectOptions, PgListener, PgPool, PgPoolOptions};
use sqlx::{AssertSqlSafe, Executor, Postgres, Transaction};
use tokio::sync::watch;

use crate::config::{ConfigError, PostgresConfig};
use crate::sql::{Dialect, Queries, Tables};

/// Every Interlock store on one PostgreSQL schema: events, snapshots,
/// idempotency records, checkpoints, dead letters, saga state. Cheap to
/// clone (clones share the pool).
///
/// **Gap safety.** Positions come from a one-row counter that each append
/// increments inside its transaction; the row stays locked until commit, so
/// appends commit in position order and a reader that resumes after the
/// last position it saw never skips an event that commits late.
///
/// **Live subscriptions.** Each append sends `NOTIFY` on commit; a listener
/// moves the head watch subscribers wait on (they also poll, as a fallback).
#[derive(Clone)]
pub struct PostgresStore {
    inner: Arc<Inner>,
}

struct Inner {
    committer: crate::group::Committer,
    pool: PgPool,
    queries: Queries,
    config: PostgresConfig,
    channel: String,
    head: watch::Sender<Position>,
}

impl std::fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresStore")
            .field("config", &self.inner.config)
            .finish_non_exhaustive()
    }
}

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
    /// cannot be reached.
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
        let statement_timeout = config.statement_timeout;
        let pool = PgPoolOptions::new()
            .max_connections(config.max_connections)
            .min_connections(config.min_connections)
            .acquire_timeout(config.connect_timeout)
            .after_connect(move |conn, _| {
                Box::pin(async move {
                    if let Some(t) = statement_timeout {
                        let sql = format!("SET statement_timeout = {}", t.as_millis());
                        conn.execute(AssertSqlSafe(sql)).await?;
                    }
                    Ok(())
                })
            })
            .connect_with(options)
            .await
            .map_err(|e| unavailable(&config, e))?;
        let schema = config.schema.clone();
        let queries = Queries::new(Tables::new(Some(&schema), &config.table_prefix));
        let channel = format!("{schema}_{}events", config.table_prefix);
        let group_commit = config.group_commit;
        let store = Self {
            inner: Arc::new_cyclic(|weak: &Weak<Inner>| {
                let weak = weak.clone();
                let committer = crate::group::Committer::start("postgres", group_commit, move || {
                    weak.upgrade().map(|inner| PostgresStore { inner })
                });
                Inner {
                    committer,
                    pool,
                    queries,
                    channel,
                    head: watch::channel(Position::START).0,
                    config,
                }
            }),
        };
        let create_schema = format!("CREATE SCHEMA IF NOT EXISTS \"{schema}\"");
        if let Err(e) = store.inner.pool.execute(AssertSqlSafe(create_schema)).await {
            // Concurrent creators race on the catalog; the schema exists then.
            if !crate::sql::is_unique_violation(&e) {
                return Err(crate::sql::store_error("postgres", e));
            }
        }
        store.migrate().await?;

        store.start_listener().await;
        Ok(store)
    }

    /// Follows `NOTIFY` on the store's channel and moves the head watch,
    /// until the store is dropped.
    async fn start_listener(&self) {
        let mut listener = match PgListener::connect_with(&self.inner.pool).await {
            Ok(l) => l,
            Err(e) => {
                tracing::warn!(error = %e, "no LISTEN connection; subscribers will poll");
                return;
            }
        };
        if let Err(e) = listener.listen(&self.inner.channel).await {
            tracing::warn!(error = %e, "LISTEN failed; subscribers will poll");
            return;
        }
        let weak: Weak<Inner> = Arc::downgrade(&self.inner);
        tokio::spawn(async move {
            loop {
                let next = tokio::time::timeout(Duration::from_secs(1), listener.try_recv()).await;
                let Some(inner) = weak.upgrade() else { return };
                match next {
                    Ok(Ok(Some(notification))) => {
                        if let Ok(p) = notification.payload().parse::<u64>() {
                            inner.head.send_if_modified(|h| {
                                let moved = *h < Position(p);
                                if moved {
                                    *h = Position(p);
                                }
                                moved
                            });
                        }
                    }
                    Ok(Ok(None)) => {} // the connection was lost and is re-established
                    Ok(Err(e)) => {
                        tracing::warn!(error = %e, "LISTEN connection failed; retrying");
                        tokio::time::sleep(Duration::from_millis(500)).await;
                    }
                    Err(_) => {} // quiet second: check the store is still alive
                }
            }
        });
    }

    pub(crate) fn committer(&self) -> &crate::group::Committer {
        &self.inner.committer
    }

    pub(crate) fn pool(&self) -> &PgPool {
        &self.inner.pool
    }

    pub(crate) fn queries(&self) -> &Queries {
        &self.inner.queries
    }

    pub(crate) fn dialect(&self) -> Dialect {
        Dialect::Postgres
    }

    pub(crate) async fn begin_write(&self) -> Result<Transaction<'static, Postgres>, sqlx::Error> {
        self.inner.pool.begin().await
    }

    pub(crate) async fn after_append(
        &self,
        tx: &mut Transaction<'static, Postgres>,
        last: i64,
    ) -> Result<(), sqlx::Error> {
        sqlx::query("SELECT pg_notify($1, $2)")
            .bind(&self.inner.channel)
            .bind(last.to_string())
            .execute(&mut **tx)
            .await?;
        Ok(())
    }

    pub(crate) fn appended(&self, head: Position) {
        self.inner.head.send_if_modified(|h| {
            let moved = *h < head;
            if moved {
                *h = head;
            }
            moved
        });
    }

    pub(crate) fn head_watch(&self) -> Option<watch::Receiver<Position>> {
        Some(self.inner.head.subscribe())
    }

    pub(crate) async fn lock_migrations(&self, tx: &mut Transaction<'static, Postgres>) -> Result<(), sqlx::Error> {
        // Processes starting together migrate one at a time.
        sqlx::query("SELECT pg_advisory_xact_lock(hashtext($1))")
            .bind(format!("interlock-migrate:{}", self.inner.channel))
            .execute(&mut **tx)
            .await?;
        Ok(())
    }

    /// The settings the store was opened with (the URL's password redacted
    /// when shown).
    pub fn config(&self) -> &PostgresConfig {
        &self.inner.config
    }
}

crate::store::impl_sql_store!(PostgresStore, Postgres);
crate::admin::impl_admin!(PostgresStore, Postgres);
