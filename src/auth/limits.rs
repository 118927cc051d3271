//! Login brute-force limits (API.md, "Precise rules"): failed logins are
//! counted per account and per client IP in fixed windows, in the token store
//! so that every replica sees the same counters. No HTTP in here.
//!
//! An attempt is counted as a failure *before* the password is checked and
//! taken back when it turns out not to be one. Counting afterwards would let
//! N concurrent guesses all pass a "fewer than max failures?" check before
//! any of them is recorded; counting first bounds the guesses per window to
//! the limit however many requests are in flight.
//!
//! - Attempt over the limit (the counter after this attempt exceeds the
//!   maximum): 429 with the seconds left in the window; the password is not
//!   checked and the attempt is taken back (it is not a failure).
//! - Wrong password or unknown account: stays counted.
//! - Success: clears the account's counter, takes the attempt back from the
//!   IP's counter (the IP's earlier failures stay).
//! - Right password of a blocked account (403): taken back from both. The
//!   password was right, so it is no guess to limit; and the counter is not
//!   cleared either, because nobody logged in.

use std::net::{IpAddr, Ipv6Addr};

use sha2::{Digest, Sha256};
use uuid::Uuid;

use super::store::{Failures, LimitKey, TokenStore};
use crate::error::ApiError;

/// The limits, from `TESSERA_LOGIN_MAX_FAILURES`, `_PER_IP` and `_WINDOW`.
/// A maximum of 0 turns that limit off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoginLimits {
    pub max_failures: u32,
    pub max_failures_per_ip: u32,
    /// Length of a fixed window, whole seconds (at least 1).
    pub window_secs: u64,
}

/// The account counter for a login identifier: the account's id when it
/// exists (so its email and username share one counter), otherwise a hash of
/// the kind (`email`/`username`) and the lowercased identifier: its own
/// counter per kind, so `{"email": X}` and `{"username": X}` share one only
/// when X names an account, and the limit behaves the same whether or not the
/// account exists. The raw value is never stored.
pub fn account_key(user_id: Option<Uuid>, kind: &str, identifier: &str) -> LimitKey {
    match user_id {
        Some(id) => LimitKey::Account(id),
        None => {
            let mut h = Sha256::new();
            h.update(kind.as_bytes());
            h.update(b":");
            h.update(identifier.to_lowercase().as_bytes());
            LimitKey::Unknown(h.finalize().into())
        }
    }
}

/// The IP counter for a client address (as `http::client_ip` gives it).
/// IPv4-mapped IPv6 counts as IPv4; other IPv6 addresses count per /64, the
/// smallest network normally given to one subscriber, so an attacker cannot
/// get a fresh counter by rotating through their own /64.
pub fn ip_key(client_ip: &str) -> Option<LimitKey> {
    let ip: IpAddr = client_ip.trim().parse().ok()?;
    Some(LimitKey::Ip(match ip.to_canonical() {
        IpAddr::V6(v6) => IpAddr::V6(Ipv6Addr::from(u128::from(v6) & !((1u128 << 64) - 1))),
        v4 => v4,
    }))
}

/// The store and the limits: what `begin` needs.
#[derive(Clone, Copy)]
pub struct Limiter<'a> {
    pub store: &'a dyn TokenStore,
    pub limits: LoginLimits,
}

/// A login attempt already counted as a failure. Settle it with one of its
/// methods; dropped unsettled, it stays counted as a failure.
#[must_use = "settle the attempt: failed, succeeded or not_counted"]
pub struct Attempt<'a> {
    store: &'a dyn TokenStore,
    account: Option<LimitKey>,
    ip: Option<LimitKey>,
}

impl<'a> Limiter<'a> {
    pub fn new(store: &'a dyn TokenStore, limits: LoginLimits) -> Self {
        Self { store, limits }
    }

    /// Counts an attempt on `account` from `client_ip` (one store round
    /// trip). Over either limit: `TooManyRequests` with the seconds until the
    /// (later) blocking window ends, and nothing stays counted.
    pub async fn begin(
        &self,
        account: LimitKey,
        client_ip: Option<&str>,
    ) -> Result<Attempt<'a>, ApiError> {
        let limits = self.limits;
        let account = (limits.max_failures > 0).then_some(account);
        let ip = client_ip
            .filter(|_| limits.max_failures_per_ip > 0)
            .and_then(ip_key);
        let attempt = Attempt {
            store: self.store,
            account,
            ip,
        };
        let counted: Vec<(LimitKey, u32)> = [
            (attempt.account.clone(), limits.max_failures),
            (attempt.ip.clone(), limits.max_failures_per_ip),
        ]
        .into_iter()
        .filter_map(|(key, max)| key.map(|k| (k, max)))
        .collect();
        if counted.is_empty() {
            return Ok(attempt);
        }
        let keys: Vec<LimitKey> = counted.iter().map(|(k, _)| k.clone()).collect();
        let now = self
            .store
            .record_failures(&keys, limits.window_secs)
            .await?;
        if let Some(retry_after) = retry_after(&counted, &now) {
            // A refused attempt checked no password: it is not a failure.
            self.store.forgive_failures(&keys).await?;
            crate::metrics::event(crate::metrics::Event::LoginRateLimited);
            return Err(ApiError::TooManyRequests { retry_after });
        }
        Ok(attempt)
    }
}

/// Seconds until every exceeded counter's window has ended, if any is.
fn retry_after(counted: &[(LimitKey, u32)], now: &[Failures]) -> Option<u64> {
    counted
        .iter()
        .zip(now)
        .filter(|((_, max), f)| f.count > u64::from(*max))
        .map(|(_, f)| f.retry_after_secs())
        .max()
}

impl Attempt<'_> {
    fn keys(&self) -> Vec<LimitKey> {
        self.account.iter().chain(&self.ip).cloned().collect()
    }

    /// Wrong password or unknown account: the attempt stays counted.
    pub fn failed(self) {}

    /// The right password: the account's counter is cleared and the attempt
    /// is taken back from the IP's counter.
    pub async fn succeeded(self) -> Result<(), ApiError> {
        let (clear, forgive) = (self.account.as_slice(), self.ip.as_slice());
        tokio::try_join!(
            async {
                if clear.is_empty() {
                    Ok(())
                } else {
                    self.store.clear_failures(clear).await
                }
            },
            async {
                if forgive.is_empty() {
                    Ok(())
                } else {
                    self.store.forgive_failures(forgive).await
                }
            },
        )?;
        Ok(())
    }

    /// Not a guess of the password (e.g. the right password of a blocked
    /// account, or a failure of the server): taken back from both counters.
    /// Best effort: a store error leaves the attempt counted and is logged.
    pub async fn not_counted(self) {
        let keys = self.keys();
        if keys.is_empty() {
            return;
        }
        if let Err(e) = self.store.forgive_failures(&keys).await {
            tracing::warn!(error = %e, "could not take back a login attempt");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::store::MemoryStore;

    #[test]
    fn unknown_identifiers_are_hashed_case_insensitively() {
        let a = account_key(None, "email", "Ann@Example.com");
        assert_eq!(a, account_key(None, "email", "ann@example.com"));
        assert_ne!(a, account_key(None, "email", "bob@example.com"));
        // Another kind of identifier with the same text: another counter.
        assert_ne!(a, account_key(None, "username", "ann@example.com"));
        let shown = a.to_string();
        assert!(shown.starts_with("login:unknown:"), "{shown}");
        assert!(
            !shown.to_lowercase().contains("ann"),
            "raw value in {shown}"
        );
        assert_eq!(shown.len(), "login:unknown:".len() + 64);
        let id = Uuid::now_v7();
        assert_eq!(
            account_key(Some(id), "username", "whatever").to_string(),
            format!("login:acct:{id}")
        );
    }

    #[test]
    fn ip_keys() {
        assert_eq!(
            ip_key("203.0.113.9").map(|k| k.to_string()).as_deref(),
            Some("login:ip:203.0.113.9")
        );
        assert_eq!(ip_key("::ffff:203.0.113.9"), ip_key("203.0.113.9"));
        assert_eq!(
            ip_key("2001:db8:1:2:aaaa::1"),
            ip_key("2001:db8:1:2:bbbb::2")
        );
        assert_ne!(ip_key("2001:db8:1:2::1"), ip_key("2001:db8:1:3::1"));
        assert_eq!(
            ip_key("2001:db8:1:2:aaaa::1")
                .map(|k| k.to_string())
                .as_deref(),
            Some("login:ip:2001:db8:1:2::")
        );
        assert_eq!(ip_key("not an ip"), None);
    }

    fn limiter(store: &MemoryStore, acct: u32, ip: u32) -> Limiter<'_> {
        Limiter::new(
            store,
            LoginLimits {
                max_failures: acct,
                max_failures_per_ip: ip,
                window_secs: 60,
            },
        )
    }

    async fn count(store: &MemoryStore, key: &LimitKey) -> u64 {
        store.failures(std::slice::from_ref(key)).await.unwrap()[0].map_or(0, |f| f.count)
    }

    #[tokio::test]
    async fn account_limit_and_reset() {
        let store = MemoryStore::new();
        let l = limiter(&store, 2, 100);
        let acct = LimitKey::Account(Uuid::now_v7());
        let ip = ip_key("198.51.100.1").unwrap();
        for _ in 0..2 {
            l.begin(acct.clone(), Some("198.51.100.1"))
                .await
                .unwrap()
                .failed();
        }
        match l.begin(acct.clone(), Some("198.51.100.1")).await {
            Err(ApiError::TooManyRequests { retry_after }) => {
                assert!((1..=60).contains(&retry_after), "{retry_after}")
            }
            other => panic!("expected 429, got {:?}", other.err()),
        }
        // The refused attempt was not counted anywhere.
        assert_eq!(count(&store, &acct).await, 2);
        assert_eq!(count(&store, &ip).await, 2);

        // Another account is unaffected; its success clears only its own
        // counter and leaves the IP's earlier failures.
        let other = LimitKey::Account(Uuid::now_v7());
        l.begin(other.clone(), Some("198.51.100.1"))
            .await
            .unwrap()
            .failed();
        let a = l.begin(other.clone(), Some("198.51.100.1")).await.unwrap();
        a.succeeded().await.unwrap();
        assert_eq!(count(&store, &other).await, 0);
        assert_eq!(count(&store, &ip).await, 3);
        assert_eq!(count(&store, &acct).await, 2);

        // Not counted: taken back from both.
        let a = l.begin(other.clone(), Some("198.51.100.1")).await.unwrap();
        a.not_counted().await;
        assert_eq!(count(&store, &other).await, 0);
        assert_eq!(count(&store, &ip).await, 3);
    }

    #[tokio::test]
    async fn ip_limit_spans_accounts_and_zero_disables() {
        let store = MemoryStore::new();
        let l = limiter(&store, 100, 2);
        for _ in 0..2 {
            l.begin(LimitKey::Account(Uuid::now_v7()), Some("198.51.100.2"))
                .await
                .unwrap()
                .failed();
        }
        assert!(matches!(
            l.begin(LimitKey::Account(Uuid::now_v7()), Some("198.51.100.2"))
                .await,
            Err(ApiError::TooManyRequests { .. })
        ));
        // Another address, or none known, is not limited by it.
        l.begin(LimitKey::Account(Uuid::now_v7()), Some("198.51.100.3"))
            .await
            .unwrap()
            .failed();
        l.begin(LimitKey::Account(Uuid::now_v7()), None)
            .await
            .unwrap()
            .failed();

        let off = limiter(&store, 0, 0);
        let acct = LimitKey::Account(Uuid::now_v7());
        for _ in 0..10 {
            off.begin(acct.clone(), Some("198.51.100.2"))
                .await
                .unwrap()
                .failed();
        }
        assert_eq!(count(&store, &acct).await, 0);
    }
}
