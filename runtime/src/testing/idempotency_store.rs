//! The [`IdempotencyStore`] conformance suite.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use crate::domain::fingerprint::CommandFingerprint;
use crate::domain::ids::{CommandId, StreamId, Timestamp, Version};
use crate::store::{Claim, IdempotencyRecord, IdempotencyStore};

const T0: Timestamp = Timestamp(1_700_000_000_000_000);
const SECOND: i64 = 1_000_000;

fn record(id: CommandId, expires_at: Timestamp) -> IdempotencyRecord {
    IdempotencyRecord {
        command_id: id,
        stream: StreamId::new("conf.idem", "1"),
        version: Version(4),
        output: Bytes::from_static(br#"{"balance":70}"#),
        recorded_at: T0,
        expires_at,
        // The high bit set: a store that keeps it in a signed column must
        // give back the same bits.
        fingerprint: Some(CommandFingerprint(0xfedc_ba98_7654_3210)),
    }
}

/// Claim, complete, then every later claim returns the recorded outcome.
pub async fn claim_complete_replay<S: IdempotencyStore>(store: S) {
    let id = CommandId::new();
    let lease = Duration::from_secs(30);
    assert_eq!(store.claim(id, T0, lease).await.expect("claim"), Claim::Claimed);
    assert_eq!(store.claim(id, T0, lease).await.expect("claim"), Claim::InProgress);
    let rec = record(id, Timestamp(T0.0 + 3600 * SECOND));
    store.complete(rec.clone()).await.expect("complete");
    assert_eq!(
        store.claim(id, T0, lease).await.expect("claim"),
        Claim::Completed(rec.clone())
    );
    assert_eq!(
        store
            .claim(id, Timestamp(T0.0 + 60 * SECOND), lease)
            .await
            .expect("claim"),
        Claim::Completed(rec)
    );
}

/// A released claim can be claimed again.
pub async fn release_allows_retry<S: IdempotencyStore>(store: S) {
    let id = CommandId::new();
    let lease = Duration::from_secs(30);
    assert_eq!(store.claim(id, T0, lease).await.expect("claim"), Claim::Claimed);
    store.release(id).await.expect("release");
    assert_eq!(store.claim(id, T0, lease).await.expect("claim"), Claim::Claimed);
}

/// An expired claim (its holder died) is claimable; expired records purge.
pub async fn expired_claims_and_purge<S: IdempotencyStore>(store: S) {
    let lease = Duration::from_secs(30);
    let crashed = CommandId::new();
    assert_eq!(store.claim(crashed, T0, lease).await.expect("claim"), Claim::Claimed);
    let later = Timestamp(T0.0 + 31 * SECOND);
    // Taken over, and said so: the dead holder may have committed.
    assert_eq!(
        store.claim(crashed, later, lease).await.expect("claim"),
        Claim::Reclaimed
    );

    let done = CommandId::new();
    assert_eq!(store.claim(done, T0, lease).await.expect("claim"), Claim::Claimed);
    store
        .complete(record(done, Timestamp(T0.0 + 10 * SECOND)))
        .await
        .expect("complete");
    let purged = store
        .purge_expired(Timestamp(T0.0 + 3600 * SECOND))
        .await
        .expect("purge");
    assert!(purged >= 1, "the expired record is purged, got {purged}");
    assert_eq!(
        store
            .claim(done, Timestamp(T0.0 + 3600 * SECOND), lease)
            .await
            .expect("claim"),
        Claim::Claimed
    );
    // An expired claim is never purged: taken over after the purge, it is
    // still known as a dead holder's.
    let abandoned = CommandId::new();
    assert_eq!(store.claim(abandoned, T0, lease).await.expect("claim"), Claim::Claimed);
    store
        .purge_expired(Timestamp(T0.0 + 3600 * SECOND))
        .await
        .expect("purge");
    assert_eq!(
        store
            .claim(abandoned, Timestamp(T0.0 + 3601 * SECOND), lease)
            .await
            .expect("claim"),
        Claim::Reclaimed
    );
}

/// Of many concurrent claims on one id, exactly one wins.
pub async fn one_claim_wins<S: IdempotencyStore>(store: S) {
    let store = Arc::new(store);
    let id = CommandId::new();
    let mut tasks = Vec::new();
    for _ in 0..16 {
        let store = Arc::clone(&store);
        tasks.push(tokio::spawn(async move {
            store.claim(id, T0, Duration::from_secs(30)).await.expect("claim")
        }));
    }
    let mut claimed = 0;
    for t in tasks {
        if t.await.expect("join") == Claim::Claimed {
            claimed += 1;
        }
    }
    assert_eq!(claimed, 1);
}
