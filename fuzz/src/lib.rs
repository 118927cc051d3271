//! Fixtures shared by the fuzz targets and the seed generator
//! (`cargo run --manifest-path fuzz/Cargo.toml --example make_seeds`): a
//! fixed key ring, signing of arbitrary header and claims bytes, and the
//! in-process application.

pub mod app;

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use ed25519_dalek::{
    Signer, SigningKey,
    pkcs8::{EncodePrivateKey, spki::der::pem::LineEnding},
};
use hmac::{Hmac, Mac};
use secrecy::SecretString;
use sha2::Sha256;
use tessera::auth::keys::{KeyRing, KeySettings, RingSettings, ed25519_jwk};

/// The HS256 secret of the fuzz key rings (fixed, so that seeds stay valid).
pub const SECRET: &str = "tessera-fuzz-current-secret-0123456789";
/// A retired HS256 secret, still accepted for verification (key rotation).
pub const PREVIOUS: &str = "tessera-fuzz-previous-secret-9876543210";
pub const ISSUER: &str = "tessera";
pub const AUDIENCE: &str = "tessera";

/// The fuzz Ed25519 key, derived from a fixed seed (a test key, not a secret).
pub fn ed25519_key() -> SigningKey {
    SigningKey::from_bytes(&[0x42; 32])
}

/// How a token is signed: with one of the ring's keys, or by an attacker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignWith {
    /// HMAC with `SECRET` (the ring verifies it).
    Current,
    /// HMAC with `PREVIOUS` (verify-only key).
    Previous,
    /// Ed25519 with the ring's signing key.
    Ed25519,
    /// Algorithm confusion: HMAC keyed with the Ed25519 public key bytes.
    HmacWithPublicKey,
    /// Algorithm confusion: HMAC keyed with the public key's JWK `x` text.
    HmacWithJwkX,
    /// HMAC with a secret the ring has never seen.
    Unknown,
}

impl SignWith {
    /// Whether a token signed this way may ever verify.
    pub fn trusted(self) -> bool {
        matches!(self, Self::Current | Self::Previous | Self::Ed25519)
    }

    /// The `alg` this signer produces.
    pub fn alg(self) -> &'static str {
        if self == Self::Ed25519 {
            "EdDSA"
        } else {
            "HS256"
        }
    }
}

/// Keys of the fuzz ring: `kid`s by signer.
pub struct Kids {
    pub current: String,
    pub previous: String,
    pub ed25519: String,
}

impl Kids {
    /// The `kid` a header would name for this signer (attackers name the
    /// key they try to impersonate).
    pub fn for_signer(&self, s: SignWith) -> &str {
        match s {
            SignWith::Current | SignWith::Unknown => &self.current,
            SignWith::Previous => &self.previous,
            SignWith::Ed25519 | SignWith::HmacWithPublicKey | SignWith::HmacWithJwkX => {
                &self.ed25519
            }
        }
    }

    /// The algorithm each of our kids is pinned to.
    pub fn alg_of(&self, kid: &str) -> Option<&'static str> {
        if kid == self.current || kid == self.previous {
            Some("HS256")
        } else if kid == self.ed25519 {
            Some("EdDSA")
        } else {
            None
        }
    }
}

fn hs256_ring(secret: &str, previous: &[&str]) -> KeyRing {
    let previous: Vec<SecretString> = previous
        .iter()
        .map(|s| SecretString::from((*s).to_owned()))
        .collect();
    KeyRing::hs256(KeySettings {
        secret: &SecretString::from(secret.to_owned()),
        previous: &previous,
        issuer: ISSUER,
        audience: AUDIENCE,
        leeway_secs: 0,
    })
    .expect("fuzz secrets are long enough")
}

/// HS256 only: signs with `SECRET`, verifies `SECRET` and `PREVIOUS`.
pub fn hs256_only() -> KeyRing {
    hs256_ring(SECRET, &[PREVIOUS])
}

/// The richest configuration: Ed25519 signs; `SECRET` and `PREVIOUS` are
/// verify-only HS256 keys (a service moved from HS256 to EdDSA).
pub fn mixed() -> KeyRing {
    let pem = ed25519_key()
        .to_pkcs8_pem(LineEnding::LF)
        .expect("PEM of a fixed key");
    let secret = SecretString::from(SECRET.to_owned());
    let previous = [SecretString::from(PREVIOUS.to_owned())];
    KeyRing::new(RingSettings {
        secret: Some(&secret),
        previous_secrets: &previous,
        ed25519_private_pem: Some(pem.as_str()),
        previous_public_pems: &[],
        issuer: ISSUER,
        audience: AUDIENCE,
        leeway_secs: 0,
    })
    .expect("fuzz key ring")
}

pub fn kids() -> Kids {
    Kids {
        current: hs256_ring(SECRET, &[]).kid().to_owned(),
        previous: hs256_ring(PREVIOUS, &[]).kid().to_owned(),
        ed25519: ed25519_jwk(&ed25519_key().verifying_key()).kid,
    }
}

fn hmac(key: &[u8], msg: &[u8]) -> Vec<u8> {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("any key size");
    mac.update(msg);
    mac.finalize().into_bytes().to_vec()
}

/// `b64(header).b64(claims).b64(signature)`: a JWS over whatever bytes the
/// fuzzer chose, signed as `with` says, so that verification gets past the
/// signature (for our keys) into header and claims handling.
pub fn sign_raw(with: SignWith, header: &[u8], claims: &[u8]) -> String {
    let input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header),
        URL_SAFE_NO_PAD.encode(claims)
    );
    let ed = ed25519_key();
    let sig = match with {
        SignWith::Current => hmac(SECRET.as_bytes(), input.as_bytes()),
        SignWith::Previous => hmac(PREVIOUS.as_bytes(), input.as_bytes()),
        SignWith::Ed25519 => ed.sign(input.as_bytes()).to_bytes().to_vec(),
        SignWith::HmacWithPublicKey => hmac(ed.verifying_key().as_bytes(), input.as_bytes()),
        SignWith::HmacWithJwkX => {
            let x = ed25519_jwk(&ed.verifying_key()).x;
            hmac(x.as_bytes(), input.as_bytes())
        }
        SignWith::Unknown => hmac(
            b"a-secret-the-key-ring-has-never-seen-0000",
            input.as_bytes(),
        ),
    };
    format!("{input}.{}", URL_SAFE_NO_PAD.encode(sig))
}
