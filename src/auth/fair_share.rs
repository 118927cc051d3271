//! Fair shares of password hashing (API.md, "Precise rules"): one client IP,
//! and one account, holds at most a quarter of the hashing slots and of the
//! queue at a time (at least one of each). Beyond its queue share a caller
//! is refused at once (429); within it, a caller's hashes beyond its slot
//! share wait for one of its own slots, not in front of everyone else's. So
//! a flood from one address, or from three, cannot fill the queue or the
//! hashing threads, and another address's hash waits for at most one hash
//! per busy caller. No HTTP, no argon2 in here.

use std::{collections::HashMap, hash::Hash, sync::Arc};

use parking_lot::Mutex;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// The share of `total` one caller may hold: a quarter, at least one.
pub fn quarter(total: usize) -> usize {
    (total / 4).max(1)
}

/// What one caller (one key) holds now.
struct Holding {
    /// Hashes of this key queued or running.
    in_flight: usize,
    /// This key's hashing slots.
    slots: Arc<Semaphore>,
}

type Table<K> = Arc<Mutex<HashMap<K, Holding>>>;

/// Per-key accounting of the hashes in flight. Keys with nothing in flight
/// are removed, so the table is as large as the callers being served.
pub struct FairShare<K: Eq + Hash + Clone> {
    table: Table<K>,
    max_in_flight: usize,
    max_running: usize,
}

impl<K: Eq + Hash + Clone> Clone for FairShare<K> {
    fn clone(&self) -> Self {
        Self {
            table: Arc::clone(&self.table),
            max_in_flight: self.max_in_flight,
            max_running: self.max_running,
        }
    }
}

/// One hash's place in its callers' shares; dropping it (when the hash ends,
/// or when a request that never got to hash is cancelled) gives it back.
#[must_use]
pub struct Share<K: Eq + Hash + Clone> {
    table: Table<K>,
    keys: Vec<(K, Arc<Semaphore>)>,
}

impl<K: Eq + Hash + Clone> FairShare<K> {
    /// Shares of a service with `slots` hashing threads and room for `queue`
    /// hashes running or waiting.
    pub fn new(slots: usize, queue: usize) -> Self {
        Self {
            table: Arc::default(),
            max_in_flight: quarter(queue),
            max_running: quarter(slots),
        }
    }

    /// Takes a place for one hash in every key's share, or none when any of
    /// them is full: `Err` names the first full key.
    pub fn admit(&self, keys: &[K]) -> Result<Share<K>, K> {
        let mut table = self.table.lock();
        if let Some(full) = keys.iter().find(|k| {
            table
                .get(*k)
                .is_some_and(|h| h.in_flight >= self.max_in_flight)
        }) {
            return Err(full.clone());
        }
        let mut held = Vec::with_capacity(keys.len());
        for key in keys {
            let h = table.entry(key.clone()).or_insert_with(|| Holding {
                in_flight: 0,
                slots: Arc::new(Semaphore::new(self.max_running)),
            });
            h.in_flight += 1;
            held.push((key.clone(), Arc::clone(&h.slots)));
        }
        Ok(Share {
            table: Arc::clone(&self.table),
            keys: held,
        })
    }

    /// Hashes of `key` queued or running now.
    pub fn in_flight(&self, key: &K) -> usize {
        self.table.lock().get(key).map_or(0, |h| h.in_flight)
    }
}

impl<K: Eq + Hash + Clone> Share<K> {
    /// Waits for one slot of each key's share, in the order the keys were
    /// given (every caller gives them in the same order: no deadlock). The
    /// permits go with the hash and free the slots when it ends.
    pub async fn slots(&self) -> Vec<OwnedSemaphorePermit> {
        let mut permits = Vec::with_capacity(self.keys.len());
        for (_, slots) in &self.keys {
            // Never closed: the semaphores live as long as a share holds them.
            if let Ok(p) = Arc::clone(slots).acquire_owned().await {
                permits.push(p);
            }
        }
        permits
    }
}

impl<K: Eq + Hash + Clone> Drop for Share<K> {
    fn drop(&mut self) {
        let mut table = self.table.lock();
        for (key, _) in &self.keys {
            if let Some(h) = table.get_mut(key) {
                h.in_flight = h.in_flight.saturating_sub(1);
                if h.in_flight == 0 {
                    table.remove(key);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn a_quarter_and_at_least_one() {
        assert_eq!(quarter(0), 1);
        assert_eq!(quarter(2), 1);
        assert_eq!(quarter(8), 2);
        assert_eq!(quarter(66), 16);
    }

    #[test]
    fn a_key_gets_a_quarter_of_the_queue_and_gives_it_back() {
        let fair = FairShare::new(4, 16);
        let held: Vec<_> = (0..4).map(|_| fair.admit(&["ip-a"]).unwrap()).collect();
        assert_eq!(fair.admit(&["ip-a"]).err(), Some("ip-a"));
        // Other keys are not affected.
        let b = fair.admit(&["ip-b", "acct-1"]).unwrap();
        assert_eq!(fair.in_flight(&"ip-b"), 1);
        drop(held);
        assert_eq!(fair.in_flight(&"ip-a"), 0);
        assert!(fair.table.lock().get("ip-a").is_none(), "entry not removed");
        let _a = fair.admit(&["ip-a"]).unwrap();
        drop(b);
        assert!(fair.table.lock().len() == 1);
    }

    /// A full account refuses a caller from a fresh address, and nothing of
    /// the refused admission stays counted.
    #[test]
    fn every_key_must_have_room() {
        let fair = FairShare::new(1, 4);
        let _first = fair.admit(&["ip-a", "acct-1"]).unwrap();
        assert_eq!(fair.admit(&["ip-b", "acct-1"]).err(), Some("acct-1"));
        assert_eq!(fair.in_flight(&"ip-b"), 0);
        assert_eq!(fair.in_flight(&"acct-1"), 1);
        let _other = fair.admit(&["ip-b", "acct-2"]).unwrap();
    }

    /// A key runs at most its slot share at once; the others wait for its
    /// own slots.
    #[tokio::test]
    async fn a_key_runs_at_most_its_slot_share() {
        let fair = FairShare::new(8, 64);
        let a1 = fair.admit(&["ip-a"]).unwrap();
        let a2 = fair.admit(&["ip-a"]).unwrap();
        let a3 = fair.admit(&["ip-a"]).unwrap();
        let s1 = a1.slots().await;
        let _s2 = a2.slots().await;
        let waiting = tokio::time::timeout(Duration::from_millis(50), a3.slots()).await;
        assert!(waiting.is_err(), "a third slot of two");
        let b = fair.admit(&["ip-b"]).unwrap();
        let _ = tokio::time::timeout(Duration::from_millis(50), b.slots())
            .await
            .expect("another key has its own slots");
        drop(s1);
        let _ = tokio::time::timeout(Duration::from_millis(50), a3.slots())
            .await
            .expect("a freed slot is reused");
    }
}
