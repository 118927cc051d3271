//! The Redis side of the verify cache (`auth::verify_cache`): one RESP3
//! connection per Redis node (the one Redis, or every master of a Cluster)
//! with `CLIENT TRACKING ON BCAST PREFIX <prefix>{`, so Redis pushes the
//! name of every session key (`P{sid}:...`) that is written, deleted or
//! expires on it, whoever changed it.
//!
//! Broadcasting mode rather than the default mode: the default mode only
//! reports keys read on the tracking connection itself, so every check
//! would have to go through it (and on a Cluster, through one such
//! connection per node of the cluster client, which reconnects on its own
//! and would lose the tracking unseen). With BCAST the checks keep their
//! own connections, and the listener is the one thing to watch. The redis
//! crate's `cache-aio` cache was the other candidate: it caches replies of
//! its own connection, cannot be told to empty when a PING goes unanswered,
//! and is marked experimental (BENCHMARKS.md, "Verify cache").
//!
//! Fail closed: the cache is live only while every node's listener is
//! connected, tracking, and answering a PING within `PING_TIMEOUT`;
//! anything else empties it and keeps it dead until tracking is back.

use std::{collections::BTreeSet, sync::Arc, time::Duration};

use redis::{
    AsyncConnectionConfig, IntoConnectionInfo, ProtocolVersion, PushInfo, PushKind, Value,
    aio::MultiplexedConnection,
};
use tokio::sync::mpsc;
use uuid::Uuid;

use crate::auth::verify_cache::VerifyCache;

/// How often each listener PINGs its node, and how long an answer may take.
pub const PING_EVERY: Duration = Duration::from_millis(100);
pub const PING_TIMEOUT: Duration = Duration::from_millis(200);
/// Pause between attempts to bring tracking back.
const RETRY: Duration = Duration::from_millis(200);
/// How often a Cluster's masters are listed again (a failover or a new
/// node needs a listener of its own).
const TOPOLOGY_EVERY: Duration = Duration::from_secs(2);

/// Where the store is.
#[derive(Debug, Clone)]
pub enum Nodes {
    Single(String),
    /// Seed nodes of a Cluster; the listeners go to its masters.
    Cluster(Vec<String>),
}

/// Starts the listeners for `cache`; they run until the process ends.
pub fn spawn(cache: Arc<VerifyCache>, nodes: Nodes, prefix: &str) {
    let prefix = format!("{prefix}{{");
    tokio::spawn(async move {
        match nodes {
            Nodes::Single(url) => {
                supervise(cache, prefix, || {
                    let url = url.clone();
                    async move { Ok(vec![url]) }
                })
                .await
            }
            Nodes::Cluster(seeds) => {
                supervise(cache, prefix, move || {
                    let seeds = seeds.clone();
                    async move { masters(&seeds).await }
                })
                .await
            }
        }
    });
}

/// Keeps one listener per node of `discover()`'s list; the cache is live
/// while all of them are. A change of the list restarts them all.
async fn supervise<F, Fut>(cache: Arc<VerifyCache>, prefix: String, discover: F)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = redis::RedisResult<Vec<String>>>,
{
    loop {
        let nodes = match discover().await {
            Ok(n) if !n.is_empty() => n,
            Ok(_) | Err(_) => {
                cache.set_live(false);
                tokio::time::sleep(RETRY).await;
                continue;
            }
        };
        let known = nodes.clone();
        let (events, mut rx) = mpsc::unbounded_channel::<(usize, bool)>();
        let tasks: Vec<_> = nodes
            .iter()
            .enumerate()
            .map(|(i, url)| {
                tokio::spawn(listen(
                    i,
                    url.clone(),
                    prefix.clone(),
                    Arc::clone(&cache),
                    events.clone(),
                ))
            })
            .collect();
        let mut up = vec![false; nodes.len()];
        let mut recheck = tokio::time::interval(TOPOLOGY_EVERY);
        recheck.tick().await;
        loop {
            tokio::select! {
                Some((i, is_up)) = rx.recv() => {
                    if let Some(slot) = up.get_mut(i) {
                        *slot = is_up;
                    }
                    // Down: emptied at once. Up: only once all are, and
                    // then emptied too (what changed unseen is gone).
                    if !is_up {
                        cache.set_live(false);
                    } else if up.iter().all(|u| *u) {
                        cache.set_live(true);
                    }
                }
                _ = recheck.tick() => {
                    match discover().await {
                        Ok(now) if !now.is_empty() && sorted(&now) != sorted(&known) => {
                            tracing::info!("verify cache: the cluster's masters changed; tracking again");
                            break;
                        }
                        _ => {}
                    }
                }
            }
        }
        cache.set_live(false);
        for t in tasks {
            t.abort();
        }
    }
}

fn sorted(v: &[String]) -> BTreeSet<&String> {
    v.iter().collect()
}

/// One node: connect, track, then relay its invalidations until the
/// connection drops or a PING goes unanswered; again, forever.
async fn listen(
    index: usize,
    url: String,
    prefix: String,
    cache: Arc<VerifyCache>,
    events: mpsc::UnboundedSender<(usize, bool)>,
) {
    let mut logged = false;
    loop {
        match track(&url, &prefix).await {
            Ok((mut con, mut pushes)) => {
                if logged {
                    tracing::info!(node = index, "verify cache: tracking again");
                    logged = false;
                }
                let _ = events.send((index, true));
                let why = relay(&mut con, &mut pushes, &prefix, &cache).await;
                let _ = events.send((index, false));
                tracing::warn!(
                    node = index,
                    reason = why,
                    "verify cache: tracking lost; checks go to Redis"
                );
            }
            Err(e) => {
                let _ = events.send((index, false));
                if !logged {
                    tracing::warn!(node = index, error = %e, "verify cache: cannot track; checks go to Redis");
                    logged = true;
                }
            }
        }
        tokio::time::sleep(RETRY).await;
    }
}

type Pushes = mpsc::UnboundedReceiver<PushInfo>;

/// A RESP3 connection to `url` that receives the broadcasts for `prefix`.
async fn track(url: &str, prefix: &str) -> redis::RedisResult<(MultiplexedConnection, Pushes)> {
    let info = url.into_connection_info()?;
    let settings = info
        .redis_settings()
        .clone()
        .set_protocol(ProtocolVersion::RESP3);
    let client = redis::Client::open(info.set_redis_settings(settings))?;
    let (tx, rx) = mpsc::unbounded_channel();
    let config = AsyncConnectionConfig::new()
        .set_push_sender(tx)
        .set_connection_timeout(Some(Duration::from_secs(2)))
        .set_response_timeout(Some(PING_TIMEOUT * 3));
    let mut con = client
        .get_multiplexed_async_connection_with_config(&config)
        .await?;
    // Named, so an operator (or a test) can tell it in `CLIENT LIST`; best
    // effort: an ACL may allow `CLIENT TRACKING` and not `CLIENT SETNAME`.
    let _ = redis::cmd("CLIENT")
        .arg("SETNAME")
        .arg(client_name(prefix))
        .query_async::<()>(&mut con)
        .await;
    redis::cmd("CLIENT")
        .arg("TRACKING")
        .arg("ON")
        .arg("BCAST")
        .arg("PREFIX")
        .arg(prefix)
        .query_async::<()>(&mut con)
        .await?;
    Ok((con, rx))
}

/// `tessera-tracking:<key prefix>`; Redis refuses spaces and control
/// characters in a name, so those become `_`.
pub fn client_name(tracked_prefix: &str) -> String {
    let prefix = tracked_prefix.strip_suffix('{').unwrap_or(tracked_prefix);
    let safe: String = prefix
        .chars()
        .map(|c| if c.is_ascii_graphic() { c } else { '_' })
        .collect();
    format!("tessera-tracking:{safe}")
}

/// Applies the pushes to the cache; returns why it stopped.
async fn relay(
    con: &mut MultiplexedConnection,
    pushes: &mut Pushes,
    prefix: &str,
    cache: &VerifyCache,
) -> &'static str {
    let mut ping = tokio::time::interval(PING_EVERY);
    ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            push = pushes.recv() => match push {
                None => return "the push channel closed",
                Some(p) if p.kind == PushKind::Disconnection => return "the connection dropped",
                Some(p) if p.kind == PushKind::Invalidate => invalidate(cache, prefix, &p.data),
                Some(_) => {}
            },
            _ = ping.tick() => {
                // Here too, so an idle replica drops expired entries.
                cache.sweep_expired(crate::auth::store::now_secs());
                let answered = tokio::time::timeout(
                    PING_TIMEOUT,
                    redis::cmd("PING").query_async::<Value>(con),
                )
                .await;
                if !matches!(answered, Ok(Ok(_))) {
                    return "a PING went unanswered";
                }
            }
        }
    }
}

/// `data` is `[keys]`, or `[nil]` for "everything" (a FLUSHALL).
fn invalidate(cache: &VerifyCache, prefix: &str, data: &[Value]) {
    let keys = match data.first() {
        Some(Value::Array(keys)) => keys,
        _ => {
            cache.flush();
            return;
        }
    };
    for key in keys {
        let sid = match key {
            Value::BulkString(bytes) => std::str::from_utf8(bytes)
                .ok()
                .and_then(|k| sid_of(prefix, k)),
            Value::SimpleString(s) => sid_of(prefix, s),
            _ => None,
        };
        match sid {
            Some(sid) => cache.forget_session(sid),
            // A key of ours we cannot read: forget everything, to be safe.
            None => cache.flush(),
        }
    }
}

/// The session id of `P{sid}:…`.
fn sid_of(prefix: &str, key: &str) -> Option<Uuid> {
    let rest = key.strip_prefix(prefix)?;
    let (sid, _) = rest.split_once('}')?;
    sid.parse().ok()
}

/// The masters of the Cluster, as `scheme://host:port` (with the seeds'
/// scheme and credentials), from the first seed that answers.
async fn masters(seeds: &[String]) -> redis::RedisResult<Vec<String>> {
    let mut last = None;
    for seed in seeds {
        let listed = async {
            let client = redis::Client::open(seed.as_str())?;
            let mut con = client.get_multiplexed_async_connection().await?;
            redis::cmd("CLUSTER")
                .arg("NODES")
                .query_async::<String>(&mut con)
                .await
        };
        match tokio::time::timeout(Duration::from_secs(2), listed).await {
            Ok(Ok(text)) => return Ok(parse_masters(seed, &text)),
            Ok(Err(e)) => last = Some(e),
            Err(_) => {
                last = Some(redis::RedisError::from((
                    redis::ErrorKind::Io,
                    "CLUSTER NODES timed out",
                )))
            }
        }
    }
    Err(last.unwrap_or_else(|| redis::RedisError::from((redis::ErrorKind::Client, "no seed node"))))
}

/// `CLUSTER NODES` lines of healthy masters, as URLs built on `seed`.
fn parse_masters(seed: &str, text: &str) -> Vec<String> {
    // `redis://user:pass@host:port/…` -> `redis://user:pass@`
    let (scheme, rest) = seed.split_once("://").unwrap_or(("redis", seed));
    let auth = rest
        .split('/')
        .next()
        .and_then(|authority| authority.rsplit_once('@'))
        .map(|(creds, _)| format!("{creds}@"))
        .unwrap_or_default();
    let mut out: Vec<String> = text
        .lines()
        .filter_map(|line| {
            let mut f = line.split_whitespace();
            let (_id, addr, flags) = (f.next()?, f.next()?, f.next()?);
            let flags: Vec<&str> = flags.split(',').collect();
            if !flags.contains(&"master") || flags.iter().any(|x| x.starts_with("fail")) {
                return None;
            }
            let host_port = addr.split(['@', ',']).next()?;
            Some(format!("{scheme}://{auth}{host_port}"))
        })
        .collect();
    out.sort();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_ids_of_keys() {
        let sid = Uuid::now_v7();
        let p = "tessera:{";
        assert_eq!(sid_of(p, &format!("tessera:{{{sid}}}:session")), Some(sid));
        assert_eq!(
            sid_of(p, &format!("tessera:{{{sid}}}:revoked:{}", Uuid::now_v7())),
            Some(sid)
        );
        assert_eq!(sid_of(p, "tessera:{nope}:session"), None);
        assert_eq!(sid_of(p, &format!("other:{{{sid}}}:session")), None);
    }

    #[test]
    fn listener_names() {
        assert_eq!(client_name("tessera:{"), "tessera-tracking:tessera:");
        assert_eq!(client_name("my app é:{"), "tessera-tracking:my_app__:");
    }

    #[test]
    fn masters_of_cluster_nodes() {
        let text = "\
a1 127.0.0.1:7001@17001 myself,master - 0 0 1 connected 0-5460
b2 127.0.0.1:7002@17002,host.example master - 0 0 2 connected 5461-10922
c3 127.0.0.1:7003@17003 master,fail - 0 0 3 disconnected
d4 127.0.0.1:7004@17004 slave a1 0 0 1 connected
";
        assert_eq!(
            parse_masters("redis://127.0.0.1:7001", text),
            vec!["redis://127.0.0.1:7001", "redis://127.0.0.1:7002"]
        );
        assert_eq!(
            parse_masters("rediss://u:p@10.0.0.1:7001/0", text)[0],
            "rediss://u:p@127.0.0.1:7001"
        );
    }
}
