//! The serve loop: accepts TCP connections and runs the poem endpoint on each
//! over hyper-util's auto builder (HTTP/1.1 and h2c), as poem's `Server`
//! does, plus what it cannot do (API.md "Slow and idle clients"): a deadline
//! for request heads, a hard close of idle connections, HTTP/2 PINGs, a cap
//! on open connections and a back-off when `accept()` fails.
//!
//! poem 3.1's `Server` sets no hyper timer, closes idle connections only
//! gracefully (an h2 client that never answers waits forever) and retries a
//! failed accept at once (EMFILE spins a core).

use std::{
    collections::HashMap,
    convert::Infallible,
    future::Future,
    io,
    net::IpAddr,
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering},
    },
    task::{Context, Poll},
    time::Duration,
};

use hyper::body::Incoming;
use hyper_util::{
    rt::{TokioExecutor, TokioIo, TokioTimer},
    server::conn::auto,
};
use poem::{
    Addr, Endpoint,
    http::uri::Scheme,
    web::{LocalAddr, RemoteAddr},
};
use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    net::{TcpListener, TcpStream},
    sync::{Notify, Semaphore, watch},
    time::Instant,
};

use crate::metrics::{self, SlowClose};

/// How long a connection closed for idleness or at shutdown may still finish
/// its graceful close (flush, GOAWAY) before it is dropped.
const CLOSE_GRACE: Duration = Duration::from_secs(1);
/// SIGTERM drains in-flight requests for at most this long.
const DRAIN_LIMIT: Duration = Duration::from_secs(30);
/// Accept back-off: first pause, longest pause, and how often it is logged.
const BACKOFF_FIRST: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(1);
const BACKOFF_LOG_EVERY: Duration = Duration::from_secs(10);

/// The connection settings of `Config`.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Whole request head within this; also the HTTP/2 PING interval and
    /// answer time. Zero: none.
    pub header_timeout: Duration,
    /// No request for this long: the connection is closed. Zero: never.
    pub idle_timeout: Duration,
    pub max_connections: u32,
    /// Connections one peer address (IPv6: its /64) may hold open at once:
    /// a quarter of `max_connections`, so one address cannot fill the cap.
    /// `None` behind a gateway (`TESSERA_TRUST_FORWARDED`), whose own
    /// address every connection has.
    pub per_address: Option<usize>,
    /// HTTP/2 header list size (HTTP/1.1 heads are bounded by hyper).
    pub http2_max_header_list_size: u32,
}

impl Limits {
    pub fn from_config(config: &crate::config::Config) -> Self {
        Self {
            header_timeout: config.header_timeout,
            idle_timeout: config.idle_timeout,
            max_connections: config.max_connections.max(1),
            // The same share as password hashing's (API.md).
            per_address: (!config.trust_forwarded)
                .then(|| crate::auth::fair_share::quarter(config.max_connections as usize)),
            // HTTP/1.1 heads are capped by hyper (about 408 KB) and by the
            // app (`http::MAX_HEADER_BYTES`, JSON 431); h2c gets the same
            // room so a 100 KB bearer token works there too.
            http2_max_header_list_size: (crate::http::MAX_HEADER_BYTES + 16 * 1024) as u32,
        }
    }
}

/// Serves `ep` on `listener` until `shutdown` resolves, then stops accepting
/// and drains in-flight requests (at most 30 s).
pub async fn serve<E>(
    listener: TcpListener,
    ep: E,
    limits: Limits,
    shutdown: impl Future<Output = ()>,
) -> io::Result<()>
where
    E: Endpoint + 'static,
{
    let ep = Arc::new(ep);
    let builder = Arc::new(builder(&limits));
    let local = listener.local_addr()?;
    let slots = Arc::new(Semaphore::new(limits.max_connections as usize));
    let per_address = limits.per_address.map(AddressShares::new);
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut backoff = Backoff::default();
    tokio::pin!(shutdown);
    loop {
        // A permit per open connection: at the cap, stop accepting and let
        // new connections wait in the listen backlog.
        let permit = match slots.clone().try_acquire_owned() {
            Ok(p) => p,
            Err(_) => {
                metrics::connection_cap_reached();
                tokio::select! {
                    p = slots.clone().acquire_owned() => match p {
                        Ok(p) => p,
                        Err(_) => break,
                    },
                    () = &mut shutdown => break,
                }
            }
        };
        let accepted = tokio::select! {
            r = listener.accept() => r,
            () = &mut shutdown => break,
        };
        let (stream, peer) = match accepted {
            Ok(a) => {
                backoff.reset();
                a
            }
            // The connection died in the backlog: nothing to wait for.
            Err(e) if is_per_connection(&e) => continue,
            Err(e) => {
                metrics::accept_backoff();
                let pause = backoff.next(&e);
                tokio::select! {
                    () = tokio::time::sleep(pause) => continue,
                    () = &mut shutdown => break,
                }
            }
        };
        // Over its address's share: closed at once (the permit goes back).
        let share = match per_address.as_ref().map(|s| s.take(peer.ip())) {
            Some(None) => {
                metrics::connection_over_address_share();
                drop(stream);
                continue;
            }
            Some(Some(share)) => Some(share),
            None => None,
        };
        let conn = Conn {
            ep: ep.clone(),
            builder: builder.clone(),
            limits,
            local,
            peer,
            stop: stop_rx.clone(),
        };
        tokio::spawn(async move {
            let _open = metrics::OpenConnection::new();
            conn.run(stream).await;
            drop((permit, share));
        });
    }
    drop(listener);
    let _ = stop_tx.send(true);
    // Every permit back: every connection task has ended.
    let all = slots.acquire_many(limits.max_connections);
    if tokio::time::timeout(DRAIN_LIMIT, all).await.is_err() {
        tracing::warn!("connections still open after the 30 s drain; stopping anyway");
    }
    Ok(())
}

fn builder(limits: &Limits) -> auto::Builder<TokioExecutor> {
    let mut b = auto::Builder::new(TokioExecutor::new());
    // hyper's own header-read timer starts again on every idle keep-alive
    // connection, so it would also close idle keep-alives at the header
    // timeout (below a gateway's idle timeout): the watchdog in `Conn::run`
    // times heads from their first byte instead.
    b.http1().timer(TokioTimer::new()).header_read_timeout(None);
    let ping = (!limits.header_timeout.is_zero()).then_some(limits.header_timeout);
    b.http2()
        .timer(TokioTimer::new())
        .max_header_list_size(limits.http2_max_header_list_size)
        .keep_alive_interval(ping)
        .keep_alive_timeout(limits.header_timeout);
    b
}

/// Open connections per peer network (`auth::limits::net_of`), each at
/// most `max`. Entries with none open are removed.
struct AddressShares {
    open: Arc<parking_lot::Mutex<HashMap<IpAddr, usize>>>,
    max: usize,
}

/// One connection's place in its address's share, given back on drop.
struct AddressShare {
    open: Arc<parking_lot::Mutex<HashMap<IpAddr, usize>>>,
    net: IpAddr,
}

impl AddressShares {
    fn new(max: usize) -> Self {
        Self {
            open: Arc::default(),
            max,
        }
    }

    /// A place for one more connection of `ip`, or `None` at its share.
    fn take(&self, ip: IpAddr) -> Option<AddressShare> {
        let net = crate::auth::limits::net_of(ip);
        let mut open = self.open.lock();
        let n = open.entry(net).or_insert(0);
        if *n >= self.max {
            return None;
        }
        *n += 1;
        Some(AddressShare {
            open: Arc::clone(&self.open),
            net,
        })
    }
}

impl Drop for AddressShare {
    fn drop(&mut self) {
        let mut open = self.open.lock();
        if let Some(n) = open.get_mut(&self.net) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                open.remove(&self.net);
            }
        }
    }
}

/// Accept errors that concern one connection, not the listener.
fn is_per_connection(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::Interrupted
    )
}

/// Pauses after failed accepts: 100 ms doubling to 1 s, logged at most once
/// per 10 s (with the number of failures since).
#[derive(Default)]
struct Backoff {
    pause: Option<Duration>,
    last_log: Option<Instant>,
    unlogged: u64,
}

impl Backoff {
    fn next(&mut self, e: &io::Error) -> Duration {
        let pause = self
            .pause
            .map_or(BACKOFF_FIRST, |p| (p * 2).min(BACKOFF_MAX));
        self.pause = Some(pause);
        self.unlogged += 1;
        if self
            .last_log
            .is_none_or(|t| t.elapsed() >= BACKOFF_LOG_EVERY)
        {
            tracing::error!(
                error = %e,
                failures = self.unlogged,
                pause_ms = pause.as_millis() as u64,
                "accept failed (out of file descriptors?); pausing"
            );
            self.last_log = Some(Instant::now());
            self.unlogged = 0;
        }
        pause
    }

    fn reset(&mut self) {
        self.pause = None;
    }
}

/// One accepted connection.
struct Conn<E> {
    ep: Arc<E>,
    builder: Arc<auto::Builder<TokioExecutor>>,
    limits: Limits,
    local: std::net::SocketAddr,
    peer: std::net::SocketAddr,
    stop: watch::Receiver<bool>,
}

impl<E: Endpoint + 'static> Conn<E> {
    async fn run(mut self, stream: TcpStream) {
        let activity = Arc::new(Activity::new());
        let io = TokioIo::new(Watched::new(stream, activity.clone()));
        let service = {
            let ep = self.ep.clone();
            let activity = activity.clone();
            let local = LocalAddr(Addr::SocketAddr(self.local));
            let remote = RemoteAddr(Addr::SocketAddr(self.peer));
            hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
                let ep = ep.clone();
                let request = activity.begin(req.version() == hyper::Version::HTTP_2);
                let req = poem::Request::from((req, local.clone(), remote.clone(), Scheme::HTTP));
                async move {
                    let resp = ep.get_response(req).await;
                    drop(request);
                    Ok::<_, Infallible>(hyper::Response::from(resp))
                }
            })
        };
        let conn = self.builder.serve_connection(io, service);
        tokio::pin!(conn);
        let why = tokio::select! {
            r = &mut conn => {
                if let Err(e) = r {
                    if is_ping_timeout(&*e) {
                        metrics::slow_close(SlowClose::Http2Ping);
                        tracing::debug!(peer = %self.peer, "HTTP/2 PING unanswered; closed");
                    } else {
                        tracing::debug!(peer = %self.peer, error = %e, "connection error");
                    }
                }
                return;
            }
            why = watchdog(&activity, self.limits) => Some(why),
            _ = self.stop.wait_for(|stop| *stop) => None,
        };
        match why {
            // No response is owed: drop the socket.
            Some(SlowClose::HeaderTimeout) => {
                metrics::slow_close(SlowClose::HeaderTimeout);
                tracing::debug!(peer = %self.peer, "no whole request head in time; closed");
            }
            Some(why) => {
                metrics::slow_close(why);
                conn.as_mut().graceful_shutdown();
                let _ = tokio::time::timeout(CLOSE_GRACE, conn).await;
            }
            // Shutdown: finish the requests in flight, then a short grace
            // for the close itself (an h2 client may never answer GOAWAY).
            None => {
                conn.as_mut().graceful_shutdown();
                tokio::select! {
                    _ = &mut conn => {}
                    () = async {
                        activity.drained().await;
                        tokio::time::sleep(CLOSE_GRACE).await;
                    } => {}
                }
            }
        }
    }
}

/// hyper's HTTP/2 keep-alive timeout error is a private type; its message is
/// the only mark.
fn is_ping_timeout(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur = Some(e);
    while let Some(err) = cur {
        if err.to_string() == "keep-alive timed out" {
            return true;
        }
        cur = err.source();
    }
    false
}

/// Resolves when the connection must close for slowness, and why.
async fn watchdog(activity: &Activity, limits: Limits) -> SlowClose {
    loop {
        let now = activity.born.elapsed();
        match verdict(&activity.snapshot(), now, limits) {
            Verdict::Close(why) => return why,
            // A head's first byte brings its deadline forward: look again.
            Verdict::CheckAt(at) => {
                tokio::select! {
                    () = tokio::time::sleep_until(activity.born + at) => {}
                    () = activity.head_began.notified() => {}
                }
            }
        }
    }
}

/// A connection's traffic so far, as the watchdog sees it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Snapshot {
    in_flight: usize,
    /// Requests whose head arrived.
    started: u64,
    /// The last request's end, since the connection opened.
    last_end: Duration,
    /// When the head being received began: on HTTP/1.1 the first byte since
    /// the last request began or ended; on HTTP/2 the first frame of a
    /// header block still open (HEADERS without its END_HEADERS yet), as
    /// other frames between requests are PINGs, window updates and the like.
    head_since: Option<Duration>,
}

#[derive(Debug, PartialEq, Eq)]
enum Verdict {
    Close(SlowClose),
    /// Nothing to do before this time (since the connection opened).
    CheckAt(Duration),
}

/// The rules of API.md "Slow and idle clients" at time `now`: the first
/// request head within the header timeout of the connect; later heads within
/// it of their start (`Snapshot::head_since`); and no request for the idle
/// timeout (since the connect or the last request) closes it.
fn verdict(s: &Snapshot, now: Duration, limits: Limits) -> Verdict {
    let header = (!limits.header_timeout.is_zero()).then_some(limits.header_timeout);
    let idle = (!limits.idle_timeout.is_zero()).then_some(limits.idle_timeout);
    // Nothing to watch while a request is served (the request timeout
    // bounds it): look again later.
    let later = now + header.or(idle).unwrap_or(Duration::from_secs(60));
    if s.in_flight > 0 {
        return Verdict::CheckAt(later);
    }
    let head_from = if s.started == 0 {
        Some(Duration::ZERO)
    } else {
        s.head_since
    };
    let mut next: Option<Duration> = None;
    if let (Some(from), Some(limit)) = (head_from, header) {
        if now >= from + limit {
            return Verdict::Close(SlowClose::HeaderTimeout);
        }
        next = Some(from + limit);
    }
    if let Some(limit) = idle {
        // From the connect until the first request (`last_end` is zero).
        let due = s.last_end + limit;
        if now >= due {
            return Verdict::Close(SlowClose::Idle);
        }
        next = Some(next.map_or(due, |n| n.min(due)));
    }
    Verdict::CheckAt(next.unwrap_or(later))
}

/// Shared between the connection's IO, its requests and its watchdog.
struct Activity {
    born: Instant,
    in_flight: AtomicUsize,
    started: AtomicU64,
    /// Milliseconds since `born`.
    last_end_ms: AtomicU64,
    /// `Snapshot::head_since` in milliseconds since `born` + 1; 0 = none.
    head_since_ms: AtomicU64,
    http2: AtomicBool,
    ended: Notify,
    /// Bytes arrived with no request in flight: the watchdog's wake-up.
    head_began: Notify,
}

impl Activity {
    fn new() -> Self {
        Self {
            born: Instant::now(),
            in_flight: AtomicUsize::new(0),
            started: AtomicU64::new(0),
            last_end_ms: AtomicU64::new(0),
            head_since_ms: AtomicU64::new(0),
            http2: AtomicBool::new(false),
            ended: Notify::new(),
            head_began: Notify::new(),
        }
    }

    fn ms(&self) -> u64 {
        u64::try_from(self.born.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// HTTP/1.1 bytes arrived (or bytes not yet known to be HTTP/2).
    fn read_some(&self) {
        self.head_started();
    }

    /// HTTP/2 frames arrived: whether a header block is open after them.
    fn h2_header_block(&self, open: bool) {
        if open {
            self.head_started();
        } else {
            self.head_since_ms.store(0, Ordering::Relaxed);
        }
    }

    fn head_started(&self) {
        if self.head_since_ms.load(Ordering::Relaxed) == 0 {
            self.head_since_ms
                .store(self.ms().saturating_add(1), Ordering::Relaxed);
            if self.in_flight.load(Ordering::SeqCst) == 0 {
                self.head_began.notify_one();
            }
        }
    }

    fn begin(self: &Arc<Self>, http2: bool) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::SeqCst);
        self.started.fetch_add(1, Ordering::SeqCst);
        self.head_since_ms.store(0, Ordering::Relaxed);
        if http2 {
            self.http2.store(true, Ordering::Relaxed);
        }
        InFlight(self.clone())
    }

    fn snapshot(&self) -> Snapshot {
        let since = self.head_since_ms.load(Ordering::Relaxed);
        Snapshot {
            in_flight: self.in_flight.load(Ordering::SeqCst),
            started: self.started.load(Ordering::SeqCst),
            last_end: Duration::from_millis(self.last_end_ms.load(Ordering::Relaxed)),
            head_since: (since > 0).then(|| Duration::from_millis(since - 1)),
        }
    }

    /// Resolves once no request is in flight.
    async fn drained(&self) {
        loop {
            let ended = self.ended.notified();
            if self.in_flight.load(Ordering::SeqCst) == 0 {
                return;
            }
            ended.await;
        }
    }
}

/// A request being served; its drop ends it.
struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        let a = &self.0;
        a.last_end_ms.store(a.ms(), Ordering::Relaxed);
        // HTTP/1.1 body bytes read during the request are not the next
        // head (HTTP/2 tracks its header blocks by frame).
        if !a.http2.load(Ordering::Relaxed) {
            a.head_since_ms.store(0, Ordering::Relaxed);
        }
        a.in_flight.fetch_sub(1, Ordering::SeqCst);
        a.ended.notify_waiters();
    }
}

/// The socket, noting when bytes arrive, and sending a JSON error in place
/// of hyper's bare answer to an unparsable HTTP/1.1 head
/// (`http::json_for_bare_error`).
struct Watched {
    inner: TcpStream,
    activity: Arc<Activity>,
    /// The JSON error being written, how much of it is sent, and the length
    /// of hyper's write it stands for.
    replacing: Option<(Vec<u8>, usize, usize)>,
    frames: H2Frames,
}

impl Watched {
    fn new(inner: TcpStream, activity: Arc<Activity>) -> Self {
        Self {
            inner,
            activity,
            replacing: None,
            frames: H2Frames::default(),
        }
    }
}

impl AsyncRead for Watched {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            let this = &mut *self;
            match this.frames.feed(&buf.filled()[before..]) {
                Framing::H2 { header_block_open } => {
                    this.activity.h2_header_block(header_block_open)
                }
                Framing::NotH2 | Framing::Undecided => this.activity.read_some(),
            }
        }
        r
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if self.replacing.is_none() {
            match crate::http::json_for_bare_error(buf) {
                Some(json) => self.replacing = Some((json, 0, buf.len())),
                None => return Pin::new(&mut self.inner).poll_write(cx, buf),
            }
        }
        // hyper retries the same bytes after Pending: finish ours first,
        // then report its write as done.
        let this = &mut *self;
        while let Some((json, sent, _)) = this.replacing.as_mut() {
            if *sent == json.len() {
                break;
            }
            match Pin::new(&mut this.inner).poll_write(cx, &json[*sent..]) {
                Poll::Ready(Ok(0)) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                Poll::Ready(Ok(n)) => *sent += n,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return Poll::Pending,
            }
        }
        let covers = this.replacing.take().map_or(buf.len(), |(_, _, c)| c);
        Poll::Ready(Ok(covers))
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        // hyper's bare answer is a head without a body: one slice.
        let mut filled = bufs.iter().filter(|b| !b.is_empty());
        if let (Some(only), None) = (filled.next(), filled.next()) {
            return self.poll_write(cx, only);
        }
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// What a client's bytes are, as far as `H2Frames` can tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    /// Still within what could be the HTTP/2 preface.
    Undecided,
    NotH2,
    H2 {
        header_block_open: bool,
    },
}

/// Follows the frame headers of an h2c client (payloads are skipped, never
/// decoded) to tell when a header block is open: a HEADERS frame without
/// END_HEADERS, until the CONTINUATION that has it.
#[derive(Debug, Default)]
struct H2Frames {
    /// Preface bytes matched so far.
    preface: usize,
    not_h2: bool,
    header: [u8; 9],
    header_len: usize,
    /// Payload bytes of the current frame still to skip.
    skip: usize,
    open: bool,
}

impl H2Frames {
    const HEADERS: u8 = 1;
    const CONTINUATION: u8 = 9;
    const END_HEADERS: u8 = 4;

    fn feed(&mut self, mut bytes: &[u8]) -> Framing {
        while !bytes.is_empty() && !self.not_h2 {
            if self.preface < H2_PREFACE.len() {
                let n = (H2_PREFACE.len() - self.preface).min(bytes.len());
                if bytes[..n] != H2_PREFACE[self.preface..self.preface + n] {
                    self.not_h2 = true;
                    break;
                }
                self.preface += n;
                bytes = &bytes[n..];
            } else if self.skip > 0 {
                let n = self.skip.min(bytes.len());
                self.skip -= n;
                bytes = &bytes[n..];
            } else {
                let n = (9 - self.header_len).min(bytes.len());
                self.header[self.header_len..self.header_len + n].copy_from_slice(&bytes[..n]);
                self.header_len += n;
                bytes = &bytes[n..];
                if self.header_len == 9 {
                    let [l0, l1, l2, kind, flags, ..] = self.header;
                    self.skip = (usize::from(l0) << 16) | (usize::from(l1) << 8) | usize::from(l2);
                    self.header_len = 0;
                    let ends = flags & Self::END_HEADERS != 0;
                    match kind {
                        Self::HEADERS => self.open = !ends,
                        Self::CONTINUATION if ends => self.open = false,
                        _ => {}
                    }
                }
            }
        }
        if self.not_h2 {
            Framing::NotH2
        } else if self.preface < H2_PREFACE.len() {
            Framing::Undecided
        } else {
            Framing::H2 {
                header_block_open: self.open,
            }
        }
    }
}

/// Raises the soft open-file limit to the hard limit (a descriptor per
/// connection): returns (before, after).
#[cfg(target_os = "linux")]
pub fn raise_open_file_limit() -> io::Result<(u64, u64)> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read and write the struct passed.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let before = lim.rlim_cur;
    if lim.rlim_cur < lim.rlim_max {
        lim.rlim_cur = lim.rlim_max;
        // SAFETY: as above.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) } != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok((before, lim.rlim_cur))
}

#[cfg(not(target_os = "linux"))]
pub fn raise_open_file_limit() -> io::Result<(u64, u64)> {
    Err(io::Error::other("not raised on this platform"))
}

/// Hands back to the system the heap that start-up used and freed (the
/// migrations, the OpenAPI document built several times, the Swagger UI
/// page hashed for its CSP): glibc keeps it otherwise, about 3.5 MiB of the
/// memory resident after start (BENCHMARKS.md, "Targets").
#[cfg(all(target_os = "linux", target_env = "gnu"))]
pub fn release_startup_memory() {
    // SAFETY: malloc_trim only walks glibc's own free lists; it takes no
    // pointer of ours.
    unsafe {
        libc::malloc_trim(0);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub fn release_startup_memory() {}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    fn limits(header: u64, idle: u64) -> Limits {
        Limits {
            header_timeout: S * header as u32,
            idle_timeout: S * idle as u32,
            max_connections: 10,
            per_address: None,
            http2_max_header_list_size: 1 << 16,
        }
    }

    #[test]
    fn an_address_holds_at_most_its_share_of_connections() {
        let shares = AddressShares::new(2);
        let a: IpAddr = "198.51.100.7".parse().unwrap();
        let a6: IpAddr = "::ffff:198.51.100.7".parse().unwrap();
        let first = shares.take(a).expect("1st");
        let second = shares.take(a6).expect("2nd (IPv4-mapped: the same)");
        assert!(shares.take(a).is_none(), "3rd over the share");
        // Another address, and IPv6 per /64.
        let b: IpAddr = "2001:db8:1:2::1".parse().unwrap();
        let b2: IpAddr = "2001:db8:1:2:ffff::9".parse().unwrap();
        let _b = shares.take(b).expect("other address");
        let _b2 = shares.take(b2).expect("same /64, 2nd");
        assert!(shares.take(b).is_none(), "the /64 is one address");
        // A closed connection gives its place back; an empty entry goes.
        drop(first);
        let again = shares.take(a).expect("place given back");
        drop((second, again));
        assert!(!shares.open.lock().contains_key(&a));
    }

    #[test]
    fn the_first_head_is_due_within_the_header_timeout_of_the_connect() {
        let fresh = Snapshot::default();
        assert_eq!(
            verdict(&fresh, S * 9, limits(10, 75)),
            Verdict::CheckAt(S * 10)
        );
        assert_eq!(
            verdict(&fresh, S * 10, limits(10, 75)),
            Verdict::Close(SlowClose::HeaderTimeout)
        );
        // A silent connection is also idle.
        assert_eq!(
            verdict(&fresh, S * 75, limits(0, 75)),
            Verdict::Close(SlowClose::Idle)
        );
        assert_eq!(
            verdict(&fresh, S, limits(10, 1)),
            Verdict::Close(SlowClose::Idle)
        );
        assert_eq!(
            verdict(&fresh, S * 1000, limits(0, 0)),
            Verdict::CheckAt(S * 1060)
        );
    }

    #[test]
    fn a_later_http1_head_is_timed_from_its_first_byte() {
        let s = Snapshot {
            started: 1,
            last_end: S * 5,
            head_since: Some(S * 30),
            ..Snapshot::default()
        };
        assert_eq!(
            verdict(&s, S * 39, limits(10, 75)),
            Verdict::CheckAt(S * 40)
        );
        assert_eq!(
            verdict(&s, S * 40, limits(10, 75)),
            Verdict::Close(SlowClose::HeaderTimeout)
        );
        // No head begun: only the idle rule.
        let quiet = Snapshot {
            head_since: None,
            ..s
        };
        assert_eq!(
            verdict(&quiet, S * 40, limits(10, 75)),
            Verdict::CheckAt(S * 80)
        );
    }

    #[test]
    fn a_quiet_keep_alive_lasts_the_idle_timeout_not_the_header_timeout() {
        let s = Snapshot {
            started: 3,
            last_end: S * 5,
            ..Snapshot::default()
        };
        assert_eq!(
            verdict(&s, S * 60, limits(10, 75)),
            Verdict::CheckAt(S * 80)
        );
        assert_eq!(
            verdict(&s, S * 80, limits(10, 75)),
            Verdict::Close(SlowClose::Idle)
        );
        assert_eq!(verdict(&s, S * 80, limits(10, 0)), Verdict::CheckAt(S * 90));
    }

    #[test]
    fn nothing_closes_a_connection_with_a_request_in_flight() {
        let s = Snapshot {
            in_flight: 1,
            started: 1,
            ..Snapshot::default()
        };
        assert_eq!(
            verdict(&s, S * 500, limits(10, 75)),
            Verdict::CheckAt(S * 510)
        );
    }

    fn h2_frame(kind: u8, flags: u8, payload: &[u8]) -> Vec<u8> {
        let len = payload.len();
        let mut f = vec![
            (len >> 16) as u8,
            (len >> 8) as u8,
            len as u8,
            kind,
            flags,
            0,
            0,
            0,
            1,
        ];
        f.extend_from_slice(payload);
        f
    }

    #[test]
    fn h2_header_blocks_are_followed_across_reads() {
        let mut f = H2Frames::default();
        assert_eq!(f.feed(&H2_PREFACE[..10]), Framing::Undecided);
        assert_eq!(
            f.feed(&H2_PREFACE[10..]),
            Framing::H2 {
                header_block_open: false
            }
        );
        let settings = h2_frame(4, 0, &[0; 6]);
        assert_eq!(
            f.feed(&settings),
            Framing::H2 {
                header_block_open: false
            }
        );
        // HEADERS without END_HEADERS, split across reads, payload too.
        let headers = h2_frame(1, 1, &[0x82; 20]);
        assert_eq!(
            f.feed(&headers[..5]),
            Framing::H2 {
                header_block_open: false
            }
        );
        assert_eq!(
            f.feed(&headers[5..15]),
            Framing::H2 {
                header_block_open: true
            }
        );
        assert_eq!(
            f.feed(&headers[15..]),
            Framing::H2 {
                header_block_open: true
            }
        );
        // A CONTINUATION without END_HEADERS keeps it open; with it, closed.
        assert_eq!(
            f.feed(&h2_frame(9, 0, &[0x82; 3])),
            Framing::H2 {
                header_block_open: true
            }
        );
        let mut two = h2_frame(9, 4, &[0x82; 3]);
        two.extend(h2_frame(6, 0, &[0; 8]));
        assert_eq!(
            f.feed(&two),
            Framing::H2 {
                header_block_open: false
            }
        );
        // A whole HEADERS frame opens nothing.
        assert_eq!(
            f.feed(&h2_frame(1, 5, &[0x82])),
            Framing::H2 {
                header_block_open: false
            }
        );
    }

    #[test]
    fn http1_is_not_followed_as_frames() {
        let mut f = H2Frames::default();
        assert_eq!(f.feed(b"PRI * HTTP/1.1\r\n"), Framing::NotH2);
        assert_eq!(f.feed(H2_PREFACE), Framing::NotH2);
        assert_eq!(
            H2Frames::default().feed(b"GET / HTTP/1.1\r\n"),
            Framing::NotH2
        );
    }

    #[test]
    fn accept_pauses_double_to_one_second_and_reset() {
        let e = io::Error::from_raw_os_error(24);
        let mut b = Backoff::default();
        let pauses: Vec<u128> = (0..6).map(|_| b.next(&e).as_millis()).collect();
        assert_eq!(pauses, [100, 200, 400, 800, 1000, 1000]);
        b.reset();
        assert_eq!(b.next(&e), BACKOFF_FIRST);
        assert!(!is_per_connection(&e), "EMFILE pauses");
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn start_raises_the_soft_open_file_limit_to_the_hard_limit() {
        let mut lim = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: plain struct out-parameters.
        unsafe {
            assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim), 0);
            let hard = lim.rlim_max;
            lim.rlim_cur = hard.min(256);
            assert_eq!(libc::setrlimit(libc::RLIMIT_NOFILE, &lim), 0);
            let (before, after) = raise_open_file_limit().expect("raised");
            assert_eq!((before, after), (hard.min(256), hard));
            assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim), 0);
            assert_eq!(lim.rlim_cur, hard);
        }
    }
}
