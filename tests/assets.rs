//! `completions/` and `man/` are generated from the clap definitions; this keeps the
//! committed files in step. Regenerate with `cargo run -- generate-assets`.

use std::collections::BTreeSet;
use std::path::Path;

fn check(dir: &str, expected: Vec<(String, Vec<u8>)>) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join(dir);
    let mut stale = Vec::new();
    for (name, contents) in &expected {
        match std::fs::read(root.join(name)) {
            Ok(on_disk) if &on_disk == contents => {}
            Ok(_) => stale.push(format!("{dir}/{name} differs")),
            Err(_) => stale.push(format!("{dir}/{name} is missing")),
        }
    }
    let wanted: BTreeSet<_> = expected.iter().map(|(n, _)| n.clone()).collect();
    if let Ok(entries) = std::fs::read_dir(&root) {
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if !wanted.contains(&name) {
                stale.push(format!("{dir}/{name} is no longer generated"));
            }
        }
    }
    assert!(
        stale.is_empty(),
        "generated files are stale; run `cargo run -- generate-assets`:\n{}",
        stale.join("\n")
    );
}

#[test]
fn committed_completions_match_the_cli_definition() {
    check("completions", authctl::cli::generate_completions());
}

#[test]
fn committed_man_pages_match_the_cli_definition() {
    let pages = authctl::cli::generate_man_pages().expect("man pages");
    for sub in [
        "authctl.1",
        "authctl-serve.1",
        "authctl-user-add.1",
        "authctl-token-inspect.1",
        "authctl-health.1",
    ] {
        assert!(pages.iter().any(|(n, _)| n == sub), "{sub} not generated");
    }
    check("man", pages);
}
