use sea_orm::entity::prelude::*;

/// An account. `username_key` (the lowercased username) and `email_key`
/// (`crate::email_key`) carry the case-insensitive unique indexes.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "users")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub username: String,
    #[sea_orm(unique)]
    pub username_key: String,
    pub email: String,
    #[sea_orm(unique)]
    pub email_key: String,
    pub password_hash: String,
    pub role: String,
    pub blocked: bool,
    /// Replaced by every change that ends the user's sessions (password,
    /// role, block, logout-all); a login compares it after storing its
    /// session.
    pub security_stamp: i64,
    /// The mailbox of `email` was proven (a verification or reset link).
    pub email_verified: bool,
    /// An address change waiting for its confirmation link.
    pub pending_email: Option<String>,
    /// A confirmed TOTP factor guards logins and resets (`totp_factors`).
    pub mfa_enabled: bool,
    pub created_at: ChronoDateTimeUtc,
    pub updated_at: ChronoDateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
