//! The token store: the only door to revocation state. Two implementations
//! (Redis, in-memory) share one behaviour suite (tests/api/store.rs).

mod memory;
mod redis;
pub mod tracking;

pub use self::memory::MemoryStore;
pub use self::redis::RedisStore;

use std::{fmt, net::IpAddr};

use async_trait::async_trait;
use uuid::Uuid;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("token store unavailable: {0}")]
    Unavailable(String),
    #[error("token store returned malformed data: {0}")]
    Corrupt(String),
}

pub type StoreResult<T> = Result<T, StoreError>;

/// A refresh-token family. Times are unix seconds except `rotated_ms`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionRecord {
    pub sid: Uuid,
    pub user_id: Uuid,
    /// jti and iat of the current (only valid) refresh token.
    pub current_jti: Uuid,
    pub current_iat: i64,
    /// The refresh token the current one replaced, and when (unix ms).
    pub parent_jti: Option<Uuid>,
    pub rotated_ms: Option<i64>,
    pub created_at: i64,
    pub last_used_at: i64,
    /// Absolute end of the session (login + refresh TTL).
    pub expires_at: i64,
    pub user_agent: Option<String>,
    pub ip: Option<String>,
}

/// One presentation of a refresh token (see `auth::rotation`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RotateRequest {
    pub sid: Uuid,
    /// The jti of the presented refresh token.
    pub presented: Uuid,
    /// jti and iat (the caller's clock, as in every token it signs) of the
    /// refresh token that replaces it if it is current.
    pub new_jti: Uuid,
    pub new_iat: i64,
    /// `TESSERA_REFRESH_REUSE_GRACE` in ms; the window is measured on the
    /// store's clock, not the caller's.
    pub grace_ms: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rotation {
    /// The presented token was current; the session now has `new_jti`.
    Rotated(SessionRecord),
    /// The presented token is the immediate parent within the grace window:
    /// the session is unchanged and its current token may be re-issued.
    WithinGrace(SessionRecord),
    /// An older token was presented: the session has been revoked.
    Reused,
    /// No such session (ended, revoked or expired).
    Gone,
}

/// What a login-failure counter counts (see `auth::limits`). Its `Display`
/// is the key without the store prefix, e.g. `login:acct:<uuid>`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum LimitKey {
    /// An existing account (its email and username share this counter).
    Account(Uuid),
    /// An identifier that names no account: a SHA-256 of its lowercased
    /// form, never the raw value.
    Unknown([u8; 32]),
    /// A client address (IPv6 grouped by /64, see `auth::limits`).
    Ip(IpAddr),
    /// An account (or unknown identifier: `Account` or `Unknown`) from one
    /// client address: the counter a successful login there clears.
    AccountAt(Box<LimitKey>, IpAddr),
    /// Registrations from a client address (not login failures, but the
    /// same fixed-window counter).
    Register(IpAddr),
    /// Mails to an address: a SHA-256 of its email key, never the address.
    MailTo([u8; 32]),
    /// Mail requests from a client address.
    MailFrom(IpAddr),
}

impl fmt::Display for LimitKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LimitKey::Account(id) => write!(f, "login:acct:{id}"),
            LimitKey::Unknown(hash) => {
                f.write_str("login:unknown:")?;
                hash.iter().try_for_each(|b| write!(f, "{b:02x}"))
            }
            LimitKey::Ip(ip) => write!(f, "login:ip:{ip}"),
            LimitKey::AccountAt(account, ip) => write!(f, "{account}@{ip}"),
            LimitKey::Register(ip) => write!(f, "register:ip:{ip}"),
            LimitKey::MailTo(hash) => {
                f.write_str("mail:to:")?;
                hash.iter().try_for_each(|b| write!(f, "{b:02x}"))
            }
            LimitKey::MailFrom(ip) => write!(f, "mail:ip:{ip}"),
        }
    }
}

/// A one-time claim (`TokenStore::claim_once`): the first claim wins until
/// the key expires. Its `Display` is the key without the store prefix.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum OnceKey {
    /// A TOTP time step accepted for an account (RFC 6238 section 5.2: a
    /// code is accepted once), see `auth::totp::claim_step`.
    TotpStep { user_id: Uuid, step: u64 },
}

impl fmt::Display for OnceKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OnceKey::TotpStep { user_id, step } => write!(f, "once:totp:{user_id}:{step}"),
        }
    }
}

/// A short-lived challenge (`TokenStore::put_challenge`): a payload that a
/// limited number of tries may read, and one call may take. Its `Display`
/// is the key without the store prefix.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ChallengeKey {
    /// A login waiting for its second factor: the SHA-256 of its
    /// `mfa_token` (`auth::mfa_token`), never the token.
    Mfa([u8; 32]),
}

impl fmt::Display for ChallengeKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ChallengeKey::Mfa(hash) => {
                f.write_str("mfa:")?;
                hash.iter().try_for_each(|b| write!(f, "{b:02x}"))
            }
        }
    }
}

/// A fixed-window failure counter: the count and the time left in its window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Failures {
    pub count: u64,
    /// Milliseconds until the window ends (and the counter disappears).
    pub ttl_ms: i64,
}

impl Failures {
    /// Whole seconds until the window ends, rounded up, at least 1.
    pub fn retry_after_secs(&self) -> u64 {
        (self.ttl_ms.max(1) as u64).div_ceil(1000)
    }
}

#[async_trait]
pub trait TokenStore: Send + Sync + 'static {
    /// Is an access token with this session and jti still good? One round trip.
    async fn check(&self, sid: Uuid, jti: Uuid) -> StoreResult<bool>;

    /// Stores a new session and lists it under its user. Beyond
    /// `max_sessions` live sessions of the user (0 = no cap) the oldest end;
    /// returns how many did.
    async fn start_session(
        &self,
        session: &SessionRecord,
        max_sessions: usize,
    ) -> StoreResult<usize>;

    /// `auth::rotation::decide`, applied atomically: of N concurrent calls
    /// with the same `presented` jti exactly one gets `Rotated`.
    async fn rotate(&self, req: &RotateRequest) -> StoreResult<Rotation>;

    /// Revokes one access token for `ttl_secs` (its remaining lifetime).
    async fn revoke_jti(&self, sid: Uuid, jti: Uuid, ttl_secs: i64) -> StoreResult<()>;

    async fn session(&self, sid: Uuid) -> StoreResult<Option<SessionRecord>>;

    /// Ends the user's session; `false` when there is none or it is someone
    /// else's (which stays untouched).
    async fn end_session(&self, user_id: Uuid, sid: Uuid) -> StoreResult<bool>;

    /// Logout: revokes the access token and ends its session. Redis does
    /// both in one round trip.
    async fn logout(&self, user_id: Uuid, sid: Uuid, jti: Uuid, ttl_secs: i64) -> StoreResult<()> {
        self.revoke_jti(sid, jti, ttl_secs).await?;
        self.end_session(user_id, sid).await.map(|_| ())
    }

    /// Ends every live session of the user.
    async fn end_user_sessions(&self, user_id: Uuid) -> StoreResult<()>;

    /// The user's live sessions, oldest first.
    async fn sessions(&self, user_id: Uuid) -> StoreResult<Vec<SessionRecord>>;

    /// The live failure counters of `keys`, in order (`None`: no failures in
    /// a current window). One round trip.
    async fn failures(&self, keys: &[LimitKey]) -> StoreResult<Vec<Option<Failures>>>;

    /// Adds one failure to each counter and returns the new values, in order.
    /// A counter's first failure opens its window of `window_secs`; later
    /// ones never extend it. Atomic per counter, one round trip; no counter
    /// exists without an expiry.
    async fn record_failures(
        &self,
        keys: &[LimitKey],
        window_secs: u64,
    ) -> StoreResult<Vec<Failures>>;

    /// Takes back one failure recorded by `record_failures` (the attempt
    /// turned out not to be a failure): never below zero, the window is kept,
    /// and a counter back at zero is removed. One round trip.
    async fn forgive_failures(&self, keys: &[LimitKey]) -> StoreResult<()>;

    /// Removes the counters. One round trip.
    async fn clear_failures(&self, keys: &[LimitKey]) -> StoreResult<()>;

    /// `true` for the first claim of `key`, `false` for every later one
    /// until `ttl_secs` (at least 1) after the first: one atomic step, so of
    /// N concurrent claims on any replicas exactly one wins.
    async fn claim_once(&self, key: &OnceKey, ttl_secs: u64) -> StoreResult<bool>;

    /// Stores `payload` under `key` for `ttl_secs` (at least 1), with no
    /// try spent.
    async fn put_challenge(
        &self,
        key: &ChallengeKey,
        payload: &str,
        ttl_secs: u64,
    ) -> StoreResult<()>;

    /// Spends one try of the challenge and returns its payload, or `None`
    /// when it is unknown, expired, taken, or had `max_tries` tries already.
    /// Atomic: of N concurrent calls at most `max_tries` in the challenge's
    /// whole life get the payload. A try over the limit leaves the
    /// challenge in place (until taken or expired): a caller that got the
    /// payload within the limit may still take it, so a flood of tries
    /// cannot void a right answer that came in time.
    async fn try_challenge(
        &self,
        key: &ChallengeKey,
        max_tries: u32,
    ) -> StoreResult<Option<String>>;

    /// Removes the challenge; `true` only for the call that removed it.
    async fn take_challenge(&self, key: &ChallengeKey) -> StoreResult<bool>;

    async fn ping(&self) -> StoreResult<()>;
}

pub fn now_secs() -> i64 {
    chrono::Utc::now().timestamp()
}

pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}
