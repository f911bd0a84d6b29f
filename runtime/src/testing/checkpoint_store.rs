//! The [`CheckpointStore`] conformance suite.

use std::sync::Arc;

use crate::domain::ids::Position;
use crate::store::CheckpointStore;

fn name(prefix: &str) -> String {
    format!("{prefix}:{}", ulid::Ulid::new())
}

/// A saved checkpoint loads back; an unknown subscriber has none.
pub async fn save_and_load<S: CheckpointStore>(store: S) {
    let sub = name("conf.cp");
    assert_eq!(store.load(&sub).await.expect("load"), None);
    store.save(&sub, Position(42)).await.expect("save");
    assert_eq!(store.load(&sub).await.expect("load"), Some(Position(42)));
    store.save(&sub, Position(43)).await.expect("save");
    assert_eq!(store.load(&sub).await.expect("load"), Some(Position(43)));
}

/// A checkpoint can be reset to the start (projection rebuild).
pub async fn reset_to_start<S: CheckpointStore>(store: S) {
    let sub = name("conf.cp_reset");
    store.save(&sub, Position(1000)).await.expect("save");
    store.save(&sub, Position::START).await.expect("reset");
    assert_eq!(store.load(&sub).await.expect("load"), Some(Position::START));
}

/// `advance` only moves a checkpoint forward, also when 16 callers
/// advance one at once (the highest wins), and starts one that is missing.
pub async fn advance_only_moves_forward<S: CheckpointStore>(store: S) {
    let sub = name("conf.cp_advance");
    store.advance(&sub, Position(10)).await.expect("advance");
    assert_eq!(store.load(&sub).await.expect("load"), Some(Position(10)));
    store.advance(&sub, Position(7)).await.expect("advance");
    assert_eq!(
        store.load(&sub).await.expect("load"),
        Some(Position(10)),
        "not moved back"
    );
    store.advance(&sub, Position(12)).await.expect("advance");
    assert_eq!(store.load(&sub).await.expect("load"), Some(Position(12)));
    let store = Arc::new(store);
    let mut tasks = Vec::new();
    for i in 0..16u64 {
        let (store, sub) = (Arc::clone(&store), sub.clone());
        // 100..=115 in a scrambled order.
        tasks.push(tokio::spawn(async move {
            store.advance(&sub, Position(100 + (i * 7) % 16)).await
        }));
    }
    for task in tasks {
        task.await.expect("task").expect("advance");
    }
    assert_eq!(store.load(&sub).await.expect("load"), Some(Position(115)));
}

/// Subscribers' checkpoints are independent, also under concurrent saves.
pub async fn subscribers_are_isolated<S: CheckpointStore>(store: S) {
    let store = Arc::new(store);
    let names: Vec<String> = (0..8).map(|_| name("conf.cp_iso")).collect();
    let mut tasks = Vec::new();
    for (i, sub) in names.iter().enumerate() {
        let store = Arc::clone(&store);
        let sub = sub.clone();
        tasks.push(tokio::spawn(async move {
            for p in 1..=20u64 {
                store.save(&sub, Position(p * 100 + i as u64)).await.expect("save");
            }
        }));
    }
    for t in tasks {
        t.await.expect("join");
    }
    for (i, sub) in names.iter().enumerate() {
        assert_eq!(store.load(sub).await.expect("load"), Some(Position(2000 + i as u64)));
    }
}

/// A lease: the first claim holds it (token 1), another claimer is told
/// who holds it, the owner renews with the same token, and after it
/// expires another instance takes it over with a higher token. Time is
/// the `now` each claim passes.
pub async fn leases_are_claimed_renewed_and_taken_over<S: CheckpointStore>(store: S) {
    use std::time::Duration;

    use crate::domain::ids::Timestamp;
    use crate::store::LeaseClaim;
    let sub = name("conf.lease");
    let t0 = Timestamp::now();
    let at = |secs: i64| Timestamp(t0.0 + secs * 1_000_000);
    let ten = Duration::from_secs(10);
    let first = match store.claim_lease(&sub, "a", at(0), ten).await.expect("claim") {
        LeaseClaim::Held(lease) => lease,
        other => panic!("a free lease is held by its first claimer: {other:?}"),
    };
    assert_eq!((first.owner.as_str(), first.expires_at), ("a", at(10)));
    match store.claim_lease(&sub, "b", at(5), ten).await.expect("claim") {
        LeaseClaim::Taken(lease) => assert_eq!((lease.owner.as_str(), lease.token), ("a", first.token)),
        other => panic!("a held lease is not taken before it expires: {other:?}"),
    }
    match store.claim_lease(&sub, "a", at(8), ten).await.expect("renew") {
        LeaseClaim::Held(lease) => assert_eq!((lease.token, lease.expires_at), (first.token, at(18))),
        other => panic!("the owner renews: {other:?}"),
    }
    // Renewed: still a's at 15.
    assert!(matches!(
        store.claim_lease(&sub, "b", at(15), ten).await.expect("claim"),
        LeaseClaim::Taken(_)
    ));
    let second = match store.claim_lease(&sub, "b", at(19), ten).await.expect("claim") {
        LeaseClaim::Held(lease) => lease,
        other => panic!("an expired lease is taken over: {other:?}"),
    };
    assert_eq!(second.owner, "b");
    assert!(second.token > first.token, "a takeover raises the token");
    match store.claim_lease(&sub, "a", at(20), ten).await.expect("claim") {
        LeaseClaim::Taken(lease) => assert_eq!(lease.owner, "b"),
        other => panic!("the old owner lost it: {other:?}"),
    }
    let listed = store.leases().await.expect("leases");
    let mine = listed.iter().find(|l| l.subscriber == sub).expect("listed");
    assert_eq!((mine.owner.as_str(), mine.token), ("b", second.token));
}

/// Saves fenced by the lease: the owner's token saves; after a takeover
/// the old owner's save is refused (`LeaseLost`) and changes nothing; a
/// subscriber never leased cannot save fenced. A released lease is taken
/// at once by the next claimer.
pub async fn checkpoint_saves_are_fenced_by_the_lease<S: CheckpointStore>(store: S) {
    use std::time::Duration;

    use crate::domain::ids::Timestamp;
    use crate::store::{LeaseClaim, StoreError};
    let sub = name("conf.fence");
    let t0 = Timestamp::now();
    let at = |secs: i64| Timestamp(t0.0 + secs * 1_000_000);
    let ten = Duration::from_secs(10);
    let held = |claim: LeaseClaim| match claim {
        LeaseClaim::Held(lease) => lease,
        LeaseClaim::Taken(lease) => panic!("expected to hold the lease, {} does", lease.owner),
    };
    assert!(matches!(
        store.save_fenced(&sub, Position(1), 1).await,
        Err(StoreError::LeaseLost { .. })
    ));
    let a = held(store.claim_lease(&sub, "a", at(0), ten).await.expect("claim"));
    store
        .save_fenced(&sub, Position(10), a.token)
        .await
        .expect("the owner saves");
    assert_eq!(store.load(&sub).await.expect("load"), Some(Position(10)));
    let b = held(store.claim_lease(&sub, "b", at(11), ten).await.expect("takeover"));
    match store.save_fenced(&sub, Position(99), a.token).await {
        Err(StoreError::LeaseLost { subscriber, token }) => assert_eq!((subscriber, token), (sub.clone(), a.token)),
        other => panic!("a paused owner's late save is refused: {other:?}"),
    }
    assert_eq!(store.load(&sub).await.expect("load"), Some(Position(10)));
    store
        .save_fenced(&sub, Position(20), b.token)
        .await
        .expect("the new owner saves");
    assert_eq!(store.load(&sub).await.expect("load"), Some(Position(20)));
    // A stale token releases nothing; the owner's release frees it at once.
    store.release_lease(&sub, a.token).await.expect("release");
    assert!(matches!(
        store.claim_lease(&sub, "c", at(12), ten).await.expect("claim"),
        LeaseClaim::Taken(_)
    ));
    store.release_lease(&sub, b.token).await.expect("release");
    let c = held(
        store
            .claim_lease(&sub, "c", at(12), ten)
            .await
            .expect("claim after release"),
    );
    assert!(c.token > b.token);
}

/// 16 instances claim one free lease at once, then the same expired
/// lease at once: each time exactly one holds it.
pub async fn one_owner_under_contention<S: CheckpointStore>(store: S) {
    use std::time::Duration;

    use crate::domain::ids::Timestamp;
    use crate::store::LeaseClaim;
    let store = Arc::new(store);
    let sub = name("conf.lease_race");
    let t0 = Timestamp::now();
    for round in 0..2i64 {
        let now = Timestamp(t0.0 + round * 60_000_000);
        let mut tasks = Vec::new();
        for i in 0..16 {
            let (store, sub) = (Arc::clone(&store), sub.clone());
            tasks.push(tokio::spawn(async move {
                let owner = format!("instance-{round}-{i}");
                store
                    .claim_lease(&sub, &owner, now, Duration::from_secs(30))
                    .await
                    .expect("claim")
            }));
        }
        let mut holders = Vec::new();
        for t in tasks {
            if let LeaseClaim::Held(lease) = t.await.expect("join") {
                holders.push(lease);
            }
        }
        assert_eq!(holders.len(), 1, "round {round}: {holders:?}");
        assert!(holders[0].owner.starts_with(&format!("instance-{round}-")));
    }
}
