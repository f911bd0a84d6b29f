//! The shipping service, in its own SQLite database
//! (`INTERLOCK_SQLITE_PATH`, default `shipping.db`):
//!
//! - `shipping run [--until <n>]` consumes orders from the broker into the
//!   board and the fulfilment saga until Ctrl-C (or until the board holds
//!   `n` orders, each with its shipment);
//! - `shipping report` prints the board: `order item quantity shipment`.

use std::time::Duration;

use interlock::ProjectionConfig;
use interlock::prelude::*;
use interlock::sql::{SqliteConfig, SqliteStore};
use two_services_example::shipping::{CREATE_BOARD, Fulfilment, Shipment, ShippingBoard};

async fn open() -> Result<SqliteStore, Box<dyn std::error::Error>> {
    let path = std::env::var("INTERLOCK_SQLITE_PATH").unwrap_or_else(|_| "shipping.db".into());
    let store = SqliteStore::open(SqliteConfig::file(path)).await?;
    let mut tx = store.begin().await?;
    sqlx::query(CREATE_BOARD).execute(&mut *tx).await?;
    tx.commit().await?;
    Ok(store)
}

/// The board's rows, in the order they were published.
async fn board(store: &SqliteStore) -> Result<Vec<(String, String, i64)>, Box<dyn std::error::Error>> {
    let mut tx = store.begin().await?;
    let rows = sqlx::query_as("SELECT order_id, item, quantity FROM shipping_board ORDER BY published_position")
        .fetch_all(&mut *tx)
        .await?;
    tx.rollback().await?;
    Ok(rows)
}

/// Whether every order on the board has its shipment.
async fn shipped(app: &Application, rows: &[(String, String, i64)]) -> Result<usize, Box<dyn std::error::Error>> {
    let mut shipped = 0;
    for (order, _, _) in rows {
        if app.load::<Shipment>(order.as_str()).await?.state.item.is_some() {
            shipped += 1;
        }
    }
    Ok(shipped)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let store = open().await?;
    let until: Option<usize> = match args.iter().map(String::as_str).collect::<Vec<_>>().as_slice() {
        ["run"] => None,
        ["run", "--until", n] => Some(n.parse()?),
        ["report"] => {
            let app = Application::builder()
                .aggregate::<Shipment>()
                .backend(store.clone())
                .background(false)
                .build()
                .await?;
            for (order, item, quantity) in board(&store).await? {
                let shipment = app.load::<Shipment>(order.as_str()).await?;
                let status = if shipment.state.item.is_some() {
                    "created"
                } else {
                    "missing"
                };
                println!("{order} {item} {quantity} {status}");
            }
            return Ok(());
        }
        _ => return Err("usage: shipping run [--until <n>] | shipping report".into()),
    };
    let broker = two_services_example::transport::from_env().await?;
    let app = Application::builder()
        .aggregate::<Shipment>()
        .saga::<Fulfilment>()
        .projection_with(ShippingBoard, ProjectionConfig::catch_up().transactions(store.clone()))
        .backend(store.clone())
        .consume_from("shipping", broker)
        .build()
        .await?;
    println!("consuming");
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => break,
            () = tokio::time::sleep(Duration::from_millis(200)) => {}
        }
        if let Some(n) = until {
            let rows = board(&store).await?;
            if rows.len() >= n && shipped(&app, &rows).await? >= n {
                println!("shipped {n} orders");
                break;
            }
        }
    }
    app.shutdown();
    Ok(())
}
