//! A child process for the several-instances tests: one instance of the
//! bank application with the exactly-once ledger projection on
//! PostgreSQL, and the payment saga, running its background subscribers
//! until it is killed.
//!
//! `instance <url> <schema> <instance id> [segments]`; prints `started`
//! once built. With `segments`, the ledger is split into that many.

use std::io::Write;
use std::time::Duration;

use interlock::ProjectionConfig;
use interlock_sql::{PostgresConfig, PostgresStore};
use interlock_tests::bank::bank_builder;
use interlock_tests::ledger::PostgresLedger;
use interlock_tests::payments;

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let (Some(url), Some(schema), Some(id)) = (args.get(1), args.get(2), args.get(3)) else {
        return Err("usage: instance <url> <schema> <instance id>".into());
    };
    // A paused process's open transaction is ended after 1 s, so another
    // instance can take its subscribers over.
    let config = PostgresConfig::new(url.as_str())
        .schema(schema.as_str())
        .max_connections(4)
        .idle_in_transaction_timeout(Some(Duration::from_secs(1)));
    let store = PostgresStore::open(config).await?;
    let mut projection = ProjectionConfig::catch_up().transactions(store.clone());
    if let Some(segments) = args.get(4) {
        projection = projection.segments(segments.parse()?);
    }
    let app = bank_builder()
        .aggregate::<payments::Order>()
        .aggregate::<payments::Card>()
        // A step whose command a stopped owner had claimed waits for the
        // claim's lease to end (0.5 s) within its retries, instead of
        // compensating an order it would have charged.
        .saga_with::<payments::Payment>(interlock::SubscriberConfig::new().retry(
            50,
            Duration::from_millis(10),
            Duration::from_millis(200),
        ))
        .idempotency_lease(Duration::from_millis(500))
        .backend(store.clone())
        .projection_with(PostgresLedger { schema: schema.clone() }, projection)
        .instance_id(id.as_str())
        .subscriber_leases(Duration::from_millis(800), Duration::from_millis(200))
        .build()
        .await?;
    {
        let mut out = std::io::stdout().lock();
        writeln!(out, "started")?;
        out.flush()?;
    }
    loop {
        tokio::time::sleep(Duration::from_secs(3600)).await;
        let _ = &app;
    }
}
