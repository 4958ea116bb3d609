//! Password hashing off the async runtime: bcrypt or Argon2id (SPEC §16) runs on
//! threads of its own, one per CPU, at most one job each at a time, so a flood of
//! logins queues here instead of starving the runtime's workers (and
//! `/health/liveness` stays fast). With Argon2id, that bound is also the memory
//! bound: at most `cores × auth.argon2_memory_kib` of hashing memory at any moment.
//!
//! Why not tokio's blocking pool: its jobs land on whichever of up to 512 threads is
//! free, and glibc's allocator keeps a freed Argon2id block (19 MiB by default) in the
//! arena of the thread that freed it. A 200-login flood spread over a dozen threads
//! then held 480–560 MB resident; on a fixed set of `cores` threads the blocks are
//! reused, and the flood stays within the bound.
//!
//! A slot is held by the blocking job itself, not by the request waiting for it: a
//! client that disconnects mid-login drops its request, but the hash it started goes
//! on, and so does its claim on the slot. Waiting for a slot is bounded
//! (`auth.hash_queue_timeout`): past it the request gets a 503 with `Retry-After`.
//!
//! The queue is observed here (SPEC §11): how many hashes wait for a slot, how many
//! gave up waiting, and how long each hash run took once it had one.
//!
//! [`format`]: the stored formats, verification of any of them, `needs_rehash`.

pub mod format;

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::Semaphore;

pub use format::{HashConfig, PasswordHash};

use crate::domain::Password;
use crate::error::{Error, Result};
use crate::metrics::Metrics;

/// A job for a hashing thread.
type Job = Box<dyn FnOnce() + Send>;

/// The hashing threads: `n` threads taking jobs from one queue. They end when the
/// last [`Hasher`] clone (the last sender) is dropped.
struct Pool {
    jobs: std::sync::Mutex<std::sync::mpsc::Sender<Job>>,
}

impl Pool {
    fn start(n: usize) -> Result<Pool> {
        let (tx, rx) = std::sync::mpsc::channel::<Job>();
        let rx = Arc::new(std::sync::Mutex::new(rx));
        for i in 0..n.max(1) {
            let rx = Arc::clone(&rx);
            std::thread::Builder::new()
                .name(format!("authctl-hash-{i}"))
                .spawn(move || {
                    loop {
                        // The lock is held only while waiting for the next job.
                        let next = rx
                            .lock()
                            .unwrap_or_else(std::sync::PoisonError::into_inner)
                            .recv();
                        match next {
                            // A panicking job must not take its thread with it.
                            Ok(job) => {
                                let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(job));
                            }
                            Err(_) => return,
                        }
                    }
                })
                .map_err(|e| {
                    Error::Internal(anyhow::Error::new(e).context("starting a hashing thread"))
                })?;
        }
        Ok(Pool {
            jobs: std::sync::Mutex::new(tx),
        })
    }

    fn submit(&self, job: Job) -> Result<()> {
        self.jobs
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .send(job)
            .map_err(|_| Error::Internal(anyhow::anyhow!("the hashing threads are gone")))
    }
}

#[derive(Clone)]
pub struct Hasher {
    config: HashConfig,
    permits: Arc<Semaphore>,
    pool: Arc<Pool>,
    queue_timeout: Duration,
    /// A hash of nothing at the configured algorithm and cost: what an unknown
    /// user's login is verified against, so it costs the same as a known user's.
    dummy_hash: Arc<String>,
    /// Where the queue and the hash timings are counted ([`Hasher::with_metrics`]).
    metrics: Metrics,
}

impl Hasher {
    /// Builds the hasher for `config`; `queue_timeout` bounds how long a hash waits
    /// for a free slot.
    pub fn new(config: HashConfig, queue_timeout: Duration) -> Result<Self> {
        let parallelism = std::thread::available_parallelism().map_or(1, |n| n.get());
        Self::with_slots(config, queue_timeout, parallelism)
    }

    fn with_slots(config: HashConfig, queue_timeout: Duration, slots: usize) -> Result<Self> {
        config.validate().map_err(Error::Config)?;
        let permits = Arc::new(Semaphore::new(slots));
        let pool = Arc::new(Pool::start(slots)?);
        let dummy_hash = format::dummy_hash(config)
            .map_err(|e| Error::Internal(anyhow::anyhow!("preparing the dummy hash: {e}")))?;
        Ok(Hasher {
            config,
            permits,
            pool,
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

    pub fn config(&self) -> HashConfig {
        self.config
    }

    /// The longest password the configured algorithm takes whole (72 bytes for
    /// bcrypt, 256 for Argon2id).
    pub fn max_password_bytes(&self) -> usize {
        self.config.max_password_bytes()
    }

    pub async fn hash(&self, password: &Password) -> Result<String> {
        self.hash_str(secrecy::SecretString::from(password.expose()))
            .await
    }

    /// Hashes a password already verified (a rehash at login).
    pub async fn hash_str(&self, password: secrecy::SecretString) -> Result<String> {
        let config = self.config;
        self.run_blocking(move || {
            use secrecy::ExposeSecret;
            config
                .hash(password.expose_secret())
                .map_err(|e| Error::Internal(anyhow::anyhow!("hashing a password: {e}")))
        })
        .await
    }

    /// Whether a stored hash that just verified should be replaced by a fresh one
    /// (another algorithm or other parameters), given the password's length: a
    /// password over bcrypt's 72 bytes is never rehashed to bcrypt.
    pub fn needs_rehash(&self, stored: &str, password_len: usize) -> bool {
        password_len <= self.max_password_bytes()
            && PasswordHash::parse(stored).is_some_and(|h| h.needs_rehash(self.config))
    }

    /// Verifies `password` against `hash`, in any supported format; `None`, or a hash
    /// in no supported format (an imported account without a password), verifies
    /// against the dummy hash and fails, in the same time.
    pub async fn verify(&self, password: &str, hash: Option<&str>) -> Result<bool> {
        let known = hash.is_some_and(|h| PasswordHash::parse(h).is_some());
        let hash = match hash {
            Some(h) if known => h.to_owned(),
            _ => self.dummy_hash.as_str().to_owned(),
        };
        let password = secrecy::SecretString::from(password);
        let ok = self
            .run_blocking(move || {
                use secrecy::ExposeSecret;
                Ok(PasswordHash::verify(password.expose_secret(), &hash))
            })
            .await?;
        Ok(known && ok)
    }
}

impl Hasher {
    /// Runs `job` on a hashing thread once a slot is free (a slot is a thread: with
    /// the permit, one is free or about to be). The permit moves into the job, so the
    /// slot stays taken until the job ends even if this future is dropped.
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
        let (done, answer) = tokio::sync::oneshot::channel();
        self.pool.submit(Box::new(move || {
            let _permit = permit;
            // Timed inside the job: the bcrypt run itself, even for an abandoned request.
            let started = Instant::now();
            let result = job();
            metrics.observe_hash(started.elapsed());
            // The request may have gone away; the hash was done all the same.
            let _ = done.send(result);
        }))?;
        answer
            .await
            .map_err(|_| Error::Internal(anyhow::anyhow!("hashing job failed (it panicked)")))?
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
        let hasher = Hasher::with_slots(
            HashConfig::Bcrypt { cost: 4 },
            Duration::from_millis(200),
            2,
        )
        .unwrap();
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
        let hasher = Hasher::with_slots(
            HashConfig::Bcrypt { cost: 4 },
            Duration::from_millis(300),
            1,
        )
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
        let hasher =
            Hasher::with_slots(HashConfig::Bcrypt { cost: 4 }, Duration::from_secs(10), 1).unwrap();
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
        let bcrypt = HashConfig::Bcrypt { cost: 4 };
        let p72 = "a".repeat(72);
        let h = bcrypt.hash(&p72).unwrap();
        assert!(PasswordHash::verify(&p72, &h));
        let mut other = "a".repeat(71);
        other.push('b');
        assert!(!PasswordHash::verify(&other, &h), "the 72nd byte counts");
        assert!(bcrypt.hash(&"a".repeat(73)).is_err());
        assert!(
            !PasswordHash::verify(&"a".repeat(73), &h),
            "no truncation at verify either"
        );
    }

    const ARGON2: HashConfig = HashConfig::Argon2id {
        memory_kib: 64,
        iterations: 1,
        parallelism: 1,
    };

    #[test]
    fn argon2id_hashes_are_phc_strings_and_take_256_bytes() {
        let long = "é".repeat(128);
        let h = ARGON2.hash(&long).unwrap();
        assert!(h.starts_with("$argon2id$v=19$m=64,t=1,p=1$"), "{h}");
        assert!(PasswordHash::verify(&long, &h));
        assert!(!PasswordHash::verify(&"é".repeat(127), &h));
        assert!(ARGON2.hash(&"a".repeat(257)).is_err());
    }

    #[test]
    fn every_format_verifies_whatever_is_configured_and_rehash_follows_the_config() {
        let b = HashConfig::Bcrypt { cost: 4 }
            .hash("correct horse")
            .unwrap();
        let a = ARGON2.hash("correct horse").unwrap();
        for h in [&b, &a] {
            assert!(PasswordHash::verify("correct horse", h));
            assert!(!PasswordHash::verify("correct horsf", h));
        }
        let (pb, pa) = (
            PasswordHash::parse(&b).unwrap(),
            PasswordHash::parse(&a).unwrap(),
        );
        assert!(!pb.needs_rehash(HashConfig::Bcrypt { cost: 4 }));
        assert!(pb.needs_rehash(HashConfig::Bcrypt { cost: 5 }));
        assert!(pb.needs_rehash(ARGON2));
        assert!(!pa.needs_rehash(ARGON2));
        assert!(pa.needs_rehash(HashConfig::Argon2id {
            memory_kib: 128,
            iterations: 1,
            parallelism: 1
        }));
        assert!(pa.needs_rehash(HashConfig::Bcrypt { cost: 4 }));
    }

    #[test]
    fn dummy_hashes_parse_as_configured_and_match_nothing() {
        for config in [HashConfig::Bcrypt { cost: 12 }, ARGON2] {
            let d = format::dummy_hash(config).unwrap();
            let parsed = PasswordHash::parse(&d).unwrap();
            assert!(!parsed.needs_rehash(config), "{d}");
        }
        let d = format::dummy_hash(ARGON2).unwrap();
        assert!(!PasswordHash::verify("", &d));
    }

    #[test]
    fn imports_refuse_costly_or_unknown_hashes() {
        let ok = "$2b$12$R9h/cIPz0gi.URNNX3kh2OPST9/PgBkqquzi.Ss7KIUgO2t0jWMUW";
        assert!(PasswordHash::check_import(ok).is_ok());
        let costly = ok.replace("$12$", "$16$");
        assert!(
            PasswordHash::check_import(&costly)
                .unwrap_err()
                .contains("cost 16")
        );
        let m = "$argon2id$v=19$m=262145,t=2,p=1$c29tZXNhbHQ$RdescudvJCsgt3ub+b+dWRWJTmaaJObG";
        assert!(
            PasswordHash::check_import(m)
                .unwrap_err()
                .contains("memory")
        );
        let t = "$argon2id$v=19$m=65536,t=17,p=1$c29tZXNhbHQ$RdescudvJCsgt3ub+b+dWRWJTmaaJObG";
        assert!(
            PasswordHash::check_import(t)
                .unwrap_err()
                .contains("iterations")
        );
        assert!(PasswordHash::check_import("md5$abc").is_err());
        assert!(PasswordHash::check_import("$2b$12$short").is_err());
    }
}
