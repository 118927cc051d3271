//! argon2id hashing on a bounded blocking pool, so a storm of logins cannot
//! starve token checks on the async workers.

use std::sync::Arc;

use argon2::{
    Algorithm, Argon2, Params, Version,
    password_hash::{PasswordHasher as _, PasswordVerifier as _},
};
use secrecy::{ExposeSecret, SecretString};
use tokio::sync::Semaphore;

use crate::error::ApiError;

#[derive(Clone)]
pub struct Passwords {
    params: Params,
    permits: Arc<Semaphore>,
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
            dummy_hash: dummy.into(),
        })
    }

    pub async fn hash(&self, password: SecretString) -> Result<String, ApiError> {
        let params = self.params.clone();
        self.blocking(move || hash_with(&params, password.expose_secret()))
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
        let _permit = self.permits.acquire().await.map_err(ApiError::internal)?;
        tokio::task::spawn_blocking(f)
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
