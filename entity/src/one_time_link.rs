use sea_orm::entity::prelude::*;

/// A one-time link of a mail (reset, verification, address change). Only
/// the SHA-256 of its token is stored (`token_hash`, hex): a copy of the
/// database opens nothing.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "one_time_links")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub user_id: Uuid,
    /// `reset`, `verify` or `email_change`.
    pub purpose: String,
    #[sea_orm(unique)]
    pub token_hash: String,
    /// The address an `email_change` link confirms.
    pub new_email: Option<String>,
    pub expires_at: ChronoDateTimeUtc,
    pub created_at: ChronoDateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
