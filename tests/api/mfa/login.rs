//! The login of an account with a factor: 403 `MfaRequired` with a
//! challenge and no session, then `/auth/mfa/verify` starts the session
//! with `amr: ["pwd", "otp"]`, which refreshes keep.

use super::*;

crate::sql_backends!(a_login_with_a_factor_asks_for_a_code_then_starts_the_session);

async fn a_login_with_a_factor_asks_for_a_code_then_starts_the_session(b: Backend) {
    let app = mfa_app(b).await;
    // Without a factor: a plain login, `amr: ["pwd"]`.
    let bob = app.user("bob").await;
    assert_eq!(claims(&bob.access)["amr"], json!(["pwd"]));

    let (ann, mut factor) = user_with_factor(&app, "ann").await;
    let before = session_ids(&app, &ann.access).await;
    assert_eq!(before.len(), 1, "{before:?}");

    let r = app.login_email("ann@example.com", PASSWORD).await;
    let token = challenge_of(&r);
    // By username too; each login its own challenge.
    let r = app
        .post_json(
            "/auth/login",
            &json!({"username": "ann", "password": PASSWORD}),
            None,
        )
        .await;
    assert_ne!(challenge_of(&r), token);
    // No session exists yet.
    assert_eq!(session_ids(&app, &ann.access).await, before);
    // A wrong password says nothing about the factor.
    let r = app.login_email("ann@example.com", "not the password").await;
    r.assert_error(401, "InvalidCredentials");
    assert!(r.body.get("mfa_token").is_none(), "{r:?}");

    let code = factor.app.fresh_code().await;
    let t = verified(&app, &token, &code).await;
    assert_eq!(t.user_id, ann.user_id);
    let c = claims(&t.access);
    assert_eq!(c["amr"], json!(["pwd", "otp"]), "{c}");
    assert_eq!(c["fresh"], true, "{c}");
    assert_eq!(c["sub"], ann.user_id.as_str(), "{c}");
    let v = app.verify(&t.access).await;
    v.assert_status(200);
    assert_eq!(v.body["fresh"], true);
    assert_eq!(me(&app, &t.access).await["username"], "ann");
    // One new session, listed as the caller's.
    let after = session_ids(&app, &ann.access).await;
    assert_eq!(after.len(), 2, "{after:?}");
    assert!(after.contains(&c["sid"].as_str().unwrap().to_owned()));

    // Refreshes keep how the session's login was proven.
    let mut refresh = t.refresh.clone();
    for _ in 0..2 {
        let r = app.refresh(&refresh).await;
        r.assert_status(200);
        let c = claims(&r.str("access_token"));
        assert_eq!(c["amr"], json!(["pwd", "otp"]), "{c}");
        assert_eq!(c["fresh"], false, "{c}");
        refresh = r.str("refresh_token");
    }
    // And bob's refresh keeps his.
    let r = app.refresh(&bob.refresh).await;
    r.assert_status(200);
    assert_eq!(claims(&r.str("access_token"))["amr"], json!(["pwd"]));
}
