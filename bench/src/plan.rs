//! What one run measures: the command line ([`Args`]), the scenarios and backends it
//! names, and the [`Plan`] resolved from them (smoke-mode defaults included).

use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, ValueEnum};

use crate::server;

/// Load benchmark of `authctl serve` on SQLite and PostgreSQL (see README, Performance).
#[derive(Debug, Parser)]
#[command(name = "authctl-bench", version)]
pub struct Args {
    /// Which database to benchmark
    #[arg(long, value_enum, default_value_t = BackendArg::Both)]
    backend: BackendArg,
    /// CI mode: ~1 s per scenario at bcrypt cost 4; exit 1 on any failed request or
    /// broken refresh chain (timings are reported, never judged)
    #[arg(long, env = "AUTHCTL_BENCH_SMOKE", value_parser = clap::builder::BoolishValueParser::new())]
    smoke: bool,
    /// The authctl binary to run [default: `authctl` next to this program, rebuilt first
    /// when started by `cargo run`]
    #[arg(long, value_name = "PATH")]
    server: Option<PathBuf>,
    /// bcrypt cost for the server and for the in-process limit [default: 12; smoke: 4]
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(4..=31))]
    bcrypt_cost: Option<u32>,
    /// Measured seconds per load scenario, after 1 s of warm-up [default: 10; smoke: 1]
    #[arg(long, value_name = "SECS")]
    duration: Option<f64>,
    /// The server's LOG_LEVEL (one INFO line per request at `info`)
    #[arg(long, default_value = "info", value_name = "FILTER")]
    log_level: String,
    /// Worker threads of the load generator (it shares the machine with the server)
    #[arg(long, default_value_t = 1, value_name = "N")]
    client_threads: usize,
    /// Refresh chains (one connection each) and rotations per chain [default: 8x300; smoke: 4x40]
    #[arg(long, value_name = "CHAINSxROTATIONS")]
    refresh: Option<String>,
    /// Run only these scenarios (comma-separated: liveness, me, me-metrics, login,
    /// login-argon2id, liveness-under-login, login-flood, login-flood-argon2id, login-mfa,
    /// introspect, oidc-code, register, recover, refresh, login-limited, prune-under-me,
    /// copy, import) [default: all]
    #[arg(long, value_enum, value_delimiter = ',', value_name = "LIST")]
    only: Vec<Scenario>,
    /// The server's ALGORITHM: HS256 signs with the fixed test key; EdDSA or ES256 with a
    /// key the server generates in its database (tokens carry `kid`) [default: HS256]
    #[arg(long, value_name = "ALG", value_parser = ["HS256", "HS384", "HS512", "EdDSA", "ES256"])]
    algorithm: Option<String>,
    /// Seed the database with this many users (three sessions each, a third of them
    /// expired) in bulk SQL before measuring, e.g. 1000000 [default: 0; smoke: 2000]
    #[arg(long, value_name = "N")]
    seed_users: Option<u64>,
    /// Lines of the JSON Lines file that `import` gives `authctl user import`, e.g.
    /// 1000000 [default: 100000; smoke: 2000]
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    import_lines: Option<u64>,
    /// Extra environment for the server, e.g. `--server-env DB_POOL_MAX_CONN=4` (repeatable)
    #[arg(long, value_name = "KEY=VALUE", value_parser = parse_env_pair)]
    server_env: Vec<(String, String)>,
    /// A setting of the throwaway PostgreSQL cluster, e.g. `--pg-setting
    /// synchronous_commit=off` to see what the commit's flush costs (repeatable)
    #[arg(long, value_name = "NAME=VALUE", value_parser = parse_env_pair)]
    pg_setting: Vec<(String, String)>,
}

fn parse_env_pair(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .ok_or_else(|| "expected KEY=VALUE".to_owned())
}

/// The scenarios, in the order they run and are reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Scenario {
    /// `/health/liveness`: the server's own ceiling
    Liveness,
    /// `/api/v1/auth/me`: a JWT check and one query per request
    Me,
    /// `/api/v1/auth/me` on two fresh servers, metrics on (`AUTHCTL_METRICS_BIND`) and
    /// off, in alternating rounds: what observing every request costs
    MeMetrics,
    /// `/api/v1/auth/token`: one bcrypt verify per request
    Login,
    /// `/api/v1/auth/token` on a server with `auth.password_hash = argon2id`, against
    /// the Argon2id limit measured in the same run
    LoginArgon2id,
    /// paced liveness and /me probes while 8 connections log in
    LivenessUnderLogin,
    /// paced liveness probes while 200 connections log in at once: prompt 503s, RSS
    LoginFlood,
    /// `login-flood` with argon2id: liveness, prompt 503s, RSS within SPEC §16's bound
    LoginFloodArgon2id,
    /// logins of accounts with TOTP on: password step (403 + `mfa_token`), then the
    /// code step, against the bcrypt limit
    LoginMfa,
    /// RFC 7662 introspection of access tokens against `/me`, alternating; and
    /// unknown API keys at rest
    Introspect,
    /// The OpenID Connect token endpoint exchanging authorization codes, against
    /// `/refresh` rotations on the same server (SPEC §18: no password hash)
    OidcCode,
    /// `/api/v1/auth/register`: a new user (one bcrypt hash) per request
    Register,
    /// `/api/v1/auth/recover` for a known and for unknown addresses (one insert, no
    /// mail server in the request): the two latencies side by side
    Recover,
    /// concurrent refresh-token rotation chains
    Refresh,
    /// logins over quota (429s) with the memory and the database rate-limit store
    LoginLimited,
    /// `authctl token prune` while 8 connections call /me
    PruneUnderMe,
    /// `authctl db copy --to` of this run's database (seeded: `--seed-users`) into a
    /// fresh database of the other backend: time and RSS
    Copy,
    /// `authctl user import` of `--import-lines` JSON Lines: time and RSS
    Import,
}

impl Scenario {
    /// The name on the command line, in the JSON lines and in the table.
    pub fn name(self) -> &'static str {
        match self {
            Scenario::Liveness => "liveness",
            Scenario::Me => "me",
            Scenario::MeMetrics => "me-metrics",
            Scenario::Login => "login",
            Scenario::LoginArgon2id => "login-argon2id",
            Scenario::LivenessUnderLogin => "liveness-under-login",
            Scenario::LoginFlood => "login-flood",
            Scenario::LoginFloodArgon2id => "login-flood-argon2id",
            Scenario::LoginMfa => "login-mfa",
            Scenario::Introspect => "introspect",
            Scenario::OidcCode => "oidc-code",
            Scenario::Register => "register",
            Scenario::Recover => "recover",
            Scenario::Refresh => "refresh",
            Scenario::LoginLimited => "login-limited",
            Scenario::PruneUnderMe => "prune-under-me",
            Scenario::Copy => "copy",
            Scenario::Import => "import",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum BackendArg {
    Sqlite,
    Postgres,
    Both,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    pub fn name(self) -> &'static str {
        match self {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgres",
        }
    }
}

/// Settings of one run, resolved from [`Args`].
#[derive(Debug, Clone)]
pub struct Plan {
    pub smoke: bool,
    pub server: PathBuf,
    pub cost: u32,
    pub warmup: Duration,
    pub measure: Duration,
    pub log_level: String,
    pub chains: usize,
    pub rotations: usize,
    pub startup_runs: usize,
    pub cores: usize,
    pub client_threads: usize,
    pub profile: String,
    pub server_env: Vec<(String, String)>,
    pub pg_settings: Vec<(String, String)>,
    pub seed_users: u64,
    pub import_lines: u64,
    pub scenarios: Vec<Scenario>,
    pub backends: Vec<Backend>,
}

impl Plan {
    /// Resolves the defaults (smoke or full) and checks the values clap cannot; the
    /// error is the one line to print.
    pub fn from_args(args: Args) -> Result<Plan, String> {
        let smoke = args.smoke;
        let server = match args.server {
            Some(p) => p,
            None => server::sibling_server()?,
        };
        let (chains, rotations) = match args.refresh.as_deref() {
            None if smoke => (4, 40),
            None => (8, 300),
            Some(s) => match s
                .split_once('x')
                .and_then(|(c, r)| Some((c.parse().ok()?, r.parse().ok()?)))
            {
                Some((c, r)) if c > 0 && r > 0 => (c, r),
                _ => return Err("--refresh takes CHAINSxROTATIONS, e.g. 8x300".into()),
            },
        };
        let measure = args.duration.unwrap_or(if smoke { 1.0 } else { 10.0 });
        if !(0.1..=13.0).contains(&measure) {
            return Err(
                "--duration must be between 0.1 and 13 seconds (every scenario stays under 15 s)"
                    .into(),
            );
        }
        Ok(Plan {
            smoke,
            profile: server::profile_of(&server),
            server,
            cost: args.bcrypt_cost.unwrap_or(if smoke { 4 } else { 12 }),
            warmup: Duration::from_secs_f64(if smoke { 0.2 } else { 1.0 }),
            measure: Duration::from_secs_f64(measure),
            log_level: args.log_level,
            chains,
            rotations,
            startup_runs: if smoke { 2 } else { 5 },
            cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
            client_threads: args.client_threads.max(1),
            // As server environment, so the table's heading names it too.
            server_env: args
                .algorithm
                .map(|alg| ("ALGORITHM".to_owned(), alg))
                .into_iter()
                .chain(args.server_env)
                .collect(),
            pg_settings: args.pg_setting,
            seed_users: args.seed_users.unwrap_or(if smoke { 2000 } else { 0 }),
            import_lines: args
                .import_lines
                .unwrap_or(if smoke { 2000 } else { 100_000 }),
            scenarios: if args.only.is_empty() {
                Scenario::value_variants().to_vec()
            } else {
                args.only
            },
            backends: match args.backend {
                BackendArg::Sqlite => vec![Backend::Sqlite],
                BackendArg::Postgres => vec![Backend::Postgres],
                BackendArg::Both => vec![Backend::Sqlite, Backend::Postgres],
            },
        })
    }

    pub fn runs(&self, scenario: Scenario) -> bool {
        self.scenarios.contains(&scenario)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(args: &[&str]) -> Result<Plan, String> {
        // --server, so that resolving the plan never runs cargo.
        let argv = ["authctl-bench", "--server", "/bin/true"]
            .into_iter()
            .chain(args.iter().copied());
        Plan::from_args(Args::try_parse_from(argv).map_err(|e| e.to_string())?)
    }

    #[test]
    fn smoke_mode_shortens_everything_and_runs_every_scenario_on_both_backends() {
        let p = plan(&["--smoke"]).expect("plan");
        assert_eq!((p.cost, p.chains, p.rotations), (4, 4, 40));
        assert_eq!(p.measure, Duration::from_secs(1));
        assert_eq!(p.scenarios.len(), Scenario::value_variants().len());
        assert_eq!(p.seed_users, 2000);
        assert_eq!(p.backends, vec![Backend::Sqlite, Backend::Postgres]);
    }

    #[test]
    fn algorithm_becomes_the_servers_algorithm_setting() {
        let p =
            plan(&["--algorithm", "EdDSA", "--server-env", "DB_POOL_MAX_CONN=4"]).expect("plan");
        assert_eq!(
            p.server_env,
            vec![
                ("ALGORITHM".to_owned(), "EdDSA".to_owned()),
                ("DB_POOL_MAX_CONN".to_owned(), "4".to_owned())
            ]
        );
        assert!(plan(&["--algorithm", "RS256"]).is_err());
        assert!(plan(&[]).expect("plan").server_env.is_empty());
    }

    #[test]
    fn only_takes_scenario_names_and_refresh_takes_chains_x_rotations() {
        let p = plan(&["--only", "me,liveness-under-login", "--refresh", "2x5"]).expect("plan");
        assert_eq!(
            p.scenarios,
            vec![Scenario::Me, Scenario::LivenessUnderLogin]
        );
        assert!(p.runs(Scenario::Me) && !p.runs(Scenario::Login));
        assert_eq!((p.chains, p.rotations), (2, 5));
        for s in Scenario::value_variants() {
            let cli = s.to_possible_value().expect("every scenario is selectable");
            assert_eq!(
                cli.get_name(),
                s.name(),
                "the report names what --only takes"
            );
        }
        assert!(plan(&["--only", "nope"]).is_err());
        assert!(plan(&["--refresh", "0x5"]).is_err());
        assert!(plan(&["--duration", "20"]).is_err());
    }
}
