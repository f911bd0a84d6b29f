//! Scans: the events of one stream, one category (every stream of an
//! aggregate type) or the whole log, forwards or backwards over a range of
//! global positions, a page at a time.

use std::borrow::Cow;
use std::ops::Bound;

use crate::domain::ids::{Position, StreamId, TenantId};

/// Which events a scan reads.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Scope {
    /// One stream.
    Stream(StreamId),
    /// Every stream of one aggregate type, of every tenant.
    Category(Cow<'static, str>),
    /// The whole log, of every tenant.
    Log,
    /// Every stream of one aggregate type in one tenant.
    TenantCategory(TenantId, Cow<'static, str>),
    /// Every stream of one tenant: its log.
    Tenant(TenantId),
}

impl Scope {
    /// Whether an event of `stream` belongs to the scope.
    #[must_use]
    pub fn contains(&self, stream: &StreamId) -> bool {
        match self {
            Scope::Stream(s) => s == stream,
            Scope::Category(c) => stream.aggregate_type() == c.as_ref(),
            Scope::Log => true,
            Scope::TenantCategory(t, c) => stream.tenant() == Some(t) && stream.aggregate_type() == c.as_ref(),
            Scope::Tenant(t) => stream.tenant() == Some(t),
        }
    }
}

impl std::fmt::Display for Scope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Scope::Stream(stream) => write!(f, "stream `{stream}`"),
            Scope::Category(category) => write!(f, "category `{category}`"),
            Scope::Log => f.write_str("the log"),
            Scope::TenantCategory(tenant, category) => write!(f, "category `{category}` of tenant `{tenant}`"),
            Scope::Tenant(tenant) => write!(f, "the log of tenant `{tenant}`"),
        }
    }
}

/// The order of a scan.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Direction {
    /// Lowest position first.
    #[default]
    Forward,
    /// Highest position first.
    Backward,
}

/// A scan: a scope, a range of global positions (each bound inclusive,
/// exclusive or open), a direction and a page size. The first `limit`
/// events of the range in `direction` are returned; page on with
/// [`Scan::after`].
#[derive(Clone, Debug, PartialEq, Eq)]
#[must_use]
pub struct Scan {
    /// What is read.
    pub scope: Scope,
    /// The lowest position of the range.
    pub from: Bound<Position>,
    /// The highest position of the range.
    pub to: Bound<Position>,
    /// The order.
    pub direction: Direction,
    /// Events per page at most.
    pub limit: usize,
}

impl Scan {
    /// Everything in `scope`, forwards, 512 events a page.
    pub fn of(scope: Scope) -> Self {
        Self {
            scope,
            from: Bound::Unbounded,
            to: Bound::Unbounded,
            direction: Direction::Forward,
            limit: 512,
        }
    }

    /// The events of one stream.
    pub fn stream(stream: StreamId) -> Self {
        Self::of(Scope::Stream(stream))
    }

    /// The events of every stream of `aggregate_type`.
    pub fn category(aggregate_type: impl Into<Cow<'static, str>>) -> Self {
        Self::of(Scope::Category(aggregate_type.into()))
    }

    /// The whole log.
    pub fn log() -> Self {
        Self::of(Scope::Log)
    }

    /// Highest position first.
    pub fn backward(mut self) -> Self {
        self.direction = Direction::Backward;
        self
    }

    /// Only positions in `from..=to`-like bounds.
    pub fn between(mut self, from: Bound<Position>, to: Bound<Position>) -> Self {
        self.from = from;
        self.to = to;
        self
    }

    /// At most `limit` events a page.
    pub fn limit(mut self, limit: usize) -> Self {
        self.limit = limit;
        self
    }

    /// The scan of the next page, after a page that ended at `last` (the
    /// position of its last event, in the scan's direction).
    pub fn after(&self, last: Position) -> Self {
        let mut next = self.clone();
        match self.direction {
            Direction::Forward => next.from = Bound::Excluded(last),
            Direction::Backward => next.to = Bound::Excluded(last),
        }
        next
    }

    /// The range as inclusive positions `(lowest, highest)`, `None` when
    /// it is empty.
    #[must_use]
    pub fn inclusive_range(&self) -> Option<(u64, u64)> {
        let low = match self.from {
            Bound::Included(p) => p.0,
            Bound::Excluded(p) => p.0.checked_add(1)?,
            Bound::Unbounded => 0,
        };
        let high = match self.to {
            Bound::Included(p) => p.0,
            Bound::Excluded(p) => p.0.checked_sub(1)?,
            Bound::Unbounded => u64::MAX,
        };
        (low <= high).then_some((low, high))
    }

    /// Whether an event of `stream` at `position` is in the scan's scope
    /// and range.
    #[must_use]
    pub fn includes(&self, stream: &StreamId, position: Position) -> bool {
        self.scope.contains(stream)
            && self
                .inclusive_range()
                .is_some_and(|(low, high)| (low..=high).contains(&position.0))
    }
}

/// A scan read page by page, so a long category or log is never held in
/// memory at once: `while let Some(page) = pages.next_page().await? { .. }`.
pub struct ScanPages<'s, S: super::EventStore + ?Sized> {
    store: &'s S,
    next: Option<Scan>,
}

impl<S: super::EventStore + ?Sized> std::fmt::Debug for ScanPages<'_, S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScanPages")
            .field("next", &self.next)
            .finish_non_exhaustive()
    }
}

impl<'s, S: super::EventStore + ?Sized> ScanPages<'s, S> {
    /// The pages of `scan` on `store`.
    pub fn new(store: &'s S, scan: Scan) -> Self {
        Self {
            store,
            next: Some(scan),
        }
    }

    /// The next page, or `None` once the scan is exhausted.
    ///
    /// # Errors
    ///
    /// The store's; the same page can be asked for again.
    pub async fn next_page(&mut self) -> Result<Option<Vec<super::RecordedEvent>>, super::StoreError> {
        let Some(scan) = self.next.take() else {
            return Ok(None);
        };
        if scan.limit == 0 {
            return Ok(None);
        }
        let page = match self.store.scan(&scan).await {
            Ok(page) => page,
            Err(e) => {
                self.next = Some(scan);
                return Err(e);
            }
        };
        if page.is_empty() {
            return Ok(None);
        }
        if page.len() >= scan.limit
            && let Some(last) = page.last()
        {
            self.next = Some(scan.after(last.position));
        }
        Ok(Some(page))
    }
}
