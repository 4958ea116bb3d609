//! `authctl client add|list|remove|rotate-secret` (SPEC §18): the JSON shapes, the
//! secret shown once (digest stored: never listed), the old secret refused at once
//! after a rotation, and exit codes. The CLI needs only DATABASE_URL (the provider may
//! be off).

use serde_json::Value;

use crate::support::Backend;
use crate::support::cli::{migrated_db, stdout_json};
use crate::{Idp, cli_run, exchange, refresh_grant, token_error, token_json, tokens_for};

crate::on_both_backends!(
    client_add_prints_the_secret_once_and_list_never_shows_it,
    client_add_refuses_bad_redirect_uris_and_algorithms,
    rotate_secret_refuses_the_old_secret_at_once,
    client_remove_of_an_unknown_id_is_exit_3,
);

fn ok(out: &std::process::Output) {
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn url_safe(s: &str) -> bool {
    s.chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

async fn client_add_prints_the_secret_once_and_list_never_shows_it(backend: Backend) {
    // No server, no provider setting: the database alone.
    let db = migrated_db(&backend).await;
    let out = cli_run(
        &db.url,
        &[
            "client",
            "add",
            "--name",
            "Grafana",
            "--redirect-uri",
            "https://grafana.example/login/generic_oauth",
            "--redirect-uri",
            "https://grafana.example/other",
            "--post-logout-redirect-uri",
            "https://grafana.example/",
            "--output",
            "json",
        ],
    )
    .await;
    ok(&out);
    let added = stdout_json(&out);
    let id = added["client_id"].as_str().expect("client_id").to_owned();
    let secret = added["client_secret"]
        .as_str()
        .expect("client_secret")
        .to_owned();
    assert!(id.len() >= 22 && url_safe(&id), "{id}");
    assert_eq!(secret.len(), 43, "256 bits, base64url: {secret}");
    assert!(url_safe(&secret));
    assert_eq!(added["name"], "Grafana");
    assert_eq!(added["public"], false);
    assert_eq!(
        added["redirect_uris"],
        serde_json::json!([
            "https://grafana.example/login/generic_oauth",
            "https://grafana.example/other"
        ])
    );
    assert_eq!(
        added["post_logout_redirect_uris"],
        serde_json::json!(["https://grafana.example/"])
    );
    assert_eq!(added["id_token_alg"], "RS256", "the default");
    assert!(added["created_at"].is_string());

    let out = cli_run(
        &db.url,
        &[
            "client",
            "add",
            "--name",
            "SPA",
            "--redirect-uri",
            "http://127.0.0.1/cb",
            "--public",
            "--id-token-alg",
            "ES256",
            "--output",
            "json",
        ],
    )
    .await;
    ok(&out);
    let spa = stdout_json(&out);
    assert!(spa.get("client_secret").is_none_or(Value::is_null), "{spa}");
    assert_eq!(spa["public"], true);
    assert_eq!(spa["id_token_alg"], "ES256");
    assert_ne!(spa["client_id"], added["client_id"]);

    let out = cli_run(&db.url, &["client", "list", "--output", "json"]).await;
    ok(&out);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(!text.contains(&secret), "the secret is never listed");
    let list = stdout_json(&out);
    let list = list.as_array().expect("an array");
    assert_eq!(list.len(), 2);
    let listed = list
        .iter()
        .find(|c| c["client_id"] == id.as_str())
        .expect("listed");
    assert!(listed.get("client_secret").is_none(), "{listed}");
    for key in [
        "name",
        "public",
        "redirect_uris",
        "post_logout_redirect_uris",
        "id_token_alg",
        "created_at",
    ] {
        assert_eq!(listed[key], added[key], "{key}");
    }
    // The table form does not show it either.
    let out = cli_run(&db.url, &["client", "list"]).await;
    ok(&out);
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(table.contains(&id) && !table.contains(&secret), "{table}");
    // Nor does the database hold it in the clear (digest only).
    let dump = database_text(&db.url).await;
    assert!(!dump.contains(&secret), "the secret is stored as a digest");
}

/// Everything the database holds, as text, as far as a test can cheaply tell: the
/// SQLite file's bytes, or PostgreSQL's rows as text.
async fn database_text(url: &str) -> String {
    if let Some(path) = url.strip_prefix("sqlite://") {
        let mut text = String::from_utf8_lossy(&std::fs::read(path).unwrap()).into_owned();
        if let Ok(wal) = std::fs::read(format!("{path}-wal")) {
            text.push_str(&String::from_utf8_lossy(&wal));
        }
        return text;
    }
    use sqlx::{Connection, Row};
    let mut conn = sqlx::PgConnection::connect(url).await.unwrap();
    let tables: Vec<String> = sqlx::query(
        "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'",
    )
    .fetch_all(&mut conn)
    .await
    .unwrap()
    .iter()
    .map(|r| r.get::<String, _>(0))
    .collect();
    let mut text = String::new();
    for t in tables {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT CAST(t AS text) FROM \"{t}\" t"
        )))
        .fetch_all(&mut conn)
        .await
        .unwrap();
        for r in rows {
            text.push_str(&r.get::<String, _>(0));
        }
    }
    text
}

async fn client_add_refuses_bad_redirect_uris_and_algorithms(backend: Backend) {
    let db = migrated_db(&backend).await;
    let add = |extra: Vec<&'static str>| {
        let url = db.url.clone();
        async move {
            let mut args = vec!["client", "add", "--name", "x"];
            args.extend(extra);
            cli_run(&url, &args).await
        }
    };
    for bad in [
        vec!["--redirect-uri", "https://app.example/cb#fragment"],
        vec!["--redirect-uri", "not a url"],
        vec![
            "--redirect-uri",
            "https://app.example/cb",
            "--id-token-alg",
            "HS256",
        ],
        vec![
            "--redirect-uri",
            "https://app.example/cb",
            "--id-token-alg",
            "none",
        ],
        vec![],
    ] {
        let out = add(bad.clone()).await;
        assert_eq!(
            out.status.code(),
            Some(2),
            "{bad:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let out = cli_run(&db.url, &["client", "list", "--output", "json"]).await;
    ok(&out);
    assert_eq!(
        stdout_json(&out),
        serde_json::json!([]),
        "nothing was added"
    );
}

async fn rotate_secret_refuses_the_old_secret_at_once(backend: Backend) {
    let idp = Idp::start(&backend).await;
    idp.user("rot").await;
    let mut client = idp.confidential("https://app.example/cb").await;
    let old = client.secret.clone().unwrap();
    let body = tokens_for(&idp, &client, "rot").await;
    let refresh = body["refresh_token"].as_str().unwrap().to_owned();

    let out = idp
        .cli(&["client", "rotate-secret", &client.id, "--output", "json"])
        .await;
    ok(&out);
    let rotated = stdout_json(&out);
    assert_eq!(rotated["client_id"], client.id.as_str());
    let new = rotated["client_secret"]
        .as_str()
        .expect("a new secret")
        .to_owned();
    assert_eq!(new.len(), 43);
    assert_ne!(new, old);

    // The old secret: refused at the token endpoint, at once.
    let r = refresh_grant(&idp, &client, &refresh).await;
    assert_eq!(token_error(r, 401).await, "invalid_client");
    let mut agent = crate::Agent::new();
    let authz = crate::Authz::new(&client);
    let code = crate::sign_in(&mut agent, &idp, &authz, "rot").await;
    let r = exchange(&idp, &client, &authz, &code).await;
    assert_eq!(token_error(r, 401).await, "invalid_client");
    // The new one works.
    client.secret = Some(new);
    let body = tokens_for(&idp, &client, "rot").await;
    assert!(body["access_token"].is_string());
    token_json(
        refresh_grant(&idp, &client, body["refresh_token"].as_str().unwrap()).await,
        200,
    )
    .await;

    // A public client has no secret to rotate: exit 2.
    let public = idp
        .client("spa", &["https://spa.example/cb"], &["--public"])
        .await;
    let out = idp.cli(&["client", "rotate-secret", &public.id]).await;
    assert_eq!(
        out.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // An unknown one: exit 3.
    let out = idp
        .cli(&["client", "rotate-secret", "no-such-client-0123456789"])
        .await;
    assert_eq!(out.status.code(), Some(3));
    idp.shutdown().await;
}

async fn client_remove_of_an_unknown_id_is_exit_3(backend: Backend) {
    let db = migrated_db(&backend).await;
    let out = cli_run(&db.url, &["client", "remove", "no-such-client-0123456789"]).await;
    assert_eq!(
        out.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = cli_run(
        &db.url,
        &[
            "client",
            "add",
            "--name",
            "x",
            "--redirect-uri",
            "https://x.example/cb",
            "--output",
            "json",
        ],
    )
    .await;
    ok(&out);
    let id = stdout_json(&out)["client_id"].as_str().unwrap().to_owned();
    ok(&cli_run(&db.url, &["client", "remove", &id]).await);
    let out = cli_run(&db.url, &["client", "list", "--output", "json"]).await;
    assert_eq!(stdout_json(&out), serde_json::json!([]));
    // Removed twice: unknown the second time.
    let out = cli_run(&db.url, &["client", "remove", &id]).await;
    assert_eq!(out.status.code(), Some(3));
}
