//! A change of the factor (confirm, remove, new recovery codes) ends the
//! user's other sessions, and an admin's removal ends them all.

use reqwest::Method;
use uuid::Uuid;

use super::*;

crate::sql_backends!(
    factor_changes_end_the_other_sessions,
    an_admin_removes_a_locked_out_users_factor,
);

async fn remove(app: &TestApp, access: &str, code: &str) -> Resp {
    app.send_json(
        Method::DELETE,
        "/auth/mfa/totp",
        &json!({ "code": code }),
        Some(access),
    )
    .await
}

/// The caller's session still works: an authenticated read.
async fn assert_alive(app: &TestApp, t: &Tokens) {
    app.verify(&t.access).await.assert_status(200);
    me(app, &t.access).await;
}

async fn factor_changes_end_the_other_sessions(b: Backend) {
    let app = mfa_app(b).await;
    let old = app.user("ann").await;
    let caller = app.login("ann").await;

    // Confirming ends the older session, not the caller's.
    let mut factor = enrol(&app, &caller).await;
    app.assert_revoked(&[&old], "/users/me").await;
    assert_alive(&app, &caller).await;

    // New recovery codes end the sessions started meanwhile.
    let code = factor.app.fresh_code().await;
    let other = login_with(&app, "ann", &code).await;
    let r = app
        .post_json(
            "/auth/mfa/recovery-codes",
            &json!({ "code": factor.recovery[0] }),
            Some(&caller.access),
        )
        .await;
    let codes = recovery_codes(&r);
    app.assert_revoked(&[&other], "/users/me").await;
    assert_alive(&app, &caller).await;

    // So does removing it.
    let other = login_with(&app, "ann", &codes[0]).await;
    remove(&app, &other.access, &factor.app.wrong_code())
        .await
        .assert_error(401, "InvalidCredentials");
    let stale = app
        .non_fresh(&login_with(&app, "ann", &codes[1]).await)
        .await;
    remove(&app, &stale.access, &codes[2])
        .await
        .assert_error(401, "FreshTokenNeeded");
    remove(&app, &caller.access, &codes[2])
        .await
        .assert_status(204);
    app.assert_revoked(&[&other, &stale], "/users/me").await;
    assert_alive(&app, &caller).await;
    assert_eq!(me(&app, &caller.access).await["mfa_enabled"], false);

    // Gone: nothing to remove, and a plain login.
    remove(&app, &caller.access, &codes[3])
        .await
        .assert_error(404, "NotFound");
    let plain = app.login("ann").await;
    assert_eq!(claims(&plain.access)["amr"], json!(["pwd"]));
    // The caller's session outlived every change, refresh included.
    app.refresh(&caller.refresh).await.assert_status(200);
}

async fn an_admin_removes_a_locked_out_users_factor(b: Backend) {
    let app = mfa_app(b).await;
    let root = app.admin().await;
    let (ann, mut factor) = user_with_factor(&app, "ann").await;
    let code = factor.app.fresh_code().await;
    let ann2 = login_with(&app, "ann", &code).await;
    let bob = app.user("bob").await;
    let path = format!("/users/{}/mfa", ann.user_id);

    // Admins only, with a fresh token.
    app.delete(&path, Some(&bob.access))
        .await
        .assert_error(403, "AdminRequired");
    app.delete(&path, Some(&ann.access))
        .await
        .assert_error(403, "AdminRequired");
    let stale_root = app.non_fresh_login("root").await;
    app.delete(&path, Some(&stale_root.access))
        .await
        .assert_error(401, "FreshTokenNeeded");
    app.delete(&path, None)
        .await
        .assert_error(401, "TokenMissing");
    // Nothing changed by those.
    assert_eq!(me(&app, &ann.access).await["mfa_enabled"], true);
    challenge(&app, "ann").await;

    app.delete(
        &format!("/users/{}/mfa", Uuid::now_v7()),
        Some(&root.access),
    )
    .await
    .assert_error(404, "NotFound");
    app.delete("/users/not-a-uuid/mfa", Some(&root.access))
        .await
        .assert_error(400, "BadRequest");

    app.delete(&path, Some(&root.access))
        .await
        .assert_status(204);
    // Every session of ann ended; the admin's and bob's did not.
    app.assert_revoked(&[&ann, &ann2], "/users/me").await;
    assert_alive(&app, &root).await;
    assert_alive(&app, &bob).await;
    // A plain login again.
    let plain = app.login("ann").await;
    assert_eq!(claims(&plain.access)["amr"], json!(["pwd"]));
    let user = me(&app, &plain.access).await;
    assert_eq!(user["mfa_enabled"], false, "{user}");
    // The admin sees it too.
    let r = app
        .get(&format!("/users/{}", ann.user_id), Some(&root.access))
        .await;
    r.assert_status(200);
    assert_eq!(r.body["mfa_enabled"], false);
}
