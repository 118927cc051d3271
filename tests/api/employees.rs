//! Employees: owned records, isolation between users, cascade with the owner.

use reqwest::Method;
use sea_orm::{ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::helpers::{Backend, Resp, TestApp, spawn_app};

const EMPLOYEE_KEYS: [&str; 6] = [
    "id",
    "name",
    "position",
    "owner_id",
    "created_at",
    "updated_at",
];

async fn create(app: &TestApp, token: &str, name: &str, position: &str) -> Resp {
    app.post_json(
        "/employees",
        &json!({"name": name, "position": position}),
        Some(token),
    )
    .await
}

/// Creates an employee and returns its body.
async fn employee(app: &TestApp, token: &str, name: &str, position: &str) -> Value {
    let r = create(app, token, name, position).await;
    r.assert_status(201);
    r.body
}

fn id_of(v: &Value) -> String {
    v["id"].as_str().expect("employee id").to_owned()
}

async fn get_employee(app: &TestApp, token: &str, id: &str) -> Resp {
    app.get(&format!("/employees/{id}"), Some(token)).await
}

/// The stored record as the owner sees it equals `expected` (all fields,
/// `updated_at` included).
#[track_caller]
fn assert_same(actual: &Resp, expected: &Value) {
    actual.assert_status(200);
    assert_eq!(&actual.body, expected, "the record changed");
}

async fn list(app: &TestApp, token: &str, query: &str) -> Resp {
    app.get(&format!("/employees{query}"), Some(token)).await
}

async fn total(app: &TestApp, token: &str) -> u64 {
    let r = list(app, token, "").await;
    r.assert_status(200);
    r.body["total"].as_u64().expect("total")
}

async fn db_count(app: &TestApp, owner: &str) -> u64 {
    let owner = Uuid::parse_str(owner).unwrap();
    entity::employee::Entity::find()
        .filter(entity::employee::Column::OwnerId.eq(owner))
        .count(&app.state.db)
        .await
        .expect("count employees")
}

// ---------------------------------------------------------------- tests

async fn crud_round_trip(b: Backend) {
    let app = spawn_app(b).await;
    let ann = app.user("ann").await;

    let r = create(&app, &ann.access, "Ada Lovelace", "Engineer").await;
    r.assert_status(201);
    let e = r.body.clone();
    let id = id_of(&e);
    assert_eq!(
        r.header("location"),
        Some(format!("/employees/{id}").as_str()),
        "{r:?}"
    );
    assert!(
        r.header("content-type")
            .is_some_and(|c| c.starts_with("application/json"))
    );
    let keys: Vec<&str> = e.as_object().unwrap().keys().map(String::as_str).collect();
    let mut sorted_keys = keys.clone();
    sorted_keys.sort_unstable();
    let mut expected_keys = EMPLOYEE_KEYS.to_vec();
    expected_keys.sort_unstable();
    assert_eq!(sorted_keys, expected_keys, "{e}");
    assert!(Uuid::parse_str(&id).is_ok_and(|u| u.get_version_num() == 7));
    assert_eq!(e["name"], "Ada Lovelace");
    assert_eq!(e["position"], "Engineer");
    assert_eq!(e["owner_id"], ann.user_id.as_str());
    for k in ["created_at", "updated_at"] {
        assert!(
            e[k].as_str()
                .is_some_and(|t| chrono::DateTime::parse_from_rfc3339(t).is_ok()),
            "{k}: {e}"
        );
    }

    // GET returns it as created.
    assert_same(&get_employee(&app, &ann.access, &id).await, &e);
    let l = list(&app, &ann.access, "").await;
    l.assert_status(200);
    assert_eq!(l.body["total"], 1);
    assert_eq!(l.body["items"], json!([e.clone()]));

    // PATCH changes only the fields sent.
    let r = app
        .send_json(
            Method::PATCH,
            &format!("/employees/{id}"),
            &json!({"name": "Ada King"}),
            Some(&ann.access),
        )
        .await;
    r.assert_status(200);
    assert_eq!(r.body["name"], "Ada King");
    assert_eq!(r.body["position"], "Engineer");
    assert_eq!(r.body["id"], id.as_str());
    assert_eq!(r.body["owner_id"], ann.user_id.as_str());
    assert_eq!(r.body["created_at"], e["created_at"]);
    assert_same(&get_employee(&app, &ann.access, &id).await, &r.body);

    // null leaves a field unchanged.
    let r = app
        .send_json(
            Method::PATCH,
            &format!("/employees/{id}"),
            &json!({"name": null, "position": "Countess"}),
            Some(&ann.access),
        )
        .await;
    r.assert_status(200);
    assert_eq!(r.body["name"], "Ada King");
    assert_eq!(r.body["position"], "Countess");
    assert_same(&get_employee(&app, &ann.access, &id).await, &r.body);

    // An empty PATCH changes nothing at all.
    let before = r.body.clone();
    let r = app
        .send_json(
            Method::PATCH,
            &format!("/employees/{id}"),
            &json!({}),
            Some(&ann.access),
        )
        .await;
    assert_same(&r, &before);
    let r = app
        .send_json(
            Method::PATCH,
            &format!("/employees/{id}"),
            &json!({"name": null, "position": null}),
            Some(&ann.access),
        )
        .await;
    assert_same(&r, &before);
    assert_same(&get_employee(&app, &ann.access, &id).await, &before);

    // PUT has the same semantics: only what is sent changes.
    let r = app
        .send_json(
            Method::PUT,
            &format!("/employees/{id}"),
            &json!({"position": "Mathematician"}),
            Some(&ann.access),
        )
        .await;
    r.assert_status(200);
    assert_eq!(r.body["name"], "Ada King");
    assert_eq!(r.body["position"], "Mathematician");
    let r = app
        .send_json(
            Method::PUT,
            &format!("/employees/{id}"),
            &json!({"name": "Ada", "position": null}),
            Some(&ann.access),
        )
        .await;
    r.assert_status(200);
    assert_eq!(r.body["name"], "Ada");
    assert_eq!(r.body["position"], "Mathematician");
    assert_same(&get_employee(&app, &ann.access, &id).await, &r.body);

    // A non-fresh access token is enough for employees.
    let stale = app.non_fresh(&ann).await.access;
    get_employee(&app, &stale, &id).await.assert_status(200);

    // DELETE, then it is gone.
    let r = app.delete(&format!("/employees/{id}"), Some(&stale)).await;
    r.assert_status(204);
    assert!(r.text.is_empty(), "204 with a body: {r:?}");
    get_employee(&app, &ann.access, &id)
        .await
        .assert_error(404, "NotFound");
    app.delete(&format!("/employees/{id}"), Some(&ann.access))
        .await
        .assert_error(404, "NotFound");
    app.send_json(
        Method::PATCH,
        &format!("/employees/{id}"),
        &json!({"name": "Back"}),
        Some(&ann.access),
    )
    .await
    .assert_error(404, "NotFound");
    app.send_json(
        Method::PUT,
        &format!("/employees/{id}"),
        &json!({"name": "Back"}),
        Some(&ann.access),
    )
    .await
    .assert_error(404, "NotFound");
    let l = list(&app, &ann.access, "").await;
    assert_eq!(l.body["total"], 0);
    assert_eq!(l.body["items"], json!([]));
    assert_eq!(db_count(&app, &ann.user_id).await, 0);
}

async fn other_users_employees_are_not_found(b: Backend) {
    let app = spawn_app(b).await;
    let ann = app.user("ann").await;
    let bob = app.user("bob").await;
    let e = employee(&app, &ann.access, "Ada", "Engineer").await;
    let id = id_of(&e);
    let bobs = employee(&app, &bob.access, "Bert", "Clerk").await;
    let path = format!("/employees/{id}");

    get_employee(&app, &bob.access, &id)
        .await
        .assert_error(404, "NotFound");
    for method in [Method::PATCH, Method::PUT] {
        app.send_json(
            method.clone(),
            &path,
            &json!({"name": "Hijacked", "position": "Owned"}),
            Some(&bob.access),
        )
        .await
        .assert_error(404, "NotFound");
        // An empty body does not reveal the record either.
        app.send_json(method, &path, &json!({}), Some(&bob.access))
            .await
            .assert_error(404, "NotFound");
    }
    app.delete(&path, Some(&bob.access))
        .await
        .assert_error(404, "NotFound");

    // Same answer as for an id that does not exist at all.
    let missing = Uuid::now_v7().to_string();
    let unknown = get_employee(&app, &bob.access, &missing).await;
    unknown.assert_error(404, "NotFound");
    let foreign = get_employee(&app, &bob.access, &id).await;
    assert_eq!(foreign.body["message"], unknown.body["message"]);

    // Bob's list holds only his own.
    let l = list(&app, &bob.access, "").await;
    l.assert_status(200);
    assert_eq!(l.body["total"], 1);
    assert_eq!(l.body["items"], json!([bobs]));
    assert!(!l.text.contains(&id));

    // Ann's record is untouched and still hers.
    assert_same(&get_employee(&app, &ann.access, &id).await, &e);
    let l = list(&app, &ann.access, "").await;
    assert_eq!(l.body["total"], 1);
    assert_eq!(l.body["items"], json!([e]));
    assert_eq!(db_count(&app, &ann.user_id).await, 1);
    assert_eq!(db_count(&app, &bob.user_id).await, 1);

    // And Ann cannot touch Bob's.
    let bob_id = id_of(&bobs);
    app.delete(&format!("/employees/{bob_id}"), Some(&ann.access))
        .await
        .assert_error(404, "NotFound");
    assert_same(&get_employee(&app, &bob.access, &bob_id).await, &bobs);
}

async fn list_is_paged_newest_first(b: Backend) {
    let app = spawn_app(b).await;
    let ann = app.user("ann").await;
    let bob = app.user("bob").await;
    employee(&app, &bob.access, "Bob's", "Noise").await;

    let mut ids = Vec::new();
    for i in 0..25 {
        let e = employee(&app, &ann.access, &format!("E{i:02}"), "Staff").await;
        ids.push(id_of(&e));
    }
    let newest_first: Vec<String> = ids.iter().rev().cloned().collect();
    let names = |r: &Resp| -> Vec<String> {
        r.body["items"]
            .as_array()
            .expect("items")
            .iter()
            .map(|e| e["id"].as_str().unwrap().to_owned())
            .collect()
    };

    // Default: page 1, 20 per page.
    let r = list(&app, &ann.access, "").await;
    r.assert_status(200);
    assert_eq!(r.body["page"], 1);
    assert_eq!(r.body["per_page"], 20);
    assert_eq!(r.body["total"], 25);
    assert_eq!(names(&r), newest_first[..20].to_vec(), "newest first");
    assert_eq!(r.body["items"][0]["name"], "E24");

    let r = list(&app, &ann.access, "?page=2").await;
    r.assert_status(200);
    assert_eq!(r.body["page"], 2);
    assert_eq!(r.body["per_page"], 20);
    assert_eq!(r.body["total"], 25);
    assert_eq!(names(&r), newest_first[20..].to_vec());

    let mut seen = Vec::new();
    for page in 1..=3 {
        let r = list(&app, &ann.access, &format!("?page={page}&per_page=10")).await;
        r.assert_status(200);
        assert_eq!(r.body["page"], page);
        assert_eq!(r.body["per_page"], 10);
        assert_eq!(r.body["total"], 25);
        seen.extend(names(&r));
    }
    assert_eq!(
        seen, newest_first,
        "pages are disjoint, stable and complete"
    );

    for (q, page, per_page) in [("?per_page=1", 1, 1), ("?per_page=100", 1, 100)] {
        let r = list(&app, &ann.access, q).await;
        r.assert_status(200);
        assert_eq!(
            (r.body["page"].clone(), r.body["per_page"].clone()),
            (json!(page), json!(per_page))
        );
        assert_eq!(r.body["total"], 25);
    }
    let r = list(&app, &ann.access, "?per_page=100").await;
    assert_eq!(names(&r), newest_first);
    let r = list(&app, &ann.access, "?per_page=1&page=25").await;
    assert_eq!(names(&r), vec![ids[0].clone()], "the oldest is last");

    // Past the end: empty, with the right total.
    for q in ["?page=3", "?page=4&per_page=10", "?page=1000"] {
        let r = list(&app, &ann.access, q).await;
        r.assert_status(200);
        assert_eq!(r.body["items"], json!([]), "{q}");
        assert_eq!(r.body["total"], 25, "{q}");
    }

    // A huge page number is no crash: an empty page (or a 400), never a 500.
    for q in [
        "?page=9223372036854775807",
        "?page=9223372036854775807&per_page=100",
    ] {
        let r = list(&app, &ann.access, q).await;
        if r.status == 200 {
            assert_eq!(r.body["items"], json!([]), "{q}");
            assert_eq!(r.body["total"], 25, "{q}");
        } else {
            r.assert_error(400, "BadRequest");
        }
    }

    // Bad parameters.
    for q in [
        "?page=99999999999999999999",
        // One past the schema's maximum (2^53 - 1).
        "?page=9007199254740992",
        "?per_page=0",
        "?per_page=101",
        "?per_page=-1",
        "?per_page=x",
        "?page=0",
        "?page=-1",
        "?page=x",
        "?page=1.5",
    ] {
        list(&app, &ann.access, q)
            .await
            .assert_error(400, "BadRequest");
    }
    // Authentication comes before parameters.
    app.get("/employees?page=0", None)
        .await
        .assert_error(401, "TokenMissing");
}

async fn validation_failures_change_nothing(b: Backend) {
    let app = spawn_app(b).await;
    let ann = app.user("ann").await;
    let long = "x".repeat(101);
    let umlauts = "ü".repeat(100);

    // Invalid values: 422 with the fields named.
    for (body, fields) in [
        (json!({"name": "", "position": "Engineer"}), vec!["name"]),
        (json!({"name": "Ada", "position": ""}), vec!["position"]),
        (json!({"name": long, "position": "Engineer"}), vec!["name"]),
        (json!({"name": "Ada", "position": long}), vec!["position"]),
        (
            json!({"name": "ü".repeat(101), "position": "Engineer"}),
            vec!["name"],
        ),
        (
            json!({"name": "", "position": long}),
            vec!["name", "position"],
        ),
    ] {
        let r = app.post_json("/employees", &body, Some(&ann.access)).await;
        r.assert_error(422, "ValidationFailed");
        let got = r.body["fields"].as_object().expect("fields");
        let mut got: Vec<&str> = got.keys().map(String::as_str).collect();
        got.sort_unstable();
        assert_eq!(got, fields, "{body}: {r:?}");
        for f in fields {
            assert!(r.body["fields"][f].is_string(), "{r:?}");
        }
        assert!(r.header("location").is_none());
    }

    // Wrong types or missing fields: 400.
    for body in [
        json!({"name": 5, "position": "Engineer"}),
        json!({"name": "Ada", "position": true}),
        json!({"name": ["Ada"], "position": "Engineer"}),
        json!({"name": null, "position": "Engineer"}),
        json!({"position": "Engineer"}),
        json!({"name": "Ada"}),
        json!({}),
        json!([]),
        json!("Ada"),
    ] {
        app.post_json("/employees", &body, Some(&ann.access))
            .await
            .assert_error(400, "BadRequest");
    }
    let r = app
        .send(
            app.request(Method::POST, "/employees", Some(&ann.access))
                .header("content-type", "application/json")
                .body("{\"name\": \"Ada\","),
        )
        .await;
    r.assert_error(400, "BadRequest");

    let r = app
        .send(
            app.request(Method::POST, "/employees", Some(&ann.access))
                .header("content-type", "text/plain")
                .body(r#"{"name": "Ada", "position": "Engineer"}"#),
        )
        .await;
    r.assert_error(415, "UnsupportedMediaType");

    // Nothing was created.
    assert_eq!(total(&app, &ann.access).await, 0);
    assert_eq!(db_count(&app, &ann.user_id).await, 0);

    // Boundaries: 100 scalar values (200 bytes) and 1 character are valid.
    let r = create(&app, &ann.access, &umlauts, &umlauts).await;
    r.assert_status(201);
    assert_eq!(r.body["name"], umlauts.as_str());
    assert_eq!(r.body["position"], umlauts.as_str());
    let e = employee(&app, &ann.access, "A", &"y".repeat(100)).await;
    let id = id_of(&e);
    assert_eq!(total(&app, &ann.access).await, 2);
    let stored = get_employee(&app, &ann.access, &id_of(&r.body)).await;
    assert_eq!(stored.body["name"], umlauts.as_str());

    // A failed update leaves the stored record as it was.
    let path = format!("/employees/{id}");
    for method in [Method::PATCH, Method::PUT] {
        for (body, field) in [
            (json!({"name": ""}), "name"),
            (json!({"position": long}), "position"),
            (json!({"name": "Fine", "position": ""}), "position"),
            (json!({"name": long, "position": "Fine"}), "name"),
        ] {
            let r = app
                .send_json(method.clone(), &path, &body, Some(&ann.access))
                .await;
            r.assert_error(422, "ValidationFailed");
            assert!(r.body["fields"][field].is_string(), "{body}: {r:?}");
            assert_same(&get_employee(&app, &ann.access, &id).await, &e);
        }
        for body in [
            json!({"name": 1}),
            json!({"position": false}),
            json!({"name": "Fine", "position": 7}),
            json!({"name": {"first": "Ada"}}),
            json!([]),
        ] {
            app.send_json(method.clone(), &path, &body, Some(&ann.access))
                .await
                .assert_error(400, "BadRequest");
            assert_same(&get_employee(&app, &ann.access, &id).await, &e);
        }
    }
    // Body before resource: an invalid body on an unknown id is 422.
    let missing = format!("/employees/{}", Uuid::now_v7());
    app.send_json(
        Method::PATCH,
        &missing,
        &json!({"name": ""}),
        Some(&ann.access),
    )
    .await
    .assert_error(422, "ValidationFailed");
    app.send_json(
        Method::PATCH,
        &missing,
        &json!({"name": "Ok"}),
        Some(&ann.access),
    )
    .await
    .assert_error(404, "NotFound");

    // A valid 100 x "ü" update works.
    let r = app
        .send_json(
            Method::PATCH,
            &path,
            &json!({"position": umlauts}),
            Some(&ann.access),
        )
        .await;
    r.assert_status(200);
    assert_eq!(r.body["position"], umlauts.as_str());
    assert_eq!(r.body["name"], "A");
}

async fn bad_ids_and_missing_tokens(b: Backend) {
    let app = spawn_app(b).await;
    let ann = app.user("ann").await;
    let e = employee(&app, &ann.access, "Ada", "Engineer").await;
    let id = id_of(&e);

    for bad in ["not-a-uuid", "123", "0000-0000"] {
        let path = format!("/employees/{bad}");
        app.get(&path, Some(&ann.access))
            .await
            .assert_error(400, "BadRequest");
        app.delete(&path, Some(&ann.access))
            .await
            .assert_error(400, "BadRequest");
        for method in [Method::PATCH, Method::PUT] {
            app.send_json(method, &path, &json!({"name": "X"}), Some(&ann.access))
                .await
                .assert_error(400, "BadRequest");
        }
    }

    // No token: 401 TokenMissing everywhere, before any parameter check.
    let path = format!("/employees/{id}");
    app.get("/employees", None)
        .await
        .assert_error(401, "TokenMissing");
    app.post_json(
        "/employees",
        &json!({"name": "Ada", "position": "Engineer"}),
        None,
    )
    .await
    .assert_error(401, "TokenMissing");
    app.post_json("/employees", &json!({"name": 5}), None)
        .await
        .assert_error(401, "TokenMissing");
    for p in [path.as_str(), "/employees/not-a-uuid"] {
        app.get(p, None).await.assert_error(401, "TokenMissing");
        app.delete(p, None).await.assert_error(401, "TokenMissing");
        for method in [Method::PATCH, Method::PUT] {
            app.send_json(method, p, &json!({"name": "X"}), None)
                .await
                .assert_error(401, "TokenMissing");
        }
    }
    // Another scheme is no token either; a refresh token is no access token.
    let r = app
        .send(
            app.client
                .get(app.url("/employees"))
                .header("authorization", "Basic YW5uOnB3"),
        )
        .await;
    r.assert_error(401, "TokenMissing");
    app.get("/employees", Some(&ann.refresh))
        .await
        .assert_error(401, "TokenInvalid");
    app.delete(&path, Some(&ann.refresh))
        .await
        .assert_error(401, "TokenInvalid");

    // A revoked token: 401 TokenRevoked.
    app.post("/auth/logout", Some(&ann.access))
        .await
        .assert_status(204);
    app.get(&path, Some(&ann.access))
        .await
        .assert_error(401, "TokenRevoked");

    // The record survived all of it.
    let again = app.login("ann").await;
    assert_same(&get_employee(&app, &again.access, &id).await, &e);
    assert_eq!(db_count(&app, &ann.user_id).await, 1);
}

async fn deleting_the_user_deletes_their_employees(b: Backend) {
    let app = spawn_app(b).await;
    let ann = app.user("ann").await;
    let bob = app.user("bob").await;
    let mut ann_ids = Vec::new();
    for i in 0..3 {
        ann_ids.push(id_of(
            &employee(&app, &ann.access, &format!("Ann {i}"), "Staff").await,
        ));
    }
    let bobs = [
        employee(&app, &bob.access, "Bob 0", "Staff").await,
        employee(&app, &bob.access, "Bob 1", "Staff").await,
    ];
    assert_eq!(db_count(&app, &ann.user_id).await, 3);
    assert_eq!(db_count(&app, &bob.user_id).await, 2);

    app.delete("/users/me", Some(&ann.access))
        .await
        .assert_status(204);

    // The foreign key cascaded (on SQLite only when foreign keys are on).
    assert_eq!(
        db_count(&app, &ann.user_id).await,
        0,
        "the deleted user's employees remain in the database"
    );
    for id in &ann_ids {
        let id = Uuid::parse_str(id).unwrap();
        let row = entity::employee::Entity::find_by_id(id)
            .one(&app.state.db)
            .await
            .expect("query employee");
        assert!(row.is_none(), "employee {id} survived its owner");
    }
    // Bob's are untouched.
    assert_eq!(db_count(&app, &bob.user_id).await, 2);
    let total_rows = entity::employee::Entity::find()
        .count(&app.state.db)
        .await
        .unwrap();
    assert_eq!(total_rows, 2);
    let l = list(&app, &bob.access, "").await;
    l.assert_status(200);
    assert_eq!(l.body["total"], 2);
    assert_eq!(l.body["items"], json!([bobs[1].clone(), bobs[0].clone()]));

    // Ann's tokens are dead.
    app.get("/employees", Some(&ann.access))
        .await
        .assert_error(401, "TokenRevoked");

    // The same name registers afresh with no employees.
    let ann2 = app.user("ann").await;
    assert_ne!(ann2.user_id, ann.user_id);
    assert_eq!(total(&app, &ann2.access).await, 0);
    get_employee(&app, &ann2.access, &ann_ids[0])
        .await
        .assert_error(404, "NotFound");
}

crate::both_backends!(
    crud_round_trip,
    other_users_employees_are_not_found,
    list_is_paged_newest_first,
    validation_failures_change_nothing,
    bad_ids_and_missing_tokens,
    deleting_the_user_deletes_their_employees,
);
