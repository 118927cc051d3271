//! TOTP second factor (RFC 6238): SHA-1, 6 digits, 30 s steps, one step
//! either side, through the `totp-rs` crate. Secrets, the `otpauth://` URI
//! and its QR code for enrolment; the code parser; the matched time step
//! and its one-time claim in the token store (RFC 6238 section 5.2: a code
//! is accepted once), so a replay fails on every replica.

use std::fmt;

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use rand::RngCore;
use totp_rs::{Algorithm, Builder, Secret};
use uuid::Uuid;

use crate::auth::store::{OnceKey, StoreResult, TokenStore};

pub const DIGITS: usize = 6;
pub const STEP_SECS: u64 = 30;
/// Steps accepted either side of the current one (clock drift, typing time).
pub const SKEW_STEPS: u16 = 1;
/// 160 bits, RFC 4226's recommendation (totp-rs refuses under 128).
pub const SECRET_BYTES: usize = 20;
/// How long a used step stays claimed. A step is accepted for at most 90 s
/// (itself and one step either side); the rest covers clocks of replicas
/// that differ by a few minutes. A longer claim costs one small key per
/// successful verification, a shorter one could let a code pass twice.
pub const REPLAY_TTL_SECS: u64 = 300;

/// A TOTP secret (raw bytes). Never printed; stored only sealed
/// (`auth::sealed`).
#[derive(Clone)]
pub struct TotpSecret(Vec<u8>);

impl TotpSecret {
    /// A new random 160-bit secret.
    pub fn generate() -> Self {
        let mut bytes = vec![0u8; SECRET_BYTES];
        rand::rng().fill_bytes(&mut bytes);
        Self(bytes)
    }

    /// A secret read back (opened from its sealed form); `None` if shorter
    /// than 128 bits.
    pub fn from_bytes(bytes: Vec<u8>) -> Option<Self> {
        (bytes.len() >= 16).then_some(Self(bytes))
    }

    /// The bytes to seal.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// RFC 4648 base32 without padding: what a user types into an app.
    pub fn to_base32(&self) -> String {
        Secret::from(self.0.clone()).to_base32()
    }

    fn totp(&self) -> Option<totp_rs::Totp> {
        Builder::new()
            .with_algorithm(Algorithm::SHA1)
            .with_digits(DIGITS as u8)
            .with_skew(SKEW_STEPS)
            .with_step_duration(STEP_SECS)
            .with_secret(self.0.clone())
            .build()
            .ok()
    }
}

impl fmt::Debug for TotpSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TotpSecret([redacted])")
    }
}

/// What stays literal in the label and the query values: RFC 3986's
/// unreserved characters. `:` separates issuer and account, so it is
/// always encoded inside either.
const COMPONENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');
/// The label is a path segment, where `@` may stay literal (as apps and
/// the Key URI examples write e-mail addresses).
const LABEL: &AsciiSet = &COMPONENT.remove(b'@');

/// `otpauth://totp/{issuer}:{email}?secret=…&issuer={issuer}&algorithm=SHA1&digits=6&period=30`
/// (Google's Key URI format, which every authenticator app reads).
pub fn otpauth_uri(issuer: &str, email: &str, secret: &TotpSecret) -> String {
    format!(
        "otpauth://totp/{}:{}?secret={}&issuer={}&algorithm=SHA1&digits={DIGITS}&period={STEP_SECS}",
        utf8_percent_encode(issuer, LABEL),
        utf8_percent_encode(email, LABEL),
        secret.to_base32(),
        utf8_percent_encode(issuer, COMPONENT),
    )
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum QrError {
    #[error("the otpauth URI is too long for a QR code")]
    TooLong,
}

/// The URI as an SVG QR code (a standalone `<svg>` element, no XML
/// declaration, so it can be inlined in HTML as it is).
pub fn qr_svg(uri: &str) -> Result<String, QrError> {
    let code = qrcode::QrCode::new(uri.as_bytes()).map_err(|_| QrError::TooLong)?;
    let svg = code
        .render::<qrcode::render::svg::Color>()
        .min_dimensions(200, 200)
        .build();
    Ok(match svg.find("<svg") {
        Some(start) => svg[start..].to_owned(),
        None => svg,
    })
}

/// A well-formed code: exactly six ASCII digits.
#[derive(Clone, PartialEq, Eq)]
pub struct Code([u8; DIGITS]);

impl Code {
    pub fn as_str(&self) -> &str {
        // Only ASCII digits get in (`parse_code`).
        std::str::from_utf8(&self.0).unwrap_or_default()
    }
}

/// A code is a one-time credential: not printed either.
impl fmt::Debug for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Code([redacted])")
    }
}

/// What a user typed, if it is a code: six ASCII digits once surrounding
/// whitespace is trimmed. Anything else (a recovery code, junk) is `None`.
pub fn parse_code(input: &str) -> Option<Code> {
    let digits: [u8; DIGITS] = input.trim_ascii().as_bytes().try_into().ok()?;
    digits
        .iter()
        .all(u8::is_ascii_digit)
        .then_some(Code(digits))
}

/// The time step (`unix time / 30`) among the previous, current and next
/// one at `now` (unix seconds) whose code is `code`, or `None`. totp-rs
/// compares codes in constant time. The caller then claims the step
/// (`claim_step`) before accepting it.
pub fn matched_step(secret: &TotpSecret, code: &Code, now: u64) -> Option<u64> {
    secret.totp()?.check(code.as_str(), now)
}

/// The code of `secret` at `time` (unix seconds): for tests and tools.
pub fn code_at(secret: &TotpSecret, time: u64) -> Option<String> {
    Some(secret.totp()?.generate(time).to_string())
}

/// Claims `step` for `user_id`: `true` the first time, `false` when the
/// step was already used (on any replica sharing the store).
pub async fn claim_step(store: &dyn TokenStore, user_id: Uuid, step: u64) -> StoreResult<bool> {
    store
        .claim_once(&OnceKey::TotpStep { user_id, step }, REPLAY_TTL_SECS)
        .await
}

#[cfg(test)]
mod tests {
    use rand::{Rng, seq::IndexedRandom};

    use super::*;
    use crate::auth::store::MemoryStore;

    /// RFC 6238 appendix B: the SHA-1 seed is the 20 ASCII bytes
    /// "12345678901234567890".
    fn rfc_secret() -> TotpSecret {
        TotpSecret::from_bytes(b"12345678901234567890".to_vec()).unwrap()
    }

    const RFC_VECTORS: [(u64, &str); 6] = [
        (59, "94287082"),
        (1111111109, "07081804"),
        (1111111111, "14050471"),
        (1234567890, "89005924"),
        (2000000000, "69279037"),
        (20000000000, "65353130"),
    ];

    #[test]
    fn rfc_6238_sha1_vectors() {
        // Eight digits, as in the RFC's table, through totp-rs.
        let eight = Builder::new()
            .with_algorithm(Algorithm::SHA1)
            .with_digits(8)
            .with_step_duration(30)
            .with_secret(b"12345678901234567890".to_vec())
            .build()
            .unwrap();
        let secret = rfc_secret();
        for (t, want) in RFC_VECTORS {
            assert_eq!(eight.generate(t).to_string(), want, "T = {t}");
            // Six digits (ours) are the last six of the eight.
            let six = &want[2..];
            assert_eq!(code_at(&secret, t).as_deref(), Some(six), "T = {t}");
            let code = parse_code(six).unwrap();
            assert_eq!(matched_step(&secret, &code, t), Some(t / 30), "T = {t}");
        }
    }

    #[test]
    fn window_is_one_step_either_side() {
        let secret = TotpSecret::generate();
        let t = 1_700_000_015; // the middle of step 56_666_667
        let step = t / 30;
        let code = parse_code(&code_at(&secret, t).unwrap()).unwrap();
        // Accepted from the start of the previous step to the end of the next.
        for now in [
            t,
            step * 30,
            step * 30 + 29,
            (step - 1) * 30,
            (step + 2) * 30 - 1,
        ] {
            assert_eq!(matched_step(&secret, &code, now), Some(step), "now = {now}");
        }
        // Two steps away either side it is refused.
        for now in [(step - 1) * 30 - 1, (step + 2) * 30, t - 3600, t + 3600] {
            assert_eq!(matched_step(&secret, &code, now), None, "now = {now}");
        }
        // The matched step is the code's own, whichever step `now` is in.
        for offset in [-1i64, 1] {
            let other = (t as i64 + offset * 30) as u64;
            let c = parse_code(&code_at(&secret, other).unwrap()).unwrap();
            assert_eq!(matched_step(&secret, &c, t), Some(other / 30));
        }
        // Another secret's code does not match (codes of distinct random
        // secrets collide with probability ~3e-6 per step; three steps).
        let stranger = TotpSecret::generate();
        let theirs = code_at(&stranger, t).unwrap();
        let ours: Vec<String> = (-1i64..=1)
            .map(|d| code_at(&secret, (t as i64 + d * 30) as u64).unwrap())
            .collect();
        if !ours.contains(&theirs) {
            assert_eq!(
                matched_step(&secret, &parse_code(&theirs).unwrap(), t),
                None
            );
        }
        // A wrong code near the real one is refused.
        let wrong = format!(
            "{:06}",
            (code.as_str().parse::<u32>().unwrap() + 1) % 1_000_000
        );
        if !ours.contains(&wrong) {
            assert_eq!(matched_step(&secret, &parse_code(&wrong).unwrap(), t), None);
        }
    }

    #[test]
    fn secrets_are_160_random_bits_in_base32() {
        let a = TotpSecret::generate();
        let b = TotpSecret::generate();
        assert_eq!(a.as_bytes().len(), 20);
        assert_ne!(a.as_bytes(), b.as_bytes());
        let b32 = a.to_base32();
        assert_eq!(b32.len(), 32, "{b32}");
        assert!(
            b32.bytes().all(|c| matches!(c, b'A'..=b'Z' | b'2'..=b'7')),
            "{b32}"
        );
        // The RFC seed in base32 (the string apps are given).
        assert_eq!(rfc_secret().to_base32(), "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ");
        assert!(TotpSecret::from_bytes(vec![1; 15]).is_none());
        assert!(TotpSecret::from_bytes(vec![1; 16]).is_some());
    }

    #[test]
    fn parser_takes_six_digits_only() {
        for ok in ["123456", " 123456", "123456 ", "\t000000\n", "  999999  "] {
            assert_eq!(
                parse_code(ok).map(|c| c.as_str().to_owned()),
                Some(ok.trim().to_owned()),
                "{ok:?}"
            );
        }
        for bad in [
            "",
            " ",
            "12345",
            "1234567",
            "12345a",
            "123 456",
            "+12345",
            "-12345",
            "12345\u{0}",
            "１２３４５６",
            "١٢٣٤٥٦",
            "12345６",
            "abcdef-ghjkm",
            "0x1234",
            "123456\u{a0}",
        ] {
            assert!(parse_code(bad).is_none(), "{bad:?}");
        }
    }

    /// Property: for any string, `parse_code` never panics, and it accepts
    /// exactly the strings that are six ASCII digits after trimming.
    #[test]
    fn parser_property_on_random_strings() {
        let mut rng = rand::rng();
        let pieces = [
            "0", "1", "5", "9", " ", "\t", "\n", "a", "Z", "-", "+", "é", "٣", "６", "\u{0}",
            "\u{200b}", "💥", "123456", "\u{a0}",
        ];
        for _ in 0..20_000 {
            let len = rng.random_range(0..12);
            let s: String = (0..len)
                .map(|_| {
                    if rng.random_bool(0.2) {
                        char::from_u32(rng.random_range(0..0x11_0000))
                            .unwrap_or('x')
                            .to_string()
                    } else {
                        (*pieces.choose(&mut rng).unwrap()).to_owned()
                    }
                })
                .collect();
            let t = s.trim_ascii();
            let expected = t.len() == 6 && t.bytes().all(|b| b.is_ascii_digit());
            let got = parse_code(&s);
            assert_eq!(got.is_some(), expected, "{s:?}");
            if let Some(c) = got {
                assert_eq!(c.as_str(), t);
            }
        }
    }

    #[test]
    fn otpauth_uri_format() {
        let secret = rfc_secret();
        assert_eq!(
            otpauth_uri("tessera", "alice@example.com", &secret),
            "otpauth://totp/tessera:alice@example.com?secret=GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ&issuer=tessera&algorithm=SHA1&digits=6&period=30"
        );
        // Spaces, colons, ampersands, plus signs and non-ASCII are encoded
        // in both places; '@' stays literal in the label only.
        assert_eq!(
            otpauth_uri("Acme Co: Auth&Co", "b+o:b@exämple.org", &secret),
            "otpauth://totp/Acme%20Co%3A%20Auth%26Co:b%2Bo%3Ab@ex%C3%A4mple.org?secret=GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ&issuer=Acme%20Co%3A%20Auth%26Co&algorithm=SHA1&digits=6&period=30"
        );
        assert_eq!(
            otpauth_uri("a@b?c=d#e/f", "x", &secret),
            "otpauth://totp/a@b%3Fc%3Dd%23e%2Ff:x?secret=GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ&issuer=a%40b%3Fc%3Dd%23e%2Ff&algorithm=SHA1&digits=6&period=30"
        );
    }

    /// Paints the SVG's path (rectangles `M{x} {y}h{w}v{h}H{x}V{y}`, as
    /// `qrcode` draws them) on a bitmap and reads it as a QR code, as a
    /// phone's camera would.
    fn read_svg_qr(svg: &str) -> String {
        let attr = |name: &str| -> usize {
            let at = svg.find(&format!(" {name}=\"")).unwrap() + name.len() + 3;
            svg[at..].split('"').next().unwrap().parse().unwrap()
        };
        let (w, h) = (attr("width"), attr("height"));
        let d = &svg[svg.find(" d=\"").unwrap() + 4..];
        let d = &d[..d.find('"').unwrap()];
        let mut dark = vec![false; w * h];
        for rect in d.split('M').skip(1) {
            let n: Vec<usize> = rect
                .split(|c: char| c.is_ascii_alphabetic() || c == ' ')
                .filter(|s| !s.is_empty())
                .map(|s| s.parse().unwrap())
                .collect();
            let (x, y, rw, rh) = (n[0], n[1], n[2], n[3]);
            for row in y..y + rh {
                dark[row * w + x..row * w + x + rw].fill(true);
            }
        }
        let mut img = rqrr::PreparedImage::prepare_from_greyscale(w, h, |x, y| {
            if dark[y * w + x] { 0 } else { 255 }
        });
        let grids = img.detect_grids();
        assert_eq!(grids.len(), 1, "QR codes found in the SVG");
        grids[0].decode().expect("decode the QR code").1
    }

    #[test]
    fn qr_code_is_an_svg_of_the_uri() {
        let uri = otpauth_uri("Acme Co", "alice@example.com", &TotpSecret::generate());
        let svg = qr_svg(&uri).unwrap();
        assert_eq!(read_svg_qr(&svg), uri);
        assert!(
            svg.starts_with("<svg xmlns=\"http://www.w3.org/2000/svg\""),
            "{svg:.80}"
        );
        assert!(svg.ends_with("</svg>"), "{svg}");
        assert!(svg.contains("<path") && svg.len() > 1000, "{svg}");
        // The secret is in the picture, not in the markup as text.
        assert!(!svg.contains("otpauth"));
        // Different URIs, different pictures.
        let other = qr_svg(&otpauth_uri("tessera", "bob@example.com", &rfc_secret())).unwrap();
        assert_ne!(svg, other);
        // Too long for any QR code: an error, not a panic.
        assert_eq!(qr_svg(&"x".repeat(8000)), Err(QrError::TooLong));
    }

    #[test]
    fn secrets_and_codes_do_not_print() {
        let secret = rfc_secret();
        let code = parse_code("287082").unwrap();
        let printed = format!("{secret:?} {code:?}");
        assert!(!printed.contains("GEZDG") && !printed.contains("1234567890"));
        assert!(!printed.contains("287082"), "{printed}");
    }

    #[tokio::test]
    async fn a_step_is_claimed_once_per_account() {
        let store = MemoryStore::new();
        let (alice, bob) = (Uuid::now_v7(), Uuid::now_v7());
        let step = 56_666_667;
        assert!(claim_step(&store, alice, step).await.unwrap());
        assert!(
            !claim_step(&store, alice, step).await.unwrap(),
            "replayed step accepted"
        );
        assert!(claim_step(&store, alice, step + 1).await.unwrap());
        assert!(claim_step(&store, bob, step).await.unwrap());
    }
}
