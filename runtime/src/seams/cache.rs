//! The aggregate cache seam: hot aggregate states kept between commands,
//! so a command to a known aggregate does not read its events again.
//!
//! **Consistency.** An entry carries the version of the state it holds and
//! the aggregate's `STATE_VERSION`. A stale entry (another instance has
//! appended since, or the entry was put late) can only cost a conflict and
//! a reload: every append expects the version the decision was made on. An
//! entry of another state version is a miss. A cache that fails (a server
//! down, a timeout, an entry that does not decode) is bypassed with a
//! warning and the metric `interlock_cache_errors_total`: dispatch goes on
//! from the event store.
//!
//! The default, [`MemoryAggregateCache`], holds live states in process
//! memory (no encoding). A cache shared by several instances holds them
//! encoded ([`AggregateCache::encoded`]): only aggregates with snapshots
//! configured (`snapshot_every`, which gives them an encoding) are cached
//! there.

use std::any::Any;

use bytes::Bytes;

use super::StoreError;
use crate::domain::ids::{StreamId, Version};
use crate::future::BoxFuture;

/// A cached aggregate state.
pub enum CachedState {
    /// The state itself (a cache in this process).
    Live(Box<dyn Any + Send>),
    /// The state encoded as its snapshot is (JSON).
    Encoded(Bytes),
}

impl std::fmt::Debug for CachedState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Live(_) => f.write_str("Live(..)"),
            Self::Encoded(b) => f.debug_tuple("Encoded").field(&b.len()).finish(),
        }
    }
}

/// One cache entry.
#[derive(Debug)]
pub struct CacheEntry {
    /// The version of the last event folded into the state.
    pub version: Version,
    /// The aggregate's `STATE_VERSION` when it was cached.
    pub state_version: u32,
    /// The state.
    pub state: CachedState,
}

/// The answer to a lookup: at once (a cache in memory), or later.
pub enum CacheRead<'a> {
    /// The entry, or a miss.
    Ready(Option<CacheEntry>),
    /// A lookup under way (a cache on a server).
    Pending(BoxFuture<'a, Result<Option<CacheEntry>, StoreError>>),
}

/// A cache of aggregate states, checked out by the command that uses them
/// and put back with the committed version.
///
/// Implementations must pass the exported conformance suite
/// (`interlock::aggregate_cache_conformance!`).
pub trait AggregateCache: Send + Sync + 'static {
    /// The entry of `stream`. A cache in memory hands the state out (until
    /// it is put back, nobody else gets it); a shared cache hands a copy.
    fn take<'a>(&'a self, stream: &'a StreamId) -> CacheRead<'a>;

    /// Puts an entry back, unless a later version is cached. Does not
    /// wait: a shared cache writes in the background (a failed write is
    /// a warning; the entry is then just missing or stale).
    fn put(&self, stream: StreamId, entry: CacheEntry);

    /// Drops the entry of `stream` (its state may hold events that did
    /// not commit, or its events were rewritten).
    fn invalidate(&self, stream: &StreamId);

    /// Whether entries must be [`CachedState::Encoded`] (the cache is
    /// shared with other processes). `false` by default.
    fn encoded(&self) -> bool {
        false
    }
}

use std::collections::{HashMap, VecDeque};

use parking_lot::Mutex;

type State = Box<dyn Any + Send>;

/// The default cache: a bounded LRU of live states in process memory.
pub struct MemoryAggregateCache {
    capacity: usize,
    inner: Mutex<Lru>,
}

/// Stream ids hash with foldhash: fast, and seeded per process.
type Map<K, V> = HashMap<K, V, foldhash::fast::RandomState>;

/// Entries with the tick of their last use, and the uses in order. The
/// order queue is cleaned lazily: a use whose tick no longer matches its
/// entry (used again since, or gone) is skipped on eviction, and the queue
/// is compacted when it outgrows the entries. A checked-out entry stays in
/// the map without its state, so putting it back is an update in place,
/// not a removal and an insertion (measured in W1 with callgrind). The
/// `lru` crate's `LruCache` (entries linked in order of use) measured
/// slower here: 5 096 instructions a W1 command against 5 070.
#[derive(Default)]
struct Lru {
    tick: u64,
    entries: Map<StreamId, Entry>,
    order: VecDeque<(u64, StreamId)>,
}

struct Entry {
    /// `None` while a command has it checked out.
    state: Option<State>,
    version: Version,
    state_version: u32,
    tick: u64,
}

impl MemoryAggregateCache {
    /// A cache of at most `capacity` aggregates (0: caching is off).
    #[must_use]
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity,
            inner: Mutex::new(Lru::default()),
        }
    }

    /// Takes the state of `stream` out of the cache.
    fn take_state(&self, stream: &StreamId) -> Option<(State, Version, u32)> {
        if self.capacity == 0 {
            return None;
        }
        let mut lru = self.inner.lock();
        let entry = lru.entries.get_mut(stream)?;
        let state = entry.state.take()?;
        Some((state, entry.version, entry.state_version))
    }

    /// Puts a state back, unless a later version is already cached.
    fn put_state(&self, stream: StreamId, state: State, version: Version, state_version: u32) {
        if self.capacity == 0 {
            return;
        }
        let mut lru = self.inner.lock();
        let lru = &mut *lru;
        lru.tick += 1;
        let tick = lru.tick;
        if let Some(entry) = lru.entries.get_mut(&stream) {
            if entry.state.is_some() && entry.version > version {
                return;
            }
            *entry = Entry {
                state: Some(state),
                version,
                state_version,
                tick,
            };
            lru.order.push_back((tick, stream));
        } else {
            lru.order.push_back((tick, stream.clone()));
            lru.entries.insert(
                stream,
                Entry {
                    state: Some(state),
                    version,
                    state_version,
                    tick,
                },
            );
            while lru.entries.len() > self.capacity {
                let Some((tick, oldest)) = lru.order.pop_front() else {
                    break;
                };
                if lru.entries.get(&oldest).is_some_and(|e| e.tick == tick) {
                    lru.entries.remove(&oldest);
                }
            }
        }
        if lru.order.len() > 2 * self.capacity + 64 {
            let entries = &lru.entries;
            lru.order
                .retain(|(tick, key)| entries.get(key).is_some_and(|e| e.tick == *tick));
        }
    }

    /// Drops the entry of `stream`.
    fn invalidate_state(&self, stream: &StreamId) {
        self.inner.lock().entries.remove(stream);
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.inner.lock().entries.len()
    }
}

impl std::fmt::Debug for MemoryAggregateCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryAggregateCache")
            .field("capacity", &self.capacity)
            .field("entries", &self.inner.lock().entries.len())
            .finish()
    }
}

impl AggregateCache for MemoryAggregateCache {
    fn take<'a>(&'a self, stream: &'a StreamId) -> CacheRead<'a> {
        CacheRead::Ready(
            self.take_state(stream)
                .map(|(state, version, state_version)| CacheEntry {
                    version,
                    state_version,
                    state: CachedState::Live(state),
                }),
        )
    }

    fn put(&self, stream: StreamId, entry: CacheEntry) {
        match entry.state {
            CachedState::Live(state) => self.put_state(stream, state, entry.version, entry.state_version),
            // Not this cache's kind (it holds live states): nothing kept.
            CachedState::Encoded(_) => self.invalidate_state(&stream),
        }
    }

    fn invalidate(&self, stream: &StreamId) {
        self.invalidate_state(stream);
    }
}

impl<C: AggregateCache + ?Sized> AggregateCache for std::sync::Arc<C> {
    fn take<'a>(&'a self, stream: &'a StreamId) -> CacheRead<'a> {
        (**self).take(stream)
    }
    fn put(&self, stream: StreamId, entry: CacheEntry) {
        (**self).put(stream, entry);
    }
    fn invalidate(&self, stream: &StreamId) {
        (**self).invalidate(stream);
    }
    fn encoded(&self) -> bool {
        (**self).encoded()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(i: u32) -> StreamId {
        StreamId::new("t", i.to_string())
    }

    #[test]
    fn evicts_least_recently_used() {
        let cache = MemoryAggregateCache::new(2);
        cache.put_state(key(1), Box::new(1u8), Version(1), 1);
        cache.put_state(key(2), Box::new(2u8), Version(1), 1);
        // Touch 1 by checking it out and back in.
        let (s, v, _) = cache.take_state(&key(1)).expect("cached");
        cache.put_state(key(1), s, v, 1);
        cache.put_state(key(3), Box::new(3u8), Version(1), 1);
        assert_eq!(cache.len(), 2);
        assert!(cache.take_state(&key(2)).is_none());
        assert!(cache.take_state(&key(1)).is_some());
        assert!(cache.take_state(&key(3)).is_some());
    }

    #[test]
    fn keeps_the_later_version() {
        let cache = MemoryAggregateCache::new(4);
        cache.put_state(key(1), Box::new(2u8), Version(2), 1);
        cache.put_state(key(1), Box::new(1u8), Version(1), 1);
        let (s, v, _) = cache.take_state(&key(1)).expect("cached");
        assert_eq!(v, Version(2));
        assert_eq!(s.downcast_ref::<u8>(), Some(&2));
    }

    #[test]
    fn the_use_queue_stays_bounded() {
        let cache = MemoryAggregateCache::new(2);
        for round in 0..1000u64 {
            let k = key((round % 3) as u32);
            let (state, version, _) = cache.take_state(&k).unwrap_or((Box::new(0u8), Version(0), 1));
            cache.put_state(k, state, version.next(), 1);
        }
        let lru = cache.inner.lock();
        assert!(lru.entries.len() <= 2);
        assert!(lru.order.len() <= 2 * 2 + 64 + 1, "queue of {}", lru.order.len());
    }

    #[test]
    fn zero_capacity_disables() {
        let cache = MemoryAggregateCache::new(0);
        cache.put_state(key(1), Box::new(1u8), Version(1), 1);
        assert!(cache.take_state(&key(1)).is_none());
    }
}
