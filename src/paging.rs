//! Pages of query results: `page` from 1, `per_page` 1..=100 (default 20).

use sea_orm::{DatabaseConnection, EntityTrait, PaginatorTrait, QuerySelect, Select};

use crate::error::ApiError;

/// The largest page number (the schema's `maximum` is a double).
pub const MAX_PAGE: i64 = crate::validation::MAX_JSON_INTEGER;

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
        if !(1..=MAX_PAGE).contains(&page) {
            return Err(ApiError::BadRequest(format!(
                "`page` must be 1 to {MAX_PAGE}."
            )));
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
    pub(crate) fn offset(&self) -> Option<u64> {
        (self.page - 1)
            .checked_mul(self.per_page)
            .filter(|o| *o <= i64::MAX as u64)
    }
}

/// What a page of at most `per_page + 1` fetched rows tells of the total:
/// fewer than `per_page + 1` rows from a page that has some (or from the
/// first page) is the end, so the total is known without counting; a
/// longer list, or an empty page past the end, has to be counted. Most
/// lists are short, so most pages cost one query, and none reads more
/// than `count` and one page do.
pub(crate) fn total_without_count(paging: Paging, offset: u64, fetched: usize) -> Option<u64> {
    let fetched = fetched as u64;
    (fetched <= paging.per_page && (fetched > 0 || offset == 0)).then_some(offset + fetched)
}

/// `per_page + 1`: the extra row says whether there is more (`total_without_count`).
pub(crate) fn probe_limit(paging: Paging) -> u64 {
    paging.per_page + 1
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
    let Some(offset) = paging.offset() else {
        return Ok((vec![], query.count(db).await?));
    };
    let mut items = query
        .clone()
        .offset(offset)
        .limit(probe_limit(paging))
        .all(db)
        .await?;
    let total = match total_without_count(paging, offset, items.len()) {
        Some(total) => total,
        None => query.count(db).await?,
    };
    items.truncate(paging.per_page as usize);
    Ok((items, total))
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
        assert!(Paging::new(Some(MAX_PAGE + 1), None).is_err());
        assert_eq!(
            Paging::new(Some(MAX_PAGE), Some(100)).unwrap().offset(),
            Some((MAX_PAGE as u64 - 1) * 100)
        );
        assert_eq!(Paging::new(Some(3), Some(10)).unwrap().offset(), Some(20));
    }

    #[test]
    fn totals_known_from_the_page() {
        let p = Paging::new(Some(1), Some(10)).unwrap();
        // Short first page, empty first page: that is all there is.
        assert_eq!(total_without_count(p, 0, 7), Some(7));
        assert_eq!(total_without_count(p, 0, 0), Some(0));
        // Exactly a page: the probe row was missing, so nothing follows.
        assert_eq!(total_without_count(p, 0, 10), Some(10));
        // The probe row came back: more follows, count.
        assert_eq!(total_without_count(p, 0, 11), None);
        // A later page that ends here; an empty page past the end must count.
        assert_eq!(total_without_count(p, 30, 4), Some(34));
        assert_eq!(total_without_count(p, 30, 0), None);
    }
}
