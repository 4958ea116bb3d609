//! Password hashing off the async runtime: bcrypt runs on tokio's blocking pool, at
//! most one job per CPU at a time, so a flood of logins queues here instead of
//! starving the runtime's workers (and `/health/liveness` stays fast).

use std::sync::Arc;

use tokio::sync::Semaphore;

use crate::domain::Password;
use crate::error::{Error, Result};

#[derive(Clone)]
pub struct Hasher {
    cost: u32,
    permits: Arc<Semaphore>,
    /// A hash of a random password at the configured cost: what an unknown user's
    /// login is verified against, so it costs the same as a known user's.
    dummy_hash: Arc<String>,
}

impl Hasher {
    /// Builds the hasher. The dummy hash is made at the cheapest cost and then
    /// relabelled with the configured cost: verifying against it costs a full
    /// configured-cost bcrypt run (and fails), yet startup pays almost nothing.
    pub fn new(cost: u32) -> Result<Self> {
        let parallelism = std::thread::available_parallelism().map_or(1, |n| n.get());
        let permits = Arc::new(Semaphore::new(parallelism));
        let random = crate::tokens::keys::SecretKey::generate();
        let cheap = bcrypt::non_truncating_hash(&random.expose_str()[..32], 4).map_err(|e| {
            Error::Internal(anyhow::Error::new(e).context("preparing the dummy hash"))
        })?;
        let dummy_hash = match cheap.strip_prefix("$2b$04$") {
            Some(rest) => format!("$2b${cost:02}${rest}"),
            None => cheap,
        };
        Ok(Hasher {
            cost,
            permits,
            dummy_hash: Arc::new(dummy_hash),
        })
    }

    pub async fn hash(&self, password: &Password) -> Result<String> {
        let password = password.clone();
        let cost = self.cost;
        run_blocking(&self.permits, move || {
            hash_exact(password.expose(), cost)
                .map_err(|e| Error::Internal(anyhow::Error::new(e).context("hashing a password")))
        })
        .await
    }

    /// Verifies `password` against `hash`; `None` verifies against the dummy hash and
    /// always fails, in the same time. A corrupt stored hash is a failed login.
    pub async fn verify(&self, password: &str, hash: Option<&str>) -> Result<bool> {
        let known = hash.is_some();
        let hash = hash.map_or_else(|| self.dummy_hash.as_str().to_owned(), str::to_owned);
        let password = secrecy::SecretString::from(password);
        let ok = run_blocking(&self.permits, move || {
            use secrecy::ExposeSecret;
            Ok(verify_exact(password.expose_secret(), &hash))
        })
        .await?;
        Ok(known && ok)
    }
}

// bcrypt reads at most 72 bytes. The crate's non-truncating functions refuse a
// password of exactly 72 bytes too (they count the C string's NUL terminator, which
// bcrypt drops at that length anyway), so a 72-byte password takes the plain function:
// all of its bytes are used. Anything longer is refused, never cut.
fn hash_exact(password: &str, cost: u32) -> Result<String, bcrypt::BcryptError> {
    if password.len() == Password::MAX_BYTES {
        bcrypt::hash(password, cost)
    } else {
        bcrypt::non_truncating_hash(password, cost)
    }
}

fn verify_exact(password: &str, hash: &str) -> bool {
    let result = if password.len() == Password::MAX_BYTES {
        bcrypt::verify(password, hash)
    } else {
        bcrypt::non_truncating_verify(password, hash)
    };
    result.unwrap_or(false)
}

async fn run_blocking<T: Send + 'static>(
    permits: &Semaphore,
    job: impl FnOnce() -> Result<T> + Send + 'static,
) -> Result<T> {
    let _permit = permits
        .acquire()
        .await
        .map_err(|e| Error::Internal(anyhow::Error::new(e).context("hashing pool closed")))?;
    tokio::task::spawn_blocking(job)
        .await
        .map_err(|e| Error::Internal(anyhow::Error::new(e).context("hashing task failed")))?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_72_byte_password_is_hashed_whole_and_a_73rd_byte_is_refused() {
        let p72 = "a".repeat(72);
        let h = hash_exact(&p72, 4).unwrap();
        assert!(verify_exact(&p72, &h));
        let mut other = "a".repeat(71);
        other.push('b');
        assert!(!verify_exact(&other, &h), "the 72nd byte counts");
        assert!(hash_exact(&"a".repeat(73), 4).is_err());
        assert!(
            !verify_exact(&"a".repeat(73), &h),
            "no truncation at verify either"
        );
    }
}
