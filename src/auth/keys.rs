//! Signing and verifying tokens: HS256 keys named by `kid`, strict validation
//! (pinned algorithm, iss, aud, exp, nbf, typ, configurable leeway).

use jsonwebtoken::{
    Algorithm, DecodingKey, EncodingKey, Header, Validation, decode, decode_header, encode,
    errors::ErrorKind,
};
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};

use super::claims::{Claims, TokenType};
use crate::error::ApiError;

/// Tokens longer than this are refused before any parsing (no JWT we issue
/// comes near it).
const MAX_TOKEN_LEN: usize = 4096;

struct VerifyKey {
    kid: String,
    key: DecodingKey,
}

pub struct KeyRing {
    kid: String,
    encoding: EncodingKey,
    verify: Vec<VerifyKey>,
    validation: Validation,
}

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("TESSERA_JWT_SECRET must be at least 32 bytes")]
    SecretTooShort,
    #[error("a secret in TESSERA_JWT_PREVIOUS_SECRETS is shorter than 32 bytes")]
    PreviousSecretTooShort,
}

/// `kid` of an HMAC secret: a truncated hash, never the secret itself.
fn kid_of(secret: &[u8]) -> String {
    let digest = Sha256::new_with_prefix(b"tessera-kid:")
        .chain_update(secret)
        .finalize();
    digest[..8].iter().map(|b| format!("{b:02x}")).collect()
}

pub struct KeySettings<'a> {
    pub secret: &'a SecretString,
    pub previous: &'a [SecretString],
    pub issuer: &'a str,
    pub audience: &'a str,
    pub leeway_secs: u64,
}

impl KeyRing {
    pub fn hs256(s: KeySettings<'_>) -> Result<Self, KeyError> {
        let secret = s.secret.expose_secret().as_bytes();
        if secret.len() < 32 {
            return Err(KeyError::SecretTooShort);
        }
        let mut verify = vec![VerifyKey {
            kid: kid_of(secret),
            key: DecodingKey::from_secret(secret),
        }];
        for old in s.previous {
            let old = old.expose_secret().as_bytes();
            if old.len() < 32 {
                return Err(KeyError::PreviousSecretTooShort);
            }
            verify.push(VerifyKey {
                kid: kid_of(old),
                key: DecodingKey::from_secret(old),
            });
        }
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_issuer(&[s.issuer]);
        validation.set_audience(&[s.audience]);
        validation.leeway = s.leeway_secs;
        validation.validate_nbf = true;
        validation.validate_exp = true;
        validation.set_required_spec_claims(&["exp", "nbf", "iat", "iss", "aud", "sub"]);
        Ok(Self {
            kid: kid_of(secret),
            encoding: EncodingKey::from_secret(secret),
            verify,
            validation,
        })
    }

    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// Deterministic: the same claims give the same bytes.
    pub fn sign(&self, claims: &Claims) -> Result<String, ApiError> {
        let mut header = Header::new(Algorithm::HS256);
        header.typ = Some("JWT".into());
        header.kid = Some(self.kid.clone());
        encode(&header, claims, &self.encoding).map_err(ApiError::internal)
    }

    /// Verifies signature and claims and that the token is of `expected` type.
    pub fn verify(&self, token: &str, expected: TokenType) -> Result<Claims, ApiError> {
        if token.is_empty() || token.len() > MAX_TOKEN_LEN {
            return Err(ApiError::TokenInvalid);
        }
        let header = decode_header(token).map_err(|_| ApiError::TokenInvalid)?;
        if header.alg != Algorithm::HS256 {
            return Err(ApiError::TokenInvalid);
        }
        // jku, x5u and embedded jwk headers are never consulted: only our kids.
        let kid = header.kid.ok_or(ApiError::TokenInvalid)?;
        let key = self
            .verify
            .iter()
            .find(|k| k.kid == kid)
            .ok_or(ApiError::TokenInvalid)?;
        let data =
            decode::<Claims>(token, &key.key, &self.validation).map_err(|e| match e.kind() {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::claims::Role;
    use uuid::Uuid;

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

    fn claims(typ: TokenType) -> Claims {
        let now = chrono::Utc::now().timestamp();
        Claims {
            iss: "tessera".into(),
            aud: "tessera".into(),
            sub: Uuid::now_v7(),
            iat: now,
            nbf: now,
            exp: now + 60,
            jti: Uuid::now_v7(),
            typ,
            sid: Uuid::now_v7(),
            role: (typ == TokenType::Access).then_some(Role::User),
            fresh: (typ == TokenType::Access).then_some(true),
        }
    }

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
