//! PostgreSQL for tests. The throwaway cluster itself is `authctl_testkit::pg`, shared
//! with the benchmark; what needs sqlx (a fresh database per test) stays here.

pub use authctl_testkit::pg::shared_server;

/// Creates an empty database on the server and returns its URL.
pub async fn fresh_database(server_url: &str) -> String {
    use sqlx::Connection;
    let name = format!("t_{}", uuid::Uuid::new_v4().simple());
    let mut conn = sqlx::PgConnection::connect(server_url)
        .await
        .expect("connect to test postgres");
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut conn)
        .await
        .expect("create test database");
    let (base, _) = server_url.rsplit_once('/').expect("url with a database");
    format!("{base}/{name}")
}
