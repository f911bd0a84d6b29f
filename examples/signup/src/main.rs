//! Unique usernames through a category constraint:
//! `cargo run -p signup-example`.
//!
//! Two application instances share one SQLite file (as two processes
//! behind a load balancer would share a database); sixteen sign-ups race
//! for one name across both, and exactly one wins.

use std::sync::Arc;

use interlock::prelude::*;
use interlock::sql::{SqliteConfig, SqliteStore};
use signup_example::{ChangeUsername, OwnerOf, Register, SignupError, User, Usernames};

async fn instance(store: SqliteStore) -> Result<Application, Box<dyn std::error::Error>> {
    Ok(Application::builder()
        .aggregate::<User>()
        .projection_with(Usernames::default(), interlock::ProjectionConfig::inline())
        .event_store(store)
        .build()
        .await?)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let path = std::env::temp_dir().join(format!("interlock-signup-{}.db", Ulid::new()));
    let store = SqliteStore::open(SqliteConfig::file(&path)).await?;
    let apps = [
        Arc::new(instance(store.clone()).await?),
        Arc::new(instance(store).await?),
    ];

    let ada = Ulid::new();
    apps[0]
        .dispatch(Register {
            user: ada,
            username: "ada".into(),
        })
        .await?;
    println!("ada registered as `ada`");

    // Sixteen users race for `grace`, half through each instance.
    let mut racers = Vec::new();
    for i in 0..16 {
        let app = Arc::clone(&apps[i % 2]);
        racers.push(tokio::spawn(async move {
            app.dispatch(Register {
                user: Ulid::new(),
                username: "grace".into(),
            })
            .await
        }));
    }
    let (mut won, mut refused) = (0, 0);
    for racer in racers {
        match racer.await? {
            Ok(_) => won += 1,
            Err(CommandError::Domain(SignupError::Taken(_))) => refused += 1,
            Err(e) => return Err(e.into()),
        }
    }
    println!("16 sign-ups for `grace`: {won} registered, {refused} refused as taken");
    assert_eq!((won, refused), (1, 15));

    match apps[1]
        .dispatch(ChangeUsername {
            user: ada,
            username: "grace".into(),
        })
        .await
    {
        Err(CommandError::Domain(e)) => println!("ada cannot take `grace`: {e}"),
        other => return Err(format!("expected a refusal, got {other:?}").into()),
    }
    apps[1]
        .dispatch(ChangeUsername {
            user: ada,
            username: "countess".into(),
        })
        .await?;
    let owner = apps[1].query(OwnerOf("countess".into())).await?;
    println!("`countess` belongs to {}", owner.as_deref().unwrap_or("nobody"));
    drop(apps);
    let _ = std::fs::remove_file(&path);
    Ok(())
}
