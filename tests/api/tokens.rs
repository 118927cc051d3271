//! Attack tokens and expiry over HTTP.
//!
//! Forged tokens start from a real access token obtained by login: its
//! header and claims are decoded, changed, and signed again by hand (so any
//! `alg`, header field or byte can be produced, even what `jsonwebtoken`
//! itself would refuse to build).

use std::time::Duration;

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use jsonwebtoken::{Algorithm, EncodingKey};
use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::{Backend, Resp, SECRET, TestApp, spawn_app, spawn_app_with};

const OTHER_SECRET: &str = "another-secret-that-is-long-enough-0123456789";

// ---------------------------------------------------------------- forging

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

fn b64_json(v: &Value) -> String {
    b64(&serde_json::to_vec(v).unwrap())
}

/// The decoded header and claims of a JWT.
fn parts(token: &str) -> (Value, Value) {
    let mut it = token.split('.');
    let mut next = || {
        let bytes = URL_SAFE_NO_PAD
            .decode(it.next().expect("JWT part"))
            .expect("base64url JWT part");
        serde_json::from_slice::<Value>(&bytes).expect("JSON JWT part")
    };
    let header = next();
    let claims = next();
    (header, claims)
}

/// `header.claims.signature` with an HMAC signature of `alg` under `secret`
/// (whatever `alg` the header itself claims).
fn sign_with(header: &Value, claims: &Value, secret: &str, alg: Algorithm) -> String {
    let message = format!("{}.{}", b64_json(header), b64_json(claims));
    let sig = jsonwebtoken::crypto::sign(
        message.as_bytes(),
        &EncodingKey::from_secret(secret.as_bytes()),
        alg,
    )
    .expect("sign");
    format!("{message}.{sig}")
}

/// Signed correctly, as the service would: HS256 under `SECRET`.
fn resign(header: &Value, claims: &Value) -> String {
    sign_with(header, claims, SECRET, Algorithm::HS256)
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

/// Flips one bit of the character at `idx` of a base64url string, keeping it
/// a valid base64url character different from the original.
fn flip_char(s: &str, idx: usize) -> String {
    let mut bytes = s.as_bytes().to_vec();
    let c = bytes[idx];
    bytes[idx] = match c {
        b'A' => b'B',
        _ => b'A',
    };
    String::from_utf8(bytes).unwrap()
}

/// A fresh app with one logged-in user; returns the app, its access and
/// refresh tokens.
async fn app_with_user(b: Backend) -> (TestApp, String, String) {
    let app = spawn_app(b).await;
    let t = app.user("ann").await;
    (app, t.access, t.refresh)
}

#[track_caller]
fn assert_invalid(r: &Resp, what: &str) {
    assert_eq!(
        (r.status.as_u16(), r.body["code"].as_str()),
        (401, Some("TokenInvalid")),
        "{what}: {r:?}"
    );
    r.assert_error(401, "TokenInvalid");
}

async fn verify_with_header(app: &TestApp, value: &str) -> Resp {
    app.send(
        app.client
            .get(app.url("/auth/verify"))
            .header("authorization", value),
    )
    .await
}

// ---------------------------------------------------------------- tests

/// The forging helper itself is right: an unchanged token re-signed by hand
/// is accepted, so the refusals below are due to the change made.
async fn resigned_unchanged_token_is_accepted(b: Backend) {
    let (app, access, _) = app_with_user(b).await;
    let (h, c) = parts(&access);
    assert_eq!(h["alg"], "HS256");
    assert_eq!(h["typ"], "JWT");
    assert!(h["kid"].is_string(), "no kid: {h}");
    let forged = resign(&h, &c);
    let r = app.verify(&forged).await;
    r.assert_status(200);
    assert_eq!(r.body["jti"], c["jti"]);
}

async fn alg_none_is_invalid(b: Backend) {
    let (app, access, _) = app_with_user(b).await;
    let (h, c) = parts(&access);
    for header in [
        json!({"alg": "none", "typ": "JWT"}),
        json!({"alg": "none", "typ": "JWT", "kid": h["kid"]}),
        json!({"alg": "None", "typ": "JWT", "kid": h["kid"]}),
        json!({"alg": "NONE", "typ": "JWT"}),
    ] {
        let token = format!("{}.{}.", b64_json(&header), b64_json(&c));
        assert_invalid(&app.verify(&token).await, &format!("{header}"));
        // The real signature kept under an `alg: none` header.
        let sig = access.rsplit('.').next().unwrap();
        let token = format!("{}.{}.{sig}", b64_json(&header), b64_json(&c));
        assert_invalid(&app.verify(&token).await, &format!("{header} + sig"));
    }
}

async fn other_secret_or_unknown_kid_is_invalid(b: Backend) {
    let (app, access, refresh) = app_with_user(b).await;
    let (h, c) = parts(&access);
    let forged = sign_with(&h, &c, OTHER_SECRET, Algorithm::HS256);
    assert_invalid(&app.verify(&forged).await, "other secret, same kid");

    let mut unknown = h.clone();
    unknown["kid"] = json!("0123456789abcdef");
    assert_invalid(&app.verify(&resign(&unknown, &c)).await, "unknown kid");
    assert_invalid(
        &app.verify(&sign_with(&unknown, &c, OTHER_SECRET, Algorithm::HS256))
            .await,
        "unknown kid, other secret",
    );

    // The same for a refresh token on /auth/refresh.
    let (rh, rc) = parts(&refresh);
    let forged = sign_with(&rh, &rc, OTHER_SECRET, Algorithm::HS256);
    assert_invalid(&app.refresh(&forged).await, "refresh, other secret");
    let mut unknown = rh.clone();
    unknown["kid"] = json!("0123456789abcdef");
    assert_invalid(
        &app.refresh(&resign(&unknown, &rc)).await,
        "refresh, unknown kid",
    );
    // The genuine refresh token still works afterwards.
    app.refresh(&refresh).await.assert_status(200);
}

async fn other_hmac_algorithms_are_invalid(b: Backend) {
    let (app, access, _) = app_with_user(b).await;
    let (h, c) = parts(&access);
    for (name, alg) in [("HS384", Algorithm::HS384), ("HS512", Algorithm::HS512)] {
        let mut header = h.clone();
        header["alg"] = json!(name);
        let token = sign_with(&header, &c, SECRET, alg);
        assert_invalid(&app.verify(&token).await, name);
        // Header says HS256 but the signature is of another algorithm.
        let token = sign_with(&h, &c, SECRET, alg);
        assert_invalid(
            &app.verify(&token).await,
            &format!("HS256 header, {name} sig"),
        );
    }
}

async fn wrong_issuer_or_audience_is_invalid(b: Backend) {
    let (app, access, _) = app_with_user(b).await;
    let (h, c) = parts(&access);
    for (claim, value) in [
        ("iss", json!("evil")),
        ("iss", json!("Tessera")),
        ("iss", json!("")),
        ("aud", json!("evil")),
        ("aud", json!("tessera-other")),
        ("aud", json!(["evil"])),
    ] {
        let mut claims = c.clone();
        claims[claim] = value.clone();
        let r = app.verify(&resign(&h, &claims)).await;
        assert_invalid(&r, &format!("{claim} = {value}"));
    }
}

async fn missing_claims_are_invalid(b: Backend) {
    let (app, access, refresh) = app_with_user(b).await;
    let (h, c) = parts(&access);
    for claim in [
        "sub", "exp", "jti", "sid", "typ", "role", "fresh", "iss", "aud", "iat", "nbf",
    ] {
        let mut claims = c.clone();
        assert!(
            claims.as_object_mut().unwrap().remove(claim).is_some(),
            "access token has no {claim}: {c}"
        );
        let r = app.verify(&resign(&h, &claims)).await;
        assert_invalid(&r, &format!("access token without {claim}"));
    }
    let (rh, rc) = parts(&refresh);
    for claim in [
        "sub", "exp", "jti", "sid", "typ", "iss", "aud", "iat", "nbf",
    ] {
        let mut claims = rc.clone();
        assert!(
            claims.as_object_mut().unwrap().remove(claim).is_some(),
            "refresh token has no {claim}: {rc}"
        );
        let r = app.refresh(&resign(&rh, &claims)).await;
        assert_invalid(&r, &format!("refresh token without {claim}"));
    }
    app.refresh(&refresh).await.assert_status(200);
}

async fn flipped_bytes_are_invalid(b: Backend) {
    let (app, access, _) = app_with_user(b).await;
    let segs: Vec<&str> = access.split('.').collect();
    assert_eq!(segs.len(), 3);
    // Signature: first, middle and last-but-one characters (the last one
    // carries padding bits that a lenient decoder might ignore).
    for idx in [0, segs[2].len() / 2, segs[2].len() - 2] {
        let token = format!("{}.{}.{}", segs[0], segs[1], flip_char(segs[2], idx));
        assert_invalid(&app.verify(&token).await, &format!("signature char {idx}"));
    }
    // Payload: first and middle characters.
    for idx in [0, segs[1].len() / 2] {
        let token = format!("{}.{}.{}", segs[0], flip_char(segs[1], idx), segs[2]);
        assert_invalid(&app.verify(&token).await, &format!("payload char {idx}"));
    }
    // Header.
    let token = format!("{}.{}.{}", flip_char(segs[0], 5), segs[1], segs[2]);
    assert_invalid(&app.verify(&token).await, "header char");
    // Truncated signature, signature dropped.
    let token = format!("{}.{}.{}", segs[0], segs[1], &segs[2][..segs[2].len() - 4]);
    assert_invalid(&app.verify(&token).await, "truncated signature");
    let token = format!("{}.{}.", segs[0], segs[1]);
    assert_invalid(&app.verify(&token).await, "no signature");
    let token = format!("{}.{}", segs[0], segs[1]);
    assert_invalid(&app.verify(&token).await, "two segments");
    // The original is untouched.
    app.verify(&access).await.assert_status(200);
}

async fn future_nbf_is_invalid(b: Backend) {
    let (app, access, _) = app_with_user(b).await;
    let (h, c) = parts(&access);
    let mut claims = c.clone();
    claims["nbf"] = json!(now() + 3600);
    claims["exp"] = json!(now() + 7200);
    assert_invalid(&app.verify(&resign(&h, &claims)).await, "nbf in an hour");
}

async fn huge_token_is_invalid(b: Backend) {
    let (app, access, _) = app_with_user(b).await;
    let r = app.verify(&"a".repeat(100_000)).await;
    assert_invalid(&r, "100 KB of 'a'");

    let (h, c) = parts(&access);
    let mut claims = c.clone();
    claims["pad"] = json!("x".repeat(75_000));
    let token = resign(&h, &claims);
    assert!(token.len() >= 100_000, "{}", token.len());
    assert_invalid(&app.verify(&token).await, "100 KB signed token");
    app.verify(&access).await.assert_status(200);
}

async fn garbage_tokens(b: Backend) {
    let (app, _, _) = app_with_user(b).await;
    for t in ["abc", "a.b.c", "..", "...", "a.b", "ey.ey.ey", "Bearer"] {
        assert_invalid(&app.verify(t).await, t);
        assert_invalid(&app.refresh(t).await, t);
    }
    // Valid base64url of non-JSON and of JSON that is not an object.
    let token = format!("{}.{}.{}", b64(b"not json"), b64(b"nope"), b64(b"sig"));
    assert_invalid(&app.verify(&token).await, "base64 of non-JSON");
    let token = format!(
        "{}.{}.{}",
        b64_json(&json!([1, 2])),
        b64_json(&json!(3)),
        b64(b"x")
    );
    assert_invalid(&app.verify(&token).await, "JSON non-objects");

    verify_with_header(&app, "Bearer ")
        .await
        .assert_error(401, "TokenMissing");
    app.send(
        app.client
            .post(app.url("/auth/refresh"))
            .header("authorization", "Bearer "),
    )
    .await
    .assert_error(401, "TokenMissing");
}

async fn token_types_are_not_interchangeable(b: Backend) {
    let (app, access, refresh) = app_with_user(b).await;
    assert_invalid(&app.verify(&refresh).await, "refresh token on /auth/verify");
    assert_invalid(
        &app.get("/users/me", Some(&refresh)).await,
        "refresh token on /users/me",
    );
    assert_invalid(&app.refresh(&access).await, "access token on /auth/refresh");

    // A refresh token given role and fresh stays a refresh token; relabelled
    // as access without them it lacks the access-only claims.
    let (rh, rc) = parts(&refresh);
    let mut claims = rc.clone();
    claims["role"] = json!("admin");
    claims["fresh"] = json!(true);
    let r = app.verify(&resign(&rh, &claims)).await;
    assert_invalid(&r, "refresh token with role/fresh on /auth/verify");
    let mut claims = rc.clone();
    claims["typ"] = json!("access");
    let r = app.verify(&resign(&rh, &claims)).await;
    assert_invalid(&r, "refresh token relabelled access, no role/fresh");
    // Unknown `typ` values.
    let (ah, ac) = parts(&access);
    for typ in [
        json!("Access"),
        json!("id"),
        json!(""),
        json!("ACCESS"),
        json!(1),
    ] {
        let mut claims = ac.clone();
        claims["typ"] = typ.clone();
        let r = app.verify(&resign(&ah, &claims)).await;
        assert_invalid(&r, &format!("typ {typ}"));
    }

    // The genuine tokens are unaffected.
    app.verify(&access).await.assert_status(200);
}

async fn expired_access_token(b: Backend) {
    let app = spawn_app_with(b, |c| c.access_ttl = Duration::from_secs(1)).await;
    let t = app.user("ann").await;
    app.verify(&t.access).await.assert_status(200);
    tokio::time::sleep(Duration::from_millis(2200)).await;
    app.verify(&t.access)
        .await
        .assert_error(401, "TokenExpired");
    app.get("/users/me", Some(&t.access))
        .await
        .assert_error(401, "TokenExpired");
    // The refresh token lives on and gives a working access token.
    let r = app.refresh(&t.refresh).await;
    r.assert_status(200);
    app.verify(&r.str("access_token")).await.assert_status(200);
}

async fn resigned_expired_token_is_expired(b: Backend) {
    let (app, access, refresh) = app_with_user(b).await;
    let (h, c) = parts(&access);
    let mut claims = c.clone();
    claims["iat"] = json!(now() - 120);
    claims["nbf"] = json!(now() - 120);
    claims["exp"] = json!(now() - 60);
    app.verify(&resign(&h, &claims))
        .await
        .assert_error(401, "TokenExpired");
    // Expired two seconds ago: leeway is 0 by default.
    let mut claims = c.clone();
    claims["exp"] = json!(now() - 2);
    app.verify(&resign(&h, &claims))
        .await
        .assert_error(401, "TokenExpired");

    let (rh, rc) = parts(&refresh);
    let mut claims = rc.clone();
    claims["exp"] = json!(now() - 60);
    app.refresh(&resign(&rh, &claims))
        .await
        .assert_error(401, "TokenExpired");

    // Expired *and* signed with another key: the signature is checked first.
    let mut claims = c.clone();
    claims["exp"] = json!(now() - 60);
    let forged = sign_with(&h, &claims, OTHER_SECRET, Algorithm::HS256);
    assert_invalid(&app.verify(&forged).await, "expired, other secret");
}

async fn leeway_accepts_recently_expired_tokens(b: Backend) {
    let app = spawn_app_with(b, |c| c.jwt_leeway = Duration::from_secs(60)).await;
    let t = app.user("ann").await;
    let (h, c) = parts(&t.access);
    let mut claims = c.clone();
    claims["exp"] = json!(now() - 5);
    let r = app.verify(&resign(&h, &claims)).await;
    r.assert_status(200);
    assert_eq!(r.body["jti"], c["jti"]);
    // Beyond the leeway it is expired.
    let mut claims = c.clone();
    claims["iat"] = json!(now() - 600);
    claims["nbf"] = json!(now() - 600);
    claims["exp"] = json!(now() - 120);
    app.verify(&resign(&h, &claims))
        .await
        .assert_error(401, "TokenExpired");
}

async fn authorization_header_variants(b: Backend) {
    let (app, access, _) = app_with_user(b).await;
    for scheme in ["Bearer", "bearer", "BEARER", "bEaReR"] {
        let r = verify_with_header(&app, &format!("{scheme} {access}")).await;
        r.assert_status(200);
    }
    verify_with_header(&app, "Basic dXNlcjpwYXNz")
        .await
        .assert_error(401, "TokenMissing");
    verify_with_header(&app, &format!("Basic {access}"))
        .await
        .assert_error(401, "TokenMissing");
    verify_with_header(&app, &format!("Token {access}"))
        .await
        .assert_error(401, "TokenMissing");
    verify_with_header(&app, &access)
        .await
        .assert_error(401, "TokenMissing");
    app.get("/auth/verify", None)
        .await
        .assert_error(401, "TokenMissing");
    app.get(&format!("/auth/verify?access_token={access}"), None)
        .await
        .assert_error(401, "TokenMissing");
    app.send(
        app.request(Method::POST, "/auth/refresh", None)
            .query(&[("refresh_token", "x")]),
    )
    .await
    .assert_error(401, "TokenMissing");
}

async fn embedded_key_headers_are_ignored(b: Backend) {
    let (app, access, _) = app_with_user(b).await;
    let (h, c) = parts(&access);
    let evil_jwk = json!({"kty": "oct", "k": b64(OTHER_SECRET.as_bytes()), "alg": "HS256"});

    // Signed with our key: the extra headers change nothing.
    let mut header = h.clone();
    header["jku"] = json!("https://evil.example/jwks.json");
    header["x5u"] = json!("https://evil.example/cert.pem");
    app.verify(&resign(&header, &c)).await.assert_status(200);

    // Signed with the attacker's key, which the headers point to or embed.
    let mut with_jwk = h.clone();
    with_jwk["jwk"] = evil_jwk.clone();
    let mut with_urls = h.clone();
    with_urls["jku"] = json!("https://evil.example/jwks.json");
    with_urls["x5u"] = json!("https://evil.example/cert.pem");
    let mut all = with_urls.clone();
    all["jwk"] = evil_jwk.clone();
    let mut no_kid = all.clone();
    no_kid.as_object_mut().unwrap().remove("kid");
    for (what, header) in [
        ("jwk", with_jwk),
        ("jku and x5u", with_urls),
        ("jku, x5u and jwk", all),
        ("jwk without kid", no_kid),
    ] {
        let forged = sign_with(&header, &c, OTHER_SECRET, Algorithm::HS256);
        assert_invalid(&app.verify(&forged).await, what);
    }
}

crate::both_backends!(
    resigned_unchanged_token_is_accepted,
    alg_none_is_invalid,
    other_secret_or_unknown_kid_is_invalid,
    other_hmac_algorithms_are_invalid,
    wrong_issuer_or_audience_is_invalid,
    missing_claims_are_invalid,
    flipped_bytes_are_invalid,
    future_nbf_is_invalid,
    huge_token_is_invalid,
    garbage_tokens,
    token_types_are_not_interchangeable,
    expired_access_token,
    resigned_expired_token_is_expired,
    leeway_accepts_recently_expired_tokens,
    authorization_header_variants,
    embedded_key_headers_are_ignored,
);
