use sea_orm::entity::prelude::*;

/// A user's TOTP factor. `secret` is sealed (`auth::sealed`, AEAD under the
/// data key, bound to the user id); `confirmed` once a first code proved
/// the user's app has it. At most one per user.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "totp_factors")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub user_id: Uuid,
    pub secret: String,
    pub confirmed: bool,
    pub created_at: ChronoDateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
