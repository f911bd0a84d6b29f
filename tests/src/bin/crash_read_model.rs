//! A child process for the read-model crash tests: `seed <n>` deposits
//! 1, 2, ..., n into one account; `project` catches the transactional
//! ledger projection up (printing `started` first) until it is killed or
//! done (printing `done`).
//!
//! `crash_read_model <seed n | project> sqlite <path>` or
//! `crash_read_model <seed n | project> postgres <url> <schema>`;
//! `crash_read_model consume-nats <path>` feeds the ledger (in the SQLite
//! file at `path`) from NATS (configured by `INTERLOCK_NATS_*`) until a
//! receive comes back empty twice.

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
    let store = SqliteStore::open(SqliteConfig::file(path)).await?;
    let nats = interlock::nats::NatsTransport::open(interlock::nats::NatsConfig::from_env()?).await?;
    let app = bank_builder()
        .event_store(store.clone())
        .projection_with(SqliteLedger, ProjectionConfig::catch_up().transactions(store))
        .consume_from("ledger", nats)
        .background(false)
        .build()
        .await?;
    say("started")?;
    let mut empty = 0;
    while empty < 2 {
        let n = app.consume_transport(50, std::time::Duration::from_millis(500)).await?;
        empty = if n == 0 { empty + 1 } else { 0 };
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
