//! Look-alike email addresses (SPEC §4): addresses are kept in NFC, so an address in
//! composed and in decomposed form is one account, found at login however it is
//! typed; an address with a format character (zero-width, bidi controls, …) is
//! refused; and `migrate` brings addresses stored before the rule into NFC, reporting
//! (never failing on) those whose normal form is another account's.

use crate::cli_run;
use crate::prelude::*;

crate::on_both_backends!(
    an_address_in_composed_or_decomposed_form_is_one_account,
    addresses_with_format_characters_are_422_naming_the_email_field,
    migrate_normalizes_stored_addresses_and_reports_collisions,
);

/// `josé@example.com` with `é` as one code point (U+00E9).
const COMPOSED: &str = "Jos\u{e9}@Example.com";
/// The same address with `e` + COMBINING ACUTE ACCENT (U+0301).
const DECOMPOSED: &str = "Jose\u{301}@Example.com";

async fn an_address_in_composed_or_decomposed_form_is_one_account(backend: Backend) {
    let app = spawn_app(&backend, |_| {}).await;
    let r = app.register(DECOMPOSED, "jose", PASSWORD).await;
    assert_eq!(r.status(), 201);
    // Stored (and shown) in NFC.
    assert_eq!(json(r).await["email"], COMPOSED);
    let body = assert_problem(app.register(COMPOSED, "other", PASSWORD).await, 409).await;
    assert!(
        body["detail"]
            .as_str()
            .unwrap_or_default()
            .to_lowercase()
            .contains("email"),
        "{body}"
    );
    let upper = "JOSE\u{301}@EXAMPLE.COM";
    assert_problem(app.register(upper, "third", PASSWORD).await, 409).await;
    // Login by email finds the account in either form, in any case.
    for typed in [COMPOSED, DECOMPOSED, upper] {
        assert_eq!(app.login(typed, PASSWORD).await.status(), 200, "{typed:?}");
    }
    app.shutdown().await;
}

async fn addresses_with_format_characters_are_422_naming_the_email_field(backend: Backend) {
    let app = spawn_app(&backend, |_| {}).await;
    for (n, c) in [
        '\u{200b}', '\u{200c}', '\u{200d}', '\u{feff}', '\u{202e}', '\u{2066}', '\u{200f}',
        '\u{00ad}',
    ]
    .into_iter()
    .enumerate()
    {
        let email = format!("ali{c}ce@example.com");
        let body = assert_problem(
            app.register(&email, &format!("user{n}"), PASSWORD).await,
            422,
        )
        .await;
        assert_eq!(body["errors"][0]["field"], "email", "{c:?}: {body}");
        assert_eq!(body["errors"].as_array().unwrap().len(), 1, "{body}");
    }
    // The address without it is free.
    assert_eq!(
        app.register("alice@example.com", "alice", PASSWORD)
            .await
            .status(),
        201
    );
    app.shutdown().await;
}

/// Runs one statement with binds on the app's database, as an older binary might
/// have left rows.
async fn set_email(app: &TestApp, id: i64, email: &str, email_norm: &str) {
    const SQL: &str = "UPDATE users SET email = $1, email_norm = $2 WHERE id = $3";
    if app.db.url.starts_with("postgres") {
        let pool = sqlx::PgPool::connect(&app.db.url).await.unwrap();
        let q = sqlx::query(SQL).bind(email).bind(email_norm).bind(id);
        assert_eq!(q.execute(&pool).await.unwrap().rows_affected(), 1);
        pool.close().await;
    } else {
        let pool = sqlx::SqlitePool::connect(&app.db.url).await.unwrap();
        let q = sqlx::query(SQL).bind(email).bind(email_norm).bind(id);
        assert_eq!(q.execute(&pool).await.unwrap().rows_affected(), 1);
        pool.close().await;
    }
}

async fn registered(app: &TestApp, email: &str, username: &str) -> i64 {
    let r = app.register(email, username, PASSWORD).await;
    assert_eq!(r.status(), 201);
    json(r).await["id"].as_i64().unwrap()
}

fn stdout(out: &std::process::Output) -> String {
    assert!(
        out.status.success(),
        "{:?}: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

async fn migrate_normalizes_stored_addresses_and_reports_collisions(backend: Backend) {
    let app = spawn_app(&backend, |_| {}).await;
    // Three accounts as a database from before the rule could hold them: two with
    // decomposed addresses, one of which is in NFC the address of another account.
    let clash = registered(&app, "rene-old@example.com", "rene_old").await;
    let holder = registered(&app, "Ren\u{e9}@example.com", "rene").await;
    let jose = registered(&app, "jose@example.com", "jose").await;
    set_email(
        &app,
        clash,
        "Rene\u{301}@example.com",
        "rene\u{301}@example.com",
    )
    .await;
    set_email(&app, jose, DECOMPOSED, &DECOMPOSED.to_lowercase()).await;
    // What migration 20261204000002 leaves for the step on such a database.
    let service = service_for(&app).await;
    service
        .store()
        .setting_get_or_insert("email_nfc_pending", "1")
        .await
        .unwrap();
    // Before the step, a login typed in NFC misses the decomposed row.
    assert_problem(app.login(COMPOSED, PASSWORD).await, 401).await;

    let out = cli_run(&app, &["migrate", "--output", "json"], None).await;
    let report: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(report["applied"], serde_json::json!([]), "{report}");
    assert_eq!(
        report["email_collisions"],
        serde_json::json!([{"user_id": clash, "conflicts_with": holder}]),
        "{report}"
    );
    let log = String::from_utf8_lossy(&out.stderr);
    let warn = log.lines().find(|l| l.contains("WARN")).unwrap_or_default();
    assert!(
        warn.contains(&format!("{clash} (same as {holder})")),
        "the WARN line names the user ids: {log}"
    );

    // The free one is normalized: found however it is typed, shown in NFC.
    for typed in [COMPOSED, DECOMPOSED] {
        assert_eq!(app.login(typed, PASSWORD).await.status(), 200, "{typed:?}");
    }
    let shown = service
        .find_user(&UserRef::Id(authctl::domain::UserId(jose)))
        .await
        .unwrap();
    assert_eq!(shown.email, COMPOSED);
    // The colliding one is left exactly as it was.
    let left = service
        .find_user(&UserRef::Id(authctl::domain::UserId(clash)))
        .await
        .unwrap();
    assert_eq!(left.email, "Rene\u{301}@example.com");

    // Until resolved, every run reports it again (and changes nothing else).
    let out = cli_run(&app, &["migrate"], None).await;
    let text = stdout(&out);
    assert!(text.contains("up to date"), "{text}");
    assert!(
        text.contains(&format!("warning: user {clash} "))
            && text.contains(&format!("user {holder}")),
        "{text}"
    );
    // Resolved: the step finishes and removes its marker.
    let id = clash.to_string();
    let out = cli_run(&app, &["user", "delete", &id], None).await;
    stdout(&out);
    let out = cli_run(&app, &["migrate", "--output", "json"], None).await;
    let report: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(
        report["email_collisions"],
        serde_json::json!([]),
        "{report}"
    );
    assert_eq!(
        service
            .store()
            .setting_get("email_nfc_pending")
            .await
            .unwrap(),
        None
    );
    app.shutdown().await;
}
