//! The `mfa_token` of a login waiting for its second factor (API.md
//! "Second factor"): 256 random bits, base64url without padding (43
//! characters). The token store keeps the challenge under the SHA-256 of
//! the token, so no store key or value is a token that would work.

use std::fmt;

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use rand::RngCore;
use sha2::{Digest, Sha256};

use crate::auth::store::ChallengeKey;

/// Seconds a challenge lives.
pub const TTL_SECS: u64 = 300;
/// Codes a challenge may be tried with; the next try finds it dead.
pub const MAX_TRIES: u32 = 5;
const BYTES: usize = 32;
/// Characters of the encoded token.
pub const LEN: usize = crate::auth::server_key::TOKEN_LEN;

/// A new token: what the client gets. Never printed.
pub struct MfaToken(String);

impl MfaToken {
    pub fn generate() -> Self {
        let mut raw = [0u8; BYTES];
        rand::rng().fill_bytes(&mut raw);
        Self(URL_SAFE_NO_PAD.encode(raw))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn into_string(self) -> String {
        self.0
    }

    /// Where its challenge is stored.
    pub fn key(&self) -> ChallengeKey {
        key_of(&self.0)
    }
}

impl fmt::Debug for MfaToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MfaToken([redacted])")
    }
}

fn key_of(token: &str) -> ChallengeKey {
    ChallengeKey::Mfa(Sha256::digest(token.as_bytes()).into())
}

/// The challenge key of what a client sent, if it can be one of our tokens
/// (`server_key::is_token`).
pub fn parse(input: &str) -> Option<ChallengeKey> {
    crate::auth::server_key::is_token(input).then(|| key_of(input))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_tokens_parse_to_their_key() {
        for _ in 0..100 {
            let t = MfaToken::generate();
            assert_eq!(t.as_str().len(), LEN);
            assert_eq!(parse(t.as_str()), Some(t.key()));
        }
        let (a, b) = (MfaToken::generate(), MfaToken::generate());
        assert_ne!(a.key(), b.key());
    }

    #[test]
    fn anything_else_is_refused() {
        let t = MfaToken::generate().into_string();
        let mut cases = vec![
            String::new(),
            t[..LEN - 1].to_owned(),
            format!("{t}A"),
            format!("{t}="),
            format!(" {}", &t[1..]),
            t.replace(|c: char| c.is_ascii_alphanumeric(), "+"),
            "é".repeat(LEN / 2),
        ];
        // The last character carries 2 padding bits: a non-zero one is a
        // second spelling of the same bytes.
        let mut last = t.clone();
        last.pop();
        cases.push(format!("{last}B"));
        cases.push(format!("{last}/"));
        for c in cases {
            if c == t {
                continue;
            }
            assert_eq!(parse(&c), None, "{c:?}");
        }
    }

    #[test]
    fn the_key_is_not_the_token() {
        let t = MfaToken::generate();
        assert!(!t.key().to_string().contains(t.as_str()));
        assert!(!format!("{t:?}").contains(t.as_str()));
    }
}
