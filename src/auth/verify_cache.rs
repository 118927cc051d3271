//! The per-replica cache of access-token checks (`TESSERA_VERIFY_CACHE=
//! tracking`): "this session is alive and this jti is not revoked", kept
//! until Redis says one of the keys behind it changed (client-side caching,
//! `store::tracking`), the replica itself revokes something of the session
//! or user, or the token's `exp`.
//!
//! Correctness rests on three rules:
//! - **Only while tracking is live.** The listener marks the cache live
//!   once Redis tracks for it, and dead (emptied) the moment its connection
//!   drops or stops answering a PING; a dead cache answers nothing.
//! - **No stale insert.** A check reads Redis, then caches the answer. An
//!   invalidation that arrives between the read and the insert must win, so
//!   every invalidation (and every flush) bumps a generation, and an answer
//!   is cached only if the generation is the one seen before the read.
//! - **Own writes first.** A revocation made by this replica forgets what it
//!   touches before it answers, so no request to the same replica after it
//!   can be answered from the cache (the push from Redis comes later).
//!
//! Bounded: at most `max_entries` tokens; beyond that, nothing new is
//! cached until expired entries are swept (a miss costs a round trip, never
//! a wrong answer). Expired entries never answer, and `sweep_expired`
//! (called by the listeners, so also on an idle replica) drops them at most
//! `SWEEP_EVERY` seconds after their `exp`.

use std::{
    collections::HashMap,
    sync::atomic::{AtomicBool, AtomicU64, Ordering},
};

use parking_lot::Mutex;
use uuid::Uuid;

/// Bytes one cached token costs, about: the jti, its `exp`, its share of
/// the session's and user's entries, and the maps' overhead.
pub const ENTRY_BYTES: usize = 96;

/// The default bound: 100k tokens, about 10 MB.
pub const DEFAULT_MAX_ENTRIES: usize = 100_000;

/// Seconds between two sweeps of expired entries, at most: a sweep walks
/// every entry under the lock, so not on every tick.
pub const SWEEP_EVERY: i64 = 1;

#[derive(Default)]
struct Session {
    user: Uuid,
    /// jti -> exp (unix seconds).
    tokens: HashMap<Uuid, i64>,
}

#[derive(Default)]
struct Inner {
    sessions: HashMap<Uuid, Session>,
    /// user -> their sessions with cached tokens (may name sessions already
    /// gone; `forget_user` tolerates that).
    users: HashMap<Uuid, Vec<Uuid>>,
    entries: usize,
    /// Bumped by every invalidation and flush (see the top).
    generation: u64,
    /// No entry ends before this (a lower bound: `i64::MAX` when empty).
    earliest_exp: i64,
    last_sweep: i64,
}

impl Inner {
    fn remove_session(&mut self, sid: Uuid) {
        let Some(s) = self.sessions.remove(&sid) else {
            return;
        };
        self.entries -= s.tokens.len();
        if let Some(list) = self.users.get_mut(&s.user) {
            list.retain(|x| *x != sid);
            if list.is_empty() {
                self.users.remove(&s.user);
            }
        }
    }

    fn sweep(&mut self, now: i64) {
        let mut emptied = Vec::new();
        let mut dropped = 0;
        let mut earliest = i64::MAX;
        for (sid, s) in &mut self.sessions {
            let before = s.tokens.len();
            s.tokens.retain(|_, exp| *exp > now);
            dropped += before - s.tokens.len();
            earliest = s.tokens.values().fold(earliest, |e, exp| e.min(*exp));
            if s.tokens.is_empty() {
                emptied.push(*sid);
            }
        }
        self.entries -= dropped;
        for sid in emptied {
            self.remove_session(sid);
        }
        self.earliest_exp = earliest;
        self.last_sweep = now;
    }
}

/// What a lookup found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lookup {
    /// Checked before and unchanged since: good.
    Hit,
    /// Ask the store; pass the ticket to `insert` with a good answer.
    Miss(Ticket),
    /// Tracking is not live: ask the store, cache nothing.
    Off,
}

/// The generation a miss saw (see the top).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ticket(u64);

/// Counters for `/metrics`.
#[derive(Debug, Default)]
pub struct CacheStats {
    pub hits: AtomicU64,
    pub misses: AtomicU64,
    pub invalidations: AtomicU64,
    pub flushes: AtomicU64,
}

pub struct VerifyCache {
    inner: Mutex<Inner>,
    live: AtomicBool,
    max_entries: usize,
    pub stats: CacheStats,
}

impl VerifyCache {
    pub fn new(max_entries: usize) -> Self {
        Self {
            inner: Mutex::new(Inner {
                earliest_exp: i64::MAX,
                ..Inner::default()
            }),
            live: AtomicBool::new(false),
            max_entries,
            stats: CacheStats::default(),
        }
    }

    pub fn is_live(&self) -> bool {
        self.live.load(Ordering::Acquire)
    }

    /// Tracking is up (`true`) or lost (`false`). Either way the cache is
    /// emptied: what was cached before tracking came up, or while it was
    /// down, may have changed unseen.
    pub fn set_live(&self, live: bool) {
        let mut inner = self.inner.lock();
        // Dead before emptied, under the lock: no insert slips in between.
        self.live.store(live, Ordering::Release);
        Self::clear(&mut inner);
        self.stats.flushes.fetch_add(1, Ordering::Relaxed);
    }

    fn clear(inner: &mut Inner) {
        inner.sessions.clear();
        inner.users.clear();
        inner.entries = 0;
        inner.earliest_exp = i64::MAX;
        inner.generation += 1;
    }

    /// Redis said "forget everything" (a flush, or an invalidation without
    /// keys).
    pub fn flush(&self) {
        let mut inner = self.inner.lock();
        Self::clear(&mut inner);
        self.stats.flushes.fetch_add(1, Ordering::Relaxed);
    }

    pub fn lookup(&self, sid: Uuid, jti: Uuid, now: i64) -> Lookup {
        if !self.is_live() {
            return Lookup::Off;
        }
        let inner = self.inner.lock();
        let hit = inner
            .sessions
            .get(&sid)
            .and_then(|s| s.tokens.get(&jti))
            .is_some_and(|exp| *exp > now);
        if hit && self.is_live() {
            self.stats.hits.fetch_add(1, Ordering::Relaxed);
            Lookup::Hit
        } else {
            self.stats.misses.fetch_add(1, Ordering::Relaxed);
            Lookup::Miss(Ticket(inner.generation))
        }
    }

    /// Caches a good answer of the store for a token of `user` that ends at
    /// `exp`, unless anything was invalidated since `ticket` was taken.
    pub fn insert(&self, ticket: Ticket, user: Uuid, sid: Uuid, jti: Uuid, exp: i64, now: i64) {
        if exp <= now {
            return;
        }
        let mut guard = self.inner.lock();
        let inner = &mut *guard;
        if inner.generation != ticket.0 || !self.is_live() {
            return;
        }
        if inner.entries >= self.max_entries {
            inner.sweep(now);
            if inner.entries >= self.max_entries {
                return;
            }
        }
        let session = inner.sessions.entry(sid).or_default();
        if session.tokens.is_empty() {
            session.user = user;
        }
        if session.tokens.insert(jti, exp).is_none() {
            inner.entries += 1;
            inner.earliest_exp = inner.earliest_exp.min(exp);
            let list = inner.users.entry(user).or_default();
            if !list.contains(&sid) {
                list.push(sid);
            }
        }
    }

    /// Forgets a session's tokens (a key of the session changed, or this
    /// replica ended or revoked something of it).
    pub fn forget_session(&self, sid: Uuid) {
        let mut inner = self.inner.lock();
        inner.generation += 1;
        inner.remove_session(sid);
        self.stats.invalidations.fetch_add(1, Ordering::Relaxed);
    }

    /// Forgets every token of the user (this replica ended their sessions).
    pub fn forget_user(&self, user: Uuid) {
        let mut inner = self.inner.lock();
        inner.generation += 1;
        if let Some(sids) = inner.users.remove(&user) {
            for sid in sids {
                inner.remove_session(sid);
            }
        }
        self.stats.invalidations.fetch_add(1, Ordering::Relaxed);
    }

    /// Drops the entries whose token has expired, if any has and the last
    /// sweep was `SWEEP_EVERY` ago (cheap otherwise: two comparisons).
    pub fn sweep_expired(&self, now: i64) {
        let mut inner = self.inner.lock();
        if inner.earliest_exp > now || now - inner.last_sweep < SWEEP_EVERY {
            return;
        }
        inner.sweep(now);
    }

    /// Cached tokens now.
    pub fn len(&self) -> usize {
        self.inner.lock().entries
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// What `/metrics` shows of it.
    pub fn figures(&self) -> crate::metrics::VerifyCacheFigures {
        let n = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let entries = self.len();
        crate::metrics::VerifyCacheFigures {
            entries: entries as u64,
            bytes: (entries * ENTRY_BYTES) as u64,
            live: self.is_live(),
            hits: n(&self.stats.hits),
            misses: n(&self.stats.misses),
            invalidations: n(&self.stats.invalidations),
            flushes: n(&self.stats.flushes),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids() -> (Uuid, Uuid, Uuid) {
        (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7())
    }

    fn cached(c: &VerifyCache, user: Uuid, sid: Uuid, jti: Uuid, exp: i64, now: i64) {
        let Lookup::Miss(t) = c.lookup(sid, jti, now) else {
            panic!("expected a miss");
        };
        c.insert(t, user, sid, jti, exp, now);
    }

    #[test]
    fn nothing_is_answered_while_tracking_is_down() {
        let c = VerifyCache::new(10);
        let (user, sid, jti) = ids();
        assert_eq!(c.lookup(sid, jti, 0), Lookup::Off);
        c.set_live(true);
        cached(&c, user, sid, jti, 100, 0);
        assert_eq!(c.lookup(sid, jti, 1), Lookup::Hit);
        c.set_live(false);
        assert_eq!(c.lookup(sid, jti, 1), Lookup::Off);
        c.set_live(true);
        assert!(matches!(c.lookup(sid, jti, 1), Lookup::Miss(_)), "emptied");
    }

    #[test]
    fn an_invalidation_during_the_read_wins() {
        let c = VerifyCache::new(10);
        c.set_live(true);
        let (user, sid, jti) = ids();
        let Lookup::Miss(t) = c.lookup(sid, jti, 0) else {
            panic!()
        };
        // The push for a logout arrives while the read is in flight.
        c.forget_session(Uuid::now_v7());
        c.insert(t, user, sid, jti, 100, 0);
        assert!(matches!(c.lookup(sid, jti, 1), Lookup::Miss(_)));
        // A flush or a drop of tracking does too.
        for kill in [VerifyCache::flush as fn(&VerifyCache), |c| c.set_live(true)] {
            let Lookup::Miss(t) = c.lookup(sid, jti, 0) else {
                panic!()
            };
            kill(&c);
            c.insert(t, user, sid, jti, 100, 0);
            assert!(matches!(c.lookup(sid, jti, 1), Lookup::Miss(_)));
        }
    }

    #[test]
    fn entries_end_at_exp_and_go_by_session_or_user() {
        let c = VerifyCache::new(10);
        c.set_live(true);
        let (user, sid, jti) = ids();
        cached(&c, user, sid, jti, 100, 0);
        assert_eq!(c.lookup(sid, jti, 99), Lookup::Hit);
        assert!(matches!(c.lookup(sid, jti, 100), Lookup::Miss(_)));
        let (sid2, jti2) = (Uuid::now_v7(), Uuid::now_v7());
        cached(&c, user, sid2, jti2, 100, 0);
        let (other, osid, ojti) = ids();
        cached(&c, other, osid, ojti, 100, 0);
        assert_eq!(c.len(), 3);
        c.forget_session(sid);
        assert!(matches!(c.lookup(sid, jti, 1), Lookup::Miss(_)));
        assert_eq!(c.lookup(sid2, jti2, 1), Lookup::Hit);
        c.forget_user(user);
        assert!(matches!(c.lookup(sid2, jti2, 1), Lookup::Miss(_)));
        assert_eq!(c.lookup(osid, ojti, 1), Lookup::Hit);
        assert_eq!(c.len(), 1);
        assert_eq!(c.figures().bytes, ENTRY_BYTES as u64);
    }

    #[test]
    fn expired_entries_are_swept() {
        let c = VerifyCache::new(10);
        c.set_live(true);
        let user = Uuid::now_v7();
        let (sid, jti) = (Uuid::now_v7(), Uuid::now_v7());
        cached(&c, user, sid, jti, 10, 0);
        cached(&c, user, Uuid::now_v7(), Uuid::now_v7(), 100, 0);
        c.sweep_expired(9);
        assert_eq!(c.len(), 2, "nothing expired yet");
        c.sweep_expired(10);
        assert_eq!(c.len(), 1, "the token ending at 10 is gone");
        assert!(matches!(c.lookup(sid, jti, 5), Lookup::Miss(_)));
        // Not twice within SWEEP_EVERY.
        cached(&c, user, Uuid::now_v7(), Uuid::now_v7(), 10, 0);
        c.sweep_expired(10 + SWEEP_EVERY - 1);
        assert_eq!(c.len(), 2);
        c.sweep_expired(10 + SWEEP_EVERY);
        assert_eq!(c.len(), 1);
        c.sweep_expired(100);
        assert!(c.is_empty());
    }

    #[test]
    fn bounded() {
        let c = VerifyCache::new(3);
        c.set_live(true);
        let user = Uuid::now_v7();
        for exp in [10, 10, 100] {
            cached(&c, user, Uuid::now_v7(), Uuid::now_v7(), exp, 0);
        }
        assert_eq!(c.len(), 3);
        // Full: expired entries are swept to make room, and only then.
        cached(&c, user, Uuid::now_v7(), Uuid::now_v7(), 100, 20);
        assert_eq!(c.len(), 2);
        cached(&c, user, Uuid::now_v7(), Uuid::now_v7(), 100, 20);
        let (sid, jti) = (Uuid::now_v7(), Uuid::now_v7());
        cached(&c, user, sid, jti, 100, 20);
        assert_eq!(c.len(), 3);
        assert!(
            matches!(c.lookup(sid, jti, 21), Lookup::Miss(_)),
            "not cached"
        );
    }
}
