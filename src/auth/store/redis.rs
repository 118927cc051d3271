//! Redis token store. A session's keys share the `{sid}` hash tag, so the
//! check and the rotation script touch one Redis Cluster slot.
//!
//! Keys (prefix `P`):
//! - `P{sid}:session`: hash of the session; expires at the session's end.
//! - `P{sid}:revoked:<jti>`: a revoked access token; expires with the token.
//! - `P{sid}:reused`: the session hash after reuse revoked it (tombstone);
//!   keeps the session's TTL.
//! - `Puser:{uid}:index`: sorted set of the user's session ids, scored by
//!   their end (unix s); expires with the last of them; ended members are
//!   pruned at the next login and when listed.
//! - `Plogin:acct:<uid>`, `Plogin:unknown:<sha256>`, `Plogin:ip:<addr>`:
//!   login-failure counters; expire at the end of their fixed window. Each
//!   command touches one key, so they work on any Cluster slot.

use std::{collections::HashMap, future::Future, time::Duration};

use async_trait::async_trait;
use deadpool_redis::{Config, Pool, Runtime, Timeouts, redis};
use uuid::Uuid;

use super::{
    Failures, LimitKey, RotateRequest, Rotation, SessionRecord, StoreError, StoreResult,
    TokenStore, now_secs,
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

pub struct RedisStore {
    pool: Pool,
    prefix: String,
    rotate: redis::Script,
}

/// Appends `EVAL script` to a pipeline: the small scripts travel with their
/// command so that several of them share one round trip (EVALSHA would need
/// a load first).
fn eval<'a>(
    pipe: &'a mut redis::Pipeline,
    script: &str,
    key: &str,
    args: &[String],
) -> &'a mut redis::Pipeline {
    pipe.cmd("EVAL").arg(script).arg(1).arg(key).arg(args)
}

fn unavailable(e: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(e.to_string())
}

impl RedisStore {
    pub fn new(url: &str, prefix: &str) -> Result<Self, StoreError> {
        let mut cfg = Config::from_url(url);
        let mut pool_cfg = cfg.get_pool_config();
        pool_cfg.max_size = 32;
        pool_cfg.timeouts = Timeouts {
            wait: Some(OP_TIMEOUT),
            create: Some(OP_TIMEOUT),
            recycle: Some(OP_TIMEOUT),
        };
        cfg.pool = Some(pool_cfg);
        let pool = cfg
            .create_pool(Some(Runtime::Tokio1))
            .map_err(unavailable)?;
        Ok(Self {
            pool,
            prefix: prefix.to_owned(),
            rotate: redis::Script::new(ROTATE),
        })
    }

    /// Warns (and counts `store_eviction_policy`) when Redis may evict keys:
    /// an evicted revocation or login counter silently un-revokes a token or
    /// resets a limit. Managed Redis often refuses `CONFIG`; then nothing can
    /// be told and nothing is said beyond a debug line.
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

    /// Deletes the session if it is the user's, and drops it from the
    /// user's index (a no-op for someone else's session).
    fn end_session_cmds(&self, pipe: &mut redis::Pipeline, user_id: Uuid, sid: Uuid) {
        eval(
            pipe,
            END_OWN,
            &self.session_key(sid),
            &[user_id.to_string()],
        );
        pipe.zrem(self.user_key(user_id), sid.to_string());
    }

    fn limit_key(&self, key: &LimitKey) -> String {
        format!("{}{key}", self.prefix)
    }

    /// One EVAL of `script` per key, pipelined: one round trip.
    fn per_key(&self, script: &str, keys: &[LimitKey], args: &[u64]) -> redis::Pipeline {
        let mut pipe = redis::pipe();
        for key in keys {
            let cmd = pipe.cmd("EVAL").arg(script).arg(1).arg(self.limit_key(key));
            for a in args {
                cmd.arg(*a);
            }
        }
        pipe
    }

    /// Runs one store operation with a pooled connection and a deadline.
    async fn run<T, F, Fut>(&self, f: F) -> StoreResult<T>
    where
        F: FnOnce(deadpool_redis::Connection) -> Fut,
        Fut: Future<Output = redis::RedisResult<T>>,
    {
        let work = async {
            let conn = self.pool.get().await.map_err(unavailable)?;
            f(conn).await.map_err(unavailable)
        };
        tokio::time::timeout(OP_TIMEOUT, work)
            .await
            .map_err(|_| StoreError::Unavailable("timed out".into()))?
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
    async fn check(&self, sid: Uuid, jti: Uuid) -> StoreResult<bool> {
        let (session, revoked) = (self.session_key(sid), self.revoked_key(sid, jti));
        let (alive, gone): (bool, bool) = self
            .run(|mut c| async move {
                redis::pipe()
                    .exists(&session)
                    .exists(&revoked)
                    .query_async(&mut c)
                    .await
            })
            .await?;
        Ok(alive && !gone)
    }

    async fn start_session(&self, s: &SessionRecord, max_sessions: usize) -> StoreResult<()> {
        let ttl = s.expires_at - now_secs();
        if ttl <= 0 {
            return Ok(());
        }
        let key = self.session_key(s.sid);
        let user_key = self.user_key(s.user_id);
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
        let sid = s.sid.to_string();
        let mut start = vec![ttl.to_string()];
        for (k, v) in fields {
            start.push(k.to_owned());
            start.push(v);
        }
        let mut pipe = redis::pipe();
        eval(&mut pipe, START, &key, &start).ignore();
        let index_args = [
            sid,
            s.expires_at.to_string(),
            now_secs().to_string(),
            max_sessions.to_string(),
        ];
        eval(&mut pipe, INDEX, &user_key, &index_args);
        let (over,): (Vec<String>,) = self
            .run(|mut c| async move { pipe.query_async(&mut c).await })
            .await?;
        if over.is_empty() {
            return Ok(());
        }
        // Beyond the cap: end the oldest sessions, then unlist them.
        let mut pipe = redis::pipe();
        for sid in &over {
            if let Ok(sid) = sid.parse::<Uuid>() {
                pipe.del(self.session_key(sid)).ignore();
            }
        }
        pipe.zrem(&user_key, &over).ignore();
        self.run(|mut c| async move { pipe.query_async::<()>(&mut c).await })
            .await
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
        let key = self.revoked_key(sid, jti);
        self.run(|mut c| async move {
            redis::cmd("SET")
                .arg(&key)
                .arg(1)
                .arg("EX")
                .arg(ttl_secs)
                .query_async::<()>(&mut c)
                .await
        })
        .await
    }

    async fn session(&self, sid: Uuid) -> StoreResult<Option<SessionRecord>> {
        let key = self.session_key(sid);
        let h: HashMap<String, String> = self
            .run(|mut c| async move { redis::cmd("HGETALL").arg(&key).query_async(&mut c).await })
            .await?;
        if h.is_empty() {
            return Ok(None);
        }
        record_from_hash(sid, &h).map(Some)
    }

    async fn end_session(&self, user_id: Uuid, sid: Uuid) -> StoreResult<bool> {
        let mut pipe = redis::pipe();
        self.end_session_cmds(&mut pipe, user_id, sid);
        let (deleted, _): (i64, i64) = self
            .run(|mut c| async move { pipe.query_async(&mut c).await })
            .await?;
        Ok(deleted > 0)
    }

    /// Revocation of the jti and the end of the session in one round trip.
    async fn logout(&self, user_id: Uuid, sid: Uuid, jti: Uuid, ttl_secs: i64) -> StoreResult<()> {
        let mut pipe = redis::pipe();
        if ttl_secs > 0 {
            pipe.cmd("SET")
                .arg(self.revoked_key(sid, jti))
                .arg(1)
                .arg("EX")
                .arg(ttl_secs)
                .ignore();
        }
        self.end_session_cmds(&mut pipe, user_id, sid);
        self.run(|mut c| async move { pipe.query_async::<()>(&mut c).await })
            .await
    }

    async fn end_user_sessions(&self, user_id: Uuid) -> StoreResult<()> {
        let user_key = self.user_key(user_id);
        let sids: Vec<String> = self
            .run(|mut c| {
                let user_key = user_key.clone();
                async move {
                    redis::cmd("ZRANGE")
                        .arg(&user_key)
                        .arg(0)
                        .arg(-1)
                        .query_async(&mut c)
                        .await
                }
            })
            .await?;
        let mut pipe = redis::pipe();
        for sid in &sids {
            if let Ok(sid) = sid.parse::<Uuid>() {
                pipe.del(self.session_key(sid)).ignore();
            }
        }
        pipe.zrem(&user_key, &sids).ignore();
        if sids.is_empty() {
            return Ok(());
        }
        self.run(|mut c| async move { pipe.query_async::<()>(&mut c).await })
            .await
    }

    async fn sessions(&self, user_id: Uuid) -> StoreResult<Vec<SessionRecord>> {
        let user_key = self.user_key(user_id);
        let sids: Vec<String> = self
            .run(|mut c| {
                let user_key = user_key.clone();
                async move {
                    redis::cmd("ZRANGE")
                        .arg(&user_key)
                        .arg(0)
                        .arg(-1)
                        .query_async(&mut c)
                        .await
                }
            })
            .await?;
        let sids: Vec<Uuid> = sids.iter().filter_map(|s| s.parse().ok()).collect();
        if sids.is_empty() {
            return Ok(vec![]);
        }
        let mut pipe = redis::pipe();
        for sid in &sids {
            pipe.cmd("HGETALL").arg(self.session_key(*sid));
        }
        let hashes: Vec<HashMap<String, String>> = self
            .run(|mut c| async move { pipe.query_async(&mut c).await })
            .await?;
        let mut out = Vec::new();
        let mut stale = Vec::new();
        for (sid, h) in sids.into_iter().zip(hashes) {
            if h.is_empty() {
                stale.push(sid.to_string());
            } else {
                out.push(record_from_hash(sid, &h)?);
            }
        }
        if !stale.is_empty() {
            self.run(|mut c| async move {
                redis::cmd("ZREM")
                    .arg(&user_key)
                    .arg(&stale)
                    .query_async::<()>(&mut c)
                    .await
            })
            .await?;
        }
        out.sort_by_key(|s| (s.created_at, s.sid));
        Ok(out)
    }

    async fn failures(&self, keys: &[LimitKey]) -> StoreResult<Vec<Option<Failures>>> {
        if keys.is_empty() {
            return Ok(vec![]);
        }
        let mut pipe = redis::pipe();
        for key in keys {
            let key = self.limit_key(key);
            pipe.get(&key).pttl(&key);
        }
        let flat: Vec<redis::Value> = self
            .run(|mut c| async move { pipe.query_async(&mut c).await })
            .await?;
        flat.chunks_exact(2)
            .map(|pair| {
                let count: Option<u64> = redis::from_redis_value_ref(&pair[0])
                    .map_err(|e| StoreError::Corrupt(format!("failure counter: {e}")))?;
                let ttl_ms: i64 = redis::from_redis_value_ref(&pair[1])
                    .map_err(|e| StoreError::Corrupt(format!("failure counter ttl: {e}")))?;
                Ok(match (count, ttl_ms) {
                    // Expired between the two reads.
                    (_, -2) | (None, _) => None,
                    (Some(count), ttl_ms) => Some(Failures {
                        count,
                        ttl_ms: ttl_ms.max(0),
                    }),
                })
            })
            .collect()
    }

    async fn record_failures(
        &self,
        keys: &[LimitKey],
        window_secs: u64,
    ) -> StoreResult<Vec<Failures>> {
        if keys.is_empty() {
            return Ok(vec![]);
        }
        let pipe = self.per_key(RECORD_FAILURE, keys, &[window_secs.max(1)]);
        let out: Vec<(i64, i64)> = self
            .run(|mut c| async move { pipe.query_async(&mut c).await })
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
        if keys.is_empty() {
            return Ok(());
        }
        let pipe = self.per_key(FORGIVE_FAILURE, keys, &[]);
        self.run(|mut c| async move { pipe.query_async::<Vec<i64>>(&mut c).await })
            .await
            .map(|_| ())
    }

    async fn clear_failures(&self, keys: &[LimitKey]) -> StoreResult<()> {
        if keys.is_empty() {
            return Ok(());
        }
        let mut pipe = redis::pipe();
        for key in keys {
            pipe.del(self.limit_key(key)).ignore();
        }
        self.run(|mut c| async move { pipe.query_async::<()>(&mut c).await })
            .await
    }

    async fn ping(&self) -> StoreResult<()> {
        self.run(|mut c| async move { redis::cmd("PING").query_async::<String>(&mut c).await })
            .await
            .map(|_| ())
    }
}
