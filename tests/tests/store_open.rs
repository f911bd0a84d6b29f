//! Opening backends from URLs with `interlock::open`, and running an
//! application on what it returns.

use interlock::prelude::*;
use interlock::{OpenError, open};
use interlock_tests::bank::*;

async fn deposit_and_read_back(stores: interlock::store::StoreSet) {
    let app = bank_builder().backend(stores.clone()).build().await.expect("build");
    let account = Ulid::new();
    app.dispatch(OpenAccount {
        account,
        owner: "url".into(),
    })
    .await
    .expect("open");
    app.dispatch(Deposit {
        account,
        amount: 7,
        id: None,
    })
    .await
    .expect("deposit");
    // The events went to the backend's event store, not to a default.
    let stream = StreamId::new("bank.account", account.to_string());
    let events = stores
        .events
        .as_ref()
        .expect("an event store")
        .read_stream(&stream, Version(1), None)
        .await
        .expect("read");
    assert_eq!(events.len(), 2);
    assert!(stores.snapshots.is_some() && stores.idempotency.is_some() && stores.sagas.is_some());
    assert!(stores.outbox.is_some());
}

#[tokio::test]
async fn sqlite_urls_open_in_memory_and_file_stores() {
    deposit_and_read_back(open("sqlite::memory:").await.expect("memory")).await;
    let path = std::env::temp_dir().join(format!("interlock-open-{}.db", Ulid::new()));
    let url = format!("sqlite://{}", path.display());
    deposit_and_read_back(open(&url).await.expect("file")).await;
    assert!(path.exists(), "the file was created");
    assert!(matches!(open("sqlite:").await, Err(OpenError::InvalidUrl { .. })));
}

#[tokio::test]
async fn postgres_urls_open_the_server_and_never_show_a_password() {
    let Some(url) = interlock_tests::services::postgres_url() else {
        return;
    };
    deposit_and_read_back(open(&url).await.expect("postgres")).await;

    // A server that is not there, with a password in the URL: a typed
    // error that names the redacted URL.
    let err = open("postgres://app:hunter2@127.0.0.1:1/nothing")
        .await
        .expect_err("nothing listens on port 1");
    let text = err.to_string();
    assert!(matches!(err, OpenError::Store { .. }), "{text}");
    assert!(!text.contains("hunter2"), "{text}");
    assert!(text.contains("***"), "{text}");
}

#[tokio::test]
async fn unknown_schemes_are_refused_with_the_known_ones() {
    let err = open("redis://localhost/0").await.expect_err("no redis backend yet");
    assert!(
        matches!(&err, OpenError::UnknownScheme { scheme, known }
            if scheme == "redis" && known.contains("sqlite") && known.contains("mongodb")),
        "{err}"
    );
}

#[tokio::test]
async fn mongodb_urls_open_the_mongodb_backend() {
    // Nothing listens on port 1: the error names the redacted URL.
    let err = open("mongodb://app:hunter2@127.0.0.1:1/bank?directConnection=true&serverSelectionTimeoutMS=300")
        .await
        .expect_err("no server");
    assert!(
        matches!(&err, OpenError::Store { url, .. } if url.contains("app:***@127.0.0.1:1/bank")),
        "{err}"
    );
    assert!(!format!("{err}{err:?}").contains("hunter2"));
    let Some(uri) = interlock_tests::services::mongodb_uri() else {
        return;
    };
    let stores = open(&uri).await.expect("open");
    assert!(stores.events.is_some() && stores.sagas.is_some() && stores.checkpoints.is_some());
}
