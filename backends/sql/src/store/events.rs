//! `EventStore`: appends go through the group committer to the driver's
//! batch append; reads are shared.

use std::borrow::Cow;

use bytes::Bytes;
use interlock::store::{
    AtomicAppend, BoxFuture, Committed, EventFilter, EventMetadata, EventStore, ExpectedVersion, NewEvent,
    RecordedEvent, RewrittenEvent, Scan, Scope, StoreError,
};
use interlock::{Position, SchemaVersion, StreamId, Version};

use super::{DriverBatch, SqlStore};
use crate::driver::Param::{Bytes as Blob, Int, Text};
use crate::driver::SqlRow;
use crate::queries::tenant_of;
use crate::rows::{i64_of, i64_of_usize, stored};

impl<D: DriverBatch> EventStore for SqlStore<D> {
    fn append<'a>(
        &'a self,
        stream: &'a StreamId,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
    ) -> BoxFuture<'a, Result<Committed, StoreError>> {
        Box::pin(self.inner.committer.append(stream, expected, events))
    }

    fn append_atomic(&self, append: AtomicAppend) -> BoxFuture<'_, Result<Vec<Committed>, StoreError>> {
        Box::pin(self.append_atomic_now(append))
    }

    fn read_stream<'a>(
        &'a self,
        stream: &'a StreamId,
        from: Version,
        to: Option<Version>,
    ) -> BoxFuture<'a, Result<Vec<RecordedEvent>, StoreError>> {
        Box::pin(async move {
            let params = [
                Text(stream.aggregate_type()),
                Text(stream.aggregate_id()),
                Int(i64_of(from.0)),
                Int(to.map_or(i64::MAX, |t| i64_of(t.0))),
                Text(tenant_of(stream)),
            ];
            let rows = self.fetch_all(self.queries().read_stream.clone(), &params).await?;
            crate::rows::events(D::NAME, &rows)
        })
    }

    fn read_stream_for_load<'a>(
        &'a self,
        stream: &'a StreamId,
        from: Version,
    ) -> BoxFuture<'a, Result<Vec<RecordedEvent>, StoreError>> {
        Box::pin(async move {
            let params = [
                Text(stream.aggregate_type()),
                Text(stream.aggregate_id()),
                Int(i64_of(from.0)),
                Text(tenant_of(stream)),
            ];
            let rows = self
                .fetch_all(self.queries().read_stream_for_load.clone(), &params)
                .await?;
            rows.iter().map(|row| light_event(D::NAME, stream, row)).collect()
        })
    }

    fn scan<'a>(&'a self, scan: &'a Scan) -> BoxFuture<'a, Result<Vec<RecordedEvent>, StoreError>> {
        Box::pin(async move {
            let Some((low, high)) = scan.inclusive_range() else {
                return Ok(Vec::new());
            };
            let mut params = vec![Int(i64_of(low)), Int(i64_of(high)), Int(i64_of_usize(scan.limit))];
            match &scan.scope {
                Scope::Stream(stream) => {
                    params.push(Text(stream.aggregate_type()));
                    params.push(Text(stream.aggregate_id()));
                    params.push(Text(tenant_of(stream)));
                }
                Scope::Category(category) => params.push(Text(category.as_ref())),
                Scope::Log => {}
                Scope::TenantCategory(tenant, category) => {
                    params.push(Text(category.as_ref()));
                    params.push(Text(tenant.as_str()));
                }
                Scope::Tenant(tenant) => params.push(Text(tenant.as_str())),
            }
            let sql = self.queries().scan(&scan.scope, scan.direction);
            let rows = self.fetch_all(sql, &params).await?;
            crate::rows::log_page(D::NAME, &rows)
        })
    }

    fn read_all<'a>(
        &'a self,
        after: Position,
        limit: usize,
        filter: &'a EventFilter,
    ) -> BoxFuture<'a, Result<Vec<RecordedEvent>, StoreError>> {
        Box::pin(async move {
            if filter.event_names.as_ref().is_some_and(Vec::is_empty)
                || filter.aggregate_types.as_ref().is_some_and(Vec::is_empty)
            {
                return Ok(Vec::new()); // an empty list matches nothing
            }
            let names: &[Cow<'static, str>] = filter.event_names.as_deref().unwrap_or(&[]);
            let types: &[Cow<'static, str>] = filter.aggregate_types.as_deref().unwrap_or(&[]);
            let mut params = vec![Int(i64_of(after.0)), Int(i64_of_usize(limit))];
            params.extend(names.iter().chain(types).map(|value| Text(value.as_ref())));
            if let Some(tenant) = &filter.tenant {
                params.push(Text(tenant.as_str()));
            }
            let sql = self
                .queries()
                .read_all(names.len(), types.len(), filter.tenant.is_some());
            let rows = self.fetch_all(sql, &params).await?;
            crate::rows::log_page(D::NAME, &rows)
        })
    }

    fn stream_version<'a>(&'a self, stream: &'a StreamId) -> BoxFuture<'a, Result<Version, StoreError>> {
        Box::pin(async move {
            let params = [
                Text(stream.aggregate_type()),
                Text(stream.aggregate_id()),
                Text(tenant_of(stream)),
            ];
            let version = self.fetch_int(self.queries().stream_version.clone(), &params).await?;
            Ok(Version(stored(
                D::NAME,
                || format!("stream {stream}"),
                "version",
                version,
            )?))
        })
    }

    fn head(&self) -> BoxFuture<'_, Result<Position, StoreError>> {
        Box::pin(async move {
            let last = self.fetch_int(self.queries().head.clone(), &[]).await?;
            Ok(Position(stored(
                D::NAME,
                || "the log's head".to_owned(),
                "position",
                last,
            )?))
        })
    }

    fn rewrite(&self, position: Position, event: RewrittenEvent) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(async move {
            let params = [
                Text(event.name.as_ref()),
                Int(i64::from(event.schema_version.0)),
                Blob(event.payload.as_ref()),
                Int(i64_of(position.0)),
            ];
            let changed = self.execute(self.queries().rewrite.clone(), &params).await?;
            if changed == 0 {
                Err(StoreError::NotFound(position))
            } else {
                Ok(())
            }
        })
    }

    fn watch_head(&self) -> Option<tokio::sync::watch::Receiver<Position>> {
        self.inner.head.as_ref().map(tokio::sync::watch::Sender::subscribe)
    }
}

/// An event of `read_stream_for_load`: the columns a load decodes
/// (position, event id, version, name, schema version, payload), no
/// metadata.
fn light_event(backend: &'static str, stream: &StreamId, row: &impl SqlRow) -> Result<RecordedEvent, StoreError> {
    let read = || -> Result<_, sqlx::Error> {
        Ok((
            row.int(0)?,
            row.text(1)?,
            row.int(2)?,
            row.text(3)?,
            row.int(4)?,
            row.bytes(5)?,
        ))
    };
    let (position, event_id, version, name, schema_version, payload) =
        read().map_err(|e| crate::error::store_error(backend, e))?;
    let corrupt = |reason: String| StoreError::Corrupt {
        backend,
        location: format!("{stream} version {version} (position {position})"),
        reason,
    };
    Ok(RecordedEvent {
        event_id: event_id
            .parse()
            .map_err(|e| corrupt(format!("event id `{event_id}`: {e}")))?,
        stream: stream.clone(),
        version: Version(u64::try_from(version).map_err(|_| corrupt(format!("version {version} out of range")))?),
        position: Position(u64::try_from(position).map_err(|_| corrupt(format!("position {position} out of range")))?),
        name: name.into(),
        schema_version: SchemaVersion(
            u32::try_from(schema_version)
                .map_err(|_| corrupt(format!("schema version {schema_version} out of range")))?,
        ),
        payload: Bytes::from(payload),
        metadata: EventMetadata::default(),
    })
}
