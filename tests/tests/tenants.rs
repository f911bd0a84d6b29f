//! One store shared by tenants: the same aggregate ids in two tenants are
//! two instances; a tenant's handle never reads, appends to or projects
//! another tenant's events, whatever ids or scopes it is given; rules over
//! a category (unique usernames) hold per tenant. On memory, SQLite and
//! PostgreSQL.

use std::sync::Arc;

use interlock::prelude::*;
use interlock::store::{
    EventFilter, EventStore, ExpectedVersion, MemoryEventStore, NewEvent, RewrittenEvent, Scan, Scope, StoreError,
};
use interlock::{DispatchOptions, TenantId};
use interlock_tests::bank::{BankAccount, Deposit, FeePolicy, OpenAccount};
use interlock_tests::services;
use signup_example::{OwnerOf, Register, SignupError, User, Usernames};

fn tenant(name: &str) -> TenantId {
    TenantId::new(format!("{name}-{}", Ulid::new())).expect("a tenant id")
}

async fn app(store: Arc<dyn EventStore>, projected: &TenantId) -> Application {
    Application::builder()
        .aggregate::<BankAccount>()
        .aggregate::<User>()
        .service(FeePolicy { fee: 0 })
        // A read model of one tenant.
        .projection_with(
            Usernames::default(),
            interlock::ProjectionConfig::inline().subscriber(SubscriberConfig::new().tenant(projected.clone())),
        )
        .shared_event_store(store)
        .build()
        .await
        .expect("build")
}

fn raw(n: u64) -> NewEvent {
    NewEvent {
        event_id: interlock::EventId::new(),
        name: "bank.account_opened".into(),
        schema_version: interlock::SchemaVersion(1),
        payload: format!(r#"{{"owner":"raw-{n}"}}"#).into_bytes().into(),
        metadata: interlock::store::EventMetadata::default(),
    }
}

async fn isolation(store: Arc<dyn EventStore>) {
    let (acme, globex) = (tenant("acme"), tenant("globex"));
    let app = app(Arc::clone(&store), &acme).await;
    let (a, g) = (app.tenant(acme.clone()), app.tenant(globex.clone()));

    // The same account id in both tenants: two accounts.
    let account = Ulid::new();
    a.dispatch(OpenAccount {
        account,
        owner: "acme".into(),
    })
    .await
    .expect("open in acme");
    g.dispatch(OpenAccount {
        account,
        owner: "globex".into(),
    })
    .await
    .expect("open in globex");
    a.dispatch(Deposit {
        account,
        amount: 30,
        id: None,
    })
    .await
    .expect("deposit");
    assert_eq!(a.load::<BankAccount>(&account).await.expect("load").state.balance, 30);
    assert_eq!(g.load::<BankAccount>(&account).await.expect("load").state.balance, 0);
    let none = app.load::<BankAccount>(&account).await.expect("load");
    assert_eq!(
        none.version,
        interlock::Version(0),
        "the stream of no tenant is a third one"
    );

    // An idempotent command id replayed in the other tenant is refused,
    // never answered with the first tenant's outcome.
    let id = interlock::CommandId::new();
    a.dispatch(Deposit {
        account,
        amount: 1,
        id: Some(id),
    })
    .await
    .expect("deposit");
    assert!(matches!(
        g.dispatch(Deposit {
            account,
            amount: 1,
            id: Some(id)
        })
        .await,
        Err(CommandError::CommandIdReused { .. })
    ));
    assert_eq!(g.load::<BankAccount>(&account).await.expect("load").state.balance, 0);

    // A name unique across users holds per tenant.
    let (u1, u2, u3) = (Ulid::new(), Ulid::new(), Ulid::new());
    a.dispatch(Register {
        user: u1,
        username: "ada".into(),
    })
    .await
    .expect("ada in acme");
    g.dispatch(Register {
        user: u2,
        username: "ada".into(),
    })
    .await
    .expect("ada in globex too");
    assert!(matches!(
        a.dispatch(Register {
            user: u3,
            username: "ada".into()
        })
        .await,
        Err(CommandError::Domain(SignupError::Taken(_)))
    ));
    // The projection of acme sees acme's names only.
    assert_eq!(
        app.query(OwnerOf("ada".into())).await.expect("query"),
        Some(u1.to_string())
    );

    // The tenant's store: its own streams, categories and log only.
    let acme_store = a.event_store();
    let globex_stream = interlock::StreamId::new("bank.account", account.to_string()).in_tenant(Some(globex.clone()));
    let no_tenant = interlock::StreamId::new("bank.account", account.to_string());
    // Hostile: an id spelling acme's stream, in no tenant.
    let lookalike = interlock::StreamId::new("bank.account", format!("{acme}:bank.account/{account}"));
    for stream in [&globex_stream, &no_tenant, &lookalike] {
        assert!(matches!(
            acme_store.read_stream(stream, interlock::Version(1), None).await,
            Err(StoreError::OtherTenant { .. })
        ));
        assert!(matches!(
            acme_store.append(stream, ExpectedVersion::Any, vec![raw(1)]).await,
            Err(StoreError::OtherTenant { .. })
        ));
        assert!(matches!(
            acme_store.scan(&Scan::stream(stream.clone())).await,
            Err(StoreError::OtherTenant { .. })
        ));
    }
    assert_eq!(
        store.stream_version(&globex_stream).await.expect("version"),
        interlock::Version(1),
        "nothing was appended to globex"
    );
    for scan in [Scan::category("bank.account"), Scan::log(), Scan::log().backward()] {
        let page = acme_store.scan(&scan.limit(10_000)).await.expect("scan");
        assert!(!page.is_empty());
        assert!(page.iter().all(|e| e.stream.tenant() == Some(&acme)), "{page:?}");
    }
    assert!(matches!(
        acme_store.scan(&Scan::of(Scope::Tenant(globex.clone()))).await,
        Err(StoreError::OtherTenant { .. })
    ));
    let all = acme_store
        .read_all(interlock::Position::START, 10_000, &EventFilter::all())
        .await
        .expect("read all");
    assert!(all.iter().all(|e| e.stream.tenant() == Some(&acme)));
    assert!(matches!(
        acme_store
            .read_all(
                interlock::Position::START,
                10,
                &EventFilter::all().tenant(globex.clone())
            )
            .await,
        Err(StoreError::OtherTenant { .. })
    ));
    let globex_event = store
        .read_stream(&globex_stream, interlock::Version(1), None)
        .await
        .expect("read")
        .remove(0);
    assert!(matches!(
        acme_store
            .rewrite(
                globex_event.position,
                RewrittenEvent {
                    name: globex_event.name.clone(),
                    schema_version: globex_event.schema_version,
                    payload: br#"{"owner":"stolen"}"#.to_vec().into(),
                },
            )
            .await,
        Err(StoreError::OtherTenant { .. })
    ));
    let unchanged = store
        .read_stream(&globex_stream, interlock::Version(1), None)
        .await
        .expect("read");
    assert_eq!(unchanged[0].payload, globex_event.payload);
    // Explicit options naming another tenant are overridden by the handle.
    let d = a
        .dispatch_with(
            Deposit {
                account,
                amount: 5,
                id: None,
            },
            DispatchOptions::new().tenant(globex.clone()),
        )
        .await
        .expect("deposit");
    assert_eq!(d.stream.tenant(), Some(&acme));
}

#[tokio::test]
async fn tenants_are_isolated_on_memory() {
    isolation(Arc::new(MemoryEventStore::new())).await;
}

#[tokio::test]
async fn tenants_are_isolated_on_sqlite() {
    let Some(store) = services::sqlite_file().await else {
        return;
    };
    isolation(Arc::new(store)).await;
}

#[tokio::test]
async fn tenants_are_isolated_on_postgres() {
    let Some(store) = services::postgres().await else {
        return;
    };
    isolation(Arc::new(store)).await;
}

/// A saga started by a tenant's event keeps its instance per tenant and
/// dispatches into that tenant: the same transfer id in two tenants is two
/// transfers, each moving its own tenant's money, also when a deadline
/// fires.
#[tokio::test]
async fn sagas_work_inside_their_tenant() {
    use std::time::Duration;
    use transfer_example::accounts::{Account, Deposit as Pay, OpenAccount as Open};
    use transfer_example::transfer::{MoneyTransfer, RequestTransfer, Transfer, TransferTimeout};
    let app = Application::builder()
        .aggregate::<Account>()
        .aggregate::<Transfer>()
        .saga::<MoneyTransfer>()
        .service(TransferTimeout(Duration::from_millis(50)))
        .background(false)
        .build()
        .await
        .expect("build");
    let saga = app.saga_handle::<MoneyTransfer>().expect("saga");
    let (acme, globex) = (tenant("acme"), tenant("globex"));
    let (ada, bob, transfer) = (Ulid::new(), Ulid::new(), Ulid::new());
    for (t, amount) in [(&acme, 100), (&globex, 10)] {
        let h = app.tenant(t.clone());
        for (account, owner) in [(ada, "ada"), (bob, "bob")] {
            h.dispatch(Open {
                account,
                owner: owner.into(),
            })
            .await
            .expect("open");
        }
        h.dispatch(Pay { account: ada, amount }).await.expect("deposit");
        h.dispatch(RequestTransfer {
            transfer_id: transfer,
            from: ada,
            to: bob,
            amount: amount / 2,
        })
        .await
        .expect("request");
    }
    saga.catch_up().await.expect("saga");
    let balance = |t: &TenantId, account| {
        let h = app.tenant(t.clone());
        async move { h.load::<Account>(&account).await.expect("load").state.balance() }
    };
    assert_eq!((balance(&acme, ada).await, balance(&acme, bob).await), (50, 50));
    assert_eq!((balance(&globex, ada).await, balance(&globex, bob).await), (5, 5));
    assert_eq!(
        app.load::<Account>(&bob).await.expect("load").version,
        interlock::Version(0),
        "nothing outside the tenants"
    );
}
