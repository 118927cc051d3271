//! Enrolment and its confirmation: a fresh token, the secret shown once,
//! replaced while unconfirmed, active after a right code, 409 then.

use super::*;

crate::sql_backends!(
    enrolment_shows_a_secret_that_a_first_code_confirms,
    nothing_to_confirm_or_remove_without_enrolment,
);

async fn enrolment_shows_a_secret_that_a_first_code_confirms(b: Backend) {
    let app = mfa_app(b).await;
    let t = app.user("ann").await;

    // A fresh token only.
    let stale = app.non_fresh_login("ann").await;
    app.post("/auth/mfa/totp", Some(&stale.access))
        .await
        .assert_error(401, "FreshTokenNeeded");
    app.post("/auth/mfa/totp", None)
        .await
        .assert_error(401, "TokenMissing");

    let first = app.post("/auth/mfa/totp", Some(&t.access)).await;
    first.assert_status(200);
    assert_eq!(first.header("cache-control"), Some("no-store"), "{first:?}");
    let secret = first.str("secret");
    assert_eq!(secret.len(), 32, "160 bits in base32: {secret}");
    assert!(
        secret
            .bytes()
            .all(|c| matches!(c, b'A'..=b'Z' | b'2'..=b'7')),
        "{secret}"
    );
    assert_eq!(
        first.str("otpauth_uri"),
        format!(
            "otpauth://totp/tessera:ann@example.com?secret={secret}&issuer=tessera&algorithm=SHA1&digits=6&period=30"
        )
    );
    let svg = first.str("qr_svg");
    assert!(
        svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"),
        "{svg:.80}"
    );
    assert!(!svg.contains(&secret), "the secret as text in the picture");

    // Not active before its confirmation: a plain login, a plain user.
    assert_eq!(me(&app, &t.access).await["mfa_enabled"], false);
    app.login("ann").await;

    // A second enrolment replaces the unconfirmed secret.
    let second = app.post("/auth/mfa/totp", Some(&t.access)).await;
    second.assert_status(200);
    assert_ne!(second.str("secret"), secret);
    let mut old = Authenticator::from_base32(&secret);
    let mut new = Authenticator::from_base32(&second.str("secret"));
    let old_code = old.fresh_code().await;
    let new_codes: Vec<String> = (0..4)
        .map(|d| new.code_of(unix_now() / STEP + d - 1))
        .collect();
    assert!(
        !new_codes.contains(&old_code),
        "two random secrets share a code (one chance in ~250000): run again"
    );
    confirm(&app, &t, &old_code)
        .await
        .assert_error(401, "InvalidCredentials");

    // Wrong codes, junk, and a recovery-code shape (TOTP only here).
    for wrong in [
        new.wrong_code(),
        "12345".into(),
        "abcdef".into(),
        "abcd-efgh-jkmn".into(),
    ] {
        confirm(&app, &t, &wrong)
            .await
            .assert_error(401, "InvalidCredentials");
    }
    // A confirmation needs a fresh token too.
    let code = new.fresh_code().await;
    confirm(&app, &stale, &code)
        .await
        .assert_error(401, "FreshTokenNeeded");
    assert_eq!(me(&app, &t.access).await["mfa_enabled"], false);

    let r = confirm(&app, &t, &code).await;
    let codes = recovery_codes(&r);
    assert!(!r.text.contains(&second.str("secret")));
    let user = me(&app, &t.access).await;
    assert_eq!(user["mfa_enabled"], true, "{user}");
    assert!(
        !user.to_string().contains(&codes[0].replace('-', "")),
        "{user}"
    );

    // Active: no second enrolment, no second confirmation.
    app.post("/auth/mfa/totp", Some(&t.access))
        .await
        .assert_error(409, "Conflict");
    let code = new.fresh_code().await;
    confirm(&app, &t, &code).await.assert_error(409, "Conflict");
    // And a login now asks for it.
    challenge(&app, "ann").await;
}

async fn nothing_to_confirm_or_remove_without_enrolment(b: Backend) {
    let app = mfa_app(b).await;
    let t = app.user("ann").await;
    confirm(&app, &t, "123456")
        .await
        .assert_error(404, "NotFound");
    app.send_json(
        reqwest::Method::DELETE,
        "/auth/mfa/totp",
        &json!({"code": "123456"}),
        Some(&t.access),
    )
    .await
    .assert_error(404, "NotFound");
    app.post_json(
        "/auth/mfa/recovery-codes",
        &json!({"code": "123456"}),
        Some(&t.access),
    )
    .await
    .assert_error(404, "NotFound");
    // Nothing changed: the session lives, the login is plain.
    assert_eq!(me(&app, &t.access).await["mfa_enabled"], false);
    let again = app.login("ann").await;
    assert_eq!(claims(&again.access)["amr"], json!(["pwd"]));
}
