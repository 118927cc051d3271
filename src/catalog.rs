//! The product catalog: categories and products with unique names, exact
//! prices, and categories that cannot be deleted while they hold products.

use chrono::Utc;
use entity::{category, product};
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, DatabaseConnection, EntityTrait, QueryFilter,
    QueryOrder,
};
use uuid::Uuid;

use crate::{error::ApiError, paging::Paging, validation};

fn name_problem(field: &str, name: &str) -> Result<(), ApiError> {
    let mut p = validation::Problems::default();
    p.check(field, validation::name(name));
    p.into_result()
}

fn taken(what: &str) -> impl Fn(ApiError) -> ApiError + '_ {
    move |e| match e {
        ApiError::Conflict(_) => ApiError::Conflict(format!("A {what} with that name exists.")),
        other => other,
    }
}

// ------------------------------------------------------------ categories

pub async fn create_category(
    db: &DatabaseConnection,
    name: String,
) -> Result<category::Model, ApiError> {
    name_problem("name", &name)?;
    category::ActiveModel {
        id: Set(Uuid::now_v7()),
        name_key: Set(name.to_lowercase()),
        name: Set(name),
        created_at: Set(Utc::now()),
    }
    .insert(db)
    .await
    .map_err(ApiError::from)
    .map_err(taken("category"))
}

pub async fn get_category(db: &DatabaseConnection, id: Uuid) -> Result<category::Model, ApiError> {
    category::Entity::find_by_id(id)
        .one(db)
        .await?
        .ok_or_else(ApiError::not_found)
}

pub async fn list_categories(
    db: &DatabaseConnection,
    paging: Paging,
) -> Result<(Vec<category::Model>, u64), ApiError> {
    let query = category::Entity::find()
        .order_by_asc(category::Column::NameKey)
        .order_by_asc(category::Column::Id);
    crate::paging::fetch(db, query, paging).await
}

pub async fn rename_category(
    db: &DatabaseConnection,
    id: Uuid,
    name: Option<String>,
) -> Result<category::Model, ApiError> {
    if let Some(n) = &name {
        name_problem("name", n)?;
    }
    let current = get_category(db, id).await?;
    let Some(name) = name else {
        return Ok(current);
    };
    let mut model: category::ActiveModel = current.into();
    model.name_key = Set(name.to_lowercase());
    model.name = Set(name);
    model
        .update(db)
        .await
        .map_err(ApiError::from)
        .map_err(taken("category"))
}

/// 409 while products still belong to it (the foreign key also refuses).
/// 409 while products still belong to it: the foreign key (RESTRICT)
/// refuses the delete, so no separate count can race with a new product.
pub async fn delete_category(db: &DatabaseConnection, id: Uuid) -> Result<(), ApiError> {
    let res =
        category::Entity::delete_by_id(id)
            .exec(db)
            .await
            .map_err(|e| match ApiError::from(e) {
                ApiError::Conflict(_) => {
                    ApiError::Conflict("The category still has products.".into())
                }
                other => other,
            })?;
    if res.rows_affected == 0 {
        return Err(ApiError::not_found());
    }
    Ok(())
}

// ------------------------------------------------------------ products

/// A product's fields as sent: `None` = absent (PATCH) or not given.
#[derive(Default)]
pub struct ProductFields {
    pub name: Option<String>,
    /// `Some(None)` clears the description.
    pub description: Option<Option<String>>,
    pub price: Option<serde_json::Number>,
    pub quantity: Option<i64>,
    pub category_id: Option<Uuid>,
}

struct Checked {
    price_cents: Option<i64>,
}

async fn check_fields(db: &DatabaseConnection, f: &ProductFields) -> Result<Checked, ApiError> {
    let mut p = validation::Problems::default();
    if let Some(n) = &f.name {
        p.check("name", validation::name(n));
    }
    if let Some(Some(d)) = &f.description {
        p.check("description", validation::description(d));
    }
    let mut price_cents = None;
    if let Some(n) = &f.price {
        match crate::money::to_cents(n) {
            Ok(c) => price_cents = Some(c),
            Err(e) => p.check("price", Err(e)),
        }
    }
    if let Some(q) = f.quantity {
        p.check("quantity", crate::validation::quantity(q));
    }
    if let Some(c) = f.category_id {
        let exists = category::Entity::find_by_id(c).one(db).await?.is_some();
        p.check(
            "category_id",
            if exists {
                Ok(())
            } else {
                Err("no such category")
            },
        );
    }
    p.into_result()?;
    Ok(Checked { price_cents })
}

pub async fn create_product(
    db: &DatabaseConnection,
    f: ProductFields,
) -> Result<product::Model, ApiError> {
    let checked = check_fields(db, &f).await?;
    let (Some(name), Some(price_cents), Some(quantity), Some(category_id)) =
        (f.name, checked.price_cents, f.quantity, f.category_id)
    else {
        return Err(ApiError::BadRequest(
            "name, price, quantity and category_id are required.".into(),
        ));
    };
    let now = Utc::now();
    product::ActiveModel {
        id: Set(Uuid::now_v7()),
        name_key: Set(name.to_lowercase()),
        name: Set(name),
        description: Set(f.description.flatten()),
        price_cents: Set(price_cents),
        quantity: Set(quantity),
        category_id: Set(category_id),
        created_at: Set(now),
        updated_at: Set(now),
    }
    .insert(db)
    .await
    .map_err(ApiError::from)
    .map_err(taken("product"))
}

pub async fn get_product(db: &DatabaseConnection, id: Uuid) -> Result<product::Model, ApiError> {
    product::Entity::find_by_id(id)
        .one(db)
        .await?
        .ok_or_else(ApiError::not_found)
}

pub async fn list_products(
    db: &DatabaseConnection,
    category_id: Option<Uuid>,
    paging: Paging,
) -> Result<(Vec<product::Model>, u64), ApiError> {
    let mut query = product::Entity::find();
    if let Some(c) = category_id {
        query = query.filter(product::Column::CategoryId.eq(c));
    }
    let query = query
        .order_by_asc(product::Column::NameKey)
        .order_by_asc(product::Column::Id);
    crate::paging::fetch(db, query, paging).await
}

pub async fn update_product(
    db: &DatabaseConnection,
    id: Uuid,
    f: ProductFields,
) -> Result<product::Model, ApiError> {
    let checked = check_fields(db, &f).await?;
    let current = get_product(db, id).await?;
    let mut model: product::ActiveModel = current.clone().into();
    let mut changed = false;
    if let Some(n) = f.name {
        model.name_key = Set(n.to_lowercase());
        model.name = Set(n);
        changed = true;
    }
    if let Some(d) = f.description {
        model.description = Set(d);
        changed = true;
    }
    if let Some(c) = checked.price_cents {
        model.price_cents = Set(c);
        changed = true;
    }
    if let Some(q) = f.quantity {
        model.quantity = Set(q);
        changed = true;
    }
    if let Some(c) = f.category_id {
        model.category_id = Set(c);
        changed = true;
    }
    if !changed {
        return Ok(current);
    }
    model.updated_at = Set(Utc::now());
    model
        .update(db)
        .await
        .map_err(ApiError::from)
        .map_err(taken("product"))
}

pub async fn delete_product(db: &DatabaseConnection, id: Uuid) -> Result<(), ApiError> {
    let res = product::Entity::delete_by_id(id).exec(db).await?;
    if res.rows_affected == 0 {
        return Err(ApiError::not_found());
    }
    Ok(())
}
