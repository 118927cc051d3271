//! The hottest reads of a file SQLite database, run in place.
//!
//! SeaORM's SQLite driver (sqlx) runs every statement on a worker thread
//! of its connection and wakes the request's task when it is done: two
//! thread hand-offs and a copy of every column, which profiles showed to
//! cost `/users/me` and the employees list more than the statement
//! itself. These reads are primary-key or owner-index lookups of at most
//! one page (≤ 100 rows) that SQLite answers from its page cache in
//! microseconds, so they run right on the calling thread, on read-only
//! connections of their own (WAL: they never wait for the writer).
//!
//! They decode exactly what SeaORM stores (UUIDs as 16-byte blobs, times
//! as RFC 3339 text) into the same entity models; a test compares both
//! paths row by row. Everything else, and every read that decides a
//! write, stays on SeaORM.

use std::{path::Path, str::FromStr, time::Duration};

use chrono::{DateTime, NaiveDateTime, Utc};
use entity::{employee, user};
use parking_lot::Mutex;
use rusqlite::{Connection, OpenFlags, Row, config::DbConfig, types::ValueRef};
use uuid::Uuid;

use crate::{
    error::ApiError,
    paging::{Paging, probe_limit, total_without_count},
};

/// One per core and a spare: a request holds one only for one statement.
const CONNECTIONS: usize = 4;

/// A reader waits this long for SQLite's brief WAL-index locks.
const BUSY_TIMEOUT: Duration = Duration::from_millis(250);

pub struct SqliteReads {
    connections: Vec<Mutex<Connection>>,
}

impl std::fmt::Debug for SqliteReads {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteReads")
            .field("connections", &self.connections.len())
            .finish()
    }
}

/// The database file named by a SeaORM/sqlx SQLite URL; `None` for an
/// in-memory database (it exists only on its own connection).
pub fn file_of(url: &str) -> anyhow::Result<Option<std::path::PathBuf>> {
    use sea_orm::sqlx::sqlite::SqliteConnectOptions;
    if !url.starts_with("sqlite:") || url.contains(":memory:") || url.contains("mode=memory") {
        return Ok(None);
    }
    let opts = SqliteConnectOptions::from_str(url)?;
    Ok(Some(opts.get_filename().to_path_buf()))
}

const USER_COLUMNS: &str = "id, username, username_key, email, email_key, password_hash, role, \
     blocked, security_stamp, created_at, updated_at, email_verified, pending_email, \
     mfa_enabled";
const EMPLOYEE_COLUMNS: &str = "id, name, position, owner_id, created_at, updated_at";

impl SqliteReads {
    /// Opens the read-only connections of an existing (migrated) database.
    pub fn open(path: &Path) -> anyhow::Result<Self> {
        let connections = (0..CONNECTIONS)
            .map(|_| {
                let conn = Connection::open_with_flags(
                    path,
                    OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
                )?;
                conn.busy_timeout(BUSY_TIMEOUT)?;
                // As on SeaORM's connections (`state::stable_query_plans`):
                // a bound LIMIT would otherwise recompile the page query
                // on every execution.
                conn.set_db_config(DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG, true)?;
                Ok(Mutex::new(conn))
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        Ok(Self { connections })
    }

    /// Runs `f` on a free connection (or waits for the first one: each is
    /// held for one statement only).
    fn with<T>(&self, f: impl FnOnce(&Connection) -> rusqlite::Result<T>) -> Result<T, ApiError> {
        let conn = self
            .connections
            .iter()
            .find_map(|c| c.try_lock())
            .unwrap_or_else(|| self.connections[0].lock());
        f(&conn).map_err(db_error)
    }

    /// Whether every connection runs with stable query plans (for tests).
    pub fn stable_query_plans(&self) -> bool {
        self.connections.iter().all(|c| {
            c.lock()
                .db_config(DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG)
                .unwrap_or(false)
        })
    }

    pub fn ping(&self) -> Result<(), ApiError> {
        self.with(|c| c.query_row("SELECT 1", [], |_| Ok(())))
    }

    pub fn user(&self, id: Uuid) -> Result<Option<user::Model>, ApiError> {
        self.with(|c| {
            let mut stmt =
                c.prepare_cached(&format!("SELECT {USER_COLUMNS} FROM users WHERE id = ?1"))?;
            let mut rows = stmt.query([id.as_bytes().as_slice()])?;
            rows.next()?.map(user_row).transpose()
        })
    }

    /// `employees::get`: 404 for another owner's employee.
    pub fn employee(&self, owner: Uuid, id: Uuid) -> Result<employee::Model, ApiError> {
        self.with(|c| {
            let mut stmt = c.prepare_cached(&format!(
                "SELECT {EMPLOYEE_COLUMNS} FROM employees WHERE id = ?1 AND owner_id = ?2"
            ))?;
            let mut rows = stmt.query([id.as_bytes().as_slice(), owner.as_bytes().as_slice()])?;
            rows.next()?.map(employee_row).transpose()
        })?
        .ok_or_else(ApiError::not_found)
    }

    /// One page of `employees::list` (newest first) and its total when the
    /// page tells it (`paging::total_without_count`); `None` asks for
    /// `count_employees`. `None` as the page: past any possible row.
    pub fn employees_page(
        &self,
        owner: Uuid,
        paging: Paging,
    ) -> Result<(Vec<employee::Model>, Option<u64>), ApiError> {
        let Some(offset) = paging.offset() else {
            return Ok((vec![], None));
        };
        let mut items = self.with(|c| {
            let mut stmt = c.prepare_cached(&format!(
                "SELECT {EMPLOYEE_COLUMNS} FROM employees WHERE owner_id = ?1 \
                 ORDER BY created_at DESC, id DESC LIMIT ?2 OFFSET ?3"
            ))?;
            let rows = stmt.query_map(
                rusqlite::params![
                    owner.as_bytes().as_slice(),
                    clamp(probe_limit(paging)),
                    clamp(offset)
                ],
                employee_row,
            )?;
            rows.collect::<rusqlite::Result<Vec<_>>>()
        })?;
        let total = total_without_count(paging, offset, items.len());
        items.truncate(paging.per_page as usize);
        Ok((items, total))
    }

    pub fn count_employees(&self, owner: Uuid) -> Result<u64, ApiError> {
        let n: i64 = self.with(|c| {
            c.prepare_cached("SELECT COUNT(*) FROM employees WHERE owner_id = ?1")?
                .query_row([owner.as_bytes().as_slice()], |r| r.get(0))
        })?;
        Ok(u64::try_from(n).unwrap_or(0))
    }
}

fn clamp(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

fn user_row(r: &Row<'_>) -> rusqlite::Result<user::Model> {
    Ok(user::Model {
        id: uuid_at(r, 0)?,
        username: r.get(1)?,
        username_key: r.get(2)?,
        email: r.get(3)?,
        email_key: r.get(4)?,
        password_hash: r.get(5)?,
        role: r.get(6)?,
        blocked: r.get(7)?,
        security_stamp: r.get(8)?,
        created_at: time_at(r, 9)?,
        updated_at: time_at(r, 10)?,
        email_verified: r.get(11)?,
        pending_email: r.get(12)?,
        mfa_enabled: r.get(13)?,
    })
}

fn employee_row(r: &Row<'_>) -> rusqlite::Result<employee::Model> {
    Ok(employee::Model {
        id: uuid_at(r, 0)?,
        name: r.get(1)?,
        position: r.get(2)?,
        owner_id: uuid_at(r, 3)?,
        created_at: time_at(r, 4)?,
        updated_at: time_at(r, 5)?,
    })
}

fn bad_column(i: usize, what: &str) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(
        i,
        rusqlite::types::Type::Text,
        format!("column {i} is not {what}").into(),
    )
}

/// A UUID as sqlx writes it (16-byte blob), or as text.
fn uuid_at(r: &Row<'_>, i: usize) -> rusqlite::Result<Uuid> {
    match r.get_ref(i)? {
        ValueRef::Blob(b) => Uuid::from_slice(b).map_err(|_| bad_column(i, "a UUID")),
        ValueRef::Text(t) => std::str::from_utf8(t)
            .ok()
            .and_then(|s| Uuid::parse_str(s).ok())
            .ok_or_else(|| bad_column(i, "a UUID")),
        _ => Err(bad_column(i, "a UUID")),
    }
}

/// A time as sqlx reads it back: RFC 3339 text (what it writes), or one of
/// SQLite's own date formats taken as UTC, or Unix seconds.
fn time_at(r: &Row<'_>, i: usize) -> rusqlite::Result<DateTime<Utc>> {
    let parsed = match r.get_ref(i)? {
        ValueRef::Text(t) => std::str::from_utf8(t).ok().and_then(parse_time),
        ValueRef::Integer(secs) => DateTime::from_timestamp(secs, 0),
        _ => None,
    };
    parsed.ok_or_else(|| bad_column(i, "a time"))
}

fn parse_time(s: &str) -> Option<DateTime<Utc>> {
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Some(t.with_timezone(&Utc));
    }
    const FORMATS: [&str; 6] = [
        "%F %T%.f",
        "%F %T%.f%:z",
        "%F %T%.fZ",
        "%FT%T%.f",
        "%FT%T%.f%:z",
        "%FT%T%.fZ",
    ];
    FORMATS.iter().find_map(|f| {
        DateTime::parse_from_str(s, f)
            .map(|t| t.with_timezone(&Utc))
            .ok()
            .or_else(|| {
                NaiveDateTime::parse_from_str(s, f)
                    .ok()
                    .map(|n| n.and_utc())
            })
    })
}

/// Busy or unreadable database: 503 (fail closed, try again); a row that
/// does not decode is a bug (500). Messages carry no bound values.
fn db_error(e: rusqlite::Error) -> ApiError {
    use rusqlite::ErrorCode;
    let unavailable = matches!(
        e.sqlite_error_code(),
        Some(
            ErrorCode::DatabaseBusy
                | ErrorCode::DatabaseLocked
                | ErrorCode::CannotOpen
                | ErrorCode::SystemIoFailure
                | ErrorCode::OutOfMemory
        )
    );
    ApiError::database(unavailable, e)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_in_every_format_sqlx_reads() {
        let want = DateTime::parse_from_rfc3339("2026-12-02T05:48:57.575142612Z")
            .unwrap()
            .with_timezone(&Utc);
        for s in [
            "2026-12-02T05:48:57.575142612+00:00",
            "2026-12-02T07:48:57.575142612+02:00",
            "2026-12-02 05:48:57.575142612",
            "2026-12-02T05:48:57.575142612",
            "2026-12-02 05:48:57.575142612Z",
        ] {
            assert_eq!(parse_time(s), Some(want), "{s}");
        }
        assert_eq!(parse_time("yesterday"), None);
    }

    #[test]
    fn urls_name_files_or_memory() {
        assert_eq!(
            file_of("sqlite:///tmp/x.db?mode=rwc").unwrap(),
            Some("/tmp/x.db".into())
        );
        assert_eq!(
            file_of("sqlite://tessera.db?mode=rwc").unwrap(),
            Some("tessera.db".into())
        );
        assert_eq!(file_of("sqlite::memory:").unwrap(), None);
        assert_eq!(file_of("postgres://u@h/db").unwrap(), None);
    }
}
