//! Token decoding: arbitrary input through `KeyRing::verify`, for both token
//! types and two key rings (HS256 only; Ed25519 signing with HS256 keys kept
//! for verification). It must never panic, and whatever it accepts must
//! satisfy API.md ("Tokens"): the right type, issuer and audience,
//! unexpired, already valid, access tokens with `role` and `fresh`, signed by
//! one of the ring's keys with the algorithm that key is pinned to (no
//! `alg: none`, no HS256 "signed" with the Ed25519 public key).
//!
//! Selector (first byte):
//! - bits 0-1, how the rest becomes a token: 0, the rest is the token text
//!   (what a client sends after `Bearer `); 1, `header JSON \0 claims JSON`,
//!   signed, so the fuzzer gets past the signature into header and claims
//!   handling; 2, the rest is the claims JSON under a well-formed header;
//!   3, the rest is a JSON object merged over valid access claims (typ, exp,
//!   role... one field at a time), under a well-formed header;
//! - bits 2-4, the signer (modes 1-3): current or previous HS256 secret,
//!   the Ed25519 key, or an attacker (HMAC keyed with the Ed25519 public
//!   key or its JWK `x`, or with an unknown secret);
//! - bit 5: also verify with the HS256-only ring (always with the mixed one).

#![no_main]

use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use serde_json::{Value, json};
use tessera::auth::{
    claims::{Claims, TokenType},
    keys::KeyRing,
};
use tessera_fuzz::{AUDIENCE, ISSUER, Kids, SignWith, hs256_only, kids, mixed, sign_raw};

struct Fixture {
    mixed: KeyRing,
    hs256: KeyRing,
    kids: Kids,
}

static FIXTURE: LazyLock<Fixture> = LazyLock::new(|| Fixture {
    mixed: mixed(),
    hs256: hs256_only(),
    kids: kids(),
});

const SIGNERS: [SignWith; 8] = [
    SignWith::Current,
    SignWith::Previous,
    SignWith::Ed25519,
    SignWith::HmacWithPublicKey,
    SignWith::HmacWithJwkX,
    SignWith::Unknown,
    SignWith::Current,
    SignWith::Ed25519,
];

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

fn valid_access_claims() -> Value {
    let now = now();
    json!({
        "iss": ISSUER, "aud": AUDIENCE,
        "sub": "0190c1d6-6d3a-7c4e-8a5b-0123456789ab",
        "iat": now, "nbf": now, "exp": now + 600,
        "jti": "0190c1d6-6d3a-7c4e-8a5b-0123456789ac",
        "typ": "access",
        "sid": "0190c1d6-6d3a-7c4e-8a5b-0123456789ad",
        "role": "user", "fresh": true,
    })
}

fn check_claims(c: &Claims, expected: TokenType, before: i64, after: i64) {
    assert_eq!(c.typ, expected, "accepted a token of the other type");
    assert_eq!(c.iss, ISSUER, "accepted a foreign issuer");
    assert_eq!(c.aud, AUDIENCE, "accepted a foreign audience");
    assert!(c.exp >= before, "accepted an expired token");
    assert!(c.nbf <= after, "accepted a token before its nbf");
    if expected == TokenType::Access {
        assert!(
            c.role.is_some() && c.fresh.is_some(),
            "accepted an access token without role or fresh"
        );
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let f = &*FIXTURE;
    let signer = SIGNERS[usize::from((selector >> 2) & 7)];
    let well_formed_header = || {
        json!({"alg": signer.alg(), "typ": "JWT", "kid": f.kids.for_signer(signer)})
            .to_string()
            .into_bytes()
    };
    // The header the token carries, when this harness signed it.
    let (token, header): (String, Option<Vec<u8>>) = match selector & 3 {
        0 => (String::from_utf8_lossy(rest).into_owned(), None),
        1 => {
            let (h, c) = match rest.iter().position(|&b| b == 0) {
                Some(i) => (&rest[..i], &rest[i + 1..]),
                None => (rest, &[][..]),
            };
            (sign_raw(signer, h, c), Some(h.to_vec()))
        }
        mode => {
            let claims = if mode == 2 {
                rest.to_vec()
            } else {
                let mut claims = valid_access_claims();
                if let Ok(Value::Object(patch)) = serde_json::from_slice::<Value>(rest) {
                    for (k, v) in patch {
                        claims[k] = v;
                    }
                }
                claims.to_string().into_bytes()
            };
            let header = well_formed_header();
            (sign_raw(signer, &header, &claims), Some(header))
        }
    };

    let mut rings = vec![(&f.mixed, true)];
    if selector & 0x20 != 0 {
        rings.push((&f.hs256, false));
    }
    for (ring, has_ed25519) in rings {
        for expected in [TokenType::Access, TokenType::Refresh] {
            let before = now();
            let result = ring.verify(&token, expected);
            let after = now();
            let Ok(claims) = result else { continue };
            check_claims(&claims, expected, before, after);
            let Some(h) = &header else { continue };
            // Harness-signed: only our keys, each with its own algorithm.
            assert!(signer.trusted(), "accepted a token signed by {signer:?}");
            assert!(
                has_ed25519 || signer != SignWith::Ed25519,
                "the HS256-only ring accepted an EdDSA token"
            );
            let h: Value = serde_json::from_slice(h).expect("an accepted header is JSON");
            let kid = h["kid"].as_str().expect("an accepted header has a kid");
            let pinned = f.kids.alg_of(kid).expect("accepted an unknown kid");
            assert_eq!(h["alg"], pinned, "accepted {kid} with another algorithm");
        }
    }
});
