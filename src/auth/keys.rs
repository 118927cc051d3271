//! Signing and verifying tokens: keys named by `kid`, each pinned to its own
//! algorithm (HS256 secrets, Ed25519 keys), strict validation (iss, aud, exp,
//! nbf, typ, configurable leeway).
//!
//! One key signs: the Ed25519 private key when one is configured, else the
//! current HS256 secret. Every other key is verify-only (rotation). A token is
//! checked against the key its `kid` names, and only with that key's
//! algorithm, so an HS256 token "signed" with an Ed25519 public key (the
//! algorithm-confusion attack) or `alg: none` never verifies.

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use ed25519_dalek::{
    SigningKey, VerifyingKey,
    pkcs8::{DecodePrivateKey, DecodePublicKey, EncodePrivateKey},
};
use jsonwebtoken::{
    Algorithm, DecodingKey, EncodingKey, Header, Validation, decode, decode_header, encode,
    errors::ErrorKind,
};
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};

use super::{
    claims::{Claims, TokenType},
    verified_tokens::{self, VerifiedTokens},
};
use crate::error::ApiError;

/// Tokens longer than this are refused before any parsing (no JWT we issue
/// comes near it).
const MAX_TOKEN_LEN: usize = 4096;

/// Shortest accepted HS256 secret, in bytes.
pub const MIN_SECRET_BYTES: usize = 32;

struct VerifyKey {
    kid: String,
    /// The only algorithm this key verifies.
    alg: Algorithm,
    key: DecodingKey,
    validation: Validation,
}

/// An Ed25519 public key as published in the JWKS document (RFC 8037).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicJwk {
    /// RFC 7638 thumbprint of the key.
    pub kid: String,
    /// base64url of the 32 public key bytes.
    pub x: String,
}

pub struct KeyRing {
    kid: String,
    alg: Algorithm,
    encoding: EncodingKey,
    verify: Vec<VerifyKey>,
    /// Ed25519 public keys, the signing one (if any) first.
    jwks: Vec<PublicJwk>,
    /// Access tokens that verified with this ring (they are checked on
    /// every request of their session).
    verified: VerifiedTokens,
}

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("TESSERA_JWT_SECRET must be at least 32 bytes")]
    SecretTooShort,
    #[error("a secret in TESSERA_JWT_PREVIOUS_SECRETS is shorter than 32 bytes")]
    PreviousSecretTooShort,
    #[error(
        "no signing key: set TESSERA_JWT_SECRET (HS256) or TESSERA_JWT_ED25519_KEY_FILE (EdDSA)"
    )]
    NoSigningKey,
    #[error(
        "TESSERA_JWT_ED25519_KEY_FILE is not a PEM PKCS#8 Ed25519 private key (`openssl genpkey -algorithm ed25519`): {0}"
    )]
    BadEd25519PrivateKey(String),
    #[error(
        "TESSERA_JWT_PREVIOUS_PUBLIC_KEYS: key {index} is not a PEM Ed25519 public key (`openssl pkey -in old.pem -pubout`): {reason}"
    )]
    BadEd25519PublicKey { index: usize, reason: String },
}

/// `kid` of an HMAC secret: a truncated hash, never the secret itself.
fn kid_of(secret: &[u8]) -> String {
    let digest = Sha256::new_with_prefix(b"tessera-kid:")
        .chain_update(secret)
        .finalize();
    digest[..8].iter().map(|b| format!("{b:02x}")).collect()
}

/// The JWK of an Ed25519 public key, `kid` = RFC 7638 thumbprint: base64url
/// of SHA-256 over the required members in lexicographic order.
pub fn ed25519_jwk(key: &VerifyingKey) -> PublicJwk {
    let x = URL_SAFE_NO_PAD.encode(key.as_bytes());
    let canonical = format!(r#"{{"crv":"Ed25519","kty":"OKP","x":"{x}"}}"#);
    let kid = URL_SAFE_NO_PAD.encode(Sha256::digest(canonical.as_bytes()));
    PublicJwk { kid, x }
}

pub struct KeySettings<'a> {
    pub secret: &'a SecretString,
    pub previous: &'a [SecretString],
    pub issuer: &'a str,
    pub audience: &'a str,
    pub leeway_secs: u64,
}

/// Everything the key ring can be built from (see `KeyRing::new`).
pub struct RingSettings<'a> {
    /// The current HS256 secret: signs when no Ed25519 key is given,
    /// otherwise verify-only.
    pub secret: Option<&'a SecretString>,
    /// Retired HS256 secrets, verify-only.
    pub previous_secrets: &'a [SecretString],
    /// PEM (PKCS#8) Ed25519 private key: signs with EdDSA when given.
    pub ed25519_private_pem: Option<&'a str>,
    /// PEM Ed25519 public keys of retired signing keys, verify-only.
    pub previous_public_pems: &'a [String],
    pub issuer: &'a str,
    pub audience: &'a str,
    pub leeway_secs: u64,
}

impl KeyRing {
    /// HS256 only: `secret` signs, `previous` verify.
    pub fn hs256(s: KeySettings<'_>) -> Result<Self, KeyError> {
        Self::new(RingSettings {
            secret: Some(s.secret),
            previous_secrets: s.previous,
            ed25519_private_pem: None,
            previous_public_pems: &[],
            issuer: s.issuer,
            audience: s.audience,
            leeway_secs: s.leeway_secs,
        })
    }

    pub fn new(s: RingSettings<'_>) -> Result<Self, KeyError> {
        let mut base = Validation::new(Algorithm::HS256);
        base.set_issuer(&[s.issuer]);
        base.set_audience(&[s.audience]);
        base.leeway = s.leeway_secs;
        base.validate_nbf = true;
        base.validate_exp = true;
        base.set_required_spec_claims(&["exp", "nbf", "iat", "iss", "aud", "sub"]);
        let mut ring = RingBuilder {
            base,
            verify: Vec::new(),
            jwks: Vec::new(),
        };

        let mut signer = None;
        if let Some(pem) = s.ed25519_private_pem {
            let key = SigningKey::from_pkcs8_pem(pem.trim())
                .map_err(|e| KeyError::BadEd25519PrivateKey(e.to_string()))?;
            let der = key
                .to_pkcs8_der()
                .map_err(|e| KeyError::BadEd25519PrivateKey(e.to_string()))?;
            let kid = ring.add_ed25519(&key.verifying_key());
            signer = Some((
                kid,
                Algorithm::EdDSA,
                EncodingKey::from_ed_der(der.as_bytes()),
            ));
        }
        if let Some(secret) = s.secret {
            let secret = secret.expose_secret().as_bytes();
            if secret.len() < MIN_SECRET_BYTES {
                return Err(KeyError::SecretTooShort);
            }
            let kid = ring.add_hs256(secret);
            if signer.is_none() {
                signer = Some((kid, Algorithm::HS256, EncodingKey::from_secret(secret)));
            }
        }
        for old in s.previous_secrets {
            let old = old.expose_secret().as_bytes();
            if old.len() < MIN_SECRET_BYTES {
                return Err(KeyError::PreviousSecretTooShort);
            }
            ring.add_hs256(old);
        }
        for (i, pem) in s.previous_public_pems.iter().enumerate() {
            let key = VerifyingKey::from_public_key_pem(pem.trim()).map_err(|e| {
                KeyError::BadEd25519PublicKey {
                    index: i + 1,
                    reason: e.to_string(),
                }
            })?;
            ring.add_ed25519(&key);
        }
        let (kid, alg, encoding) = signer.ok_or(KeyError::NoSigningKey)?;
        Ok(Self {
            kid,
            alg,
            encoding,
            verify: ring.verify,
            jwks: ring.jwks,
            verified: VerifiedTokens::new(verified_tokens::CAPACITY, s.leeway_secs),
        })
    }

    /// The `kid` of the signing key.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The algorithm new tokens are signed with (HS256 or EdDSA).
    pub fn algorithm(&self) -> Algorithm {
        self.alg
    }

    /// The Ed25519 public keys (signing key first, then retired ones); empty
    /// without EdDSA.
    pub fn jwks(&self) -> &[PublicJwk] {
        &self.jwks
    }

    /// Deterministic: the same claims give the same bytes (HMAC and Ed25519
    /// signatures both are).
    pub fn sign(&self, claims: &Claims) -> Result<String, ApiError> {
        let mut header = Header::new(self.alg);
        header.typ = Some("JWT".into());
        header.kid = Some(self.kid.clone());
        encode(&header, claims, &self.encoding).map_err(ApiError::internal)
    }

    /// Verifies signature and claims and that the token is of `expected` type.
    /// An access token that verified before is answered from the memo
    /// (`verified_tokens`), its time checked again.
    pub fn verify(&self, token: &str, expected: TokenType) -> Result<Claims, ApiError> {
        if expected != TokenType::Access {
            return self.verify_in_full(token, expected);
        }
        if let Some(known) = self.verified.get(token) {
            return known;
        }
        let claims = self.verify_in_full(token, expected)?;
        self.verified.insert(token, &claims);
        Ok(claims)
    }

    fn verify_in_full(&self, token: &str, expected: TokenType) -> Result<Claims, ApiError> {
        if token.is_empty() || token.len() > MAX_TOKEN_LEN {
            return Err(ApiError::TokenInvalid);
        }
        // `alg: none` (any spelling) is not an `Algorithm`: refused here.
        let header = decode_header(token).map_err(|_| ApiError::TokenInvalid)?;
        // RFC 7515 4.1.11: we understand no critical extension, so a `crit`
        // (even `null`, which the parsed header cannot tell from absent) is
        // refused.
        if header.crit.is_some() || header_names_crit(token) {
            return Err(ApiError::TokenInvalid);
        }
        // jku, x5u and embedded jwk headers are never consulted: only our kids.
        let kid = header.kid.ok_or(ApiError::TokenInvalid)?;
        let key = self
            .verify
            .iter()
            .find(|k| k.kid == kid)
            .ok_or(ApiError::TokenInvalid)?;
        // Each key verifies with its own algorithm only.
        if header.alg != key.alg {
            return Err(ApiError::TokenInvalid);
        }
        let data =
            decode::<Claims>(token, &key.key, &key.validation).map_err(|e| match e.kind() {
                ErrorKind::ExpiredSignature => ApiError::TokenExpired,
                _ => ApiError::TokenInvalid,
            })?;
        let claims = data.claims;
        if claims.typ != expected {
            return Err(ApiError::TokenInvalid);
        }
        if expected == TokenType::Access && (claims.role.is_none() || claims.fresh.is_none()) {
            return Err(ApiError::TokenInvalid);
        }
        Ok(claims)
    }
}

/// Whether the token's JOSE header has a `crit` member at all. Parsed only
/// when the text could name one (`crit`, or an escape that could spell it):
/// every request's verify passes here, and our own headers have neither.
fn header_names_crit(token: &str) -> bool {
    let Some(encoded) = token.split('.').next() else {
        return false;
    };
    let Ok(json) = URL_SAFE_NO_PAD.decode(encoded) else {
        return false;
    };
    if !json.contains(&b'\\') && !json.windows(4).any(|w| w == b"crit") {
        return false;
    }
    serde_json::from_slice::<serde_json::Map<String, serde_json::Value>>(&json)
        .is_ok_and(|h| h.contains_key("crit"))
}

struct RingBuilder {
    base: Validation,
    verify: Vec<VerifyKey>,
    jwks: Vec<PublicJwk>,
}

impl RingBuilder {
    fn push(&mut self, kid: String, alg: Algorithm, key: DecodingKey) {
        if self.verify.iter().any(|k| k.kid == kid) {
            return;
        }
        let mut validation = self.base.clone();
        validation.algorithms = vec![alg];
        self.verify.push(VerifyKey {
            kid,
            alg,
            key,
            validation,
        });
    }

    fn add_hs256(&mut self, secret: &[u8]) -> String {
        let kid = kid_of(secret);
        self.push(
            kid.clone(),
            Algorithm::HS256,
            DecodingKey::from_secret(secret),
        );
        kid
    }

    fn add_ed25519(&mut self, key: &VerifyingKey) -> String {
        let jwk = ed25519_jwk(key);
        let kid = jwk.kid.clone();
        self.push(
            kid.clone(),
            Algorithm::EdDSA,
            DecodingKey::from_ed_der(key.as_bytes()),
        );
        if !self.jwks.iter().any(|j| j.kid == kid) {
            self.jwks.push(jwk);
        }
        kid
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ring(secret: &str) -> KeyRing {
        KeyRing::hs256(KeySettings {
            secret: &SecretString::from(secret.to_owned()),
            previous: &[],
            issuer: "tessera",
            audience: "tessera",
            leeway_secs: 0,
        })
        .unwrap()
    }

    use crate::auth::claims::test_claims as claims;

    const SECRET: &str = "0123456789abcdef0123456789abcdef";

    #[test]
    fn round_trip_and_type_confusion() {
        let r = ring(SECRET);
        let c = claims(TokenType::Access);
        let t = r.sign(&c).unwrap();
        assert_eq!(r.verify(&t, TokenType::Access).unwrap(), c);
        assert!(matches!(
            r.verify(&t, TokenType::Refresh),
            Err(ApiError::TokenInvalid)
        ));
    }

    #[test]
    fn a_remembered_token_vouches_for_no_other_text() {
        let r = ring(SECRET);
        let c = claims(TokenType::Access);
        let t = r.sign(&c).unwrap();
        assert_eq!(r.verify(&t, TokenType::Access).unwrap(), c);
        // The second check is answered from the memo, with the same claims.
        assert_eq!(r.verify(&t, TokenType::Access).unwrap(), c);
        // Any changed byte (signature, claims, a padding character) is
        // verified in full, and refused.
        let mut sig_changed = t.clone();
        let last = sig_changed.pop().unwrap();
        sig_changed.push(if last == 'A' { 'B' } else { 'A' });
        let (head, rest) = t.split_once('.').unwrap();
        let claims_changed = format!("{head}.{}", rest.replacen('e', "f", 1));
        for bad in [
            sig_changed,
            claims_changed,
            format!("{t}="),
            format!(" {t}"),
        ] {
            assert!(
                matches!(
                    r.verify(&bad, TokenType::Access),
                    Err(ApiError::TokenInvalid)
                ),
                "{bad}"
            );
        }
    }

    #[test]
    fn signing_is_deterministic_and_kid_hides_the_secret() {
        let r = ring(SECRET);
        let c = claims(TokenType::Refresh);
        assert_eq!(r.sign(&c).unwrap(), r.sign(&c).unwrap());
        assert!(!r.kid().contains(SECRET));
    }

    #[test]
    fn short_secret_is_refused() {
        assert!(
            KeyRing::hs256(KeySettings {
                secret: &SecretString::from("short".to_owned()),
                previous: &[],
                issuer: "tessera",
                audience: "tessera",
                leeway_secs: 0,
            })
            .is_err()
        );
    }

    #[test]
    fn other_secret_and_expiry() {
        let c = claims(TokenType::Access);
        let t = ring("another-secret-another-secret-xxxx").sign(&c).unwrap();
        assert!(matches!(
            ring(SECRET).verify(&t, TokenType::Access),
            Err(ApiError::TokenInvalid)
        ));
        let mut old = claims(TokenType::Access);
        old.exp = old.iat - 10;
        let t = ring(SECRET).sign(&old).unwrap();
        assert!(matches!(
            ring(SECRET).verify(&t, TokenType::Access),
            Err(ApiError::TokenExpired)
        ));
    }
}

#[cfg(test)]
mod eddsa_tests {
    use super::*;

    use ed25519_dalek::pkcs8::{EncodePublicKey, spki::der::pem::LineEnding};

    const SECRET: &str = "0123456789abcdef0123456789abcdef";
    const OLD_SECRET: &str = "an-old-secret-that-is-long-enough-000";

    use crate::auth::claims::test_claims as claims;

    fn signing(seed: u8) -> SigningKey {
        SigningKey::from_bytes(&[seed; 32])
    }

    fn private_pem(key: &SigningKey) -> String {
        key.to_pkcs8_pem(LineEnding::LF).unwrap().to_string()
    }

    fn public_pem(key: &SigningKey) -> String {
        key.verifying_key()
            .to_public_key_pem(LineEnding::LF)
            .unwrap()
    }

    fn ring(
        secret: Option<&str>,
        previous: &[&str],
        ed: Option<&SigningKey>,
        previous_public: &[&SigningKey],
    ) -> Result<KeyRing, KeyError> {
        let secret = secret.map(|s| SecretString::from(s.to_owned()));
        let previous: Vec<SecretString> = previous
            .iter()
            .map(|s| SecretString::from(s.to_string()))
            .collect();
        let pem = ed.map(private_pem);
        let publics: Vec<String> = previous_public.iter().map(|k| public_pem(k)).collect();
        KeyRing::new(RingSettings {
            secret: secret.as_ref(),
            previous_secrets: &previous,
            ed25519_private_pem: pem.as_deref(),
            previous_public_pems: &publics,
            issuer: "tessera",
            audience: "tessera",
            leeway_secs: 0,
        })
    }

    fn header_of(token: &str) -> serde_json::Value {
        let h = token.split('.').next().unwrap();
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(h).unwrap()).unwrap()
    }

    #[test]
    fn a_crit_header_is_refused() {
        let r = ring(Some(SECRET), &[], None, &[]).unwrap();
        let c = claims(TokenType::Access);
        let base = serde_json::json!({"alg": "HS256", "typ": "JWT", "kid": r.kid()});
        let plain = hs256_forge(base.clone(), &c, SECRET.as_bytes());
        assert_eq!(r.verify(&plain, TokenType::Access).unwrap(), c);
        for crit in [serde_json::json!(["exp"]), serde_json::json!(null)] {
            let mut h = base.clone();
            h["crit"] = crit.clone();
            h["exp"] = serde_json::json!(1);
            let t = hs256_forge(h, &c, SECRET.as_bytes());
            assert!(
                matches!(r.verify(&t, TokenType::Access), Err(ApiError::TokenInvalid)),
                "crit {crit}"
            );
        }
    }

    #[test]
    fn crit_is_found_however_spelled() {
        let token = |header: &str| format!("{}.e30.sig", URL_SAFE_NO_PAD.encode(header));
        assert!(header_names_crit(&token(r#"{"alg":"HS256","crit":null}"#)));
        assert!(header_names_crit(&token(
            r#"{"alg":"HS256","\u0063rit":null}"#
        )));
        assert!(!header_names_crit(&token(
            r#"{"alg":"HS256","kid":"critical"}"#
        )));
        assert!(!header_names_crit(&token(r#"{"alg":"HS256","typ":"JWT"}"#)));
    }

    /// `header.claims.signature`, HMAC-SHA256 under `secret`.
    fn hs256_forge(header: serde_json::Value, c: &Claims, secret: &[u8]) -> String {
        let msg = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(serde_json::to_vec(&header).unwrap()),
            URL_SAFE_NO_PAD.encode(serde_json::to_vec(c).unwrap())
        );
        let sig = jsonwebtoken::crypto::sign(
            msg.as_bytes(),
            &EncodingKey::from_secret(secret),
            Algorithm::HS256,
        )
        .unwrap();
        format!("{msg}.{sig}")
    }

    #[test]
    fn thumbprint_matches_rfc8037_example() {
        // RFC 8037, appendix A.2 and A.3.
        let x = URL_SAFE_NO_PAD
            .decode("11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo")
            .unwrap();
        let key = VerifyingKey::from_bytes(&x.try_into().unwrap()).unwrap();
        let jwk = ed25519_jwk(&key);
        assert_eq!(jwk.kid, "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k");
        assert_eq!(jwk.x, "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo");
    }

    #[test]
    fn eddsa_signs_deterministically_and_verifies() {
        let key = signing(1);
        let r = ring(None, &[], Some(&key), &[]).unwrap();
        assert_eq!(r.algorithm(), Algorithm::EdDSA);
        assert_eq!(r.kid(), ed25519_jwk(&key.verifying_key()).kid);
        let c = claims(TokenType::Access);
        let t = r.sign(&c).unwrap();
        assert_eq!(t, r.sign(&c).unwrap());
        let h = header_of(&t);
        assert_eq!(h["alg"], "EdDSA");
        assert_eq!(h["typ"], "JWT");
        assert_eq!(h["kid"], r.kid());
        assert_eq!(r.verify(&t, TokenType::Access).unwrap(), c);
        assert!(matches!(
            r.verify(&t, TokenType::Refresh),
            Err(ApiError::TokenInvalid)
        ));
        assert_eq!(r.jwks().len(), 1);
        assert_eq!(r.jwks()[0].kid, r.kid());
        // The signing key also listed as previous (pre-published) is one key.
        let r = ring(None, &[], Some(&key), &[&key]).unwrap();
        assert_eq!(r.jwks().len(), 1);
        assert_eq!(r.verify(&t, TokenType::Access).unwrap(), c);
    }

    #[test]
    fn rotation_keeps_previous_keys_of_both_kinds_verifying() {
        let old_ed = signing(2);
        let c = claims(TokenType::Refresh);
        let by_old_secret = ring(Some(OLD_SECRET), &[], None, &[])
            .unwrap()
            .sign(&c)
            .unwrap();
        let by_old_ed = ring(None, &[], Some(&old_ed), &[])
            .unwrap()
            .sign(&c)
            .unwrap();

        // HS256 rotation: the new secret signs, the old one verifies.
        let hs = ring(Some(SECRET), &[OLD_SECRET], None, &[]).unwrap();
        assert_eq!(hs.verify(&by_old_secret, TokenType::Refresh).unwrap(), c);
        assert_eq!(header_of(&hs.sign(&c).unwrap())["kid"], hs.kid());
        assert_ne!(header_of(&by_old_secret)["kid"], hs.kid());
        assert!(hs.jwks().is_empty());
        // Without the old secret listed, its tokens are unknown.
        let fresh = ring(Some(SECRET), &[], None, &[]).unwrap();
        assert!(matches!(
            fresh.verify(&by_old_secret, TokenType::Refresh),
            Err(ApiError::TokenInvalid)
        ));

        // EdDSA with the HS256 secrets and the old Ed25519 key verify-only.
        let ed = ring(Some(SECRET), &[OLD_SECRET], Some(&signing(3)), &[&old_ed]).unwrap();
        assert_eq!(ed.algorithm(), Algorithm::EdDSA);
        assert_eq!(ed.verify(&by_old_secret, TokenType::Refresh).unwrap(), c);
        assert_eq!(ed.verify(&by_old_ed, TokenType::Refresh).unwrap(), c);
        let by_current_secret = fresh.sign(&c).unwrap();
        assert_eq!(
            ed.verify(&by_current_secret, TokenType::Refresh).unwrap(),
            c
        );
        let kids: Vec<&str> = ed.jwks().iter().map(|j| j.kid.as_str()).collect();
        assert_eq!(
            kids,
            [ed.kid(), ed25519_jwk(&old_ed.verifying_key()).kid.as_str()]
        );
        // An Ed25519 key nobody configured.
        let stranger = ring(None, &[], Some(&signing(4)), &[])
            .unwrap()
            .sign(&c)
            .unwrap();
        assert!(matches!(
            ed.verify(&stranger, TokenType::Refresh),
            Err(ApiError::TokenInvalid)
        ));
    }

    #[test]
    fn each_key_pins_its_algorithm() {
        let key = signing(5);
        let r = ring(None, &[OLD_SECRET], Some(&key), &[]).unwrap();
        let c = claims(TokenType::Access);
        let public = key.verifying_key();
        let jwk = ed25519_jwk(&public);
        // HS256 "signed" with the public key, in every form an attacker may try.
        for secret in [
            public.as_bytes().to_vec(),
            jwk.x.clone().into_bytes(),
            public_pem(&key).into_bytes(),
        ] {
            let forged = hs256_forge(
                serde_json::json!({"alg": "HS256", "typ": "JWT", "kid": r.kid()}),
                &c,
                &secret,
            );
            assert!(matches!(
                r.verify(&forged, TokenType::Access),
                Err(ApiError::TokenInvalid)
            ));
        }
        // EdDSA header on an HS256 key's kid, signed by the Ed25519 key.
        let hs_kid = kid_of(OLD_SECRET.as_bytes());
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some(hs_kid.clone());
        let der = key.to_pkcs8_der().unwrap();
        let t = encode(&header, &c, &EncodingKey::from_ed_der(der.as_bytes())).unwrap();
        assert!(matches!(
            r.verify(&t, TokenType::Access),
            Err(ApiError::TokenInvalid)
        ));
        // HS384 under the right secret and kid is not HS256.
        let mut header = Header::new(Algorithm::HS384);
        header.kid = Some(hs_kid);
        let t = encode(
            &header,
            &c,
            &EncodingKey::from_secret(OLD_SECRET.as_bytes()),
        )
        .unwrap();
        assert!(matches!(
            r.verify(&t, TokenType::Access),
            Err(ApiError::TokenInvalid)
        ));
        // alg none.
        let none = format!(
            "{}.{}.",
            URL_SAFE_NO_PAD.encode(format!(r#"{{"alg":"none","kid":"{}"}}"#, r.kid())),
            URL_SAFE_NO_PAD.encode(serde_json::to_vec(&c).unwrap())
        );
        assert!(matches!(
            r.verify(&none, TokenType::Access),
            Err(ApiError::TokenInvalid)
        ));
    }

    #[test]
    fn bad_key_material_is_refused() {
        assert!(matches!(
            ring(None, &[], None, &[]),
            Err(KeyError::NoSigningKey)
        ));
        let pem = "-----BEGIN PRIVATE KEY-----\nnot a key\n-----END PRIVATE KEY-----\n";
        assert!(matches!(
            KeyRing::new(RingSettings {
                secret: None,
                previous_secrets: &[],
                ed25519_private_pem: Some(pem),
                previous_public_pems: &[],
                issuer: "tessera",
                audience: "tessera",
                leeway_secs: 0,
            }),
            Err(KeyError::BadEd25519PrivateKey(_))
        ));
        // A private key where a public one is expected.
        let key = signing(6);
        assert!(matches!(
            KeyRing::new(RingSettings {
                secret: Some(&SecretString::from(SECRET.to_owned())),
                previous_secrets: &[],
                ed25519_private_pem: None,
                previous_public_pems: &[private_pem(&key)],
                issuer: "tessera",
                audience: "tessera",
                leeway_secs: 0,
            }),
            Err(KeyError::BadEd25519PublicKey { index: 1, .. })
        ));
        assert!(matches!(
            ring(Some(SECRET), &["short"], None, &[]),
            Err(KeyError::PreviousSecretTooShort)
        ));
        assert!(matches!(
            ring(Some("short"), &[], Some(&key), &[]),
            Err(KeyError::SecretTooShort)
        ));
    }
}
