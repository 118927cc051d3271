use std::sync::Arc;

use chrono::{DateTime, Utc};
use poem::web::Data;
use poem_openapi::{
    Object, OpenApi, Union,
    param::{Path, Query},
    payload::Json,
    types::Example,
};
use uuid::Uuid;

use super::{
    Tag,
    params::Id,
    params::{PageNumber, PerPage},
    responses::{Created, NoContent, Page},
    security::{Access, Admin, Fresh, MaybeAccess},
    text::{Description, Name, Price, Quantity},
};
use crate::{
    catalog::{self, ProductFields},
    error::ApiResult,
    money,
    state::AppState,
};

#[derive(Object)]
pub struct Category {
    pub id: Uuid,
    pub name: String,
    pub created_at: DateTime<Utc>,
}

impl From<entity::category::Model> for Category {
    fn from(c: entity::category::Model) -> Self {
        Self {
            id: c.id,
            name: c.name,
            created_at: c.created_at,
        }
    }
}

#[derive(Object)]
#[oai(example)]
pub struct CategoryName {
    pub name: Name,
}

impl Example for CategoryName {
    fn example() -> Self {
        CategoryName {
            name: Name("Books".into()),
        }
    }
}

/// Absent or null leaves the name unchanged.
#[derive(Object)]
#[oai(example)]
pub struct CategoryChange {
    #[oai(nullable)]
    pub name: Option<Name>,
}

impl Example for CategoryChange {
    fn example() -> Self {
        CategoryChange {
            name: Some(Name("Rare books".into())),
        }
    }
}

#[derive(Object)]
pub struct Product {
    pub id: Uuid,
    pub name: String,
    /// `null` when the product has none.
    #[oai(nullable)]
    pub description: Option<String>,
    pub price: Price,
    pub quantity: i64,
    pub category_id: Uuid,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl From<entity::product::Model> for Product {
    fn from(p: entity::product::Model) -> Self {
        Self {
            id: p.id,
            name: p.name,
            description: p.description,
            price: Price(money::from_cents(p.price_cents)),
            quantity: p.quantity,
            category_id: p.category_id,
            created_at: p.created_at,
            updated_at: p.updated_at,
        }
    }
}

/// What anonymous callers see of a product.
#[derive(Object)]
pub struct ProductSummary {
    pub id: Uuid,
    pub name: String,
}

#[derive(Union)]
pub enum ProductItem {
    Full(Product),
    Summary(ProductSummary),
}

#[derive(Object)]
pub struct ProductPage {
    /// Full products for authenticated callers, summaries otherwise.
    pub items: Vec<ProductItem>,
    pub page: u64,
    pub per_page: u64,
    pub total: u64,
    /// True when the caller is anonymous and items carry only id and name.
    pub limited: bool,
}

/// `category_id` names an existing category (else 422).
#[derive(Object)]
#[oai(example)]
pub struct NewProduct {
    pub name: Name,
    #[oai(nullable)]
    pub description: Option<Description>,
    pub price: Price,
    pub quantity: Quantity,
    pub category_id: Uuid,
}

impl Example for NewProduct {
    fn example() -> Self {
        NewProduct {
            name: Name("The Analytical Engine".into()),
            description: Some(Description("Notes by the translator.".into())),
            price: Price::from_text("19.99"),
            quantity: Quantity(3),
            category_id: Uuid::nil(),
        }
    }
}

/// Absent or null fields stay unchanged.
#[derive(Object)]
#[oai(example)]
pub struct ProductChange {
    #[oai(nullable)]
    pub name: Option<Name>,
    #[oai(nullable)]
    pub description: Option<Description>,
    #[oai(nullable)]
    pub price: Option<Price>,
    #[oai(nullable)]
    pub quantity: Option<Quantity>,
    #[oai(nullable)]
    pub category_id: Option<Uuid>,
}

impl Example for ProductChange {
    fn example() -> Self {
        ProductChange {
            name: None,
            description: None,
            price: Some(Price::from_text("24.5")),
            quantity: Some(Quantity(10)),
            category_id: None,
        }
    }
}

pub struct CatalogApi;

#[OpenApi(tag = "Tag::Catalog")]
impl CatalogApi {
    /// Categories by name; the token is optional.
    #[oai(path = "/categories", method = "get", operation_id = "list_categories")]
    async fn list_categories(
        &self,
        state: Data<&Arc<AppState>>,
        _auth: MaybeAccess,
        page: Query<Option<PageNumber>>,
        per_page: Query<Option<PerPage>>,
    ) -> ApiResult<Json<Page<Category>>> {
        let paging = super::params::paging(page.0, per_page.0)?;
        let (items, total) = catalog::list_categories(state.reader(), paging).await?;
        Ok(Json(Page::of(items, paging, total)))
    }

    /// Create a category (fresh token).
    #[oai(
        path = "/categories",
        method = "post",
        operation_id = "create_category"
    )]
    async fn create_category(
        &self,
        state: Data<&Arc<AppState>>,
        _auth: Fresh,
        body: Json<CategoryName>,
    ) -> ApiResult<Created<Category>> {
        let c = catalog::create_category(&state.db, body.0.name.0).await?;
        let location = format!("/categories/{}", c.id);
        Ok(Created::at(c.into(), location))
    }

    /// One category.
    #[oai(
        path = "/categories/:id",
        method = "get",
        operation_id = "get_category"
    )]
    async fn get_category(
        &self,
        state: Data<&Arc<AppState>>,
        _auth: Access,
        id: Path<Id>,
    ) -> ApiResult<Json<Category>> {
        let id = id.0.uuid()?;
        Ok(Json(
            catalog::get_category(state.reader(), id).await?.into(),
        ))
    }

    /// Rename a category.
    #[oai(
        path = "/categories/:id",
        method = "patch",
        operation_id = "update_category"
    )]
    async fn update_category(
        &self,
        state: Data<&Arc<AppState>>,
        _auth: Access,
        id: Path<Id>,
        body: Json<CategoryChange>,
    ) -> ApiResult<Json<Category>> {
        let id = id.0.uuid()?;
        Ok(Json(
            catalog::rename_category(&state.db, id, body.0.name.map(|t| t.0))
                .await?
                .into(),
        ))
    }

    /// Delete a category without products (admin).
    #[oai(
        path = "/categories/:id",
        method = "delete",
        operation_id = "delete_category"
    )]
    async fn delete_category(
        &self,
        state: Data<&Arc<AppState>>,
        _auth: Admin,
        id: Path<Id>,
    ) -> ApiResult<NoContent> {
        let id = id.0.uuid()?;
        catalog::delete_category(&state.db, id).await?;
        Ok(NoContent::Done)
    }

    /// Products by name, optionally of one category. Anonymous callers get
    /// only id and name per item and `limited: true`.
    #[oai(path = "/products", method = "get", operation_id = "list_products")]
    async fn list_products(
        &self,
        state: Data<&Arc<AppState>>,
        auth: MaybeAccess,
        page: Query<Option<PageNumber>>,
        per_page: Query<Option<PerPage>>,
        category_id: Query<Option<Id>>,
    ) -> ApiResult<Json<ProductPage>> {
        let paging = super::params::paging(page.0, per_page.0)?;
        let category = category_id.0.map(|c| c.uuid()).transpose()?;
        let (items, total) = catalog::list_products(state.reader(), category, paging).await?;
        let limited = auth.0.is_none();
        let items = items
            .into_iter()
            .map(|p| {
                if limited {
                    ProductItem::Summary(ProductSummary {
                        id: p.id,
                        name: p.name,
                    })
                } else {
                    ProductItem::Full(p.into())
                }
            })
            .collect();
        Ok(Json(ProductPage {
            items,
            page: paging.page,
            per_page: paging.per_page,
            total,
            limited,
        }))
    }

    /// Create a product (fresh token); the category must exist (else 422).
    #[oai(path = "/products", method = "post", operation_id = "create_product")]
    async fn create_product(
        &self,
        state: Data<&Arc<AppState>>,
        _auth: Fresh,
        body: Json<NewProduct>,
    ) -> ApiResult<Created<Product>> {
        let b = body.0;
        let p = catalog::create_product(
            &state.db,
            ProductFields {
                name: Some(b.name.0),
                description: Some(b.description.map(|t| t.0)),
                price: Some(b.price.0),
                quantity: Some(b.quantity.0),
                category_id: Some(b.category_id),
            },
        )
        .await?;
        let location = format!("/products/{}", p.id);
        Ok(Created::at(p.into(), location))
    }

    /// One product.
    #[oai(path = "/products/:id", method = "get", operation_id = "get_product")]
    async fn get_product(
        &self,
        state: Data<&Arc<AppState>>,
        _auth: Access,
        id: Path<Id>,
    ) -> ApiResult<Json<Product>> {
        let id = id.0.uuid()?;
        Ok(Json(catalog::get_product(state.reader(), id).await?.into()))
    }

    /// Change a product; absent or null fields stay.
    #[oai(
        path = "/products/:id",
        method = "patch",
        operation_id = "update_product"
    )]
    async fn update_product(
        &self,
        state: Data<&Arc<AppState>>,
        _auth: Access,
        id: Path<Id>,
        body: Json<ProductChange>,
    ) -> ApiResult<Json<Product>> {
        let id = id.0.uuid()?;
        let b = body.0;
        let fields = ProductFields {
            name: b.name.map(|t| t.0),
            description: b.description.map(|t| Some(t.0)),
            price: b.price.map(|p| p.0),
            quantity: b.quantity.map(|q| q.0),
            category_id: b.category_id,
        };
        Ok(Json(
            catalog::update_product(&state.db, id, fields).await?.into(),
        ))
    }

    /// Delete a product (admin).
    #[oai(
        path = "/products/:id",
        method = "delete",
        operation_id = "delete_product"
    )]
    async fn delete_product(
        &self,
        state: Data<&Arc<AppState>>,
        _auth: Admin,
        id: Path<Id>,
    ) -> ApiResult<NoContent> {
        let id = id.0.uuid()?;
        catalog::delete_product(&state.db, id).await?;
        Ok(NoContent::Done)
    }
}
