//! Concurrent answers to challenges: one code, one session, whether the
//! racers share a challenge, each have their own, or sit on two replicas.

use crate::helpers::{RACE_ROUNDS, race, spawn_with_config, test_config};

use super::*;

crate::sql_backends!(
    concurrent_verifies_of_one_challenge_start_one_session,
    concurrent_verifies_of_one_code_accept_it_once,
);

/// Of `results`, the one 200 (its tokens); the others are 401s of `codes`.
#[track_caller]
fn one_winner(results: &[Resp], codes: &[&str], what: &str) -> Tokens {
    let winners: Vec<&Resp> = results.iter().filter(|r| r.status == 200).collect();
    assert_eq!(
        winners.len(),
        1,
        "{what}: {} of {} concurrent verifies started a session: {results:?}",
        winners.len(),
        results.len()
    );
    for r in results.iter().filter(|r| r.status != 200) {
        let code = r.body["code"].as_str().unwrap_or_default();
        assert!(
            r.status == 401 && codes.contains(&code),
            "{what}: a loser got {r:?}"
        );
    }
    Tokens {
        access: winners[0].str("access_token"),
        refresh: winners[0].str("refresh_token"),
        user_id: winners[0].str("user_id"),
    }
}

async fn concurrent_verifies_of_one_challenge_start_one_session(b: Backend) {
    let app = mfa_app(b).await;
    for round in 0..RACE_ROUNDS {
        let name = format!("ann{round}");
        let (t, mut factor) = user_with_factor(&app, &name).await;
        let token = challenge(&app, &name).await;
        let code = factor.app.fresh_code().await;
        let results = race(20, |_| {
            let (app, token, code) = (app.clone(), token.clone(), code.clone());
            async move { verify(&app, &token, &code).await }
        })
        .await;
        // Losers: the challenge taken or out of tries, or the step spent.
        let won = one_winner(
            &results,
            &["TokenInvalid", "InvalidCredentials"],
            &format!("round {round}"),
        );
        me(&app, &won.access).await;
        assert_eq!(session_ids(&app, &t.access).await.len(), 2);
    }
}

async fn concurrent_verifies_of_one_code_accept_it_once(b: Backend) {
    let app = mfa_app(b).await;
    for round in 0..RACE_ROUNDS {
        let name = format!("ann{round}");
        let (t, mut factor) = user_with_factor(&app, &name).await;
        let mut tokens = Vec::new();
        for _ in 0..20 {
            tokens.push(challenge(&app, &name).await);
        }
        let code = factor.app.fresh_code().await;
        let results = race(20, |i| {
            let (app, token, code) = (app.clone(), tokens[i].clone(), code.clone());
            async move { verify(&app, &token, &code).await }
        })
        .await;
        let won = one_winner(&results, &["InvalidCredentials"], &format!("round {round}"));
        me(&app, &won.access).await;
        assert_eq!(session_ids(&app, &t.access).await.len(), 2);
    }
}

/// Two replicas on one PostgreSQL database and one Redis (one key prefix):
/// a step accepted on one is refused on the other, and a challenge of one
/// is answered on the other.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_code_accepted_on_one_replica_is_refused_on_another() {
    let b = Backend::PostgresRedis;
    let mut config = test_config(b).await;
    roomy_limits(&mut config);
    let one = spawn_with_config(config.clone(), b).await;
    let two = spawn_with_config(config, b).await;
    let (_, mut factor) = user_with_factor(&one, "ann").await;

    let code = factor.app.fresh_code().await;
    verified(&one, &challenge(&one, "ann").await, &code).await;
    // Replica two knows the factor, and that the step is spent.
    let token = challenge(&two, "ann").await;
    verify(&two, &token, &code)
        .await
        .assert_error(401, "InvalidCredentials");
    // A challenge handed out by one is answered on two (and then spent
    // for both).
    let token = challenge(&one, "ann").await;
    let t = verified(&two, &token, &factor.recovery[0]).await;
    me(&one, &t.access).await;
    verify(&one, &token, &factor.recovery[1])
        .await
        .assert_error(401, "TokenInvalid");

    // Twenty racers, half on each replica, each with its own challenge,
    // all with one code: one session. (Another account, enrolled on two,
    // whose steps are all unused: no wait for a third step of ann's.)
    let (_, mut bobs) = user_with_factor(&two, "bob").await;
    let mut tokens = Vec::new();
    for i in 0..20 {
        let app = if i % 2 == 0 { &one } else { &two };
        tokens.push(challenge(app, "bob").await);
    }
    let code = bobs.app.fresh_code().await;
    let results = race(20, |i| {
        let app = if i % 2 == 0 { one.clone() } else { two.clone() };
        let (token, code) = (tokens[i].clone(), code.clone());
        async move { verify(&app, &token, &code).await }
    })
    .await;
    one_winner(&results, &["InvalidCredentials"], "two replicas");
}
