//! The outbox table: a mail is a row, inserted in the transaction of the
//! change that causes it (so a rolled-back change sends nothing and a
//! committed one is never lost), claimed and delivered by `sender`.

use chrono::Utc;
use entity::outbox;
use sea_orm::{ActiveModelTrait, ActiveValue::Set, ConnectionTrait};
use serde_json::Value;
use uuid::Uuid;

use crate::error::ApiError;

/// What a queued row asks the sender to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// "Confirm your address": the verification link of a new account.
    VerifyEmail,
    /// "Confirm your new address", to the new address of a change.
    ConfirmNewEmail,
    /// "Your address is being changed", to the old address.
    EmailChangeNotice,
    /// "Your password was changed".
    PasswordChanged,
    /// A forgot request, not a mail yet: the sender looks the address up
    /// (off the request path) and, for an existing unblocked account,
    /// creates the reset link and sends `PasswordReset`; else nothing.
    PasswordForgot,
    /// "Reset your password": a reset link.
    PasswordReset,
}

impl Kind {
    pub const ALL: [Kind; 6] = [
        Kind::VerifyEmail,
        Kind::ConfirmNewEmail,
        Kind::EmailChangeNotice,
        Kind::PasswordChanged,
        Kind::PasswordForgot,
        Kind::PasswordReset,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::VerifyEmail => "verify_email",
            Kind::ConfirmNewEmail => "confirm_new_email",
            Kind::EmailChangeNotice => "email_change_notice",
            Kind::PasswordChanged => "password_changed",
            Kind::PasswordForgot => "password_forgot",
            Kind::PasswordReset => "password_reset",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

/// A mail to queue.
pub struct NewMail {
    pub kind: Kind,
    pub recipient: String,
    /// The one-time link it carries (`links::create`), if any.
    pub link_id: Option<Uuid>,
    /// The template's other values (e.g. `{"username": ...}`); never a
    /// token or a secret.
    pub data: Value,
}

/// Queues `mail`; run it on the transaction of the change that causes it.
pub async fn enqueue(conn: &impl ConnectionTrait, mail: NewMail) -> Result<Uuid, ApiError> {
    let id = Uuid::now_v7();
    let now = Utc::now();
    outbox::ActiveModel {
        id: Set(id),
        kind: Set(mail.kind.as_str().to_owned()),
        recipient: Set(mail.recipient),
        link_id: Set(mail.link_id),
        data: Set(mail.data.to_string()),
        attempts: Set(0),
        next_attempt_at: Set(now),
        claimed_until: Set(None),
        failed_at: Set(None),
        last_error: Set(None),
        created_at: Set(now),
    }
    .insert(conn)
    .await?;
    crate::metrics::mail_queued();
    Ok(id)
}
