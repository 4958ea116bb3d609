//! Health and lifecycle: the three probes, graceful shutdown with requests in flight,
//! and a database outage (503, then recovery).

use crate::prelude::*;

crate::on_both_backends!(
    health_probes_answer,
    graceful_shutdown_finishes_in_flight_requests,
    a_database_outage_is_503_and_the_server_recovers,
);

async fn health_probes_answer(backend: Backend) {
    let app = spawn_app(&backend, |_| {}).await;
    for (path, status) in [
        ("liveness", "alive"),
        ("readiness", "ready"),
        ("startup", "started"),
    ] {
        let r = app
            .client
            .get(app.url(&format!("/health/{path}")))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{path}");
        assert_eq!(json(r).await["status"], status);
    }
    app.shutdown().await;
}

async fn graceful_shutdown_finishes_in_flight_requests(backend: Backend) {
    // A real bcrypt cost makes the login slow enough to be in flight at shutdown.
    let app = spawn_app(&backend, |s| s.auth.bcrypt_cost = 12).await;
    assert_eq!(
        app.register("slow@example.com", "slow", PASSWORD)
            .await
            .status(),
        201
    );
    let client = app.client.clone();
    let url = app.url("/api/v1/auth/token");
    let login = tokio::spawn(async move {
        client
            .post(url)
            .form(&[("username", "slow"), ("password", PASSWORD)])
            .send()
            .await
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    let base = app.base.clone();
    app.shutdown().await;
    let r = login.await.unwrap().expect("in-flight request completed");
    assert_eq!(r.status(), 200);
    // And the listener is closed.
    let refused = reqwest::Client::new()
        .get(format!("{base}/health/liveness"))
        .send()
        .await;
    assert!(refused.is_err());
}

async fn a_database_outage_is_503_and_the_server_recovers(backend: Backend) {
    match backend {
        Backend::Postgres(_) => postgres_outage().await,
        Backend::Sqlite => sqlite_lock_outage().await,
    }
}

async fn postgres_outage() {
    if std::env::var("AUTHCTL_TEST_POSTGRES_URL").is_ok() {
        skip_or_fail("the outage test needs a cluster of its own; unset AUTHCTL_TEST_POSTGRES_URL");
        return;
    }
    let cluster = tokio::task::spawn_blocking(authctl_testkit::pg::Cluster::start)
        .await
        .unwrap()
        .expect("private cluster");
    let backend = Backend::Postgres(cluster.url("postgres"));
    let app = spawn_app(&backend, |_| {}).await;
    let (access, _) = app.user_with_tokens("outage").await;
    // /me holds connections for its lookups (store::lane): they must not outlive the outage.
    for _ in 0..4 {
        assert_eq!(app.me(&access).await.status(), 200);
    }

    tokio::task::block_in_place(|| cluster.stop_server());
    assert_problem(
        app.client
            .get(app.url("/health/readiness"))
            .send()
            .await
            .unwrap(),
        503,
    )
    .await;
    assert_problem(app.me(&access).await, 503).await;
    assert_problem(app.login("outage", PASSWORD).await, 503).await;
    assert_eq!(
        app.client
            .get(app.url("/health/liveness"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );

    tokio::task::block_in_place(|| cluster.start_server()).expect("restart");
    let mut ready = false;
    for _ in 0..100 {
        if app
            .client
            .get(app.url("/health/readiness"))
            .send()
            .await
            .unwrap()
            .status()
            == 200
        {
            ready = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(ready, "readiness recovered");
    for _ in 0..4 {
        assert_eq!(app.me(&access).await.status(), 200);
    }
    assert_eq!(app.login("outage", PASSWORD).await.status(), 200);
    app.shutdown().await;
}

/// SQLite has no server to stop; its outage is a write lock held elsewhere: writes
/// wait out the busy timeout and answer 503, then work again once it is released.
async fn sqlite_lock_outage() {
    use sqlx::Connection;
    let app = spawn_app(&Backend::Sqlite, |_| {}).await;
    let (access, _) = app.user_with_tokens("locked").await;
    let mut holder = sqlx::SqliteConnection::connect(&app.db.url).await.unwrap();
    sqlx::query("BEGIN EXCLUSIVE")
        .execute(&mut holder)
        .await
        .unwrap();
    assert_problem(app.login("locked", PASSWORD).await, 503).await;
    assert_eq!(
        app.me(&access).await.status(),
        200,
        "reads go on in WAL mode"
    );
    sqlx::query("ROLLBACK").execute(&mut holder).await.unwrap();
    assert_eq!(app.login("locked", PASSWORD).await.status(), 200);
    app.shutdown().await;
}
