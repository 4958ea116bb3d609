//! What the load measured: [`Stats`] per scenario (exact latencies, nearest-rank
//! percentiles), the measuring [`Window`], CPU readings from /proc ([`CpuSnap`]) that
//! tell a disturbed run, and the in-process hashing ceiling ([`HashLimit`]).

use std::process::Command;
use std::time::{Duration, Instant};

use crate::PASSWORD;

/// What a set of connections measured. Requests that completed inside the window are
/// counted and their latencies kept; failures count wherever they happen.
#[derive(Debug, Default)]
pub struct Stats {
    pub ok: u64,
    /// Every request answered, warm-up and tail included (for CPU per request).
    pub answered: u64,
    pub errors: u64,
    pub latencies_us: Vec<u32>,
    /// Prompt refusals (503 with `Retry-After`) of a load that accepts them (see
    /// `load::Expect`), counted and timed apart from `ok`.
    pub busy: u64,
    pub busy_latencies_us: Vec<u32>,
    pub window: Duration,
    pub first_error: Option<String>,
    /// CPU share other processes took meanwhile (noise), in % of the machine.
    pub others_cpu_pct: f64,
    /// Server and PostgreSQL CPU time per counted request, in µs (less noisy than rates).
    pub server_cpu_us: f64,
    pub db_cpu_us: f64,
}

impl Stats {
    pub fn merge(&mut self, other: Stats) {
        self.ok += other.ok;
        self.answered += other.answered;
        self.errors += other.errors;
        self.latencies_us.extend(other.latencies_us);
        self.busy += other.busy;
        self.busy_latencies_us.extend(other.busy_latencies_us);
        if self.first_error.is_none() {
            self.first_error = other.first_error;
        }
    }

    /// Adds a round of the same load measured in its own window: counts, latencies and
    /// windows add up; CPU per request and others' share are averaged by weight.
    pub fn add_round(&mut self, round: Stats) {
        let (n0, n1) = (self.answered as f64, round.answered as f64);
        let by_requests = |a: f64, b: f64| (a * n0 + b * n1) / (n0 + n1).max(1.0);
        self.server_cpu_us = by_requests(self.server_cpu_us, round.server_cpu_us);
        self.db_cpu_us = by_requests(self.db_cpu_us, round.db_cpu_us);
        let (w0, w1) = (self.window.as_secs_f64(), round.window.as_secs_f64());
        self.others_cpu_pct =
            (self.others_cpu_pct * w0 + round.others_cpu_pct * w1) / (w0 + w1).max(1e-9);
        let window = self.window + round.window;
        self.merge(round);
        self.latencies_us.sort_unstable();
        self.window = window;
    }

    pub fn finish(mut self, window: Duration) -> Stats {
        self.latencies_us.sort_unstable();
        self.busy_latencies_us.sort_unstable();
        self.window = window;
        self
    }

    pub fn rate(&self) -> f64 {
        self.ok as f64 / self.window.as_secs_f64().max(1e-9)
    }

    /// The q-quantile latency in ms (nearest rank).
    pub fn quantile_ms(&self, q: f64) -> f64 {
        quantile_ms(&self.latencies_us, q)
    }

    pub fn max_ms(&self) -> f64 {
        quantile_ms(&self.latencies_us, 1.0)
    }

    /// The q-quantile wait for a prompt refusal, in ms.
    pub fn busy_quantile_ms(&self, q: f64) -> f64 {
        quantile_ms(&self.busy_latencies_us, q)
    }
}

/// The q-quantile of sorted latencies in µs, in ms (nearest rank).
fn quantile_ms(sorted_us: &[u32], q: f64) -> f64 {
    if sorted_us.is_empty() {
        return f64::NAN;
    }
    let rank = ((q * sorted_us.len() as f64).ceil() as usize).clamp(1, sorted_us.len());
    f64::from(sorted_us[rank - 1]) / 1000.0
}

/// The login flood: the logins (answered or promptly refused), the liveness probes
/// beside them, and the server's largest RSS meanwhile.
#[derive(Debug, Default)]
pub struct Flood {
    pub connections: usize,
    pub logins: Stats,
    pub probes: Stats,
    pub rss_max_kib: u64,
}

#[derive(Clone, Copy)]
pub struct Window {
    pub start: Instant,
    pub end: Instant,
}

impl Window {
    pub fn after(warmup: Duration, measure: Duration) -> Window {
        let start = Instant::now() + warmup;
        Window {
            start,
            end: start + measure,
        }
    }

    pub fn len(&self) -> Duration {
        self.end - self.start
    }
}

/// CPU ticks: the whole machine's busy time, and the part spent by this benchmark, the
/// server and PostgreSQL. The rest is other processes: a run where they took a
/// noticeable share was disturbed, and says so.
#[derive(Debug, Clone, Copy)]
pub struct CpuSnap {
    pub total: u64,
    pub busy: u64,
    pub bench: u64,
    pub server: u64,
    pub db: u64,
}

impl CpuSnap {
    pub fn take(server_pid: u32) -> CpuSnap {
        let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
        let cpu: Vec<u64> = stat
            .lines()
            .next()
            .unwrap_or_default()
            .split_whitespace()
            .skip(1)
            .filter_map(|v| v.parse().ok())
            .collect();
        let at = |i: usize| cpu.get(i).copied().unwrap_or(0);
        // user nice system idle iowait irq softirq steal. Interrupt time is left out
        // of "busy": loopback traffic is processed in softirq and no process is
        // charged for it, so it would read as someone else's.
        let busy = at(0) + at(1) + at(2) + at(7);
        let total = busy + at(3) + at(4) + at(5) + at(6);
        let bench = process_ticks("self").unwrap_or(0);
        let server = process_ticks(&server_pid.to_string()).unwrap_or(0);
        let mut db = 0;
        if let Ok(dir) = std::fs::read_dir("/proc") {
            for entry in dir.flatten() {
                let name = entry.file_name();
                let name = name.to_string_lossy();
                if name.bytes().all(|b| b.is_ascii_digit())
                    && let Some(t) = process_ticks_if(&name, "postgres")
                {
                    db += t;
                }
            }
        }
        CpuSnap {
            total,
            busy,
            bench,
            server,
            db,
        }
    }

    /// CPU time (µs) the server and the database spent since `self`, per `requests`.
    pub fn per_request_us(&self, later: &CpuSnap, requests: u64) -> (f64, f64) {
        let tick_us = 1e6 / clock_ticks_per_second();
        let per = |a: u64, b: u64| b.saturating_sub(a) as f64 * tick_us / requests.max(1) as f64;
        (per(self.server, later.server), per(self.db, later.db))
    }

    /// The share of the machine (0–100 %) that other processes used since `self`.
    pub fn others_pct_until(&self, later: &CpuSnap) -> f64 {
        let total = later.total.saturating_sub(self.total).max(1) as f64;
        let busy = later.busy.saturating_sub(self.busy) as f64;
        let ours = (later.bench + later.server + later.db)
            .saturating_sub(self.bench + self.server + self.db) as f64;
        ((busy - ours) / total * 100.0).max(0.0)
    }
}

/// USER_HZ: 100 on Linux unless `getconf CLK_TCK` says otherwise.
pub fn clock_ticks_per_second() -> f64 {
    static HZ: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    *HZ.get_or_init(|| {
        Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
            .unwrap_or(100.0)
    })
}

pub fn process_ticks(pid: &str) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the comm.
    Some(fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?)
}

pub fn process_ticks_if(pid: &str, comm: &str) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let open = stat.find('(')?;
    let close = stat.rfind(')')?;
    if &stat[open + 1..close] != comm {
        return None;
    }
    process_ticks(pid)
}

/// An in-process hashing ceiling: `cores` ÷ one verify's time, for the algorithm the
/// server is configured with, timed in the same run.
#[derive(Debug, Clone, Copy, Default)]
pub struct HashLimit {
    /// `bcrypt` or `argon2id`.
    pub algorithm: &'static str,
    /// One verify with the machine otherwise idle.
    pub single_ms: f64,
    /// One verify while every core verifies.
    pub parallel_ms: f64,
    pub cores: usize,
    pub others_cpu_pct: f64,
}

impl HashLimit {
    pub fn bcrypt(cost: u32, cores: usize, rounds: usize) -> HashLimit {
        let hash = bcrypt::hash(PASSWORD, cost).expect("bcrypt hash");
        Self::measure("bcrypt", cores, rounds, &|| {
            assert!(bcrypt::verify(PASSWORD, &hash).unwrap_or(false));
        })
    }

    /// Argon2id with SPEC §16's default parameters, as the server uses them: a verify
    /// is one hash of the password with the stored salt.
    pub fn argon2id(params: Argon2Params, cores: usize, rounds: usize) -> HashLimit {
        let argon2 = argon2::Argon2::new(
            argon2::Algorithm::Argon2id,
            argon2::Version::V0x13,
            argon2::Params::new(
                params.memory_kib,
                params.iterations,
                params.parallelism,
                None,
            )
            .expect("SPEC §16's Argon2 parameters are valid"),
        );
        Self::measure("argon2id", cores, rounds, &|| {
            let mut out = [0u8; 32];
            argon2
                .hash_password_into(PASSWORD.as_bytes(), b"authctl-bench-salt", &mut out)
                .expect("an Argon2 hash of a constant");
        })
    }

    fn measure(
        algorithm: &'static str,
        cores: usize,
        rounds: usize,
        verify: &(dyn Fn() + Sync),
    ) -> HashLimit {
        // The median of a few single verifies, so a hiccup on a shared machine does not
        // lower the bar.
        let mut singles: Vec<f64> = (0..rounds.max(1) * 2 - 1)
            .map(|_| {
                let t = Instant::now();
                verify();
                t.elapsed().as_secs_f64() * 1000.0
            })
            .collect();
        singles.sort_by(f64::total_cmp);
        let single_ms = singles[singles.len() / 2];
        let t = Instant::now();
        std::thread::scope(|s| {
            for _ in 0..cores {
                s.spawn(|| {
                    for _ in 0..rounds {
                        verify();
                    }
                });
            }
        });
        let parallel_ms = t.elapsed().as_secs_f64() * 1000.0 / rounds as f64;
        HashLimit {
            algorithm,
            single_ms,
            parallel_ms,
            cores,
            others_cpu_pct: 0.0,
        }
    }

    /// Logins per second the CPUs allow: cores ÷ one verify's time (the single-verify
    /// time, the stricter reading).
    pub fn per_second(&self) -> f64 {
        self.cores as f64 * 1000.0 / self.single_ms
    }
}

/// The server's Argon2id parameters (SPEC §16 defaults: OWASP's minimum).
#[derive(Debug, Clone, Copy)]
pub struct Argon2Params {
    pub memory_kib: u32,
    pub iterations: u32,
    pub parallelism: u32,
}

impl Default for Argon2Params {
    fn default() -> Self {
        Argon2Params {
            memory_kib: 19456,
            iterations: 2,
            parallelism: 1,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stats(latencies_us: &[u32], window_s: u64) -> Stats {
        Stats {
            ok: latencies_us.len() as u64,
            answered: latencies_us.len() as u64,
            latencies_us: latencies_us.to_vec(),
            ..Stats::default()
        }
        .finish(Duration::from_secs(window_s))
    }

    #[test]
    fn percentiles_are_nearest_rank_over_every_kept_latency() {
        let s = stats(&[4000, 1000, 3000, 2000], 2);
        assert_eq!(s.quantile_ms(0.5), 2.0);
        assert_eq!(s.quantile_ms(0.99), 4.0);
        assert_eq!(s.quantile_ms(0.0), 1.0);
        assert_eq!(s.max_ms(), 4.0);
        assert_eq!(s.rate(), 2.0);
        assert!(Stats::default().quantile_ms(0.5).is_nan());
    }

    #[test]
    fn rounds_add_up_their_counts_windows_and_latencies() {
        let mut total = Stats::default();
        total.add_round(stats(&[1000, 3000], 1));
        total.add_round(stats(&[2000], 1));
        assert_eq!(total.ok, 3);
        assert_eq!(total.window, Duration::from_secs(2));
        assert_eq!(total.latencies_us, vec![1000, 2000, 3000]);
        assert_eq!(total.rate(), 1.5);
    }
}
