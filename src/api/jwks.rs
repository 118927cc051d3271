//! The public keys of EdDSA signing, for gateways that verify tokens locally.

use std::sync::Arc;

use poem::web::Data;
use poem_openapi::{ApiResponse, Object, OpenApi, payload::Json};

use super::Tag;
use crate::{error::ApiError, state::AppState};

/// An Ed25519 public key (RFC 8037 JWK).
#[derive(Object)]
pub struct Jwk {
    /// Key type: always `OKP`.
    pub kty: String,
    /// Curve: always `Ed25519`.
    pub crv: String,
    /// The public key, base64url without padding.
    pub x: String,
    /// Key id (RFC 7638 thumbprint), as in the `kid` header of the tokens it signed.
    pub kid: String,
    /// Algorithm: always `EdDSA`.
    pub alg: String,
    /// Use: always `sig`.
    #[oai(rename = "use")]
    pub use_: String,
}

/// A JWK Set (RFC 7517): the current signing key first, then retired ones.
#[derive(Object)]
pub struct Jwks {
    pub keys: Vec<Jwk>,
}

#[derive(ApiResponse)]
enum JwksResponse {
    /// The JWK Set.
    #[oai(status = 200)]
    Keys(Json<Jwks>),
}

pub struct JwksApi;

#[OpenApi(tag = "Tag::Keys")]
impl JwksApi {
    /// Public keys (JWKS) for verifying tokens locally
    ///
    /// The Ed25519 public keys that verify Tessera's EdDSA tokens: the current
    /// signing key first, then retired ones (pick by the token's `kid`); 404
    /// `NotFound` when EdDSA is not configured. A gateway that verifies tokens
    /// with these keys does not see revocations (logout, reuse, blocks) before
    /// the tokens expire: `GET /auth/verify` does.
    #[oai(path = "/.well-known/jwks.json", method = "get", operation_id = "jwks")]
    async fn jwks(&self, state: Data<&Arc<AppState>>) -> Result<JwksResponse, ApiError> {
        let keys = state.tokens.keys.jwks();
        if keys.is_empty() {
            return Err(ApiError::not_found());
        }
        Ok(JwksResponse::Keys(Json(Jwks {
            keys: keys
                .iter()
                .map(|k| Jwk {
                    kty: "OKP".into(),
                    crv: "Ed25519".into(),
                    x: k.x.clone(),
                    kid: k.kid.clone(),
                    alg: "EdDSA".into(),
                    use_: "sig".into(),
                })
                .collect(),
        })))
    }
}
