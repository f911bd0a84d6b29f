//! Creating the tables, or bringing them to the current schema.

use interlock::Timestamp;
use interlock::store::StoreError;
use sqlx::{AssertSqlSafe, SqlSafeStr};

use super::SqlStore;
use crate::driver::{Driver, Param, SqlRow};
use crate::schema::{SCHEMA_VERSION, migrations, schema_version_query};

impl<D: Driver> SqlStore<D> {
    /// Creates the tables, or brings them to the current schema, in one
    /// transaction that other migrating processes wait for.
    pub(crate) async fn migrate(&self) -> Result<(), StoreError> {
        let err = |e| crate::error::store_error(D::NAME, e);
        let t = &self.queries().tables;
        let mut tx = self.begin_write().await.map_err(err)?;
        D::lock_migrations(self.state(), &mut tx).await.map_err(err)?;
        let create = format!(
            "CREATE TABLE IF NOT EXISTS {} (version BIGINT PRIMARY KEY, applied_at BIGINT NOT NULL)",
            t.migrations
        );
        D::execute(&mut tx, sql(create), &[]).await.map_err(err)?;
        let rows = D::fetch_all(&mut tx, sql(schema_version_query(t)), &[])
            .await
            .map_err(err)?;
        let current = match rows.first() {
            Some(row) => row.int(0).map_err(err)?,
            None => 0,
        };
        if current > SCHEMA_VERSION {
            return Err(StoreError::Backend {
                backend: D::NAME,
                source: format!("the database schema is at version {current}, newer than this code ({SCHEMA_VERSION})")
                    .into(),
            });
        }
        for (version, statements) in migrations(D::BYTES, t, D::NAME == "postgres") {
            if version <= current {
                continue;
            }
            for statement in statements {
                D::execute(&mut tx, sql(statement), &[]).await.map_err(err)?;
            }
            let record = format!("INSERT INTO {} (version, applied_at) VALUES ($1, $2)", t.migrations);
            let params = [Param::Int(version), Param::Int(Timestamp::now().0)];
            D::execute(&mut tx, sql(record), &params).await.map_err(err)?;
        }
        tx.commit().await.map_err(err)
    }
}

fn sql(statement: String) -> sqlx::SqlStr {
    AssertSqlSafe(statement).into_sql_str()
}
