//! A child process for the read-model crash tests: `seed <n>` deposits
//! 1, 2, ..., n into one account; `project` catches the transactional
//! ledger projection up (printing `started` first) until it is killed or
//! done (printing `done`).
//!
//! `crash_read_model <seed n | project> sqlite <path>` or
//! `crash_read_model <seed n | project> postgres <url> <schema>`;
//! `crash_read_model consume-nats|consume-kafka <path>` feeds the ledger
//! (in the SQLite file at `path`) from NATS or Kafka (configured by
//! `INTERLOCK_NATS_*`, `INTERLOCK_KAFKA_*`) until a receive comes back
//! empty twice.

use std::io::Write;

use interlock::ProjectionConfig;
use interlock::prelude::*;
use interlock_sql::{PostgresConfig, PostgresStore, SqliteConfig, SqliteStore};
use interlock_tests::bank::{Deposit, OpenAccount, bank_builder};
use interlock_tests::ledger::{PostgresLedger, SqliteLedger};

async fn seed<S: interlock::store::EventStore + Clone>(store: S, n: u64) -> Result<(), Box<dyn std::error::Error>> {
    let app = bank_builder().event_store(store).background(false).build().await?;
    let account = Ulid::new();
    app.dispatch(OpenAccount {
        account,
        owner: "ledger".into(),
    })
    .await?;
    for amount in 1..=n {
        app.dispatch(Deposit {
            account,
            amount,
            id: None,
        })
        .await?;
    }
    Ok(())
}

async fn consume_nats(path: &str) -> Result<(), Box<dyn std::error::Error>> {
    let nats = interlock::nats::NatsTransport::open(interlock::nats::NatsConfig::from_env()?).await?;
    consume(path, nats, None).await
}

/// Until the ledger holds `n` rows: a new group member waits for the
/// group to give it the partition (after a killed member's session
/// timed out), so an empty receive says nothing.
async fn consume_kafka(path: &str, n: i64) -> Result<(), Box<dyn std::error::Error>> {
    let config = interlock::kafka::KafkaConfig::from_env()?.session_timeout(std::time::Duration::from_secs(6));
    let kafka = interlock::kafka::KafkaTransport::open(config).await?;
    consume(path, kafka, Some(n)).await
}

/// Feeds the ledger from `transport` until it holds `rows` rows, or
/// (without) until a receive comes back empty twice.
async fn consume(
    path: &str,
    transport: impl interlock::store::EventTransport,
    rows: Option<i64>,
) -> Result<(), Box<dyn std::error::Error>> {
    let store = SqliteStore::open(SqliteConfig::file(path)).await?;
    let app = bank_builder()
        .event_store(store.clone())
        .projection_with(SqliteLedger, ProjectionConfig::catch_up().transactions(store.clone()))
        .consume_from("ledger", transport)
        .background(false)
        .build()
        .await?;
    say("started")?;
    let mut empty = 0;
    loop {
        let n = app.consume_transport(50, std::time::Duration::from_millis(500)).await?;
        empty = if n == 0 { empty + 1 } else { 0 };
        let done = match rows {
            None => empty >= 2,
            Some(rows) => {
                let mut tx = store.begin().await?;
                let (count,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM ledger")
                    .fetch_one(&mut *tx)
                    .await?;
                tx.rollback().await?;
                count >= rows
            }
        };
        if done {
            break;
        }
    }
    say("done")?;
    Ok(())
}

fn say(line: &str) -> Result<(), std::io::Error> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{line}")?;
    out.flush()
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (command, rest) = match args.first().map(String::as_str) {
        Some("seed") => ("seed", &args[2.min(args.len())..]),
        Some("project") => ("project", &args[1.min(args.len())..]),
        Some("consume-nats") => return consume_nats(args.get(1).ok_or("missing path")?).await,
        Some("consume-kafka") => {
            let n: i64 = args.get(2).ok_or("missing n")?.parse()?;
            return consume_kafka(args.get(1).ok_or("missing path")?, n).await;
        }
        other => return Err(format!("unknown command {other:?}").into()),
    };
    let n: u64 = if command == "seed" {
        args.get(1).ok_or("missing n")?.parse()?
    } else {
        0
    };
    match rest.first().map(String::as_str) {
        Some("sqlite") => {
            let store = SqliteStore::open(SqliteConfig::file(rest.get(1).ok_or("missing path")?)).await?;
            if command == "seed" {
                return seed(store, n).await;
            }
            let app = bank_builder()
                .event_store(store.clone())
                .projection_with(SqliteLedger, ProjectionConfig::catch_up().transactions(store))
                .background(false)
                .build()
                .await?;
            say("started")?;
            app.projection_handle::<SqliteLedger>()?.catch_up().await?;
        }
        Some("postgres") => {
            let (url, schema) = (rest.get(1).ok_or("missing url")?, rest.get(2).ok_or("missing schema")?);
            let store = PostgresStore::open(PostgresConfig::new(url.as_str()).schema(schema.as_str())).await?;
            if command == "seed" {
                return seed(store, n).await;
            }
            let ledger = PostgresLedger { schema: schema.clone() };
            let app = bank_builder()
                .event_store(store.clone())
                .projection_with(ledger, ProjectionConfig::catch_up().transactions(store))
                .background(false)
                .build()
                .await?;
            say("started")?;
            app.projection_handle::<PostgresLedger>()?.catch_up().await?;
        }
        other => return Err(format!("unknown backend {other:?}").into()),
    }
    say("done")?;
    Ok(())
}
