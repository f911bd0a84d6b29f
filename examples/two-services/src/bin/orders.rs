//! The orders service: `orders place <n>` places `n` orders in its own
//! SQLite event store (`INTERLOCK_SQLITE_PATH`, default `orders.db`),
//! whose outbox records each event in the append's transaction, and
//! publishes the outbox to the broker before it exits (retrying while
//! the broker is down, for up to a minute).

use std::time::{Duration, Instant};

use interlock::prelude::*;
use interlock::sql::{SqliteConfig, SqliteStore};
use interlock::store::Outbox;
use two_services_example::orders::{Order, PlaceOrder};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let n: u32 = match args.as_slice() {
        [command, n] if command == "place" => n.parse()?,
        _ => return Err("usage: orders place <n>".into()),
    };
    let path = std::env::var("INTERLOCK_SQLITE_PATH").unwrap_or_else(|_| "orders.db".into());
    let store = SqliteStore::open(SqliteConfig::file(&path).outbox(true)).await?;
    let broker = two_services_example::transport::from_env().await?;
    let app = Application::builder()
        .aggregate::<Order>()
        .backend(store.clone())
        .publish_outbox_to(store.clone(), broker)
        .build()
        .await?;
    for i in 1..=n {
        let order = Ulid::new();
        app.dispatch(PlaceOrder {
            order,
            item: format!("item-{i}"),
            quantity: i,
        })
        .await?;
        println!("placed {order}");
    }
    // The background relay publishes as orders come; make sure every
    // row left the outbox before exiting.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        match app.publish_pending().await {
            Ok(_) if store.pending(1).await?.is_empty() => break,
            Ok(_) => {}
            Err(e) if Instant::now() < deadline => eprintln!("publishing failed, retrying: {e}"),
            Err(e) => return Err(e.into()),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    println!("published {n} orders");
    Ok(())
}
