//! Challenges (`put_challenge` / `try_challenge` / `take_challenge`, the
//! login's `mfa_token`): a payload for a limited number of tries, taken
//! once, gone at its expiry.

use super::*;

use tessera::auth::store::ChallengeKey;

fn new_key() -> ChallengeKey {
    let mut hash = [0u8; 32];
    hash[..16].copy_from_slice(Uuid::new_v4().as_bytes());
    hash[16..].copy_from_slice(Uuid::new_v4().as_bytes());
    ChallengeKey::Mfa(hash)
}

async fn put(store: &Store, key: &ChallengeKey, payload: &str, ttl_secs: u64) {
    store
        .put_challenge(key, payload, ttl_secs)
        .await
        .expect("put_challenge");
}

async fn try_once(store: &Store, key: &ChallengeKey, max_tries: u32) -> Option<String> {
    store
        .try_challenge(key, max_tries)
        .await
        .expect("try_challenge")
}

async fn take(store: &Store, key: &ChallengeKey) -> bool {
    store.take_challenge(key).await.expect("take_challenge")
}

pub(super) async fn challenge_payload_for_max_tries(store: Store, _redis: RedisInfo) {
    let key = new_key();
    assert_eq!(try_once(&store, &key, 3).await, None, "unknown challenge");
    put(&store, &key, "payload one", 60).await;
    for i in 1..=3 {
        assert_eq!(
            try_once(&store, &key, 3).await.as_deref(),
            Some("payload one"),
            "try {i} of 3"
        );
    }
    // Out of tries: no payload any more.
    assert_eq!(try_once(&store, &key, 3).await, None, "a fourth try");
    assert_eq!(try_once(&store, &key, 3).await, None);
    // But a caller whose try came within the limit (and whose answer was
    // right) still takes it, once: later tries do not void an earlier one.
    assert!(take(&store, &key).await, "a try within the limit lost");
    assert!(!take(&store, &key).await, "taken twice");
    // Other challenges are their own.
    let other = new_key();
    put(&store, &other, "payload two", 60).await;
    assert_eq!(
        try_once(&store, &other, 1).await.as_deref(),
        Some("payload two")
    );
    assert_eq!(try_once(&store, &other, 1).await, None);
    // A new put under a used key starts afresh, with no try spent.
    put(&store, &key, "payload three", 60).await;
    put(&store, &key, "payload four", 60).await;
    for _ in 0..2 {
        assert_eq!(
            try_once(&store, &key, 2).await.as_deref(),
            Some("payload four")
        );
    }
    assert_eq!(try_once(&store, &key, 2).await, None);
}

pub(super) async fn challenge_taken_once(store: Store, _redis: RedisInfo) {
    let key = new_key();
    assert!(!take(&store, &key).await, "an unknown challenge was taken");
    put(&store, &key, "payload", 60).await;
    assert_eq!(try_once(&store, &key, 5).await.as_deref(), Some("payload"));
    assert!(take(&store, &key).await, "first take");
    assert!(!take(&store, &key).await, "second take");
    assert_eq!(try_once(&store, &key, 5).await, None, "a taken challenge");
    // Of twenty concurrent takes, one.
    for round in 0..5 {
        let key = new_key();
        put(&store, &key, "payload", 60).await;
        let won = crate::helpers::race(20, |_| {
            let (store, key) = (store.clone(), key.clone());
            async move { take(&store, &key).await }
        })
        .await
        .into_iter()
        .filter(|w| *w)
        .count();
        assert_eq!(won, 1, "round {round}: {won} of 20 concurrent takes");
    }
}

pub(super) async fn concurrent_tries_within_max_tries(store: Store, _redis: RedisInfo) {
    for round in 0..5 {
        let key = new_key();
        put(&store, &key, "payload", 60).await;
        let got = crate::helpers::race(20, |_| {
            let (store, key) = (store.clone(), key.clone());
            async move { try_once(&store, &key, 5).await }
        })
        .await;
        assert!(
            got.iter().flatten().all(|p| p == "payload"),
            "round {round}: {got:?}"
        );
        // Twenty tries of a limit of five: exactly five get it (at most
        // five, and a try never fails for another reason).
        let served = got.iter().flatten().count();
        assert_eq!(served, 5, "round {round}: {served} of 20 tries served");
        assert_eq!(try_once(&store, &key, 5).await, None);
        // The fifteen tries over the limit did not void the five within
        // it: one of those takes the challenge.
        assert!(take(&store, &key).await, "round {round}: nothing to take");
    }
}

pub(super) async fn challenge_expires(store: Store, _redis: RedisInfo) {
    let key = new_key();
    let taken = new_key();
    align_to_second().await;
    put(&store, &key, "payload", 1).await;
    put(&store, &taken, "payload", 1).await;
    assert_eq!(try_once(&store, &key, 5).await.as_deref(), Some("payload"));
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    assert_eq!(try_once(&store, &key, 5).await, None, "expired challenge");
    assert!(
        !take(&store, &taken).await,
        "an expired challenge was taken"
    );
}

pub(super) async fn redis_challenge_is_one_expiring_key(store: Store, redis: RedisInfo) {
    let (url, prefix) = redis.expect("Redis-only test");
    let key = new_key();
    put(&store, &key, "the payload", 300).await;
    assert_eq!(
        try_once(&store, &key, 2).await.as_deref(),
        Some("the payload")
    );
    let keys = keys_with_ttl(&url, &prefix).await;
    assert_eq!(
        keys.iter().map(|(k, _)| k.as_str()).collect::<Vec<_>>(),
        [format!("{prefix}{key}")],
        "{keys:?}"
    );
    assert!(format!("{key}").starts_with("mfa:"), "{key}");
    let ttl = keys[0].1;
    assert!((295..=300).contains(&ttl), "challenge TTL {ttl}, want ~300");
    // Out of tries: the key stays with its TTL (for a try within the
    // limit to take) and goes when taken.
    assert_eq!(
        try_once(&store, &key, 2).await.as_deref(),
        Some("the payload")
    );
    assert_eq!(try_once(&store, &key, 2).await, None);
    let keys = keys_with_ttl(&url, &prefix).await;
    assert_eq!(keys.len(), 1, "{keys:?}");
    assert_all_expire(&keys, "a challenge out of tries");
    assert!(take(&store, &key).await);
    assert!(keys_with_ttl(&url, &prefix).await.is_empty());
}
