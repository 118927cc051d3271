//! A private Redis Cluster on loopback: `masters` masters, each with
//! `replicas_per_master` replicas, made with `redis-cli --cluster create`.

use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::OnceLock,
    time::{Duration, Instant},
};

use super::{Cleanup, register_cleanup, wait_for_port};

/// How long a node may be unreachable before the cluster marks it failed.
/// Short for the failover test; long for the shared cluster, which has no
/// replicas and must not go down because a loaded machine was slow to
/// answer a gossip ping.
pub const FAILOVER_NODE_TIMEOUT_MS: u64 = 3000;
const SHARED_NODE_TIMEOUT_MS: u64 = 30_000;

pub struct RedisCluster {
    pub ports: Vec<u16>,
    node_timeout_ms: u64,
    children: Vec<Option<Child>>,
    dir: PathBuf,
}

/// A node port whose cluster bus port (port + 10000) is free too.
fn cluster_port() -> u16 {
    for _ in 0..200 {
        let port = super::free_port();
        if port >= 55536 {
            continue;
        }
        let both = std::net::TcpListener::bind(("127.0.0.1", port))
            .and_then(|a| std::net::TcpListener::bind(("127.0.0.1", port + 10000)).map(|b| (a, b)));
        if both.is_ok() {
            return port;
        }
    }
    panic!("no free loopback port below 55536 with a free cluster bus port");
}

fn redis_cli(port: u16, args: &[&str]) -> String {
    let out = Command::new("redis-cli")
        .args(["-h", "127.0.0.1", "-p", &port.to_string()])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run redis-cli ({e}): install it with `apt-get install redis-server` \
                 (scripts/test does this)"
            )
        });
    String::from_utf8_lossy(&out.stdout).into_owned()
}

impl RedisCluster {
    pub fn start(masters: usize, replicas_per_master: usize, node_timeout_ms: u64) -> Self {
        let dir = std::env::temp_dir().join(format!("tessera-cluster-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).expect("cluster temp dir");
        let n = masters * (1 + replicas_per_master);
        let mut cluster = Self {
            ports: Vec::with_capacity(n),
            node_timeout_ms,
            children: Vec::with_capacity(n),
            dir,
        };
        // Ports are picked one by one and each node binds its own at once,
        // so two picks never collide.
        for _ in 0..n {
            let port = cluster_port();
            let child = cluster.spawn(port);
            wait_for_port(port, "redis-server (cluster node)");
            cluster.ports.push(port);
            cluster.children.push(Some(child));
        }
        let nodes: Vec<String> = cluster
            .ports
            .iter()
            .map(|p| format!("127.0.0.1:{p}"))
            .collect();
        let mut create = Command::new("redis-cli");
        create.arg("--cluster").arg("create").args(&nodes);
        if replicas_per_master > 0 {
            create
                .arg("--cluster-replicas")
                .arg(replicas_per_master.to_string());
        }
        let out = create
            .arg("--cluster-yes")
            .stdin(Stdio::null())
            .output()
            .expect("redis-cli --cluster create");
        assert!(
            out.status.success(),
            "redis-cli --cluster create failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        cluster.wait_until_ok(Duration::from_secs(30));
        cluster
    }

    fn spawn(&self, port: u16) -> Child {
        let conf = self.dir.join(format!("nodes-{port}.conf"));
        let port = port.to_string();
        let conf = conf.to_string_lossy();
        let timeout = self.node_timeout_ms.to_string();
        super::spawn_redis_server(
            Some(&self.dir),
            &[
                "--port",
                &port,
                "--cluster-enabled",
                "yes",
                "--cluster-config-file",
                &conf,
                "--cluster-node-timeout",
                &timeout,
            ],
        )
    }

    /// The seed list for `REDIS_URL` with `TESSERA_REDIS_CLUSTER=true`.
    pub fn url(&self) -> String {
        self.ports
            .iter()
            .map(|p| format!("redis://127.0.0.1:{p}"))
            .collect::<Vec<_>>()
            .join(",")
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Waits until every running node reports `cluster_state:ok` with all
    /// slots served.
    pub fn wait_until_ok(&self, within: Duration) {
        let deadline = Instant::now() + within;
        loop {
            let ok = self
                .ports
                .iter()
                .zip(&self.children)
                .filter(|(_, c)| c.is_some())
                .all(|(p, _)| {
                    let info = redis_cli(*p, &["cluster", "info"]);
                    info.contains("cluster_state:ok") && info.contains("cluster_slots_ok:16384")
                });
            if ok {
                return;
            }
            if Instant::now() >= deadline {
                let states: Vec<String> = self
                    .ports
                    .iter()
                    .zip(&self.children)
                    .filter(|(_, c)| c.is_some())
                    .map(|(p, _)| {
                        let info = redis_cli(*p, &["cluster", "info"]);
                        let pick = |k: &str| {
                            info.lines()
                                .find(|l| l.starts_with(k))
                                .unwrap_or("")
                                .trim()
                                .to_owned()
                        };
                        format!(
                            "{p}: {} {}",
                            pick("cluster_state"),
                            pick("cluster_slots_ok")
                        )
                    })
                    .collect();
                panic!("Redis Cluster not ok within {within:?}: {states:?}");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// `redis-cli` against one node.
    pub fn cli(&self, port: u16, args: &[&str]) -> String {
        redis_cli(port, args)
    }

    /// The ports of the current masters, and of the replicas.
    pub fn roles(&self) -> (Vec<u16>, Vec<u16>) {
        let mut masters = Vec::new();
        let mut replicas = Vec::new();
        for (p, c) in self.ports.iter().zip(&self.children) {
            if c.is_none() {
                continue;
            }
            let role = redis_cli(*p, &["role"]);
            if role.starts_with("master") {
                masters.push(*p);
            } else {
                replicas.push(*p);
            }
        }
        (masters, replicas)
    }

    /// SIGKILLs the node on `port` (its nodes.conf stays for a restart).
    pub fn kill(&mut self, port: u16) {
        let i = self.index(port);
        if let Some(mut c) = self.children[i].take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts a killed node again on its port with its old cluster identity.
    pub fn restart(&mut self, port: u16) {
        let i = self.index(port);
        assert!(self.children[i].is_none(), "node {port} is running");
        let child = self.spawn(port);
        wait_for_port(port, "redis-server (restarted cluster node)");
        self.children[i] = Some(child);
    }

    fn index(&self, port: u16) -> usize {
        self.ports
            .iter()
            .position(|p| *p == port)
            .unwrap_or_else(|| panic!("no cluster node on {port}"))
    }

    /// Hands the children to the exit-time cleanup (for a shared cluster).
    fn leak(mut self) -> String {
        let url = self.url();
        for c in self.children.iter_mut().filter_map(Option::take) {
            register_cleanup(Cleanup::Kill(c));
        }
        register_cleanup(Cleanup::RemoveDir(self.dir.clone()));
        // Not dropped: the nodes keep writing their nodes.conf in `dir`.
        std::mem::forget(self);
        url
    }
}

impl Drop for RedisCluster {
    fn drop(&mut self) {
        for c in self.children.iter_mut().filter_map(Option::take) {
            let mut c = c;
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The binary-wide 3-master cluster shared by tests (each test has its own
/// key prefix): its seed list.
pub fn shared_cluster_url() -> &'static str {
    static URL: OnceLock<String> = OnceLock::new();
    URL.get_or_init(|| RedisCluster::start(3, 0, SHARED_NODE_TIMEOUT_MS).leak())
}
