//! Value rules of API.md ("Validation"). Lengths count Unicode scalar values.

use std::{collections::BTreeMap, ops::RangeInclusive};

use crate::error::ApiError;

/// Collects per-field problems into one 422 `ValidationFailed`.
#[derive(Default)]
pub struct Problems(BTreeMap<String, String>);

impl Problems {
    pub fn check(&mut self, field: &str, result: Result<(), &'static str>) {
        if let Err(problem) = result {
            self.0.insert(field.to_owned(), problem.to_owned());
        }
    }

    pub fn into_result(self) -> Result<(), ApiError> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(ApiError::ValidationFailed(self.0))
        }
    }
}

// The limits, shared with the OpenAPI schema (src/api/text.rs), which
// documents them for clients.
pub const USERNAME_LEN: RangeInclusive<usize> = 3..=32;
pub const EMAIL_MAX: usize = 254;
pub const EMAIL_LOCAL_MAX: usize = 64;
pub const PASSWORD_LEN: RangeInclusive<usize> = 8..=128;
pub const NAME_LEN: RangeInclusive<usize> = 1..=100;
pub const DESCRIPTION_MAX: usize = 2000;
/// The largest integer every JSON client reads exactly (2^53 - 1;
/// JavaScript numbers are doubles): the bound of quantities and pages.
pub const MAX_JSON_INTEGER: i64 = (1 << 53) - 1;

pub fn username(s: &str) -> Result<(), &'static str> {
    let n = s.chars().count();
    if !USERNAME_LEN.contains(&n) {
        return Err("must be 3 to 32 characters");
    }
    if !s
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
    {
        return Err("may contain only letters, digits, '_', '.' and '-'");
    }
    Ok(())
}

/// Cc, Cf (zero-width, bidirectional controls) and whitespace (U+0085,
/// U+00A0, U+2028 too): invisible or look-alike, never part of an address.
fn invisible(c: char) -> bool {
    use unicode_properties::{GeneralCategory, UnicodeGeneralCategory};
    c.is_control() || c.is_whitespace() || c.general_category() == GeneralCategory::Format
}

/// The form an email is stored and shown in: NFC, canonically the same text
/// as sent (so one address has one spelling in the database).
pub fn email_as_stored(s: &str) -> String {
    entity::email_key::nfc(s)
}

/// The one email parser. The address is judged in NFC (the form stored);
/// its domain must have an ASCII (IDNA) form, which the key uses.
pub fn email(s: &str) -> Result<(), &'static str> {
    const INVALID: &str = "not a valid email address";
    if s.chars().any(invisible) {
        return Err("must not contain control, format or whitespace characters");
    }
    let s = &email_as_stored(s);
    if s.chars().count() > EMAIL_MAX {
        return Err("must be at most 254 characters");
    }
    let Some((local, domain)) = s.rsplit_once('@') else {
        return Err(INVALID);
    };
    if local.is_empty() || local.chars().count() > EMAIL_LOCAL_MAX {
        return Err(INVALID);
    }
    let local_ok = local
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "!#$%&'*+/=?^_`{|}~.-".contains(c) || !c.is_ascii())
        && !local.starts_with('.')
        && !local.ends_with('.')
        && !local.contains("..");
    let labels: Vec<&str> = domain.split('.').collect();
    let domain_ok = labels.len() >= 2
        && labels.iter().all(|l| {
            !l.is_empty()
                && l.chars().count() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.chars().all(|c| c.is_alphanumeric() || c == '-')
        });
    if !(local_ok && domain_ok) {
        return Err(INVALID);
    }
    if entity::email_key::email_key(s).is_none() {
        return Err("the domain is not a valid internationalized domain name");
    }
    Ok(())
}

pub fn password(s: &str) -> Result<(), &'static str> {
    let n = s.chars().count();
    if !PASSWORD_LEN.contains(&n) {
        return Err("must be 8 to 128 characters");
    }
    Ok(())
}

/// `name` and `position`: 1..=100 characters, no control characters
/// (Unicode Cc, which includes U+0000 that PostgreSQL text cannot store).
pub fn name(s: &str) -> Result<(), &'static str> {
    let n = s.chars().count();
    if !NAME_LEN.contains(&n) {
        return Err("must be 1 to 100 characters");
    }
    if s.chars().any(char::is_control) {
        return Err("must not contain control characters");
    }
    Ok(())
}

pub fn quantity(q: i64) -> Result<(), &'static str> {
    if q < 0 {
        return Err("must be >= 0");
    }
    if q > MAX_JSON_INTEGER {
        return Err("must be at most 9007199254740991");
    }
    Ok(())
}

/// A product description: at most 2000 characters, no U+0000 (newlines and
/// tabs are fine).
pub fn description(s: &str) -> Result<(), &'static str> {
    if s.chars().count() > DESCRIPTION_MAX {
        return Err("must be at most 2000 characters");
    }
    if s.contains('\0') {
        return Err("must not contain U+0000");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usernames() {
        assert!(username("ann").is_ok());
        assert!(username("a.b-c_d9").is_ok());
        assert!(username("ab").is_err());
        assert!(username(&"a".repeat(33)).is_err());
        assert!(username("ann smith").is_err());
        assert!(username("annü").is_err());
    }

    #[test]
    fn emails() {
        assert!(email("ann@example.com").is_ok());
        assert!(email("a.b+tag@sub.example.org").is_ok());
        for bad in [
            "",
            "ann",
            "ann@",
            "@example.com",
            "ann@example",
            "a b@example.com",
            "ann@@example.com",
            "ann@exa mple.com",
            ".ann@example.com",
        ] {
            assert!(email(bad).is_err(), "{bad}");
        }
        assert!(email(&format!("{}@example.com", "a".repeat(65))).is_err());
        assert!(email(&format!("{}@example.com", "a".repeat(64))).is_ok());
        assert!(email(&format!("a@{}.com", "b".repeat(250))).is_err());
    }

    #[test]
    fn emails_refuse_invisible_characters() {
        for bad in [
            "admin\u{200b}@example.com",
            "admin\u{202e}@example.com",
            "admin\u{85}@example.com",
            "admin\u{a0}@example.com",
            "admin\u{2028}@example.com",
            "admin\u{feff}@example.com",
            "admin\u{7}@example.com",
            "admin@exa\u{200d}mple.com",
        ] {
            let problem = email(bad).unwrap_err();
            assert!(problem.contains("format"), "{bad:?}: {problem}");
        }
        // Unicode addresses stay valid, in either normal form.
        assert!(email("jos\u{e9}@example.com").is_ok());
        assert!(email("jose\u{301}@example.com").is_ok());
        assert!(email("ann@bu\u{308}cher.example").is_ok());
        assert!(email("ann@xn--bcher-kva.example").is_ok());
        // Not Punycode at all.
        assert!(email("ann@xn--a-ecp.xn--999999999999.example").is_err());
    }

    #[test]
    fn names_refuse_control_characters() {
        assert!(name("Ann Smith-Jones").is_ok());
        assert!(name(&"ü".repeat(100)).is_ok());
        for bad in ["a\u{0}b", "tab\there", "new\nline", "\u{7f}", "\u{85}"] {
            assert!(name(bad).is_err(), "{bad:?}");
        }
        assert!(description("two\nlines\tand a tab").is_ok());
        assert!(description("nul\u{0}").is_err());
        assert!(description(&"x".repeat(2001)).is_err());
    }

    #[test]
    fn quantities_up_to_the_json_integer_limit() {
        assert!(quantity(0).is_ok() && quantity(MAX_JSON_INTEGER).is_ok());
        assert!(quantity(-1).is_err());
        let over = quantity(MAX_JSON_INTEGER + 1).unwrap_err();
        assert!(over.ends_with(&MAX_JSON_INTEGER.to_string()), "{over}");
    }

    #[test]
    fn passwords_count_scalar_values() {
        assert!(password(&"ü".repeat(100)).is_ok());
        assert!(password(&"ü".repeat(7)).is_err());
        assert!(password(&"x".repeat(129)).is_err());
        assert!(password(&"x".repeat(128)).is_ok());
    }
}
