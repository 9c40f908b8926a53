//! The DNS cache of inbound verification: mail-auth takes caches per call
//! (`Parameters::with_txt_cache` and the like, trait `ResolverCache`);
//! this is one bounded, TTL-honouring map for each record type, shared by
//! every verification of an smtpd process, so a sender's SPF, DKIM and
//! DMARC records are looked up once per TTL.
//!
//! Owns eviction: an entry is dropped when its TTL (mail-auth's
//! `valid_until`, from the answer's TTL) has passed; a full map first drops
//! what has expired, then the least recently used entry (a scan: a few
//! thousand entries, only when full). Does not own the look-ups
//! (mail-auth, on trust::dns's resolver).
//!
//! Security: at most `capacity` entries per map, whatever the senders ask
//! for.

use std::borrow::Borrow;
use std::collections::HashMap;
use std::hash::Hash;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Instant;

use mail_auth::{RecordSet, ResolverCache, Txt, MX};

/// Entries per record type by default.
pub const CAPACITY: usize = 4096;

/// One map: key -> (value, valid until, last use).
pub struct Lru<K, V> {
    inner: Mutex<Inner<K, V>>,
    capacity: usize,
}

struct Inner<K, V> {
    map: HashMap<K, (V, Instant, u64)>,
    /// Use counter: larger is more recent.
    tick: u64,
}

impl<K: Hash + Eq, V: Clone> Lru<K, V> {
    pub fn new(capacity: usize) -> Lru<K, V> {
        Lru {
            inner: Mutex::new(Inner {
                map: HashMap::new(),
                tick: 0,
            }),
            capacity: capacity.max(1),
        }
    }

    /// Entries held (expired ones included until they are dropped).
    pub fn len(&self) -> usize {
        self.inner.lock().map(|i| i.map.len()).unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl<K: Hash + Eq + Clone, V: Clone> ResolverCache<K, V> for Lru<K, V> {
    fn get<Q>(&self, name: &Q) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let mut inner = self.inner.lock().ok()?;
        inner.tick += 1;
        let tick = inner.tick;
        let now = Instant::now();
        match inner.map.get_mut(name) {
            Some((v, until, used)) if *until > now => {
                *used = tick;
                Some(v.clone())
            }
            Some(_) => {
                inner.map.remove(name);
                None
            }
            None => None,
        }
    }

    fn remove<Q>(&self, name: &Q) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.inner.lock().ok()?.map.remove(name).map(|(v, _, _)| v)
    }

    fn insert(&self, key: K, value: V, valid_until: Instant) {
        let Ok(mut inner) = self.inner.lock() else {
            return;
        };
        let now = Instant::now();
        if valid_until <= now {
            return;
        }
        if inner.map.len() >= self.capacity && !inner.map.contains_key(&key) {
            inner.map.retain(|_, (_, until, _)| *until > now);
            if inner.map.len() >= self.capacity {
                // The least recently used entry goes.
                let oldest = inner
                    .map
                    .iter()
                    .min_by_key(|(_, (_, _, used))| *used)
                    .map(|(k, _)| k.clone());
                if let Some(k) = oldest {
                    inner.map.remove(&k);
                }
            }
        }
        inner.tick += 1;
        let tick = inner.tick;
        inner.map.insert(key, (value, valid_until, tick));
    }
}

/// A map seen through one SPF evaluation, counting its look-ups that found
/// nothing: mail-auth 0.13 does not enforce RFC 7208 4.6.4's limit of 2
/// void look-ups, so verify.rs does. mail-auth asks the map before each
/// look-up and fills it after each that found records, so a miss never
/// filled is a look-up that found nothing (NXDOMAIN or no records of the
/// type; a time-out too, which is a temperror anyway).
pub struct Counting<'a, C> {
    inner: &'a C,
    misses: AtomicUsize,
    filled: AtomicUsize,
}

impl<'a, C> Counting<'a, C> {
    pub fn new(inner: &'a C) -> Counting<'a, C> {
        Counting {
            inner,
            misses: AtomicUsize::new(0),
            filled: AtomicUsize::new(0),
        }
    }

    /// Look-ups that found nothing so far.
    pub fn voids(&self) -> usize {
        self.misses
            .load(Ordering::Relaxed)
            .saturating_sub(self.filled.load(Ordering::Relaxed))
    }
}

impl<K, V, C: ResolverCache<K, V>> ResolverCache<K, V> for Counting<'_, C> {
    fn get<Q>(&self, name: &Q) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let v = self.inner.get(name);
        if v.is_none() {
            self.misses.fetch_add(1, Ordering::Relaxed);
        }
        v
    }

    fn remove<Q>(&self, name: &Q) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.inner.remove(name)
    }

    fn insert(&self, key: K, value: V, valid_until: Instant) {
        self.filled.fetch_add(1, Ordering::Relaxed);
        self.inner.insert(key, value, valid_until);
    }
}

/// The maps mail-auth asks, one per record type.
pub struct Caches {
    pub txt: Lru<Box<str>, Txt>,
    pub mx: Lru<Box<str>, RecordSet<MX>>,
    pub ipv4: Lru<Box<str>, RecordSet<Ipv4Addr>>,
    pub ipv6: Lru<Box<str>, RecordSet<Ipv6Addr>>,
    pub ptr: Lru<IpAddr, RecordSet<Box<str>>>,
}

impl Caches {
    /// Maps of `capacity` entries each.
    pub fn new(capacity: usize) -> Caches {
        Caches {
            txt: Lru::new(capacity),
            mx: Lru::new(capacity),
            ipv4: Lru::new(capacity),
            ipv6: Lru::new(capacity),
            ptr: Lru::new(capacity),
        }
    }

    /// mail-auth's parameters `p` with these caches.
    #[allow(clippy::type_complexity)]
    pub fn parameters<P>(
        &self,
        p: P,
    ) -> mail_auth::Parameters<
        '_,
        P,
        Lru<Box<str>, Txt>,
        Lru<Box<str>, RecordSet<MX>>,
        Lru<Box<str>, RecordSet<Ipv4Addr>>,
        Lru<Box<str>, RecordSet<Ipv6Addr>>,
        Lru<IpAddr, RecordSet<Box<str>>>,
    > {
        mail_auth::Parameters::new(p)
            .with_txt_cache(&self.txt)
            .with_mx_cache(&self.mx)
            .with_ipv4_cache(&self.ipv4)
            .with_ipv6_cache(&self.ipv6)
            .with_ptr_cache(&self.ptr)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn entries_expire_and_the_least_recently_used_goes_first() {
        let c: Lru<Box<str>, u32> = Lru::new(2);
        let later = Instant::now() + Duration::from_secs(60);
        c.insert("a".into(), 1, later);
        c.insert("b".into(), 2, later);
        assert_eq!(c.get("a"), Some(1)); // a is now more recent than b
        c.insert("c".into(), 3, later);
        assert_eq!(c.get("b"), None);
        assert_eq!((c.get("a"), c.get("c")), (Some(1), Some(3)));
        assert_eq!(c.len(), 2);
        // An expired entry is not returned and makes room first.
        c.insert("d".into(), 4, Instant::now() + Duration::from_millis(1));
        std::thread::sleep(Duration::from_millis(5));
        assert_eq!(c.get("d"), None);
        c.insert("e".into(), 5, Instant::now());
        assert_eq!(c.get("e"), None, "an answer valid until now is not kept");
    }
}
