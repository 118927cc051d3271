//! In-memory token store for a single instance: the same behaviour as Redis,
//! with expiry checked on read and swept periodically.

use std::collections::{HashMap, HashSet};

use async_trait::async_trait;
use parking_lot::Mutex;
use uuid::Uuid;

use super::{
    ChallengeKey, Failures, LimitKey, OnceKey, RotateRequest, Rotation, SessionRecord, StoreResult,
    TokenStore, now_ms, now_secs,
};
use crate::auth::rotation::{Decision, Held, decide};

#[derive(Default)]
struct Inner {
    sessions: HashMap<Uuid, SessionRecord>,
    /// (sid, jti) -> expiry (unix seconds)
    revoked: HashMap<(Uuid, Uuid), i64>,
    by_user: HashMap<Uuid, HashSet<Uuid>>,
    /// Sessions revoked for reuse: sid -> (last current jti, expiry).
    reused: HashMap<Uuid, (Uuid, i64)>,
    /// Login-failure counters: key -> (count, window end in unix ms).
    failures: HashMap<LimitKey, (u64, i64)>,
    /// One-time claims: key -> expiry in unix ms.
    claims: HashMap<OnceKey, i64>,
    /// Challenges: key -> (payload, tries spent, expiry in unix ms).
    challenges: HashMap<ChallengeKey, (String, u32, i64)>,
    writes: u64,
}

impl Inner {
    fn live_session(&mut self, sid: Uuid, now: i64) -> Option<&mut SessionRecord> {
        if self.sessions.get(&sid).is_some_and(|s| s.expires_at <= now) {
            self.remove_session(sid);
        }
        self.sessions.get_mut(&sid)
    }

    fn remove_session(&mut self, sid: Uuid) -> bool {
        match self.sessions.remove(&sid) {
            Some(s) => {
                if let Some(set) = self.by_user.get_mut(&s.user_id) {
                    set.remove(&sid);
                    if set.is_empty() {
                        self.by_user.remove(&s.user_id);
                    }
                }
                true
            }
            None => false,
        }
    }

    /// Drops expired entries now and then, so memory tracks live state only.
    fn maybe_sweep(&mut self, now: i64) {
        self.writes += 1;
        if !self.writes.is_multiple_of(1024) {
            return;
        }
        self.revoked.retain(|_, exp| *exp > now);
        self.reused.retain(|_, (_, exp)| *exp > now);
        let now_ms = now * 1000;
        self.failures.retain(|_, (_, end)| *end > now_ms);
        self.claims.retain(|_, end| *end > now_ms);
        self.challenges.retain(|_, (_, _, end)| *end > now_ms);
        let expired: Vec<Uuid> = self
            .sessions
            .values()
            .filter(|s| s.expires_at <= now)
            .map(|s| s.sid)
            .collect();
        for sid in expired {
            self.remove_session(sid);
        }
    }
}

#[derive(Default)]
pub struct MemoryStore {
    inner: Mutex<Inner>,
}

impl MemoryStore {
    pub fn new() -> Self {
        Self::default()
    }
}

#[async_trait]
impl TokenStore for MemoryStore {
    async fn check(&self, sid: Uuid, jti: Uuid) -> StoreResult<bool> {
        let now = now_secs();
        let mut inner = self.inner.lock();
        if inner.live_session(sid, now).is_none() {
            return Ok(false);
        }
        Ok(inner.revoked.get(&(sid, jti)).is_none_or(|exp| *exp <= now))
    }

    async fn start_session(
        &self,
        session: &SessionRecord,
        max_sessions: usize,
    ) -> StoreResult<usize> {
        let now = now_secs();
        let mut inner = self.inner.lock();
        inner.maybe_sweep(now);
        inner
            .by_user
            .entry(session.user_id)
            .or_default()
            .insert(session.sid);
        inner.sessions.insert(session.sid, session.clone());
        if max_sessions == 0 {
            return Ok(0);
        }
        let sids: Vec<Uuid> = inner
            .by_user
            .get(&session.user_id)
            .map(|s| s.iter().copied().collect())
            .unwrap_or_default();
        // Same order as Redis: by end of session, which is creation order.
        let mut live: Vec<(i64, Uuid)> = sids
            .into_iter()
            .filter_map(|sid| inner.live_session(sid, now).map(|s| (s.expires_at, sid)))
            .collect();
        live.sort();
        let over = live.len().saturating_sub(max_sessions);
        for (_, sid) in live.into_iter().take(over) {
            inner.remove_session(sid);
        }
        Ok(over)
    }

    async fn rotate(&self, req: &RotateRequest) -> StoreResult<Rotation> {
        let now_ms = now_ms();
        let now = now_ms.div_euclid(1000);
        let mut inner = self.inner.lock();
        let held = match inner.live_session(req.sid, now) {
            Some(s) => Held::Live {
                current: s.current_jti,
                parent: s.parent_jti,
                rotated_ms: s.rotated_ms,
            },
            None => match inner.reused.get(&req.sid) {
                Some((last, exp)) if *exp > now => Held::Tombstone {
                    last_current: *last,
                },
                _ => Held::Nothing,
            },
        };
        match decide(held, req.presented, now_ms, req.grace_ms) {
            Decision::Gone => Ok(Rotation::Gone),
            Decision::AlreadyReused => Ok(Rotation::Reused),
            Decision::Rotate => {
                let Some(s) = inner.live_session(req.sid, now) else {
                    return Ok(Rotation::Gone);
                };
                s.parent_jti = Some(req.presented);
                s.rotated_ms = Some(now_ms);
                s.current_jti = req.new_jti;
                s.current_iat = req.new_iat;
                s.last_used_at = req.new_iat;
                Ok(Rotation::Rotated(s.clone()))
            }
            Decision::Grace => Ok(inner
                .live_session(req.sid, now)
                .map_or(Rotation::Gone, |s| Rotation::WithinGrace(s.clone()))),
            Decision::RevokeForReuse => {
                if let Some(s) = inner.sessions.get(&req.sid) {
                    let tombstone = (s.current_jti, s.expires_at);
                    inner.remove_session(req.sid);
                    inner.maybe_sweep(now);
                    inner.reused.insert(req.sid, tombstone);
                }
                Ok(Rotation::Reused)
            }
        }
    }

    async fn revoke_jti(&self, sid: Uuid, jti: Uuid, ttl_secs: i64) -> StoreResult<()> {
        if ttl_secs <= 0 {
            return Ok(());
        }
        let now = now_secs();
        let mut inner = self.inner.lock();
        inner.maybe_sweep(now);
        inner.revoked.insert((sid, jti), now + ttl_secs);
        Ok(())
    }

    async fn session(&self, sid: Uuid) -> StoreResult<Option<SessionRecord>> {
        Ok(self.inner.lock().live_session(sid, now_secs()).cloned())
    }

    async fn end_session(&self, user_id: Uuid, sid: Uuid) -> StoreResult<bool> {
        let now = now_secs();
        let mut inner = self.inner.lock();
        let owned = inner
            .live_session(sid, now)
            .is_some_and(|s| s.user_id == user_id);
        Ok(owned && inner.remove_session(sid))
    }

    async fn end_user_sessions(&self, user_id: Uuid) -> StoreResult<()> {
        let mut inner = self.inner.lock();
        let sids: Vec<Uuid> = inner
            .by_user
            .get(&user_id)
            .map(|s| s.iter().copied().collect())
            .unwrap_or_default();
        for sid in sids {
            inner.remove_session(sid);
        }
        Ok(())
    }

    async fn sessions(&self, user_id: Uuid) -> StoreResult<Vec<SessionRecord>> {
        let now = now_secs();
        let mut inner = self.inner.lock();
        let sids: Vec<Uuid> = inner
            .by_user
            .get(&user_id)
            .map(|s| s.iter().copied().collect())
            .unwrap_or_default();
        let mut out: Vec<SessionRecord> = sids
            .into_iter()
            .filter_map(|sid| inner.live_session(sid, now).cloned())
            .collect();
        out.sort_by_key(|s| (s.created_at, s.sid));
        Ok(out)
    }

    async fn failures(&self, keys: &[LimitKey]) -> StoreResult<Vec<Option<Failures>>> {
        let now = now_ms();
        let inner = self.inner.lock();
        Ok(keys
            .iter()
            .map(|k| {
                inner
                    .failures
                    .get(k)
                    .filter(|(_, end)| *end > now)
                    .map(|(count, end)| Failures {
                        count: *count,
                        ttl_ms: end - now,
                    })
            })
            .collect())
    }

    async fn record_failures(
        &self,
        keys: &[LimitKey],
        window_secs: u64,
    ) -> StoreResult<Vec<Failures>> {
        let now = now_ms();
        let window_ms = i64::try_from(window_secs.max(1).saturating_mul(1000)).unwrap_or(i64::MAX);
        let mut inner = self.inner.lock();
        inner.maybe_sweep(now.div_euclid(1000));
        Ok(keys
            .iter()
            .map(|k| {
                let entry = inner
                    .failures
                    .entry(k.clone())
                    .or_insert((0, now.saturating_add(window_ms)));
                if entry.1 <= now {
                    // The previous window is over: this failure opens a new one.
                    *entry = (0, now.saturating_add(window_ms));
                }
                entry.0 += 1;
                Failures {
                    count: entry.0,
                    ttl_ms: entry.1 - now,
                }
            })
            .collect())
    }

    async fn forgive_failures(&self, keys: &[LimitKey]) -> StoreResult<()> {
        let now = now_ms();
        let mut inner = self.inner.lock();
        for k in keys {
            if let Some((count, end)) = inner.failures.get_mut(k) {
                if *end > now && *count > 1 {
                    *count -= 1;
                } else {
                    inner.failures.remove(k);
                }
            }
        }
        Ok(())
    }

    async fn clear_failures(&self, keys: &[LimitKey]) -> StoreResult<()> {
        let mut inner = self.inner.lock();
        for k in keys {
            inner.failures.remove(k);
        }
        Ok(())
    }

    async fn claim_once(&self, key: &OnceKey, ttl_secs: u64) -> StoreResult<bool> {
        let now = now_ms();
        let ttl_ms = i64::try_from(ttl_secs.max(1).saturating_mul(1000)).unwrap_or(i64::MAX);
        let mut inner = self.inner.lock();
        inner.maybe_sweep(now.div_euclid(1000));
        match inner.claims.get(key) {
            Some(end) if *end > now => Ok(false),
            _ => {
                inner.claims.insert(key.clone(), now.saturating_add(ttl_ms));
                Ok(true)
            }
        }
    }

    async fn put_challenge(
        &self,
        key: &ChallengeKey,
        payload: &str,
        ttl_secs: u64,
    ) -> StoreResult<()> {
        let now = now_ms();
        let ttl_ms = i64::try_from(ttl_secs.max(1).saturating_mul(1000)).unwrap_or(i64::MAX);
        let mut inner = self.inner.lock();
        inner.maybe_sweep(now.div_euclid(1000));
        inner.challenges.insert(
            key.clone(),
            (payload.to_owned(), 0, now.saturating_add(ttl_ms)),
        );
        Ok(())
    }

    async fn try_challenge(
        &self,
        key: &ChallengeKey,
        max_tries: u32,
    ) -> StoreResult<Option<String>> {
        let now = now_ms();
        let mut inner = self.inner.lock();
        let Some((payload, tries, end)) = inner.challenges.get_mut(key) else {
            return Ok(None);
        };
        if *end <= now {
            inner.challenges.remove(key);
            return Ok(None);
        }
        if *tries >= max_tries {
            // Kept for a try within the limit to take (see the trait).
            return Ok(None);
        }
        *tries += 1;
        Ok(Some(payload.clone()))
    }

    async fn take_challenge(&self, key: &ChallengeKey) -> StoreResult<bool> {
        let now = now_ms();
        let mut inner = self.inner.lock();
        Ok(inner
            .challenges
            .remove(key)
            .is_some_and(|(_, _, end)| end > now))
    }

    async fn ping(&self) -> StoreResult<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::{sync::Arc, time::Duration};

    use uuid::Uuid;

    use super::*;

    fn step(user_id: Uuid, step: u64) -> OnceKey {
        OnceKey::TotpStep { user_id, step }
    }

    #[tokio::test]
    async fn claim_once_first_wins_until_expiry() {
        let store = MemoryStore::new();
        let user = Uuid::now_v7();
        let key = step(user, 56_666_666);
        assert!(store.claim_once(&key, 1).await.unwrap());
        assert!(!store.claim_once(&key, 1).await.unwrap());
        // A later claim does not extend the first one's expiry.
        assert!(!store.claim_once(&key, 60).await.unwrap());
        // Other steps and other users are other keys.
        assert!(store.claim_once(&step(user, 56_666_667), 1).await.unwrap());
        assert!(
            store
                .claim_once(&step(Uuid::now_v7(), 56_666_666), 1)
                .await
                .unwrap()
        );
        tokio::time::sleep(Duration::from_millis(1_100)).await;
        assert!(
            store.claim_once(&key, 1).await.unwrap(),
            "expired claim still held"
        );
        assert!(!store.claim_once(&key, 1).await.unwrap());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_claims_have_one_winner() {
        let store = Arc::new(MemoryStore::new());
        let key = step(Uuid::now_v7(), 7);
        let claims = (0..20).map(|_| {
            let (store, key) = (store.clone(), key.clone());
            tokio::spawn(async move { store.claim_once(&key, 300).await.unwrap() })
        });
        let won = futures_util::future::join_all(claims)
            .await
            .into_iter()
            .filter(|r| *r.as_ref().unwrap())
            .count();
        assert_eq!(won, 1);
    }
}
