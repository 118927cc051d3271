//! Fair shares of password hashing (API.md, "Precise rules"): a flood of
//! logins with correct passwords of the flooders' own accounts, from two
//! addresses, leaves a third address's logins answered 200 (issue 18, item
//! 3: today 503 for most of them).

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use reqwest::Method;
use serde_json::json;

use crate::helpers::{Backend, PASSWORD, Resp, TestApp, spawn_app_with};

const FLOODERS: [&str; 2] = ["203.0.113.10", "203.0.113.20"];
const BYSTANDER: &str = "198.51.100.30";
const ACCOUNTS_PER_FLOODER: usize = 4;
const TASKS_PER_ACCOUNT: usize = 8;

async fn login_from(app: &TestApp, name: &str, at: &str) -> Resp {
    let req = app
        .request(Method::POST, "/auth/login", None)
        .header("x-forwarded-for", at)
        .json(&json!({"username": name, "password": PASSWORD}));
    app.send(req).await
}

/// One hashing thread, so 2 x 4 x 8 = 64 concurrent logins are about twice
/// the hashing queue (33): without fair shares it is full most of the
/// time, and the bystander gets 503.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_login_flood_from_two_addresses_leaves_a_third_its_logins() {
    let app = spawn_app_with(Backend::SqliteMemory, |c| {
        c.trust_forwarded = true;
        c.hash_threads = 1;
        c.register_per_ip = 0;
        // Every login is a success: no counter is in play, only hashing.
        c.max_sessions_per_user = 0;
    })
    .await;
    let mut names = Vec::new();
    for (i, at) in FLOODERS.iter().enumerate() {
        for a in 0..ACCOUNTS_PER_FLOODER {
            let name = format!("flood{i}x{a}");
            app.register(&name, &format!("{name}@example.com"), PASSWORD)
                .await
                .assert_status(201);
            names.push((name, *at));
        }
    }
    app.register("bystander", "bystander@example.com", PASSWORD)
        .await
        .assert_status(201);

    let stop = Arc::new(AtomicBool::new(false));
    let mut flood = Vec::new();
    for (name, at) in &names {
        for _ in 0..TASKS_PER_ACCOUNT {
            let (app, stop, name, at) = (app.clone(), stop.clone(), name.clone(), *at);
            flood.push(tokio::spawn(async move {
                let mut statuses = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    statuses.push(login_from(&app, &name, at).await.status.as_u16());
                }
                statuses
            }));
        }
    }
    // Let the flood fill what it can.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut answers = Vec::new();
    let started = Instant::now();
    for _ in 0..12 {
        let r = login_from(&app, "bystander", BYSTANDER).await;
        answers.push((r.status.as_u16(), r.body["code"].clone()));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let bystander_time = started.elapsed();
    stop.store(true, Ordering::Relaxed);
    let mut flooded = Vec::new();
    for task in flood {
        flooded.extend(task.await.expect("flood task"));
    }
    let count = |s: u16| flooded.iter().filter(|x| **x == s).count();
    let (ok, limited, unavailable) = (count(200), count(429), count(503));
    eprintln!(
        "flood: {ok} x 200, {limited} x 429, {unavailable} x 503 of {}; bystander: {answers:?} in {bystander_time:?}",
        flooded.len()
    );
    assert!(
        answers.iter().all(|(s, _)| *s == 200),
        "the bystander's logins during the flood: {answers:?}"
    );
    // The flood was real: the flooders were refused beyond their share, and
    // still got logins of their own through.
    assert!(limited > 0, "no 429 for the flooders");
    assert!(ok > 0, "the flooders got nothing through");
    assert_eq!(unavailable, 0, "the queue overflowed: {unavailable} x 503");
}
