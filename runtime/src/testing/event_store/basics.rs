//! The [`EventStore`](crate::store::EventStore) conformance suite: appends, reads of streams and of the log, contention, rewrites and the head.

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use super::{event, n_of, stream};
use crate::domain::ids::{
    CausationId, CommandId, CorrelationId, Position, SchemaVersion, StreamId, Timestamp, Version,
};
use crate::store::{EventFilter, EventMetadata, EventStore, ExpectedVersion, RewrittenEvent, StoreError};

/// `try_append_now` either hands the events back untouched (the store
/// appends only with `append`) or appends exactly as `append` would,
/// conflicts included.
pub async fn append_now_is_append_or_nothing<S: EventStore>(store: S) {
    let s = stream("conf.now");
    match store.try_append_now(
        &s,
        ExpectedVersion::Exact(Version(0)),
        vec![event("e.one", 1), event("e.two", 2)],
    ) {
        Err(events) => {
            assert_eq!(events.len(), 2);
            assert_eq!(n_of(&events[1].payload), 2);
            assert_eq!(store.stream_version(&s).await.expect("version"), Version(0));
        }
        Ok(committed) => {
            let committed = committed.expect("append now");
            assert_eq!(committed.version, Version(2));
            assert_eq!(committed.positions.len(), 2);
            let read = store.read_stream(&s, Version(1), None).await.expect("read");
            assert_eq!(read.iter().map(|e| n_of(&e.payload)).collect::<Vec<_>>(), [1, 2]);
            let stale = store.try_append_now(&s, ExpectedVersion::Exact(Version(0)), vec![event("e.three", 3)]);
            assert!(
                matches!(stale, Ok(Err(StoreError::Conflict { actual: Version(2), .. }))),
                "{stale:?}"
            );
            assert_eq!(store.stream_version(&s).await.expect("version"), Version(2));
        }
    }
}

/// Appended events read back with versions 1..n and increasing positions.
pub async fn append_and_read_back<S: EventStore>(store: S) {
    let s = stream("conf.a");
    let committed = store
        .append(
            &s,
            ExpectedVersion::Exact(Version(0)),
            vec![event("e.one", 1), event("e.two", 2)],
        )
        .await
        .expect("append");
    assert_eq!(committed.version, Version(2));
    assert_eq!(committed.positions.len(), 2);
    assert!(committed.positions[0] < committed.positions[1]);
    let committed2 = store
        .append(&s, ExpectedVersion::Exact(Version(2)), vec![event("e.three", 3)])
        .await
        .expect("append");
    assert_eq!(committed2.version, Version(3));
    assert!(committed2.positions[0] > committed.positions[1]);

    let read = store.read_stream(&s, Version(1), None).await.expect("read");
    assert_eq!(read.len(), 3);
    for (i, e) in read.iter().enumerate() {
        assert_eq!(e.version, Version(i as u64 + 1));
        assert_eq!(e.stream, s);
        assert_eq!(n_of(&e.payload), i as u64 + 1);
    }
    assert_eq!(read[0].name, "e.one");
    assert_eq!(read[2].position, committed2.positions[0]);
    assert_eq!(store.stream_version(&s).await.expect("version"), Version(3));
}

/// Every metadata field, the schema version and the event id survive storage.
pub async fn metadata_round_trips<S: EventStore>(store: S) {
    let s = stream("conf.meta");
    let command = CommandId::new();
    let mut headers = BTreeMap::new();
    headers.insert("tenant".to_owned(), "acme".to_owned());
    headers.insert("user".to_owned(), "ü-ser \"quoted\"".to_owned());
    let metadata = EventMetadata {
        timestamp: Some(Timestamp(1_700_000_000_123_456)),
        correlation_id: Some(CorrelationId::new()),
        causation_id: Some(CausationId::Command(command)),
        command_id: Some(command),
        headers,
    };
    let mut e = event("e.meta", 7);
    e.schema_version = SchemaVersion(3);
    e.metadata = metadata.clone();
    let id = e.event_id;
    store.append(&s, ExpectedVersion::Any, vec![e]).await.expect("append");
    let read = store.read_stream(&s, Version(1), None).await.expect("read");
    assert_eq!(read.len(), 1);
    assert_eq!(read[0].event_id, id);
    assert_eq!(read[0].schema_version, SchemaVersion(3));
    assert_eq!(read[0].metadata, metadata);
    // A missing timestamp is set to the time of recording.
    let caused_by_event = EventMetadata {
        causation_id: Some(CausationId::Event(id)),
        ..EventMetadata::default()
    };
    let mut e2 = event("e.meta", 8);
    e2.metadata = caused_by_event.clone();
    store.append(&s, ExpectedVersion::Any, vec![e2]).await.expect("append");
    let read = store.read_stream(&s, Version(2), None).await.expect("read");
    let recorded = read[0].metadata.timestamp.expect("the store records the time");
    assert!(
        (recorded.0 - Timestamp::now().0).abs() < 3_600_000_000,
        "recorded at {recorded}"
    );
    assert_eq!(
        read[0].metadata,
        EventMetadata {
            timestamp: Some(recorded),
            ..caused_by_event
        }
    );
}

/// A stream with no events is at version 0 and reads empty.
pub async fn empty_stream<S: EventStore>(store: S) {
    let s = stream("conf.empty");
    assert_eq!(store.stream_version(&s).await.expect("version"), Version(0));
    assert!(store.read_stream(&s, Version(1), None).await.expect("read").is_empty());
}

/// Appending no events changes nothing and still checks the version.
pub async fn empty_append_is_a_no_op<S: EventStore>(store: S) {
    let s = stream("conf.noop");
    store
        .append(&s, ExpectedVersion::Any, vec![event("e", 1)])
        .await
        .expect("append");
    let head = store.head().await.expect("head");
    let committed = store
        .append(&s, ExpectedVersion::Exact(Version(1)), Vec::new())
        .await
        .expect("empty append");
    assert_eq!(committed.version, Version(1));
    assert!(committed.positions.is_empty());
    assert_eq!(store.head().await.expect("head"), head);
    assert!(matches!(
        store.append(&s, ExpectedVersion::Exact(Version(0)), Vec::new()).await,
        Err(StoreError::Conflict { .. })
    ));
}

/// A wrong expected version is a typed conflict and appends nothing.
pub async fn expected_version_conflict<S: EventStore>(store: S) {
    let s = stream("conf.conflict");
    store
        .append(&s, ExpectedVersion::Exact(Version(0)), vec![event("e", 1)])
        .await
        .expect("append");
    let head = store.head().await.expect("head");
    for expected in [Version(0), Version(2), Version(7)] {
        match store
            .append(&s, ExpectedVersion::Exact(expected), vec![event("e", 2), event("e", 3)])
            .await
        {
            Err(StoreError::Conflict {
                stream,
                expected: e,
                actual,
            }) => {
                assert_eq!(stream, s);
                assert_eq!(e, ExpectedVersion::Exact(expected));
                assert_eq!(actual, Version(1));
            }
            other => panic!("expected a conflict, got {other:?}"),
        }
    }
    assert_eq!(store.stream_version(&s).await.expect("version"), Version(1));
    assert_eq!(store.head().await.expect("head"), head);
}

/// `ExpectedVersion::Any` appends whatever the version.
pub async fn expected_any<S: EventStore>(store: S) {
    let s = stream("conf.any");
    for i in 1..=3 {
        let c = store
            .append(&s, ExpectedVersion::Any, vec![event("e", i)])
            .await
            .expect("append");
        assert_eq!(c.version, Version(i));
    }
}

/// `read_stream` honours `from` and `to`, inclusive.
pub async fn read_stream_ranges<S: EventStore>(store: S) {
    let s = stream("conf.range");
    let events = (1..=10).map(|i| event("e", i)).collect();
    store.append(&s, ExpectedVersion::Any, events).await.expect("append");
    let versions = |r: Vec<crate::store::RecordedEvent>| r.iter().map(|e| e.version.0).collect::<Vec<_>>();
    assert_eq!(
        versions(store.read_stream(&s, Version(4), None).await.expect("read")),
        (4..=10).collect::<Vec<_>>()
    );
    assert_eq!(
        versions(store.read_stream(&s, Version(2), Some(Version(5))).await.expect("read")),
        vec![2, 3, 4, 5]
    );
    assert_eq!(
        versions(store.read_stream(&s, Version(0), Some(Version(2))).await.expect("read")),
        vec![1, 2]
    );
    assert!(store.read_stream(&s, Version(11), None).await.expect("read").is_empty());
    assert!(
        store
            .read_stream(&s, Version(6), Some(Version(5)))
            .await
            .expect("read")
            .is_empty()
    );
    assert_eq!(
        versions(
            store
                .read_stream(&s, Version(9), Some(Version(99)))
                .await
                .expect("read")
        ),
        vec![9, 10]
    );
}

/// The same id under two aggregate types names two streams.
pub async fn streams_are_isolated_by_aggregate_type<S: EventStore>(store: S) {
    let id = ulid::Ulid::new().to_string();
    let a = StreamId::new("conf.iso_a", id.clone());
    let b = StreamId::new("conf.iso_b", id);
    store
        .append(&a, ExpectedVersion::Exact(Version(0)), vec![event("e", 1)])
        .await
        .expect("append");
    store
        .append(&b, ExpectedVersion::Exact(Version(0)), vec![event("e", 2)])
        .await
        .expect("append");
    assert_eq!(store.read_stream(&a, Version(1), None).await.expect("read").len(), 1);
    assert_eq!(
        n_of(&store.read_stream(&b, Version(1), None).await.expect("read")[0].payload),
        2
    );
}

/// The global log is in position order, strictly increasing, and pages.
pub async fn global_order_and_paging<S: EventStore>(store: S) {
    let start = store.head().await.expect("head");
    let streams: Vec<_> = (0..3).map(|_| stream("conf.global")).collect();
    for round in 0..4 {
        for (i, s) in streams.iter().enumerate() {
            store
                .append(s, ExpectedVersion::Any, vec![event("e.g", round * 10 + i as u64)])
                .await
                .expect("append");
        }
    }
    let filter = EventFilter::all().aggregate_types(["conf.global"]);
    let all = store.read_all(start, 1000, &filter).await.expect("read");
    assert_eq!(all.len(), 12);
    assert!(all.windows(2).all(|w| w[0].position < w[1].position));
    let order: Vec<_> = all.iter().map(|e| n_of(&e.payload)).collect();
    assert_eq!(order, vec![0, 1, 2, 10, 11, 12, 20, 21, 22, 30, 31, 32]);
    // Paging with a limit, resuming after the last position seen.
    let mut seen = Vec::new();
    let mut after = start;
    loop {
        let page = store.read_all(after, 5, &filter).await.expect("read");
        if page.is_empty() {
            break;
        }
        assert!(page.len() <= 5);
        after = page.last().map(|e| e.position).unwrap_or(after);
        seen.extend(page.into_iter().map(|e| e.event_id));
    }
    assert_eq!(seen, all.iter().map(|e| e.event_id).collect::<Vec<_>>());
    assert!(store.head().await.expect("head") >= all[11].position);
}

/// `read_all` filters by event names and by aggregate types.
pub async fn filters<S: EventStore>(store: S) {
    let start = store.head().await.expect("head");
    let kind_a = format!("conf.f_{}", ulid::Ulid::new());
    let kind_b = format!("conf.g_{}", ulid::Ulid::new());
    let a = StreamId::new(kind_a.clone(), "1");
    let b = StreamId::new(kind_b.clone(), "1");
    store
        .append(&a, ExpectedVersion::Any, vec![event("f.x", 1), event("f.y", 2)])
        .await
        .expect("append");
    store
        .append(&b, ExpectedVersion::Any, vec![event("f.x", 3), event("f.z", 4)])
        .await
        .expect("append");
    let by_type = store
        .read_all(start, 100, &EventFilter::all().aggregate_types([kind_a.clone()]))
        .await
        .expect("read");
    assert_eq!(by_type.iter().map(|e| n_of(&e.payload)).collect::<Vec<_>>(), vec![1, 2]);
    let by_name = store
        .read_all(
            start,
            100,
            &EventFilter::all()
                .event_names(["f.x", "f.z"])
                .aggregate_types([kind_a.clone(), kind_b.clone()]),
        )
        .await
        .expect("read");
    assert_eq!(
        by_name.iter().map(|e| n_of(&e.payload)).collect::<Vec<_>>(),
        vec![1, 3, 4]
    );
    let both = store
        .read_all(
            start,
            100,
            &EventFilter::all().event_names(["f.x"]).aggregate_types([kind_b]),
        )
        .await
        .expect("read");
    assert_eq!(both.iter().map(|e| n_of(&e.payload)).collect::<Vec<_>>(), vec![3]);
    // A limit counts matching events, not scanned ones.
    let limited = store
        .read_all(start, 1, &EventFilter::all().event_names(["f.z"]))
        .await
        .expect("read");
    assert_eq!(limited.len(), 1);
    assert_eq!(n_of(&limited[0].payload), 4);
}

/// Two writers race with the same expected version, three events each:
/// exactly one batch lands, whole.
pub async fn atomic_batch_under_race<S: EventStore>(store: S) {
    let store = Arc::new(store);
    for _ in 0..20 {
        let s = stream("conf.race");
        let mut tasks = Vec::new();
        for writer in 0..2u64 {
            let store = Arc::clone(&store);
            let s = s.clone();
            tasks.push(tokio::spawn(async move {
                let batch = (0..3).map(|i| event("e.batch", writer * 100 + i)).collect();
                store.append(&s, ExpectedVersion::Exact(Version(0)), batch).await
            }));
        }
        let mut ok = 0;
        for t in tasks {
            match t.await.expect("join") {
                Ok(c) => {
                    assert_eq!(c.version, Version(3));
                    ok += 1;
                }
                Err(StoreError::Conflict { .. }) => {}
                Err(e) => panic!("unexpected error {e}"),
            }
        }
        assert_eq!(ok, 1, "exactly one writer wins");
        let read = store.read_stream(&s, Version(1), None).await.expect("read");
        assert_eq!(read.len(), 3);
        let writer = n_of(&read[0].payload) / 100;
        assert!(
            read.iter().all(|e| n_of(&e.payload) / 100 == writer),
            "one writer's batch, whole"
        );
    }
}

/// 16 tasks append to 4 streams with read-then-append retries: every stream
/// ends with versions 1..n, no gap or duplicate, and nothing lost.
pub async fn concurrent_appends_lose_nothing<S: EventStore>(store: S) {
    const TASKS: u64 = 16;
    const EACH: u64 = 25;
    let store = Arc::new(store);
    let streams: Arc<Vec<StreamId>> = Arc::new((0..4).map(|_| stream("conf.contention")).collect());
    let mut tasks = Vec::new();
    for t in 0..TASKS {
        let store = Arc::clone(&store);
        let streams = Arc::clone(&streams);
        tasks.push(tokio::spawn(async move {
            for i in 0..EACH {
                let s = &streams[((t + i) % 4) as usize];
                loop {
                    let v = store.stream_version(s).await.expect("version");
                    match store
                        .append(s, ExpectedVersion::Exact(v), vec![event("e.c", t * 1000 + i)])
                        .await
                    {
                        Ok(_) => break,
                        Err(StoreError::Conflict { .. }) => tokio::task::yield_now().await,
                        Err(e) => panic!("unexpected error {e}"),
                    }
                }
            }
        }));
    }
    for t in tasks {
        t.await.expect("join");
    }
    let mut all = Vec::new();
    for s in streams.iter() {
        let read = store.read_stream(s, Version(1), None).await.expect("read");
        for (i, e) in read.iter().enumerate() {
            assert_eq!(e.version, Version(i as u64 + 1), "versions are 1..n");
        }
        all.extend(read.iter().map(|e| n_of(&e.payload)));
    }
    all.sort_unstable();
    let mut expected: Vec<u64> = (0..TASKS).flat_map(|t| (0..EACH).map(move |i| t * 1000 + i)).collect();
    expected.sort_unstable();
    assert_eq!(all, expected, "every acknowledged event once");
}

/// The contention test of RELIABILITY.md through the application: 16 tasks
/// dispatch to the same 4 aggregates with conflict retry; each total equals
/// the sum of the acknowledged commands and versions are 1..n.
pub async fn application_contention<S: EventStore>(store: S) {
    const TASKS: u64 = 16;
    const EACH: u64 = 50;
    let app = crate::Application::builder()
        .aggregate::<Tally>()
        .max_attempts(10_000)
        .event_store(store)
        .build()
        .await
        .expect("build");
    let ids: Vec<String> = (0..4).map(|_| ulid::Ulid::new().to_string()).collect();
    let mut tasks = Vec::new();
    for t in 0..TASKS {
        let app = app.clone();
        let ids = ids.clone();
        tasks.push(tokio::spawn(async move {
            let mut acknowledged = vec![0u64; 4];
            for i in 0..EACH {
                let k = ((t + i) % 4) as usize;
                let amount = t * 7 + i + 1;
                app.dispatch(Add {
                    id: ids[k].clone(),
                    amount,
                })
                .await
                .expect("every command completes through retry");
                acknowledged[k] += amount;
            }
            acknowledged
        }));
    }
    let mut expected = [0u64; 4];
    for t in tasks {
        for (k, v) in t.await.expect("join").into_iter().enumerate() {
            expected[k] += v;
        }
    }
    let mut events = 0;
    for (k, id) in ids.iter().enumerate() {
        let loaded = app.load::<Tally>(id.as_str()).await.expect("load");
        assert_eq!(loaded.state.total, expected[k], "no lost update on {id}");
        let s = StreamId::new(<Tally as crate::Aggregate>::NAME, id.clone());
        let read = app.event_store().read_stream(&s, Version(1), None).await.expect("read");
        for (i, e) in read.iter().enumerate() {
            assert_eq!(e.version, Version(i as u64 + 1));
        }
        events += read.len() as u64;
    }
    assert_eq!(events, TASKS * EACH);
}

/// Rewriting in place changes name, version and payload, and nothing else.
pub async fn rewrite_in_place<S: EventStore>(store: S) {
    let s = stream("conf.rewrite");
    let c = store
        .append(&s, ExpectedVersion::Any, vec![event("old.name", 1), event("keep", 2)])
        .await
        .expect("append");
    let before = store.read_stream(&s, Version(1), None).await.expect("read");
    store
        .rewrite(
            c.positions[0],
            RewrittenEvent {
                name: "new.name".into(),
                schema_version: SchemaVersion(2),
                payload: Bytes::from_static(br#"{"n":100}"#),
            },
        )
        .await
        .expect("rewrite");
    let after = store.read_stream(&s, Version(1), None).await.expect("read");
    assert_eq!(after[0].name, "new.name");
    assert_eq!(after[0].schema_version, SchemaVersion(2));
    assert_eq!(n_of(&after[0].payload), 100);
    assert_eq!(after[0].event_id, before[0].event_id);
    assert_eq!(after[0].position, before[0].position);
    assert_eq!(after[0].version, before[0].version);
    assert_eq!(after[1], before[1]);
    let missing = store.head().await.expect("head").0 + 1000;
    assert!(matches!(
        store
            .rewrite(
                Position(missing),
                RewrittenEvent {
                    name: "x".into(),
                    schema_version: SchemaVersion(1),
                    payload: Bytes::from_static(b"{}"),
                },
            )
            .await,
        Err(StoreError::NotFound(_))
    ));
}

/// The head is the last position; a head watch, if offered, moves on append.
pub async fn head_and_watch<S: EventStore>(store: S) {
    let s = stream("conf.head");
    let watch = store.watch_head();
    let c = store
        .append(&s, ExpectedVersion::Any, vec![event("e", 1)])
        .await
        .expect("append");
    assert!(store.head().await.expect("head") >= c.positions[0]);
    if let Some(mut watch) = watch {
        tokio::time::timeout(std::time::Duration::from_secs(10), async {
            while *watch.borrow_and_update() < c.positions[0] {
                watch.changed().await.expect("watch open");
            }
        })
        .await
        .expect("the head watch reports the append");
    }
}

/// The tiny aggregate of [`application_contention`].
#[derive(Default)]
pub struct Tally {
    total: u64,
}

/// Added to a tally.
#[derive(crate::Event, Serialize, Deserialize)]
#[event(name = "conformance.tally_added", crate = "crate")]
pub struct Added {
    amount: u64,
}

/// Add to a tally.
#[derive(crate::Command, Clone)]
#[command(crate = "crate")]
pub struct Add {
    #[aggregate_id]
    id: String,
    amount: u64,
}

#[crate::aggregate(name = "conformance.tally", crate = "crate")]
impl Tally {
    #[handles_command]
    fn add(&self, cmd: Add) -> Added {
        Added { amount: cmd.amount }
    }

    #[applies_event]
    fn added(&mut self, e: &Added) {
        self.total += e.amount;
    }
}
