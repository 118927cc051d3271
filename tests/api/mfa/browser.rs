//! The browser variant (`TESSERA_COOKIES=true`): `/auth/browser/login`
//! answers the same 403, `/auth/browser/mfa/verify` the BrowserSession
//! and its cookies.

use std::collections::BTreeMap;

use reqwest::Method;

use super::*;

crate::sql_backends!(a_browser_login_with_a_factor_ends_in_cookies);

const ACCESS: &str = "__Host-tessera-access";
const REFRESH: &str = "__Secure-tessera-refresh";
const CSRF: &str = "__Host-tessera-csrf";

/// The cookies a response sets with a value (name -> value); cleared ones
/// (`Max-Age=0`) are left out.
fn cookies_set(r: &Resp) -> BTreeMap<String, String> {
    r.headers
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .filter(|line| !line.contains("Max-Age=0"))
        .filter_map(|line| {
            let pair = line.split(';').next()?;
            let (name, value) = pair.split_once('=')?;
            Some((name.trim().to_owned(), value.to_owned()))
        })
        .collect()
}

async fn a_browser_login_with_a_factor_ends_in_cookies(b: Backend) {
    let app = spawn_app_with(b, |c| {
        roomy_limits(c);
        c.cookies = true;
        c.public_url = Some("https://auth.example.com".into());
    })
    .await;
    let (_, mut factor) = user_with_factor(&app, "ann").await;
    let login = json!({"email": "ann@example.com", "password": PASSWORD});

    let r = app.post_json("/auth/browser/login", &login, None).await;
    let token = challenge_of(&r);
    assert!(
        cookies_set(&r).is_empty(),
        "cookies before the factor: {r:?}"
    );
    let browser_verify = |token: String, code: String| {
        let app = app.clone();
        async move {
            app.post_json(
                "/auth/browser/mfa/verify",
                &json!({ "mfa_token": token, "code": code }),
                None,
            )
            .await
        }
    };
    let r = browser_verify(token.clone(), factor.app.wrong_code()).await;
    r.assert_error(401, "InvalidCredentials");
    assert!(cookies_set(&r).is_empty(), "{r:?}");

    let r = browser_verify(token.clone(), factor.app.fresh_code().await).await;
    r.assert_status(200);
    let keys: Vec<&str> = r
        .body
        .as_object()
        .expect("a BrowserSession")
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        keys,
        ["csrf_token", "expires_in", "refresh_expires_in", "user_id"],
        "{r:?}"
    );
    let jar = cookies_set(&r);
    assert_eq!(
        jar.keys().map(String::as_str).collect::<Vec<_>>(),
        [ACCESS, CSRF, REFRESH],
        "{r:?}"
    );
    assert_eq!(jar[CSRF], r.str("csrf_token"));
    let c = claims(&jar[ACCESS]);
    assert_eq!(c["amr"], json!(["pwd", "otp"]), "{c}");
    assert_eq!(c["fresh"], true, "{c}");
    assert!(!r.text.contains(&jar[ACCESS]), "a token in the body");

    // The cookie authenticates.
    let me = app
        .send(
            app.request(Method::GET, "/users/me", None)
                .header("cookie", format!("{ACCESS}={}", jar[ACCESS])),
        )
        .await;
    me.assert_status(200);
    assert_eq!(me.body["username"], "ann");
    assert_eq!(me.body["mfa_enabled"], true);

    // The challenge is spent, on either endpoint.
    browser_verify(token.clone(), factor.recovery[0].clone())
        .await
        .assert_error(401, "TokenInvalid");
    verify(&app, &token, &factor.recovery[0])
        .await
        .assert_error(401, "TokenInvalid");
}
