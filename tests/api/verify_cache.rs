//! The verify cache (`TESSERA_VERIFY_CACHE=tracking`, issue 22): a token
//! answered from one replica's cache is refused there within 100 ms of any
//! revocation made on another replica; a lost or hanging tracking
//! connection empties the cache (checks go to Redis, a hanging or dead
//! Redis is 503, never a cached 200) until tracking is back; an entry ends
//! with its token; the setting is refused without Redis and when unknown;
//! with the cache off nothing changes.

use std::{
    path::PathBuf,
    time::{Duration, Instant},
};

use reqwest::Method;
use serde_json::json;
use tessera::config::{Config, VerifyCacheMode};

use crate::helpers::{
    Backend, PASSWORD, RedisServer, SECRET, TestApp, free_port,
    process::{tessera, try_output_within},
    spawn_with_config, test_config,
};

crate::on_backends!(
    [postgres_redis => PostgresRedis, postgres_cluster => PostgresCluster]
    (
        session_revocations_on_one_replica_reach_the_others_cache,
        account_revocations_on_one_replica_reach_the_others_cache,
        a_lost_tracking_connection_empties_the_cache_until_it_is_back,
        an_entry_ends_with_its_token
    )
);

/// How soon a revocation on one replica must be seen by another.
const PROPAGATION: Duration = Duration::from_millis(100);
const POLL: Duration = Duration::from_millis(5);

const HITS: &str = "tessera_verify_cache_hits_total";
const LIVE: &str = "tessera_verify_cache_live";
const FLUSHES: &str = "tessera_verify_cache_flushes_total";
const ENTRIES: &str = "tessera_verify_cache_entries";

// ---------------------------------------------------------------- helpers

/// The value of an unlabelled series on `app`'s /metrics, if present.
async fn metric(app: &TestApp, name: &str) -> Option<f64> {
    let r = app.get("/metrics", None).await;
    r.assert_status(200);
    r.text
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
}

async fn cache_metric(app: &TestApp, name: &str) -> f64 {
    metric(app, name)
        .await
        .unwrap_or_else(|| panic!("{name} missing from /metrics of a replica with the cache"))
}

/// Waits until `app`'s cache is live (its tracking connections are up).
async fn wait_live(app: &TestApp, within: Duration) {
    let deadline = Instant::now() + within;
    while cache_metric(app, LIVE).await != 1.0 {
        assert!(
            Instant::now() < deadline,
            "the verify cache did not become live within {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A configuration with the cache on (after `tweak`).
async fn cache_config(backend: Backend, tweak: impl FnOnce(&mut Config)) -> Config {
    let mut config = test_config(backend).await;
    tweak(&mut config);
    config.verify_cache = VerifyCacheMode::Tracking;
    config
}

/// Two replicas on one database and one Redis (or Cluster) with one key
/// prefix: B with the cache, A with it when `a_cache`. Both live.
async fn replicas(
    backend: Backend,
    a_cache: bool,
    tweak: impl FnOnce(&mut Config),
) -> (TestApp, TestApp) {
    let config = cache_config(backend, tweak).await;
    let mut a_config = config.clone();
    if !a_cache {
        a_config.verify_cache = VerifyCacheMode::Off;
    }
    let a = spawn_with_config(a_config, backend).await;
    let b = spawn_with_config(config, backend).await;
    wait_live(&b, Duration::from_secs(10)).await;
    if a_cache {
        wait_live(&a, Duration::from_secs(10)).await;
    } else {
        assert_eq!(metric(&a, LIVE).await, None, "A runs without the cache");
    }
    (a, b)
}

/// Checks `access` on `app` twice; the second check must be answered from
/// the cache (its hits grow), so a later refusal cannot be a plain miss.
async fn cached_on(app: &TestApp, access: &str) {
    app.verify(access).await.assert_status(200);
    let hits = cache_metric(app, HITS).await;
    app.verify(access).await.assert_status(200);
    let after = cache_metric(app, HITS).await;
    assert!(
        after > hits,
        "the second check was not answered from the cache (hits {hits} -> {after})"
    );
}

/// Polls `app` every `POLL` until it refuses `access` as revoked; fails
/// when a check sent more than `PROPAGATION` after `since` still passes.
async fn refused_within(app: &TestApp, access: &str, since: Instant, what: &str) {
    loop {
        let sent = since.elapsed();
        let r = app.verify(access).await;
        if r.status == 401 {
            r.assert_error(401, "TokenRevoked");
            return;
        }
        r.assert_status(200);
        assert!(
            sent <= PROPAGATION,
            "{what}: the other replica still accepted the token {sent:?} after the revocation answered"
        );
        tokio::time::sleep(POLL).await;
    }
}

/// After a revocation on A answered at `since`: A refuses at once (its own
/// writes forget first), B within `PROPAGATION`.
async fn refused_on_both(a: &TestApp, b: &TestApp, tokens: &[&str], since: Instant, what: &str) {
    for t in tokens {
        let r = a.verify(t).await;
        assert_eq!(
            r.body["code"], "TokenRevoked",
            "{what}: the replica that revoked still accepts the token: {r:?}"
        );
    }
    for t in tokens {
        refused_within(b, t, since, what).await;
    }
}

async fn cached_on_both(a: &TestApp, b: &TestApp, tokens: &[&str]) {
    for t in tokens {
        cached_on(a, t).await;
        cached_on(b, t).await;
    }
}

async fn sid_of(app: &TestApp, access: &str) -> String {
    let v = app.verify(access).await;
    v.assert_status(200);
    v.str("sid")
}

// ------------------------------------------------------- revocation rules

async fn session_revocations_on_one_replica_reach_the_others_cache(backend: Backend) {
    let (a, b) = replicas(backend, true, |c| {
        c.max_sessions_per_user = 2;
        c.refresh_reuse_grace = Duration::ZERO;
    })
    .await;

    // Logout.
    let t = a.user("logout").await;
    cached_on_both(&a, &b, &[&t.access]).await;
    a.post("/auth/logout", Some(&t.access))
        .await
        .assert_status(204);
    refused_on_both(&a, &b, &[&t.access], Instant::now(), "logout").await;

    // Logout-all: every session of the user.
    let first = a.user("logoutall").await;
    let second = a.login("logoutall").await;
    cached_on_both(&a, &b, &[&first.access, &second.access]).await;
    a.post("/auth/logout-all", Some(&first.access))
        .await
        .assert_status(204);
    refused_on_both(
        &a,
        &b,
        &[&first.access, &second.access],
        Instant::now(),
        "logout-all",
    )
    .await;

    // DELETE /auth/sessions/{id}: that session only.
    let keep = a.user("endone").await;
    let end = a.login("endone").await;
    cached_on_both(&a, &b, &[&keep.access, &end.access]).await;
    let sid = sid_of(&b, &end.access).await;
    a.delete(&format!("/auth/sessions/{sid}"), Some(&keep.access))
        .await
        .assert_status(204);
    refused_on_both(&a, &b, &[&end.access], Instant::now(), "DELETE session").await;
    b.verify(&keep.access).await.assert_status(200);

    // Refresh-token reuse (strict): the whole session, both access tokens.
    let old = a.user("reuse").await;
    let r = a.refresh(&old.refresh).await;
    r.assert_status(200);
    let new_access = r.str("access_token");
    cached_on_both(&a, &b, &[&old.access, &new_access]).await;
    a.refresh(&old.refresh)
        .await
        .assert_error(401, "TokenReused");
    refused_on_both(
        &a,
        &b,
        &[&old.access, &new_access],
        Instant::now(),
        "refresh-token reuse",
    )
    .await;

    // The session cap (2): a third login ends the oldest session.
    let oldest = a.user("capped").await;
    let kept = a.login("capped").await;
    cached_on_both(&a, &b, &[&oldest.access, &kept.access]).await;
    a.login("capped").await;
    refused_on_both(&a, &b, &[&oldest.access], Instant::now(), "session cap").await;
    b.verify(&kept.access).await.assert_status(200);
}

async fn account_revocations_on_one_replica_reach_the_others_cache(backend: Backend) {
    let (a, b) = replicas(backend, true, |_| {}).await;
    let admin = a.admin().await;

    // Password change: every session of the user.
    let first = a.user("password").await;
    let second = a.login("password").await;
    cached_on_both(&a, &b, &[&first.access, &second.access]).await;
    a.send_json(
        Method::PUT,
        "/users/me/password",
        &json!({"current_password": PASSWORD, "new_password": "another horse battery"}),
        Some(&first.access),
    )
    .await
    .assert_status(204);
    refused_on_both(
        &a,
        &b,
        &[&first.access, &second.access],
        Instant::now(),
        "password change",
    )
    .await;

    // Admin changes: block, role change, delete.
    for (name, change) in [
        ("blocked", Some(json!({"blocked": true}))),
        ("promoted", Some(json!({"role": "admin"}))),
        ("deleted", None),
    ] {
        let t = a.user(name).await;
        let other = a.login(name).await;
        cached_on_both(&a, &b, &[&t.access, &other.access]).await;
        let path = format!("/users/{}", t.user_id);
        match &change {
            Some(body) => a
                .send_json(Method::PATCH, &path, body, Some(&admin.access))
                .await
                .assert_status(200),
            None => a
                .delete(&path, Some(&admin.access))
                .await
                .assert_status(204),
        }
        let what = format!("admin change ({name})");
        refused_on_both(&a, &b, &[&t.access, &other.access], Instant::now(), &what).await;
    }
    // The admin's own cached token is untouched by all that.
    cached_on(&b, &admin.access).await;
}

// ------------------------------------------------------ tracking lost

/// The nodes of `app`'s Redis: the one server, or every Cluster seed.
fn redis_nodes(app: &TestApp) -> Vec<String> {
    app.config
        .redis_url
        .as_deref()
        .expect("a Redis backend")
        .split(',')
        .map(|s| s.trim().to_owned())
        .collect()
}

async fn node_con(url: &str) -> redis::aio::MultiplexedConnection {
    redis::Client::open(url)
        .expect("redis url")
        .get_multiplexed_async_connection()
        .await
        .unwrap_or_else(|e| panic!("connect to {url}: {e}"))
}

/// The node holding `key` (on a Cluster, the others answer MOVED).
async fn node_holding(nodes: &[String], key: &str) -> String {
    for url in nodes {
        let found: redis::RedisResult<i64> = redis::cmd("EXISTS")
            .arg(key)
            .query_async(&mut node_con(url).await)
            .await;
        if matches!(found, Ok(1)) {
            return url.clone();
        }
    }
    panic!("no node of {nodes:?} holds {key}");
}

/// `CLIENT LIST` lines of `node` whose name is `name`.
async fn clients_named(node: &str, name: &str) -> Vec<String> {
    let list: String = redis::cmd("CLIENT")
        .arg("LIST")
        .query_async(&mut node_con(node).await)
        .await
        .expect("CLIENT LIST");
    list.lines()
        .filter(|l| l.split(' ').any(|f| f == format!("name={name}")))
        .map(str::to_owned)
        .collect()
}

fn field<'a>(client: &'a str, key: &str) -> &'a str {
    client
        .split(' ')
        .find_map(|f| f.strip_prefix(key)?.strip_prefix('='))
        .unwrap_or_else(|| panic!("no {key} in {client}"))
}

/// Kills the one tracking listener named `name` on `node`; its id.
async fn kill_listener(node: &str, name: &str) -> String {
    let found = clients_named(node, name).await;
    assert_eq!(
        found.len(),
        1,
        "expected one tracking listener {name} on {node}: {found:?}"
    );
    let flags = field(&found[0], "flags");
    assert!(
        flags.contains('t'),
        "the listener does not track: {}",
        found[0]
    );
    let id = field(&found[0], "id").to_owned();
    let killed: i64 = redis::cmd("CLIENT")
        .arg("KILL")
        .arg("ID")
        .arg(&id)
        .query_async(&mut node_con(node).await)
        .await
        .expect("CLIENT KILL ID");
    assert_eq!(killed, 1, "listener {id} not killed");
    id
}

async fn a_lost_tracking_connection_empties_the_cache_until_it_is_back(backend: Backend) {
    // Only B caches (and listens), so its listener is the one named so.
    let (a, b) = replicas(backend, false, |_| {}).await;
    let prefix = b.config.redis_prefix.clone();
    let name = format!("tessera-tracking:{prefix}");
    let t = a.user("ann").await;
    cached_on(&b, &t.access).await;
    let flushes = cache_metric(&b, FLUSHES).await;

    // The listener of the node that holds the session's keys: the one
    // Redis, or that master of the Cluster (the others keep listening).
    let sid = sid_of(&b, &t.access).await;
    let node = node_holding(&redis_nodes(&b), &format!("{prefix}{{{sid}}}:session")).await;
    let killed = kill_listener(&node, &name).await;

    // Revoked while B is not listening: never answered from its cache.
    a.post("/auth/logout", Some(&t.access))
        .await
        .assert_status(204);
    b.verify(&t.access).await.assert_error(401, "TokenRevoked");

    // Dead (emptied) at once, live again once tracking is back: live is
    // 0 for the retry pause (200 ms) unless this machine was slower still.
    let (live, flushed) = (
        cache_metric(&b, LIVE).await,
        cache_metric(&b, FLUSHES).await,
    );
    assert!(flushed > flushes, "not emptied when tracking was lost");
    assert!(
        live == 0.0 || flushed >= flushes + 2.0,
        "the cache stayed live without its tracking connection"
    );
    wait_live(&b, Duration::from_secs(5)).await;
    assert!(
        cache_metric(&b, FLUSHES).await >= flushes + 2.0,
        "emptied when tracking was lost and again when it came back"
    );
    let again = clients_named(&node, &name).await;
    assert_eq!(again.len(), 1, "one listener again: {again:?}");
    assert_ne!(field(&again[0], "id"), killed, "a new connection");

    // Caching works again, and so does its invalidation.
    let t = a.login("ann").await;
    cached_on(&b, &t.access).await;
    a.post("/auth/logout", Some(&t.access))
        .await
        .assert_status(204);
    refused_within(
        &b,
        &t.access,
        Instant::now(),
        "logout after tracking came back",
    )
    .await;
}

// ------------------------------------------------------------ Redis down

/// The single-Redis replica's own Redis hangs (SIGSTOP: the listener
/// misses PINGs), then dies: its checks are 503, never a cached 200.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_or_dead_redis_is_503_never_a_cached_200() {
    let mut redis = RedisServer::start();
    let url = redis.url();
    let config = cache_config(Backend::PostgresRedis, |c| c.redis_url = Some(url)).await;
    let app = spawn_with_config(config, Backend::PostgresRedis).await;
    wait_live(&app, Duration::from_secs(10)).await;
    let t = app.user("ann").await;
    cached_on(&app, &t.access).await;

    redis.freeze();
    // Two PINGs missed by then.
    tokio::time::sleep(Duration::from_millis(400)).await;
    let (verify, me) = tokio::join!(app.verify(&t.access), app.get("/users/me", Some(&t.access)));
    redis.thaw();
    verify.assert_error(503, "ServiceUnavailable");
    me.assert_error(503, "ServiceUnavailable");

    // Back by itself once Redis answers, cache included.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let r = app.verify(&t.access).await;
        if r.status == 200 {
            break;
        }
        r.assert_error(503, "ServiceUnavailable");
        assert!(Instant::now() < deadline, "no recovery after SIGCONT");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    wait_live(&app, Duration::from_secs(5)).await;
    cached_on(&app, &t.access).await;

    redis.stop();
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(cache_metric(&app, LIVE).await, 0.0);
    for _ in 0..3 {
        app.verify(&t.access)
            .await
            .assert_error(503, "ServiceUnavailable");
    }
}

// ------------------------------------------------------------ lifetime

async fn an_entry_ends_with_its_token(backend: Backend) {
    let config = cache_config(backend, |c| c.access_ttl = Duration::from_secs(2)).await;
    let app = spawn_with_config(config, backend).await;
    wait_live(&app, Duration::from_secs(10)).await;
    let t = app.user("ann").await;
    cached_on(&app, &t.access).await;
    assert_eq!(cache_metric(&app, ENTRIES).await, 1.0);
    let exp = app.verify(&t.access).await.body["exp"]
        .as_i64()
        .expect("exp");

    // Past `exp`: refused as expired, and the entry is dropped even though
    // nothing asks for it any more.
    let now = chrono::Utc::now().timestamp();
    tokio::time::sleep(Duration::from_secs(
        u64::try_from(exp + 1 - now).unwrap_or(0),
    ))
    .await;
    app.verify(&t.access)
        .await
        .assert_error(401, "TokenExpired");
    let deadline = Instant::now() + Duration::from_secs(3);
    while cache_metric(&app, ENTRIES).await != 0.0 {
        assert!(
            Instant::now() < deadline,
            "an expired token stays in the cache"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(cache_metric(&app, "tessera_verify_cache_bytes").await, 0.0);
}

// ------------------------------------------------------------ cache off

/// Off by default: no cache figures on /metrics (even beside a replica
/// with the cache in the same process), checks as before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_cache_off_nothing_changes() {
    let on = spawn_with_config(
        cache_config(Backend::PostgresRedis, |_| {}).await,
        Backend::PostgresRedis,
    )
    .await;
    wait_live(&on, Duration::from_secs(10)).await;
    for backend in [Backend::PostgresRedis, Backend::SqliteMemory] {
        let config = test_config(backend).await;
        assert_eq!(config.verify_cache, VerifyCacheMode::Off, "the default");
        let off = spawn_with_config(config, backend).await;
        let t = off.user("ann").await;
        off.verify(&t.access).await.assert_status(200);
        off.verify(&t.access).await.assert_status(200);
        let m = off.get("/metrics", None).await;
        m.assert_status(200);
        assert!(
            !m.text.contains("tessera_verify_cache_"),
            "cache figures without the cache ({backend:?}):\n{}",
            m.text
        );
        off.post("/auth/logout", Some(&t.access))
            .await
            .assert_status(204);
        off.verify(&t.access)
            .await
            .assert_error(401, "TokenRevoked");
    }
    assert!(metric(&on, HITS).await.is_some());
}

// ------------------------------------------------------------ start

fn scratch_dir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("tessera-vc-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir
}

/// `tessera serve` with these variables: must exit non-zero quickly,
/// creating nothing; its stderr.
fn refused_start(vars: &[(&str, &str)]) -> String {
    let dir = scratch_dir();
    let started = Instant::now();
    let out = try_output_within(
        tessera(&["serve"])
            .env("TESSERA_BIND", format!("127.0.0.1:{}", free_port()))
            .env("TESSERA_JWT_SECRET", SECRET)
            .envs(vars.iter().copied())
            .current_dir(&dir),
        Duration::from_secs(20),
    );
    let leftovers: Vec<_> = std::fs::read_dir(&dir)
        .map(|d| d.filter_map(|e| e.ok()).map(|e| e.file_name()).collect())
        .unwrap_or_default();
    let _ = std::fs::remove_dir_all(&dir);
    let out = out.unwrap_or_else(|e| panic!("tessera with {vars:?} started: {e}"));
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        out.status.code().is_some_and(|c| c != 0),
        "exit {:?} with {vars:?}; stderr:\n{stderr}",
        out.status
    );
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "took {:?} to refuse",
        started.elapsed()
    );
    assert!(
        leftovers.is_empty(),
        "a refused start created {leftovers:?}"
    );
    stderr
}

#[test]
fn tracking_without_redis_is_refused_at_start() {
    let stderr = refused_start(&[("TESSERA_VERIFY_CACHE", "tracking")]);
    for needle in ["refusing to start", "TESSERA_VERIFY_CACHE", "REDIS_URL"] {
        assert!(stderr.contains(needle), "{needle} not named:\n{stderr}");
    }
    // Spelled as a flag, too.
    let dir = scratch_dir();
    let out = try_output_within(
        tessera(&["serve", "--verify-cache", "tracking"])
            .env("TESSERA_BIND", format!("127.0.0.1:{}", free_port()))
            .env("TESSERA_JWT_SECRET", SECRET)
            .current_dir(&dir),
        Duration::from_secs(20),
    );
    let _ = std::fs::remove_dir_all(&dir);
    let out = out.unwrap_or_else(|e| panic!("tessera --verify-cache tracking started: {e}"));
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("TESSERA_VERIFY_CACHE"));
}

#[test]
fn an_unknown_verify_cache_value_is_refused_at_start() {
    let stderr = refused_start(&[
        ("TESSERA_VERIFY_CACHE", "sometimes"),
        ("REDIS_URL", "redis://127.0.0.1:1/"),
    ]);
    assert!(stderr.contains("sometimes"), "{stderr}");
    assert!(stderr.contains("verify-cache"), "{stderr}");
}
