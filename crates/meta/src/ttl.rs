//! A small map whose entries expire: the "seen recently" sets and short-lived lookups of
//! the serving path (host → site, freshness marks, backfills in flight, lockout counters).
//!
//! A general cache (moka) is kept for what needs eviction by size; these maps hold small
//! values, are read on every request and are built at every cold start, where a `HashMap`
//! behind a read-write lock is cheaper on both counts than a concurrent cache's logs and
//! sketches. Reads share the lock, so request threads never wait on one another.

use std::borrow::Borrow;
use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::{Duration, Instant};

/// Entries that expire a set time after they were inserted; at most `capacity` of them.
pub struct TtlMap<K, V> {
    entries: RwLock<HashMap<K, (V, Instant)>>,
    capacity: usize,
}

impl<K: Hash + Eq, V: Clone> TtlMap<K, V> {
    /// An empty map holding at most `capacity` entries (at least one).
    pub fn new(capacity: usize) -> Self {
        TtlMap {
            entries: RwLock::new(HashMap::new()),
            capacity: capacity.max(1),
        }
    }

    // A panic elsewhere cannot leave the map inconsistent: every change is one call.
    fn read(&self) -> RwLockReadGuard<'_, HashMap<K, (V, Instant)>> {
        self.entries.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> RwLockWriteGuard<'_, HashMap<K, (V, Instant)>> {
        self.entries.write().unwrap_or_else(PoisonError::into_inner)
    }

    /// The value of `key` unless it has expired.
    pub fn get<Q>(&self, key: &Q) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let now = Instant::now();
        match self.read().get(key) {
            Some((v, expires)) if *expires > now => return Some(v.clone()),
            Some(_) => {}
            None => return None,
        }
        // Expired: drop it, unless it was renewed in between.
        let mut map = self.write();
        if map.get(key).is_some_and(|(_, expires)| *expires <= now) {
            map.remove(key);
        }
        None
    }

    /// Whether `key` is present and unexpired.
    pub fn contains<Q>(&self, key: &Q) -> bool
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.get(key).is_some()
    }

    /// Sets `key` to `value` for `ttl`.
    pub fn insert(&self, key: K, value: V, ttl: Duration) {
        let now = Instant::now();
        let mut map = self.write();
        if !map.contains_key(&key) {
            Self::make_room(&mut map, self.capacity, now);
        }
        map.insert(key, (value, now + ttl));
    }

    /// The unexpired value of `key`, or `make()`'s, inserted for `ttl`.
    pub fn get_or_insert_with(&self, key: K, ttl: Duration, make: impl FnOnce() -> V) -> V {
        let now = Instant::now();
        let mut map = self.write();
        if let Some((v, expires)) = map.get(&key) {
            if *expires > now {
                return v.clone();
            }
        } else {
            Self::make_room(&mut map, self.capacity, now);
        }
        let v = make();
        map.insert(key, (v.clone(), now + ttl));
        v
    }

    /// Forgets `key`.
    pub fn remove<Q>(&self, key: &Q)
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.write().remove(key);
    }

    /// Entries held, expired ones included until they are next touched.
    pub fn len(&self) -> usize {
        self.read().len()
    }

    /// Whether nothing is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Frees room for one entry when full: drops the expired entries, and everything if
    /// that frees less than a quarter, so each full sweep pays for many inserts (these
    /// are caches: whatever is dropped is looked up again).
    fn make_room(map: &mut HashMap<K, (V, Instant)>, capacity: usize, now: Instant) {
        if map.len() < capacity {
            return;
        }
        map.retain(|_, (_, expires)| *expires > now);
        if map.len() > capacity - capacity / 4 {
            map.clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_expire_after_their_ttl() {
        let m = TtlMap::new(10);
        m.insert("a", 1, Duration::from_millis(30));
        m.insert("b", 2, Duration::from_secs(60));
        assert_eq!(m.get("a"), Some(1));
        assert!(m.contains("b"));
        std::thread::sleep(Duration::from_millis(40));
        assert_eq!(m.get("a"), None);
        assert_eq!(m.get("b"), Some(2));
        assert_eq!(m.len(), 1, "an expired entry is dropped when read");
    }

    #[test]
    fn get_or_insert_keeps_the_first_value_until_it_expires() {
        let m = TtlMap::new(10);
        let ttl = Duration::from_millis(30);
        assert_eq!(m.get_or_insert_with("k", ttl, || 1), 1);
        assert_eq!(m.get_or_insert_with("k", ttl, || 2), 1);
        std::thread::sleep(Duration::from_millis(40));
        assert_eq!(m.get_or_insert_with("k", ttl, || 3), 3);
        m.remove("k");
        assert!(m.is_empty());
    }

    #[test]
    fn capacity_is_never_exceeded() {
        let m = TtlMap::new(100);
        for i in 0..1_000 {
            m.insert(i, i, Duration::from_secs(60));
            assert!(m.len() <= 100, "{} entries after {i}", m.len());
        }
        // The newest entry always survives the sweep its insert caused.
        assert_eq!(m.get(&999), Some(999));
    }

    #[test]
    fn a_full_map_first_drops_what_expired() {
        let m = TtlMap::new(4);
        m.insert(1, (), Duration::from_millis(10));
        m.insert(2, (), Duration::from_millis(10));
        m.insert(3, (), Duration::from_secs(60));
        m.insert(4, (), Duration::from_secs(60));
        std::thread::sleep(Duration::from_millis(20));
        m.insert(5, (), Duration::from_secs(60));
        assert!(m.contains(&3) && m.contains(&4) && m.contains(&5));
        assert_eq!(m.len(), 3);
    }

    #[test]
    fn updating_a_key_in_a_full_map_keeps_the_others() {
        let m = TtlMap::new(2);
        m.insert(1, 'a', Duration::from_secs(60));
        m.insert(2, 'b', Duration::from_secs(60));
        m.insert(2, 'c', Duration::from_secs(60));
        assert_eq!((m.get(&1), m.get(&2)), (Some('a'), Some('c')));
    }
}
