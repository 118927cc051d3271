//! Login brute-force limits and the registration limit (API.md, "Precise
//! rules" and "Email"): fixed-window counters in the token store, so that
//! every replica sees the same counts. No HTTP in here.
//!
//! A failed login counts against three counters: the account from this
//! client IP (`TESSERA_LOGIN_MAX_FAILURES`), the account from every address
//! (`_PER_ACCOUNT`, a higher ceiling) and the client IP (`_PER_IP`). Someone
//! who knows a username can lock its owner out only at their own address,
//! until the per-account ceiling; the owner elsewhere keeps logging in.
//!
//! An attempt is counted as a failure *before* the password is checked and
//! taken back when it turns out not to be one. Counting afterwards would let
//! N concurrent guesses all pass a "fewer than max failures?" check before
//! any of them is recorded; counting first bounds the guesses per window to
//! the limit however many requests are in flight.
//!
//! - Attempt over a limit (a counter after this attempt exceeds its
//!   maximum): 429 with the seconds left in the window; the password is not
//!   checked and the attempt is taken back (it is not a failure).
//! - Wrong password or unknown account: stays counted.
//! - Success: clears the account's counter for this address, takes the
//!   attempt back from the account's and the IP's counters (their earlier
//!   failures stay: another address's guesses are not forgiven by the
//!   owner's login).
//! - Right password of a blocked account (403): taken back from all. The
//!   password was right, so it is no guess to limit; and the counter is not
//!   cleared either, because nobody logged in.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use sha2::{Digest, Sha256};
use uuid::Uuid;

use super::store::{Failures, LimitKey, TokenStore};
use crate::{
    error::ApiError,
    metrics::{self, RateLimit},
};

/// The limits, from `TESSERA_LOGIN_MAX_FAILURES`, `_PER_ACCOUNT`, `_PER_IP`
/// and `_WINDOW`. A maximum of 0 turns that limit off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoginLimits {
    /// Per account and client IP.
    pub max_failures: u32,
    /// Per account, from every address.
    pub max_failures_per_account: u32,
    pub max_failures_per_ip: u32,
    /// Length of a fixed window, whole seconds (at least 1).
    pub window_secs: u64,
}

/// The window of `TESSERA_REGISTER_PER_IP`.
pub const REGISTER_WINDOW_SECS: u64 = 3600;

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

/// The network a client address counts as (as `http::client_ip` gives it).
/// IPv4-mapped IPv6 counts as IPv4; other IPv6 addresses count per /64, the
/// smallest network normally given to one subscriber, so an attacker cannot
/// get a fresh counter by rotating through their own /64.
pub fn client_net(client_ip: &str) -> Option<IpAddr> {
    client_ip.trim().parse().ok().map(net_of)
}

/// `client_net` of a parsed address.
pub fn net_of(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => IpAddr::V6(Ipv6Addr::from(u128::from(v6) & !((1u128 << 64) - 1))),
        v4 => v4,
    }
}

/// The IP counter for a client address (see `client_net`).
pub fn ip_key(client_ip: &str) -> Option<LimitKey> {
    client_net(client_ip).map(LimitKey::Ip)
}

/// The account's counter at one client address. A request whose address
/// is unknown counts as coming from one address of its own (0.0.0.0).
pub fn account_at_key(account: LimitKey, client_ip: Option<&str>) -> LimitKey {
    let net = client_ip
        .and_then(client_net)
        .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
    LimitKey::AccountAt(Box::new(account), net)
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
    /// The account at this address: cleared by a success.
    account_at: Option<LimitKey>,
    /// The account from everywhere and the client IP: a success takes the
    /// attempt back from these.
    others: Vec<LimitKey>,
}

impl<'a> Limiter<'a> {
    pub fn new(store: &'a dyn TokenStore, limits: LoginLimits) -> Self {
        Self { store, limits }
    }

    /// Counts an attempt on `account` from `client_ip` (one store round
    /// trip). Over any limit: `TooManyRequests` with the seconds until the
    /// (latest) blocking window ends, and nothing stays counted.
    pub async fn begin(
        &self,
        account: LimitKey,
        client_ip: Option<&str>,
    ) -> Result<Attempt<'a>, ApiError> {
        let limits = self.limits;
        let account_at =
            (limits.max_failures > 0).then(|| account_at_key(account.clone(), client_ip));
        let account = (limits.max_failures_per_account > 0).then_some(account);
        let ip = client_ip
            .filter(|_| limits.max_failures_per_ip > 0)
            .and_then(ip_key);
        let counted: Vec<(LimitKey, u32, RateLimit)> = [
            (
                account_at.clone(),
                limits.max_failures,
                RateLimit::AccountIp,
            ),
            (
                account.clone(),
                limits.max_failures_per_account,
                RateLimit::Account,
            ),
            (ip.clone(), limits.max_failures_per_ip, RateLimit::Ip),
        ]
        .into_iter()
        .filter_map(|(key, max, which)| key.map(|k| (k, max, which)))
        .collect();
        let attempt = Attempt {
            store: self.store,
            account_at,
            others: account.into_iter().chain(ip).collect(),
        };
        if counted.is_empty() {
            return Ok(attempt);
        }
        let keys: Vec<LimitKey> = counted.iter().map(|(k, ..)| k.clone()).collect();
        let now = match self.store.record_failures(&keys, limits.window_secs).await {
            Ok(now) => now,
            Err(e) => {
                // The counters are separate keys (on a Cluster, separate
                // slots): some may have counted before another failed. A
                // 503 checked no password, so take the attempt back where
                // it can be, or a few store hiccups (a resharding) end in
                // a 15-minute 429 for a user who never guessed.
                if let Err(again) = self.store.forgive_failures(&keys).await {
                    tracing::warn!(error = %again, "could not take back a login attempt after a store error");
                }
                return Err(e.into());
            }
        };
        let limits: Vec<(u32, RateLimit)> = counted.iter().map(|(_, m, w)| (*m, *w)).collect();
        if let Some((retry_after, which)) = over_limit(&limits, &now) {
            // A refused attempt checked no password: it is not a failure.
            self.store.forgive_failures(&keys).await?;
            metrics::event(metrics::Event::LoginRateLimited);
            metrics::rate_limited(which);
            return Err(ApiError::TooManyRequests { retry_after });
        }
        Ok(attempt)
    }
}

/// Seconds until every exceeded counter's window has ended, and the first
/// exceeded limit (for the metric), if any is exceeded.
fn over_limit<W: Copy>(limits: &[(u32, W)], now: &[Failures]) -> Option<(u64, W)> {
    let exceeded: Vec<(u64, W)> = limits
        .iter()
        .zip(now)
        .filter(|((max, _), f)| f.count > u64::from(*max))
        .map(|((_, which), f)| (f.retry_after_secs(), *which))
        .collect();
    let first = exceeded.first()?.1;
    let retry = exceeded.iter().map(|(r, _)| *r).max()?;
    Some((retry, first))
}

impl Attempt<'_> {
    fn keys(&self) -> Vec<LimitKey> {
        self.account_at
            .iter()
            .chain(&self.others)
            .cloned()
            .collect()
    }

    /// Wrong password or unknown account: the attempt stays counted.
    pub fn failed(self) {}

    /// The right password: the account's counter at this address is cleared
    /// and the attempt is taken back from the others.
    pub async fn succeeded(self) -> Result<(), ApiError> {
        let (clear, forgive) = (self.account_at.as_slice(), self.others.as_slice());
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
    /// account, a failure of the server, or no fair share of hashing): taken
    /// back from every counter. Best effort: a store error leaves the
    /// attempt counted and is logged.
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

/// Counts a registration from `client_ip` against `per_hour`
/// (`TESSERA_REGISTER_PER_IP`, 0 = no limit), before anything else of the
/// request is looked at: every attempt counts, whatever its answer (a 409
/// for a taken email or username and a 422 too), so the 409 is no
/// unthrottled oracle of which emails have accounts. Over the limit: 429
/// with the seconds left in the hour. Refused attempts are not taken back:
/// the window is fixed, so they cannot extend it.
pub async fn count_registration(
    store: &dyn TokenStore,
    per_hour: u32,
    client_ip: Option<&str>,
) -> Result<(), ApiError> {
    let Some(net) = client_ip.and_then(client_net).filter(|_| per_hour > 0) else {
        return Ok(());
    };
    let key = LimitKey::Register(net);
    let now = store
        .record_failures(std::slice::from_ref(&key), REGISTER_WINDOW_SECS)
        .await?;
    if let Some((retry_after, which)) = over_limit(&[(per_hour, RateLimit::Register)], &now) {
        metrics::rate_limited(which);
        return Err(ApiError::TooManyRequests { retry_after });
    }
    Ok(())
}

/// The window of `TESSERA_MAIL_PER_ADDRESS` and `TESSERA_MAIL_PER_IP`.
pub const MAIL_WINDOW_SECS: u64 = 3600;

/// Counts a mail request (forgot, resend, address change) to the address
/// whose email key is `to_key` (counted whether or not it has an account,
/// so the limit reveals nothing) from `client_ip`, before anything else is
/// done: 429 with the seconds left when either is over its hourly limit
/// (0 = no limit).
pub async fn count_mail(
    store: &dyn TokenStore,
    per_address: u32,
    per_ip: u32,
    to_key: &str,
    client_ip: Option<&str>,
) -> Result<(), ApiError> {
    let mut keys = Vec::new();
    let mut limits = Vec::new();
    if per_address > 0 {
        keys.push(LimitKey::MailTo(Sha256::digest(to_key.as_bytes()).into()));
        limits.push((per_address, RateLimit::MailAddress));
    }
    if let Some(net) = client_ip.and_then(client_net).filter(|_| per_ip > 0) {
        keys.push(LimitKey::MailFrom(net));
        limits.push((per_ip, RateLimit::MailIp));
    }
    if keys.is_empty() {
        return Ok(());
    }
    let now = store.record_failures(&keys, MAIL_WINDOW_SECS).await?;
    if let Some((retry_after, which)) = over_limit(&limits, &now) {
        metrics::rate_limited(which);
        return Err(ApiError::TooManyRequests { retry_after });
    }
    Ok(())
}

/// Wrong one-time link tokens count against the client IP like failed
/// logins (the same counter: `TESSERA_LOGIN_MAX_FAILURES_PER_IP` in
/// `TESSERA_LOGIN_WINDOW`). As with logins the use is counted *before* the
/// token is looked up, so concurrent guesses cannot all pass a check;
/// `LinkAttempt::valid` takes it back when the token was good.
pub struct LinkAttempt<'a> {
    store: &'a dyn TokenStore,
    key: Option<LimitKey>,
}

pub async fn begin_link_attempt<'a>(
    store: &'a dyn TokenStore,
    limits: LoginLimits,
    client_ip: Option<&str>,
) -> Result<LinkAttempt<'a>, ApiError> {
    let Some(key) = client_ip
        .and_then(ip_key)
        .filter(|_| limits.max_failures_per_ip > 0)
    else {
        return Ok(LinkAttempt { store, key: None });
    };
    let now = store
        .record_failures(std::slice::from_ref(&key), limits.window_secs)
        .await?;
    let attempt = LinkAttempt {
        store,
        key: Some(key),
    };
    if let Some((retry_after, which)) =
        over_limit(&[(limits.max_failures_per_ip, RateLimit::LinkIp)], &now)
    {
        attempt.valid().await;
        metrics::rate_limited(which);
        return Err(ApiError::TooManyRequests { retry_after });
    }
    Ok(attempt)
}

impl LinkAttempt<'_> {
    /// The token was good (or never judged): not a guess.
    pub async fn valid(self) {
        if let Some(key) = &self.key
            && let Err(e) = self.store.forgive_failures(std::slice::from_ref(key)).await
        {
            tracing::warn!(error = %e, "could not take back a link attempt");
        }
    }

    /// A wrong token: stays counted.
    pub fn invalid(self) {}
}

/// Clears an account's login counters (a password reset proved the
/// mailbox): every address's share of it, and the one at `client_ip`.
pub async fn clear_account(
    store: &dyn TokenStore,
    user_id: Uuid,
    client_ip: Option<&str>,
) -> Result<(), ApiError> {
    let account = LimitKey::Account(user_id);
    let at = account_at_key(account.clone(), client_ip);
    store.clear_failures(&[account, at]).await?;
    Ok(())
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

    fn limiter(store: &MemoryStore, acct_ip: u32, acct: u32, ip: u32) -> Limiter<'_> {
        Limiter::new(
            store,
            LoginLimits {
                max_failures: acct_ip,
                max_failures_per_account: acct,
                max_failures_per_ip: ip,
                window_secs: 60,
            },
        )
    }

    async fn count(store: &MemoryStore, key: &LimitKey) -> u64 {
        store.failures(std::slice::from_ref(key)).await.unwrap()[0].map_or(0, |f| f.count)
    }

    fn limited<T>(r: Result<T, ApiError>) -> u64 {
        match r {
            Err(ApiError::TooManyRequests { retry_after }) => retry_after,
            Err(e) => panic!("expected 429, got {e:?}"),
            Ok(_) => panic!("expected 429, got a counted attempt"),
        }
    }

    const ME: &str = "198.51.100.1";
    const THEM: &str = "203.0.113.7";

    #[tokio::test]
    async fn account_limit_and_reset() {
        let store = MemoryStore::new();
        let l = limiter(&store, 2, 100, 100);
        let acct = LimitKey::Account(Uuid::now_v7());
        let here = account_at_key(acct.clone(), Some(ME));
        let ip = ip_key(ME).unwrap();
        for _ in 0..2 {
            l.begin(acct.clone(), Some(ME)).await.unwrap().failed();
        }
        let retry = limited(l.begin(acct.clone(), Some(ME)).await);
        assert!((1..=60).contains(&retry), "{retry}");
        // The refused attempt was not counted anywhere.
        assert_eq!(count(&store, &here).await, 2);
        assert_eq!(count(&store, &acct).await, 2);
        assert_eq!(count(&store, &ip).await, 2);

        // Another account is unaffected; its success clears only its own
        // counter at this address and leaves the IP's earlier failures.
        let other = LimitKey::Account(Uuid::now_v7());
        let other_here = account_at_key(other.clone(), Some(ME));
        l.begin(other.clone(), Some(ME)).await.unwrap().failed();
        let a = l.begin(other.clone(), Some(ME)).await.unwrap();
        a.succeeded().await.unwrap();
        assert_eq!(count(&store, &other_here).await, 0);
        assert_eq!(count(&store, &other).await, 1, "taken back, not cleared");
        assert_eq!(count(&store, &ip).await, 3);
        assert_eq!(count(&store, &here).await, 2);

        // Not counted: taken back from every counter.
        let a = l.begin(other.clone(), Some(ME)).await.unwrap();
        a.not_counted().await;
        assert_eq!(count(&store, &other_here).await, 0);
        assert_eq!(count(&store, &other).await, 1);
        assert_eq!(count(&store, &ip).await, 3);
    }

    /// Failures from one address lock the account there only; the owner at
    /// another address logs in, and their success clears only their own
    /// address's counter.
    #[tokio::test]
    async fn lockout_is_per_address_until_the_account_ceiling() {
        let store = MemoryStore::new();
        let l = limiter(&store, 2, 5, 100);
        let acct = LimitKey::Account(Uuid::now_v7());
        for _ in 0..2 {
            l.begin(acct.clone(), Some(THEM)).await.unwrap().failed();
        }
        limited(l.begin(acct.clone(), Some(THEM)).await);
        // IPv6 neighbours in one /64 are one address.
        l.begin(acct.clone(), Some("2001:db8::1"))
            .await
            .unwrap()
            .failed();
        l.begin(acct.clone(), Some("2001:db8::2"))
            .await
            .unwrap()
            .failed();
        limited(l.begin(acct.clone(), Some("2001:db8::3")).await);
        // The owner at their own address: 4 of 5 account failures so far.
        l.begin(acct.clone(), Some(ME))
            .await
            .unwrap()
            .succeeded()
            .await
            .unwrap();
        limited(l.begin(acct.clone(), Some(THEM)).await);
        assert_eq!(count(&store, &acct).await, 4);
        // Unknown addresses count as one address of their own.
        l.begin(acct.clone(), None).await.unwrap().failed();
        // The ceiling: 5 failures from anywhere lock every address.
        let retry = limited(l.begin(acct.clone(), Some(ME)).await);
        assert!((1..=60).contains(&retry), "{retry}");
        limited(l.begin(acct.clone(), Some("192.0.2.1")).await);
        assert_eq!(count(&store, &acct).await, 5);
    }

    #[tokio::test]
    async fn ip_limit_spans_accounts_and_zero_disables() {
        let store = MemoryStore::new();
        let l = limiter(&store, 100, 100, 2);
        for _ in 0..2 {
            l.begin(LimitKey::Account(Uuid::now_v7()), Some("198.51.100.2"))
                .await
                .unwrap()
                .failed();
        }
        limited(
            l.begin(LimitKey::Account(Uuid::now_v7()), Some("198.51.100.2"))
                .await,
        );
        // Another address, or none known, is not limited by it.
        l.begin(LimitKey::Account(Uuid::now_v7()), Some("198.51.100.3"))
            .await
            .unwrap()
            .failed();
        l.begin(LimitKey::Account(Uuid::now_v7()), None)
            .await
            .unwrap()
            .failed();

        let off = limiter(&store, 0, 0, 0);
        let acct = LimitKey::Account(Uuid::now_v7());
        for _ in 0..10 {
            off.begin(acct.clone(), Some("198.51.100.2"))
                .await
                .unwrap()
                .failed();
        }
        assert_eq!(count(&store, &acct).await, 0);
        let here = account_at_key(acct, Some("198.51.100.2"));
        assert_eq!(count(&store, &here).await, 0);
    }

    #[test]
    fn account_at_keys() {
        let id = Uuid::now_v7();
        let at = account_at_key(LimitKey::Account(id), Some("2001:db8:1:2::9"));
        assert_eq!(at.to_string(), format!("login:acct:{id}@2001:db8:1:2::"));
        assert_eq!(
            account_at_key(LimitKey::Account(id), Some("::ffff:192.0.2.1")),
            account_at_key(LimitKey::Account(id), Some("192.0.2.1"))
        );
        assert_eq!(
            account_at_key(LimitKey::Account(id), None).to_string(),
            format!("login:acct:{id}@0.0.0.0")
        );
        let unknown = account_key(None, "email", "x@example.com");
        assert!(
            account_at_key(unknown, Some("192.0.2.1"))
                .to_string()
                .starts_with("login:unknown:")
        );
    }

    #[tokio::test]
    async fn registrations_are_limited_per_address() {
        let store = MemoryStore::new();
        for _ in 0..3 {
            count_registration(&store, 3, Some(ME)).await.unwrap();
        }
        let retry = limited(count_registration(&store, 3, Some(ME)).await);
        assert!((3500..=3600).contains(&retry), "{retry}");
        limited(count_registration(&store, 3, Some(ME)).await);
        // Another address has its own budget; 0 is no limit.
        count_registration(&store, 3, Some(THEM)).await.unwrap();
        for _ in 0..10 {
            count_registration(&store, 0, Some(ME)).await.unwrap();
        }
    }
}
