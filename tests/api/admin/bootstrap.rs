//! Administration: bootstrapping the configured admin in one process.

use secrecy::SecretString;

use crate::helpers::{Backend, PASSWORD, RACE_ROUNDS, race, spawn_app};

// ---------------------------------------------------------------- bootstrap

async fn bootstrap_is_idempotent(b: Backend) {
    let app = spawn_app(b).await;
    let admin = app.admin().await;
    let ann = app.user("ann").await;
    let before = app.get("/users", Some(&admin.access)).await;
    assert_eq!(before.body["total"], 2);

    // Again, also with another password and the email in another case: the
    // existing admin is left as it is.
    app.admin().await;
    tessera::bootstrap::ensure_admin(
        &app.state,
        "ROOT@example.com",
        "root2",
        SecretString::from("another password".to_owned()),
    )
    .await
    .expect("bootstrap again");
    let after = app.get("/users", Some(&admin.access)).await;
    after.assert_status(200);
    assert_eq!(after.body["total"], 2, "{after:?}");
    let admins: Vec<_> = after.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|u| u["role"] == "admin")
        .collect();
    assert_eq!(admins.len(), 1, "{after:?}");
    assert_eq!(admins[0]["id"], admin.user_id.as_str());
    assert_eq!(admins[0]["username"], "root");
    app.login_email("root@example.com", "another password")
        .await
        .assert_error(401, "InvalidCredentials");
    app.login("root").await;
    // Bootstrapping does not end the admin's sessions.
    app.verify(&admin.access).await.assert_status(200);

    // An existing non-admin account with the configured email is not promoted.
    tessera::bootstrap::ensure_admin(
        &app.state,
        "ann@example.com",
        "ann",
        SecretString::from(PASSWORD.to_owned()),
    )
    .await
    .expect("bootstrap over an existing user");
    let r = app
        .get(&format!("/users/{}", ann.user_id), Some(&admin.access))
        .await;
    assert_eq!(r.body["role"], "user");
    assert_eq!(
        app.get("/users", Some(&admin.access)).await.body["total"],
        2
    );
}

/// Racers bootstrapping at once in one process make exactly one admin
/// (a few rounds, each on a fresh app).
async fn concurrent_bootstrap_in_one_process(b: Backend) {
    for round in 0..RACE_ROUNDS {
        let app = spawn_app(b).await;
        let results = race(4, |_| {
            let state = app.state.clone();
            async move {
                tessera::bootstrap::ensure_admin(
                    &state,
                    "root@example.com",
                    "root",
                    SecretString::from(PASSWORD.to_owned()),
                )
                .await
            }
        })
        .await;
        for r in &results {
            assert!(
                r.is_ok(),
                "round {round}: concurrent bootstrap failed: {results:?}"
            );
        }
        let admin = app.login("root").await;
        let list = app.get("/users", Some(&admin.access)).await;
        list.assert_status(200);
        assert_eq!(list.body["total"], 1, "round {round}: {list:?}");
        assert_eq!(list.body["items"][0]["role"], "admin");
    }
}

/// A non-admin holding the configured username (or email) is a conflict:
/// the bootstrap succeeds without an admin and counts it; nobody is
/// promoted. (Counters are per process: other tests may add to it.)
async fn bootstrap_conflict_is_counted_not_fatal(b: Backend) {
    let app = spawn_app(b).await;
    let bootstrap_conflicts = |text: &str| -> u64 {
        text.lines()
            .find_map(|l| {
                l.strip_prefix(r#"tessera_auth_events_total{event="bootstrap_conflict"} "#)
            })
            .and_then(|n| n.parse().ok())
            .unwrap_or(0)
    };
    for (username, email) in [("root", "other@example.com"), ("other", "root@example.com")] {
        let holder = app.register(username, email, PASSWORD).await;
        holder.assert_status(201);
        let before = bootstrap_conflicts(&app.get("/metrics", None).await.text);
        tessera::bootstrap::ensure_admin(
            &app.state,
            "root@example.com",
            "root",
            SecretString::from(PASSWORD.to_owned()),
        )
        .await
        .expect("a conflict does not fail the bootstrap");
        let after = bootstrap_conflicts(&app.get("/metrics", None).await.text);
        assert!(
            after > before,
            "{username}: not counted ({before} -> {after})"
        );
        let me = app.login_email(email, PASSWORD).await;
        me.assert_status(200);
        let v = app.verify(&me.str("access_token")).await;
        assert_eq!(v.body["role"], "user", "{username}: promoted: {v:?}");
        app.delete("/users/me", Some(&me.str("access_token")))
            .await
            .assert_status(204);
    }
}

crate::both_backends!(
    bootstrap_is_idempotent,
    concurrent_bootstrap_in_one_process,
    bootstrap_conflict_is_counted_not_fatal,
);
