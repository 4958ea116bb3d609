//! Password hashing off the async runtime: bcrypt runs on tokio's blocking pool, at
//! most one job per CPU at a time, so a flood of logins queues here instead of
//! starving the runtime's workers (and `/health/liveness` stays fast).
//!
//! A slot is held by the blocking job itself, not by the request waiting for it: a
//! client that disconnects mid-login drops its request, but the hash it started goes
//! on, and so does its claim on the slot. Waiting for a slot is bounded
//! (`auth.hash_queue_timeout`): past it the request gets a 503 with `Retry-After`.
//!
//! The queue is observed here (SPEC §11): how many hashes wait for a slot, how many
//! gave up waiting, and how long each bcrypt run took once it had one.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::Semaphore;

use crate::domain::Password;
use crate::error::{Error, Result};
use crate::metrics::Metrics;

#[derive(Clone)]
pub struct Hasher {
    cost: u32,
    permits: Arc<Semaphore>,
    queue_timeout: Duration,
    /// A hash of a random password at the configured cost: what an unknown user's
    /// login is verified against, so it costs the same as a known user's.
    dummy_hash: Arc<String>,
    /// Where the queue and the hash timings are counted ([`Hasher::with_metrics`]).
    metrics: Metrics,
}

impl Hasher {
    /// Builds the hasher. The dummy hash is made at the cheapest cost and then
    /// relabelled with the configured cost: verifying against it costs a full
    /// configured-cost bcrypt run (and fails), yet startup pays almost nothing.
    /// `queue_timeout` bounds how long a hash waits for a free slot.
    pub fn new(cost: u32, queue_timeout: Duration) -> Result<Self> {
        let parallelism = std::thread::available_parallelism().map_or(1, |n| n.get());
        Self::with_slots(cost, queue_timeout, parallelism)
    }

    fn with_slots(cost: u32, queue_timeout: Duration, slots: usize) -> Result<Self> {
        let permits = Arc::new(Semaphore::new(slots));
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
            queue_timeout,
            dummy_hash: Arc::new(dummy_hash),
            metrics: Metrics::new(),
        })
    }

    /// Counts the queue and the hash timings in `metrics` (the server's, which
    /// `/metrics` serves) instead of a private set nobody reads.
    pub fn with_metrics(mut self, metrics: Metrics) -> Self {
        self.metrics = metrics;
        self
    }

    pub async fn hash(&self, password: &Password) -> Result<String> {
        let password = password.clone();
        let cost = self.cost;
        self.run_blocking(move || {
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
        let ok = self
            .run_blocking(move || {
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

impl Hasher {
    /// Runs `job` on the blocking pool once a slot is free. The permit moves into the
    /// job, so the slot stays taken until the job ends even if this future is dropped.
    async fn run_blocking<T: Send + 'static>(
        &self,
        job: impl FnOnce() -> Result<T> + Send + 'static,
    ) -> Result<T> {
        // Counted as waiting until the wait ends, however it ends (a slot, the
        // timeout, or a client that went away and dropped this future).
        let waiting = self.metrics.hash_waiting();
        let permit =
            match tokio::time::timeout(self.queue_timeout, self.permits.clone().acquire_owned())
                .await
            {
                Ok(Ok(permit)) => permit,
                Ok(Err(e)) => {
                    return Err(Error::Internal(
                        anyhow::Error::new(e).context("hashing pool closed"),
                    ));
                }
                Err(_) => {
                    self.metrics.hash_rejected();
                    return Err(Error::Busy {
                        retry_after: self.queue_timeout.max(Duration::from_secs(1)),
                    });
                }
            };
        drop(waiting);
        let metrics = self.metrics.clone();
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            // Timed inside the job: the bcrypt run itself, even for an abandoned request.
            let started = Instant::now();
            let result = job();
            metrics.observe_hash(started.elapsed());
            result
        })
        .await
        .map_err(|e| Error::Internal(anyhow::Error::new(e).context("hashing task failed")))?
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    /// Counts jobs running at once and the most ever seen.
    #[derive(Default)]
    struct Running {
        now: AtomicUsize,
        most: AtomicUsize,
        started: AtomicUsize,
    }

    impl Running {
        fn job(self: &Arc<Self>, hold: Duration) -> impl FnOnce() -> Result<()> + Send + 'static {
            let me = self.clone();
            move || {
                me.started.fetch_add(1, Ordering::SeqCst);
                let now = me.now.fetch_add(1, Ordering::SeqCst) + 1;
                me.most.fetch_max(now, Ordering::SeqCst);
                std::thread::sleep(hold);
                me.now.fetch_sub(1, Ordering::SeqCst);
                Ok(())
            }
        }
    }

    #[tokio::test]
    async fn with_every_slot_busy_the_next_hash_waits_then_gets_a_503() {
        let hasher = Hasher::with_slots(4, Duration::from_millis(200), 2).unwrap();
        let running = Arc::new(Running::default());
        let busy: Vec<_> = (0..2)
            .map(|_| {
                let (h, job) = (hasher.clone(), running.job(Duration::from_millis(1500)));
                tokio::spawn(async move { h.run_blocking(job).await })
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(100)).await;
        let started = std::time::Instant::now();
        let third = hasher.run_blocking(running.job(Duration::ZERO)).await;
        let waited = started.elapsed();
        match third {
            Err(e @ Error::Busy { .. }) => assert_eq!(e.status(), 503),
            other => panic!("expected Busy, got {other:?}"),
        }
        assert!(
            waited >= Duration::from_millis(200) && waited < Duration::from_millis(1000),
            "waited {waited:?}"
        );
        for b in busy {
            b.await.unwrap().unwrap();
        }
        assert_eq!(running.started.load(Ordering::SeqCst), 2);
        assert_eq!(running.most.load(Ordering::SeqCst), 2);
    }

    /// The value of an unlabelled series in the exposition.
    fn sample(metrics: &Metrics, series: &str) -> Option<f64> {
        let text = metrics.render().unwrap();
        text.lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
    }

    #[tokio::test]
    async fn the_queue_is_observed_waiting_rejected_and_timed() {
        let metrics = Metrics::new();
        let hasher = Hasher::with_slots(4, Duration::from_millis(300), 1)
            .unwrap()
            .with_metrics(metrics.clone());
        let running = Arc::new(Running::default());
        let busy = {
            let (h, job) = (hasher.clone(), running.job(Duration::from_millis(800)));
            tokio::spawn(async move { h.run_blocking(job).await })
        };
        tokio::time::sleep(Duration::from_millis(100)).await;
        let queued = {
            let (h, job) = (hasher.clone(), running.job(Duration::ZERO));
            tokio::spawn(async move { h.run_blocking(job).await })
        };
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(sample(&metrics, "authctl_password_hash_waiting"), Some(1.0));
        assert!(matches!(queued.await.unwrap(), Err(Error::Busy { .. })));
        assert_eq!(sample(&metrics, "authctl_password_hash_waiting"), Some(0.0));
        assert_eq!(
            sample(&metrics, "authctl_password_hash_rejected_total"),
            Some(1.0)
        );
        busy.await.unwrap().unwrap();
        let count = "authctl_password_hash_duration_seconds_count";
        assert_eq!(sample(&metrics, count), Some(1.0), "only the hash that ran");
        let sum = sample(&metrics, "authctl_password_hash_duration_seconds_sum").unwrap();
        assert!((0.7..5.0).contains(&sum), "timed the job itself: {sum}");
    }

    #[tokio::test]
    async fn a_dropped_request_keeps_its_slot_until_its_hash_ends() {
        let hasher = Hasher::with_slots(4, Duration::from_secs(10), 1).unwrap();
        let running = Arc::new(Running::default());
        // The first hash starts, then its request is dropped (a client that gave up).
        let first = {
            let (h, job) = (hasher.clone(), running.job(Duration::from_millis(800)));
            tokio::spawn(async move { h.run_blocking(job).await })
        };
        tokio::time::sleep(Duration::from_millis(100)).await;
        first.abort();
        // A queued request that also gives up before the hash ends starts nothing.
        let queued = {
            let (h, job) = (hasher.clone(), running.job(Duration::ZERO));
            tokio::spawn(async move { h.run_blocking(job).await })
        };
        tokio::time::sleep(Duration::from_millis(100)).await;
        queued.abort();
        // The next one waits for the abandoned hash instead of running beside it.
        let started = std::time::Instant::now();
        hasher
            .run_blocking(running.job(Duration::from_millis(10)))
            .await
            .unwrap();
        assert!(
            started.elapsed() >= Duration::from_millis(500),
            "ran after {:?}, beside the abandoned hash",
            started.elapsed()
        );
        assert_eq!(running.most.load(Ordering::SeqCst), 1);
        assert_eq!(running.started.load(Ordering::SeqCst), 2);
    }

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
