//! The in-process aggregate cache: a bounded LRU of hot aggregate states.
//!
//! Entries are *checked out* by the command that uses them and put back with
//! the committed version, so two commands never share one state value, and
//! a stale entry can only cost a conflict and a reload, never an update.

use std::any::Any;
use std::collections::{BTreeMap, HashMap};

use parking_lot::Mutex;

use crate::ids::{StreamId, Version};

type State = Box<dyn Any + Send>;

pub(crate) struct AggregateCache {
    capacity: usize,
    inner: Mutex<Lru>,
}

/// Stream ids hash with foldhash: fast, and seeded per process.
type Map<K, V> = HashMap<K, V, foldhash::fast::RandomState>;

#[derive(Default)]
struct Lru {
    tick: u64,
    entries: Map<StreamId, (State, Version, u64)>,
    order: BTreeMap<u64, StreamId>,
}

impl AggregateCache {
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            capacity,
            inner: Mutex::new(Lru::default()),
        }
    }

    /// Takes the entry of `stream` out of the cache.
    pub(crate) fn take(&self, stream: &StreamId) -> Option<(State, Version)> {
        if self.capacity == 0 {
            return None;
        }
        let mut lru = self.inner.lock();
        let (state, version, tick) = lru.entries.remove(stream)?;
        lru.order.remove(&tick);
        Some((state, version))
    }

    /// Puts a state back, unless a later version is already cached.
    pub(crate) fn put(&self, stream: StreamId, state: State, version: Version) {
        if self.capacity == 0 {
            return;
        }
        let mut lru = self.inner.lock();
        let lru = &mut *lru;
        if let Some((_, cached, tick)) = lru.entries.get(&stream) {
            if *cached > version {
                return;
            }
            let tick = *tick;
            lru.order.remove(&tick);
        }
        lru.tick += 1;
        let tick = lru.tick;
        lru.order.insert(tick, stream.clone());
        lru.entries.insert(stream, (state, version, tick));
        while lru.entries.len() > self.capacity {
            let Some((_, oldest)) = lru.order.pop_first() else {
                break;
            };
            lru.entries.remove(&oldest);
        }
    }

    /// Drops the entry of `stream`.
    pub(crate) fn invalidate(&self, stream: &StreamId) {
        let mut lru = self.inner.lock();
        if let Some((_, _, tick)) = lru.entries.remove(stream) {
            lru.order.remove(&tick);
        }
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.inner.lock().entries.len()
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
        let cache = AggregateCache::new(2);
        cache.put(key(1), Box::new(1u8), Version(1));
        cache.put(key(2), Box::new(2u8), Version(1));
        // Touch 1 by checking it out and back in.
        let (s, v) = cache.take(&key(1)).expect("cached");
        cache.put(key(1), s, v);
        cache.put(key(3), Box::new(3u8), Version(1));
        assert_eq!(cache.len(), 2);
        assert!(cache.take(&key(2)).is_none());
        assert!(cache.take(&key(1)).is_some());
        assert!(cache.take(&key(3)).is_some());
    }

    #[test]
    fn keeps_the_later_version() {
        let cache = AggregateCache::new(4);
        cache.put(key(1), Box::new(2u8), Version(2));
        cache.put(key(1), Box::new(1u8), Version(1));
        let (s, v) = cache.take(&key(1)).expect("cached");
        assert_eq!(v, Version(2));
        assert_eq!(s.downcast_ref::<u8>(), Some(&2));
    }

    #[test]
    fn zero_capacity_disables() {
        let cache = AggregateCache::new(0);
        cache.put(key(1), Box::new(1u8), Version(1));
        assert!(cache.take(&key(1)).is_none());
    }
}
