//! The [`EventStore`](crate::store::EventStore) conformance suite: atomic appends to several streams and their conditions on scopes.

use std::sync::Arc;

use super::{event, n_of, stream};
use crate::domain::ids::{Position, StreamId, Version};
use crate::store::{EventFilter, EventStore, ExpectedVersion, StoreError};

/// An atomic append to several streams commits all of them or none: each
/// stream's expected version is checked, a conflict on one writes nothing
/// on any, two parts of one stream follow each other, and positions
/// increase through the parts in order.
pub async fn atomic_append_across_streams<S: EventStore>(store: S) {
    use crate::store::AtomicAppend;
    let (a, b) = (stream("conf.atomic"), stream("conf.atomic"));
    store
        .append(&b, ExpectedVersion::Any, vec![event("e.atomic", 0)])
        .await
        .expect("append");
    let committed = store
        .append_atomic(
            AtomicAppend::new()
                .stream(
                    a.clone(),
                    ExpectedVersion::Exact(Version(0)),
                    vec![event("e.atomic", 1), event("e.atomic", 2)],
                )
                .stream(
                    b.clone(),
                    ExpectedVersion::Exact(Version(1)),
                    vec![event("e.atomic", 3)],
                )
                .stream(
                    a.clone(),
                    ExpectedVersion::Exact(Version(2)),
                    vec![event("e.atomic", 4)],
                ),
        )
        .await
        .expect("atomic append");
    assert_eq!(committed.len(), 3);
    assert_eq!(
        (committed[0].stream.clone(), committed[0].version),
        (a.clone(), Version(2))
    );
    assert_eq!(
        (committed[1].stream.clone(), committed[1].version),
        (b.clone(), Version(2))
    );
    assert_eq!(
        (committed[2].stream.clone(), committed[2].version),
        (a.clone(), Version(3))
    );
    let positions: Vec<Position> = committed.iter().flat_map(|c| c.positions.clone()).collect();
    assert_eq!(positions.len(), 4);
    assert!(positions.windows(2).all(|w| w[0] < w[1]), "{positions:?}");
    let read_a = store.read_stream(&a, Version(1), None).await.expect("read");
    assert_eq!(read_a.iter().map(|e| n_of(&e.payload)).collect::<Vec<_>>(), [1, 2, 4]);
    assert_eq!(
        read_a.iter().map(|e| e.position).collect::<Vec<_>>(),
        [positions[0], positions[1], positions[3]]
    );

    // One stale stream: nothing is written anywhere.
    let head = store.head().await.expect("head");
    let stale = store
        .append_atomic(
            AtomicAppend::new()
                .stream(
                    a.clone(),
                    ExpectedVersion::Exact(Version(3)),
                    vec![event("e.atomic", 5)],
                )
                .stream(
                    b.clone(),
                    ExpectedVersion::Exact(Version(1)),
                    vec![event("e.atomic", 6)],
                ),
        )
        .await;
    match stale {
        Err(StoreError::Conflict { stream, actual, .. }) => {
            assert_eq!(stream, b);
            assert_eq!(actual, Version(2));
        }
        other => panic!("expected a conflict on the second stream, got {other:?}"),
    }
    assert_eq!(store.stream_version(&a).await.expect("version"), Version(3));
    assert_eq!(store.stream_version(&b).await.expect("version"), Version(2));
    let after = store.read_all(head, 1000, &EventFilter::all()).await.expect("read");
    assert!(
        after.iter().all(|e| e.stream != a && e.stream != b),
        "a refused atomic append wrote {after:?}"
    );

    // Nothing to write: the checks still hold, nothing changes.
    let empty = store.append_atomic(AtomicAppend::new()).await.expect("empty");
    assert!(empty.is_empty());
}

/// Conditions on a category, a stream and the log: an append made under
/// "no event after P" commits while the scope is unchanged, and fails
/// with `ScopeChanged` (writing nothing) once an event of the scope
/// follows P; events of other categories do not count.
pub async fn conditions_on_scopes<S: EventStore>(store: S) {
    use crate::store::{AtomicAppend, Scope};
    let users = format!("conf.users_{}", ulid::Ulid::new());
    let others = format!("conf.others_{}", ulid::Ulid::new());
    let category = Scope::Category(users.clone().into());
    let last = |scope: Scope| {
        let store = &store;
        async move {
            store
                .last_event(&scope)
                .await
                .expect("last")
                .map_or(Position::START, |e| e.position)
        }
    };
    // An empty category is unchanged since the start.
    let alice = StreamId::new(users.clone(), "alice");
    let first = store
        .append_atomic(
            AtomicAppend::new()
                .stream(
                    alice.clone(),
                    ExpectedVersion::Exact(Version(0)),
                    vec![event("e.user", 1)],
                )
                .unchanged(category.clone(), Position::START),
        )
        .await
        .expect("first claim");
    let p = first[0].positions[0];
    assert_eq!(last(category.clone()).await, p);

    // Another category moving does not change this one.
    store
        .append(
            &StreamId::new(others.clone(), "x"),
            ExpectedVersion::Any,
            vec![event("e.other", 2)],
        )
        .await
        .expect("append");
    let bob = StreamId::new(users.clone(), "bob");
    store
        .append_atomic(
            AtomicAppend::new()
                .stream(
                    bob.clone(),
                    ExpectedVersion::Exact(Version(0)),
                    vec![event("e.user", 3)],
                )
                .unchanged(category.clone(), p),
        )
        .await
        .expect("unchanged category");

    // Now the category has moved past `p`: a decision based on `p` is refused.
    let head = store.head().await.expect("head");
    let carol = StreamId::new(users.clone(), "carol");
    match store
        .append_atomic(
            AtomicAppend::new()
                .stream(carol.clone(), ExpectedVersion::Any, vec![event("e.user", 4)])
                .unchanged(category.clone(), p),
        )
        .await
    {
        Err(StoreError::ScopeChanged { scope, since, actual }) => {
            assert_eq!(scope, category);
            assert_eq!(since, p);
            assert!(actual > p, "{actual} after {p}");
        }
        other => panic!("expected ScopeChanged, got {other:?}"),
    }
    assert_eq!(store.stream_version(&carol).await.expect("version"), Version(0));

    // A stream scope: unchanged since its last event, changed after.
    let alice_last = last(Scope::Stream(alice.clone())).await;
    store
        .append_atomic(
            AtomicAppend::new()
                .stream(carol.clone(), ExpectedVersion::Any, vec![event("e.user", 5)])
                .unchanged(Scope::Stream(alice.clone()), alice_last),
        )
        .await
        .expect("unchanged stream");
    assert!(matches!(
        store
            .append_atomic(
                AtomicAppend::new()
                    .stream(carol.clone(), ExpectedVersion::Any, vec![event("e.user", 6)])
                    .unchanged(Scope::Stream(carol.clone()), head),
            )
            .await,
        Err(StoreError::ScopeChanged { .. })
    ));

    // The log: any event anywhere after P refuses the append. (Other
    // writers may share the store: an unchanged log is retried until it
    // holds.)
    let mut committed = false;
    for _ in 0..100 {
        let since = store.head().await.expect("head");
        match store
            .append_atomic(
                AtomicAppend::new()
                    .stream(carol.clone(), ExpectedVersion::Any, vec![event("e.user", 7)])
                    .unchanged(Scope::Log, since),
            )
            .await
        {
            Ok(_) => {
                committed = true;
                break;
            }
            Err(StoreError::ScopeChanged { .. }) => tokio::task::yield_now().await,
            Err(e) => panic!("unexpected error {e}"),
        }
    }
    assert!(committed, "an append under an unchanged log never committed");
    let since = store.head().await.expect("head");
    store
        .append(
            &StreamId::new(others, "y"),
            ExpectedVersion::Any,
            vec![event("e.other", 8)],
        )
        .await
        .expect("append");
    assert!(matches!(
        store
            .append_atomic(
                AtomicAppend::new()
                    .stream(carol.clone(), ExpectedVersion::Any, vec![event("e.user", 9)])
                    .unchanged(Scope::Log, since),
            )
            .await,
        Err(StoreError::ScopeChanged { scope: Scope::Log, .. })
    ));
    assert_eq!(store.stream_version(&carol).await.expect("version"), Version(2));
}

/// The category constraint under contention: 16 writers each try to claim
/// the same username by reading the category, refusing if it is taken and
/// appending a claim to their own stream under "category unchanged since
/// what I read", re-deciding on `ScopeChanged`. Exactly one claim commits;
/// every other writer ends refusing.
pub async fn category_claims_under_contention<S: EventStore>(store: S) {
    use crate::store::{AtomicAppend, Scan, ScanPages, Scope};
    const WRITERS: u64 = 16;
    let users = format!("conf.claims_{}", ulid::Ulid::new());
    let store = Arc::new(store);
    let mut tasks = Vec::new();
    for writer in 0..WRITERS {
        let store = Arc::clone(&store);
        let users = users.clone();
        tasks.push(tokio::spawn(async move {
            let own = StreamId::new(users.clone(), format!("user-{writer}"));
            loop {
                // The decision: read the category to its end.
                let mut since = Position::START;
                let mut taken = false;
                let mut pages = ScanPages::new(&*store, Scan::category(users.clone()));
                while let Some(page) = pages.next_page().await.expect("scan") {
                    for e in page {
                        since = e.position;
                        taken |= e.name == "e.claimed";
                    }
                }
                if taken {
                    return false;
                }
                let append = AtomicAppend::new()
                    .stream(
                        own.clone(),
                        ExpectedVersion::Exact(Version(0)),
                        vec![event("e.claimed", writer)],
                    )
                    .unchanged(Scope::Category(users.clone().into()), since);
                match store.append_atomic(append).await {
                    Ok(_) => return true,
                    Err(StoreError::ScopeChanged { .. }) => tokio::task::yield_now().await,
                    Err(e) => panic!("unexpected error {e}"),
                }
            }
        }));
    }
    let mut winners = 0;
    for t in tasks {
        winners += u32::from(t.await.expect("join"));
    }
    assert_eq!(winners, 1, "exactly one writer claims the name");
    let claims = store.scan(&Scan::category(users)).await.expect("scan");
    assert_eq!(claims.len(), 1, "one claim stored: {claims:?}");
}

/// The log constraint under contention: 16 writers keep a gapless counter
/// by reading the log's head and the counter's last value and appending
/// the next value under "log unchanged since the head I read". Every
/// value is taken once.
pub async fn log_counter_under_contention<S: EventStore>(store: S) {
    use crate::store::{AtomicAppend, Scope};
    const WRITERS: u64 = 16;
    const EACH: u64 = 4;
    let store = Arc::new(store);
    let counter = stream("conf.counter");
    let mut tasks = Vec::new();
    for _ in 0..WRITERS {
        let store = Arc::clone(&store);
        let counter = counter.clone();
        tasks.push(tokio::spawn(async move {
            let mut taken = Vec::new();
            while (taken.len() as u64) < EACH {
                let since = store.head().await.expect("head");
                let last = store.last_event(&Scope::Stream(counter.clone())).await.expect("last");
                let next = last.map_or(1, |e| n_of(&e.payload) + 1);
                let append = AtomicAppend::new()
                    .stream(counter.clone(), ExpectedVersion::Any, vec![event("e.count", next)])
                    .unchanged(Scope::Log, since);
                match store.append_atomic(append).await {
                    Ok(_) => taken.push(next),
                    Err(StoreError::ScopeChanged { .. }) => tokio::task::yield_now().await,
                    Err(e) => panic!("unexpected error {e}"),
                }
            }
            taken
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.expect("join"));
    }
    all.sort_unstable();
    assert_eq!(all, (1..=WRITERS * EACH).collect::<Vec<_>>(), "every value once");
    let read = store.read_stream(&counter, Version(1), None).await.expect("read");
    assert_eq!(
        read.iter().map(|e| n_of(&e.payload)).collect::<Vec<_>>(),
        (1..=WRITERS * EACH).collect::<Vec<_>>()
    );
}
