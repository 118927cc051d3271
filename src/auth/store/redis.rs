//! Redis token store, on one Redis or on a Redis Cluster
//! (`TESSERA_REDIS_CLUSTER`).
//!
//! Keys (prefix `P`; `{...}` is the Cluster hash tag):
//! - `P{sid}:session`: hash of the session; expires at the session's end.
//! - `P{sid}:revoked:<jti>`: a revoked access token; expires with the token.
//! - `P{sid}:reused`: the session hash after reuse revoked it (tombstone);
//!   keeps the session's TTL.
//! - `Puser:{uid}:index`: sorted set of the user's session ids, scored by
//!   their end (unix s); expires with the last of them; ended members are
//!   pruned at the next login and when listed.
//! - `Plogin:acct:<uid>`, `Plogin:unknown:<sha256>`, `Plogin:ip:<addr>`,
//!   and the same account keys from one address, `Plogin:acct:<uid>@<addr>`:
//!   login-failure counters; expire at the end of their fixed window.
//! - `Pregister:ip:<addr>`: registrations from an address in the hour.
//! - `Ponce:totp:<uid>:<step>`: a one-time claim (`claim_once`); expires
//!   with its TTL.
//! - `Pmfa:<sha256 of the mfa_token>`: a challenge, hash {p: payload,
//!   t: tries spent}; expires with its TTL.
//!
//! Cluster rule: every script and every pipeline below touches one hash
//! slot. A session's keys share `{sid}`, so the access check (one round
//! trip) and the rotation script are atomic on any deployment. What spans
//! slots (a session and its user's index, the sessions of one user, the
//! counters of one login) runs as several single-slot steps, ordered so
//! that a failure or a concurrent request in between never leaves a live
//! session that the user's index does not name (see `start_session` and
//! `end_user_sessions`). Steps on independent slots run concurrently: on a
//! multiplexed connection they share the socket's pipeline, so they cost
//! about one round trip.
//!
//! Connections: one multiplexed connection (single Redis:
//! `ConnectionManager`, which reconnects by itself) or the cluster client's
//! multiplexed connections per node (which follow MOVED/ASK, refresh the
//! slot map after a failover and reconnect to restarted nodes). Both are
//! created lazily, so the service starts (and `/readyz` answers 503) while
//! Redis is still down.

use std::{collections::HashMap, future::Future, time::Duration};

use async_trait::async_trait;
use futures_util::future::try_join_all;
use redis::{
    Cmd, Pipeline, RedisFuture, Value,
    aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig},
    cluster::{ClusterClientBuilder, ClusterConfig},
    cluster_async::ClusterConnection,
};
use uuid::Uuid;

use super::{
    ChallengeKey, Failures, LimitKey, OnceKey, RotateRequest, Rotation, SessionRecord, StoreError,
    StoreResult, TokenStore, now_secs,
};

/// Bounds every store call, so an unreachable Redis fails closed quickly.
const OP_TIMEOUT: Duration = Duration::from_secs(2);

/// `auth::rotation::decide`, line by line, on the store's clock (`TIME`:
/// every replica measures the grace window against the same clock; scripts
/// are replicated by effect, so `TIME` before a write is allowed).
const ROTATE: &str = r#"
local k = KEYS[1]
local presented, new_jti, new_iat = ARGV[1], ARGV[2], ARGV[3]
local grace_ms = tonumber(ARGV[4])
local t = redis.call('TIME')
local now_ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local cur = redis.call('HGET', k, 'cur')
if not cur then
  -- Held::Tombstone / Held::Nothing
  local dead = redis.call('HGET', KEYS[2], 'cur')
  if dead and dead ~= presented then return {'reused'} end
  return {'gone'}
end
if cur == presented then
  -- Decision::Rotate
  redis.call('HSET', k, 'cur', new_jti, 'cur_iat', new_iat, 'parent', presented,
    'rotated_ms', tostring(now_ms), 'last_used', new_iat)
  local out = redis.call('HGETALL', k)
  table.insert(out, 1, 'rotated')
  return out
end
local parent = redis.call('HGET', k, 'parent')
local rotated = tonumber(redis.call('HGET', k, 'rotated_ms') or '')
if grace_ms > 0 and parent == presented and rotated and (now_ms - rotated) <= grace_ms then
  -- Decision::Grace
  local out = redis.call('HGETALL', k)
  table.insert(out, 1, 'grace')
  return out
end
-- Decision::RevokeForReuse: the tombstone keeps the session's TTL.
redis.call('RENAME', k, KEYS[2])
return {'reused'}
"#;

/// Writes a session hash and its TTL atomically (no key without a TTL).
const START: &str = r#"
redis.call('HSET', KEYS[1], unpack(ARGV, 2))
redis.call('EXPIRE', KEYS[1], ARGV[1])
return 1
"#;

/// Adds a session to the user's index (score: the session's end), extends
/// the index's TTL to the longest session (never shortening it), drops
/// members whose session has ended, and returns the ids beyond the cap of
/// `ARGV[4]` live sessions, oldest first. It does not remove those: the
/// caller deletes their sessions first and then their index entries, so a
/// failure in between leaves an index that still names every live session
/// (logout-all must find them all).
const INDEX: &str = r#"
local k = KEYS[1]
redis.call('ZADD', k, ARGV[2], ARGV[1])
local ttl = tonumber(ARGV[2]) - tonumber(ARGV[3])
if redis.call('TTL', k) < ttl then redis.call('EXPIRE', k, ttl) end
redis.call('ZREMRANGEBYSCORE', k, '-inf', ARGV[3])
local max = tonumber(ARGV[4])
local n = redis.call('ZCARD', k)
if max > 0 and n > max then
  return redis.call('ZRANGE', k, 0, n - max - 1)
end
return {}
"#;

/// One failure: INCR, and the first one of a window sets the expiry (a key
/// somehow without one gets it too), so no counter lives forever. Returns
/// `{count, ms left}`.
const RECORD_FAILURE: &str = r#"
local n = redis.call('INCR', KEYS[1])
local ttl = redis.call('PTTL', KEYS[1])
if ttl < 0 then
  redis.call('EXPIRE', KEYS[1], ARGV[1])
  ttl = tonumber(ARGV[1]) * 1000
end
return {n, ttl}
"#;

/// Takes one failure back: DECR keeps the expiry; at zero the key goes.
const FORGIVE_FAILURE: &str = r#"
local n = tonumber(redis.call('GET', KEYS[1]) or '0') or 0
if n > 1 then return redis.call('DECR', KEYS[1]) end
redis.call('DEL', KEYS[1])
return 0
"#;

/// Deletes a session only if it belongs to the given user.
const END_OWN: &str = r#"
if redis.call('HGET', KEYS[1], 'user') == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"#;

/// The connection every request shares: cloning it is cheap (an `Arc`), and
/// concurrent requests are pipelined on it.
#[derive(Clone)]
enum Conn {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Conn::Single(c) => c.req_packed_command(cmd),
            Conn::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Conn::Single(c) => c.req_packed_commands(pipeline, offset, count),
            Conn::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Conn::Single(c) => c.get_db(),
            Conn::Cluster(c) => c.get_db(),
        }
    }
}

pub struct RedisStore {
    conn: Conn,
    prefix: String,
    rotate: redis::Script,
}

/// Appends `EVAL script` to a pipeline: the small scripts travel with their
/// command so that they can share a round trip with other commands of
/// their slot (EVALSHA would need a load first).
fn eval<'a>(pipe: &'a mut Pipeline, script: &str, key: &str, args: &[String]) -> &'a mut Pipeline {
    pipe.cmd("EVAL").arg(script).arg(1).arg(key).arg(args)
}

fn unavailable(e: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(e.to_string())
}

impl RedisStore {
    /// One Redis at `url`.
    pub fn new(url: &str, prefix: &str) -> Result<Self, StoreError> {
        let client = redis::Client::open(url).map_err(unavailable)?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(OP_TIMEOUT))
            .set_response_timeout(Some(OP_TIMEOUT))
            // Reconnect attempts in the background; requests meanwhile fail
            // closed (503) instead of queueing behind them.
            .set_number_of_retries(3)
            .set_max_delay(Duration::from_millis(500));
        let conn = ConnectionManager::new_lazy_with_config(client, config).map_err(unavailable)?;
        Ok(Self::with(Conn::Single(conn), prefix))
    }

    /// A Redis Cluster reached through `seeds` (any of its nodes; the slot
    /// map is read from them).
    pub fn new_cluster(seeds: &[&str], prefix: &str) -> Result<Self, StoreError> {
        if seeds.is_empty() {
            return Err(StoreError::Unavailable(
                "no Redis Cluster seed node in REDIS_URL".into(),
            ));
        }
        let client = ClusterClientBuilder::new(seeds.to_vec())
            .connection_timeout(OP_TIMEOUT)
            .response_timeout(OP_TIMEOUT)
            // MOVED/ASK and TRYAGAIN during a resharding or a failover are
            // retried within the operation's deadline.
            .retries(6)
            .min_retry_wait(20)
            .max_retry_wait(400)
            .build()
            .map_err(unavailable)?;
        let config = ClusterConfig::new()
            .set_connection_timeout(OP_TIMEOUT)
            .set_response_timeout(OP_TIMEOUT);
        let conn = client.get_pending_async_connection_with_config(config);
        Ok(Self::with(Conn::Cluster(conn), prefix))
    }

    fn with(conn: Conn, prefix: &str) -> Self {
        Self {
            conn,
            prefix: prefix.to_owned(),
            rotate: redis::Script::new(ROTATE),
        }
    }

    /// Warns (and counts `store_eviction_policy`) when Redis may evict keys:
    /// an evicted revocation or login counter silently un-revokes a token or
    /// resets a limit. Managed Redis often refuses `CONFIG`; then nothing can
    /// be told and nothing is said beyond a debug line. On a cluster this
    /// asks one node.
    pub async fn warn_if_evicting(&self) {
        let reply: StoreResult<Vec<String>> = self
            .run(|mut c| async move {
                redis::cmd("CONFIG")
                    .arg("GET")
                    .arg("maxmemory-policy")
                    .query_async(&mut c)
                    .await
            })
            .await;
        match reply.as_deref() {
            Ok([_, policy]) if policy != "noeviction" => {
                crate::metrics::event(crate::metrics::Event::StoreEvictionPolicy);
                tracing::warn!(
                    policy = %policy,
                    "Redis maxmemory-policy is not noeviction: under memory pressure Redis may drop revocations and login counters; set maxmemory-policy noeviction"
                );
            }
            Ok(_) => {}
            Err(e) => tracing::debug!(error = %e, "cannot read Redis maxmemory-policy"),
        }
    }

    fn session_key(&self, sid: Uuid) -> String {
        format!("{}{{{sid}}}:session", self.prefix)
    }

    fn tombstone_key(&self, sid: Uuid) -> String {
        format!("{}{{{sid}}}:reused", self.prefix)
    }

    fn revoked_key(&self, sid: Uuid, jti: Uuid) -> String {
        format!("{}{{{sid}}}:revoked:{jti}", self.prefix)
    }

    fn user_key(&self, user_id: Uuid) -> String {
        format!("{}user:{{{user_id}}}:index", self.prefix)
    }

    /// Marks an access token revoked for `ttl_secs` (> 0): its remaining life.
    fn revoke_cmd(&self, pipe: &mut Pipeline, sid: Uuid, jti: Uuid, ttl_secs: i64) {
        pipe.cmd("SET")
            .arg(self.revoked_key(sid, jti))
            .arg(1)
            .arg("EX")
            .arg(ttl_secs)
            .ignore();
    }

    fn limit_key(&self, key: &LimitKey) -> String {
        format!("{}{key}", self.prefix)
    }

    /// Runs one store operation on the shared connection, with a deadline.
    async fn run<T, F, Fut>(&self, f: F) -> StoreResult<T>
    where
        F: FnOnce(Conn) -> Fut,
        Fut: Future<Output = redis::RedisResult<T>>,
    {
        tokio::time::timeout(OP_TIMEOUT, f(self.conn.clone()))
            .await
            .map_err(|_| StoreError::Unavailable("timed out".into()))?
            .map_err(unavailable)
    }

    /// Sends a pipeline whose commands all touch one hash slot.
    async fn query<T: redis::FromRedisValue>(&self, pipe: Pipeline) -> StoreResult<T> {
        self.run(|mut c| async move { pipe.query_async(&mut c).await })
            .await
    }

    /// Sends one single-slot pipeline per item, concurrently, and returns the
    /// answers in order.
    async fn query_each<T: redis::FromRedisValue>(
        &self,
        pipes: impl IntoIterator<Item = Pipeline>,
    ) -> StoreResult<Vec<T>> {
        try_join_all(pipes.into_iter().map(|p| self.query::<T>(p))).await
    }

    /// Deletes the given sessions (each its own slot).
    async fn delete_sessions(&self, sids: &[Uuid]) -> StoreResult<()> {
        let pipes = sids.iter().map(|sid| {
            let mut p = redis::pipe();
            p.del(self.session_key(*sid)).ignore();
            p
        });
        self.query_each::<()>(pipes).await.map(|_| ())
    }

    async fn unlist(&self, user_id: Uuid, sids: &[String]) -> StoreResult<()> {
        if sids.is_empty() {
            return Ok(());
        }
        let mut pipe = redis::pipe();
        pipe.zrem(self.user_key(user_id), sids).ignore();
        self.query(pipe).await
    }

    /// Runs `pipe` (commands on one session's slot), then drops `sid` from
    /// the user's index, in that order (a failure in between leaves a stale
    /// entry, never a live session that is not listed). On a single Redis
    /// both go in one pipeline: one connection executes them in order.
    async fn query_then_unlist<T: redis::FromRedisValue>(
        &self,
        mut pipe: Pipeline,
        user_id: Uuid,
        sid: Uuid,
    ) -> StoreResult<T> {
        if let Conn::Single(_) = self.conn {
            pipe.zrem(self.user_key(user_id), sid.to_string()).ignore();
            return self.query(pipe).await;
        }
        let out = self.query(pipe).await?;
        self.unlist(user_id, &[sid.to_string()]).await?;
        Ok(out)
    }

    async fn listed(&self, user_id: Uuid) -> StoreResult<Vec<String>> {
        let mut pipe = redis::pipe();
        pipe.zrange(self.user_key(user_id), 0, -1);
        let (sids,): (Vec<String>,) = self.query(pipe).await?;
        Ok(sids)
    }

    /// One EVAL of `script` per counter, each its own slot, concurrently.
    async fn per_key<T: redis::FromRedisValue>(
        &self,
        script: &str,
        keys: &[LimitKey],
        args: &[u64],
    ) -> StoreResult<Vec<T>> {
        let pipes = keys.iter().map(|key| {
            let mut pipe = redis::pipe();
            let cmd = pipe.cmd("EVAL").arg(script).arg(1).arg(self.limit_key(key));
            for a in args {
                cmd.arg(*a);
            }
            pipe
        });
        let out: Vec<(T,)> = self.query_each(pipes).await?;
        Ok(out.into_iter().map(|(t,)| t).collect())
    }
}

fn field<'a>(h: &'a HashMap<String, String>, name: &str) -> StoreResult<&'a str> {
    h.get(name)
        .map(String::as_str)
        .ok_or_else(|| StoreError::Corrupt(format!("session without {name}")))
}

fn parse<T: std::str::FromStr>(h: &HashMap<String, String>, name: &str) -> StoreResult<T> {
    field(h, name)?
        .parse()
        .map_err(|_| StoreError::Corrupt(format!("bad {name}")))
}

fn record_from_hash(sid: Uuid, h: &HashMap<String, String>) -> StoreResult<SessionRecord> {
    let opt = |name: &str| h.get(name).filter(|v| !v.is_empty()).cloned();
    Ok(SessionRecord {
        sid,
        user_id: parse(h, "user")?,
        current_jti: parse(h, "cur")?,
        current_iat: parse(h, "cur_iat")?,
        parent_jti: opt("parent").and_then(|v| v.parse().ok()),
        rotated_ms: opt("rotated_ms").and_then(|v| v.parse().ok()),
        created_at: parse(h, "created")?,
        last_used_at: parse(h, "last_used")?,
        expires_at: parse(h, "exp")?,
        user_agent: opt("ua"),
        ip: opt("ip"),
    })
}

fn pairs_to_hash(flat: &[String]) -> HashMap<String, String> {
    flat.chunks_exact(2)
        .map(|kv| (kv[0].clone(), kv[1].clone()))
        .collect()
}

#[async_trait]
impl TokenStore for RedisStore {
    /// One round trip: both keys carry the session's hash tag.
    async fn check(&self, sid: Uuid, jti: Uuid) -> StoreResult<bool> {
        let mut pipe = redis::pipe();
        pipe.exists(self.session_key(sid))
            .exists(self.revoked_key(sid, jti));
        let (alive, gone): (bool, bool) = self.query(pipe).await?;
        Ok(alive && !gone)
    }

    /// The session first, its index entry second. In this order a logout-all
    /// that runs in between cannot miss the session for good: its read of
    /// the index either comes after the entry (and ends the session) or
    /// before it, and then the account change's second pass after its commit
    /// sees the entry, or this login, reading the security stamp after both
    /// steps, sees the change and ends the session itself
    /// (`accounts::changes`, `accounts::signin`). The other order loses: an
    /// index entry listed and removed before its session is written leaves a
    /// live, unlisted session. If the second step fails the login fails (no
    /// token of the session ever leaves the service), and the session is
    /// deleted on a best-effort basis.
    async fn start_session(&self, s: &SessionRecord, max_sessions: usize) -> StoreResult<usize> {
        let ttl = s.expires_at - now_secs();
        if ttl <= 0 {
            return Ok(0);
        }
        let fields: Vec<(&str, String)> = vec![
            ("user", s.user_id.to_string()),
            ("cur", s.current_jti.to_string()),
            ("cur_iat", s.current_iat.to_string()),
            ("parent", String::new()),
            ("rotated_ms", String::new()),
            ("created", s.created_at.to_string()),
            ("last_used", s.last_used_at.to_string()),
            ("exp", s.expires_at.to_string()),
            ("ua", s.user_agent.clone().unwrap_or_default()),
            ("ip", s.ip.clone().unwrap_or_default()),
        ];
        let mut start = vec![ttl.to_string()];
        for (k, v) in fields {
            start.push(k.to_owned());
            start.push(v);
        }
        let mut write = redis::pipe();
        eval(&mut write, START, &self.session_key(s.sid), &start).ignore();
        self.query::<()>(write).await?;

        let mut index = redis::pipe();
        let index_args = [
            s.sid.to_string(),
            s.expires_at.to_string(),
            now_secs().to_string(),
            max_sessions.to_string(),
        ];
        eval(&mut index, INDEX, &self.user_key(s.user_id), &index_args);
        let over: Vec<String> = match self.query::<(Vec<String>,)>(index).await {
            Ok((over,)) => over,
            Err(e) => {
                let _ = self.delete_sessions(&[s.sid]).await;
                return Err(e);
            }
        };
        if over.is_empty() {
            return Ok(0);
        }
        // Beyond the cap: end the oldest sessions, then unlist them (in this
        // order, so a failure in between leaves them listed, never alive and
        // unlisted).
        let ended: Vec<Uuid> = over.iter().filter_map(|v| v.parse().ok()).collect();
        self.delete_sessions(&ended).await?;
        self.unlist(s.user_id, &over).await?;
        Ok(ended.len())
    }

    async fn rotate(&self, req: &RotateRequest) -> StoreResult<Rotation> {
        let key = self.session_key(req.sid);
        let tombstone = self.tombstone_key(req.sid);
        let out: Vec<String> = self
            .run(|mut c| async move {
                self.rotate
                    .key(&key)
                    .key(&tombstone)
                    .arg(req.presented.to_string())
                    .arg(req.new_jti.to_string())
                    .arg(req.new_iat)
                    .arg(req.grace_ms)
                    .invoke_async(&mut c)
                    .await
            })
            .await?;
        let sid = req.sid;
        let (status, rest) = out
            .split_first()
            .ok_or_else(|| StoreError::Corrupt("empty rotate reply".into()))?;
        match status.as_str() {
            "rotated" => Ok(Rotation::Rotated(record_from_hash(
                sid,
                &pairs_to_hash(rest),
            )?)),
            "grace" => Ok(Rotation::WithinGrace(record_from_hash(
                sid,
                &pairs_to_hash(rest),
            )?)),
            "reused" => Ok(Rotation::Reused),
            "gone" => Ok(Rotation::Gone),
            other => Err(StoreError::Corrupt(format!("rotate said {other}"))),
        }
    }

    async fn revoke_jti(&self, sid: Uuid, jti: Uuid, ttl_secs: i64) -> StoreResult<()> {
        if ttl_secs <= 0 {
            return Ok(());
        }
        let mut pipe = redis::pipe();
        self.revoke_cmd(&mut pipe, sid, jti, ttl_secs);
        self.query(pipe).await
    }

    async fn session(&self, sid: Uuid) -> StoreResult<Option<SessionRecord>> {
        let mut pipe = redis::pipe();
        pipe.hgetall(self.session_key(sid));
        let (h,): (HashMap<String, String>,) = self.query(pipe).await?;
        if h.is_empty() {
            return Ok(None);
        }
        record_from_hash(sid, &h).map(Some)
    }

    /// The session first, then its index entry (a failure in between leaves
    /// a stale entry, never a live session that is not listed).
    async fn end_session(&self, user_id: Uuid, sid: Uuid) -> StoreResult<bool> {
        let mut pipe = redis::pipe();
        eval(
            &mut pipe,
            END_OWN,
            &self.session_key(sid),
            &[user_id.to_string()],
        );
        let (deleted,): (i64,) = self.query_then_unlist(pipe, user_id, sid).await?;
        Ok(deleted > 0)
    }

    /// The revocation and the end of the session share the session's slot;
    /// the index entry follows (one round trip on a single Redis).
    async fn logout(&self, user_id: Uuid, sid: Uuid, jti: Uuid, ttl_secs: i64) -> StoreResult<()> {
        let mut pipe = redis::pipe();
        if ttl_secs > 0 {
            self.revoke_cmd(&mut pipe, sid, jti, ttl_secs);
        }
        eval(
            &mut pipe,
            END_OWN,
            &self.session_key(sid),
            &[user_id.to_string()],
        )
        .ignore();
        self.query_then_unlist::<()>(pipe, user_id, sid).await
    }

    /// Reads the index, deletes every listed session (each its own slot),
    /// then unlists them. A login in flight that is listed after the read
    /// keeps its session: the account change that called this bumps the
    /// user's security stamp first, and that login checks the stamp after
    /// storing its session (`accounts::signin`), so it ends it itself.
    async fn end_user_sessions(&self, user_id: Uuid) -> StoreResult<()> {
        let listed = self.listed(user_id).await?;
        if listed.is_empty() {
            return Ok(());
        }
        let sids: Vec<Uuid> = listed.iter().filter_map(|s| s.parse().ok()).collect();
        self.delete_sessions(&sids).await?;
        self.unlist(user_id, &listed).await
    }

    async fn sessions(&self, user_id: Uuid) -> StoreResult<Vec<SessionRecord>> {
        let listed = self.listed(user_id).await?;
        let sids: Vec<Uuid> = listed.iter().filter_map(|s| s.parse().ok()).collect();
        if sids.is_empty() {
            return Ok(vec![]);
        }
        let reads = sids.iter().map(|sid| {
            let mut p = redis::pipe();
            p.hgetall(self.session_key(*sid));
            p
        });
        let hashes: Vec<(HashMap<String, String>,)> = self.query_each(reads).await?;
        let mut out = Vec::new();
        let mut stale = Vec::new();
        for (sid, (h,)) in sids.into_iter().zip(hashes) {
            if h.is_empty() {
                stale.push(sid.to_string());
            } else {
                out.push(record_from_hash(sid, &h)?);
            }
        }
        self.unlist(user_id, &stale).await?;
        out.sort_by_key(|s| (s.created_at, s.sid));
        Ok(out)
    }

    async fn failures(&self, keys: &[LimitKey]) -> StoreResult<Vec<Option<Failures>>> {
        let reads = keys.iter().map(|key| {
            let key = self.limit_key(key);
            let mut p = redis::pipe();
            p.get(&key).pttl(&key);
            p
        });
        let pairs: Vec<(Option<u64>, i64)> = self.query_each(reads).await?;
        Ok(pairs
            .into_iter()
            .map(|(count, ttl_ms)| match (count, ttl_ms) {
                // Expired between the two reads.
                (_, -2) | (None, _) => None,
                (Some(count), ttl_ms) => Some(Failures {
                    count,
                    ttl_ms: ttl_ms.max(0),
                }),
            })
            .collect())
    }

    async fn record_failures(
        &self,
        keys: &[LimitKey],
        window_secs: u64,
    ) -> StoreResult<Vec<Failures>> {
        let out: Vec<(i64, i64)> = self
            .per_key(RECORD_FAILURE, keys, &[window_secs.max(1)])
            .await?;
        if out.len() != keys.len() {
            return Err(StoreError::Corrupt("short record_failures reply".into()));
        }
        Ok(out
            .into_iter()
            .map(|(count, ttl_ms)| Failures {
                count: count.max(0) as u64,
                ttl_ms,
            })
            .collect())
    }

    async fn forgive_failures(&self, keys: &[LimitKey]) -> StoreResult<()> {
        self.per_key::<i64>(FORGIVE_FAILURE, keys, &[])
            .await
            .map(|_| ())
    }

    async fn clear_failures(&self, keys: &[LimitKey]) -> StoreResult<()> {
        let dels = keys.iter().map(|key| {
            let mut p = redis::pipe();
            p.del(self.limit_key(key)).ignore();
            p
        });
        self.query_each::<()>(dels).await.map(|_| ())
    }

    /// `SET key 1 NX EX ttl`: one key, one atomic command on any deployment.
    async fn claim_once(&self, key: &OnceKey, ttl_secs: u64) -> StoreResult<bool> {
        let mut pipe = redis::pipe();
        pipe.cmd("SET")
            .arg(format!("{}{key}", self.prefix))
            .arg(1)
            .arg("NX")
            .arg("EX")
            .arg(ttl_secs.max(1));
        // `OK` when set, nil when the key exists.
        let (set,): (Option<String>,) = self.query(pipe).await?;
        Ok(set.is_some())
    }

    /// `HSET` + `EXPIRE` in one transaction: never a challenge without TTL.
    async fn put_challenge(
        &self,
        key: &ChallengeKey,
        payload: &str,
        ttl_secs: u64,
    ) -> StoreResult<()> {
        let key = format!("{}{key}", self.prefix);
        let mut pipe = redis::pipe();
        pipe.atomic()
            .del(&key)
            .ignore()
            .hset_multiple(&key, &[("p", payload), ("t", "0")])
            .ignore()
            .expire(&key, ttl_secs.max(1) as i64)
            .ignore();
        self.query::<()>(pipe).await
    }

    /// One script on one key: read and count the try.
    async fn try_challenge(
        &self,
        key: &ChallengeKey,
        max_tries: u32,
    ) -> StoreResult<Option<String>> {
        let mut pipe = redis::pipe();
        eval(
            &mut pipe,
            TRY_CHALLENGE,
            &format!("{}{key}", self.prefix),
            &[max_tries.to_string()],
        );
        let (payload,): (Option<String>,) = self.query(pipe).await?;
        Ok(payload)
    }

    async fn take_challenge(&self, key: &ChallengeKey) -> StoreResult<bool> {
        let mut pipe = redis::pipe();
        pipe.del(format!("{}{key}", self.prefix));
        let (removed,): (i64,) = self.query(pipe).await?;
        Ok(removed == 1)
    }

    /// On a cluster, PING goes to every node: ready means every slot answers.
    async fn ping(&self) -> StoreResult<()> {
        self.run(|mut c| async move { redis::cmd("PING").query_async::<Value>(&mut c).await })
            .await
            .map(|_| ())
    }
}

/// KEYS[1] the challenge, ARGV[1] the most tries it may have. Returns the
/// payload (one more try spent) or nil. A challenge out of tries stays
/// until taken or expired: a try within the limit may still take it.
const TRY_CHALLENGE: &str = r#"
local payload = redis.call('HGET', KEYS[1], 'p')
if not payload then return false end
local tries = redis.call('HINCRBY', KEYS[1], 't', 1)
if tries > tonumber(ARGV[1]) then return false end
return payload
"#;
