//! RELIABILITY: an exactly-once SQL read model. The ledger projection
//! writes one row per deposit in the transaction that saves its
//! checkpoint. A child process catching it up over 1000 events is killed
//! with SIGKILL at several moments, then runs to the end: the table must
//! hold every event exactly once (no duplicate row, none missing).

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use interlock::Ulid;
use interlock_sql::{PostgresConfig, PostgresStore, SqliteConfig, SqliteStore};

const EVENTS: u64 = 1000;
const KILLS: usize = 4;

fn child(args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_crash_read_model"));
    command.args(args);
    command
}

/// Seeds, then kills `KILLS` catch-ups part-way, then finishes one.
fn run(backend: &[&str]) {
    let seeded = child(&[&["seed", &EVENTS.to_string()], backend].concat())
        .status()
        .expect("seed");
    assert!(seeded.success(), "seeding failed");
    let mut killed_midway = 0;
    for round in 0..KILLS {
        let mut projecting = child(&[&["project"], backend].concat())
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn");
        let stdout = projecting.stdout.take().expect("stdout");
        let mut lines = BufReader::new(stdout).lines();
        let first = lines.next().and_then(Result::ok);
        assert_eq!(first.as_deref(), Some("started"), "round {round}");
        std::thread::sleep(Duration::from_millis(30 + 40 * round as u64));
        projecting.kill().expect("SIGKILL");
        let _ = projecting.wait();
        // What it printed before dying: `done` means the kill came too late.
        if !lines.any(|l| l.is_ok_and(|l| l == "done")) {
            killed_midway += 1;
        }
    }
    assert!(
        killed_midway >= 2,
        "only {killed_midway} of {KILLS} kills landed mid catch-up"
    );
    let finished = child(&[&["project"], backend].concat())
        .stdout(Stdio::null())
        .status()
        .expect("finish");
    assert!(finished.success(), "the last catch-up completes");
}

fn expected_sum() -> i64 {
    i64::try_from(EVENTS * (EVENTS + 1) / 2).expect("small")
}

#[tokio::test]
async fn sqlite_a_transactional_read_model_applies_each_event_once_across_kills() {
    let path = std::env::temp_dir().join(format!("interlock-ledger-{}.db", Ulid::new()));
    let store = SqliteStore::open(SqliteConfig::file(&path)).await.expect("open");
    let mut tx = store.begin().await.expect("begin");
    sqlx::query(interlock_tests::ledger::CREATE)
        .execute(&mut *tx)
        .await
        .expect("table");
    tx.commit().await.expect("commit");
    let path_text = path.to_string_lossy().into_owned();
    run(&["sqlite", path_text.as_str()]);
    let mut tx = store.begin().await.expect("begin");
    let (rows, distinct, sum): (i64, i64, i64) =
        sqlx::query_as("SELECT COUNT(*), COUNT(DISTINCT event_id), COALESCE(SUM(amount), 0) FROM ledger")
            .fetch_one(&mut *tx)
            .await
            .expect("count");
    tx.rollback().await.expect("rollback");
    assert_eq!((rows, distinct, sum), (EVENTS as i64, EVENTS as i64, expected_sum()));
}

#[tokio::test]
async fn postgres_a_transactional_read_model_applies_each_event_once_across_kills() {
    let Some(url) = interlock_tests::services::postgres_url() else {
        return;
    };
    let schema = format!("ledger_{}", Ulid::new().to_string().to_lowercase());
    let store = PostgresStore::open(PostgresConfig::new(url.as_str()).schema(schema.as_str()))
        .await
        .expect("open");
    interlock_tests::ledger::create_postgres(&store, &schema).await;
    run(&["postgres", url.as_str(), schema.as_str()]);
    let (rows, distinct, sum) = interlock_tests::ledger::postgres_counts(&store, &schema).await;
    assert_eq!((rows, distinct, sum), (EVENTS as i64, EVENTS as i64, expected_sum()));
}

#[tokio::test]
async fn a_transactional_projection_without_its_store_is_refused_at_build() {
    let built = interlock_tests::bank::bank_builder()
        .projection(interlock_tests::ledger::SqliteLedger)
        .build()
        .await;
    match built {
        Err(interlock::BuildError::InvalidSubscriberConfig { setting, reason, .. }) => {
            assert_eq!(setting, "transactions");
            assert!(reason.contains("ProjectionConfig::transactions"), "{reason}");
        }
        Err(other) => panic!("expected InvalidSubscriberConfig, got {other}"),
        Ok(_) => panic!("built without a store to open its transactions in"),
    }
}
