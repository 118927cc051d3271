//! Token-engine and account rules of API.md that an attacker probes: the
//! session cap, per-kind counters of unknown identifiers, the password
//! change under the login limits, registration limits, NUL and control
//! characters, refresh tokens within the leeway, and what debug output and
//! `--help` show.

use std::time::Duration;

use reqwest::Method;
use serde_json::json;

use crate::helpers::{Backend, PASSWORD, Resp, spawn_app, spawn_app_with};

const WRONG: &str = "not the password";

#[track_caller]
fn assert_retry_after(r: &Resp) {
    r.assert_error(429, "TooManyRequests");
    let secs: u64 = r
        .header("retry-after")
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("429 without whole-second Retry-After: {r:?}"));
    assert!(secs >= 1, "{r:?}");
}

/// A login beyond `TESSERA_MAX_SESSIONS_PER_USER` ends the oldest session.
async fn session_cap_ends_the_oldest(b: Backend) {
    let app = spawn_app_with(b, |c| c.max_sessions_per_user = 3).await;
    let first = app.user("ann").await;
    let mut later = Vec::new();
    for _ in 0..3 {
        // Distinct creation times, so "oldest" is unambiguous.
        tokio::time::sleep(Duration::from_millis(5)).await;
        later.push(app.login("ann").await);
    }
    app.verify(&first.access)
        .await
        .assert_error(401, "TokenRevoked");
    app.refresh(&first.refresh)
        .await
        .assert_error(401, "TokenRevoked");
    for t in &later {
        app.verify(&t.access).await.assert_status(200);
    }
    let list = app.get("/auth/sessions", Some(&later[2].access)).await;
    list.assert_status(200);
    assert_eq!(list.body.as_array().map(Vec::len), Some(3), "{list:?}");
    // Another user is not affected by ann's cap.
    let bob = app.user("bob").await;
    app.verify(&bob.access).await.assert_status(200);
    app.verify(&later[0].access).await.assert_status(200);
}

/// Concurrent logins beyond the cap leave exactly the cap of live sessions,
/// and exactly the listed ones work.
async fn session_cap_holds_under_concurrent_logins(b: Backend) {
    let app = spawn_app_with(b, |c| {
        c.max_sessions_per_user = 2;
        // Attempts count before the password check (auth::limits): six at
        // once would otherwise pass the default limit of five in flight.
        c.login_max_failures = 100;
    })
    .await;
    app.user("ann").await;
    for _ in 0..crate::helpers::RACE_ROUNDS {
        let tokens = crate::helpers::race(6, |_| {
            let app = app.clone();
            async move { app.login("ann").await }
        })
        .await;
        let mut working = Vec::new();
        for t in &tokens {
            if app.verify(&t.access).await.status == 200 {
                working.push(t);
            }
        }
        // The two newest stay: a session among the newest two overall is
        // among the newest two of every set a racer saw, so none evicts it.
        assert_eq!(
            working.len(),
            2,
            "{} of 6 concurrent sessions work with a cap of 2",
            working.len()
        );
        let list = app.get("/auth/sessions", Some(&working[0].access)).await;
        assert_eq!(
            list.body.as_array().map(Vec::len),
            Some(working.len()),
            "listed sessions differ from working ones: {list:?}"
        );
    }
}

/// Five failures as `{"email": X}` do not limit `{"username": X}` unless X
/// names the same account: the limit does not tell which usernames exist.
async fn unknown_identifier_counters_are_per_kind(b: Backend) {
    let app = spawn_app_with(b, |c| {
        c.login_max_failures = 5;
        c.login_max_failures_per_ip = 1000;
    })
    .await;
    app.user("ann").await;
    for x in ["ghost", "ann"] {
        for _ in 0..5 {
            app.post_json("/auth/login", &json!({"email": x, "password": WRONG}), None)
                .await
                .assert_error(401, "InvalidCredentials");
        }
        assert_retry_after(
            &app.post_json("/auth/login", &json!({"email": x, "password": WRONG}), None)
                .await,
        );
        // "ghost" names nobody, "ann" a username: the same answer for both.
        app.post_json(
            "/auth/login",
            &json!({"username": x, "password": WRONG}),
            None,
        )
        .await
        .assert_error(401, "InvalidCredentials");
    }
}

/// A wrong `current_password` is a failed login of the account: over the
/// limit the change is 429 even with the right password, and so is login.
async fn password_change_counts_as_failed_login(b: Backend) {
    let app = spawn_app_with(b, |c| {
        c.login_max_failures = 3;
        c.login_max_failures_per_ip = 1000;
    })
    .await;
    let t = app.user("ann").await;
    let change = |current: &str| json!({"current_password": current, "new_password": "a brand new password"});
    for _ in 0..3 {
        app.send_json(
            Method::PUT,
            "/users/me/password",
            &change(WRONG),
            Some(&t.access),
        )
        .await
        .assert_error(401, "InvalidCredentials");
    }
    assert_retry_after(
        &app.send_json(
            Method::PUT,
            "/users/me/password",
            &change(PASSWORD),
            Some(&t.access),
        )
        .await,
    );
    assert_retry_after(&app.login_email("ann@example.com", PASSWORD).await);
    // Nothing changed: the session still works.
    app.verify(&t.access).await.assert_status(200);
}

/// U+0000 and other control characters in names are 422 on every database;
/// a NUL in a login identifier names nobody (never a 500).
async fn nul_and_control_characters(b: Backend) {
    let app = spawn_app(b).await;
    let t = app.user("ann").await;
    for (name, position) in [
        ("a\u{0}b", "engineer"),
        ("Bob", "x\u{0}"),
        ("tab\there", "ok"),
    ] {
        let r = app
            .post_json(
                "/employees",
                &json!({"name": name, "position": position}),
                Some(&t.access),
            )
            .await;
        r.assert_error(422, "ValidationFailed");
    }
    let list = app.get("/employees", Some(&t.access)).await;
    assert_eq!(list.body["total"], 0, "{list:?}");
    app.post_json("/categories", &json!({"name": "nul\u{0}"}), Some(&t.access))
        .await
        .assert_error(422, "ValidationFailed");
    let cat = app
        .post_json("/categories", &json!({"name": "Tools"}), Some(&t.access))
        .await;
    cat.assert_status(201);
    let product = |description: &str| {
        json!({"name": "Hammer", "description": description, "price": 9.5,
               "quantity": 1, "category_id": cat.str("id")})
    };
    app.post_json("/products", &product("a\u{0}b"), Some(&t.access))
        .await
        .assert_error(422, "ValidationFailed");
    app.post_json("/products", &product("two\nlines\tok"), Some(&t.access))
        .await
        .assert_status(201);
    for body in [
        json!({"email": "ann\u{0}@example.com", "password": PASSWORD}),
        json!({"username": "ann\u{0}", "password": PASSWORD}),
    ] {
        app.post_json("/auth/login", &body, None)
            .await
            .assert_error(401, "InvalidCredentials");
    }
}

/// Within the leeway after `exp` a refresh token is expired, not revoked.
async fn refresh_within_leeway_is_expired(b: Backend) {
    let app = spawn_app_with(b, |c| {
        c.jwt_leeway = Duration::from_secs(30);
        c.refresh_ttl = Duration::from_secs(1);
        c.access_ttl = Duration::from_secs(1);
    })
    .await;
    let t = app.user("ann").await;
    tokio::time::sleep(Duration::from_millis(2100)).await;
    app.refresh(&t.refresh)
        .await
        .assert_error(401, "TokenExpired");
}

crate::both_backends!(
    session_cap_ends_the_oldest,
    session_cap_holds_under_concurrent_logins,
    unknown_identifier_counters_are_per_kind,
    password_change_counts_as_failed_login,
    nul_and_control_characters,
    refresh_within_leeway_is_expired,
);

/// `serve --help` never prints the values of variables that embed passwords.
#[test]
fn help_hides_url_values() {
    let mut cmd = crate::helpers::process::tessera(&["serve", "--help"]);
    cmd.env("DATABASE_URL", "postgres://u:db-secret-123@db/tessera")
        .env("REDIS_URL", "redis://:redis-secret-456@cache:6379/")
        .env(
            "TESSERA_JWT_SECRET",
            "jwt-secret-0123456789abcdef0123456789",
        );
    let out = crate::helpers::process::output_within(&mut cmd, Duration::from_secs(20));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("DATABASE_URL"), "{text}");
    for secret in ["db-secret-123", "redis-secret-456", "jwt-secret-0123"] {
        assert!(
            !text.contains(secret),
            "{secret} printed by --help:\n{text}"
        );
    }
}

/// An evicting `maxmemory-policy` is warned about and counted at start.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn evicting_redis_is_counted() {
    let redis = crate::helpers::RedisServer::start();
    let url = redis.url();
    let mut conn = redis::Client::open(url.as_str())
        .expect("redis client")
        .get_multiplexed_async_connection()
        .await
        .expect("redis connection");
    redis::cmd("CONFIG")
        .arg("SET")
        .arg("maxmemory-policy")
        .arg("allkeys-lru")
        .query_async::<()>(&mut conn)
        .await
        .expect("CONFIG SET");
    let metric = |text: &str| -> u64 {
        text.lines()
            .find(|l| l.starts_with("tessera_auth_events_total{event=\"store_eviction_policy\"}"))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no store_eviction_policy metric in:\n{text}"))
    };
    let before = metric(&tessera::metrics::render());
    let app = spawn_app_with(Backend::PostgresRedis, |c| c.redis_url = Some(url.clone())).await;
    let text = app.get("/metrics", None).await.text;
    assert!(metric(&text) > before, "not counted:\n{text}");
}

/// SQLite runs in WAL mode with synchronous=NORMAL (a commit does not sync a
/// rollback journal).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_runs_in_wal_mode() {
    use sea_orm::{ConnectionTrait, Statement};
    let app = spawn_app(Backend::SqliteMemory).await;
    let db = &app.state.db;
    let pragma =
        |name: &str| Statement::from_string(db.get_database_backend(), format!("PRAGMA {name}"));
    let mode = db
        .query_one_raw(pragma("journal_mode"))
        .await
        .expect("PRAGMA journal_mode")
        .expect("a row");
    assert_eq!(mode.try_get_by_index::<String>(0).expect("text"), "wal");
    let sync = db
        .query_one_raw(pragma("synchronous"))
        .await
        .expect("PRAGMA synchronous")
        .expect("a row");
    // 1 = NORMAL
    assert_eq!(sync.try_get_by_index::<i32>(0).expect("integer"), 1);
    // And it works: a registration is stored and read back.
    let t = app.user("wal").await;
    app.get("/users/me", Some(&t.access))
        .await
        .assert_status(200);
}

/// On SQLite, reads go through read-only connections of their own: a write
/// transaction holding the one writer connection does not hold them up, and
/// they see only what is committed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_reads_do_not_wait_for_the_writer() {
    use sea_orm::{ConnectionTrait, TransactionTrait};
    let app = spawn_app(Backend::SqliteMemory).await;
    let t = app.user("reader").await;
    let readers = app
        .state
        .read_pool
        .as_ref()
        .expect("SQLite has a read pool");
    // The readers refuse writes.
    let write = readers
        .execute_unprepared("UPDATE users SET username = 'nope'")
        .await;
    assert!(write.is_err(), "a read-only connection accepted a write");
    // Hold the writer (its pool has one connection) inside a transaction.
    let txn = app.state.db.begin().await.expect("begin");
    txn.execute_unprepared("UPDATE users SET username = 'uncommitted'")
        .await
        .expect("update inside the transaction");
    let me = tokio::time::timeout(
        std::time::Duration::from_secs(3),
        app.get("/users/me", Some(&t.access)),
    )
    .await
    .expect("a read waited for the writer's transaction");
    me.assert_status(200);
    assert_eq!(me.body["username"], "reader");
    let list = tokio::time::timeout(
        std::time::Duration::from_secs(3),
        app.get("/employees", Some(&t.access)),
    )
    .await
    .expect("a list waited for the writer's transaction");
    list.assert_status(200);
    txn.rollback().await.expect("rollback");
    app.get("/users/me", Some(&t.access))
        .await
        .assert_status(200);
}

/// Every SQLite connection (the writer and the readers) runs with the query
/// planner stability guarantee, so statements with a bound `LIMIT` are not
/// compiled again on every execution.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_connections_keep_their_query_plans() {
    let app = spawn_app(Backend::SqliteMemory).await;
    let readers = app
        .state
        .read_pool
        .as_ref()
        .expect("SQLite has a read pool");
    for (name, db) in [("writer", &app.state.db), ("reader", readers)] {
        let mut conn = db
            .get_sqlite_connection_pool()
            .acquire()
            .await
            .expect("a connection");
        let mut handle = conn.lock_handle().await.expect("the handle");
        let mut on: std::ffi::c_int = -1;
        // SAFETY: the connection's open handle, locked; -1 only reads the option.
        let rc = unsafe {
            libsqlite3_sys::sqlite3_db_config(
                handle.as_raw_handle().as_ptr(),
                libsqlite3_sys::SQLITE_DBCONFIG_ENABLE_QPSG,
                -1 as std::ffi::c_int,
                &mut on as *mut std::ffi::c_int,
            )
        };
        assert_eq!(rc, libsqlite3_sys::SQLITE_OK, "{name}");
        assert_eq!(on, 1, "the {name}'s connection has no stable query plans");
    }
    let direct = app.state.sqlite_reads.as_ref().expect("in-place reads");
    assert!(
        direct.stable_query_plans(),
        "an in-place reader has no stable query plans"
    );
}

/// The in-place SQLite reads (`sqlite_reads`) decode what SeaORM stored into
/// the very models SeaORM reads back: users, single employees, and every
/// page of a list with its total, past the end included.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_in_place_reads_match_seaorm() {
    use tessera::paging::Paging;
    let app = spawn_app(Backend::SqliteMemory).await;
    let direct = app
        .state
        .sqlite_reads
        .as_ref()
        .expect("a file SQLite database has in-place reads");
    let reads = app.state.reads();
    let db = &app.state.db;
    let owner = app.user("inplace").await;
    let other = app.user("inplace_other").await;
    for i in 0..23 {
        app.post_json(
            "/employees",
            &serde_json::json!({"name": format!("Zoë {i} 🦀"), "position": "Dev\u{2028}ops"}),
            Some(&owner.access),
        )
        .await
        .assert_status(201);
    }
    app.post_json(
        "/employees",
        &serde_json::json!({"name": "Other's", "position": "x"}),
        Some(&other.access),
    )
    .await
    .assert_status(201);
    let owner_id: uuid::Uuid = owner.user_id.parse().expect("a uuid");
    let other_id: uuid::Uuid = other.user_id.parse().expect("a uuid");

    for id in [owner_id, other_id, uuid::Uuid::now_v7()] {
        let orm = tessera::accounts::find(db, id).await.expect("orm read");
        let direct = reads.user(id).await.expect("in-place read");
        assert_eq!(direct, orm, "user {id}");
    }
    // Short, full and probing pages; past the end in place and (offset
    // 600) on the blocking pool.
    for (page, per_page) in [
        (1, 10),
        (2, 10),
        (3, 10),
        (4, 10),
        (1, 23),
        (1, 100),
        (9, 3),
        (7, 100),
    ] {
        let paging = Paging::new(Some(page), Some(per_page)).expect("paging");
        let orm = tessera::employees::list(db, owner_id, paging)
            .await
            .expect("orm list");
        let direct = reads
            .employees(owner_id, paging)
            .await
            .expect("in-place list");
        assert_eq!(direct, orm, "page {page} of {per_page}");
        assert_eq!(direct.1, 23);
    }
    let none = Paging::new(Some(1), Some(20)).expect("paging");
    let stranger = uuid::Uuid::now_v7();
    assert_eq!(
        reads.employees(stranger, none).await.expect("empty"),
        (vec![], 0)
    );
    let (items, _) = reads.employees(owner_id, none).await.expect("list");
    for e in &items {
        let orm = tessera::employees::get(db, owner_id, e.id)
            .await
            .expect("orm get");
        assert_eq!(&direct.employee(owner_id, e.id).expect("in-place get"), e);
        assert_eq!(&orm, e);
        // Another owner's employee is not found, on both paths.
        assert!(direct.employee(other_id, e.id).is_err());
    }
}
