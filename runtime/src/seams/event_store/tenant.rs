//! One tenant's view of a shared event store: every read and write is
//! confined to the tenant's streams, whatever it is asked.

use std::sync::Arc;

use super::{
    AtomicAppend, BoxFuture, Committed, EventFilter, EventStore, ExpectedVersion, NewEvent, RecordedEvent,
    RewrittenEvent, Scan, Scope, StoreError,
};
use crate::domain::ids::{Position, StreamId, TenantId, Version};

/// An [`EventStore`] that sees one tenant of the store under it.
///
/// - A stream of another tenant (or of none) is refused with
///   [`StoreError::OtherTenant`], for reads and appends alike.
/// - A category scan or condition is the tenant's category, the log is
///   the tenant's log; a scope naming another tenant is refused.
/// - `read_all` reads the tenant's events only; a filter naming another
///   tenant is refused. `head` is the position of the tenant's last event.
/// - A rewrite of a position that is not the tenant's is refused.
#[derive(Clone)]
pub struct TenantStore {
    inner: Arc<dyn EventStore>,
    tenant: TenantId,
}

impl std::fmt::Debug for TenantStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TenantStore")
            .field("tenant", &self.tenant)
            .finish_non_exhaustive()
    }
}

impl TenantStore {
    /// `tenant`'s view of `inner`.
    pub fn new(inner: Arc<dyn EventStore>, tenant: TenantId) -> Self {
        Self { inner, tenant }
    }

    /// The tenant.
    #[must_use]
    pub fn tenant(&self) -> &TenantId {
        &self.tenant
    }

    fn refuse(&self, target: impl std::fmt::Display) -> StoreError {
        StoreError::OtherTenant {
            tenant: self.tenant.clone(),
            target: target.to_string(),
        }
    }

    /// `stream`, if it is the tenant's.
    fn own(&self, stream: &StreamId) -> Result<(), StoreError> {
        if stream.tenant() == Some(&self.tenant) {
            Ok(())
        } else {
            Err(self.refuse(format!("stream {stream}")))
        }
    }

    /// `scope` confined to the tenant.
    fn confine(&self, scope: &Scope) -> Result<Scope, StoreError> {
        match scope {
            Scope::Stream(stream) => self.own(stream).map(|()| scope.clone()),
            Scope::Category(category) => Ok(Scope::TenantCategory(self.tenant.clone(), category.clone())),
            Scope::Log => Ok(Scope::Tenant(self.tenant.clone())),
            Scope::TenantCategory(tenant, _) | Scope::Tenant(tenant) if *tenant == self.tenant => Ok(scope.clone()),
            Scope::TenantCategory(..) | Scope::Tenant(_) => Err(self.refuse(scope)),
        }
    }

    fn confine_append(&self, mut append: AtomicAppend) -> Result<AtomicAppend, StoreError> {
        for part in &append.streams {
            self.own(&part.stream)?;
        }
        for condition in &mut append.conditions {
            condition.scope = self.confine(&condition.scope)?;
        }
        Ok(append)
    }
}

fn ready<'a, T: Send + 'a>(result: Result<T, StoreError>) -> BoxFuture<'a, Result<T, StoreError>> {
    Box::pin(std::future::ready(result))
}

impl EventStore for TenantStore {
    fn append<'a>(
        &'a self,
        stream: &'a StreamId,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
    ) -> BoxFuture<'a, Result<Committed, StoreError>> {
        match self.own(stream) {
            Ok(()) => self.inner.append(stream, expected, events),
            Err(e) => ready(Err(e)),
        }
    }

    fn append_atomic(&self, append: AtomicAppend) -> BoxFuture<'_, Result<Vec<Committed>, StoreError>> {
        match self.confine_append(append) {
            Ok(append) => self.inner.append_atomic(append),
            Err(e) => ready(Err(e)),
        }
    }

    fn read_stream<'a>(
        &'a self,
        stream: &'a StreamId,
        from: Version,
        to: Option<Version>,
    ) -> BoxFuture<'a, Result<Vec<RecordedEvent>, StoreError>> {
        match self.own(stream) {
            Ok(()) => self.inner.read_stream(stream, from, to),
            Err(e) => ready(Err(e)),
        }
    }

    fn read_stream_for_load<'a>(
        &'a self,
        stream: &'a StreamId,
        from: Version,
    ) -> BoxFuture<'a, Result<Vec<RecordedEvent>, StoreError>> {
        match self.own(stream) {
            Ok(()) => self.inner.read_stream_for_load(stream, from),
            Err(e) => ready(Err(e)),
        }
    }

    fn read_all<'a>(
        &'a self,
        after: Position,
        limit: usize,
        filter: &'a EventFilter,
    ) -> BoxFuture<'a, Result<Vec<RecordedEvent>, StoreError>> {
        if let Some(other) = filter.tenant.as_ref().filter(|t| **t != self.tenant) {
            return ready(Err(self.refuse(format!("the log of tenant `{other}`"))));
        }
        let confined = EventFilter {
            tenant: Some(self.tenant.clone()),
            ..filter.clone()
        };
        Box::pin(async move { self.inner.read_all(after, limit, &confined).await })
    }

    fn stream_version<'a>(&'a self, stream: &'a StreamId) -> BoxFuture<'a, Result<Version, StoreError>> {
        match self.own(stream) {
            Ok(()) => self.inner.stream_version(stream),
            Err(e) => ready(Err(e)),
        }
    }

    fn head(&self) -> BoxFuture<'_, Result<Position, StoreError>> {
        Box::pin(async move {
            let last = self.inner.last_event(&Scope::Tenant(self.tenant.clone())).await?;
            Ok(last.map_or(Position::START, |e| e.position))
        })
    }

    fn scan<'a>(&'a self, scan: &'a Scan) -> BoxFuture<'a, Result<Vec<RecordedEvent>, StoreError>> {
        match self.confine(&scan.scope) {
            Ok(scope) => {
                let confined = Scan { scope, ..scan.clone() };
                Box::pin(async move { self.inner.scan(&confined).await })
            }
            Err(e) => ready(Err(e)),
        }
    }

    fn rewrite(&self, position: Position, event: RewrittenEvent) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(async move {
            match self.inner.event_at(position).await? {
                Some(e) if e.stream.tenant() == Some(&self.tenant) => self.inner.rewrite(position, event).await,
                Some(_) => Err(self.refuse(format!("the event at position {position}"))),
                None => Err(StoreError::NotFound(position)),
            }
        })
    }

    fn watch_head(&self) -> Option<tokio::sync::watch::Receiver<Position>> {
        self.inner.watch_head()
    }
}
