//! Bank accounts on Interlock, stored in a SQLite file:
//! `cargo run -p bank-example`. Run it twice: the second run finds the
//! accounts of the first (the file is `bank-example.db` in the system temp
//! directory, or `INTERLOCK_SQLITE_PATH`). With `INTERLOCK_MONGODB_URI`
//! set, the same code runs on MongoDB instead. With `INTERLOCK_REDIS_URL`
//! set, Redis holds the aggregate cache, the command ids, the snapshots and
//! the checkpoints beside that event store (keys under
//! `INTERLOCK_REDIS_PREFIX`, default `bank-example:`). Redis keeps states
//! derived from the events: give each event store its own prefix, and
//! clear the prefix when the event store is replaced.

use bank_example::domain::{BankAccount, BankError, Deposit, OpenAccount, Withdraw};
use interlock::AggregateConfig;
use interlock::mongodb::{MongoConfig, MongoStore};
use interlock::prelude::*;
use interlock::redis::{RedisConfig, RedisStore};
use interlock::store::EventStore;
use interlock::store::StoreSet;
use interlock::store::{ExpectedVersion, NewEvent};
use interlock::{CommandError, EventId, StreamId};
use interlock_sql::{SqliteConfig, SqliteStore};

/// The example's two accounts keep the same ids from run to run.
const ADA: &str = "01JAAAAAAAAAAAAAAAAAAAAADA";
const GRACE: &str = "01JAAAAAAAAAAAAAAAAAAGRACE";

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let stores = match std::env::var("INTERLOCK_MONGODB_URI") {
        Ok(uri) => {
            let config = MongoConfig::new(uri).database("bank_example");
            println!("store: {config}");
            StoreSet::all(MongoStore::open(config).await?)
        }
        Err(_) => {
            let config = match SqliteConfig::from_env() {
                Ok(config) => config,
                Err(interlock_sql::ConfigError::MissingVariable(_)) => {
                    SqliteConfig::file(std::env::temp_dir().join("bank-example.db"))
                }
                Err(invalid) => return Err(invalid.into()),
            };
            println!("store: {:?}", config.location);
            StoreSet::all(SqliteStore::open(config).await?)
        }
    };
    let store = stores.events.clone().ok_or("the backend has no event store")?;
    let (ada, grace) = (ADA.parse::<Ulid>()?, GRACE.parse::<Ulid>()?);

    // An account written before deposits had a currency (schema version 1
    // of `bank.money_deposited`), as an older release would have stored it.
    let legacy = StreamId::new("bank.account", grace.to_string());
    if store.stream_version(&legacy).await? == Version(0) {
        store
            .append(
                &legacy,
                ExpectedVersion::Exact(Version(0)),
                vec![
                    raw("bank.account_opened", 1, r#"{"owner":"grace"}"#),
                    raw("bank.money_deposited", 1, r#"{"amount":250}"#),
                ],
            )
            .await?;
    }

    let mut builder = Application::builder()
        .aggregate_with(AggregateConfig::<BankAccount>::new().snapshot_every(10))
        .backend(stores);
    if std::env::var(RedisConfig::URL_VAR).is_ok() {
        let mut config = RedisConfig::from_env()?;
        if std::env::var(RedisConfig::PREFIX_VAR).is_err() {
            config = config.prefix("bank-example:");
        }
        let redis = RedisStore::open(config).await?;
        println!(
            "redis: {:?} (aggregate cache, command ids, snapshots, checkpoints)",
            redis.config()
        );
        builder = builder
            .aggregate_cache(redis.clone())
            .idempotency_store(redis.clone())
            .snapshot_store(redis.clone())
            .checkpoint_store(redis);
    }
    let app = builder.build().await?;

    let before = app.load::<BankAccount>(&ada).await?;
    if before.state.open {
        println!(
            "found ada's account from an earlier run: balance {} at version {}",
            before.state.balance, before.version
        );
    } else {
        app.dispatch(OpenAccount {
            account: ada,
            owner: "ada".into(),
        })
        .await?;
        println!("opened ada's account");
    }

    app.dispatch(Deposit {
        account: ada,
        amount: 100,
        request: None,
    })
    .await?;
    // A client retries a deposit with the same request id: applied once.
    let request = Some(CommandId::new());
    for _ in 0..3 {
        app.dispatch(Deposit {
            account: ada,
            amount: 40,
            request,
        })
        .await?;
    }
    let left = app
        .dispatch(Withdraw {
            account: ada,
            amount: 30,
        })
        .await?;
    println!("ada deposited 100 and 40 (sent three times), withdrew 30: balance {left}");

    match app
        .dispatch(Withdraw {
            account: ada,
            amount: 1_000_000,
        })
        .await
    {
        Err(CommandError::Domain(BankError::InsufficientFunds { balance, requested })) => {
            println!("refused: withdraw {requested} with a balance of {balance}");
        }
        other => return Err(format!("expected a refusal, got {other:?}").into()),
    }

    let after = app.load::<BankAccount>(&ada).await?;
    let earlier = app.load_as_of::<BankAccount>(&ada, before.version).await?;
    println!(
        "as of version {} (before this run) the balance was {}",
        before.version, earlier.state.balance
    );

    // The legacy account's version-1 deposit is upcast on load.
    app.dispatch(Deposit {
        account: grace,
        amount: 50,
        request: None,
    })
    .await?;
    let grace_state = app.load::<BankAccount>(&grace).await?;
    println!(
        "grace's legacy account: balance {} (250 of it from a version-1 event, upcast)",
        grace_state.state.balance
    );

    if after.state.balance != before.state.balance + 110 || earlier.state.balance != before.state.balance {
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
