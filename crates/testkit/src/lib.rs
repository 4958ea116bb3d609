//! What authctl's tests and its benchmark (`authctl-bench`) share, so that each exists
//! once: a throwaway PostgreSQL cluster ([`pg`]), the `authctl` binary run as a child
//! process and waited on until it is ready ([`process`]), and the rule for a missing
//! dependency ([`skip_or_fail`]): a loud SKIPPED locally, a failure under `CI=true`.
//!
//! Errors are plain `String`s that say what is missing: callers either print them
//! (the benchmark) or hand them to [`skip_or_fail`] / `expect` (the tests).

pub mod pg;
pub mod process;

/// A port that was free on 127.0.0.1 a moment ago (the listener is dropped at once).
pub fn free_port() -> Result<u16, String> {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| format!("no free port on 127.0.0.1: {e}"))
}

/// Says SKIPPED on stderr, or panics under CI=true.
pub fn skip_or_fail(why: &str) {
    if std::env::var("CI").is_ok_and(|v| v == "true" || v == "1") {
        panic!("required test dependency missing under CI: {why}");
    }
    // Straight to the process's stderr: libtest captures `eprintln!` of passing tests,
    // and a skip must never read as a silent pass.
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "SKIPPED: {why}");
}
