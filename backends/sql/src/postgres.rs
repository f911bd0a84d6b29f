//! The PostgreSQL backend.

use std::str::FromStr;
use std::sync::{Arc, Weak};
use std::time::Duration;

use interlock::Position;
use interlock::store::StoreError;
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
    /// The one-statement batch append.
    fast_append: Arc<str>,
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
                    // The statements are fixed; a generic plan spares
                    // re-planning the batch append on every execution.
                    conn.execute("SET plan_cache_mode = force_generic_plan").await?;
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
                let fast_append = fast_append_sql(&queries.tables);
                Inner {
                    committer,
                    fast_append,
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

    /// Commits a batch of appends to distinct streams in one statement (one
    /// round trip, autocommit): every expected version is checked, the
    /// position counter bumped once, the accepted appends' events inserted,
    /// and listeners notified. Returns the batch untouched when it must take
    /// the savepoint path instead: two appends to one stream, or a unique
    /// violation (another process appended first; nothing was written).
    pub(crate) async fn fast_append(
        &self,
        batch: Vec<crate::group::AppendRequest>,
    ) -> Option<Vec<crate::group::AppendRequest>> {
        let distinct: std::collections::HashSet<&interlock::StreamId> = batch.iter().map(|r| &r.stream).collect();
        if distinct.len() != batch.len() {
            return Some(batch);
        }
        let now = interlock::Timestamp::now();
        let mut types = Vec::with_capacity(batch.len());
        let mut ids = Vec::with_capacity(batch.len());
        let mut expected = Vec::with_capacity(batch.len());
        let mut counts = Vec::with_capacity(batch.len());
        let events: usize = batch.iter().map(|r| r.events.len()).sum();
        let (mut req_no, mut idx, mut event_ids, mut names) = (
            Vec::with_capacity(events),
            Vec::with_capacity(events),
            Vec::with_capacity(events),
            Vec::with_capacity(events),
        );
        let (mut versions, mut payloads, mut metadata, mut recorded) = (
            Vec::with_capacity(events),
            Vec::with_capacity(events),
            Vec::with_capacity(events),
            Vec::with_capacity(events),
        );
        for (r, request) in batch.iter().enumerate() {
            types.push(request.stream.aggregate_type().to_owned());
            ids.push(request.stream.aggregate_id().to_owned());
            expected.push(match request.expected {
                interlock::store::ExpectedVersion::Any => -1,
                interlock::store::ExpectedVersion::Exact(v) => crate::store::i64_of(v.0),
            });
            counts.push(i64::try_from(request.events.len()).unwrap_or(i64::MAX));
            for (i, event) in request.events.iter().enumerate() {
                let mut meta = event.metadata.clone();
                let at = *meta.timestamp.get_or_insert(now);
                let Ok(json) = serde_json::to_string(&meta) else {
                    return Some(batch);
                };
                req_no.push(i64::try_from(r + 1).unwrap_or(i64::MAX));
                idx.push(i64::try_from(i).unwrap_or(i64::MAX));
                event_ids.push(event.event_id.to_string());
                names.push(event.name.to_string());
                versions.push(i64::from(event.schema_version.0));
                payloads.push(event.payload.to_vec());
                metadata.push(json);
                recorded.push(at.0);
            }
        }
        let rows = sqlx::query(AssertSqlSafe(self.inner.fast_append.clone()))
            .bind(types)
            .bind(ids)
            .bind(expected)
            .bind(counts)
            .bind(req_no)
            .bind(idx)
            .bind(event_ids)
            .bind(names)
            .bind(versions)
            .bind(payloads)
            .bind(metadata)
            .bind(recorded)
            .bind(&self.inner.channel)
            .bind(self.inner.config.notify)
            .bind(self.inner.config.outbox)
            .fetch_all(&self.inner.pool)
            .await;
        let rows = match rows {
            Ok(rows) => rows,
            Err(e) if crate::sql::is_unique_violation(&e) => return Some(batch),
            Err(e) => {
                let unavailable = matches!(crate::sql::store_error("postgres", e), StoreError::Unavailable { .. });
                for request in batch {
                    let error = if unavailable {
                        StoreError::Unavailable {
                            backend: "postgres",
                            source: "the batch append failed".into(),
                        }
                    } else {
                        StoreError::Backend {
                            backend: "postgres",
                            source: "the batch append failed".into(),
                        }
                    };
                    let _ = request.reply.send(Err(error));
                }
                return None;
            }
        };
        let mut actuals = Vec::with_capacity(rows.len());
        let mut last = 0i64;
        for row in &rows {
            use sqlx::Row;
            let (Ok(actual), Ok(l)) = (row.try_get::<i64, _>(1), row.try_get::<Option<i64>, _>(2)) else {
                return Some(batch);
            };
            actuals.push(interlock::Version(crate::store::u64_of(actual)));
            last = l.unwrap_or(0);
        }
        if actuals.len() != batch.len() {
            return Some(batch);
        }
        // The positions of the accepted appends, in batch order, end at `last`.
        let accepted_events: i64 = batch
            .iter()
            .zip(&actuals)
            .filter(|(r, actual)| match r.expected {
                interlock::store::ExpectedVersion::Any => true,
                interlock::store::ExpectedVersion::Exact(v) => v == **actual,
            })
            .map(|(r, _)| i64::try_from(r.events.len()).unwrap_or(0))
            .sum();
        let mut next = last - accepted_events + 1;
        for (request, actual) in batch.into_iter().zip(actuals) {
            let crate::group::AppendRequest {
                stream,
                expected,
                events,
                reply,
            } = request;
            let accepted = match expected {
                interlock::store::ExpectedVersion::Any => true,
                interlock::store::ExpectedVersion::Exact(v) => v == actual,
            };
            if !accepted {
                let _ = reply.send(Err(StoreError::Conflict {
                    stream,
                    expected,
                    actual,
                }));
                continue;
            }
            let n = events.len() as u64;
            let positions = (0..n).map(|i| Position(crate::store::u64_of(next) + i)).collect();
            next += i64::try_from(n).unwrap_or(0);
            let version = interlock::Version(actual.0 + n);
            let _ = reply.send(Ok(interlock::store::Committed {
                stream,
                version,
                positions,
            }));
        }
        if accepted_events > 0 {
            self.appended(Position(crate::store::u64_of(last)));
        }
        None
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

    pub(crate) fn outbox_enabled(&self) -> bool {
        self.inner.config.outbox
    }

    pub(crate) fn head_watch(&self) -> Option<watch::Receiver<Position>> {
        self.inner.config.notify.then(|| self.inner.head.subscribe())
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

/// The one-statement batch append (see `PostgresStore::fast_append`).
fn fast_append_sql(t: &crate::sql::Tables) -> Arc<str> {
    let (events, positions, outbox) = (&t.events, &t.positions, &t.outbox);
    format!(
        "WITH req AS (
            SELECT * FROM unnest($1::text[], $2::text[], $3::bigint[], $4::bigint[]) WITH ORDINALITY
                AS r(agg_type, agg_id, expected, n, req_no)
        ),
        cur AS (
            SELECT r.req_no, r.agg_type, r.agg_id, r.expected, r.n,
                   COALESCE((SELECT MAX(e.version) FROM {events} e
                             WHERE e.aggregate_type = r.agg_type AND e.aggregate_id = r.agg_id), 0) AS actual
            FROM req r
        ),
        ok AS (SELECT * FROM cur WHERE expected < 0 OR expected = actual),
        total AS (SELECT COALESCE(SUM(n), 0)::bigint AS n FROM ok),
        bump AS (UPDATE {positions} SET last = last + (SELECT n FROM total) WHERE id = 1 RETURNING last),
        base AS (
            SELECT ok.req_no, ok.agg_type, ok.agg_id, ok.actual,
                   (SELECT last FROM bump) - (SELECT n FROM total)
                     + SUM(ok.n) OVER (ORDER BY ok.req_no) - ok.n + 1 AS first_position
            FROM ok
        ),
        ev AS (
            SELECT * FROM unnest($5::bigint[], $6::bigint[], $7::text[], $8::text[], $9::bigint[], $10::bytea[],
                                 $11::text[], $12::bigint[])
                AS e(req_no, idx, event_id, event_name, schema_version, payload, metadata, recorded_at)
        ),
        ins AS (
            INSERT INTO {events} (position, event_id, aggregate_type, aggregate_id, version, event_name,
                                  schema_version, payload, metadata, recorded_at)
            SELECT b.first_position + e.idx, e.event_id, b.agg_type, b.agg_id, b.actual + e.idx + 1, e.event_name,
                   e.schema_version, e.payload, e.metadata, e.recorded_at
            FROM ev e JOIN base b ON b.req_no = e.req_no
            RETURNING position
        ),
        ob AS (INSERT INTO {outbox} (position) SELECT position FROM ins WHERE $15),
        note AS (SELECT pg_notify($13, (SELECT last FROM bump)::text) AS sent WHERE $14 AND (SELECT COUNT(*) FROM ins) > 0)
        SELECT c.req_no, c.actual, (SELECT last FROM bump) AS last, (SELECT COUNT(*) FROM note) AS notified
        FROM cur c ORDER BY c.req_no"
    )
    .into()
}
