//! A memo of access tokens whose signature and claims already verified.
//!
//! A gateway checks the same access token on every request of its user's
//! session, and decoding it again (base64, the JOSE header twice, the
//! claims twice with serde, the HMAC) was the largest single cost of
//! `/auth/verify` in the profiles (BENCHMARKS.md). Verification is a pure
//! function of the token's bytes, the key ring and the clock: for the same
//! bytes and the same ring only the time checks (`exp`, `nbf`) can change
//! their answer, so a hit repeats those and nothing else. Envoy's
//! `jwt_authn` keeps the same kind of cache (`jwt_cache_config`).
//!
//! Only tokens that passed every check are kept, keyed by their exact text,
//! so a token that differs in any byte is verified in full. The memo says
//! nothing about revocation: the store (or the verify cache) is asked after
//! it, as before.

use std::collections::HashMap;

use parking_lot::Mutex;

use super::{claims::Claims, store::now_secs};
use crate::error::ApiError;

/// Tokens kept at most (each about 0.5 KB: its text and its claims).
pub const CAPACITY: usize = 10_000;

pub struct VerifiedTokens {
    map: Mutex<HashMap<Box<str>, Claims>>,
    capacity: usize,
    /// The key ring's leeway, applied exactly as jsonwebtoken applies it.
    leeway: i64,
}

impl VerifiedTokens {
    pub fn new(capacity: usize, leeway_secs: u64) -> Self {
        Self {
            map: Mutex::new(HashMap::new()),
            capacity,
            leeway: i64::try_from(leeway_secs).unwrap_or(i64::MAX),
        }
    }

    /// The claims of `token` if it verified before: `None` when it did not
    /// (verify it in full); `Some(Err)` when its time is up since.
    pub fn get(&self, token: &str) -> Option<Result<Claims, ApiError>> {
        self.get_at(token, now_secs())
    }

    fn get_at(&self, token: &str, now: i64) -> Option<Result<Claims, ApiError>> {
        let mut map = self.map.lock();
        let claims = map.get(token)?;
        // jsonwebtoken's rules: expired when `exp < now - leeway`, not yet
        // valid when `nbf > now + leeway` (only a clock set back can make a
        // kept token so).
        if claims.exp < now.saturating_sub(self.leeway) {
            map.remove(token);
            return Some(Err(ApiError::TokenExpired));
        }
        if claims.nbf > now.saturating_add(self.leeway) {
            return Some(Err(ApiError::TokenInvalid));
        }
        Some(Ok(claims.clone()))
    }

    /// Keeps `claims` of `token`, which just passed every check. At the
    /// bound the expired entries go first, then (still full) all of them:
    /// the memo is a shortcut, and an empty one only costs full checks.
    pub fn insert(&self, token: &str, claims: &Claims) {
        self.insert_at(token, claims, now_secs());
    }

    fn insert_at(&self, token: &str, claims: &Claims, now: i64) {
        let mut map = self.map.lock();
        if map.len() >= self.capacity && !map.contains_key(token) {
            let horizon = now.saturating_sub(self.leeway);
            map.retain(|_, c| c.exp >= horizon);
            if map.len() >= self.capacity {
                map.clear();
            }
        }
        map.insert(token.into(), claims.clone());
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.map.lock().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::claims::{TokenType, test_claims};

    #[test]
    fn a_kept_token_answers_its_claims_until_its_time_is_up() {
        let memo = VerifiedTokens::new(10, 5);
        let c = test_claims(TokenType::Access);
        assert!(memo.get_at("a.b.c", c.iat).is_none());
        memo.insert_at("a.b.c", &c, c.iat);
        assert_eq!(memo.get_at("a.b.c", c.iat).unwrap().unwrap(), c);
        // Another text is another token, however close.
        assert!(memo.get_at("a.b.d", c.iat).is_none());
        // Within the leeway after exp it still passes, as in jsonwebtoken.
        assert!(memo.get_at("a.b.c", c.exp + 5).unwrap().is_ok());
        assert!(matches!(
            memo.get_at("a.b.c", c.exp + 6),
            Some(Err(ApiError::TokenExpired))
        ));
        // An expired token is forgotten: the next check is a full one.
        assert!(memo.get_at("a.b.c", c.exp + 6).is_none());
    }

    #[test]
    fn a_clock_set_back_before_nbf_refuses() {
        let memo = VerifiedTokens::new(10, 0);
        let c = test_claims(TokenType::Access);
        memo.insert_at("t", &c, c.iat);
        assert!(matches!(
            memo.get_at("t", c.nbf - 1),
            Some(Err(ApiError::TokenInvalid))
        ));
    }

    #[test]
    fn the_memo_is_bounded() {
        let memo = VerifiedTokens::new(3, 0);
        let live = test_claims(TokenType::Access);
        let mut dead = live.clone();
        dead.exp = live.iat - 10;
        memo.insert_at("dead", &dead, live.iat);
        memo.insert_at("a", &live, live.iat);
        memo.insert_at("b", &live, live.iat);
        // Full: the expired entry makes room.
        memo.insert_at("c", &live, live.iat);
        assert_eq!(memo.len(), 3);
        assert!(memo.get_at("dead", live.iat).is_none());
        // Full of live entries: all go, the new one stays.
        memo.insert_at("d", &live, live.iat);
        assert_eq!(memo.len(), 1);
        assert!(memo.get_at("d", live.iat).is_some());
        assert!(memo.get_at("a", live.iat).is_none());
    }
}
