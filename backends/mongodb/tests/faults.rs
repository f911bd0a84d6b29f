//! Faults: no server at start, and a server that goes away mid-run and
//! comes back. The second test starts and stops a server of its own on a
//! free loopback port with `scripts/mongodb.sh` (never the shared one).

// Tests fail loudly.
#![allow(clippy::panic, clippy::expect_used, clippy::unwrap_used)]

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use interlock::store::{EventMetadata, EventStore, ExpectedVersion, NewEvent, StoreError};
use interlock::{EventId, SchemaVersion, StreamId, Version};
use interlock_mongodb::{MongoConfig, MongoOpenError, MongoStore};

fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("addr").port()
}

fn event(i: u32) -> NewEvent {
    NewEvent {
        event_id: EventId::new(),
        name: "faults.happened".into(),
        schema_version: SchemaVersion(1),
        payload: format!(r#"{{"i":{i}}}"#).into_bytes().into(),
        metadata: EventMetadata::default(),
    }
}

#[tokio::test]
async fn an_unreachable_server_is_a_clear_error_within_the_timeout() {
    let uri = format!("mongodb://app:hunter2@127.0.0.1:{}/?directConnection=true", free_port());
    let started = Instant::now();
    let opened =
        MongoStore::open(MongoConfig::new(uri).timeouts(Duration::from_millis(500), Duration::from_secs(1))).await;
    let took = started.elapsed();
    match opened {
        Err(e @ MongoOpenError::Unavailable { .. }) => {
            let message = e.to_string();
            assert!(message.contains("mongodb://app:***@127.0.0.1"), "{message}");
            assert!(!message.contains("hunter2"), "{message}");
            assert!(!format!("{e:?}").contains("hunter2"));
        }
        other => panic!("expected Unavailable, got {other:?}"),
    }
    assert!(took < Duration::from_secs(5), "gave up after {took:?}");
}

/// Runs `scripts/mongodb.sh <args>`.
fn script(args: &[&str]) -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../scripts/mongodb.sh");
    let out = Command::new(path).args(args).output().expect("run scripts/mongodb.sh");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_store_fails_fast_while_the_server_is_gone_and_recovers_when_it_is_back() {
    // The shared server's presence says the project's script can run here.
    if std::env::var(MongoConfig::URI_VAR).is_err() {
        interlock::testing::skip_or_fail("MongoDB restarts (set INTERLOCK_MONGODB_URI; scripts/mongodb.sh)");
        return;
    }
    let port = free_port().to_string();
    let storage = std::env::temp_dir().join(format!("interlock-mongo-restart-{}", ulid::Ulid::new()));
    let storage = storage.to_string_lossy().to_string();
    let uri = script(&["start", &port, &storage]);
    let config = MongoConfig::new(uri).timeouts(Duration::from_secs(1), Duration::from_secs(2));
    let store = MongoStore::open(config.clone()).await.expect("open");
    // Another instance on the same database: it learns of the appends
    // through its change stream only.
    let observer = MongoStore::open(config).await.expect("open");
    let mut watched = observer.watch_head().expect("a head watch");
    let stream = StreamId::new("faults.stream", "one");
    store
        .append(&stream, ExpectedVersion::Exact(Version(0)), vec![event(1), event(2)])
        .await
        .expect("append");

    let seen = tokio::time::timeout(Duration::from_secs(10), watched.wait_for(|head| head.0 >= 2)).await;
    assert!(seen.is_ok_and(|s| s.is_ok()), "the other instance saw the append");

    script(&["stop", &port]);
    let started = Instant::now();
    let refused = store.append(&stream, ExpectedVersion::Any, vec![event(3)]).await;
    let took = started.elapsed();
    assert!(
        matches!(refused, Err(StoreError::Unavailable { .. })),
        "an append without a server is Unavailable: {refused:?}"
    );
    assert!(took < Duration::from_secs(8), "it failed after {took:?}, not promptly");

    script(&["start", &port, &storage]);
    let back = Instant::now();
    let appended = loop {
        match store.append(&stream, ExpectedVersion::Any, vec![event(3)]).await {
            Ok(done) => break done,
            Err(e) if back.elapsed() < Duration::from_secs(30) => {
                eprintln!("not back yet: {e}");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => panic!("the store did not recover: {e}"),
        }
    };
    assert_eq!(appended.version, Version(3), "the refused append wrote nothing");
    let events = store.read_stream(&stream, Version(1), None).await.expect("read");
    assert_eq!(events.len(), 3);
    assert!(events.iter().enumerate().all(|(i, e)| e.position.0 == i as u64 + 1));
    assert_eq!(store.head().await.expect("head").0, 3);
    // The other instance's change stream resumed after the restart.
    let seen = tokio::time::timeout(Duration::from_secs(15), watched.wait_for(|head| head.0 >= 3)).await;
    assert!(
        seen.is_ok_and(|s| s.is_ok()),
        "the other instance saw the append after the restart"
    );
    script(&["stop", &port]);
    let _ = std::fs::remove_dir_all(&storage);
}
