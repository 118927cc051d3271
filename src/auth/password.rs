//! argon2id hashing on a bounded blocking pool, so a storm of logins cannot
//! starve token checks on the async workers.
//!
//! The bound holds even when requests are cancelled (client gone, request
//! timeout): the permit moves into the blocking closure and is released when
//! the hash ends, not when the request's future is dropped. And the queue in
//! front of it is bounded too: beyond `QUEUE_PER_CORE` waiters per core a
//! request is 503 at once instead of holding memory and a connection.
//! Registrations, which anyone can send without an account, have a bound of
//! their own: at most half of the hashing slots, so a registration storm
//! cannot keep logins out.

use std::sync::Arc;

use argon2::{
    Algorithm, Argon2, Params, Version,
    password_hash::{PasswordHasher as _, PasswordVerifier as _},
};
use secrecy::{ExposeSecret, SecretString};
use tokio::sync::Semaphore;

/// Hash requests that may wait for a permit, per core (at ~50 ms a hash,
/// 32 waiters are under two seconds of queue).
const QUEUE_PER_CORE: usize = 32;

use crate::error::ApiError;

#[derive(Clone)]
pub struct Passwords {
    params: Params,
    /// One per core: hashes running at once.
    permits: Arc<Semaphore>,
    /// Hashes running or waiting.
    queue: Arc<Semaphore>,
    /// Registrations hashing at once (half the cores, at least one).
    signups: Arc<Semaphore>,
    /// Verified against for unknown accounts, so timing does not reveal
    /// which accounts exist.
    dummy_hash: Arc<str>,
}

impl Passwords {
    /// Hashes the dummy password on the blocking pool, like every hash.
    pub async fn new(memory_kib: u32, iterations: u32, parallelism: u32) -> anyhow::Result<Self> {
        let params = Params::new(memory_kib, iterations, parallelism, None)
            .map_err(|e| anyhow::anyhow!("invalid argon2 parameters: {e}"))?;
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        let for_dummy = params.clone();
        let dummy =
            tokio::task::spawn_blocking(move || hash_with(&for_dummy, "tessera-dummy-password"))
                .await?
                .map_err(|e| anyhow::anyhow!("argon2 self-test failed: {e}"))?;
        Ok(Self {
            params,
            permits: Arc::new(Semaphore::new(cores)),
            queue: Arc::new(Semaphore::new(cores * (QUEUE_PER_CORE + 1))),
            signups: Arc::new(Semaphore::new((cores / 2).max(1))),
            dummy_hash: dummy.into(),
        })
    }

    pub async fn hash(&self, password: SecretString) -> Result<String, ApiError> {
        let params = self.params.clone();
        self.blocking(move || hash_with(&params, password.expose_secret()))
            .await?
            .map_err(ApiError::internal)
    }

    /// `hash` for a new account: under the registrations' own bound too.
    pub async fn hash_new_account(&self, password: SecretString) -> Result<String, ApiError> {
        let signup = self
            .signups
            .clone()
            .acquire_owned()
            .await
            .map_err(ApiError::internal)?;
        let params = self.params.clone();
        self.blocking(move || {
            let _signup = signup;
            hash_with(&params, password.expose_secret())
        })
        .await?
        .map_err(ApiError::internal)
    }

    /// Constant-time comparison happens inside argon2's verifier.
    pub async fn verify(
        &self,
        password: SecretString,
        hash: Option<String>,
    ) -> Result<bool, ApiError> {
        let known = hash.is_some();
        let hash = hash.unwrap_or_else(|| self.dummy_hash.to_string());
        let ok = self
            .blocking(move || {
                Argon2::default()
                    .verify_password(password.expose_secret().as_bytes(), hash.as_str())
                    .is_ok()
            })
            .await?;
        Ok(ok && known)
    }

    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, ApiError> {
        let Ok(queued) = self.queue.clone().try_acquire_owned() else {
            return Err(ApiError::unavailable("password hashing queue is full"));
        };
        let permit = self
            .permits
            .clone()
            .acquire_owned()
            .await
            .map_err(ApiError::internal)?;
        tokio::task::spawn_blocking(move || {
            // Held until the hash is done, even if the request is gone.
            let _held = (permit, queued);
            f()
        })
        .await
        .map_err(ApiError::internal)
    }
}

fn hash_with(params: &Params, password: &str) -> Result<String, String> {
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone())
        .hash_password(password.as_bytes())
        .map(|h| h.to_string())
        .map_err(|e| e.to_string())
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
                p.hash(SecretString::from("correct horse".to_owned())).await
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

    #[tokio::test]
    async fn hash_and_verify() {
        let p = Passwords::new(1024, 1, 1).await.unwrap();
        let h = p
            .hash(SecretString::from("correct horse".to_owned()))
            .await
            .unwrap();
        assert!(h.starts_with("$argon2id$"));
        assert!(
            p.verify(
                SecretString::from("correct horse".to_owned()),
                Some(h.clone())
            )
            .await
            .unwrap()
        );
        assert!(
            !p.verify(SecretString::from("wrong horse".to_owned()), Some(h))
                .await
                .unwrap()
        );
        assert!(
            !p.verify(
                SecretString::from("tessera-dummy-password".to_owned()),
                None
            )
            .await
            .unwrap()
        );
    }
}
