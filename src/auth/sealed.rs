//! Secrets at rest (the TOTP secret): sealed with XChaCha20-Poly1305 under
//! a key derived from `TESSERA_DATA_KEY` (or the signing secret), bound to
//! the user they belong to.
//!
//! Why XChaCha20-Poly1305: its 192-bit nonce can be drawn at random on
//! every replica with no counter to coordinate and no birthday bound to
//! watch (AES-GCM's 96-bit random nonces have one), and it is constant-time
//! in software on machines without AES instructions. The crate is
//! RustCrypto's `chacha20poly1305` 0.11 (maintained with the other RustCrypto
//! AEADs, whose `chacha20` the lock file already had).
//!
//! The associated data names the user: a sealed secret copied into another
//! user's row does not open there. The stored text is
//! `v1.<base64url(nonce || ciphertext+tag)>`; the version leaves room for a
//! key id when the data key can be rotated.

use std::fmt;

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use chacha20poly1305::{
    Key, KeyInit, XChaCha20Poly1305, XNonce,
    aead::{Aead, Payload},
};
use rand::RngCore;
use secrecy::SecretSlice;
use uuid::Uuid;

const NONCE_LEN: usize = 24;
const TAG_LEN: usize = 16;
const PREFIX: &str = "v1.";
/// Domain label of the associated data, so a ciphertext of another (future)
/// purpose under the same key never opens as this one.
const AAD_LABEL: &[u8] = b"tessera sealed secret v1\0";

/// The keys for data at rest, derived once at start from the server's key
/// material (`state::server_key_material`). Each use has its own subkey.
#[derive(Clone)]
pub struct DataKey {
    seal: [u8; 32],
    recovery: [u8; 32],
}

impl DataKey {
    pub fn derive(material: &[u8]) -> Self {
        Self {
            seal: super::server_key::derive(b"tessera data key: sealed secrets v1\0", material),
            recovery: super::server_key::derive(b"tessera data key: recovery codes v1\0", material),
        }
    }

    /// The HMAC key recovery codes are hashed with (`auth::recovery_codes`).
    pub(crate) fn recovery_code_key(&self) -> &[u8; 32] {
        &self.recovery
    }

    fn cipher(&self) -> XChaCha20Poly1305 {
        XChaCha20Poly1305::new(&Key::from(self.seal))
    }

    /// Seals `secret` for `user_id`, under a fresh random nonce. (It only
    /// fails for messages beyond 256 GiB.)
    pub fn seal(&self, user_id: Uuid, secret: &[u8]) -> Result<Sealed, SealedError> {
        let mut nonce = [0u8; NONCE_LEN];
        rand::rng().fill_bytes(&mut nonce);
        let aad = aad(user_id);
        let ciphertext = self
            .cipher()
            .encrypt(
                &XNonce::from(nonce),
                Payload {
                    msg: secret,
                    aad: &aad,
                },
            )
            .map_err(|_| SealedError::TooLong)?;
        Ok(Sealed { nonce, ciphertext })
    }

    /// Opens a secret sealed for `user_id` under this key. A wrong key, a
    /// wrong user and a changed byte all fail alike.
    pub fn open(&self, user_id: Uuid, sealed: &Sealed) -> Result<SecretSlice<u8>, SealedError> {
        let aad = aad(user_id);
        self.cipher()
            .decrypt(
                &XNonce::from(sealed.nonce),
                Payload {
                    msg: &sealed.ciphertext,
                    aad: &aad,
                },
            )
            .map(SecretSlice::from)
            .map_err(|_| SealedError::Rejected)
    }
}

impl fmt::Debug for DataKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("DataKey([redacted])")
    }
}

fn aad(user_id: Uuid) -> Vec<u8> {
    [AAD_LABEL, user_id.as_bytes()].concat()
}

/// A sealed secret: what the database column holds (`to_db` / `from_db`).
#[derive(Clone, PartialEq, Eq)]
pub struct Sealed {
    nonce: [u8; NONCE_LEN],
    /// Ciphertext followed by the 16-byte tag.
    ciphertext: Vec<u8>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SealedError {
    #[error("sealed secret is malformed")]
    Malformed,
    #[error("sealed secret does not open (wrong key, wrong user or altered)")]
    Rejected,
    #[error("secret too long to seal")]
    TooLong,
}

impl Sealed {
    /// The text stored in the database: `v1.<base64url(nonce || ciphertext)>`.
    pub fn to_db(&self) -> String {
        let mut raw = Vec::with_capacity(NONCE_LEN + self.ciphertext.len());
        raw.extend_from_slice(&self.nonce);
        raw.extend_from_slice(&self.ciphertext);
        format!("{PREFIX}{}", URL_SAFE_NO_PAD.encode(raw))
    }

    pub fn from_db(text: &str) -> Result<Self, SealedError> {
        let body = text.strip_prefix(PREFIX).ok_or(SealedError::Malformed)?;
        let raw = URL_SAFE_NO_PAD
            .decode(body)
            .map_err(|_| SealedError::Malformed)?;
        if raw.len() < NONCE_LEN + TAG_LEN {
            return Err(SealedError::Malformed);
        }
        let (nonce, ciphertext) = raw.split_at(NONCE_LEN);
        Ok(Self {
            nonce: nonce.try_into().map_err(|_| SealedError::Malformed)?,
            ciphertext: ciphertext.to_vec(),
        })
    }
}

/// The ciphertext is not secret, but nothing is gained by printing it.
impl fmt::Debug for Sealed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Sealed({} bytes)", self.ciphertext.len())
    }
}

#[cfg(test)]
mod tests {
    use secrecy::ExposeSecret;

    use super::*;

    const SECRET: &[u8] = b"twenty bytes secret!";

    fn open(key: &DataKey, user: Uuid, text: &str) -> Result<Vec<u8>, SealedError> {
        let sealed = Sealed::from_db(text)?;
        key.open(user, &sealed).map(|s| s.expose_secret().to_vec())
    }

    #[test]
    fn round_trip_through_the_db_text() {
        let key = DataKey::derive(b"server key material of some length");
        let user = Uuid::now_v7();
        let text = key.seal(user, SECRET).unwrap().to_db();
        assert!(text.starts_with("v1."), "{text}");
        // 24-byte nonce + 20-byte secret + 16-byte tag = 60 bytes = 80 chars.
        assert_eq!(text.len(), 3 + 80, "{text}");
        assert!(
            text[3..]
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        );
        assert_eq!(open(&key, user, &text), Ok(SECRET.to_vec()));
        // The same material derives the same key (another replica, a restart).
        let again = DataKey::derive(b"server key material of some length");
        assert_eq!(open(&again, user, &text), Ok(SECRET.to_vec()));
        // An empty secret seals too.
        let empty = key.seal(user, b"").unwrap().to_db();
        assert_eq!(open(&key, user, &empty), Ok(vec![]));
    }

    #[test]
    fn wrong_key_fails() {
        let user = Uuid::now_v7();
        let text = DataKey::derive(b"key a")
            .seal(user, SECRET)
            .unwrap()
            .to_db();
        assert_eq!(
            open(&DataKey::derive(b"key b"), user, &text),
            Err(SealedError::Rejected)
        );
    }

    #[test]
    fn another_users_row_does_not_open() {
        let key = DataKey::derive(b"k");
        let (alice, mallory) = (Uuid::now_v7(), Uuid::now_v7());
        let text = key.seal(alice, SECRET).unwrap().to_db();
        assert_eq!(open(&key, mallory, &text), Err(SealedError::Rejected));
        assert_eq!(open(&key, alice, &text), Ok(SECRET.to_vec()));
    }

    #[test]
    fn any_changed_byte_fails() {
        let key = DataKey::derive(b"k");
        let user = Uuid::now_v7();
        let text = key.seal(user, SECRET).unwrap().to_db();
        let raw = URL_SAFE_NO_PAD.decode(&text[3..]).unwrap();
        // Every byte of nonce, ciphertext and tag is covered.
        for i in 0..raw.len() {
            let mut bad = raw.clone();
            bad[i] ^= 0x01;
            let bad = format!("v1.{}", URL_SAFE_NO_PAD.encode(&bad));
            assert_eq!(
                open(&key, user, &bad),
                Err(SealedError::Rejected),
                "flipped byte {i}"
            );
        }
        // Truncated, extended, re-versioned or not base64: malformed or rejected.
        let mut short = raw.clone();
        short.pop();
        let short = format!("v1.{}", URL_SAFE_NO_PAD.encode(&short));
        assert_eq!(open(&key, user, &short), Err(SealedError::Rejected));
        let mut long = raw.clone();
        long.push(0);
        let long = format!("v1.{}", URL_SAFE_NO_PAD.encode(&long));
        assert_eq!(open(&key, user, &long), Err(SealedError::Rejected));
        for junk in [
            "",
            "v1.",
            "v1.AAAA",
            "v2.",
            &text[3..],
            &format!("v2.{}", &text[3..]),
            "v1.!!!!",
            &format!("v1.{}", URL_SAFE_NO_PAD.encode([0u8; 39])),
        ] {
            assert_eq!(
                Sealed::from_db(junk),
                Err(SealedError::Malformed),
                "{junk:?}"
            );
        }
    }

    #[test]
    fn two_seals_of_one_secret_differ() {
        let key = DataKey::derive(b"k");
        let user = Uuid::now_v7();
        let (a, b) = (
            key.seal(user, SECRET).unwrap(),
            key.seal(user, SECRET).unwrap(),
        );
        assert_ne!(a.nonce, b.nonce);
        assert_ne!(a.to_db(), b.to_db());
        assert_ne!(a.ciphertext, b.ciphertext);
    }

    #[test]
    fn debug_prints_no_secret() {
        let material = b"material-that-must-not-show";
        let key = DataKey::derive(material);
        let user = Uuid::now_v7();
        let sealed = key.seal(user, SECRET).unwrap();
        let opened = key.open(user, &sealed).unwrap();
        let printed = format!("{key:?} {sealed:?} {opened:?} {key:#?}");
        assert!(printed.contains("redacted"), "{printed}");
        for needle in [
            "material-that",
            "twenty bytes",
            &sealed.to_db()[3..13],
            &format!("{:?}", &key.seal[..4]),
        ] {
            assert!(!printed.contains(needle), "{needle:?} in {printed}");
        }
    }
}
