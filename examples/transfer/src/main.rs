//! A money transfer between two accounts, run by a saga:
//! `cargo run -p transfer-example`.
//!
//! Shows a completed transfer, a transfer whose credit is refused and is
//! compensated by a refund, and a transfer left pending that the saga's
//! deadline cancels; then the balance projection is queried. In memory,
//! or on MongoDB when `INTERLOCK_MONGODB_URI` is set (same domain code).

use interlock::DispatchOptions;
use interlock::ProjectionConfig;
use std::time::Duration;

use interlock::Position;
use interlock::middleware::TracingLayer;
use interlock::prelude::*;
use transfer_example::accounts::{Account, CloseAccount, Deposit, OpenAccount};
use transfer_example::balances::{Balances, GetBalance, TransferCounts};
use transfer_example::transfer::{MoneyTransfer, RequestTransfer, Transfer, TransferStatus, TransferTimeout};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut builder = Application::builder();
    if let Ok(uri) = std::env::var("INTERLOCK_MONGODB_URI") {
        // A database of its own per run, as a fresh store in memory is:
        // the balance projection (a model in memory) replays the whole log.
        let database = format!("transfer_example_{}", Ulid::new().to_string().to_lowercase());
        let config = interlock::mongodb::MongoConfig::new(uri).database(database);
        builder = builder.backend(interlock::mongodb::MongoStore::open(config).await?);
    }
    let app = builder
        .aggregate::<Account>()
        .aggregate::<Transfer>()
        .saga::<MoneyTransfer>()
        .projection_with(Balances::default(), ProjectionConfig::inline())
        .service(TransferTimeout(Duration::from_millis(200)))
        .layer(TracingLayer)
        // Driven by hand below so the output is deterministic; a service
        // leaves the background followers on (the default).
        .background(false)
        .build()
        .await?;
    let saga = app.saga_handle::<MoneyTransfer>()?;

    let (ada, bob, closed) = (Ulid::new(), Ulid::new(), Ulid::new());
    for (account, owner) in [(ada, "ada"), (bob, "bob"), (closed, "carl")] {
        app.dispatch(OpenAccount {
            account,
            owner: owner.into(),
        })
        .await?;
    }
    app.dispatch(Deposit {
        account: ada,
        amount: 100,
    })
    .await?;
    app.dispatch(CloseAccount { account: closed }).await?;

    // 1. A transfer that completes.
    let ok = Ulid::new();
    app.dispatch(RequestTransfer {
        transfer_id: ok,
        from: ada,
        to: bob,
        amount: 30,
    })
    .await?;
    saga.catch_up().await?;
    println!("transfer ada -> bob 30: {:?}", status(&app, ok).await?);

    // 2. A credit refused by a closed account: the saga refunds the debit.
    let refused = Ulid::new();
    app.dispatch(RequestTransfer {
        transfer_id: refused,
        from: ada,
        to: closed,
        amount: 20,
    })
    .await?;
    saga.catch_up().await?;
    let reason = app.load::<Transfer>(&refused).await?.state.reason.unwrap_or_default();
    println!("transfer ada -> carl 20: {:?} ({reason})", status(&app, refused).await?);

    // 3. A transfer whose saga stops after the debit: the deadline cancels
    //    it and refunds the money.
    let stuck = Ulid::new();
    let requested = app
        .dispatch_with(
            RequestTransfer {
                transfer_id: stuck,
                from: ada,
                to: bob,
                amount: 10,
            },
            DispatchOptions::new(),
        )
        .await?;
    let first_event = requested.positions.first().copied().unwrap_or(Position::START);
    saga.catch_up_to(first_event).await?;
    tokio::time::sleep(Duration::from_millis(250)).await;
    let fired = app.fire_due_deadlines::<MoneyTransfer>().await?;
    println!(
        "transfer ada -> bob 10: {:?} after {fired} deadline",
        status(&app, stuck).await?
    );
    saga.catch_up().await?;

    let ada_balance = app.query(GetBalance { account: ada }).await?.unwrap_or(0);
    let bob_balance = app.query(GetBalance { account: bob }).await?.unwrap_or(0);
    let (completed, failed) = app.query(TransferCounts).await?;
    println!("balances: ada {ada_balance}, bob {bob_balance}; transfers completed {completed}, failed {failed}");
    if (ada_balance, bob_balance, completed, failed) != (70, 30, 1, 2) {
        return Err("unexpected outcome".into());
    }
    Ok(())
}

async fn status<L>(app: &Application<L>, transfer: Ulid) -> Result<TransferStatus, interlock::LoadError> {
    Ok(app.load::<Transfer>(&transfer).await?.state.status)
}
