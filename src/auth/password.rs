//! argon2id hashing on a fixed set of hashing threads, so a storm of logins
//! can starve neither token checks on the async workers nor memory.
//!
//! Each hashing thread owns one argon2 memory block (`TESSERA_ARGON2_MEMORY_KIB`),
//! allocated on its first hash and reused by every later one: resident memory
//! is bounded by the number of threads (one per core), not by the load. (With
//! a fresh allocation per hash on tokio's blocking pool, the allocator kept a
//! block for every thread that ever hashed: hundreds of MiB after a storm.)
//!
//! The bound holds even when requests are cancelled (client gone, request
//! timeout): the permit moves into the job and is released when the hash
//! ends, not when the request's future is dropped. And the queue in front of
//! it is bounded too: beyond `QUEUE_PER_CORE` waiters per core a request is
//! 503 at once instead of holding memory and a connection. Registrations,
//! which anyone can send without an account, have a bound of their own: at
//! most half of the hashing slots, so a registration storm cannot keep
//! logins out.
//!
//! And every hash is on someone's account (`Caller`: the client IP and the
//! account, when known): one caller holds at most a quarter of the slots and
//! of the queue (`fair_share`); beyond it, 429 for that caller only, so a
//! flood from one address, even of correct passwords, leaves the other
//! addresses room. A full queue overall stays 503.

use std::sync::{Arc, Mutex, mpsc};

use argon2::{
    Algorithm, Argon2, Block, Params, Version,
    password_hash::phc::{Output, ParamsString, PasswordHash, Salt},
};
use rand::RngCore;
use secrecy::{ExposeSecret, SecretString};
use tokio::sync::{Semaphore, oneshot};

use super::{fair_share::FairShare, store::LimitKey};
use crate::metrics::{self, RateLimit};

/// Hash requests that may wait for a permit, per core (at ~50 ms a hash,
/// 32 waiters are under two seconds of queue).
const QUEUE_PER_CORE: usize = 32;
const SALT_LEN: usize = 16;
const OUTPUT_LEN: usize = 32;
/// `Retry-After` of a 429 for a caller over its share: a hash takes tens of
/// milliseconds, so a share is usually free again within a second.
const SHARE_RETRY_AFTER_SECS: u64 = 1;

use crate::error::ApiError;

/// A hashing thread's reusable argon2 memory.
type Memory = Vec<Block>;
type Job = Box<dyn FnOnce(&mut Memory) + Send>;

#[derive(Clone)]
pub struct Passwords {
    params: Params,
    /// One per hashing thread: hashes running at once.
    permits: Arc<Semaphore>,
    /// Hashes running or waiting.
    queue: Arc<Semaphore>,
    /// Registrations hashing at once (half the cores, at least one).
    signups: Arc<Semaphore>,
    /// Verified against for unknown accounts, so timing does not reveal
    /// which accounts exist.
    dummy_hash: Arc<str>,
    jobs: mpsc::Sender<Job>,
    /// Each caller's share of `permits` and `queue`.
    shares: FairShare<LimitKey>,
}

/// Whose hash it is: the fair-share keys. The client IP (`limits::ip_key`,
/// IPv6 per /64) and the account (`limits::account_key`; none for a
/// registration, whose account does not exist yet); neither for the
/// service's own hashes (bootstrap, `create-admin`), which take no share.
#[derive(Debug, Clone, Default)]
pub struct Caller {
    pub ip: Option<LimitKey>,
    pub account: Option<LimitKey>,
}

impl Caller {
    pub fn new(client_ip: Option<&str>, account: Option<LimitKey>) -> Self {
        Self {
            ip: client_ip.and_then(super::limits::ip_key),
            account,
        }
    }

    /// Always the IP first: every caller takes its slots in one order.
    fn keys(&self) -> Vec<LimitKey> {
        self.ip.iter().chain(&self.account).cloned().collect()
    }
}

impl Passwords {
    pub async fn new(memory_kib: u32, iterations: u32, parallelism: u32) -> anyhow::Result<Self> {
        Self::with_threads(memory_kib, iterations, parallelism, 0).await
    }

    /// `threads` hashing threads (`TESSERA_HASH_THREADS`; 0: one per core).
    pub async fn with_threads(
        memory_kib: u32,
        iterations: u32,
        parallelism: u32,
        threads: usize,
    ) -> anyhow::Result<Self> {
        let params = Params::new(memory_kib, iterations, parallelism, Some(OUTPUT_LEN))
            .map_err(|e| anyhow::anyhow!("invalid argon2 parameters: {e}"))?;
        let cores = match threads {
            0 => std::thread::available_parallelism().map_or(2, |n| n.get()),
            n => n,
        };
        let jobs = spawn_hashers(cores, params.block_count())?;
        // A random "hash" costs a verification exactly what a real one does
        // and matches no password; making it needs no hashing (and no memory)
        // at start.
        let dummy = phc_string(
            &params,
            &random_bytes::<SALT_LEN>(),
            &random_bytes::<OUTPUT_LEN>(),
        )
        .map_err(|e| anyhow::anyhow!("invalid argon2 parameters: {e}"))?;
        let queue = cores * (QUEUE_PER_CORE + 1);
        Ok(Self {
            params,
            permits: Arc::new(Semaphore::new(cores)),
            queue: Arc::new(Semaphore::new(queue)),
            shares: FairShare::new(cores, queue),
            signups: Arc::new(Semaphore::new((cores / 2).max(1))),
            dummy_hash: dummy.into(),
            jobs,
        })
    }

    pub async fn hash(&self, password: SecretString, caller: &Caller) -> Result<String, ApiError> {
        let params = self.params.clone();
        self.run(caller, move |memory| {
            hash_with(&params, password.expose_secret(), memory)
        })
        .await?
        .map_err(ApiError::internal)
    }

    /// `hash` for a new account: under the registrations' own bound too
    /// (waited for once the caller's share admits it, so one address's
    /// waiting registrations are bounded by its share).
    pub async fn hash_new_account(
        &self,
        password: SecretString,
        caller: &Caller,
    ) -> Result<String, ApiError> {
        let params = self.params.clone();
        self.run_gated(caller, Some(&self.signups), move |memory| {
            hash_with(&params, password.expose_secret(), memory)
        })
        .await?
        .map_err(ApiError::internal)
    }

    /// The comparison of the outputs is constant-time (`Output`'s `==`).
    pub async fn verify(
        &self,
        password: SecretString,
        hash: Option<String>,
        caller: &Caller,
    ) -> Result<bool, ApiError> {
        let known = hash.is_some();
        let hash = hash.unwrap_or_else(|| self.dummy_hash.to_string());
        let ok = self
            .run(caller, move |memory| {
                verify_with(password.expose_secret(), &hash, memory)
            })
            .await?;
        Ok(ok && known)
    }

    /// Runs `f` on a hashing thread once the caller's slots and a permit
    /// are free. Over the caller's share: 429, before the queue is looked at
    /// (the caller is the one to slow down, not the service).
    async fn run<T: Send + 'static>(
        &self,
        caller: &Caller,
        f: impl FnOnce(&mut Memory) -> T + Send + 'static,
    ) -> Result<T, ApiError> {
        self.run_gated(caller, None, f).await
    }

    /// `run`, also holding a permit of `gate` (if any) until the hash ends.
    async fn run_gated<T: Send + 'static>(
        &self,
        caller: &Caller,
        gate: Option<&Arc<Semaphore>>,
        f: impl FnOnce(&mut Memory) -> T + Send + 'static,
    ) -> Result<T, ApiError> {
        let share = self.shares.admit(&caller.keys()).map_err(|full| {
            metrics::rate_limited(match full {
                LimitKey::Ip(_) => RateLimit::HashingIp,
                _ => RateLimit::HashingAccount,
            });
            ApiError::TooManyRequests {
                retry_after: SHARE_RETRY_AFTER_SECS,
            }
        })?;
        // Waiting at the gate takes no place in the queue (a registration
        // storm cannot fill it), but one in the caller's share.
        let gated = match gate {
            Some(g) => Some(
                g.clone()
                    .acquire_owned()
                    .await
                    .map_err(ApiError::internal)?,
            ),
            None => None,
        };
        let Ok(queued) = self.queue.clone().try_acquire_owned() else {
            return Err(ApiError::unavailable("password hashing queue is full"));
        };
        // The caller's own slots first: its hashes beyond them wait here,
        // not in the shared line for a thread.
        let slots = share.slots().await;
        let permit = self
            .permits
            .clone()
            .acquire_owned()
            .await
            .map_err(ApiError::internal)?;
        let (tx, rx) = oneshot::channel();
        let job: Job = Box::new(move |memory| {
            // Held until the hash is done, even if the request is gone.
            let _held = (permit, queued, slots, share, gated);
            let _ = tx.send(f(memory));
        });
        self.jobs
            .send(job)
            .map_err(|_| ApiError::internal("password hashing threads are gone"))?;
        rx.await
            .map_err(|_| ApiError::internal("password hashing failed"))
    }
}

/// `threads` hashing threads sharing one job queue; they end when the last
/// `Passwords` clone (the last sender) is dropped.
fn spawn_hashers(threads: usize, blocks: usize) -> anyhow::Result<mpsc::Sender<Job>> {
    let (tx, rx) = mpsc::channel::<Job>();
    let rx = Arc::new(Mutex::new(rx));
    for i in 0..threads {
        let rx = Arc::clone(&rx);
        std::thread::Builder::new()
            .name(format!("tessera-hash-{i}"))
            .spawn(move || hasher_loop(&rx, blocks))?;
    }
    Ok(tx)
}

/// The hashing threads' nice value: a hash yields the core to the async
/// workers whenever they have work, so token checks keep their latency
/// during a login storm, and hashes still get every idle cycle.
const HASH_NICE: i32 = 10;

fn lower_priority() {
    #[cfg(target_os = "linux")]
    // SAFETY: plain system call; on Linux `PRIO_PROCESS` with `who = 0`
    // sets the calling thread's nice value only.
    unsafe {
        if libc::setpriority(libc::PRIO_PROCESS, 0, HASH_NICE) != 0 {
            tracing::debug!("could not lower the hashing threads' priority");
        }
    }
}

fn hasher_loop(rx: &Mutex<mpsc::Receiver<Job>>, blocks: usize) {
    lower_priority();
    // Allocated on the first job, so an idle service holds none.
    let mut memory: Memory = Vec::new();
    loop {
        let job = match rx.lock() {
            Ok(rx) => rx.recv(),
            Err(_) => return,
        };
        let Ok(job) = job else { return };
        if memory.len() < blocks {
            memory = vec![Block::new(); blocks];
        }
        // A panicking job (none is expected) drops its reply sender, which
        // the caller sees as an error; the thread lives on for the next.
        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| job(&mut memory)));
    }
}

fn random_bytes<const N: usize>() -> [u8; N] {
    let mut b = [0u8; N];
    rand::rng().fill_bytes(&mut b);
    b
}

fn phc_string(params: &Params, salt: &[u8], output: &[u8]) -> Result<String, String> {
    Ok(PasswordHash {
        algorithm: Algorithm::Argon2id.ident(),
        version: Some(Version::V0x13.into()),
        params: ParamsString::try_from(params).map_err(|e| e.to_string())?,
        salt: Some(Salt::new(salt).map_err(|e| e.to_string())?),
        hash: Some(Output::new(output).map_err(|e| e.to_string())?),
    }
    .to_string())
}

fn hash_with(params: &Params, password: &str, memory: &mut Memory) -> Result<String, String> {
    let salt = random_bytes::<SALT_LEN>();
    let mut out = [0u8; OUTPUT_LEN];
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone())
        .hash_password_into_with_memory(password.as_bytes(), &salt, &mut out, &mut memory[..])
        .map_err(|e| e.to_string())?;
    phc_string(params, &salt, &out)
}

/// Verifies against a stored PHC string, with the parameters it was made
/// with (they may predate a change of the configured cost).
fn verify_with(password: &str, stored: &str, memory: &mut Memory) -> bool {
    let Ok(hash) = PasswordHash::new(stored) else {
        return false;
    };
    let (Some(salt), Some(expected)) = (&hash.salt, &hash.hash) else {
        return false;
    };
    let (Ok(algorithm), Ok(params)) = (
        Algorithm::try_from(hash.algorithm.as_str()),
        Params::try_from(&hash),
    ) else {
        return false;
    };
    let Ok(version) = hash
        .version
        .map_or(Ok(Version::default()), Version::try_from)
    else {
        return false;
    };
    let mut out = vec![0u8; expected.len()];
    let argon2 = Argon2::new(algorithm, version, params.clone());
    let computed = if memory.len() >= params.block_count() {
        argon2.hash_password_into_with_memory(password.as_bytes(), salt, &mut out, &mut memory[..])
    } else {
        // A hash made at a higher cost than today's: its own, temporary block.
        argon2.hash_password_into(password.as_bytes(), salt, &mut out)
    };
    computed.is_ok() && Output::new(&out).is_ok_and(|o| o == *expected)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A cancelled request does not free its permit before its hash ends.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn cancelled_hashes_keep_their_permit() {
        let p = Passwords::new(16 * 1024, 3, 1).await.unwrap();
        let cores = p.permits.available_permits();
        let mut running = Vec::new();
        for _ in 0..cores {
            let p = p.clone();
            running.push(tokio::spawn(async move {
                p.hash(
                    SecretString::from("correct horse".to_owned()),
                    &Caller::default(),
                )
                .await
            }));
        }
        // Let them take their permits, then cancel them all.
        while p.permits.available_permits() > 0 {
            tokio::task::yield_now().await;
        }
        for task in &running {
            task.abort();
        }
        tokio::time::sleep(std::time::Duration::from_millis(1)).await;
        assert_eq!(
            p.permits.available_permits(),
            0,
            "a cancelled request freed its permit while its hash still runs"
        );
        // And they come back once the hashes end.
        for _ in 0..500 {
            if p.permits.available_permits() == cores {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        panic!("permits never came back");
    }

    /// One caller beyond its quarter of the queue is 429 at once while
    /// another caller is served; a cancelled request keeps its share while
    /// its hash runs (like its permit) and gives it back when the hash ends.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn one_caller_gets_a_quarter_and_cancelled_hashes_keep_it() {
        // Hashes of tens of milliseconds: longer than the checks below.
        let p = Passwords::with_threads(64 * 1024, 4, 1, 1).await.unwrap();
        let flooder = Caller::new(Some("203.0.113.5"), None);
        let ip = flooder.ip.clone().unwrap();
        let share = super::super::fair_share::quarter(QUEUE_PER_CORE + 1);
        let mut running = Vec::new();
        for _ in 0..share {
            let (p, caller) = (p.clone(), flooder.clone());
            running.push(tokio::spawn(async move {
                p.hash(secret("correct horse"), &caller).await
            }));
        }
        while p.shares.in_flight(&ip) < share {
            tokio::task::yield_now().await;
        }
        match p.hash(secret("one more"), &flooder).await {
            Err(ApiError::TooManyRequests { retry_after }) => assert_eq!(retry_after, 1),
            other => panic!("expected 429, got {other:?}"),
        }
        // Cancel them all: the one hashing (the first admitted sent its job
        // at once) keeps its share until its hash ends.
        for task in &running {
            task.abort();
        }
        // The waiting ones give theirs back as they are dropped.
        let mut left = p.shares.in_flight(&ip);
        for _ in 0..1000 {
            if left <= 1 {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(1)).await;
            left = p.shares.in_flight(&ip);
        }
        assert_eq!(left, 1, "the running hash's share");
        // Another address is served.
        let other = Caller::new(Some("2001:db8::1"), None);
        p.hash(secret("correct horse"), &other).await.unwrap();
        for _ in 0..1000 {
            if p.shares.in_flight(&ip) == 0 {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        panic!("the share never came back");
    }

    fn secret(s: &str) -> SecretString {
        SecretString::from(s.to_owned())
    }

    /// Hashes stored before the hashing threads (argon2's own
    /// `PasswordHasher`) still verify, and ours verify with argon2's own
    /// verifier: the PHC strings are the same format.
    #[tokio::test]
    async fn hashes_interoperate_with_the_argon2_crate() {
        use argon2::password_hash::{PasswordHasher as _, PasswordVerifier as _};
        let params = Params::new(1024, 1, 1, None).unwrap();
        let theirs = Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
            .hash_password(b"correct horse")
            .unwrap()
            .to_string();
        let p = Passwords::new(1024, 1, 1).await.unwrap();
        assert!(
            p.verify(
                secret("correct horse"),
                Some(theirs.clone()),
                &Caller::default()
            )
            .await
            .unwrap()
        );
        assert!(
            !p.verify(secret("wrong horse"), Some(theirs), &Caller::default())
                .await
                .unwrap()
        );
        let ours = p
            .hash(secret("correct horse"), &Caller::default())
            .await
            .unwrap();
        assert!(
            Argon2::default()
                .verify_password(b"correct horse", ours.as_str())
                .is_ok()
        );
    }

    /// A hash made at another cost than today's verifies with its own
    /// parameters, larger (a temporary block) or smaller (part of ours).
    #[tokio::test]
    async fn hashes_of_another_cost_verify() {
        let small = Passwords::new(1024, 1, 1).await.unwrap();
        let large = Passwords::new(4096, 2, 1).await.unwrap();
        let by_small = small
            .hash(secret("pw one"), &Caller::default())
            .await
            .unwrap();
        let by_large = large
            .hash(secret("pw two"), &Caller::default())
            .await
            .unwrap();
        assert!(by_large.contains("m=4096,t=2,p=1"), "{by_large}");
        assert!(
            small
                .verify(secret("pw two"), Some(by_large.clone()), &Caller::default())
                .await
                .unwrap()
        );
        assert!(
            large
                .verify(secret("pw one"), Some(by_small.clone()), &Caller::default())
                .await
                .unwrap()
        );
        assert!(
            !small
                .verify(secret("pw one"), Some(by_large), &Caller::default())
                .await
                .unwrap()
        );
        assert!(
            !large
                .verify(secret("pw two"), Some(by_small), &Caller::default())
                .await
                .unwrap()
        );
    }

    /// Garbage in the stored hash is a failed verification, not a panic.
    #[tokio::test]
    async fn malformed_hashes_never_verify() {
        let p = Passwords::new(1024, 1, 1).await.unwrap();
        for bad in [
            "",
            "not a hash",
            "$argon2id$v=19$m=1024,t=1,p=1$c2FsdHNhbHQ",
            "$argon2id$v=99$m=1024,t=1,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA",
            "$bcrypt$v=19$m=1024,t=1,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA",
        ] {
            assert!(
                !p.verify(secret("x"), Some(bad.to_owned()), &Caller::default())
                    .await
                    .unwrap(),
                "{bad}"
            );
        }
    }

    #[tokio::test]
    async fn hash_and_verify() {
        let p = Passwords::new(1024, 1, 1).await.unwrap();
        let h = p
            .hash(
                SecretString::from("correct horse".to_owned()),
                &Caller::default(),
            )
            .await
            .unwrap();
        assert!(h.starts_with("$argon2id$"));
        assert!(
            p.verify(
                SecretString::from("correct horse".to_owned()),
                Some(h.clone()),
                &Caller::default()
            )
            .await
            .unwrap()
        );
        assert!(
            !p.verify(
                SecretString::from("wrong horse".to_owned()),
                Some(h),
                &Caller::default()
            )
            .await
            .unwrap()
        );
        assert!(
            !p.verify(
                SecretString::from("tessera-dummy-password".to_owned()),
                None,
                &Caller::default()
            )
            .await
            .unwrap()
        );
    }
}
