//! One-time links (reset, verification, address change): one mechanism
//! with a purpose. A link's token is an HMAC of its id under a server key,
//! so the outbox stores only the id and the sender derives the token when
//! it sends; the database stores only the token's SHA-256. Consuming is one
//! `DELETE ... RETURNING`: of N concurrent uses exactly one gets the row.

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use chrono::Utc;
use entity::one_time_link;
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter,
};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::{auth::server_key, error::ApiError};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    Reset,
    Verify,
    EmailChange,
}

impl Purpose {
    pub fn as_str(self) -> &'static str {
        match self {
            Purpose::Reset => "reset",
            Purpose::Verify => "verify",
            Purpose::EmailChange => "email_change",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [Purpose::Reset, Purpose::Verify, Purpose::EmailChange]
            .into_iter()
            .find(|p| p.as_str() == s)
    }

    /// The page a link of this purpose opens.
    pub fn page(self) -> &'static str {
        match self {
            Purpose::Reset => "reset-password",
            Purpose::Verify | Purpose::EmailChange => "verify-email",
        }
    }
}

/// The key link tokens are derived with (from `TESSERA_DATA_KEY`, or the
/// signing secret).
#[derive(Clone)]
pub struct LinkKey([u8; 32]);

/// Tokens are 32 bytes of HMAC-SHA256: 43 characters of base64url.
pub const TOKEN_LEN: usize = server_key::TOKEN_LEN;

impl LinkKey {
    pub fn derive(material: &[u8]) -> Self {
        Self(server_key::derive(
            b"tessera one-time link key v1\0",
            material,
        ))
    }

    /// The token of link `id`: what the mail carries.
    pub fn token(&self, id: Uuid) -> String {
        URL_SAFE_NO_PAD.encode(server_key::mac(&self.0, &[id.as_bytes()]))
    }
}

impl std::fmt::Debug for LinkKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LinkKey([redacted])")
    }
}

/// The stored form of a token: SHA-256, hex. A token is 256 random-looking
/// bits, so a fast hash is enough (nothing to brute-force).
pub fn hash(token: &str) -> String {
    server_key::hex(&Sha256::digest(token.as_bytes()))
}

/// Whether `token` has the shape of one of ours (`server_key::is_token`);
/// anything else is `LinkInvalid` without a database lookup.
pub fn well_formed(token: &str) -> bool {
    server_key::is_token(token)
}

/// Creates a link for `user_id`, superseding (deleting) that user's older
/// links of the same purpose; returns its id (the mail derives the token).
/// Run it in the transaction that queues the mail.
pub async fn create(
    conn: &impl ConnectionTrait,
    key: &LinkKey,
    user_id: Uuid,
    purpose: Purpose,
    new_email: Option<String>,
    ttl: std::time::Duration,
) -> Result<Uuid, ApiError> {
    one_time_link::Entity::delete_many()
        .filter(one_time_link::Column::UserId.eq(user_id))
        .filter(one_time_link::Column::Purpose.eq(purpose.as_str()))
        .exec(conn)
        .await?;
    let id = Uuid::new_v4();
    let now = Utc::now();
    let ttl = chrono::Duration::from_std(ttl).unwrap_or(chrono::Duration::days(365));
    one_time_link::ActiveModel {
        id: Set(id),
        user_id: Set(user_id),
        purpose: Set(purpose.as_str().to_owned()),
        token_hash: Set(hash(&key.token(id))),
        new_email: Set(new_email),
        expires_at: Set(now + ttl),
        created_at: Set(now),
    }
    .insert(conn)
    .await?;
    Ok(id)
}

/// The condition naming the link of `token` among `purposes` (expiry is
/// checked on the row); `None` for a malformed token: no lookup at all.
fn live(token: &str, purposes: &[Purpose]) -> Option<sea_orm::Condition> {
    if !well_formed(token) {
        return None;
    }
    Some(
        sea_orm::Condition::all()
            .add(one_time_link::Column::TokenHash.eq(hash(token)))
            .add(one_time_link::Column::Purpose.is_in(purposes.iter().map(|p| p.as_str()))),
    )
}

/// The user whose live link of one of `purposes` `token` is, without
/// spending it (a look before costly work, e.g. hashing a new password).
pub async fn owner(
    conn: &impl ConnectionTrait,
    token: &str,
    purposes: &[Purpose],
) -> Result<Option<Uuid>, ApiError> {
    let Some(cond) = live(token, purposes) else {
        return Ok(None);
    };
    let found = one_time_link::Entity::find().filter(cond).one(conn).await?;
    Ok(found
        .filter(|l| l.expires_at > Utc::now())
        .map(|l| l.user_id))
}

/// Spends the link of `token` if it is one of `purposes` and unexpired:
/// deleted and returned in one statement, so two concurrent uses cannot
/// both get it. Run it in the transaction of the change it authorises (a
/// rollback gives the link back). `LinkInvalid` otherwise.
pub async fn consume(
    conn: &impl ConnectionTrait,
    token: &str,
    purposes: &[Purpose],
) -> Result<one_time_link::Model, ApiError> {
    let cond = live(token, purposes).ok_or(ApiError::LinkInvalid)?;
    let spent = one_time_link::Entity::delete_many()
        .filter(cond)
        .exec_with_returning(conn)
        .await?;
    spent
        .into_iter()
        .find(|l| l.expires_at > Utc::now())
        .ok_or(ApiError::LinkInvalid)
}

/// Whether link `id` still exists (a mail for a superseded or spent link
/// need not go out).
pub async fn exists(conn: &impl ConnectionTrait, id: Uuid) -> Result<bool, ApiError> {
    Ok(one_time_link::Entity::find_by_id(id)
        .one(conn)
        .await?
        .is_some())
}

/// Deletes every link of the user (a password, email, role or block change).
pub async fn forget_all(conn: &impl ConnectionTrait, user_id: Uuid) -> Result<(), ApiError> {
    one_time_link::Entity::delete_many()
        .filter(one_time_link::Column::UserId.eq(user_id))
        .exec(conn)
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_well_formed_distinct_and_keyed() {
        let a = LinkKey::derive(b"secret a");
        let b = LinkKey::derive(b"secret b");
        let id = Uuid::new_v4();
        let t = a.token(id);
        assert!(well_formed(&t), "{t}");
        assert_eq!(t, a.token(id), "derivable again at send time");
        assert_ne!(t, a.token(Uuid::new_v4()));
        assert_ne!(t, b.token(id));
        assert_eq!(hash(&t).len(), 64);
        assert_ne!(hash(&t), t);
    }

    #[test]
    fn malformed_tokens_are_refused_before_any_lookup() {
        let good = LinkKey::derive(b"k").token(Uuid::new_v4());
        for bad in [
            "",
            "short",
            &good[..42],
            &format!("{good}A"),
            &good.replace(|c: char| c.is_ascii_alphabetic(), "+"),
            &format!("{}=", &good[..42]),
            "ééééééééééééééééééééééééééééééééééééééééééé",
        ] {
            assert!(!well_formed(bad), "{bad:?}");
        }
    }
}
