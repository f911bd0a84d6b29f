//! RELIABILITY.md: SIGKILL during appends. A child process appends batches
//! of three events and prints each acknowledged (stream, version); it is
//! killed at a random moment, the store is reopened, and every acknowledged
//! event must be there and no batch partial. Every other append is atomic
//! over two streams: a pair is found whole on both streams or not at all.
//! 20 rounds per backend (SQLite, PostgreSQL, MongoDB).

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use interlock::Position;
use interlock::store::EventFilter;
use interlock::store::EventStore;
use interlock_sql::{PostgresConfig, PostgresStore, SqliteConfig, SqliteStore};

const ROUNDS: usize = 20;

/// Starts the child, lets it run for a pseudo-random time after its first
/// acknowledgement, kills it with SIGKILL, and returns what it acknowledged.
fn run_and_kill(args: &[&str], round: usize) -> Vec<(String, u64)> {
    let mut child = Command::new(env!("CARGO_BIN_EXE_crash_appender"))
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn the appender");
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = mpsc::channel();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut acked = Vec::new();
    // Wait for the first acknowledgement (the store is open), then run on.
    let first = rx
        .recv_timeout(Duration::from_secs(60))
        .expect("the appender acknowledges");
    acked.push(first);
    let run_for = Duration::from_millis(20 + (round as u64 * 37) % 180);
    let until = Instant::now() + run_for;
    while Instant::now() < until {
        if let Ok(line) = rx.recv_timeout(Duration::from_millis(5)) {
            acked.push(line);
        }
    }
    child.kill().expect("SIGKILL"); // std's kill() sends SIGKILL on Unix
    let _ = child.wait();
    // Lines already written before the kill are acknowledged too.
    while let Ok(line) = rx.recv_timeout(Duration::from_millis(200)) {
        acked.push(line);
    }
    let _ = reader.join();
    acked
        .into_iter()
        .filter_map(|l| {
            let mut parts = l.split_whitespace();
            match (parts.next(), parts.next(), parts.next()) {
                (Some("ack"), Some(id), Some(v)) => Some((id.to_owned(), v.parse().ok()?)),
                _ => None,
            }
        })
        .collect()
}

/// Checks the store against what was acknowledged; whether it holds an
/// atomic pair.
async fn verify(store: &impl EventStore, acked: &[(String, u64)], contiguous: bool) -> bool {
    let events = store
        .read_all(
            Position::START,
            usize::MAX >> 1,
            &EventFilter::all().aggregate_types(["crash.stream"]),
        )
        .await
        .expect("read");
    let mut per_stream: HashMap<&str, u64> = HashMap::new();
    for e in &events {
        *per_stream.entry(e.stream.aggregate_id()).or_default() += 1;
    }
    for (id, version) in acked {
        assert_eq!(*version, 3);
        assert_eq!(
            per_stream.get(id.as_str()),
            Some(&3),
            "acknowledged batch of {id} is present and whole"
        );
    }
    for (id, count) in &per_stream {
        assert_eq!(*count, 3, "stream {id} holds a whole batch, not part of one");
        // An atomic pair: the other stream committed with this one.
        let sibling = id
            .strip_suffix("-a")
            .map(|p| format!("{p}-b"))
            .or_else(|| id.strip_suffix("-b").map(|p| format!("{p}-a")));
        if let Some(sibling) = sibling {
            assert_eq!(
                per_stream.get(sibling.as_str()),
                Some(&3),
                "the atomic pair of {id} committed whole on both streams"
            );
        }
    }
    assert!(events.windows(2).all(|w| w[0].position < w[1].position));
    if contiguous {
        // Positions come from a counter incremented inside each append's
        // transaction: a killed append takes none with it.
        assert!(
            events.iter().enumerate().all(|(i, e)| e.position.0 == i as u64 + 1),
            "positions are gap-free"
        );
    }
    per_stream.keys().any(|id| id.starts_with("pair-"))
}

#[tokio::test]
async fn sqlite_sigkill_during_appends_loses_no_acknowledged_event() {
    let path = std::env::temp_dir().join(format!("interlock-crash-{}.db", ulid::Ulid::new()));
    let path_text = path.to_string_lossy().to_string();
    let (mut total, mut pairs) = (0, false);
    for round in 0..ROUNDS {
        let acked = run_and_kill(&["sqlite", &path_text], round);
        total += acked.len();
        let store = SqliteStore::open(SqliteConfig::file(&path)).await.expect("reopen");
        pairs |= verify(&store, &acked, false).await;
    }
    assert!(total >= ROUNDS, "the appender made progress");
    assert!(pairs, "no atomic pair was appended");
}

#[tokio::test]
async fn postgres_sigkill_during_appends_loses_no_acknowledged_event() {
    let Some(url) = interlock_tests::services::postgres_url() else {
        return;
    };
    let schema = format!("crash_{}", ulid::Ulid::new().to_string().to_lowercase());
    let mut pairs = false;
    for round in 0..ROUNDS {
        let acked = run_and_kill(&["postgres", &url, &schema], round);
        let store = PostgresStore::open(PostgresConfig::new(url.as_str()).schema(schema.as_str()))
            .await
            .expect("reopen");
        pairs |= verify(&store, &acked, false).await;
    }
    assert!(pairs, "no atomic pair was appended");
}

#[tokio::test]
async fn mongodb_sigkill_during_appends_loses_no_acknowledged_event() {
    let Some(uri) = interlock_tests::services::mongodb_uri() else {
        return;
    };
    let mut pairs = false;
    for round in 0..ROUNDS {
        // A database per round: the server keeps the transaction of an
        // appender killed mid-append open for its lifetime limit (60 s),
        // and the next appender on the same database would wait it out
        // (see the crate docs of interlock-mongodb).
        let database = format!("crash_{}", ulid::Ulid::new().to_string().to_lowercase());
        let acked = run_and_kill(&["mongodb", &uri, &database], round);
        let config = interlock::mongodb::MongoConfig::new(uri.as_str()).database(database.as_str());
        let store = interlock::mongodb::MongoStore::open(config).await.expect("reopen");
        pairs |= verify(&store, &acked, true).await;
    }
    assert!(pairs, "no atomic pair was appended");
}
