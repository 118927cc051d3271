//! Token store behaviour suite, run against MemoryStore and RedisStore.
//!
//! Each test body is written once as `async fn name(store, redis)` where
//! `redis` is `Some((url, prefix))` for the Redis backend (so a test can look
//! at the raw keys) and `None` for the in-memory one; `store_suite!` at the
//! bottom generates the `#[tokio::test]` wrappers per backend.

use std::{sync::Arc, time::Duration};

use deadpool_redis::redis;
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
    store
        .start_session(s, 0)
        .await
        .unwrap_or_else(|e| panic!("start_session({}) failed: {e}", s.sid));
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

/// Every key under `prefix` with its TTL (seconds; -1 = none, -2 = missing).
async fn keys_with_ttl(url: &str, prefix: &str) -> Vec<(String, i64)> {
    let mut con = redis_conn(url).await;
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
    let mut out = Vec::with_capacity(keys.len());
    for k in keys {
        let ttl: i64 = redis::cmd("TTL")
            .arg(&k)
            .query_async(&mut con)
            .await
            .expect("TTL");
        out.push((k, ttl));
    }
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

// ---------------------------------------------------------------- 1. start / check / session

async fn start_check_and_read_back(store: Store, _redis: RedisInfo) {
    let user = Uuid::now_v7();
    let s = record(user, 3600);
    start(&store, &s).await;

    assert!(
        check(&store, s.sid, s.current_jti).await,
        "refresh jti refused"
    );
    assert!(
        check(&store, s.sid, Uuid::now_v7()).await,
        "an access jti of a live session refused"
    );
    assert!(
        !check(&store, Uuid::now_v7(), s.current_jti).await,
        "unknown sid accepted"
    );
    assert!(
        !check(&store, Uuid::now_v7(), Uuid::now_v7()).await,
        "unknown sid accepted"
    );

    assert_eq!(
        session(&store, s.sid).await,
        Some(s.clone()),
        "record not read back as stored"
    );
    assert_eq!(
        session(&store, Uuid::now_v7()).await,
        None,
        "unknown sid has a record"
    );

    // Optional fields left empty come back empty.
    let mut bare = record(user, 3600);
    bare.user_agent = None;
    bare.ip = None;
    start(&store, &bare).await;
    assert_eq!(session(&store, bare.sid).await, Some(bare.clone()));
    assert!(check(&store, bare.sid, bare.current_jti).await);

    // The first session is untouched by the second.
    assert_eq!(session(&store, s.sid).await, Some(s));
}

// ---------------------------------------------------------------- 2. strict rotation and reuse

async fn rotate_then_strict_reuse(store: Store, _redis: RedisInfo) {
    let user = Uuid::now_v7();
    let s = record(user, 3600);
    start(&store, &s).await;
    let (j0, j1) = (s.current_jti, Uuid::now_v7());
    let t1 = now_ms();
    let iat1 = now_secs() + 7; // distinct from every other time field

    let r1 = expect_rotated(rotate(&store, s.sid, j0, j1, iat1, 0).await);
    let expected = after_rotation(&s, j1, iat1, &r1);
    assert_eq!(r1, expected, "Rotated record");
    assert_eq!(r1.current_jti, j1);
    assert_eq!(r1.parent_jti, Some(j0));
    assert!(r1.rotated_ms >= Some(t1), "rotated before the call");
    assert_eq!(r1.current_iat, iat1);
    assert_eq!(
        r1.expires_at, s.expires_at,
        "rotation must keep the absolute end"
    );
    assert_eq!(
        session(&store, s.sid).await,
        Some(expected.clone()),
        "stored record after rotation"
    );
    assert!(
        check(&store, s.sid, Uuid::now_v7()).await,
        "session dead after a rotation"
    );

    // The newest token rotates again (still strict).
    let j2 = Uuid::now_v7();
    let r2 = expect_rotated(rotate(&store, s.sid, j1, j2, iat1 + 1, 0).await);
    assert_eq!(r2, after_rotation(&expected, j2, iat1 + 1, &r2));

    // The spent parent again, strict: reuse revokes the whole session.
    let j3 = Uuid::now_v7();
    assert_eq!(
        rotate(&store, s.sid, j1, j3, iat1 + 2, 0).await,
        Rotation::Reused
    );
    assert!(
        !check(&store, s.sid, Uuid::now_v7()).await,
        "session alive after reuse"
    );
    assert!(!check(&store, s.sid, j2).await, "session alive after reuse");
    assert_eq!(
        session(&store, s.sid).await,
        None,
        "record kept after reuse"
    );
    assert!(
        sessions(&store, user).await.iter().all(|x| x.sid != s.sid),
        "reused session still listed"
    );
    assert_eq!(
        rotate(&store, s.sid, j2, Uuid::now_v7(), iat1 + 3, 0).await,
        Rotation::Gone,
        "the newest token of a revoked session must not rotate"
    );
    // A spent token presented again stays reuse (API.md: "Presenting a spent
    // refresh token again is reuse").
    assert_eq!(
        rotate(&store, s.sid, j1, Uuid::now_v7(), iat1 + 4, 0).await,
        Rotation::Reused,
        "a spent token of a session revoked for reuse"
    );
    assert_eq!(
        session(&store, s.sid).await,
        None,
        "reuse revived the session"
    );

    // An unknown session is Gone, not Reused.
    assert_eq!(
        rotate(
            &store,
            Uuid::now_v7(),
            Uuid::now_v7(),
            Uuid::now_v7(),
            iat1,
            0
        )
        .await,
        Rotation::Gone
    );
    // Strict mode: even the immediate parent a millisecond later is reuse.
    let s2 = record(user, 3600);
    start(&store, &s2).await;
    expect_rotated(rotate(&store, s2.sid, s2.current_jti, Uuid::now_v7(), iat1, 0).await);
    assert_eq!(
        rotate(&store, s2.sid, s2.current_jti, Uuid::now_v7(), iat1, 0).await,
        Rotation::Reused
    );
    assert_eq!(session(&store, s2.sid).await, None);
}

// ---------------------------------------------------------------- 3. grace window

async fn grace_window(store: Store, _redis: RedisInfo) {
    // Short, because the window runs on the store's clock: the test waits
    // for it to pass.
    const GRACE: i64 = 1_200;
    let user = Uuid::now_v7();
    let iat = now_secs();

    // A: the immediate parent within the window, then after it.
    let a = record(user, 3600);
    start(&store, &a).await;
    let (j0, j1) = (a.current_jti, Uuid::now_v7());
    let ra = expect_rotated(rotate(&store, a.sid, j0, j1, iat, GRACE).await);
    assert_eq!(ra, after_rotation(&a, j1, iat, &ra));

    for i in 0..3 {
        let g = expect_grace(rotate(&store, a.sid, j0, Uuid::now_v7(), iat + 1, GRACE).await);
        assert_eq!(
            g.current_jti, j1,
            "grace #{i} must carry the current (latest) jti"
        );
        assert_eq!(g, ra, "grace #{i} must return the session unchanged");
        assert_eq!(
            session(&store, a.sid).await,
            Some(ra.clone()),
            "grace #{i} changed the session"
        );
        assert!(
            check(&store, a.sid, Uuid::now_v7()).await,
            "grace #{i} killed the session"
        );
    }

    // The parent after the window is reuse.
    tokio::time::sleep(Duration::from_millis(GRACE as u64 + 200)).await;
    assert_eq!(
        rotate(&store, a.sid, j0, Uuid::now_v7(), iat + 2, GRACE).await,
        Rotation::Reused
    );
    assert_eq!(
        session(&store, a.sid).await,
        None,
        "session kept after late reuse"
    );
    assert!(!check(&store, a.sid, Uuid::now_v7()).await);
    // A revoked session refreshes never, grace or not.
    assert_eq!(
        rotate(&store, a.sid, j1, Uuid::now_v7(), iat + 3, GRACE).await,
        Rotation::Gone
    );

    // B: a grandparent within the window is reuse.
    let b = record(user, 3600);
    start(&store, &b).await;
    let (b0, b1, b2) = (b.current_jti, Uuid::now_v7(), Uuid::now_v7());
    expect_rotated(rotate(&store, b.sid, b0, b1, iat, GRACE).await);
    let rb = expect_rotated(rotate(&store, b.sid, b1, b2, iat, GRACE).await);
    assert_eq!(rb.parent_jti, Some(b1));
    assert_eq!(
        rotate(&store, b.sid, b0, Uuid::now_v7(), iat, GRACE).await,
        Rotation::Reused,
        "a grandparent within the window must be reuse"
    );
    assert_eq!(session(&store, b.sid).await, None);
    assert!(!check(&store, b.sid, Uuid::now_v7()).await);
    // A revoked session refreshes never, grace or not (b1 is spent: reuse or gone).
    let late = rotate(&store, b.sid, b1, Uuid::now_v7(), iat, GRACE).await;
    assert!(
        matches!(late, Rotation::Reused | Rotation::Gone),
        "the parent of a revoked session must not get grace: {late:?}"
    );

    // C: a never-rotated session has no parent: a foreign jti is reuse.
    let c = record(user, 3600);
    start(&store, &c).await;
    assert_eq!(
        rotate(&store, c.sid, Uuid::now_v7(), Uuid::now_v7(), iat, GRACE).await,
        Rotation::Reused
    );
    assert_eq!(session(&store, c.sid).await, None);

    // D: after the window the current token still rotates normally.
    let d = record(user, 3600);
    start(&store, &d).await;
    let d1 = Uuid::now_v7();
    let rd = expect_rotated(rotate(&store, d.sid, d.current_jti, d1, iat, GRACE).await);
    let d2 = Uuid::now_v7();
    tokio::time::sleep(Duration::from_millis(GRACE as u64 + 200)).await;
    let rd2 = expect_rotated(rotate(&store, d.sid, d1, d2, iat, GRACE).await);
    assert_eq!(rd2, after_rotation(&rd, d2, iat, &rd2));
}

// ---------------------------------------------------------------- 4. concurrent rotation

const RACERS: usize = 16;

/// `RACERS` concurrent rotations of `presented`, each with its own new jti.
async fn race(store: &Store, sid: Uuid, presented: Uuid, grace_ms: i64) -> Vec<(Uuid, Rotation)> {
    let barrier = Arc::new(tokio::sync::Barrier::new(RACERS));
    let tasks: Vec<_> = (0..RACERS)
        .map(|_| {
            let (store, barrier) = (store.clone(), barrier.clone());
            tokio::spawn(async move {
                let new_jti = Uuid::now_v7();
                barrier.wait().await;
                let r = store
                    .rotate(&RotateRequest {
                        sid,
                        presented,
                        new_jti,
                        new_iat: now_secs(),
                        grace_ms,
                    })
                    .await
                    .expect("rotate failed");
                (new_jti, r)
            })
        })
        .collect();
    let mut out = Vec::with_capacity(RACERS);
    for t in tasks {
        out.push(t.await.expect("racer panicked"));
    }
    out
}

fn tally(results: &[(Uuid, Rotation)]) -> (usize, usize, usize, usize) {
    let mut t = (0, 0, 0, 0);
    for (_, r) in results {
        match r {
            Rotation::Rotated(_) => t.0 += 1,
            Rotation::WithinGrace(_) => t.1 += 1,
            Rotation::Reused => t.2 += 1,
            Rotation::Gone => t.3 += 1,
        }
    }
    t
}

async fn concurrent_rotation_strict(store: Store, _redis: RedisInfo) {
    let s = record(Uuid::now_v7(), 3600);
    start(&store, &s).await;
    let results = race(&store, s.sid, s.current_jti, 0).await;
    let (rotated, grace, reused, gone) = tally(&results);
    assert_eq!(
        (rotated, grace, reused, gone),
        (1, 0, RACERS - 1, 0),
        "strict race: want exactly one Rotated and every loser Reused \
         (Rotated, WithinGrace, Reused, Gone)"
    );
    assert_eq!(
        session(&store, s.sid).await,
        None,
        "session alive after a strict race"
    );
    assert!(!check(&store, s.sid, Uuid::now_v7()).await);
    let (winner_jti, _) = results
        .iter()
        .find(|(_, r)| matches!(r, Rotation::Rotated(_)))
        .unwrap();
    assert!(
        !matches!(
            rotate(&store, s.sid, *winner_jti, Uuid::now_v7(), now_secs(), 0).await,
            Rotation::Rotated(_) | Rotation::WithinGrace(_)
        ),
        "the winner's token must die with the session"
    );
}

async fn concurrent_rotation_grace(store: Store, _redis: RedisInfo) {
    let s = record(Uuid::now_v7(), 3600);
    start(&store, &s).await;
    let results = race(&store, s.sid, s.current_jti, 10_000).await;
    let (rotated, grace, reused, gone) = tally(&results);
    assert_eq!(
        (rotated, grace, reused, gone),
        (1, RACERS - 1, 0, 0),
        "grace race: want one Rotated and every other WithinGrace \
         (Rotated, WithinGrace, Reused, Gone)"
    );
    let (winner_jti, winner) = results
        .iter()
        .find_map(|(j, r)| match r {
            Rotation::Rotated(rec) => Some((*j, rec.clone())),
            _ => None,
        })
        .unwrap();
    assert_eq!(winner.current_jti, winner_jti);
    assert_eq!(winner.parent_jti, Some(s.current_jti));
    for (_, r) in &results {
        if let Rotation::WithinGrace(rec) = r {
            assert_eq!(
                rec.current_jti, winner_jti,
                "grace must carry the winner's jti"
            );
            assert_eq!(rec, &winner, "grace must return the winner's session");
        }
    }
    assert_eq!(
        session(&store, s.sid).await,
        Some(winner),
        "session after a grace race"
    );
    assert!(
        check(&store, s.sid, Uuid::now_v7()).await,
        "session dead after a grace race"
    );
}

// ---------------------------------------------------------------- 5. revoke_jti

async fn revoke_jti_scoped(store: Store, redis: RedisInfo) {
    let user = Uuid::now_v7();
    let s = record(user, 3600);
    let other = record(user, 3600);
    start(&store, &s).await;
    start(&store, &other).await;
    let (a, b) = (Uuid::now_v7(), Uuid::now_v7());

    assert!(check(&store, s.sid, a).await);
    store.revoke_jti(s.sid, a, 600).await.expect("revoke_jti");
    assert!(!check(&store, s.sid, a).await, "revoked jti still accepted");
    assert!(
        check(&store, s.sid, b).await,
        "another jti of the session refused"
    );
    assert!(
        check(&store, s.sid, s.current_jti).await,
        "refresh jti refused"
    );
    assert!(
        check(&store, other.sid, a).await,
        "revocation leaked to another session"
    );
    assert!(
        session(&store, s.sid).await.is_some(),
        "revoking a jti ended the session"
    );
    // Idempotent.
    store
        .revoke_jti(s.sid, a, 600)
        .await
        .expect("revoke_jti again");
    assert!(!check(&store, s.sid, a).await);

    // ttl <= 0: nothing to guard, nothing happens.
    store
        .revoke_jti(s.sid, b, 0)
        .await
        .expect("revoke_jti ttl 0");
    store
        .revoke_jti(s.sid, b, -5)
        .await
        .expect("revoke_jti ttl < 0");
    assert!(
        check(&store, s.sid, b).await,
        "revoke_jti with ttl <= 0 revoked the token"
    );
    if let Some((url, prefix)) = redis {
        let keys = keys_with_ttl(&url, &prefix).await;
        assert!(
            keys.iter().all(|(k, _)| !k.contains(&b.to_string())),
            "revoke_jti with ttl <= 0 wrote a key: {keys:?}"
        );
        assert_all_expire(&keys, "after revoke_jti");
    }
}

// ---------------------------------------------------------------- 6. ending and listing sessions

async fn end_and_list_sessions(store: Store, _redis: RedisInfo) {
    let (alice, bob) = (Uuid::now_v7(), Uuid::now_v7());
    let now = now_secs();
    // Inserted out of creation order (and sids, being v7, in insertion order).
    let mut made = Vec::new();
    for age in [200, 600, 400, 100] {
        let mut s = record(alice, 3600);
        s.created_at = now - age;
        s.last_used_at = now - age + 1;
        start(&store, &s).await;
        made.push(s);
    }
    let mut bobs = [record(bob, 3600), record(bob, 1800)];
    bobs[1].created_at -= 50;
    for s in &bobs {
        start(&store, s).await;
    }

    let mut oldest_first = made.clone();
    oldest_first.sort_by_key(|s| s.created_at);
    assert_eq!(
        sessions(&store, alice).await,
        oldest_first,
        "sessions(user): oldest first"
    );
    assert_eq!(
        sessions(&store, Uuid::now_v7()).await,
        vec![],
        "a user without sessions"
    );

    // end_session: true once, then false.
    let ended = made[2].clone();
    assert!(
        store
            .end_session(alice, ended.sid)
            .await
            .expect("end_session")
    );
    assert!(
        !store
            .end_session(alice, ended.sid)
            .await
            .expect("end_session again")
    );
    assert!(
        !store
            .end_session(alice, Uuid::now_v7())
            .await
            .expect("end_session unknown"),
        "ending an unknown session reported true"
    );
    assert!(
        !check(&store, ended.sid, Uuid::now_v7()).await,
        "ended session accepted"
    );
    assert_eq!(session(&store, ended.sid).await, None);
    assert_eq!(
        rotate(
            &store,
            ended.sid,
            ended.current_jti,
            Uuid::now_v7(),
            now,
            10_000
        )
        .await,
        Rotation::Gone
    );
    oldest_first.retain(|s| s.sid != ended.sid);
    assert_eq!(
        sessions(&store, alice).await,
        oldest_first,
        "ended session still listed"
    );

    // end_user_sessions: all of alice's, none of bob's.
    store
        .end_user_sessions(alice)
        .await
        .expect("end_user_sessions");
    for s in &made {
        assert!(
            !check(&store, s.sid, Uuid::now_v7()).await,
            "alice's session {} alive",
            s.sid
        );
        assert_eq!(session(&store, s.sid).await, None);
    }
    assert_eq!(
        sessions(&store, alice).await,
        vec![],
        "alice still has sessions"
    );
    for s in &bobs {
        assert!(
            check(&store, s.sid, Uuid::now_v7()).await,
            "bob's session ended"
        );
    }
    assert_eq!(
        sessions(&store, bob).await,
        vec![bobs[1].clone(), bobs[0].clone()]
    );
    // Twice is harmless; a user without sessions too.
    store
        .end_user_sessions(alice)
        .await
        .expect("end_user_sessions again");
    store
        .end_user_sessions(Uuid::now_v7())
        .await
        .expect("end_user_sessions unknown");

    // A new login after logout-all works.
    let fresh = record(alice, 3600);
    start(&store, &fresh).await;
    assert!(check(&store, fresh.sid, Uuid::now_v7()).await);
    assert_eq!(sessions(&store, alice).await, vec![fresh]);
}

// ---------------------------------------------------------------- 7. expiry

async fn session_expires(store: Store, _redis: RedisInfo) {
    let user = Uuid::now_v7();
    let keep = record(user, 3600);
    start(&store, &keep).await;

    align_to_second().await;
    let mut short = record(user, 0);
    short.expires_at = now_secs() + 1;
    short.created_at = keep.created_at + 1;
    start(&store, &short).await;
    assert!(
        check(&store, short.sid, Uuid::now_v7()).await,
        "short session dead at once"
    );
    assert_eq!(sessions(&store, user).await.len(), 2);

    tokio::time::sleep(Duration::from_millis(2200)).await;
    assert!(
        !check(&store, short.sid, Uuid::now_v7()).await,
        "expired session accepted"
    );
    assert_eq!(
        session(&store, short.sid).await,
        None,
        "expired session readable"
    );
    assert_eq!(
        sessions(&store, user).await,
        vec![keep.clone()],
        "expired session listed"
    );
    assert_eq!(
        rotate(
            &store,
            short.sid,
            short.current_jti,
            Uuid::now_v7(),
            now_secs(),
            0
        )
        .await,
        Rotation::Gone,
        "expired session rotated"
    );
    assert!(
        !store
            .end_session(user, short.sid)
            .await
            .expect("end_session"),
        "expired session ended"
    );
    assert!(check(&store, keep.sid, Uuid::now_v7()).await);
}

async fn revoked_jti_expires(store: Store, _redis: RedisInfo) {
    let s = record(Uuid::now_v7(), 3600);
    start(&store, &s).await;
    let (short, long) = (Uuid::now_v7(), Uuid::now_v7());

    align_to_second().await;
    store.revoke_jti(s.sid, short, 1).await.expect("revoke_jti");
    store
        .revoke_jti(s.sid, long, 600)
        .await
        .expect("revoke_jti");
    assert!(
        !check(&store, s.sid, short).await,
        "revocation not in force"
    );

    tokio::time::sleep(Duration::from_millis(2200)).await;
    assert!(
        check(&store, s.sid, short).await,
        "revocation outlived its ttl"
    );
    assert!(!check(&store, s.sid, long).await, "long revocation lost");
}

// ---------------------------------------------------------------- 8. Redis keys

async fn redis_keys_expire_and_share_hash_tag(store: Store, redis: RedisInfo) {
    let (url, prefix) = redis.expect("Redis-only test");
    let user = Uuid::now_v7();
    let s = record(user, 3600);
    start(&store, &s).await;
    let access_jti = Uuid::now_v7();
    store
        .revoke_jti(s.sid, access_jti, 600)
        .await
        .expect("revoke_jti");
    let j1 = Uuid::now_v7();
    expect_rotated(rotate(&store, s.sid, s.current_jti, j1, now_secs(), 0).await);

    let keys = keys_with_ttl(&url, &prefix).await;
    let now = now_secs();
    assert!(!keys.is_empty(), "no keys under {prefix}");
    assert_all_expire(&keys, "after start_session, revoke_jti, rotate");

    let (sid, tag, jti) = (
        s.sid.to_string(),
        format!("{{{}}}", s.sid),
        access_jti.to_string(),
    );
    // Any key about this session (names its sid or its revoked jti) carries the {sid} tag.
    for (k, _) in &keys {
        if k.contains(&sid) || k.contains(&jti) {
            assert!(
                k.contains(&tag),
                "key {k} of session {sid} lacks the hash tag {tag}"
            );
        }
    }
    let revoked: Vec<_> = keys.iter().filter(|(k, _)| k.contains(&jti)).collect();
    assert_eq!(revoked.len(), 1, "one key for the revoked jti: {keys:?}");
    let rttl = revoked[0].1;
    assert!(
        (595..=600).contains(&rttl),
        "revoked key TTL {rttl}, want ~600: {keys:?}"
    );

    let session_keys: Vec<_> = keys
        .iter()
        .filter(|(k, _)| k.contains(&tag) && !k.contains(&jti))
        .collect();
    assert!(
        !session_keys.is_empty(),
        "no session key with {tag}: {keys:?}"
    );
    let remaining = s.expires_at - now;
    for (k, ttl) in &session_keys {
        assert!(
            (remaining - 5..=remaining + 1).contains(ttl),
            "session key {k} TTL {ttl}, want ~{remaining}"
        );
    }
    // Nothing outlives the session it guards (the user index included).
    for (k, ttl) in &keys {
        assert!(
            *ttl <= remaining + 1,
            "key {k} TTL {ttl} outlives the session ({remaining})"
        );
    }

    // The user index follows the longest-lived session and is never shortened.
    let longer = record(user, 7200);
    let shorter = record(user, 600);
    start(&store, &longer).await;
    start(&store, &shorter).await;
    let keys = keys_with_ttl(&url, &prefix).await;
    assert_all_expire(&keys, "after three sessions");
    let sids = [s.sid, longer.sid, shorter.sid].map(|x| x.to_string());
    let other: Vec<_> = keys
        .iter()
        .filter(|(k, _)| !sids.iter().any(|x| k.contains(x)))
        .collect();
    assert!(!other.is_empty(), "no user-level key: {keys:?}");
    for (k, ttl) in &other {
        assert!(
            (7195..=7201).contains(ttl),
            "user-level key {k} TTL {ttl}, want ~7200 (the longest session): {keys:?}"
        );
    }
    for (k, ttl) in &keys {
        if k.contains(&format!("{{{}}}", shorter.sid)) {
            assert!((595..=600).contains(ttl), "key {k} TTL {ttl}, want ~600");
        }
    }

    // After reuse, ending and logout-all nothing is left without a TTL.
    assert_eq!(
        rotate(&store, s.sid, s.current_jti, Uuid::now_v7(), now_secs(), 0).await,
        Rotation::Reused
    );
    assert_all_expire(&keys_with_ttl(&url, &prefix).await, "after reuse");
    assert!(
        store
            .end_session(user, shorter.sid)
            .await
            .expect("end_session")
    );
    assert_all_expire(&keys_with_ttl(&url, &prefix).await, "after end_session");
    store
        .end_user_sessions(user)
        .await
        .expect("end_user_sessions");
    let keys = keys_with_ttl(&url, &prefix).await;
    assert_all_expire(&keys, "after end_user_sessions");
    assert!(
        keys.iter()
            .all(|(k, _)| !k.contains(&longer.sid.to_string())),
        "ended session left keys: {keys:?}"
    );
}

// ---------------------------------------------------------------- 9. login-failure counters

fn ip(s: &str) -> LimitKey {
    LimitKey::Ip(s.parse().expect("ip"))
}

async fn counters(store: &Store, keys: &[LimitKey]) -> Vec<Option<Failures>> {
    store.failures(keys).await.expect("failures")
}

async fn count(store: &Store, key: &LimitKey) -> u64 {
    counters(store, std::slice::from_ref(key)).await[0].map_or(0, |f| f.count)
}

async fn failure_counters(store: Store, _redis: RedisInfo) {
    let acct = LimitKey::Account(Uuid::now_v7());
    let unknown = LimitKey::Unknown([7; 32]);
    let addr = ip("203.0.113.5");
    let all = [acct.clone(), unknown.clone(), addr.clone()];
    assert_eq!(counters(&store, &all).await, vec![None, None, None]);
    assert!(counters(&store, &[]).await.is_empty());
    assert!(store.record_failures(&[], 60).await.unwrap().is_empty());

    // One round trip counts several keys, each on its own.
    let now = store
        .record_failures(&[acct.clone(), addr.clone()], 60)
        .await
        .expect("record_failures");
    assert_eq!(now.iter().map(|f| f.count).collect::<Vec<_>>(), [1, 1]);
    for f in &now {
        assert!((59_000..=60_000).contains(&f.ttl_ms), "ttl {f:?}");
        assert!((59..=60).contains(&f.retry_after_secs()), "{f:?}");
    }
    for n in 2..=4 {
        let f = store
            .record_failures(std::slice::from_ref(&acct), 60)
            .await
            .unwrap();
        assert_eq!(f[0].count, n);
    }
    let read = counters(&store, &all).await;
    assert_eq!(read[0].map(|f| f.count), Some(4));
    assert_eq!(read[1], None, "an untouched counter exists");
    assert_eq!(read[2].map(|f| f.count), Some(1));
    assert!(read[0].unwrap().ttl_ms > 0 && read[0].unwrap().ttl_ms <= 60_000);

    // Forgive takes one back, never below zero, and a zero counter is gone.
    store
        .forgive_failures(&[acct.clone(), addr.clone()])
        .await
        .unwrap();
    assert_eq!(count(&store, &acct).await, 3);
    assert_eq!(
        counters(&store, std::slice::from_ref(&addr)).await,
        vec![None]
    );
    store
        .forgive_failures(std::slice::from_ref(&unknown))
        .await
        .unwrap();
    assert_eq!(
        counters(&store, std::slice::from_ref(&unknown)).await,
        vec![None]
    );
    let f = store
        .record_failures(std::slice::from_ref(&unknown), 60)
        .await
        .unwrap();
    assert_eq!(f[0].count, 1, "forgiving a missing counter went below zero");

    // Clear removes only the counters named.
    store
        .record_failures(std::slice::from_ref(&addr), 60)
        .await
        .unwrap();
    store
        .clear_failures(std::slice::from_ref(&acct))
        .await
        .unwrap();
    let read = counters(&store, &all).await;
    assert_eq!(read[0], None, "cleared counter still there");
    assert_eq!(read[1].map(|f| f.count), Some(1));
    assert_eq!(read[2].map(|f| f.count), Some(1));
    store.clear_failures(&all).await.unwrap();
    assert_eq!(counters(&store, &all).await, vec![None, None, None]);
    store.clear_failures(&[]).await.unwrap();
    store.forgive_failures(&[]).await.unwrap();
}

async fn failure_window_is_fixed_and_expires(store: Store, _redis: RedisInfo) {
    let acct = LimitKey::Account(Uuid::now_v7());
    let key = std::slice::from_ref(&acct);
    align_to_second().await;
    let first = store.record_failures(key, 2).await.unwrap()[0];
    assert_eq!(first.count, 1);
    assert!((1_000..=2_000).contains(&first.ttl_ms), "{first:?}");

    // Later failures (and forgiving one) do not extend the window.
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let second = store.record_failures(key, 2).await.unwrap()[0];
    assert_eq!(second.count, 2);
    assert!(second.ttl_ms <= 1_050, "window extended: {second:?}");
    store.forgive_failures(key).await.unwrap();
    let read = counters(&store, key).await[0].expect("counter");
    assert_eq!(read.count, 1);
    assert!(
        read.ttl_ms <= 1_050,
        "forgive extended the window: {read:?}"
    );

    // After the window the counter is gone and the next failure opens a new one.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert_eq!(
        counters(&store, key).await,
        vec![None],
        "outlived its window"
    );
    let fresh = store.record_failures(key, 2).await.unwrap()[0];
    assert_eq!(fresh.count, 1);
    assert!(fresh.ttl_ms > 1_000, "{fresh:?}");
}

async fn redis_failure_keys_expire(store: Store, redis: RedisInfo) {
    let (url, prefix) = redis.expect("Redis-only test");
    let user = Uuid::now_v7();
    let keys = [
        LimitKey::Account(user),
        LimitKey::Unknown([0xab; 32]),
        ip("198.51.100.7"),
        ip("2001:db8::"),
    ];
    store.record_failures(&keys, 900).await.unwrap();
    store.record_failures(&keys, 900).await.unwrap();
    let seen = keys_with_ttl(&url, &prefix).await;
    assert_all_expire(&seen, "after record_failures");
    let names: Vec<&str> = seen.iter().map(|(k, _)| k.as_str()).collect();
    let expected = [
        format!("{prefix}login:acct:{user}"),
        format!("{prefix}login:unknown:{}", "ab".repeat(32)),
        format!("{prefix}login:ip:198.51.100.7"),
        format!("{prefix}login:ip:2001:db8::"),
    ];
    for k in &expected {
        assert!(names.contains(&k.as_str()), "no key {k}: {seen:?}");
    }
    for (k, ttl) in &seen {
        assert!((895..=900).contains(ttl), "key {k} TTL {ttl}, want ~900");
    }
    store.forgive_failures(&keys).await.unwrap();
    assert_all_expire(&keys_with_ttl(&url, &prefix).await, "after forgive");
    assert_eq!(keys_with_ttl(&url, &prefix).await.len(), 4);
    store.forgive_failures(&keys).await.unwrap();
    store.forgive_failures(&keys).await.unwrap();
    assert!(
        keys_with_ttl(&url, &prefix).await.is_empty(),
        "forgiven counters left keys"
    );

    // A counter that somehow lost its expiry gets one back at the next failure.
    let k = format!("{prefix}login:acct:{user}");
    let mut con = redis_conn(&url).await;
    redis::cmd("SET")
        .arg(&k)
        .arg(3)
        .query_async::<()>(&mut con)
        .await
        .unwrap();
    let f = store.record_failures(&keys[..1], 900).await.unwrap()[0];
    assert_eq!(f.count, 4);
    assert_all_expire(&keys_with_ttl(&url, &prefix).await, "after healing");
    store.clear_failures(&keys).await.unwrap();
    assert!(keys_with_ttl(&url, &prefix).await.is_empty());
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
        session_expires,
        revoked_jti_expires,
        failure_counters,
        failure_window_is_fixed_and_expires,
    ],
    redis_only: [redis_keys_expire_and_share_hash_tag, redis_failure_keys_expire],
}
