//! Mail (API.md "Email"): the durable outbox, written in the transaction of
//! the change that causes a mail (`outbox`); one-time link tokens, stored
//! only as hashes and derived again at send time (`links`); and the sender
//! task every replica runs (`sender`), which renders (`templates`) and
//! delivers (`transport`: SMTP through lettre, or the log). Nothing on a
//! request path talks SMTP.

pub mod links;
pub mod outbox;
pub mod sender;
pub mod templates;
pub mod transport;

use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};

/// `TESSERA_EMAIL_VERIFICATION` (API.md "Email").
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum EmailVerification {
    /// No verification mail; address changes apply at once.
    Off,
    /// Verification mails are sent; unverified accounts can log in.
    Optional,
    /// A login of an unverified account is 403 `EmailNotVerified`.
    Required,
}

pub use links::{LinkKey, Purpose};
pub use outbox::Kind;
pub use sender::{Sender, SenderSettings};

/// A mailbox (`Name <user@host>` or `user@host`), e.g. `TESSERA_MAIL_FROM`.
#[derive(Debug, Clone)]
pub struct Address(pub lettre::message::Mailbox);

impl Address {
    pub fn parse(s: &str) -> Result<Self, String> {
        s.trim()
            .parse::<lettre::message::Mailbox>()
            .map(Address)
            .map_err(|e| format!("{s:?} is not a mailbox such as `Name <user@host>`: {e}"))
    }

    /// The display name, or the address when it has none: how mails name
    /// the service.
    pub fn display_name(&self) -> String {
        self.0
            .name
            .clone()
            .filter(|n| !n.trim().is_empty())
            .unwrap_or_else(|| self.0.email.to_string())
    }
}

/// Where mail goes (`TESSERA_SMTP_URL`).
#[derive(Clone)]
pub enum Delivery {
    /// Written to the server log (unset, or `log`): for trying it out.
    Log,
    /// An SMTP server (`smtp://`, `smtp://...?tls=required`, `smtps://`).
    Smtp(SecretString),
}

impl Delivery {
    /// Whether `url` is a delivery we understand (`log` or an SMTP URL).
    pub fn check_url(url: &str) -> Result<(), String> {
        let url = url.trim();
        if url == "log" {
            return Ok(());
        }
        if !(url.starts_with("smtp://") || url.starts_with("smtps://")) {
            return Err("expected smtp://host:port, smtps://host:port or `log`".into());
        }
        lettre::AsyncSmtpTransport::<lettre::Tokio1Executor>::from_url(url)
            .map(|_| ())
            .map_err(|e| format!("not a usable SMTP URL: {e}"))
    }

    pub fn from_config(url: Option<&SecretString>) -> Self {
        match url.map(|u| u.expose_secret().trim().to_owned()) {
            None => Delivery::Log,
            Some(u) if u == "log" => Delivery::Log,
            Some(u) => Delivery::Smtp(SecretString::from(u)),
        }
    }
}

/// The mail settings of `AppState`, read once from the configuration.
#[derive(Clone)]
pub struct MailSettings {
    pub delivery: Delivery,
    pub from: Address,
    /// How mails name the service (the display name of `from`).
    pub service_name: String,
    /// Links are `{link_base}/reset-password#token=...` and
    /// `{link_base}/verify-email#token=...`, without a trailing slash.
    pub link_base: String,
    pub verification: EmailVerification,
    pub reset_ttl: Duration,
    pub verify_ttl: Duration,
    pub per_address: u32,
    pub per_ip: u32,
    pub link_key: LinkKey,
}

impl MailSettings {
    /// Whether registration and address changes go through mail.
    pub fn verifies(&self) -> bool {
        self.verification != EmailVerification::Off
    }

    pub fn link_url(&self, purpose: Purpose, token: &str) -> String {
        format!("{}/{}#token={token}", self.link_base, purpose.page())
    }
}
