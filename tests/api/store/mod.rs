//! Token store behaviour suite, run against MemoryStore and RedisStore.
//!
//! Each test body is written once as `async fn name(store, redis)` where
//! `redis` is `Some((url, prefix))` for the Redis backend (so a test can look
//! at the raw keys) and `None` for the in-memory one; `store_suite!` at the
//! bottom generates the `#[tokio::test]` wrappers per backend. The bodies
//! live in one submodule per area; the helpers here are theirs.

mod challenges;
mod claims;
mod counters;
mod redis_keys;
mod rotation;
mod sessions;

use challenges::*;
use claims::*;
use counters::*;
use redis_keys::*;
use rotation::*;
use sessions::*;

use std::{sync::Arc, time::Duration};

use tessera::auth::store::{
    Failures, LimitKey, MemoryStore, RedisStore, RotateRequest, Rotation, SessionRecord,
    TokenStore, now_ms, now_secs,
};
use uuid::Uuid;

type Store = Arc<dyn TokenStore>;
/// `(url, key prefix)` of the Redis backend under test.
type RedisInfo = Option<(String, String)>;

// ---------------------------------------------------------------- backends

fn memory_backend() -> (Store, RedisInfo) {
    (Arc::new(MemoryStore::new()), None)
}

async fn redis_backend() -> (Store, RedisInfo) {
    // The harness starts redis-server synchronously (it waits for the port).
    let url = tokio::task::spawn_blocking(|| crate::helpers::shared_redis_url().to_owned())
        .await
        .expect("start redis-server");
    let prefix = format!("st{}:", Uuid::new_v4().simple());
    let store = RedisStore::new(&url, &prefix).expect("create RedisStore");
    (Arc::new(store), Some((url, prefix)))
}

/// The store on the shared 3-master Redis Cluster; `RedisInfo`'s url is the
/// comma-separated seed list.
async fn redis_cluster_backend() -> (Store, RedisInfo) {
    let url =
        tokio::task::spawn_blocking(|| crate::helpers::cluster::shared_cluster_url().to_owned())
            .await
            .expect("start the Redis Cluster");
    let prefix = format!("sc{}:", Uuid::new_v4().simple());
    let seeds: Vec<&str> = url.split(',').collect();
    let store = RedisStore::new_cluster(&seeds, &prefix).expect("create cluster RedisStore");
    (Arc::new(store), Some((url, prefix)))
}

macro_rules! store_suite {
    (both: [$($name:ident),* $(,)?], redis_only: [$($rname:ident),* $(,)?] $(,)?) => {
        mod memory_store {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let (store, redis) = super::memory_backend();
                    super::$name(store, redis).await
                }
            )*
        }
        mod redis_store {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let (store, redis) = super::redis_backend().await;
                    super::$name(store, redis).await
                }
            )*
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $rname() {
                    let (store, redis) = super::redis_backend().await;
                    super::$rname(store, redis).await
                }
            )*
        }
        mod redis_cluster_store {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let (store, redis) = super::redis_cluster_backend().await;
                    super::$name(store, redis).await
                }
            )*
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $rname() {
                    let (store, redis) = super::redis_cluster_backend().await;
                    super::$rname(store, redis).await
                }
            )*
        }
    };
}

// ---------------------------------------------------------------- helpers

/// A new session of `user_id` ending `ttl_secs` from now. The time fields are
/// all different so that a store mixing them up is caught.
fn record(user_id: Uuid, ttl_secs: i64) -> SessionRecord {
    let now = now_secs();
    SessionRecord {
        sid: Uuid::now_v7(),
        user_id,
        current_jti: Uuid::now_v7(),
        current_iat: now - 3,
        parent_jti: None,
        rotated_ms: None,
        created_at: now - 5,
        last_used_at: now - 2,
        expires_at: now + ttl_secs,
        user_agent: Some("Mozilla/5.0 (X11; Linux x86_64) store-suite".into()),
        ip: Some("203.0.113.7".into()),
    }
}

async fn start(store: &Store, s: &SessionRecord) {
    let ended = store
        .start_session(s, 0)
        .await
        .unwrap_or_else(|e| panic!("start_session({}) failed: {e}", s.sid));
    assert_eq!(ended, 0, "no cap, yet start_session ended sessions");
}

async fn check(store: &Store, sid: Uuid, jti: Uuid) -> bool {
    store.check(sid, jti).await.expect("check failed")
}

async fn session(store: &Store, sid: Uuid) -> Option<SessionRecord> {
    store.session(sid).await.expect("session failed")
}

async fn sessions(store: &Store, user_id: Uuid) -> Vec<SessionRecord> {
    store.sessions(user_id).await.expect("sessions failed")
}

async fn rotate(
    store: &Store,
    sid: Uuid,
    presented: Uuid,
    new_jti: Uuid,
    new_iat: i64,
    grace_ms: i64,
) -> Rotation {
    let req = RotateRequest {
        sid,
        presented,
        new_jti,
        new_iat,
        grace_ms,
    };
    let before = now_ms();
    let r = store.rotate(&req).await.expect("rotate failed");
    if let Rotation::Rotated(s) = &r {
        // The rotation time is the store's clock: on loopback, within the call.
        let at = s.rotated_ms.expect("a rotation without its time");
        assert!(
            (before - 50..=now_ms() + 50).contains(&at),
            "rotated_ms {at} outside the call [{before}, {}]",
            now_ms()
        );
    }
    r
}

fn expect_rotated(r: Rotation) -> SessionRecord {
    match r {
        Rotation::Rotated(s) => s,
        other => panic!("expected Rotated, got {other:?}"),
    }
}

fn expect_grace(r: Rotation) -> SessionRecord {
    match r {
        Rotation::WithinGrace(s) => s,
        other => panic!("expected WithinGrace, got {other:?}"),
    }
}

/// What a rotation of `s` to `new_jti` must produce; `r` is the store's
/// answer, whose rotation time (the store's clock) is taken as it is.
fn after_rotation(
    s: &SessionRecord,
    new_jti: Uuid,
    new_iat: i64,
    r: &SessionRecord,
) -> SessionRecord {
    SessionRecord {
        current_jti: new_jti,
        current_iat: new_iat,
        parent_jti: Some(s.current_jti),
        rotated_ms: r.rotated_ms,
        last_used_at: new_iat,
        ..s.clone()
    }
}

/// Sleeps until just after a second boundary, so that an expiry of
/// "now + 1 second" leaves most of a second for the assertions before it.
async fn align_to_second() {
    let into = now_ms().rem_euclid(1000);
    if into > 50 {
        tokio::time::sleep(Duration::from_millis((1000 - into + 20) as u64)).await;
    }
}

async fn redis_conn(url: &str) -> redis::aio::MultiplexedConnection {
    redis::Client::open(url)
        .expect("redis client")
        .get_multiplexed_async_connection()
        .await
        .expect("connect to redis")
}

/// One command on the Redis (or, for a seed list, the Redis Cluster) of `url`.
async fn raw_cmd<T: redis::FromRedisValue>(url: &str, cmd: &redis::Cmd) -> T {
    if url.contains(',') {
        let mut con = redis::cluster::ClusterClient::new(url.split(',').collect::<Vec<_>>())
            .expect("cluster client")
            .get_async_connection()
            .await
            .expect("connect to the cluster");
        cmd.query_async(&mut con).await.expect("cluster command")
    } else {
        let mut con = redis_conn(url).await;
        cmd.query_async(&mut con).await.expect("redis command")
    }
}

/// Every key under `prefix` with its TTL (seconds; -1 = none, -2 = missing),
/// from every node of `url` (one Redis, or each node of a cluster seed list:
/// a node lists and answers for its own slots only).
async fn keys_with_ttl(url: &str, prefix: &str) -> Vec<(String, i64)> {
    let mut out = Vec::new();
    for node in url.split(',') {
        let mut con = redis_conn(node).await;
        let mut keys: Vec<String> = Vec::new();
        let mut cursor: u64 = 0;
        loop {
            let (next, batch): (u64, Vec<String>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(format!("{prefix}*"))
                .arg("COUNT")
                .arg(1000)
                .query_async(&mut con)
                .await
                .expect("SCAN");
            keys.extend(batch);
            if next == 0 {
                break;
            }
            cursor = next;
        }
        keys.sort();
        keys.dedup();
        for k in keys {
            let ttl: i64 = redis::cmd("TTL")
                .arg(&k)
                .query_async(&mut con)
                .await
                .expect("TTL");
            out.push((k, ttl));
        }
    }
    out.sort();
    out
}

/// No key under the prefix may live forever.
fn assert_all_expire(keys: &[(String, i64)], when: &str) {
    for (k, ttl) in keys {
        assert!(
            *ttl > 0,
            "{when}: key {k} has TTL {ttl} (must be > 0): {keys:?}"
        );
    }
}

store_suite! {
    both: [
        start_check_and_read_back,
        rotate_then_strict_reuse,
        grace_window,
        concurrent_rotation_strict,
        concurrent_rotation_grace,
        revoke_jti_scoped,
        end_and_list_sessions,
        session_cap_ends_the_oldest,
        session_expires,
        revoked_jti_expires,
        failure_counters,
        failure_window_is_fixed_and_expires,
        claim_once_until_expiry,
        concurrent_claims_one_winner,
        challenge_payload_for_max_tries,
        challenge_taken_once,
        concurrent_tries_within_max_tries,
        challenge_expires,
    ],
    redis_only: [
        redis_keys_expire_and_share_hash_tag,
        redis_failure_keys_expire,
        redis_claim_is_one_expiring_key,
        redis_challenge_is_one_expiring_key,
    ],
}
