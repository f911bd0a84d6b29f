//! The [`EventStore`](crate::store::EventStore) conformance suite: scans of streams, categories and the log, both ways.

use super::{event, n_of};
use crate::domain::ids::StreamId;
use crate::store::{EventStore, ExpectedVersion};

/// Stream, category and log scans, forwards and backwards, with inclusive,
/// exclusive and open bounds, limits and paging; the last event of each
/// scope; empty categories and empty ranges.
pub async fn scans_both_ways<S: EventStore>(store: S) {
    use std::ops::Bound::{Excluded, Included, Unbounded};

    use crate::store::{Scan, Scope};
    let (a, b) = (
        format!("conf.scan_a_{}", ulid::Ulid::new()),
        format!("conf.scan_b_{}", ulid::Ulid::new()),
    );
    let a1 = StreamId::new(a.clone(), "1");
    let a2 = StreamId::new(a.clone(), "2");
    let b1 = StreamId::new(b.clone(), "1");
    // Interleaved: event n goes to the stream below; p[n] is its position.
    let mut p = Vec::new();
    for (n, s) in [&a1, &b1, &a2, &a1, &b1, &a2].into_iter().enumerate() {
        let done = store
            .append(s, ExpectedVersion::Any, vec![event("conf.scanned", n as u64)])
            .await
            .expect("append");
        p.push(done.positions[0]);
    }
    let ns = |events: Vec<crate::store::RecordedEvent>| events.iter().map(|e| n_of(&e.payload)).collect::<Vec<_>>();
    let scan = |s: Scan| {
        let store = &store;
        async move { ns(store.scan(&s).await.expect("scan")) }
    };
    let within = |s: Scan| s.between(Included(p[0]), Included(p[5]));

    assert_eq!(scan(within(Scan::category(a.clone()))).await, [0, 2, 3, 5]);
    assert_eq!(scan(within(Scan::category(a.clone()).backward())).await, [5, 3, 2, 0]);
    assert_eq!(scan(Scan::category(b.clone())).await, [1, 4], "open bounds");
    assert_eq!(scan(Scan::stream(a1.clone())).await, [0, 3]);
    assert_eq!(scan(Scan::stream(a1.clone()).backward()).await, [3, 0]);

    // Paging backwards through a category.
    let first = Scan::category(a.clone()).backward().limit(2);
    let page = store.scan(&first).await.expect("scan");
    assert_eq!(ns(page.clone()), [5, 3]);
    let next = first.after(page[1].position);
    assert_eq!(scan(next.clone()).await, [2, 0]);
    assert_eq!(scan(next.after(p[0])).await, Vec::<u64>::new());

    // Bounds on the log, each kind.
    let log = |from, to| Scan::log().between(from, to);
    assert_eq!(scan(log(Included(p[1]), Excluded(p[4]))).await, [1, 2, 3]);
    assert_eq!(scan(log(Excluded(p[1]), Included(p[4]))).await, [2, 3, 4]);
    assert_eq!(scan(log(Included(p[1]), Excluded(p[4])).backward()).await, [3, 2, 1]);
    assert_eq!(scan(log(Included(p[2]), Included(p[2]))).await, [2]);
    assert_eq!(
        scan(log(Excluded(p[2]), Excluded(p[3]))).await,
        Vec::<u64>::new(),
        "empty range"
    );
    assert_eq!(
        scan(log(Included(p[3]), Included(p[2]))).await,
        Vec::<u64>::new(),
        "reversed range"
    );
    assert_eq!(scan(log(Included(p[4]), Unbounded).limit(1)).await, [4]);

    // Empty scopes.
    let nobody = format!("conf.scan_none_{}", ulid::Ulid::new());
    assert_eq!(scan(Scan::category(nobody.clone())).await, Vec::<u64>::new());
    assert_eq!(
        scan(Scan::stream(StreamId::new(a.clone(), "none"))).await,
        Vec::<u64>::new()
    );

    // The last event of each scope.
    let last = |scope: Scope| {
        let store = &store;
        async move { store.last_event(&scope).await.expect("last").map(|e| n_of(&e.payload)) }
    };
    assert_eq!(last(Scope::Category(a.clone().into())).await, Some(5));
    assert_eq!(last(Scope::Stream(b1.clone())).await, Some(4));
    assert_eq!(last(Scope::Category(nobody.into())).await, None);
    let log_last = store.last_event(&Scope::Log).await.expect("last").expect("an event");
    assert!(log_last.position >= p[5]);

    // Page by page, one event a page, both ways.
    for (scan, expected) in [
        (Scan::category(a.clone()).limit(1), vec![0, 2, 3, 5]),
        (Scan::category(a.clone()).backward().limit(3), vec![5, 3, 2, 0]),
    ] {
        let mut pages = crate::store::ScanPages::new(&store, scan);
        let mut seen = Vec::new();
        while let Some(page) = pages.next_page().await.expect("page") {
            seen.extend(ns(page));
        }
        assert_eq!(seen, expected);
    }
}
