//! The statements of the storage traits, built once per store from
//! validated identifiers. Every value is a bound parameter (`$1`, `$2` ...
//! in every dialect).

use std::sync::Arc;

use sqlx::{AssertSqlSafe, SqlSafeStr, SqlStr};

use crate::schema::Tables;

/// The columns of an event row, in the order the row decoder reads them.
pub(crate) const EVENT_COLUMNS: &str = "position, event_id, aggregate_type, aggregate_id, version, event_name, schema_version, payload, metadata, recorded_at, tenant";

/// How a stream's tenant is stored: its id, or `''` for none (no tenant id
/// is empty).
pub(crate) fn tenant_of(stream: &interlock::StreamId) -> &str {
    stream.tenant().map_or("", interlock::TenantId::as_str)
}

/// Every statement, built once.
#[derive(Clone, Debug)]
pub(crate) struct Queries {
    pub(crate) tables: Tables,
    pub(crate) stream_version: SqlStr,
    pub(crate) bump_positions: SqlStr,
    /// The insert of one event row.
    pub(crate) insert_event: SqlStr,
    pub(crate) read_stream: SqlStr,
    pub(crate) read_stream_for_load: SqlStr,
    pub(crate) head: SqlStr,

    pub(crate) rewrite: SqlStr,
    pub(crate) snapshot_load: SqlStr,
    pub(crate) snapshot_save: SqlStr,
    pub(crate) snapshot_delete: SqlStr,
    pub(crate) idem_insert: SqlStr,
    pub(crate) idem_select: SqlStr,
    pub(crate) idem_reclaim: SqlStr,
    pub(crate) idem_complete: SqlStr,
    pub(crate) idem_release: SqlStr,
    pub(crate) idem_purge: SqlStr,
    pub(crate) checkpoint_load: SqlStr,
    pub(crate) checkpoint_save: SqlStr,
    /// A checkpoint that only moves forward (saved with a read model's rows).
    pub(crate) checkpoint_advance: SqlStr,
    /// A claim or renewal of a lease: `$1` subscriber, `$2` owner, `$3`
    /// now, `$4` until; returns the lease when the claimer holds it.
    pub(crate) lease_claim: SqlStr,
    pub(crate) lease_load: SqlStr,
    pub(crate) lease_release: SqlStr,
    pub(crate) lease_list: SqlStr,
    /// A checkpoint saved only while `$3` is the lease's token.
    pub(crate) checkpoint_save_fenced: SqlStr,
    /// The same, moving only forward (inside a read model's transaction).
    pub(crate) checkpoint_advance_fenced: SqlStr,
    pub(crate) dlq_park: SqlStr,
    pub(crate) dlq_list: SqlStr,
    pub(crate) dlq_remove: SqlStr,
    pub(crate) saga_load: SqlStr,
    pub(crate) saga_create: SqlStr,
    pub(crate) saga_update: SqlStr,
    pub(crate) saga_delete: SqlStr,
    pub(crate) deadline_insert: SqlStr,
    pub(crate) deadline_cancel: SqlStr,
    pub(crate) deadline_exists: SqlStr,
    pub(crate) deadline_delete_key: SqlStr,
    pub(crate) deadline_due: SqlStr,
    pub(crate) outbox_insert_range: SqlStr,
    pub(crate) outbox_pending: SqlStr,
}

impl Queries {
    /// The statements on `tables`; `lock_shared` is the dialect's clause
    /// that share-locks the rows a subquery reads (`FOR SHARE` on
    /// PostgreSQL; nothing on SQLite, whose writers are serialized).
    pub(crate) fn new(tables: Tables, lock_shared: &str) -> Self {
        let t = &tables;
        let q = |s: String| AssertSqlSafe(Arc::<str>::from(s)).into_sql_str();
        Self {
            stream_version: q(format!(
                "SELECT COALESCE(MAX(version), 0) FROM {} WHERE aggregate_type = $1 AND aggregate_id = $2 AND tenant = $3",
                t.events
            )),
            bump_positions: q(format!("UPDATE {} SET last = last + $1 WHERE id = 1 RETURNING last", t.positions)),
            insert_event: q(format!(
                "INSERT INTO {} ({EVENT_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
                t.events
            )),
            read_stream: q(format!(
                "SELECT {EVENT_COLUMNS} FROM {} WHERE aggregate_type = $1 AND aggregate_id = $2 AND tenant = $5 AND version >= $3 AND version <= $4 ORDER BY version",
                t.events
            )),
            read_stream_for_load: q(format!(
                "SELECT position, event_id, version, event_name, schema_version, payload FROM {}
                 WHERE aggregate_type = $1 AND aggregate_id = $2 AND tenant = $4 AND version >= $3 ORDER BY version",
                t.events
            )),
            head: q(format!("SELECT last FROM {} WHERE id = 1", t.positions)),

            rewrite: q(format!(
                "UPDATE {} SET event_name = $1, schema_version = $2, payload = $3 WHERE position = $4",
                t.events
            )),
            snapshot_load: q(format!(
                "SELECT version, state_version, payload, taken_at FROM {} WHERE aggregate_type = $1 AND aggregate_id = $2 AND tenant = $3",
                t.snapshots
            )),
            snapshot_save: q(format!(
                "INSERT INTO {} AS s (aggregate_type, aggregate_id, version, state_version, payload, taken_at, tenant)
                 VALUES ($1, $2, $3, $4, $5, $6, $7)
                 ON CONFLICT (tenant, aggregate_type, aggregate_id) DO UPDATE
                 SET version = excluded.version, state_version = excluded.state_version,
                     payload = excluded.payload, taken_at = excluded.taken_at
                 WHERE s.version <= excluded.version",
                t.snapshots
            )),
            snapshot_delete: q(format!(
                "DELETE FROM {} WHERE aggregate_type = $1 AND aggregate_id = $2 AND tenant = $3",
                t.snapshots
            )),
            idem_insert: q(format!(
                "INSERT INTO {} (command_id, status, until) VALUES ($1, 'claimed', $2) ON CONFLICT (command_id) DO NOTHING",
                t.idempotency
            )),
            idem_select: q(format!(
                "SELECT status, until, aggregate_type, aggregate_id, version, output, recorded_at, fingerprint, tenant FROM {} WHERE command_id = $1",
                t.idempotency
            )),
            idem_reclaim: q(format!(
                "UPDATE {} SET status = 'claimed', until = $2, aggregate_type = NULL, aggregate_id = NULL, tenant = NULL,
                     version = NULL, output = NULL, recorded_at = NULL, fingerprint = NULL
                 WHERE command_id = $1 AND until <= $3",
                t.idempotency
            )),
            idem_complete: q(format!(
                "INSERT INTO {} AS i (command_id, status, until, aggregate_type, aggregate_id, version, output, recorded_at, fingerprint, tenant)
                 VALUES ($1, 'done', $2, $3, $4, $5, $6, $7, $8, $9)
                 ON CONFLICT (command_id) DO UPDATE
                 SET status = 'done', until = excluded.until, aggregate_type = excluded.aggregate_type,
                     aggregate_id = excluded.aggregate_id, version = excluded.version,
                     output = excluded.output, recorded_at = excluded.recorded_at,
                     fingerprint = excluded.fingerprint, tenant = excluded.tenant",
                t.idempotency
            )),
            idem_release: q(format!("DELETE FROM {} WHERE command_id = $1 AND status = 'claimed'", t.idempotency)),
            // Only outcomes: an expired claim stays, so that whoever takes it
            // over learns its holder died (`Claim::Reclaimed`) and looks for
            // the holder's committed events before running the command.
            idem_purge: q(format!("DELETE FROM {} WHERE until <= $1 AND status = 'done'", t.idempotency)),
            checkpoint_load: q(format!("SELECT position FROM {} WHERE subscriber = $1", t.checkpoints)),
            checkpoint_save: q(format!(
                "INSERT INTO {} (subscriber, position) VALUES ($1, $2)
                 ON CONFLICT (subscriber) DO UPDATE SET position = excluded.position",
                t.checkpoints
            )),
            checkpoint_advance: q(format!(
                "INSERT INTO {0} AS c (subscriber, position) VALUES ($1, $2)
                 ON CONFLICT (subscriber) DO UPDATE SET position = excluded.position
                 WHERE c.position < excluded.position",
                t.checkpoints
            )),
            lease_claim: q(format!(
                "INSERT INTO {0} AS l (subscriber, owner, token, expires_at) VALUES ($1, $2, 1, $4)
                 ON CONFLICT (subscriber) DO UPDATE
                 SET token = CASE WHEN l.owner = excluded.owner THEN l.token ELSE l.token + 1 END,
                     owner = excluded.owner, expires_at = excluded.expires_at
                 WHERE l.owner = excluded.owner OR l.expires_at <= $3
                 RETURNING owner, token, expires_at",
                t.leases
            )),
            lease_load: q(format!(
                "SELECT owner, token, expires_at FROM {} WHERE subscriber = $1",
                t.leases
            )),
            lease_release: q(format!(
                "UPDATE {} SET expires_at = {} WHERE subscriber = $1 AND token = $2",
                t.leases,
                i64::MIN
            )),
            lease_list: q(format!(
                "SELECT subscriber, owner, token, expires_at FROM {} ORDER BY subscriber",
                t.leases
            )),
            checkpoint_save_fenced: q(format!(
                "INSERT INTO {0} AS c (subscriber, position)
                 SELECT $1, $2 WHERE EXISTS (SELECT 1 FROM {1} WHERE subscriber = $1 AND token = $3{2})
                 ON CONFLICT (subscriber) DO UPDATE SET position = excluded.position",
                t.checkpoints, t.leases, lock_shared
            )),
            checkpoint_advance_fenced: q(format!(
                "INSERT INTO {0} AS c (subscriber, position)
                 SELECT $1, $2 WHERE EXISTS (SELECT 1 FROM {1} WHERE subscriber = $1 AND token = $3{2})
                 ON CONFLICT (subscriber) DO UPDATE SET position = excluded.position
                 WHERE c.position < excluded.position",
                t.checkpoints, t.leases, lock_shared
            )),
            dlq_park: q(format!(
                "INSERT INTO {} (subscriber, event_id, position, aggregate_type, aggregate_id, version, event_name,
                     schema_version, payload, metadata, error, attempts, parked_at, tenant)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)
                 ON CONFLICT (subscriber, event_id) DO UPDATE
                 SET error = excluded.error, attempts = excluded.attempts, parked_at = excluded.parked_at",
                t.dead_letters
            )),
            dlq_list: q(format!(
                "SELECT {EVENT_COLUMNS}, error, attempts, parked_at FROM {} WHERE subscriber = $1 ORDER BY position",
                t.dead_letters
            )
            .replace("recorded_at, tenant, error", "parked_at AS recorded_at, tenant, error")),
            dlq_remove: q(format!("DELETE FROM {} WHERE subscriber = $1 AND event_id = $2", t.dead_letters)),
            saga_load: q(format!(
                "SELECT state, version, last_position, failure FROM {} WHERE saga = $1 AND saga_key = $2",
                t.sagas
            )),
            saga_create: q(format!(
                "INSERT INTO {} (saga, saga_key, state, version, last_position, failure) VALUES ($1, $2, $3, 1, $4, $5)
                 ON CONFLICT (saga, saga_key) DO NOTHING",
                t.sagas
            )),
            saga_update: q(format!(
                "UPDATE {} SET state = $3, version = version + 1, last_position = $4, failure = $6
                 WHERE saga = $1 AND saga_key = $2 AND version = $5",
                t.sagas
            )),
            saga_delete: q(format!("DELETE FROM {} WHERE saga = $1 AND saga_key = $2 AND version = $3", t.sagas)),
            deadline_insert: q(format!(
                "INSERT INTO {} (id, saga, saga_key, due, event_name, schema_version, payload, correlation_id)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (id) DO NOTHING",
                t.deadlines
            )),
            deadline_cancel: q(format!("DELETE FROM {} WHERE id = $1", t.deadlines)),
            deadline_exists: q(format!("SELECT COUNT(*) FROM {} WHERE id = $1 AND saga = $2", t.deadlines)),
            deadline_delete_key: q(format!("DELETE FROM {} WHERE saga = $1 AND saga_key = $2", t.deadlines)),
            deadline_due: q(format!(
                "SELECT id, saga, saga_key, due, event_name, schema_version, payload, correlation_id FROM {}
                 WHERE saga = $1 AND due <= $2 ORDER BY due, id LIMIT $3",
                t.deadlines
            )),
            outbox_insert_range: q(format!(
                "INSERT INTO {} (position) SELECT position FROM {} WHERE position >= $1 AND position <= $2",
                t.outbox, t.events
            )),
            outbox_pending: q(format!(
                "SELECT {} FROM {} o JOIN {} e ON e.position = o.position ORDER BY o.position LIMIT $1",
                EVENT_COLUMNS.split(", ").map(|c| format!("e.{c}")).collect::<Vec<_>>().join(", "),
                t.outbox,
                t.events
            )),
            tables,
        }
    }

    /// Deletes published outbox rows: `$1 .. $n` the positions.
    pub(crate) fn outbox_mark(&self, n: usize) -> SqlStr {
        let list: Vec<String> = (1..=n).map(|i| format!("${i}")).collect();
        let sql = format!(
            "DELETE FROM {} WHERE position IN ({})",
            self.tables.outbox,
            list.join(", ")
        );
        AssertSqlSafe(sql).into_sql_str()
    }

    /// A scan's statement: `$1`/`$2` the inclusive position range, `$3` the
    /// limit, then the aggregate type, id and tenant as the scope needs.
    pub(crate) fn scan(&self, scope: &interlock::store::Scope, direction: interlock::store::Direction) -> SqlStr {
        use interlock::store::{Direction, Scope};
        let scope = match scope {
            Scope::Stream(_) => "aggregate_type = $4 AND aggregate_id = $5 AND tenant = $6 AND ",
            Scope::Category(_) => "aggregate_type = $4 AND ",
            Scope::Log => "",
            Scope::TenantCategory(..) => "aggregate_type = $4 AND tenant = $5 AND ",
            Scope::Tenant(_) => "tenant = $4 AND ",
        };
        let order = match direction {
            Direction::Forward => "ASC",
            Direction::Backward => "DESC",
        };
        let sql = format!(
            "SELECT {EVENT_COLUMNS} FROM {} WHERE {scope}position >= $1 AND position <= $2 ORDER BY position {order} LIMIT $3",
            self.tables.events
        );
        AssertSqlSafe(sql).into_sql_str()
    }

    /// `read_all` with its filter: `$1` the position, `$2` the limit, then
    /// the names, the types, and the tenant (`tenant`: whether there is one).
    pub(crate) fn read_all(&self, names: usize, types: usize, tenant: bool) -> SqlStr {
        let mut sql = format!("SELECT {EVENT_COLUMNS} FROM {} WHERE position > $1", self.tables.events);
        let mut next = 3;
        for (column, count) in [
            ("event_name", names),
            ("aggregate_type", types),
            ("tenant", usize::from(tenant)),
        ] {
            if count > 0 {
                let list: Vec<String> = (next..next + count).map(|i| format!("${i}")).collect();
                sql.push_str(&format!(" AND {column} IN ({})", list.join(", ")));
                next += count;
            }
        }
        sql.push_str(" ORDER BY position LIMIT $2");
        AssertSqlSafe(sql).into_sql_str()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_bind_every_value() {
        let q = Queries::new(Tables::new(Some("s"), "p_"), " FOR SHARE");
        let sql = q.read_all(2, 1, false);
        let sql = sql.as_str();
        assert!(
            sql.contains("event_name IN ($3, $4)") && sql.contains("aggregate_type IN ($5)"),
            "{sql}"
        );
        assert!(sql.ends_with("LIMIT $2"));
        assert!(q.tables.events == "\"s\".\"p_events\"");
    }
}
