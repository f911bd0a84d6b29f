//! Migrations, health checks and statistics, for both backends.

macro_rules! impl_admin {
    ($store:ty, $db:ty) => {
        const _: () = {
            use std::collections::BTreeMap;

            use interlock::Timestamp;
            use interlock::store::StoreError;
            use sqlx::{AssertSqlSafe, Row};

            use crate::health::{Health, Statistics};
            use crate::sql::{SCHEMA_VERSION, migrations, store_error};
            use crate::store::u64_of;

            impl $store {
                /// Creates the tables, or brings them to the current schema.
                pub(crate) async fn migrate(&self) -> Result<(), StoreError> {
                    let backend = self.dialect().backend();
                    let err = |e| store_error(backend, e);
                    let t = &self.queries().tables;
                    let mut tx = self.begin_write().await.map_err(err)?;
                    self.lock_migrations(&mut tx).await.map_err(err)?;
                    let create = format!(
                        "CREATE TABLE IF NOT EXISTS {} (version BIGINT PRIMARY KEY, applied_at BIGINT NOT NULL)",
                        t.migrations
                    );
                    sqlx::query(AssertSqlSafe(create))
                        .execute(&mut *tx)
                        .await
                        .map_err(err)?;
                    let current: i64 = sqlx::query_scalar(AssertSqlSafe(format!(
                        "SELECT COALESCE(MAX(version), 0) FROM {}",
                        t.migrations
                    )))
                    .fetch_one(&mut *tx)
                    .await
                    .map_err(err)?;
                    if current > SCHEMA_VERSION {
                        return Err(StoreError::Backend {
                            backend,
                            source: format!(
                                "the database schema is at version {current}, newer than this code ({SCHEMA_VERSION})"
                            )
                            .into(),
                        });
                    }
                    for (version, statements) in migrations(self.dialect(), t) {
                        if version <= current {
                            continue;
                        }
                        for statement in statements {
                            sqlx::query(AssertSqlSafe(statement))
                                .execute(&mut *tx)
                                .await
                                .map_err(err)?;
                        }
                        let record = format!(
                            "INSERT INTO {} (version, applied_at) VALUES ($1, $2)",
                            t.migrations
                        );
                        sqlx::query(AssertSqlSafe(record))
                            .bind(version)
                            .bind(Timestamp::now().0)
                            .execute(&mut *tx)
                            .await
                            .map_err(err)?;
                    }
                    tx.commit().await.map_err(err)
                }

                /// Whether the database answers, the pool's state and the
                /// schema version. Never fails: an unreachable database is
                /// `reachable: false` with the error.
                pub async fn health_check(&self) -> Health {
                    let sql = format!(
                        "SELECT COALESCE(MAX(version), 0) FROM {}",
                        self.queries().tables.migrations
                    );
                    let version: Result<i64, sqlx::Error> = sqlx::query_scalar(AssertSqlSafe(sql))
                        .fetch_one(self.pool())
                        .await;
                    Health {
                        backend: self.dialect().backend(),
                        reachable: version.is_ok(),
                        pool_size: self.pool().size(),
                        pool_idle: self.pool().num_idle(),
                        error: version.as_ref().err().map(ToString::to_string),
                        schema_version: version.ok(),
                    }
                }

                /// Counts of events, streams and snapshots, by event name and
                /// aggregate type.
                ///
                /// # Errors
                ///
                /// When the database fails.
                pub async fn statistics(&self) -> Result<Statistics, StoreError> {
                    let err = |e| store_error(self.dialect().backend(), e);
                    let t = &self.queries().tables;
                    let count = |sql: String| async move {
                        sqlx::query_scalar::<_, i64>(AssertSqlSafe(sql))
                            .fetch_one(self.pool())
                            .await
                            .map(u64_of)
                    };
                    let grouped = |column: &'static str| {
                        let sql = format!("SELECT {column}, COUNT(*) FROM {} GROUP BY {column}", t.events);
                        async move {
                            let rows = sqlx::query(AssertSqlSafe(sql)).fetch_all(self.pool()).await?;
                            let mut out = BTreeMap::new();
                            for row in rows {
                                out.insert(row.try_get::<String, _>(0)?, u64_of(row.try_get::<i64, _>(1)?));
                            }
                            Ok::<_, sqlx::Error>(out)
                        }
                    };
                    Ok(Statistics {
                        events: count(format!("SELECT COUNT(*) FROM {}", t.events))
                            .await
                            .map_err(err)?,
                        streams: count(format!(
                            "SELECT COUNT(*) FROM (SELECT DISTINCT aggregate_type, aggregate_id FROM {}) s",
                            t.events
                        ))
                        .await
                        .map_err(err)?,
                        snapshots: count(format!("SELECT COUNT(*) FROM {}", t.snapshots))
                            .await
                            .map_err(err)?,
                        events_by_name: grouped("event_name").await.map_err(err)?,
                        events_by_aggregate_type: grouped("aggregate_type").await.map_err(err)?,
                    })
                }

                /// Saves a checkpoint inside the caller's transaction, so a SQL
                /// read model and its checkpoint commit together (exactly-once
                /// projections into the same database).
                ///
                /// # Errors
                ///
                /// When the database fails.
                pub async fn save_checkpoint_in(
                    &self,
                    tx: &mut sqlx::Transaction<'static, $db>,
                    subscriber: &str,
                    position: interlock::Position,
                ) -> Result<(), StoreError> {
                    sqlx::query(AssertSqlSafe(self.queries().checkpoint_save.clone()))
                        .bind(subscriber)
                        .bind(crate::store::i64_of(position.0))
                        .execute(&mut **tx)
                        .await
                        .map_err(|e| store_error(self.dialect().backend(), e))?;
                    Ok(())
                }

                /// Starts a write transaction on the store's pool, for a SQL read
                /// model updated together with its checkpoint.
                ///
                /// # Errors
                ///
                /// When the database fails.
                pub async fn begin(&self) -> Result<sqlx::Transaction<'static, $db>, StoreError> {
                    self.begin_write()
                        .await
                        .map_err(|e| store_error(self.dialect().backend(), e))
                }
            }
        };
    };
}

pub(crate) use impl_admin;
