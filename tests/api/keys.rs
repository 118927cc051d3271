//! Key rotation (previous HS256 secrets and Ed25519 keys, chosen by `kid`),
//! EdDSA signing and the JWKS document.

use std::path::{Path, PathBuf};

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use ed25519_dalek::{
    SigningKey,
    pkcs8::{EncodePrivateKey, EncodePublicKey, spki::der::pem::LineEnding},
};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use secrecy::SecretString;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tessera::auth::{
    claims::Claims,
    keys::{KeyRing, KeySettings},
};
use uuid::Uuid;

use crate::helpers::{
    Backend, Resp, SECRET, TestApp, spawn_app, spawn_app_with, spawn_with_config,
};

const SECRET_B: &str = "the-next-secret-after-rotation-0123456789";
const UNKNOWN_SECRET: &str = "a-secret-this-service-never-heard-of-0123";

// ---------------------------------------------------------------- helpers

fn b64_json(v: &Value) -> String {
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(v).unwrap())
}

fn part(token: &str, index: usize) -> Value {
    let p = token.split('.').nth(index).expect("JWT part");
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(p).expect("base64url")).expect("JSON part")
}

fn header(token: &str) -> Value {
    part(token, 0)
}

fn claims(token: &str) -> Claims {
    serde_json::from_value(part(token, 1)).expect("Tessera claims")
}

fn hs256_ring(secret: &str) -> KeyRing {
    KeyRing::hs256(KeySettings {
        secret: &SecretString::from(secret.to_owned()),
        previous: &[],
        issuer: "tessera",
        audience: "tessera",
        leeway_secs: 0,
    })
    .unwrap()
}

/// The same claims, signed as Tessera would under `secret` (with its kid).
fn sign_hs256(secret: &str, claims: &Claims) -> String {
    hs256_ring(secret).sign(claims).unwrap()
}

/// `header.claims.signature` with an HMAC-SHA256 signature under raw bytes.
fn forge_hs256(header: &Value, claims: &Value, secret: &[u8]) -> String {
    let message = format!("{}.{}", b64_json(header), b64_json(claims));
    let sig = jsonwebtoken::crypto::sign(
        message.as_bytes(),
        &EncodingKey::from_secret(secret),
        Algorithm::HS256,
    )
    .unwrap();
    format!("{message}.{sig}")
}

fn new_key() -> SigningKey {
    SigningKey::from_bytes(&rand::random::<[u8; 32]>())
}

fn private_pem(key: &SigningKey) -> String {
    key.to_pkcs8_pem(LineEnding::LF).unwrap().to_string()
}

fn public_pem(key: &SigningKey) -> String {
    key.verifying_key()
        .to_public_key_pem(LineEnding::LF)
        .unwrap()
}

/// RFC 7638 thumbprint, computed independently of the service.
fn thumbprint(key: &SigningKey) -> String {
    let x = URL_SAFE_NO_PAD.encode(key.verifying_key().as_bytes());
    let canonical = format!(r#"{{"crv":"Ed25519","kty":"OKP","x":"{x}"}}"#);
    URL_SAFE_NO_PAD.encode(Sha256::digest(canonical.as_bytes()))
}

/// Signs `claims` with EdDSA under `key`, with any `kid` and extra header fields.
fn sign_ed(key: &SigningKey, kid: Option<&str>, claims: &Value) -> String {
    let mut h = Header::new(Algorithm::EdDSA);
    h.typ = Some("JWT".into());
    h.kid = kid.map(str::to_owned);
    let der = key.to_pkcs8_der().unwrap();
    jsonwebtoken::encode(&h, claims, &EncodingKey::from_ed_der(der.as_bytes())).unwrap()
}

/// A directory of key files, removed on drop.
struct KeyDir(PathBuf);

impl KeyDir {
    fn new() -> Self {
        let dir = std::env::temp_dir().join(format!("tessera-keys-{}", Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }

    fn write(&self, name: &str, content: &str) -> PathBuf {
        let path = self.0.join(name);
        std::fs::write(&path, content).unwrap();
        path
    }
}

impl Drop for KeyDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[track_caller]
fn assert_invalid(r: &Resp, what: &str) {
    assert_eq!(
        r.body["code"].as_str(),
        Some("TokenInvalid"),
        "{what}: {r:?}"
    );
    r.assert_error(401, "TokenInvalid");
}

async fn verify_ok(app: &TestApp, token: &str, user_id: &str, what: &str) {
    let r = app.verify(token).await;
    assert_eq!(r.status.as_u16(), 200, "{what}: {r:?}");
    assert_eq!(r.body["sub"], user_id, "{what}");
}

/// An app signing with a fresh Ed25519 key; returns it with the key, and
/// `previous` retired keys listed in TESSERA_JWT_PREVIOUS_PUBLIC_KEYS.
async fn eddsa_app(
    b: Backend,
    dir: &KeyDir,
    previous: &[&SigningKey],
    tweak: impl FnOnce(&mut tessera::config::Config),
) -> (TestApp, SigningKey) {
    let key = new_key();
    let key_file = dir.write("current.pem", &private_pem(&key));
    let previous_files: Vec<String> = previous
        .iter()
        .enumerate()
        .map(|(i, k)| {
            dir.write(&format!("previous-{i}.pub.pem"), &public_pem(k))
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    let app = spawn_app_with(b, |c| {
        c.jwt_secret = None;
        c.jwt_ed25519_key_file = Some(key_file);
        c.jwt_previous_public_keys = (!previous_files.is_empty()).then(|| previous_files.join(","));
        tweak(c);
    })
    .await;
    (app, key)
}

fn validation() -> Validation {
    let mut v = Validation::new(Algorithm::EdDSA);
    v.set_issuer(&["tessera"]);
    v.set_audience(&["tessera"]);
    v
}

fn path_of(p: &Path) -> String {
    p.to_string_lossy().into_owned()
}

// ---------------------------------------------------------------- HS256 rotation

/// Restart with secret B and previous secret A: sessions started under A go
/// on (PostgreSQL and Redis are shared by both processes).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_across_a_restart_keeps_sessions() {
    let app_a = spawn_app(Backend::PostgresRedis).await;
    let t = app_a.user("rotor").await;
    let kid_a = header(&t.access)["kid"].as_str().unwrap().to_owned();
    assert_eq!(kid_a, app_a.state.tokens.keys.kid());

    let mut config = app_a.config.clone();
    config.jwt_secret = Some(SecretString::from(SECRET_B.to_owned()));
    config.jwt_previous_secrets = Some(SecretString::from(SECRET.to_owned()));
    let app_b = spawn_with_config(config.clone(), Backend::PostgresRedis).await;
    let kid_b = app_b.state.tokens.keys.kid().to_owned();
    assert_ne!(kid_a, kid_b);

    // The access token issued under A verifies under B.
    verify_ok(&app_b, &t.access, &t.user_id, "A's access token at B").await;

    // A's refresh token rotates at B; the new tokens carry B's kid.
    let r = app_b.refresh(&t.refresh).await;
    r.assert_status(200);
    let (access, refresh) = (r.str("access_token"), r.str("refresh_token"));
    assert_eq!(header(&access)["kid"], kid_b.as_str());
    assert_eq!(header(&refresh)["kid"], kid_b.as_str());
    assert_eq!(header(&access)["alg"], "HS256");
    verify_ok(&app_b, &access, &t.user_id, "B's new access token").await;
    // Reuse detection still holds across the restart.
    app_b
        .refresh(&t.refresh)
        .await
        .assert_error(401, "TokenReused");

    // A token of an unknown secret, with that secret's own kid.
    let stranger = sign_hs256(UNKNOWN_SECRET, &claims(&t.access));
    assert_invalid(&app_b.verify(&stranger).await, "unknown secret");

    // Once A is dropped from the previous secrets, its tokens are invalid.
    let mut config_c = config;
    config_c.jwt_previous_secrets = None;
    let app_c = spawn_with_config(config_c, Backend::PostgresRedis).await;
    let fresh = app_a.login("rotor").await;
    assert_invalid(&app_c.verify(&fresh.access).await, "A without previous");
}

/// Same rules in one process: tokens signed under the previous secret verify
/// (and refresh), new ones are signed with the current secret.
async fn previous_secret_tokens_verify(b: Backend) {
    let app = spawn_app_with(b, |c| {
        c.jwt_secret = Some(SecretString::from(SECRET_B.to_owned()));
        c.jwt_previous_secrets = Some(SecretString::from(format!("{SECRET}, {UNKNOWN_SECRET}x")));
    })
    .await;
    let t = app.user("ann").await;
    assert_eq!(header(&t.access)["kid"], app.state.tokens.keys.kid());
    assert_eq!(app.state.tokens.keys.kid(), hs256_ring(SECRET_B).kid());

    let old_access = sign_hs256(SECRET, &claims(&t.access));
    assert_eq!(header(&old_access)["kid"], hs256_ring(SECRET).kid());
    verify_ok(&app, &old_access, &t.user_id, "previous secret").await;

    let old_refresh = sign_hs256(SECRET, &claims(&t.refresh));
    let r = app.refresh(&old_refresh).await;
    r.assert_status(200);
    assert_eq!(
        header(&r.str("access_token"))["kid"],
        app.state.tokens.keys.kid()
    );
    assert_eq!(
        header(&r.str("refresh_token"))["kid"],
        app.state.tokens.keys.kid()
    );

    let stranger = sign_hs256(UNKNOWN_SECRET, &claims(&t.access));
    assert_invalid(&app.verify(&stranger).await, "unknown secret, own kid");
    // A known kid with the wrong secret behind it.
    let mut h = header(&t.access);
    h["kid"] = json!(hs256_ring(SECRET).kid());
    let mismatched = forge_hs256(&h, &part(&t.access, 1), UNKNOWN_SECRET.as_bytes());
    assert_invalid(&app.verify(&mismatched).await, "previous kid, other secret");
}

// ---------------------------------------------------------------- EdDSA

async fn eddsa_tokens_verify_against_the_jwks(b: Backend) {
    let dir = KeyDir::new();
    let retired = new_key();
    let (app, key) = eddsa_app(b, &dir, &[&retired], |_| {}).await;
    let kid = thumbprint(&key);
    assert_eq!(app.state.tokens.keys.kid(), kid);

    let t = app.user("eve").await;
    for token in [&t.access, &t.refresh] {
        let h = header(token);
        assert_eq!(h["alg"], "EdDSA", "{h}");
        assert_eq!(h["typ"], "JWT", "{h}");
        assert_eq!(h["kid"], kid.as_str(), "{h}");
    }

    let r = app.get("/.well-known/jwks.json", None).await;
    r.assert_status(200);
    assert!(
        r.header("content-type")
            .is_some_and(|c| c.starts_with("application/json")),
        "{r:?}"
    );
    let keys = r.body["keys"].as_array().expect("keys").clone();
    assert_eq!(keys.len(), 2, "{r:?}");
    for k in &keys {
        assert_eq!(k["kty"], "OKP");
        assert_eq!(k["crv"], "Ed25519");
        assert_eq!(k["alg"], "EdDSA");
        assert_eq!(k["use"], "sig");
        assert!(k.get("d").is_none(), "private part published: {k}");
    }
    assert_eq!(keys[0]["kid"], kid.as_str());
    assert_eq!(keys[1]["kid"], thumbprint(&retired).as_str());

    // A gateway's local verification: the key is found by kid in the JWKS.
    for (token, typ) in [(&t.access, "access"), (&t.refresh, "refresh")] {
        let token_kid = header(token)["kid"].as_str().unwrap().to_owned();
        let jwk = keys
            .iter()
            .find(|k| k["kid"] == token_kid.as_str())
            .unwrap();
        let decoding = DecodingKey::from_ed_components(jwk["x"].as_str().unwrap()).unwrap();
        let data = jsonwebtoken::decode::<Value>(token, &decoding, &validation())
            .unwrap_or_else(|e| panic!("{typ} token does not verify with the JWKS: {e}"));
        assert_eq!(data.claims["sub"], t.user_id.as_str());
        assert_eq!(data.claims["typ"], typ);
        // The published JWK also works through jsonwebtoken's JWK type.
        let parsed: jsonwebtoken::jwk::Jwk = serde_json::from_value(jwk.clone()).unwrap();
        let from_jwk = DecodingKey::from_jwk(&parsed).unwrap();
        jsonwebtoken::decode::<Value>(token, &from_jwk, &validation()).unwrap();
    }
    // The retired key does not verify the current tokens.
    let retired_x = keys[1]["x"].as_str().unwrap();
    assert!(
        jsonwebtoken::decode::<Value>(
            &t.access,
            &DecodingKey::from_ed_components(retired_x).unwrap(),
            &validation()
        )
        .is_err()
    );

    // The service verifies and refreshes its EdDSA tokens.
    verify_ok(&app, &t.access, &t.user_id, "EdDSA access token").await;
    let r = app.refresh(&t.refresh).await;
    r.assert_status(200);
    assert_eq!(header(&r.str("access_token"))["alg"], "EdDSA");
    verify_ok(&app, &r.str("access_token"), &t.user_id, "refreshed").await;

    // Tokens signed by the retired key (before the rotation) still verify.
    let c = part(&t.access, 1);
    let old = sign_ed(&retired, Some(&thumbprint(&retired)), &c);
    verify_ok(&app, &old, &t.user_id, "retired Ed25519 key").await;

    // A key nobody configured: with its own kid, with ours, with none.
    let stranger = new_key();
    for (what, kid) in [
        ("unknown key, own kid", Some(thumbprint(&stranger))),
        ("unknown key, current kid", Some(kid.clone())),
        ("unknown key, retired kid", Some(thumbprint(&retired))),
        ("unknown key, no kid", None),
    ] {
        let forged = sign_ed(&stranger, kid.as_deref(), &c);
        assert_invalid(&app.verify(&forged).await, what);
    }
    // Embedded key headers are ignored: the attacker's own public key in `jwk`.
    let attacker_jwk = json!({
        "kty": "OKP", "crv": "Ed25519",
        "x": URL_SAFE_NO_PAD.encode(stranger.verifying_key().as_bytes()),
    });
    let mut h = Header::new(Algorithm::EdDSA);
    h.kid = Some(thumbprint(&stranger));
    h.jwk = Some(serde_json::from_value(attacker_jwk).unwrap());
    h.jku = Some(format!("{}/.well-known/jwks.json", app.address));
    let der = stranger.to_pkcs8_der().unwrap();
    let forged = jsonwebtoken::encode(&h, &c, &EncodingKey::from_ed_der(der.as_bytes())).unwrap();
    assert_invalid(&app.verify(&forged).await, "embedded jwk and jku");
}

/// The algorithm-confusion attack: HS256 "signed" with the public key, under
/// the Ed25519 key's kid; and `alg: none`.
async fn public_key_as_hmac_secret_is_invalid(b: Backend) {
    let dir = KeyDir::new();
    let (app, key) = eddsa_app(b, &dir, &[], |_| {}).await;
    let t = app.user("mallory").await;
    let c = part(&t.access, 1);
    let jwks = app.get("/.well-known/jwks.json", None).await;
    let x = jwks.body["keys"][0]["x"].as_str().unwrap().to_owned();
    let kid = thumbprint(&key);
    let forms: [(&str, Vec<u8>); 4] = [
        ("raw public key", key.verifying_key().as_bytes().to_vec()),
        ("JWK x", x.clone().into_bytes()),
        ("public PEM", public_pem(&key).into_bytes()),
        ("JWKS document", jwks.text.clone().into_bytes()),
    ];
    for (what, secret) in forms {
        for alg in ["HS256", "HS384", "HS512"] {
            let forged = forge_hs256(&json!({"alg": alg, "typ": "JWT", "kid": kid}), &c, &secret);
            assert_invalid(&app.verify(&forged).await, &format!("{alg} with {what}"));
        }
    }
    for alg in ["none", "None", "NONE"] {
        let forged = format!(
            "{}.{}.",
            b64_json(&json!({"alg": alg, "kid": kid})),
            b64_json(&c)
        );
        assert_invalid(&app.verify(&forged).await, alg);
    }
    // The genuine token is fine.
    verify_ok(&app, &t.access, &t.user_id, "genuine").await;
}

/// Moving from HS256 to EdDSA: tokens of the old secret verify while it is
/// listed (as TESSERA_JWT_SECRET, now verify-only, or as a previous secret),
/// each kid keeps its algorithm.
async fn hs256_secrets_stay_valid_under_eddsa(b: Backend) {
    let dir = KeyDir::new();
    let (app, key) = eddsa_app(b, &dir, &[], |c| {
        c.jwt_previous_secrets = Some(SecretString::from(SECRET.to_owned()));
    })
    .await;
    let t = app.user("migrant").await;
    assert_eq!(header(&t.access)["alg"], "EdDSA");

    let hs = sign_hs256(SECRET, &claims(&t.access));
    verify_ok(&app, &hs, &t.user_id, "previous HS256 secret under EdDSA").await;
    let r = app.refresh(&sign_hs256(SECRET, &claims(&t.refresh))).await;
    r.assert_status(200);
    assert_eq!(header(&r.str("refresh_token"))["alg"], "EdDSA");
    // The HS256 kid with an EdDSA signature: the kid's algorithm is HS256.
    let confused = sign_ed(&key, Some(hs256_ring(SECRET).kid()), &part(&t.access, 1));
    assert_invalid(&app.verify(&confused).await, "EdDSA under an HS256 kid");
    // Secrets are never published.
    let jwks = app.get("/.well-known/jwks.json", None).await;
    assert_eq!(jwks.body["keys"].as_array().map(Vec::len), Some(1));

    // TESSERA_JWT_SECRET set along with the key file: EdDSA signs, the secret verifies.
    let key_file = dir.write("both.pem", &private_pem(&key));
    let both = spawn_app_with(b, |c| {
        c.jwt_ed25519_key_file = Some(key_file.clone());
    })
    .await;
    let t = both.user("both").await;
    assert_eq!(header(&t.access)["alg"], "EdDSA");
    let hs = sign_hs256(SECRET, &claims(&t.access));
    verify_ok(&both, &hs, &t.user_id, "TESSERA_JWT_SECRET verify-only").await;

    // Without any secret configured, HS256 tokens are invalid.
    let (only_ed, _) = eddsa_app(b, &KeyDir::new(), &[], |_| {}).await;
    let t = only_ed.user("solo").await;
    let hs = sign_hs256(SECRET, &claims(&t.access));
    assert_invalid(&only_ed.verify(&hs).await, "HS256 without secrets");
}

async fn jwks_is_not_found_without_eddsa(b: Backend) {
    let app = spawn_app(b).await;
    let r = app.get("/.well-known/jwks.json", None).await;
    r.assert_error(404, "NotFound");
}

/// A correctly signed token whose header has `crit` is refused (RFC 7515:
/// no critical extension is understood here); the same token without it
/// works.
async fn a_crit_header_is_token_invalid(b: Backend) {
    let app = spawn_app(b).await;
    let t = app.user("ann").await;
    let claims_of = part(&t.access, 1);
    let plain = header(&t.access);
    let resigned = forge_hs256(&plain, &claims_of, SECRET.as_bytes());
    app.get("/users/me", Some(&resigned))
        .await
        .assert_status(200);
    for crit in [json!(["exp"]), json!(["x-tessera"]), json!(null)] {
        let mut h = plain.clone();
        h["crit"] = crit.clone();
        h["exp"] = json!(1);
        h["x-tessera"] = json!(true);
        let forged = forge_hs256(&h, &claims_of, SECRET.as_bytes());
        for path in ["/users/me", "/auth/verify"] {
            let r = app.get(path, Some(&forged)).await;
            r.assert_error(401, "TokenInvalid");
            assert!(r.status.is_client_error(), "crit {crit} on {path}");
        }
    }
}

crate::both_backends!(
    a_crit_header_is_token_invalid,
    previous_secret_tokens_verify,
    eddsa_tokens_verify_against_the_jwks,
    public_key_as_hmac_secret_is_invalid,
    hs256_secrets_stay_valid_under_eddsa,
    jwks_is_not_found_without_eddsa,
);

#[test]
fn jwks_is_in_the_openapi_document() {
    let spec: Value = serde_yaml::from_str(&tessera::openapi_yaml()).unwrap();
    let op = &spec["paths"]["/.well-known/jwks.json"]["get"];
    assert_eq!(op["operationId"], "jwks", "{op}");
    assert!(op["security"].is_null(), "the JWKS needs no token: {op}");
    assert!(op["responses"]["200"].is_object());
    assert!(op["responses"]["404"].is_object());
}

#[tokio::test]
async fn a_bad_key_file_stops_the_start() {
    let dir = KeyDir::new();
    let not_a_key = dir.write(
        "garbage.pem",
        "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
    );
    let mut config = crate::helpers::test_config(Backend::SqliteMemory).await;
    config.jwt_ed25519_key_file = Some(not_a_key);
    let err = tessera::state::AppState::build(&config)
        .await
        .err()
        .expect("a garbage key is refused");
    assert!(
        format!("{err:#}").contains("TESSERA_JWT_ED25519_KEY_FILE"),
        "{err:#}"
    );

    // A private key where the retired public keys go.
    let private = dir.write("private.pem", &private_pem(&new_key()));
    let mut config = crate::helpers::test_config(Backend::SqliteMemory).await;
    config.jwt_previous_public_keys = Some(path_of(&private));
    let err = tessera::state::AppState::build(&config)
        .await
        .err()
        .expect("a private key is not a public key");
    assert!(
        format!("{err:#}").contains("TESSERA_JWT_PREVIOUS_PUBLIC_KEYS"),
        "{err:#}"
    );
}
