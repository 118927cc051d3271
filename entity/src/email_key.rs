//! The comparison key of an email address (API.md "Precise rules"): the
//! form that carries the unique index and that logins look up. Shared by the
//! service and the migration that recomputes the keys of existing rows, so
//! both compute exactly the same thing.
//!
//! Local part: NFC, full Unicode case folding, NFC again (folding can
//! produce sequences that are not composed). Domain: its ASCII (IDNA) form,
//! which is lowercase, so `bücher.example`, `BÜCHER.example` and
//! `xn--bcher-kva.example` are one domain.

use unicode_normalization::UnicodeNormalization;

/// The NFC form of `s`: what the service stores as the email.
pub fn nfc(s: &str) -> String {
    s.nfc().collect()
}

/// The key of `email`, or `None` when its domain has no ASCII (IDNA) form
/// or there is no `@`. Validation (the service's) runs first; this only
/// derives the key.
pub fn email_key(email: &str) -> Option<String> {
    let email = nfc(email);
    let (local, domain) = email.rsplit_once('@')?;
    let local: String = caseless::default_case_fold_str(local).nfc().collect();
    let domain = idna::domain_to_ascii(domain).ok()?;
    if domain.is_empty() {
        return None;
    }
    Some(format!("{local}@{domain}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_key_per_address() {
        let nfc_form = "jos\u{e9}@example.com";
        let nfd_form = "jose\u{301}@example.com";
        assert_ne!(nfc_form, nfd_form);
        assert_eq!(email_key(nfc_form), email_key(nfd_form));
        assert_eq!(email_key("JOSÉ@Example.COM"), email_key(nfc_form));
        assert_eq!(
            email_key("ann@bücher.example"),
            email_key("ann@xn--bcher-kva.example")
        );
        assert_eq!(
            email_key("ann@BU\u{308}CHER.example").as_deref(),
            Some("ann@xn--bcher-kva.example")
        );
        // Full folding, not just lowercasing: ß and ss are one.
        assert_eq!(email_key("STRAßE@x.org"), email_key("strasse@x.org"));
        assert_eq!(
            email_key("Ann@Example.com").as_deref(),
            Some("ann@example.com")
        );
    }

    #[test]
    fn no_key_without_a_valid_domain() {
        assert_eq!(email_key("ann"), None);
        assert_eq!(email_key("ann@"), None);
        // Not valid Punycode.
        assert_eq!(email_key("ann@xn--a-ecp.xn--999999999999.example"), None);
    }
}
