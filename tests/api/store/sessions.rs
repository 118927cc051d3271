//! Starting, checking, revoking, ending, listing and expiring sessions.

use super::*;

// ---------------------------------------------------------------- 1. start / check / session

pub(super) async fn start_check_and_read_back(store: Store, _redis: RedisInfo) {
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

// ---------------------------------------------------------------- 5. revoke_jti

pub(super) async fn revoke_jti_scoped(store: Store, redis: RedisInfo) {
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

pub(super) async fn end_and_list_sessions(store: Store, _redis: RedisInfo) {
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

pub(super) async fn session_expires(store: Store, _redis: RedisInfo) {
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

pub(super) async fn revoked_jti_expires(store: Store, _redis: RedisInfo) {
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

// ---------------------------------------------------------------- session cap

/// Beyond `max_sessions` the user's oldest sessions end (by end of life,
/// which is creation order); other users and a cap of 0 are untouched.
pub(super) async fn session_cap_ends_the_oldest(store: Store, _redis: RedisInfo) {
    let (user, other) = (Uuid::now_v7(), Uuid::now_v7());
    let theirs = record(other, 3600);
    start(&store, &theirs).await;
    let mut mine = Vec::new();
    for i in 0..5 {
        // Distinct ends: the later the login, the later the end.
        let s = record(user, 3600 + i);
        let ended = store
            .start_session(&s, 3)
            .await
            .unwrap_or_else(|e| panic!("start_session failed: {e}"));
        // The 4th and 5th logins each end exactly one (the oldest).
        assert_eq!(ended, usize::from(i >= 3), "sessions ended by login {i}");
        mine.push(s);
    }
    let listed: Vec<Uuid> = sessions(&store, user).await.iter().map(|s| s.sid).collect();
    let newest: Vec<Uuid> = mine[2..].iter().map(|s| s.sid).collect();
    assert_eq!(listed, newest, "the three newest sessions stay, in order");
    for s in &mine[..2] {
        assert!(
            !check(&store, s.sid, Uuid::now_v7()).await,
            "oldest still alive"
        );
        assert_eq!(session(&store, s.sid).await, None);
    }
    for s in &mine[2..] {
        assert!(
            check(&store, s.sid, Uuid::now_v7()).await,
            "a newer session ended"
        );
    }
    assert!(
        check(&store, theirs.sid, Uuid::now_v7()).await,
        "another user's session ended"
    );
    // No cap: nothing ends.
    for _ in 0..3 {
        start(&store, &record(user, 3600)).await;
    }
    assert_eq!(sessions(&store, user).await.len(), 6);
}
