//! Login-failure counters: fixed windows, forgiving, clearing, expiry.

use super::*;

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

pub(super) async fn failure_counters(store: Store, _redis: RedisInfo) {
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

pub(super) async fn failure_window_is_fixed_and_expires(store: Store, _redis: RedisInfo) {
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

pub(super) async fn redis_failure_keys_expire(store: Store, redis: RedisInfo) {
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
    raw_cmd::<()>(&url, redis::cmd("SET").arg(&k).arg(3)).await;
    let f = store.record_failures(&keys[..1], 900).await.unwrap()[0];
    assert_eq!(f.count, 4);
    assert_all_expire(&keys_with_ttl(&url, &prefix).await, "after healing");
    store.clear_failures(&keys).await.unwrap();
    assert!(keys_with_ttl(&url, &prefix).await.is_empty());
}
