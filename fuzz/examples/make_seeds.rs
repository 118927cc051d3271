//! Writes the committed seed corpus (fuzz/corpus/<target>/<name>):
//! `cargo run --manifest-path fuzz/Cargo.toml --example make_seeds`.
//! Tokens are signed with the fuzz key ring's fixed secrets, so they stay
//! valid (expiry in 2100) for as long as those secrets do.

use std::{fs, path::Path};

use serde_json::{Value, json};
use tessera::auth::claims::{Claims, Role, TokenType};
use tessera_fuzz::{AUDIENCE, ISSUER, SignWith, hs256_only, kids, mixed, sign_raw};
use uuid::Uuid;

const FAR: i64 = 4_102_444_800; // 2100-01-01

fn claims(typ: TokenType) -> Claims {
    Claims {
        iss: ISSUER.into(),
        aud: AUDIENCE.into(),
        sub: Uuid::from_u128(0x0190c1d6_6d3a_7c4e_8a5b_0123456789ab),
        iat: 1_767_225_600,
        nbf: 1_767_225_600,
        exp: FAR,
        jti: Uuid::from_u128(0x0190c1d6_6d3a_7c4e_8a5b_0123456789ac),
        typ,
        sid: Uuid::from_u128(0x0190c1d6_6d3a_7c4e_8a5b_0123456789ad),
        role: (typ == TokenType::Access).then_some(Role::User),
        fresh: (typ == TokenType::Access).then_some(true),
        // Left out, so that the committed seeds stay as they were written
        // before `amr` existed (such a token counts as `["pwd"]`).
        amr: None,
    }
}

fn write(dir: &Path, name: &str, bytes: &[u8]) {
    fs::write(dir.join(name), bytes).unwrap();
}

fn with(selector: u8, rest: &[u8]) -> Vec<u8> {
    let mut v = vec![selector];
    v.extend_from_slice(rest);
    v
}

fn token_seeds(root: &Path) {
    let dir = root.join("token_verify");
    fs::create_dir_all(&dir).unwrap();
    let hs = hs256_only();
    let ed = mixed();
    let k = kids();
    let access = serde_json::to_vec(&claims(TokenType::Access)).unwrap();
    let refresh = serde_json::to_vec(&claims(TokenType::Refresh)).unwrap();
    let header = |alg: &str, kid: &str| json!({"alg": alg, "typ": "JWT", "kid": kid}).to_string();
    // Signer index (selector bits 2-4) and "also the HS256-only ring" (bit 5).
    let signer = |s: SignWith| -> u8 {
        let i = match s {
            SignWith::Current => 0,
            SignWith::Previous => 1,
            SignWith::Ed25519 => 2,
            SignWith::HmacWithPublicKey => 3,
            SignWith::HmacWithJwkX => 4,
            SignWith::Unknown => 5,
        };
        (i << 2) | 0x20
    };

    // The seeds reach the accepting paths: valid tokens verify.
    let ok = |ring: &tessera::auth::keys::KeyRing, t: &str, typ| {
        assert!(ring.verify(t, typ).is_ok(), "seed token does not verify");
    };
    ok(
        &hs,
        &hs.sign(&claims(TokenType::Access)).unwrap(),
        TokenType::Access,
    );
    ok(
        &ed,
        &ed.sign(&claims(TokenType::Refresh)).unwrap(),
        TokenType::Refresh,
    );
    let h = header("HS256", &k.previous);
    ok(
        &ed,
        &sign_raw(SignWith::Previous, h.as_bytes(), &access),
        TokenType::Access,
    );
    let h = header("EdDSA", &k.ed25519);
    ok(
        &ed,
        &sign_raw(SignWith::Ed25519, h.as_bytes(), &access),
        TokenType::Access,
    );

    // Mode 0: token text.
    let raw = |name: &str, token: &str| write(&dir, name, &with(0x20, token.as_bytes()));
    raw(
        "raw-hs256-access",
        &hs.sign(&claims(TokenType::Access)).unwrap(),
    );
    raw(
        "raw-hs256-refresh",
        &hs.sign(&claims(TokenType::Refresh)).unwrap(),
    );
    raw(
        "raw-eddsa-access",
        &ed.sign(&claims(TokenType::Access)).unwrap(),
    );
    raw(
        "raw-previous-key",
        &sign_raw(
            SignWith::Previous,
            header("HS256", &k.previous).as_bytes(),
            &access,
        ),
    );
    let mut expired = claims(TokenType::Access);
    expired.exp = 1_767_225_660;
    raw("raw-expired", &hs.sign(&expired).unwrap());
    raw(
        "raw-alg-none",
        &format!(
            "{}.{}.",
            base64_url(br#"{"alg":"none","typ":"JWT"}"#),
            base64_url(&access)
        ),
    );
    raw(
        "raw-confusion",
        &sign_raw(
            SignWith::HmacWithPublicKey,
            header("HS256", &k.ed25519).as_bytes(),
            &access,
        ),
    );
    raw("raw-garbage", "a.b.c");

    // Mode 1: header \0 claims, signed.
    let pair = |name: &str, s: SignWith, h: &str, c: &[u8]| {
        let mut rest = h.as_bytes().to_vec();
        rest.push(0);
        rest.extend_from_slice(c);
        write(&dir, name, &with(1 | signer(s), &rest));
    };
    pair(
        "pair-access",
        SignWith::Current,
        &header("HS256", &k.current),
        &access,
    );
    pair(
        "pair-refresh-previous",
        SignWith::Previous,
        &header("HS256", &k.previous),
        &refresh,
    );
    pair(
        "pair-eddsa",
        SignWith::Ed25519,
        &header("EdDSA", &k.ed25519),
        &access,
    );
    pair(
        "pair-eddsa-as-hs256",
        SignWith::Ed25519,
        &header("HS256", &k.ed25519),
        &access,
    );
    pair(
        "pair-hs384",
        SignWith::Current,
        &header("HS384", &k.current),
        &access,
    );
    pair(
        "pair-none",
        SignWith::Current,
        &header("none", &k.current),
        &access,
    );
    pair(
        "pair-jwk-x",
        SignWith::HmacWithJwkX,
        &header("HS256", &k.ed25519),
        &access,
    );
    pair(
        "pair-jwk-jku",
        SignWith::Current,
        &json!({"alg": "HS256", "kid": k.current, "jku": "https://evil.example/jwks",
                "jwk": {"kty": "oct", "k": "AAAA"}})
        .to_string(),
        &access,
    );
    pair(
        "pair-unknown-secret",
        SignWith::Unknown,
        &header("HS256", &k.current),
        &access,
    );

    // Mode 2: claims under a well-formed header.
    write(
        &dir,
        "claims-refresh",
        &with(2 | signer(SignWith::Current), &refresh),
    );
    write(
        &dir,
        "claims-eddsa",
        &with(2 | signer(SignWith::Ed25519), &refresh),
    );
    let mut no_role: Value = serde_json::from_slice(&access).unwrap();
    no_role.as_object_mut().unwrap().remove("role");
    write(
        &dir,
        "claims-no-role",
        &with(2, no_role.to_string().as_bytes()),
    );
    let mut aud_list: Value = serde_json::from_slice(&access).unwrap();
    aud_list["aud"] = json!(["tessera", "other"]);
    write(
        &dir,
        "claims-aud-list",
        &with(2, aud_list.to_string().as_bytes()),
    );

    // Mode 3: patches over valid access claims.
    for (name, patch) in [
        ("patch-typ-refresh", json!({"typ": "refresh"})),
        ("patch-expired", json!({"exp": 0})),
        ("patch-exp-string", json!({"exp": "4102444800"})),
        ("patch-exp-float", json!({"exp": 4102444800.5})),
        ("patch-exp-huge", json!({"exp": u64::MAX})),
        ("patch-nbf-future", json!({"nbf": FAR})),
        ("patch-iss", json!({"iss": "someone-else"})),
        ("patch-role-null", json!({"role": null, "fresh": false})),
        ("patch-role-bad", json!({"role": "superuser"})),
        ("patch-sub-bad", json!({"sub": "not-a-uuid"})),
    ] {
        write(
            &dir,
            name,
            &with(3 | signer(SignWith::Ed25519), patch.to_string().as_bytes()),
        );
    }
}

fn base64_url(b: &[u8]) -> String {
    use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
    URL_SAFE_NO_PAD.encode(b)
}

fn body_seeds(root: &Path) {
    let dir = root.join("request_body");
    fs::create_dir_all(&dir).unwrap();
    // Operation indexes of fuzz_targets/request_body.rs `OPS`.
    let seeds: &[(&str, u8, &str)] = &[
        (
            "register",
            0,
            r#"{"username":"ann_1","email":"ann@example.com","password":"correct horse"}"#,
        ),
        (
            "register-role",
            0,
            r#"{"username":"bob","email":"Bob@Example.org","password":"üüüüüüüü","role":"admin"}"#,
        ),
        (
            "register-bad",
            0,
            r#"{"username":"a b","email":"x@","password":"short"}"#,
        ),
        (
            "register-types",
            0,
            r#"{"username":1,"email":true,"password":null}"#,
        ),
        (
            "login-email",
            1,
            r#"{"email":"fuzz-admin@example.com","password":"wrong password"}"#,
        ),
        (
            "login-username",
            1,
            r#"{"username":"fuzz-other","password":"other-password"}"#,
        ),
        (
            "login-both",
            1,
            r#"{"email":"a@b.co","username":"ann","password":"x"}"#,
        ),
        ("patch-me", 2, r#"{"username":"fuzz-admin","email":null}"#),
        ("put-me", 3, r#"{"email":"FUZZ-ADMIN@example.com"}"#),
        (
            "password-wrong",
            4,
            r#"{"current_password":"nope","new_password":"a new password"}"#,
        ),
        (
            "password-right",
            4,
            r#"{"current_password":"fuzz-admin-password","new_password":"fuzz-admin-password"}"#,
        ),
        ("update-user", 5, r#"{"role":"admin","blocked":false}"#),
        ("update-user-bad", 5, r#"{"role":"superuser"}"#),
        ("employee", 6, r#"{"name":"Zoë","position":"Engineer"}"#),
        ("employee-empty", 6, r#"{"name":"","position":"x"}"#),
        ("patch-employee", 7, r#"{"position":"Lead"}"#),
        ("put-employee", 8, r#"{"name":null,"position":null}"#),
        ("category", 9, r#"{"name":"Garden"}"#),
        ("category-bad", 9, r#"{"name":["x"]}"#),
        ("rename-category", 10, r#"{"name":"Tools & more"}"#),
        (
            "product",
            11,
            r#"{"name":"Saw","description":"sharp","price":19.99,"quantity":2,"category_id":"@CATEGORY@"}"#,
        ),
        (
            "product-exp",
            11,
            r#"{"name":"Nail","price":1e-2,"quantity":0,"category_id":"@CATEGORY@"}"#,
        ),
        (
            "product-bad",
            11,
            r#"{"name":"Glue","price":0.001,"quantity":-1,"category_id":"00000000-0000-0000-0000-000000000000"}"#,
        ),
        (
            "product-big",
            11,
            r#"{"name":"Yacht","price":99999999999999999999.99,"quantity":9223372036854775807,"category_id":"@CATEGORY@"}"#,
        ),
        (
            "patch-product",
            12,
            r#"{"price":20,"quantity":5,"description":null}"#,
        ),
        ("patch-product-neg", 12, r#"{"price":-0.00}"#),
        ("text-plain", 9 | 0x60, r#"{"name":"Plain"}"#),
        (
            "no-content-type",
            6 | 0x70,
            r#"{"name":"A","position":"B"}"#,
        ),
        ("charset", 10 | 0x50, r#"{"name":"Utf8"}"#),
        ("not-json", 6, "{\"name\": \"unterminated"),
        ("array", 11, "[]"),
    ];
    for (name, selector, body) in seeds {
        write(&dir, name, &with(*selector, body.as_bytes()));
    }
}

/// Text for `mfa_inputs`: TOTP codes, recovery codes and mfa_tokens, well
/// formed and nearly so.
fn mfa_seeds(root: &Path) {
    let dir = root.join("mfa_inputs");
    fs::create_dir_all(&dir).unwrap();
    let token = base64_url(&[0x42; 32]);
    // The same bytes, spelled with the last character's padding bits set.
    let second_spelling = format!("{}J", &token[..token.len() - 1]);
    let seeds: [(&str, &str); 13] = [
        ("code", "123456"),
        ("code-whitespace", " 654321\n"),
        ("code-short", "12345"),
        ("code-inner-space", "123 456"),
        (
            "code-fullwidth",
            "\u{ff11}\u{ff12}\u{ff13}\u{ff14}\u{ff15}\u{ff16}",
        ),
        ("recovery", "abcd-efgh-jk23"),
        ("recovery-sloppy", " ABCD efgh\tJK23 "),
        ("recovery-lookalike", "abcd-efgh-jk2o"),
        ("recovery-long", "abcd-efgh-jk234"),
        ("token", &token),
        ("token-second-spelling", &second_spelling),
        ("token-padded", &format!("{token}=")),
        ("token-base64", &token.replace('k', "+")),
    ];
    for (name, text) in seeds {
        write(&dir, name, text.as_bytes());
    }
}

fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus");
    token_seeds(&root);
    body_seeds(&root);
    mfa_seeds(&root);
    println!("seeds written under {}", root.display());
}
