//! A password reset of an account with a factor needs a code: through the
//! real outbox and SMTP server, as tests/api/email.rs does.

use std::time::Instant;

use super::*;

crate::sql_backends!(a_reset_needs_a_code_of_the_factor);

const NEW_PASSWORD: &str = "a brand new passphrase";
const MAIL_WAIT: Duration = Duration::from_secs(20);

/// The token of the first reset mail to `to`; waits for it.
async fn reset_link(app: &TestApp, to: &str) -> String {
    let deadline = Instant::now() + MAIL_WAIT;
    loop {
        if let Some(mail) = app
            .mails_to(to)
            .into_iter()
            .find(|m| m.text.contains("/reset-password#token="))
        {
            return mail
                .link_token()
                .unwrap_or_else(|| panic!("no token in {:?}", mail.text));
        }
        assert!(Instant::now() < deadline, "no reset mail to {to}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn reset(app: &TestApp, token: &str, code: Option<&str>) -> Resp {
    let mut body = json!({ "token": token, "new_password": NEW_PASSWORD });
    if let Some(code) = code {
        body["code"] = json!(code);
    }
    app.post_json("/auth/password/reset", &body, None).await
}

/// The password is still the old one, and the factor still asked for.
async fn assert_unchanged(app: &TestApp, t: &Tokens) {
    challenge(app, "ann").await;
    app.login_email("ann@example.com", NEW_PASSWORD)
        .await
        .assert_error(401, "InvalidCredentials");
    // No session ended either.
    me(app, &t.access).await;
}

async fn a_reset_needs_a_code_of_the_factor(b: Backend) {
    let app = mfa_app(b).await;
    let (ann, mut factor) = user_with_factor(&app, "ann").await;
    app.post_json(
        "/auth/password/forgot",
        &json!({ "email": "ann@example.com" }),
        None,
    )
    .await
    .assert_status(202);
    let link = reset_link(&app, "ann@example.com").await;

    // Without a code: 403, and no challenge to answer elsewhere.
    let r = reset(&app, &link, None).await;
    r.assert_error(403, "MfaRequired");
    assert!(
        r.body.get("mfa_token").is_none() && r.body.get("expires_in").is_none(),
        "{r:?}"
    );
    assert_unchanged(&app, &ann).await;

    // A wrong code: 401, nothing spent either.
    for wrong in [factor.app.wrong_code(), "abcd-efgh-jkmn".into()] {
        reset(&app, &link, Some(&wrong))
            .await
            .assert_error(401, "InvalidCredentials");
        assert_unchanged(&app, &ann).await;
    }

    // The right code: the link still works.
    let code = factor.app.fresh_code().await;
    reset(&app, &link, Some(&code)).await.assert_status(204);
    app.assert_revoked(&[&ann], "/users/me").await;
    app.login_email("ann@example.com", PASSWORD)
        .await
        .assert_error(401, "InvalidCredentials");
    // The new password logs in, to the second factor: a reset removes no
    // factor.
    let token = challenge_of(&app.login_email("ann@example.com", NEW_PASSWORD).await);
    // The code the reset took is spent; a recovery code finishes the login.
    verify(&app, &token, &code)
        .await
        .assert_error(401, "InvalidCredentials");
    let t = verified(&app, &token, &factor.recovery[0]).await;
    assert_eq!(me(&app, &t.access).await["mfa_enabled"], true);
    // The link is spent.
    reset(&app, &link, Some(&factor.recovery[1]))
        .await
        .assert_error(400, "LinkInvalid");
}
