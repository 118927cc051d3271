//! The server's own keys, each derived for one purpose from one key
//! material (`TESSERA_DATA_KEY`, else the signing secret; see
//! `state::server_key_material`): one-time link tokens, CSRF tokens, sealed
//! secrets, recovery-code hashes.

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

/// The key of one purpose: SHA-256 of its `label` and the material. The
/// material is a high-entropy secret, so one hash is enough of a KDF; the
/// label keeps the purposes' keys apart.
pub fn derive(label: &[u8], material: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(label);
    h.update(material);
    h.finalize().into()
}

/// HMAC-SHA256 under `key` of `parts`, in order.
pub fn mac(key: &[u8; 32], parts: &[&[u8]]) -> [u8; 32] {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key)
        .unwrap_or_else(|_| unreachable!("HMAC takes a key of any length"));
    for part in parts {
        mac.update(part);
    }
    mac.finalize().into_bytes().into()
}

/// Characters of the server's opaque tokens (mailed links, `mfa_token`):
/// 256 bits in base64url without padding.
pub const TOKEN_LEN: usize = 43;

/// Whether `token` has the shape of one of those tokens: 43 base64url
/// characters that decode to 32 bytes (the decoder refuses non-zero
/// trailing bits, so each token has one spelling). Anything else is
/// refused before any lookup.
pub fn is_token(token: &str) -> bool {
    use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
    token.len() == TOKEN_LEN
        && URL_SAFE_NO_PAD
            .decode(token)
            .is_ok_and(|bytes| bytes.len() == 32)
}

/// Lowercase hex, the stored form of digests.
pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_separate_keys_and_hex_is_lowercase() {
        assert_ne!(derive(b"a\0", b"m"), derive(b"b\0", b"m"));
        assert_eq!(derive(b"a\0", b"m"), derive(b"a\0", b"m"));
        let k = derive(b"a\0", b"m");
        assert_eq!(mac(&k, &[b"x", b"y"]), mac(&k, &[b"xy"]));
        assert_eq!(hex(&[0x0a, 0xff]), "0aff");
    }
}
