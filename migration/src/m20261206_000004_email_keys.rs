//! Email keys in the form API.md now compares (NFC, case folding, ASCII
//! domains: `entity::email_key`), recomputed for the rows written under the
//! old key (`to_lowercase`).
//!
//! Two existing rows can share a new key (`josé` in NFC and NFD, or
//! `bücher.example` and `xn--bcher-kva.example`). The older account (by
//! `created_at`, then id) gets the key; each younger one gets a placeholder
//! that no address produces (`conflict:{id}`), so it can no longer log in by
//! email, only by username, until it changes its email. Failing the
//! migration instead would stop the service from starting over what users
//! did. A row whose email has no new key keeps its old one.

use entity::user;
use sea_orm_migration::{
    prelude::*,
    sea_orm::{
        ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect,
        prelude::Uuid,
    },
};
use std::collections::HashSet;

#[derive(DeriveMigrationName)]
pub struct Migration;

/// The key each row gets under `key_of`, oldest row first to win.
pub fn assign(
    rows: &[(Uuid, String, String)],
    key_of: impl Fn(&str) -> Option<String>,
) -> Vec<(Uuid, String)> {
    let mut claimed = HashSet::new();
    let mut out = Vec::new();
    for (id, email, old) in rows {
        let wanted = key_of(email).unwrap_or_else(|| old.clone());
        let key = if claimed.insert(wanted.clone()) {
            wanted
        } else {
            format!("conflict:{id}")
        };
        if &key != old {
            out.push((*id, key));
        }
    }
    out
}

async fn rekey<C: ConnectionTrait>(
    db: &C,
    key_of: impl Fn(&str) -> Option<String>,
) -> Result<(), DbErr> {
    let rows: Vec<(Uuid, String, String)> = user::Entity::find()
        .select_only()
        .column(user::Column::Id)
        .column(user::Column::Email)
        .column(user::Column::EmailKey)
        .order_by_asc(user::Column::CreatedAt)
        .order_by_asc(user::Column::Id)
        .into_tuple()
        .all(db)
        .await?;
    let changes = assign(&rows, key_of);
    // Two steps, so no row takes a key another still holds.
    for (id, _) in &changes {
        set_key(db, *id, format!("migrating:{id}")).await?;
    }
    for (id, key) in changes {
        set_key(db, id, key).await?;
    }
    Ok(())
}

async fn set_key<C: ConnectionTrait>(db: &C, id: Uuid, key: String) -> Result<(), DbErr> {
    user::Entity::update_many()
        .col_expr(user::Column::EmailKey, Expr::value(key))
        .filter(user::Column::Id.eq(id))
        .exec(db)
        .await
        .map(|_| ())
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        rekey(manager.get_connection(), entity::email_key::email_key).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        rekey(manager.get_connection(), |e| Some(e.to_lowercase())).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_oldest_row_keeps_a_shared_key() {
        let (a, b, c) = (Uuid::from_u128(1), Uuid::from_u128(2), Uuid::from_u128(3));
        let rows = vec![
            // NFD, registered first.
            (
                a,
                "Jose\u{301}@x.org".to_owned(),
                "jose\u{301}@x.org".to_owned(),
            ),
            // NFC: its old key is the new key of the first row.
            (
                b,
                "jos\u{e9}@x.org".to_owned(),
                "jos\u{e9}@x.org".to_owned(),
            ),
            (
                c,
                "ann@bücher.example".to_owned(),
                "ann@bücher.example".to_owned(),
            ),
        ];
        let got = assign(&rows, entity::email_key::email_key);
        assert_eq!(
            got,
            vec![
                (a, "jos\u{e9}@x.org".to_owned()),
                (b, format!("conflict:{b}")),
                (c, "ann@xn--bcher-kva.example".to_owned()),
            ]
        );
    }
}
