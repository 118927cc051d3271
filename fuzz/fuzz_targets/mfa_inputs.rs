//! The second factor's input parsers (API.md "Second factor (TOTP)"), on
//! arbitrary text: `totp::parse_code` (the `code` of every MFA body),
//! `recovery_codes::normalise` (the same `code`, when it is not six digits)
//! and `mfa_token::parse` (the `mfa_token` of `/auth/mfa/verify`). They run
//! before any key, database or store is touched, on what anyone may send.
//!
//! Each is checked against an independent statement of its rule, so that a
//! parser that accepts too much (a second spelling of a token, a code with
//! a look-alike character) fails as surely as one that panics:
//! - `parse_code`: `Some` exactly for six ASCII digits once surrounding
//!   ASCII whitespace is trimmed, holding those digits;
//! - `normalise`: `Some` exactly when, spaces, tabs and hyphens left out,
//!   12 ASCII characters remain whose lowercase is in the alphabet; the
//!   output is those 12 lowercased, and normalising it again changes
//!   nothing;
//! - `mfa_token::parse`: `Some` exactly for 43 base64url characters that
//!   are the canonical encoding of 32 bytes (the last character's 2 unused
//!   bits zero), keyed by the SHA-256 of the text;
//! - no text is both a TOTP code and a recovery code (the service tries
//!   the first, then the second).
//!
//! Input: the bytes as text (invalid UTF-8 replaced by U+FFFD). The same
//! bytes also build one well-formed value of each kind (digits, a
//! recovery code in mixed case with hyphens and spaces, a token), which
//! must be accepted: the `Some` branches run on every input, not only when
//! the fuzzer happens on one.

#![no_main]

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use libfuzzer_sys::fuzz_target;
use sha2::{Digest, Sha256};
use tessera::auth::{mfa_token, recovery_codes, store::ChallengeKey, totp};

/// Recovery codes' alphabet, written out here rather than taken from the
/// crate: digits 2-9 and the lowercase letters without i, l and o.
const ALPHABET: &[u8] = b"23456789abcdefghjkmnpqrstuvwxyz";
const RECOVERY_LEN: usize = 12;
const TOKEN_LEN: usize = 43;
const TOKEN_BYTES: usize = 32;
const BASE64URL: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

fn expected_code(s: &str) -> Option<&str> {
    let t = s.trim_ascii();
    (t.len() == 6 && t.bytes().all(|b| b.is_ascii_digit())).then_some(t)
}

fn expected_recovery(s: &str) -> Option<String> {
    let kept: Vec<char> = s
        .chars()
        .filter(|c| !matches!(c, ' ' | '\t' | '-'))
        .collect();
    let ok = kept.len() == RECOVERY_LEN
        && kept
            .iter()
            .all(|c| c.is_ascii() && ALPHABET.contains(&(c.to_ascii_lowercase() as u8)));
    ok.then(|| kept.iter().map(char::to_ascii_lowercase).collect())
}

fn expected_token(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == TOKEN_LEN
        && b.iter().all(|c| BASE64URL.contains(c))
        // 43 characters carry 258 bits for 256: the last one's low 2 bits
        // are padding, zero in the one canonical spelling.
        && BASE64URL
            .iter()
            .position(|c| *c == b[TOKEN_LEN - 1])
            .is_some_and(|v| v & 3 == 0)
}

fn check(s: &str) {
    let code = totp::parse_code(s);
    let want = expected_code(s);
    assert_eq!(code.is_some(), want.is_some(), "parse_code({s:?})");
    if let (Some(c), Some(w)) = (&code, want) {
        assert_eq!(c.as_str(), w, "parse_code({s:?}) kept other digits");
    }

    let normalised = recovery_codes::normalise(s);
    assert_eq!(normalised, expected_recovery(s), "normalise({s:?})");
    if let Some(n) = &normalised {
        assert_eq!(n.len(), RECOVERY_LEN, "normalise({s:?}) = {n:?}");
        assert!(
            n.bytes().all(|b| ALPHABET.contains(&b)),
            "normalise({s:?}) = {n:?}"
        );
        assert_eq!(
            recovery_codes::normalise(n).as_ref(),
            Some(n),
            "normalise is not idempotent on {s:?}"
        );
    }
    assert!(
        code.is_none() || normalised.is_none(),
        "{s:?} is both a TOTP code and a recovery code"
    );

    let key = mfa_token::parse(s);
    assert_eq!(key.is_some(), expected_token(s), "mfa_token::parse({s:?})");
    if let Some(k) = key {
        let raw = URL_SAFE_NO_PAD
            .decode(s)
            .expect("an accepted token decodes");
        assert_eq!(raw.len(), TOKEN_BYTES, "{s:?}");
        assert_eq!(URL_SAFE_NO_PAD.encode(&raw), s, "{s:?} is not canonical");
        assert_eq!(
            k,
            ChallengeKey::Mfa(Sha256::digest(s.as_bytes()).into()),
            "{s:?}: the key is not the token's SHA-256"
        );
    }
}

/// Well-formed values built from the input's bytes.
fn well_formed(data: &[u8]) -> [String; 3] {
    let byte = |i: usize| data.get(i).copied().unwrap_or(i as u8);
    // Six digits with ASCII whitespace around (bits of byte 6 pick it).
    let pad = [" ", "\t", "\n", "\r", "\x0c", ""];
    let digits: String = (0..6).map(|i| char::from(b'0' + byte(i) % 10)).collect();
    let code = format!(
        "{}{digits}{}",
        pad[usize::from(byte(6)) % pad.len()],
        pad[usize::from(byte(7)) % pad.len()]
    );
    // Twelve characters of the alphabet, some uppercased, separated by a
    // hyphen, a space, a tab or nothing.
    let mut recovery = String::new();
    for i in 0..RECOVERY_LEN {
        let b = byte(8 + i);
        let c = char::from(ALPHABET[usize::from(b) % ALPHABET.len()]);
        recovery.push(if b & 0x80 != 0 {
            c.to_ascii_uppercase()
        } else {
            c
        });
        recovery.push_str(["", "-", " ", "\t"][usize::from(b >> 5) & 3]);
    }
    // 32 bytes in canonical base64url.
    let raw: Vec<u8> = (0..TOKEN_BYTES).map(|i| byte(20 + i)).collect();
    [code, recovery, URL_SAFE_NO_PAD.encode(raw)]
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    check(&text);

    let [code, recovery, token] = well_formed(data);
    check(&code);
    assert!(totp::parse_code(&code).is_some(), "refused {code:?}");
    check(&recovery);
    assert!(
        recovery_codes::normalise(&recovery).is_some(),
        "refused {recovery:?}"
    );
    check(&token);
    assert!(mfa_token::parse(&token).is_some(), "refused {token:?}");
});
