//! The second factor (SPEC §14, issue 22), on SQLite and PostgreSQL: enrolment and
//! confirmation, the 403 `mfa_required` step and the `urn:authctl:grant-type:mfa`
//! grant, one-step logins, the replay rule (one step once per account, across two
//! servers on one database), wrong codes counting towards the lockout, recovery codes,
//! disable and `user mfa-reset`, and the `amr` claim through refreshes. The codes are
//! computed here from the secret the enrolment answers (totp-rs; the library itself
//! is checked against RFC 6238's vectors in `service::mfa`).

mod support;

use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};
use support::cli::{authctl, stdout_json};
use support::{Backend, PASSWORD, TestApp, assert_problem, spawn_app};

const MFA_GRANT: &str = "urn:authctl:grant-type:mfa";

on_both_backends!(
    enrolment_then_two_step_login_gives_amr_pwd_otp_that_refresh_keeps,
    wrong_codes_count_towards_the_lockout_and_five_spend_the_mfa_token,
    recovery_codes_work_once_and_a_new_set_voids_the_old,
    disable_and_mfa_reset_turn_totp_off,
    one_code_racing_over_two_servers_logs_in_exactly_once,
);

/// The code of `secret` for the step `offset` steps from now.
fn code(secret: &[u8], offset: i64) -> String {
    let totp = totp_rs::Builder::new()
        .with_secret(secret.to_vec())
        .build()
        .expect("totp");
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("time")
        .as_secs() as i64;
    totp.generate((now + 30 * offset) as u64).to_string()
}

fn claims(access: &str) -> Value {
    let payload = access.split('.').nth(1).expect("a JWT");
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).expect("base64url")).expect("json")
}

async fn register(app: &TestApp, name: &str) {
    let r = app
        .register(&format!("{name}@example.com"), name, PASSWORD)
        .await;
    assert_eq!(r.status(), 201);
}

async fn login_pair(app: &TestApp, name: &str) -> Value {
    let r = app.login(name, PASSWORD).await;
    assert_eq!(r.status(), 200);
    r.json().await.expect("pair")
}

async fn post_json(app: &TestApp, path: &str, access: &str, body: Value) -> reqwest::Response {
    app.client
        .post(app.url(path))
        .bearer_auth(access)
        .json(&body)
        .send()
        .await
        .expect("request")
}

async fn token_form(app: &TestApp, base: &str, form: &[(&str, &str)]) -> reqwest::Response {
    app.client
        .post(format!("{base}/api/v1/auth/token"))
        .form(form)
        .send()
        .await
        .expect("token request")
}

/// The first step of a login with TOTP on: the 403's `mfa_token`.
async fn mfa_token(app: &TestApp, name: &str) -> String {
    let body = assert_problem(app.login(name, PASSWORD).await, 403).await;
    assert_eq!(body["error"], "mfa_required", "{body}");
    assert!(body.get("access_token").is_none());
    let token = body["mfa_token"].as_str().expect("mfa_token").to_owned();
    assert_eq!(token.len(), 43, "256 bits, base64url");
    token
}

async fn second_step(app: &TestApp, token: &str, code: &str) -> reqwest::Response {
    let form = [
        ("grant_type", MFA_GRANT),
        ("mfa_token", token),
        ("code", code),
    ];
    token_form(app, &app.base, &form).await
}

/// Enrols and confirms TOTP for `name` (logged in as `access`): the secret and the
/// recovery codes. The confirming step is the current one.
async fn enable_totp(app: &TestApp, access: &str) -> (Vec<u8>, Vec<String>) {
    let r = post_json(
        app,
        "/api/v1/auth/mfa/totp",
        access,
        json!({"current_password": PASSWORD}),
    )
    .await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["cache-control"], "no-store");
    let body: Value = r.json().await.expect("enrolment");
    let secret_b32 = body["secret"].as_str().expect("secret");
    let secret = totp_rs::Secret::try_from_base32(secret_b32)
        .expect("base32")
        .as_bytes()
        .to_vec();
    assert_eq!(secret.len(), 20, "160 bits");
    let r = post_json(
        app,
        "/api/v1/auth/mfa/totp/confirm",
        access,
        json!({"code": code(&secret, 0)}),
    )
    .await;
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.expect("codes");
    let codes: Vec<String> = body["recovery_codes"]
        .as_array()
        .expect("codes")
        .iter()
        .map(|c| c.as_str().expect("code").to_owned())
        .collect();
    assert_eq!(codes.len(), 10);
    (secret, codes)
}

fn show(app: &TestApp, user: &str) -> Value {
    let out = authctl(&app.db.url)
        .args(["user", "show", user, "--output", "json"])
        .output()
        .expect("user show");
    assert!(out.status.success());
    stdout_json(&out)
}

fn audit_kinds(app: &TestApp, kind: &str) -> Vec<Value> {
    let out = authctl(&app.db.url)
        .args(["audit", "list", "--kind", kind, "--output", "json"])
        .output()
        .expect("audit list");
    assert!(out.status.success());
    stdout_json(&out).as_array().expect("events").clone()
}

async fn enrolment_then_two_step_login_gives_amr_pwd_otp_that_refresh_keeps(backend: Backend) {
    let app = spawn_app(&backend, |_| {}).await;
    register(&app, "tina").await;
    let mine = login_pair(&app, "tina").await;
    let access = mine["access_token"].as_str().expect("access").to_owned();
    assert_eq!(claims(&access)["amr"], json!(["pwd"]));
    let other = login_pair(&app, "tina").await;

    // Enrolment: the current password, checked like a login.
    let r = post_json(
        &app,
        "/api/v1/auth/mfa/totp",
        &access,
        json!({"current_password": "not the password"}),
    )
    .await;
    assert_problem(r, 403).await;
    let r = post_json(
        &app,
        "/api/v1/auth/mfa/totp",
        &access,
        json!({"current_password": PASSWORD}),
    )
    .await;
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.expect("enrolment");
    let secret_b32 = body["secret"].as_str().expect("secret").to_owned();
    let issuer = app.settings.auth.issuer.clone();
    let enc: String = issuer
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                char::from(b).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect();
    assert_eq!(
        body["otpauth_uri"],
        format!(
            "otpauth://totp/{enc}:tina?secret={secret_b32}&issuer={enc}&algorithm=SHA1&digits=6&period=30"
        )
    );
    let secret = totp_rs::Secret::try_from_base32(&secret_b32)
        .expect("base32")
        .as_bytes()
        .to_vec();

    // Pending: logins are unchanged, /me says off.
    login_pair(&app, "tina").await;
    let me: Value = app.me(&access).await.json().await.expect("me");
    assert_eq!(me["mfa_enabled"], false);

    // Confirmation: a wrong code is 403, a malformed one 422.
    let wrong = format!(
        "{:06}",
        (code(&secret, 0).parse::<u32>().unwrap() + 1) % 1_000_000
    );
    let r = post_json(
        &app,
        "/api/v1/auth/mfa/totp/confirm",
        &access,
        json!({"code": wrong}),
    )
    .await;
    assert_problem(r, 403).await;
    let r = post_json(
        &app,
        "/api/v1/auth/mfa/totp/confirm",
        &access,
        json!({"code": "12ab"}),
    )
    .await;
    let body = assert_problem(r, 422).await;
    assert_eq!(body["errors"][0]["field"], "code");
    let confirming = code(&secret, 0);
    let r = post_json(
        &app,
        "/api/v1/auth/mfa/totp/confirm",
        &access,
        json!({"code": confirming}),
    )
    .await;
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.expect("codes");
    assert_eq!(body["recovery_codes"].as_array().expect("codes").len(), 10);

    // Other sessions (password only) are revoked; the caller's own survives.
    let r = app
        .refresh(other["refresh_token"].as_str().expect("refresh"))
        .await;
    assert_eq!(r.status(), 401);
    let me: Value = app.me(&access).await.json().await.expect("me");
    assert_eq!(me["mfa_enabled"], true);
    assert_eq!(show(&app, "tina")["mfa_enabled"], true);
    let r = post_json(
        &app,
        "/api/v1/auth/mfa/totp",
        &access,
        json!({"current_password": PASSWORD}),
    )
    .await;
    assert_problem(r, 409).await;

    // A wrong password stays the generic 401, byte for byte that of an unknown user.
    let wrong_pw = app.login("tina", "not the password").await;
    assert_eq!(wrong_pw.status(), 401);
    let wrong_pw = wrong_pw.bytes().await.expect("body");
    let unknown = app.login("nobody", "not the password").await.bytes().await;
    assert_eq!(wrong_pw, unknown.expect("body"));

    // The right password alone: 403 mfa_required, no tokens.
    let token = mfa_token(&app, "tina").await;
    // The step that confirmed the enrolment is used: it cannot log in.
    let r = second_step(&app, &token, &confirming).await;
    let body = assert_problem(r, 401).await;
    assert_eq!(body["error"], "invalid_grant");
    // The next step can.
    let next = code(&secret, 1);
    let r = second_step(&app, &token, &next).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["cache-control"], "no-store");
    let pair: Value = r.json().await.expect("pair");
    let access2 = pair["access_token"].as_str().expect("access");
    assert_eq!(claims(access2)["amr"], json!(["pwd", "otp"]));
    // The token is spent; the step too (replay in one step: the generic 401).
    let r = second_step(&app, &token, &code(&secret, -1)).await;
    assert_problem(r, 401).await;
    let r = token_form(
        &app,
        &app.base,
        &[
            ("username", "tina"),
            ("password", PASSWORD),
            ("code", &next),
        ],
    )
    .await;
    assert_problem(r, 401).await;
    // A step before the last accepted one is refused too.
    let r = second_step(&app, &mfa_token(&app, "tina").await, &code(&secret, -1)).await;
    assert_problem(r, 401).await;

    // Refresh keeps the session's amr, in both directions.
    let r = app
        .refresh(pair["refresh_token"].as_str().expect("refresh"))
        .await;
    assert_eq!(r.status(), 200);
    let refreshed: Value = r.json().await.expect("pair");
    assert_eq!(
        claims(refreshed["access_token"].as_str().expect("access"))["amr"],
        json!(["pwd", "otp"])
    );
    let r = app
        .refresh(mine["refresh_token"].as_str().expect("refresh"))
        .await;
    assert_eq!(r.status(), 200);
    let refreshed: Value = r.json().await.expect("pair");
    assert_eq!(
        claims(refreshed["access_token"].as_str().expect("access"))["amr"],
        json!(["pwd"]),
        "a pre-MFA session is never upgraded"
    );

    // Audit: enabled, failures; never the secret.
    assert_eq!(audit_kinds(&app, "mfa_enabled").len(), 1);
    assert!(!audit_kinds(&app, "mfa_failed").is_empty());
    let out = authctl(&app.db.url)
        .args(["audit", "list", "--output", "json"])
        .output()
        .expect("audit list");
    assert!(!String::from_utf8_lossy(&out.stdout).contains(&secret_b32));
    app.shutdown().await;
}

async fn wrong_codes_count_towards_the_lockout_and_five_spend_the_mfa_token(backend: Backend) {
    let app = spawn_app(&backend, |s| s.auth.lockout_threshold = 7).await;
    register(&app, "walt").await;
    let access = login_pair(&app, "walt").await["access_token"]
        .as_str()
        .expect("access")
        .to_owned();
    let (secret, _) = enable_totp(&app, &access).await;
    let right = code(&secret, 1);
    let wrong = format!(
        "{:06}",
        (right.parse::<u32>().unwrap() + 500_000) % 1_000_000
    );

    let token = mfa_token(&app, "walt").await;
    for _ in 0..5 {
        let body = assert_problem(second_step(&app, &token, &wrong).await, 401).await;
        assert_eq!(body["error"], "invalid_grant");
    }
    // Five wrong codes spent it: the right code no longer helps.
    assert_problem(second_step(&app, &token, &right).await, 401).await;
    // The password step counted neither way; each wrong code counted once.
    assert_eq!(show(&app, "walt")["failed_logins"], 5);

    // A wrong code in one step is a failed login too, the generic 401.
    let r = token_form(
        &app,
        &app.base,
        &[
            ("username", "walt"),
            ("password", PASSWORD),
            ("code", &wrong),
        ],
    )
    .await;
    let body = assert_problem(r, 401).await;
    assert_eq!(body["detail"], "Incorrect username or password.");
    // The seventh failure locks the account: then the right code is refused too.
    let token = mfa_token(&app, "walt").await;
    assert_problem(second_step(&app, &token, &wrong).await, 401).await;
    let details = show(&app, "walt");
    assert!(details["locked_until"].is_string(), "{details}");
    assert_problem(app.login("walt", PASSWORD).await, 401).await;

    authctl(&app.db.url)
        .args(["user", "unlock", "walt"])
        .assert()
        .success();
    let token = mfa_token(&app, "walt").await;
    assert_eq!(second_step(&app, &token, &right).await.status(), 200);
    assert_eq!(show(&app, "walt")["failed_logins"], 0);
    assert!(audit_kinds(&app, "mfa_failed").len() >= 7);
    app.shutdown().await;
}

async fn recovery_codes_work_once_and_a_new_set_voids_the_old(backend: Backend) {
    let app = spawn_app(&backend, |_| {}).await;
    register(&app, "rita").await;
    let access = login_pair(&app, "rita").await["access_token"]
        .as_str()
        .expect("access")
        .to_owned();
    let (secret, codes) = enable_totp(&app, &access).await;
    for c in &codes {
        assert_eq!(c.len(), 14, "XXXX-XXXX-XXXX: {c}");
    }

    let r = second_step(&app, &mfa_token(&app, "rita").await, &codes[0]).await;
    assert_eq!(r.status(), 200);
    let pair: Value = r.json().await.expect("pair");
    assert_eq!(
        claims(pair["access_token"].as_str().expect("access"))["amr"],
        json!(["pwd", "otp"])
    );
    // Once only.
    let r = second_step(&app, &mfa_token(&app, "rita").await, &codes[0]).await;
    assert_problem(r, 401).await;
    // Typed loosely (lower case, no dashes) it is the same code.
    let loose = codes[1].replace('-', "").to_lowercase();
    let r = token_form(
        &app,
        &app.base,
        &[
            ("username", "rita"),
            ("password", PASSWORD),
            ("code", &loose),
        ],
    )
    .await;
    assert_eq!(r.status(), 200);
    assert_eq!(audit_kinds(&app, "recovery_code_used").len(), 2);

    // A new set: a recovery code does not get one, a TOTP code does.
    let r = post_json(
        &app,
        "/api/v1/auth/mfa/recovery-codes",
        &access,
        json!({"code": codes[2]}),
    )
    .await;
    assert_problem(r, 403).await;
    let r = post_json(
        &app,
        "/api/v1/auth/mfa/recovery-codes",
        &access,
        json!({"code": code(&secret, 1)}),
    )
    .await;
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.expect("codes");
    let fresh: Vec<String> = body["recovery_codes"]
        .as_array()
        .expect("codes")
        .iter()
        .map(|c| c.as_str().expect("code").to_owned())
        .collect();
    assert_eq!(fresh.len(), 10);
    let r = second_step(&app, &mfa_token(&app, "rita").await, &codes[2]).await;
    assert_problem(r, 401).await;
    let r = second_step(&app, &mfa_token(&app, "rita").await, &fresh[0]).await;
    assert_eq!(r.status(), 200);
    app.shutdown().await;
}

async fn disable_and_mfa_reset_turn_totp_off(backend: Backend) {
    let app = spawn_app(&backend, |_| {}).await;
    register(&app, "dora").await;
    let access = login_pair(&app, "dora").await["access_token"]
        .as_str()
        .expect("access")
        .to_owned();
    let (_, codes) = enable_totp(&app, &access).await;

    let delete = |code: String| {
        app.client
            .delete(app.url("/api/v1/auth/mfa/totp"))
            .bearer_auth(&access)
            .json(&json!({ "code": code }))
            .send()
    };
    assert_problem(delete("000000".into()).await.expect("delete"), 403).await;
    let r = delete(codes[0].clone()).await.expect("delete");
    assert_eq!(r.status(), 204);
    assert_problem(delete(codes[1].clone()).await.expect("delete"), 409).await;
    // Off: the password alone logs in again, as `pwd`.
    let pair = login_pair(&app, "dora").await;
    assert_eq!(
        claims(pair["access_token"].as_str().expect("access"))["amr"],
        json!(["pwd"])
    );

    // On again, then an operator's reset.
    let (secret, _) = enable_totp(&app, &access).await;
    mfa_token(&app, "dora").await;
    let out = authctl(&app.db.url)
        .args(["user", "mfa-reset", "dora"])
        .output()
        .expect("mfa-reset");
    assert!(out.status.success());
    let printed = String::from_utf8_lossy(&out.stdout).into_owned();
    let secret_b32 = totp_rs::Secret::from(secret).to_base32();
    assert!(!printed.contains(&secret_b32));
    assert_eq!(show(&app, "dora")["mfa_enabled"], false);
    login_pair(&app, "dora").await;
    authctl(&app.db.url)
        .args(["user", "mfa-reset", "nobody"])
        .assert()
        .code(3);
    let events = audit_kinds(&app, "mfa_disabled");
    assert_eq!(events.len(), 2, "{events:?}");
    app.shutdown().await;
}

async fn one_code_racing_over_two_servers_logs_in_exactly_once(backend: Backend) {
    // Lockout on, above the race's failures, so that every attempt is checked.
    let app = spawn_app(&backend, |s| s.auth.lockout_threshold = 50).await;
    register(&app, "rick").await;
    let access = login_pair(&app, "rick").await["access_token"]
        .as_str()
        .expect("access")
        .to_owned();
    let (secret, _) = enable_totp(&app, &access).await;
    let second = authctl::server::spawn(app.settings.clone(), Default::default())
        .await
        .expect("a second server starts");
    let second_base = format!("http://{}", second.addr);
    for _ in 0..300 {
        let ready = app
            .client
            .get(format!("{second_base}/health/startup"))
            .send()
            .await
            .is_ok_and(|r| r.status() == 200);
        if ready {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }

    const N: usize = 12;
    let mut tokens = Vec::new();
    for _ in 0..N {
        tokens.push(mfa_token(&app, "rick").await);
    }
    let one = code(&secret, 1);
    let mut tasks = Vec::new();
    for (i, token) in tokens.into_iter().enumerate() {
        let client = app.client.clone();
        let base = if i % 2 == 0 {
            app.base.clone()
        } else {
            second_base.clone()
        };
        let one = one.clone();
        tasks.push(tokio::spawn(async move {
            let form = [
                ("grant_type", MFA_GRANT),
                ("mfa_token", token.as_str()),
                ("code", one.as_str()),
            ];
            client
                .post(format!("{base}/api/v1/auth/token"))
                .form(&form)
                .send()
                .await
                .expect("request")
                .status()
                .as_u16()
        }));
    }
    let mut statuses = Vec::new();
    for t in tasks {
        statuses.push(t.await.expect("task"));
    }
    assert_eq!(
        statuses.iter().filter(|s| **s == 200).count(),
        1,
        "{statuses:?}"
    );
    assert!(
        statuses.iter().all(|s| *s == 200 || *s == 401),
        "{statuses:?}"
    );
    second.shutdown().await.expect("clean shutdown");
    app.shutdown().await;
}
