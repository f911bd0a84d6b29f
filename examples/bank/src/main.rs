//! Bank accounts on Interlock: `cargo run -p bank-example`.

use bank_example::domain::{BankAccount, BankError, Deposit, OpenAccount, Withdraw};
use interlock::prelude::*;
use interlock::store::{ExpectedVersion, NewEvent};
use interlock::{CommandError, EventId, MemoryEventStore, StreamId};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // An old store holds an account written before deposits had a currency
    // (schema version 1 of `bank.money_deposited`).
    let store = MemoryEventStore::new();
    let legacy = Ulid::new();
    store
        .append(
            &StreamId::new("bank.account", legacy.to_string()),
            ExpectedVersion::Exact(Version(0)),
            vec![
                raw("bank.account_opened", 1, r#"{"owner":"grace"}"#),
                raw("bank.money_deposited", 1, r#"{"amount":250}"#),
            ],
        )
        .await?;

    let app = Application::builder()
        .aggregate_with(AggregateConfig::<BankAccount>::new().snapshot_every(100))
        .event_store(store)
        .build()
        .await?;

    let account = Ulid::new();
    app.dispatch(OpenAccount {
        account,
        owner: "ada".into(),
    })
    .await?;
    app.dispatch(Deposit {
        account,
        amount: 100,
        request: None,
    })
    .await?;

    // A client retries a deposit with the same request id: applied once.
    let request = Some(CommandId::new());
    for _ in 0..3 {
        app.dispatch(Deposit {
            account,
            amount: 40,
            request,
        })
        .await?;
    }

    let left = app.dispatch(Withdraw { account, amount: 30 }).await?;
    println!("ada withdrew 30, balance left: {left}");

    match app.dispatch(Withdraw { account, amount: 1_000 }).await {
        Err(CommandError::Domain(BankError::InsufficientFunds { balance, requested })) => {
            println!("refused: withdraw {requested} with a balance of {balance}");
        }
        other => return Err(format!("expected a refusal, got {other:?}").into()),
    }

    let ada = app.load::<BankAccount>(&account).await?;
    println!(
        "account {} of {}: balance {} at version {}",
        account, ada.state.owner, ada.state.balance, ada.version
    );
    let before = app.load_as_of::<BankAccount>(&account, Version(2)).await?;
    println!("as of version 2 the balance was {}", before.state.balance);

    // The legacy account's version-1 deposit is upcast on load.
    app.dispatch(Deposit {
        account: legacy,
        amount: 50,
        request: None,
    })
    .await?;
    let grace = app.load::<BankAccount>(&legacy).await?;
    println!(
        "legacy account of {}: balance {} (250 from a version-1 event, upcast)",
        grace.state.owner, grace.state.balance
    );
    if ada.state.balance != 110 || grace.state.balance != 300 {
        return Err("unexpected balances".into());
    }
    Ok(())
}

fn raw(name: &'static str, version: u32, payload: &'static str) -> NewEvent {
    NewEvent {
        event_id: EventId::new(),
        name: name.into(),
        schema_version: SchemaVersion(version),
        payload: payload.as_bytes().to_vec().into(),
        metadata: Default::default(),
    }
}
