//! What Redis holds: every key expires, a session's keys share one hash tag.

use super::*;

// ---------------------------------------------------------------- 8. Redis keys

pub(super) async fn redis_keys_expire_and_share_hash_tag(store: Store, redis: RedisInfo) {
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
