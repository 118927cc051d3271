//! Slow and idle clients, the connection cap and running out of file
//! descriptors (API.md "Slow and idle clients"), over real sockets. The
//! connection layer does not depend on the backend: SQLite only.

use std::{
    process::Stdio,
    time::{Duration, Instant},
};

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

use crate::helpers::{
    Backend, TestApp, free_port,
    process::{Proc, tessera_bin},
    spawn_app_with, temp_sqlite_url,
};

const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// An HTTP/2 frame: 9-byte header and payload.
fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = payload.len() as u32;
    let mut f = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags];
    f.extend_from_slice(&stream.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

/// HPACK for `GET http://127.0.0.1/healthz`, no Huffman: indexed :method GET
/// and :scheme http, literal :path and :authority.
fn healthz_header_block() -> Vec<u8> {
    let mut b = vec![0x82, 0x86, 0x44, 8];
    b.extend_from_slice(b"/healthz");
    b.extend_from_slice(&[0x41, 9]);
    b.extend_from_slice(b"127.0.0.1");
    b
}

const SETTINGS: u8 = 4;
const HEADERS: u8 = 1;
const PING: u8 = 6;
const END_STREAM: u8 = 1;
const END_HEADERS: u8 = 4;

/// Reads until the peer closes (EOF or reset): the time it took, or None
/// if it is still open after `limit`.
async fn closed_within(s: &mut TcpStream, limit: Duration) -> Option<Duration> {
    let start = Instant::now();
    let mut buf = [0u8; 4096];
    loop {
        let left = limit.checked_sub(start.elapsed())?;
        match tokio::time::timeout(left, s.read(&mut buf)).await {
            Err(_) => return None,
            Ok(Ok(0)) | Ok(Err(_)) => return Some(start.elapsed()),
            Ok(Ok(_)) => {}
        }
    }
}

fn metric(text: &str, series: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
        .unwrap_or_else(|| panic!("{series} missing from /metrics"))
}

/// `/metrics` on a connection closed right after (the app's client keeps
/// one open, which would count against a connection cap).
async fn metrics(app: &TestApp) -> String {
    let r = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .expect("client")
        .get(app.url("/metrics"))
        .send()
        .await
        .expect("metrics");
    assert_eq!(r.status(), 200);
    r.text().await.expect("metrics text")
}

const HEADER_TIMEOUT_CLOSES: &str =
    "tessera_connections_closed_slow_total{reason=\"header_timeout\"}";

async fn connect(app: &TestApp) -> TcpStream {
    let addr = app.address.trim_start_matches("http://");
    TcpStream::connect(addr).await.expect("connect")
}

/// A few hundred connections that stop mid-head (HTTP/1.1), mid-preface or
/// mid-HEADERS (h2c), or send nothing, are closed after the header timeout,
/// while `/healthz` and a login from other connections keep answering.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partial_heads_are_closed_after_the_header_timeout_while_others_are_served() {
    let _ = tessera::server::raise_open_file_limit();
    let app = spawn_app_with(Backend::SqliteMemory, |c| {
        c.header_timeout = Duration::from_secs(2);
        c.idle_timeout = Duration::from_secs(60);
    })
    .await;
    app.user("alice").await;
    let before = metric(&metrics(&app).await, HEADER_TIMEOUT_CLOSES);

    let mut partial_headers = H2_PREFACE.to_vec();
    partial_headers.extend(frame(SETTINGS, 0, 0, &[]));
    // HEADERS without END_HEADERS: a CONTINUATION that never comes.
    partial_headers.extend(frame(HEADERS, END_STREAM, 1, &healthz_header_block()));
    let kinds: [&[u8]; 5] = [
        b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: aaaa",
        b"POST /auth/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n",
        &H2_PREFACE[..10],
        &partial_headers,
        b"",
    ];
    let started = Instant::now();
    let mut slow = Vec::new();
    for i in 0..300 {
        let mut s = connect(&app).await;
        s.write_all(kinds[i % kinds.len()]).await.expect("write");
        slow.push(s);
    }
    let watchers: Vec<_> = slow
        .into_iter()
        .map(|mut s| {
            tokio::spawn(async move { closed_within(&mut s, Duration::from_secs(7)).await })
        })
        .collect();

    // Others are served meanwhile (each on a connection of its own).
    let fresh = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .timeout(Duration::from_secs(3))
        .build()
        .expect("client");
    let health = fresh
        .get(app.url("/healthz"))
        .send()
        .await
        .expect("healthz");
    assert_eq!(health.status(), 200);
    let login = fresh
        .post(app.url("/auth/login"))
        .json(&serde_json::json!({"email": "alice@example.com", "password": crate::helpers::PASSWORD}))
        .send()
        .await
        .expect("login");
    assert_eq!(login.status(), 200);
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "served during the flood, before the timeout: {:?}",
        started.elapsed()
    );

    let mut open = 0;
    for (i, w) in watchers.into_iter().enumerate() {
        match w.await.expect("watcher") {
            None => open += 1,
            Some(_) => {
                assert!(
                    started.elapsed() >= Duration::from_millis(1900),
                    "connection {i} closed before the header timeout"
                );
            }
        }
    }
    assert_eq!(
        open, 0,
        "slow connections still open 7 s after a 2 s timeout"
    );
    assert!(started.elapsed() < Duration::from_secs(6));
    let after = metric(&metrics(&app).await, HEADER_TIMEOUT_CLOSES);
    assert!(after >= before + 300, "closes counted: {before} -> {after}");
    app.get("/healthz", None).await.assert_status(200);
}

/// An HTTP/1.1 keep-alive connection that starts its next head and stops is
/// closed after the header timeout (from the head's first byte), while an
/// idle keep-alive is left alone until the idle timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_second_head_is_closed_but_an_idle_keep_alive_is_not() {
    let app = spawn_app_with(Backend::SqliteMemory, |c| {
        c.header_timeout = Duration::from_secs(1);
        c.idle_timeout = Duration::from_secs(5);
    })
    .await;
    let request = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n";
    let mut stalled = connect(&app).await;
    let mut idle = connect(&app).await;
    let mut buf = [0u8; 4096];
    for s in [&mut stalled, &mut idle] {
        s.write_all(request).await.expect("write");
        let n = s.read(&mut buf).await.expect("response");
        assert!(buf[..n].starts_with(b"HTTP/1.1 200"));
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    stalled
        .write_all(b"GET /healthz HTTP/1.1\r\nHo")
        .await
        .expect("write");
    let t = closed_within(&mut stalled, Duration::from_secs(3)).await;
    assert!(
        t.is_some_and(|t| t >= Duration::from_millis(900)),
        "the stalled head is closed 1 s after its first byte: {t:?}"
    );
    // About 2.5 s idle so far: still usable (idle timeout 5 s, header
    // timeout 1 s).
    idle.write_all(request).await.expect("write");
    let n = idle.read(&mut buf).await.expect("response");
    assert!(
        buf[..n].starts_with(b"HTTP/1.1 200"),
        "an idle keep-alive outlives the header timeout"
    );
    // Then quiet for the idle timeout: closed.
    let t = closed_within(&mut idle, Duration::from_secs(8)).await;
    assert!(t.is_some(), "idle connection closed after the idle timeout");
}

/// An h2c client that got its answer but never answers PING is dropped
/// after the PING interval plus the answer time (both the header timeout),
/// long before the idle timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_h2_client_that_does_not_answer_ping_is_dropped() {
    let app = spawn_app_with(Backend::SqliteMemory, |c| {
        c.header_timeout = Duration::from_secs(1);
        c.idle_timeout = Duration::from_secs(60);
    })
    .await;
    let before = metric(
        &metrics(&app).await,
        "tessera_connections_closed_slow_total{reason=\"h2_ping\"}",
    );
    let mut s = connect(&app).await;
    let mut hello = H2_PREFACE.to_vec();
    hello.extend(frame(SETTINGS, 0, 0, &[]));
    hello.extend(frame(
        HEADERS,
        END_STREAM | END_HEADERS,
        1,
        &healthz_header_block(),
    ));
    s.write_all(&hello).await.expect("write");
    let start = Instant::now();
    // Read frames (answering nothing) until the server closes.
    let mut data = Vec::new();
    let mut buf = [0u8; 4096];
    let closed = loop {
        match tokio::time::timeout(Duration::from_secs(10), s.read(&mut buf)).await {
            Err(_) => break false,
            Ok(Ok(0)) | Ok(Err(_)) => break true,
            Ok(Ok(n)) => data.extend_from_slice(&buf[..n]),
        }
    };
    let elapsed = start.elapsed();
    assert!(closed, "still open 10 s later");
    let mut frames = Vec::new();
    let mut rest = &data[..];
    while rest.len() >= 9 {
        let len = (usize::from(rest[0]) << 16) | (usize::from(rest[1]) << 8) | usize::from(rest[2]);
        frames.push((rest[3], rest[4]));
        rest = &rest[(9 + len).min(rest.len())..];
    }
    assert!(
        frames.iter().any(|&(kind, _)| kind == HEADERS),
        "the request was answered: {frames:?}"
    );
    assert!(
        frames
            .iter()
            .any(|&(kind, flags)| kind == PING && flags & 1 == 0),
        "the server sent a PING: {frames:?}"
    );
    assert!(
        elapsed < Duration::from_secs(5),
        "dropped after about 2 s, not the 60 s idle timeout: {elapsed:?}"
    );
    let after = metric(
        &metrics(&app).await,
        "tessera_connections_closed_slow_total{reason=\"h2_ping\"}",
    );
    assert!(after > before, "PING timeout counted");
}

/// On h2c a later request whose header block stops mid-way (HEADERS
/// without END_HEADERS) is closed at the header timeout from its first
/// frame, sooner than the PING rule (interval plus answer time) would.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_h2_header_block_left_open_is_closed_after_the_header_timeout() {
    let app = spawn_app_with(Backend::SqliteMemory, |c| {
        c.header_timeout = Duration::from_secs(2);
        c.idle_timeout = Duration::from_secs(60);
    })
    .await;
    let mut s = connect(&app).await;
    let mut hello = H2_PREFACE.to_vec();
    hello.extend(frame(SETTINGS, 0, 0, &[]));
    hello.extend(frame(
        HEADERS,
        END_STREAM | END_HEADERS,
        1,
        &healthz_header_block(),
    ));
    s.write_all(&hello).await.expect("write");
    // Wait for the answer's HEADERS frame on stream 1.
    let mut data = Vec::new();
    let mut buf = [0u8; 4096];
    let answered = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            let n = s.read(&mut buf).await.expect("read");
            assert!(n > 0, "closed before answering");
            data.extend_from_slice(&buf[..n]);
            let mut rest = &data[..];
            while rest.len() >= 9 {
                let len = (usize::from(rest[0]) << 16)
                    | (usize::from(rest[1]) << 8)
                    | usize::from(rest[2]);
                if rest[3] == HEADERS && rest[5..9] == 1u32.to_be_bytes() {
                    return;
                }
                rest = &rest[(9 + len).min(rest.len())..];
            }
        }
    })
    .await;
    assert!(answered.is_ok(), "no answer to the first request");
    // Stream 3: HEADERS without END_HEADERS, and nothing more.
    s.write_all(&frame(HEADERS, END_STREAM, 3, &healthz_header_block()))
        .await
        .expect("write");
    let t = closed_within(&mut s, Duration::from_secs(8)).await;
    assert!(
        t.is_some_and(|t| t >= Duration::from_millis(1500) && t < Duration::from_millis(3500)),
        "closed 2 s after the open header block (the PING rule would take 4 s): {t:?}"
    );
}

/// With `TESSERA_MAX_CONNECTIONS=5` the 6th connection gets no answer while
/// 5 are open, and is served once one of them closes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn beyond_max_connections_new_ones_wait_until_one_closes() {
    let app = spawn_app_with(Backend::SqliteMemory, |c| {
        c.max_connections = 5;
        c.header_timeout = Duration::from_secs(30);
        // As behind a gateway: no per-address share, so one test address
        // can reach the cap.
        c.trust_forwarded = true;
    })
    .await;
    let before = metric(
        &metrics(&app).await,
        "tessera_connections_cap_reached_total",
    );
    let mut held = Vec::new();
    for _ in 0..5 {
        held.push(connect(&app).await);
    }
    let sixth = tokio::spawn({
        let url = app.url("/healthz");
        async move {
            let started = Instant::now();
            let r = reqwest::Client::new()
                .get(url)
                .timeout(Duration::from_secs(10))
                .send()
                .await;
            (r.map(|r| r.status().as_u16()), started.elapsed())
        }
    });
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(
        !sixth.is_finished(),
        "the 6th connection was served at the cap"
    );
    drop(held.pop());
    let (status, waited) = tokio::time::timeout(Duration::from_secs(5), sixth)
        .await
        .expect("the 6th is served once one closes")
        .expect("task");
    assert_eq!(status.expect("answered"), 200);
    assert!(
        waited >= Duration::from_millis(1400),
        "it waited: {waited:?}"
    );
    drop(held);
    let after = metric(
        &metrics(&app).await,
        "tessera_connections_cap_reached_total",
    );
    assert!(after > before, "the cap was counted");
}

/// A raw connection from `source` (a loopback address of its own).
async fn connect_from(app: &TestApp, source: &str) -> TcpStream {
    let addr: std::net::SocketAddr = app
        .address
        .trim_start_matches("http://")
        .parse()
        .expect("app address");
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket
        .bind(format!("{source}:0").parse().expect("source"))
        .expect("bind the source address");
    socket.connect(addr).await.expect("connect")
}

/// `GET /healthz` on a fresh connection from `source`: the status line.
async fn healthz_from(app: &TestApp, source: &str) -> String {
    let mut s = connect_from(app, source).await;
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        .await
        .expect("write");
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut answer)).await;
    String::from_utf8_lossy(&answer)
        .lines()
        .next()
        .unwrap_or("")
        .to_owned()
}

/// Without a gateway in front, one address holds at most a quarter of
/// `TESSERA_MAX_CONNECTIONS`: beyond it its new connections are closed at
/// once, while other addresses are served; closing one gives the place back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_address_holds_at_most_a_quarter_of_the_connections() {
    let app = spawn_app_with(Backend::SqliteMemory, |c| {
        c.max_connections = 8;
        c.header_timeout = Duration::from_secs(30);
    })
    .await;
    let before = metric(
        &metrics(&app).await,
        "tessera_connections_over_address_share_total",
    );
    // The share of 8 is 2: two silent connections from 127.0.0.3 hold it.
    let mut held = vec![
        connect_from(&app, "127.0.0.3").await,
        connect_from(&app, "127.0.0.3").await,
    ];
    let mut third = connect_from(&app, "127.0.0.3").await;
    assert!(
        closed_within(&mut third, Duration::from_secs(3))
            .await
            .is_some(),
        "a third connection of one address was kept"
    );
    assert_eq!(healthz_from(&app, "127.0.0.3").await, "");
    // Another address is served meanwhile.
    assert_eq!(healthz_from(&app, "127.0.0.4").await, "HTTP/1.1 200 OK");
    let after = metric(
        &metrics(&app).await,
        "tessera_connections_over_address_share_total",
    );
    assert!(after >= before + 2, "refusals counted: {before} -> {after}");
    // One closed: the address may connect again.
    drop(held.pop());
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(healthz_from(&app, "127.0.0.3").await, "HTTP/1.1 200 OK");
    drop(held);
}

/// CPU time (user + system) of process `pid`, from /proc/<pid>/stat.
fn cpu_time(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("read /proc stat");
    // Fields after the parenthesised command name; utime and stime are the
    // 14th and 15th of the whole line.
    let rest = &stat[stat.rfind(')').expect("stat format") + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 =
        fields[11].parse::<u64>().expect("utime") + fields[12].parse::<u64>().expect("stime");
    // SAFETY: sysconf only reads a constant.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    Duration::from_millis(ticks * 1000 / hz)
}

/// Out of file descriptors (the real binary under `prlimit --nofile`), the
/// accept loop backs off instead of spinning, counts it, and the service
/// answers again once connections close.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn out_of_file_descriptors_the_accept_loop_backs_off_without_spinning() {
    let prlimit = std::process::Command::new("prlimit")
        .arg("--version")
        .output();
    assert!(
        prlimit.is_ok_and(|o| o.status.success()),
        "this test needs `prlimit` (util-linux)"
    );
    let port = free_port();
    let mut cmd = std::process::Command::new("prlimit");
    cmd.args(["--nofile=64:64", tessera_bin(), "serve"])
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("TESSERA_LOG_FORMAT", "json")
        .env("TESSERA_BIND", format!("127.0.0.1:{port}"))
        .env("DATABASE_URL", temp_sqlite_url())
        .env("TESSERA_HEADER_TIMEOUT", "60s")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let mut child = Proc::spawn(&mut cmd, "tessera serve under prlimit");
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .timeout(Duration::from_secs(2))
        .build()
        .expect("client");
    let deadline = Instant::now() + Duration::from_secs(30);
    while client.get(format!("{base}/healthz")).send().await.is_err() {
        assert!(child.try_wait().is_none(), "tessera exited at start");
        assert!(Instant::now() < deadline, "tessera did not start");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let backoffs = |text: &str| metric(text, "tessera_accept_backoffs_total");
    let text = client
        .get(format!("{base}/metrics"))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("metrics text");
    let before = backoffs(&text);

    // More partial heads than the child has descriptors left.
    let mut partial = Vec::new();
    for _ in 0..100 {
        let mut s = TcpStream::connect(("127.0.0.1", port))
            .await
            .expect("connect (the backlog takes what the process cannot)");
        s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
            .await
            .expect("write");
        partial.push(s);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let cpu_before = cpu_time(child.id());
    tokio::time::sleep(Duration::from_secs(2)).await;
    let used = cpu_time(child.id()) - cpu_before;
    assert!(
        used < Duration::from_millis(500),
        "the accept loop spins at the descriptor limit: {used:?} of CPU in 2 s"
    );
    // Unanswered while out of descriptors.
    assert!(
        client.get(format!("{base}/healthz")).send().await.is_err(),
        "answered although out of descriptors?"
    );

    drop(partial);
    let deadline = Instant::now() + Duration::from_secs(10);
    let text = loop {
        if let Ok(r) = client.get(format!("{base}/metrics")).send().await
            && let Ok(t) = r.text().await
        {
            break t;
        }
        assert!(
            Instant::now() < deadline,
            "no answer after the connections closed"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let after = backoffs(&text);
    assert!(after > before, "back-offs counted: {before} -> {after}");
    let health = client
        .get(format!("{base}/healthz"))
        .send()
        .await
        .expect("healthz after recovery");
    assert_eq!(health.status(), 200);
}

/// Sends `raw` on a connection of its own and reads the whole answer.
async fn raw_exchange(app: &TestApp, raw: &[u8]) -> String {
    let mut s = connect(app).await;
    s.write_all(raw).await.expect("write");
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

/// The heads hyper refuses before the app (malformed, too many or too large
/// headers, URI too long) get API.md JSON errors too, and the app's own
/// 431 for heads over 256 KiB is unchanged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heads_hyper_refuses_get_json_errors() {
    let app = spawn_app_with(Backend::SqliteMemory, |_| {}).await;
    let many: String = (0..150).map(|i| format!("X-H{i}: a\r\n")).collect();
    let cases: Vec<(u16, Vec<u8>)> = vec![
        (400, b"GARBAGE\r\n\r\n".to_vec()),
        (400, b"GET /healthz HTTP/1.1\r\nHo st: x\r\n\r\n".to_vec()),
        (
            431,
            format!("GET /healthz HTTP/1.1\r\nHost: x\r\n{many}\r\n").into_bytes(),
        ),
        (
            431,
            format!(
                "GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
                "a".repeat(500_000)
            )
            .into_bytes(),
        ),
        (
            414,
            format!("GET /{} HTTP/1.1\r\nHost: x\r\n\r\n", "a".repeat(70_000)).into_bytes(),
        ),
        // The app's own limit (256 KiB), below hyper's.
        (
            431,
            format!(
                "GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\nX-Big: {}\r\n\r\n",
                "a".repeat(300_000)
            )
            .into_bytes(),
        ),
    ];
    for (status, raw) in cases {
        let answer = raw_exchange(&app, &raw).await;
        let (head, body) = answer
            .split_once("\r\n\r\n")
            .unwrap_or_else(|| panic!("no answer to a {status} case: {answer:?}"));
        assert!(head.starts_with(&format!("HTTP/1.1 {status} ")), "{head}");
        let lower = head.to_ascii_lowercase();
        assert!(
            lower.contains("\r\ncontent-type: application/json"),
            "{head}"
        );
        assert!(lower.contains("\r\nx-request-id: "), "{head}");
        let json: serde_json::Value = serde_json::from_str(body)
            .unwrap_or_else(|e| panic!("{status}: not JSON ({e}): {body:?}"));
        assert_eq!(json["code"], "BadRequest", "{body}");
        assert!(json["message"].is_string(), "{body}");
    }
}
