//! The mails' words: one template set per `Kind` in `templates/mail/`
//! (`<kind>.subject.txt`, `<kind>.txt`, `<kind>.html`), compiled into the
//! binary and rendered with minijinja. `.html` templates are HTML-escaped
//! automatically (a username is user input); text parts are not.

use std::{sync::OnceLock, time::Duration};

use minijinja::{Environment, context};
use serde_json::Value;

use super::{Kind, MailSettings};

/// A rendered mail, ready for a `Transport`.
#[derive(Debug, Clone)]
pub struct Rendered {
    pub subject: String,
    pub text: String,
    pub html: String,
}

macro_rules! template_files {
    ($($name:literal),* $(,)?) => {
        &[$(($name, include_str!(concat!("../../templates/mail/", $name)))),*]
    };
}

const FILES: &[(&str, &str)] = template_files!(
    "_layout.html",
    "_button.html",
    "verify_email.subject.txt",
    "verify_email.txt",
    "verify_email.html",
    "confirm_new_email.subject.txt",
    "confirm_new_email.txt",
    "confirm_new_email.html",
    "email_change_notice.subject.txt",
    "email_change_notice.txt",
    "email_change_notice.html",
    "password_changed.subject.txt",
    "password_changed.txt",
    "password_changed.html",
    "password_reset.subject.txt",
    "password_reset.txt",
    "password_reset.html",
);

fn env() -> &'static Environment<'static> {
    static ENV: OnceLock<Environment<'static>> = OnceLock::new();
    ENV.get_or_init(|| {
        let mut env = Environment::new();
        for (name, source) in FILES {
            // The files are compiled in and checked by the unit tests; a
            // broken one fails its render (a permanent failure), not startup.
            if let Err(e) = env.add_template(name, source) {
                tracing::error!(template = name, error = %e, "mail template does not compile");
            }
        }
        env
    })
}

/// The link a mail of `kind` carries, and how long it lives.
pub fn link_ttl(kind: Kind, settings: &MailSettings) -> Option<Duration> {
    match kind {
        Kind::VerifyEmail | Kind::ConfirmNewEmail => Some(settings.verify_ttl),
        Kind::PasswordReset => Some(settings.reset_ttl),
        Kind::EmailChangeNotice | Kind::PasswordChanged | Kind::PasswordForgot => None,
    }
}

/// Renders the mail of `kind` from the row's `data` (`{"username": ...,
/// "new_email": ...}`; a missing key renders empty) and, for link kinds,
/// the link's URL. `PasswordForgot` is never a mail itself: an error.
pub fn render(
    kind: Kind,
    data: &Value,
    settings: &MailSettings,
    action_url: Option<&str>,
) -> Result<Rendered, String> {
    if kind == Kind::PasswordForgot {
        return Err("password_forgot is resolved before sending, never rendered".into());
    }
    let field = |k: &str| data.get(k).and_then(Value::as_str).unwrap_or("").to_owned();
    let new_email = field("new_email");
    // The notice goes to the old address, which may not be the owner's any
    // more: it names the new address only in part.
    let new_email = if kind == Kind::EmailChangeNotice {
        mask_email(&new_email)
    } else {
        new_email
    };
    let expires_in = link_ttl(kind, settings)
        .map(human_duration)
        .unwrap_or_default();
    let action_url = action_url.unwrap_or("");
    let render = |suffix: &str| -> Result<String, String> {
        // minijinja's HTML escaping also turns `/` into `&#x2f;`: correct,
        // but it would make every link in the HTML part unreadable. The URL
        // is ours (base URL and base64url token), escaped here for an
        // attribute instead.
        let action_url = if suffix == "html" {
            minijinja::Value::from_safe_string(escape_attribute(action_url))
        } else {
            minijinja::Value::from(action_url)
        };
        let ctx = context! {
            service => &settings.service_name,
            username => field("username"),
            new_email => &new_email,
            action_url => action_url,
            expires_in => &expires_in,
        };
        let name = format!("{}.{suffix}", kind.as_str());
        env()
            .get_template(&name)
            .and_then(|t| t.render(&ctx))
            .map_err(|e| format!("template {name}: {e}"))
    };
    Ok(Rendered {
        // One line: a header.
        subject: render("subject.txt")?
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" "),
        text: render("txt")?,
        html: render("html")?,
    })
}

/// Escapes what could end an HTML attribute or start markup.
fn escape_attribute(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// `nina@example.com` -> `n***@example.com`.
pub fn mask_email(email: &str) -> String {
    match email.rsplit_once('@') {
        Some((local, domain)) => {
            let first: String = local.chars().take(1).collect();
            format!("{first}***@{domain}")
        }
        None if email.is_empty() => String::new(),
        None => "***".into(),
    }
}

/// `1 hour`, `24 hours`, `30 minutes`, `7 days`: how long a link lives, in
/// the largest unit that divides it.
pub fn human_duration(d: Duration) -> String {
    let secs = d.as_secs();
    let (n, unit) = if secs >= 2 * 86_400 && secs.is_multiple_of(86_400) {
        (secs / 86_400, "day")
    } else if secs >= 3600 && secs.is_multiple_of(3600) {
        (secs / 3600, "hour")
    } else if secs >= 60 && secs.is_multiple_of(60) {
        (secs / 60, "minute")
    } else {
        (secs, "second")
    };
    if n == 1 {
        format!("1 {unit}")
    } else {
        format!("{n} {unit}s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use serde_json::json;

    fn settings() -> MailSettings {
        let mut c = Config::defaults();
        c.mail_from = "Acme Shop <no-reply@acme.test>".into();
        c.mail_settings(b"secret").expect("mail settings")
    }

    const URL: &str = "http://127.0.0.1:8080/account/reset-password#token=abc_DEF-123";

    #[test]
    fn every_mail_kind_renders_both_parts_with_the_service_name() {
        let s = settings();
        for kind in Kind::ALL {
            if kind == Kind::PasswordForgot {
                assert!(render(kind, &json!({}), &s, None).is_err());
                continue;
            }
            let url = link_ttl(kind, &s).map(|_| URL);
            let r = render(
                kind,
                &json!({"username": "ann", "new_email": "nina@example.com"}),
                &s,
                url,
            )
            .unwrap_or_else(|e| panic!("{kind:?}: {e}"));
            assert!(r.subject.contains("Acme Shop"), "{kind:?}: {}", r.subject);
            assert!(!r.subject.contains('\n'));
            for part in [&r.text, &r.html] {
                assert!(part.contains("Acme Shop"), "{kind:?}: {part}");
                assert!(part.contains("ann"), "{kind:?}: {part}");
                // What to do if it was not you.
                assert!(
                    part.contains("not you") || part.contains("did not"),
                    "{kind:?}: {part}"
                );
            }
            assert!(r.html.starts_with("<!doctype html>"), "{kind:?}");
            match url {
                Some(url) => {
                    assert!(r.text.contains(url), "{kind:?}: {}", r.text);
                    assert!(r.html.contains(&format!("href=\"{url}\"")), "{kind:?}");
                    let ttl = if kind == Kind::PasswordReset {
                        "1 hour"
                    } else {
                        "24 hours"
                    };
                    assert!(r.text.contains(ttl) && r.html.contains(ttl), "{kind:?}");
                }
                None => assert!(!r.text.contains("http"), "{kind:?}: {}", r.text),
            }
        }
    }

    #[test]
    fn html_escapes_user_values_and_text_keeps_them() {
        let r = render(
            Kind::PasswordChanged,
            &json!({"username": "<b>x</b>"}),
            &settings(),
            None,
        )
        .expect("render");
        assert!(r.html.contains("&lt;b&gt;x&lt;&#x2f;b&gt;"), "{}", r.html);
        assert!(!r.html.contains("<b>x</b>"));
        assert!(r.text.contains("Hello <b>x</b>,"), "{}", r.text);
    }

    #[test]
    fn the_change_notice_masks_the_new_address_and_the_confirmation_does_not() {
        let s = settings();
        let data = json!({"username": "ann", "new_email": "nina@example.com"});
        let notice = render(Kind::EmailChangeNotice, &data, &s, None).expect("notice");
        assert!(notice.text.contains("n***@example.com"), "{}", notice.text);
        assert!(!notice.text.contains("nina@") && !notice.html.contains("nina@"));
        let confirm = render(Kind::ConfirmNewEmail, &data, &s, Some(URL)).expect("confirm");
        assert!(confirm.text.contains("nina@example.com"));
    }

    #[test]
    fn missing_values_render_empty() {
        let r = render(Kind::PasswordChanged, &json!({}), &settings(), None).expect("render");
        assert!(r.text.starts_with("Hello,\n"), "{}", r.text);
    }

    #[test]
    fn durations_read_like_a_person_wrote_them() {
        assert_eq!(human_duration(Duration::from_secs(3600)), "1 hour");
        assert_eq!(human_duration(Duration::from_secs(86_400)), "24 hours");
        assert_eq!(human_duration(Duration::from_secs(7 * 86_400)), "7 days");
        assert_eq!(human_duration(Duration::from_secs(1800)), "30 minutes");
        assert_eq!(human_duration(Duration::from_secs(90)), "90 seconds");
        assert_eq!(mask_email("nina@example.com"), "n***@example.com");
        assert_eq!(mask_email(""), "");
    }
}
