//! Recovery codes: 10 single-use codes shown once at enrolment, for a user
//! who lost the authenticator. Each is 12 characters from a 31-character
//! alphabet without look-alikes (no 0/O, 1/l/I), shown as `xxxx-xxxx-xxxx`.
//!
//! Stored as HMAC-SHA256 under the data key (`DataKey`), bound to the user:
//! a code has 12 * log2(31) ~ 59 random bits, so there is nothing to slow
//! down with a password hash, and without the data key a leaked table
//! cannot even be tested against guesses. A keyed hash also keeps a check
//! cheap: argon2 over 10 salted hashes per attempt would be an easy way to
//! burn the server's CPU. The lookup hashes what was typed once and
//! compares it with every stored hash in constant time.

use std::fmt;

use rand::seq::IndexedRandom;
use subtle::ConstantTimeEq;
use uuid::Uuid;

use crate::auth::{sealed::DataKey, server_key};

pub const COUNT: usize = 10;
/// Characters in a code, without the hyphens.
pub const LEN: usize = 12;
const GROUP: usize = 4;
/// Digits 2-9 and the lowercase letters without i, l and o.
const ALPHABET: &[u8; 31] = b"23456789abcdefghjkmnpqrstuvwxyz";

/// A new set: the codes to show once, and the hashes to store (same order).
pub struct Generated {
    pub codes: Vec<String>,
    pub hashes: Vec<String>,
}

impl fmt::Debug for Generated {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Generated({} codes, [redacted])", self.codes.len())
    }
}

/// Ten new codes for `user_id`.
pub fn generate(key: &DataKey, user_id: Uuid) -> Generated {
    let mut rng = rand::rng();
    let codes: Vec<String> = (0..COUNT)
        .map(|_| {
            let raw: Vec<u8> = (0..LEN)
                .map(|_| *ALPHABET.choose(&mut rng).unwrap_or(&b'2'))
                .collect();
            raw.chunks(GROUP)
                .map(|g| String::from_utf8_lossy(g).into_owned())
                .collect::<Vec<_>>()
                .join("-")
        })
        .collect();
    let hashes = codes
        .iter()
        .map(|c| {
            let n = normalise(c).unwrap_or_default();
            hash(key, user_id, &n)
        })
        .collect();
    Generated { codes, hashes }
}

/// What a user typed, as a code's canonical form (lowercase, no spaces or
/// hyphens), or `None` if it cannot be one of ours.
pub fn normalise(typed: &str) -> Option<String> {
    let mut out = String::with_capacity(LEN);
    for c in typed.chars() {
        match c {
            ' ' | '\t' | '-' => {}
            c if c.is_ascii() && ALPHABET.contains(&(c.to_ascii_lowercase() as u8)) => {
                if out.len() == LEN {
                    return None;
                }
                out.push(c.to_ascii_lowercase());
            }
            _ => return None,
        }
    }
    (out.len() == LEN).then_some(out)
}

fn mac(key: &DataKey, user_id: Uuid, normalised: &str) -> [u8; 32] {
    server_key::mac(
        key.recovery_code_key(),
        &[user_id.as_bytes(), normalised.as_bytes()],
    )
}

/// The stored form of a (normalised) code: HMAC-SHA256, hex.
pub fn hash(key: &DataKey, user_id: Uuid, normalised: &str) -> String {
    server_key::hex(&mac(key, user_id, normalised))
}

/// The index of the stored hash that `typed` matches, if any. Every stored
/// hash is compared, in constant time, whatever matches.
pub fn find(
    key: &DataKey,
    user_id: Uuid,
    hashes: &[impl AsRef<str>],
    typed: &str,
) -> Option<usize> {
    let candidate = hash(key, user_id, &normalise(typed)?);
    let mut found = None;
    for (i, stored) in hashes.iter().enumerate() {
        if bool::from(stored.as_ref().as_bytes().ct_eq(candidate.as_bytes())) {
            found = Some(i);
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    fn key() -> DataKey {
        DataKey::derive(b"data key for recovery code tests")
    }

    #[test]
    fn ten_distinct_readable_codes() {
        let user = Uuid::now_v7();
        let set = generate(&key(), user);
        assert_eq!(set.codes.len(), 10);
        assert_eq!(set.hashes.len(), 10);
        let distinct: HashSet<&String> = set.codes.iter().collect();
        assert_eq!(distinct.len(), 10, "{:?}", set.codes);
        for code in &set.codes {
            assert_eq!(code.len(), 14, "{code}");
            let groups: Vec<&str> = code.split('-').collect();
            assert_eq!(groups.len(), 3, "{code}");
            assert!(groups.iter().all(|g| g.len() == 4), "{code}");
            for c in code.chars().filter(|c| *c != '-') {
                assert!(!"0o1liIO".contains(c), "ambiguous {c} in {code}");
                assert!(c.is_ascii_digit() || c.is_ascii_lowercase(), "{code}");
            }
        }
        // A second set shares nothing with the first.
        let again = generate(&key(), user);
        assert!(again.codes.iter().all(|c| !set.codes.contains(c)));
        // Over many codes every character of the alphabet shows up.
        let seen: HashSet<char> = (0..20)
            .flat_map(|_| generate(&key(), user).codes)
            .flat_map(|c| c.chars().collect::<Vec<_>>())
            .filter(|c| *c != '-')
            .collect();
        assert_eq!(seen.len(), 31, "{seen:?}");
    }

    #[test]
    fn stored_hashes_are_keyed_and_bound_to_the_user() {
        let user = Uuid::now_v7();
        let set = generate(&key(), user);
        for (code, h) in set.codes.iter().zip(&set.hashes) {
            assert_eq!(h.len(), 64);
            assert!(!h.contains(&code.replace('-', "")));
        }
        let n = normalise(&set.codes[0]).unwrap();
        assert_eq!(hash(&key(), user, &n), set.hashes[0]);
        assert_ne!(hash(&DataKey::derive(b"other"), user, &n), set.hashes[0]);
        assert_ne!(hash(&key(), Uuid::now_v7(), &n), set.hashes[0]);
    }

    #[test]
    fn normalisation_forgives_case_spaces_and_hyphens() {
        assert_eq!(normalise("abcd-efgh-jk23").as_deref(), Some("abcdefghjk23"));
        for typed in [
            "ABCD-EFGH-JK23",
            "abcdefghjk23",
            " abcd efgh jk23 ",
            "AbCd--eFgH\tjK23",
            "a-b-c-d-e-f-g-h-j-k-2-3",
        ] {
            assert_eq!(
                normalise(typed).as_deref(),
                Some("abcdefghjk23"),
                "{typed:?}"
            );
        }
        for bad in [
            "",
            "abcd-efgh-jk2",
            "abcd-efgh-jk234",
            "abcd-efgh-jk2o",
            "abcd-efgh-jk21",
            "abcd-efgh-jk2l",
            "abcd-efgh-jk2i",
            "abcd-efgh-jk20",
            "abcd_efgh_jk23",
            "abcd-efgh-jk2é",
            "ａbcd-efgh-jk23",
            "123456",
            &"a".repeat(10_000),
        ] {
            assert_eq!(normalise(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn find_returns_the_matching_index() {
        let key = key();
        let user = Uuid::now_v7();
        let set = generate(&key, user);
        for (i, code) in set.codes.iter().enumerate() {
            assert_eq!(find(&key, user, &set.hashes, code), Some(i));
            let sloppy = format!(" {} ", code.to_uppercase().replace('-', " "));
            assert_eq!(find(&key, user, &set.hashes, &sloppy), Some(i));
        }
        // Another set's code, another user, another key, junk: nothing.
        let other = generate(&key, user);
        assert_eq!(find(&key, user, &set.hashes, &other.codes[0]), None);
        assert_eq!(find(&key, Uuid::now_v7(), &set.hashes, &set.codes[0]), None);
        assert_eq!(
            find(&DataKey::derive(b"x"), user, &set.hashes, &set.codes[0]),
            None
        );
        assert_eq!(find(&key, user, &set.hashes, "123456"), None);
        assert_eq!(find(&key, user, &set.hashes, ""), None);
        // A used code, removed from the stored list, is found no more.
        let mut left = set.hashes.clone();
        left.remove(3);
        assert_eq!(find(&key, user, &left, &set.codes[3]), None);
        assert_eq!(find(&key, user, &left, &set.codes[4]), Some(3));
        assert_eq!(find(&key, user, &[] as &[&str], &set.codes[0]), None);
    }

    #[test]
    fn debug_prints_no_code() {
        let set = generate(&key(), Uuid::now_v7());
        let printed = format!("{set:?}");
        assert!(set.codes.iter().all(|c| !printed.contains(c.as_str())));
        assert!(set.hashes.iter().all(|h| !printed.contains(h.as_str())));
    }
}
