//! One-time claims (`claim_once`, the TOTP replay rule): the first claim
//! wins, on any replica, until the key expires.

use super::*;

use tessera::auth::store::OnceKey;

fn step_key(user_id: Uuid, step: u64) -> OnceKey {
    OnceKey::TotpStep { user_id, step }
}

async fn claim(store: &Store, key: &OnceKey, ttl_secs: u64) -> bool {
    store.claim_once(key, ttl_secs).await.expect("claim_once")
}

pub(super) async fn claim_once_until_expiry(store: Store, _redis: RedisInfo) {
    let user = Uuid::now_v7();
    let key = step_key(user, 56_666_667);
    align_to_second().await;
    assert!(claim(&store, &key, 1).await, "first claim refused");
    assert!(!claim(&store, &key, 1).await, "second claim accepted");
    // A later claim neither wins nor extends the first one's expiry.
    assert!(!claim(&store, &key, 600).await);
    // Another step of the account, the same step of another account: other keys.
    assert!(claim(&store, &step_key(user, 56_666_668), 1).await);
    assert!(claim(&store, &step_key(Uuid::now_v7(), 56_666_667), 1).await);
    // Redis expires with second precision, sometimes a little late.
    tokio::time::sleep(Duration::from_millis(2_100)).await;
    assert!(claim(&store, &key, 60).await, "expired claim still held");
    assert!(!claim(&store, &key, 60).await);
}

pub(super) async fn concurrent_claims_one_winner(store: Store, _redis: RedisInfo) {
    // Twenty claims of one key at once (as twenty verifies of one code on
    // several replicas): exactly one wins. Repeated on fresh keys, so an
    // interleaving that lets two through has several chances to show.
    for round in 0..5 {
        let key = step_key(Uuid::now_v7(), round);
        let barrier = Arc::new(tokio::sync::Barrier::new(20));
        let claims = (0..20).map(|_| {
            let (store, key, barrier) = (store.clone(), key.clone(), barrier.clone());
            tokio::spawn(async move {
                barrier.wait().await;
                claim(&store, &key, 300).await
            })
        });
        let won = futures_util::future::join_all(claims)
            .await
            .into_iter()
            .map(|r| r.expect("claim task"))
            .filter(|won| *won)
            .count();
        assert_eq!(won, 1, "round {round}: {won} of 20 concurrent claims won");
    }
}

pub(super) async fn redis_claim_is_one_expiring_key(store: Store, redis: RedisInfo) {
    let (url, prefix) = redis.expect("Redis-only test");
    let user = Uuid::now_v7();
    assert!(claim(&store, &step_key(user, 42), 300).await);
    assert!(!claim(&store, &step_key(user, 42), 300).await);
    let keys = keys_with_ttl(&url, &prefix).await;
    assert_eq!(
        keys.iter().map(|(k, _)| k.as_str()).collect::<Vec<_>>(),
        [format!("{prefix}once:totp:{user}:42")],
        "{keys:?}"
    );
    let ttl = keys[0].1;
    assert!((295..=300).contains(&ttl), "claim TTL {ttl}, want ~300");
}
