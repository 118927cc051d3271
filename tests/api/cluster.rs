//! The token store on a Redis Cluster that changes under it: slots moving
//! (MOVED/ASK), a manual failover and a master killed and restarted, all
//! without restarting Tessera. Tokens issued before each change keep
//! working after it, and nothing in between is a 500 (an unreachable slot
//! is a fail-closed 503).

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use crate::helpers::{Backend, TestApp, Tokens, cluster::RedisCluster, spawn_app_with};

/// Verifies every token, repeating until all answer 200 (a slot's new owner
/// may take a moment to be known), within `within`.
async fn all_verify(app: &TestApp, users: &[Tokens], when: &str, within: Duration) {
    let deadline = Instant::now() + within;
    loop {
        let mut bad = Vec::new();
        for t in users {
            let r = app.verify(&t.access).await;
            if r.status != 200 {
                bad.push((r.status, r.body["code"].clone()));
            }
        }
        if bad.is_empty() {
            return;
        }
        assert!(
            bad.iter().all(|(s, _)| *s == 503),
            "{when}: a token was refused or errored: {bad:?}"
        );
        assert!(
            Instant::now() < deadline,
            "{when}: tokens still unverifiable: {bad:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Verifies tokens in a loop until `stop`; every status seen.
fn background_load(
    app: &Arc<TestApp>,
    users: &[Tokens],
    stop: &Arc<AtomicBool>,
) -> tokio::task::JoinHandle<Vec<u16>> {
    let (app, stop) = (app.clone(), stop.clone());
    let tokens: Vec<String> = users.iter().map(|t| t.access.clone()).collect();
    tokio::spawn(async move {
        let mut seen = Vec::new();
        while !stop.load(Ordering::SeqCst) {
            for t in &tokens {
                seen.push(app.verify(t).await.status.as_u16());
            }
        }
        seen
    })
}

/// Logs in, repeating while the answer is a fail-closed 503 (a login
/// touches several slots, one of which may still be changing hands).
async fn login_eventually(app: &TestApp, name: &str, within: Duration) -> Tokens {
    let deadline = Instant::now() + within;
    loop {
        let r = app
            .login_email(&format!("{name}@example.com"), crate::helpers::PASSWORD)
            .await;
        if r.status == 200 {
            return Tokens {
                access: r.str("access_token"),
                refresh: r.str("refresh_token"),
                user_id: r.str("user_id"),
            };
        }
        r.assert_error(503, "ServiceUnavailable");
        assert!(Instant::now() < deadline, "no login within {within:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn node_id(cluster: &RedisCluster, port: u16) -> String {
    cluster.cli(port, &["cluster", "myid"]).trim().to_owned()
}

/// The master port a replica follows (`ROLE` of a replica: slave, ip, port…).
fn master_of(cluster: &RedisCluster, replica: u16) -> u16 {
    let role = cluster.cli(replica, &["role"]);
    role.lines()
        .nth(2)
        .and_then(|l| l.trim().parse().ok())
        .unwrap_or_else(|| panic!("cannot read the master of {replica}: {role}"))
}

async fn blocking<T: Send + 'static>(what: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(f)
        .await
        .unwrap_or_else(|e| panic!("{what}: {e}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_survives_resharding_failover_and_restart() {
    let cluster = blocking("cluster start", || {
        RedisCluster::start(3, 1, crate::helpers::cluster::FAILOVER_NODE_TIMEOUT_MS)
    })
    .await;
    let url = cluster.url();
    let cluster = Arc::new(parking_lot::Mutex::new(cluster));
    let app = Arc::new(
        spawn_app_with(Backend::PostgresCluster, |c| {
            c.redis_url = Some(url);
            c.redis_cluster = true;
        })
        .await,
    );
    let mut users = Vec::new();
    for i in 0..6 {
        users.push(app.user(&format!("user{i}")).await);
    }
    all_verify(&app, &users, "at start", Duration::from_secs(5)).await;

    // 1. Slots move from one master to another while requests run: the
    // client follows MOVED (and ASK for a slot in migration).
    let stop = Arc::new(AtomicBool::new(false));
    let load = background_load(&app, &users, &stop);
    let c = cluster.clone();
    blocking("resharding", move || {
        let c = c.lock();
        let (masters, _) = c.roles();
        let (from, to) = (node_id(&c, masters[0]), node_id(&c, masters[1]));
        let out = std::process::Command::new("redis-cli")
            .args(["--cluster", "reshard", &format!("127.0.0.1:{}", masters[0])])
            .args(["--cluster-from", &from, "--cluster-to", &to])
            .args(["--cluster-slots", "2000", "--cluster-yes"])
            .stdin(std::process::Stdio::null())
            .output()
            .expect("redis-cli --cluster reshard");
        assert!(
            out.status.success(),
            "reshard failed: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        c.wait_until_ok(Duration::from_secs(30));
    })
    .await;
    stop.store(true, Ordering::SeqCst);
    let seen = load.await.expect("load task");
    assert!(
        seen.iter().all(|s| *s == 200 || *s == 503),
        "during resharding: {seen:?}"
    );
    all_verify(&app, &users, "after resharding", Duration::from_secs(10)).await;
    // Writes land on the new owners: a refresh and a logout of each user.
    for t in &users[..3] {
        app.refresh(&t.refresh).await.assert_status(200);
    }
    app.post("/auth/logout", Some(&users[5].access))
        .await
        .assert_status(204);
    app.verify(&users[5].access)
        .await
        .assert_error(401, "TokenRevoked");
    let users = users[..5].to_vec();

    // 2. A manual failover: a replica takes over its master's slots.
    let c = cluster.clone();
    blocking("manual failover", move || {
        let c = c.lock();
        let (_, replicas) = c.roles();
        let replica = replicas[0];
        let old_master = master_of(&c, replica);
        c.cli(replica, &["cluster", "failover"]);
        let deadline = Instant::now() + Duration::from_secs(30);
        while !c.cli(replica, &["role"]).starts_with("master") {
            assert!(
                Instant::now() < deadline,
                "failover to {replica} never happened"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        assert_ne!(old_master, replica);
        c.wait_until_ok(Duration::from_secs(30));
    })
    .await;
    all_verify(&app, &users, "after the failover", Duration::from_secs(15)).await;

    // 3. A master dies: its replica is promoted; then the dead node comes
    // back (as a replica of its successor).
    let c = cluster.clone();
    let killed = blocking("killing a master", move || {
        let mut c = c.lock();
        let (masters, replicas) = c.roles();
        // A master that has a replica, so its slots survive.
        let victim = *masters
            .iter()
            .find(|m| replicas.iter().any(|r| master_of(&c, *r) == **m))
            .expect("a master with a replica");
        // Let replication catch up before the kill.
        std::thread::sleep(Duration::from_millis(500));
        c.kill(victim);
        c.wait_until_ok(Duration::from_secs(30));
        victim
    })
    .await;
    // 40 s: under the whole suite's load the client's topology refresh after a
    // failover has taken over 20 s.
    all_verify(&app, &users, "after a master died", Duration::from_secs(40)).await;
    // A login touches more slots than a verify (the session, the user's
    // index and three limit counters): it waits for every master to be
    // served again, which under the whole suite's load took over 20 s once.
    let fresh = login_eventually(&app, "user0", Duration::from_secs(40)).await;
    app.verify(&fresh.access).await.assert_status(200);

    let c = cluster.clone();
    blocking("restarting it", move || {
        let mut c = c.lock();
        c.restart(killed);
        c.wait_until_ok(Duration::from_secs(30));
    })
    .await;
    all_verify(&app, &users, "after the restart", Duration::from_secs(20)).await;
    app.get("/readyz", None).await.assert_status(200);
    app.post("/auth/logout-all", Some(&fresh.access))
        .await
        .assert_status(204);
    app.assert_revoked(&[&fresh, &users[0]], "/users/me").await;
}
