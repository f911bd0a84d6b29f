//! The [`AggregateCache`] conformance suite, for caches of live states
//! (in process) and of encoded ones (shared). A shared cache may write in
//! the background: the checks wait up to 5 s for a put to show.

use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::domain::ids::{StreamId, Version};
use crate::store::{AggregateCache, CacheEntry, CacheRead, CachedState};

fn stream() -> StreamId {
    StreamId::new("conf.cache", ulid::Ulid::new().to_string())
}

/// An entry of the cache's kind holding `n`.
fn entry<C: AggregateCache>(cache: &C, version: u64, n: u64) -> CacheEntry {
    let state = if cache.encoded() {
        CachedState::Encoded(Bytes::from(format!(r#"{{"n":{n}}}"#)))
    } else {
        CachedState::Live(Box::new(n))
    };
    CacheEntry {
        version: Version(version),
        state_version: 3,
        state,
    }
}

/// The version, state version and number of an entry.
fn read(entry: CacheEntry) -> (Version, u32, u64) {
    let n = match entry.state {
        CachedState::Live(state) => *state.downcast::<u64>().expect("the state put"),
        CachedState::Encoded(bytes) => {
            let json: serde_json::Value = serde_json::from_slice(&bytes).expect("the bytes put");
            json["n"].as_u64().expect("the number put")
        }
    };
    (entry.version, entry.state_version, n)
}

async fn take<C: AggregateCache>(cache: &C, stream: &StreamId) -> Option<(Version, u32, u64)> {
    match cache.take(stream) {
        CacheRead::Ready(entry) => entry.map(read),
        CacheRead::Pending(lookup) => lookup.await.expect("the cache answers").map(read),
    }
}

/// Takes until `done` holds for what is cached, for up to 5 s (a shared
/// cache writes in the background).
async fn eventually<C: AggregateCache>(
    cache: &C,
    stream: &StreamId,
    done: impl Fn(&Option<(Version, u32, u64)>) -> bool,
) -> Option<(Version, u32, u64)> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let found = take(cache, stream).await;
        if done(&found) || Instant::now() > deadline {
            return found;
        }
        // Checked out of a cache in memory: put it back for the next look
        // (a shared cache handed a copy).
        if let Some((version, _, n)) = found
            && !cache.encoded()
        {
            cache.put(stream.clone(), entry(cache, version.0, n));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A stream never put is a miss; a put entry comes back whole.
pub async fn put_then_take<C: AggregateCache>(cache: C) {
    let s = stream();
    assert_eq!(take(&cache, &s).await, None);
    cache.put(s.clone(), entry(&cache, 3, 42));
    let found = eventually(&cache, &s, Option::is_some).await;
    assert_eq!(found, Some((Version(3), 3, 42)));
}

/// An earlier version never replaces a later one.
pub async fn later_version_wins<C: AggregateCache>(cache: C) {
    let s = stream();
    cache.put(s.clone(), entry(&cache, 5, 5));
    let found = eventually(&cache, &s, |f| f.is_some()).await;
    assert_eq!(found, Some((Version(5), 3, 5)));
    if !cache.encoded() {
        cache.put(s.clone(), entry(&cache, 5, 5));
    }
    cache.put(s.clone(), entry(&cache, 4, 4));
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(take(&cache, &s).await, Some((Version(5), 3, 5)));
}

/// An invalidated entry is gone; other streams keep theirs.
pub async fn invalidate_drops_one_stream<C: AggregateCache>(cache: C) {
    let (a, b) = (stream(), stream());
    cache.put(a.clone(), entry(&cache, 1, 1));
    cache.put(b.clone(), entry(&cache, 2, 2));
    assert!(eventually(&cache, &a, Option::is_some).await.is_some());
    let found = eventually(&cache, &b, Option::is_some).await;
    assert_eq!(found, Some((Version(2), 3, 2)));
    if !cache.encoded() {
        cache.put(b.clone(), entry(&cache, 2, 2));
    }
    cache.invalidate(&a);
    assert_eq!(eventually(&cache, &a, Option::is_none).await, None);
    assert_eq!(take(&cache, &b).await, Some((Version(2), 3, 2)));
}
