//! Pages of query results: `page` from 1, `per_page` 1..=100 (default 20).

use sea_orm::{
    DatabaseConnection, DbErr, EntityTrait, FromQueryResult, PaginatorTrait, QueryResult,
    QuerySelect, Select, sea_query::Expr,
};

use crate::error::ApiError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Paging {
    pub page: u64,
    pub per_page: u64,
}

impl Paging {
    /// Bad values are 400 `BadRequest` (they violate the schema).
    pub fn new(page: Option<i64>, per_page: Option<i64>) -> Result<Self, ApiError> {
        let page = page.unwrap_or(1);
        let per_page = per_page.unwrap_or(20);
        if page < 1 {
            return Err(ApiError::BadRequest("`page` starts at 1.".into()));
        }
        if !(1..=100).contains(&per_page) {
            return Err(ApiError::BadRequest("`per_page` must be 1 to 100.".into()));
        }
        Ok(Self {
            page: page as u64,
            per_page: per_page as u64,
        })
    }

    /// Rows to skip; `None` when the page lies beyond any possible row.
    fn offset(&self) -> Option<u64> {
        (self.page - 1)
            .checked_mul(self.per_page)
            .filter(|o| *o <= i64::MAX as u64)
    }
}

/// One page of `query` and the total count. A page past the end is empty.
pub async fn fetch<E>(
    db: &DatabaseConnection,
    query: Select<E>,
    paging: Paging,
) -> Result<(Vec<E::Model>, u64), ApiError>
where
    E: EntityTrait,
    E::Model: Send + Sync,
{
    let total = query.clone().count(db).await?;
    let items = match paging.offset() {
        Some(offset) if offset < total => {
            query.offset(offset).limit(paging.per_page).all(db).await?
        }
        _ => vec![],
    };
    Ok((items, total))
}

/// `fetch` in one query: the total rides on every row (`COUNT(*) OVER ()`),
/// so it also agrees with the page. For lists scoped to one owner: the
/// window reads every matching row, which a big unscoped table would pay
/// on each page. A page past the end (no row to carry the total) counts.
pub async fn fetch_counted<E>(
    db: &DatabaseConnection,
    query: Select<E>,
    paging: Paging,
) -> Result<(Vec<E::Model>, u64), ApiError>
where
    E: EntityTrait,
    E::Model: FromQueryResult + Send + Sync,
{
    let Some(offset) = paging.offset() else {
        return Ok((vec![], query.count(db).await?));
    };
    let rows = query
        .clone()
        .expr_as(Expr::cust("COUNT(*) OVER ()"), TOTAL)
        .offset(offset)
        .limit(paging.per_page)
        .into_model::<Counted<E::Model>>()
        .all(db)
        .await?;
    let Some(total) = rows.first().map(|r| r.total) else {
        let total = if offset == 0 {
            0
        } else {
            query.count(db).await?
        };
        return Ok((vec![], total));
    };
    Ok((rows.into_iter().map(|r| r.model).collect(), total))
}

const TOTAL: &str = "page_total";

/// A row and the window's total.
struct Counted<M> {
    model: M,
    total: u64,
}

impl<M: FromQueryResult> FromQueryResult for Counted<M> {
    fn from_query_result(res: &QueryResult, pre: &str) -> Result<Self, DbErr> {
        let total: i64 = res.try_get(pre, TOTAL)?;
        Ok(Self {
            model: M::from_query_result(res, pre)?,
            total: u64::try_from(total).unwrap_or(0),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds() {
        assert_eq!(
            Paging::new(None, None).unwrap(),
            Paging {
                page: 1,
                per_page: 20
            }
        );
        assert!(Paging::new(Some(0), None).is_err());
        assert!(Paging::new(None, Some(0)).is_err());
        assert!(Paging::new(None, Some(101)).is_err());
        assert_eq!(
            Paging::new(Some(i64::MAX), Some(100)).unwrap().offset(),
            None
        );
        assert_eq!(Paging::new(Some(3), Some(10)).unwrap().offset(), Some(20));
    }
}
