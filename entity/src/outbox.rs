use sea_orm::entity::prelude::*;

/// A queued mail. Written in the transaction of the change that causes it;
/// deleted once delivered. It never holds a working token: a link's token
/// is derived at send time from a server key and `link_id`.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "outbox")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    /// What to send (`mail::Kind`).
    pub kind: String,
    pub recipient: String,
    /// The one-time link the mail carries, if any.
    pub link_id: Option<Uuid>,
    /// The template's other values, as JSON.
    #[sea_orm(column_type = "Text")]
    pub data: String,
    pub attempts: i32,
    pub next_attempt_at: ChronoDateTimeUtc,
    /// A sender's claim; expired claims (a crashed sender) are taken again.
    pub claimed_until: Option<ChronoDateTimeUtc>,
    /// Set when delivery was given up (a permanent refusal); the body is
    /// then emptied.
    pub failed_at: Option<ChronoDateTimeUtc>,
    #[sea_orm(column_type = "Text", nullable)]
    pub last_error: Option<String>,
    pub created_at: ChronoDateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
