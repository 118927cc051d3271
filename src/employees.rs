//! Employee records: each belongs to one user, who alone sees and changes it.

use chrono::Utc;
use entity::employee;
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, DatabaseConnection, EntityTrait, QueryFilter,
    QueryOrder,
};
use uuid::Uuid;

use crate::{error::ApiError, paging::Paging, validation};

pub struct Fields {
    pub name: Option<String>,
    pub position: Option<String>,
}

fn validate(f: &Fields) -> Result<(), ApiError> {
    let mut problems = validation::Problems::default();
    if let Some(n) = &f.name {
        problems.check("name", validation::name(n));
    }
    if let Some(p) = &f.position {
        problems.check("position", validation::name(p));
    }
    problems.into_result()
}

pub async fn create(
    db: &DatabaseConnection,
    owner: Uuid,
    name: String,
    position: String,
) -> Result<employee::Model, ApiError> {
    validate(&Fields {
        name: Some(name.clone()),
        position: Some(position.clone()),
    })?;
    let now = Utc::now();
    employee::ActiveModel {
        id: Set(Uuid::now_v7()),
        name: Set(name),
        position: Set(position),
        owner_id: Set(owner),
        created_at: Set(now),
        updated_at: Set(now),
    }
    .insert(db)
    .await
    .map_err(ApiError::from)
}

/// The owner's employee; someone else's is `NotFound` (no existence leak).
pub async fn get(
    db: &DatabaseConnection,
    owner: Uuid,
    id: Uuid,
) -> Result<employee::Model, ApiError> {
    employee::Entity::find_by_id(id)
        .filter(employee::Column::OwnerId.eq(owner))
        .one(db)
        .await?
        .ok_or_else(ApiError::not_found)
}

/// Newest first.
pub async fn list(
    db: &DatabaseConnection,
    owner: Uuid,
    paging: Paging,
) -> Result<(Vec<employee::Model>, u64), ApiError> {
    let query = employee::Entity::find()
        .filter(employee::Column::OwnerId.eq(owner))
        .order_by_desc(employee::Column::CreatedAt)
        .order_by_desc(employee::Column::Id);
    crate::paging::fetch(db, query, paging).await
}

pub async fn update(
    db: &DatabaseConnection,
    owner: Uuid,
    id: Uuid,
    f: Fields,
) -> Result<employee::Model, ApiError> {
    // Body before resource (API.md's error precedence).
    validate(&f)?;
    let current = get(db, owner, id).await?;
    if f.name.is_none() && f.position.is_none() {
        return Ok(current);
    }
    let mut model: employee::ActiveModel = current.into();
    if let Some(n) = f.name {
        model.name = Set(n);
    }
    if let Some(p) = f.position {
        model.position = Set(p);
    }
    model.updated_at = Set(Utc::now());
    model.update(db).await.map_err(ApiError::from)
}

pub async fn delete(db: &DatabaseConnection, owner: Uuid, id: Uuid) -> Result<(), ApiError> {
    let res = employee::Entity::delete_many()
        .filter(employee::Column::Id.eq(id))
        .filter(employee::Column::OwnerId.eq(owner))
        .exec(db)
        .await?;
    if res.rows_affected == 0 {
        return Err(ApiError::not_found());
    }
    Ok(())
}
