//! `db copy` (SPEC §17): every table of one database into another, SQLite ↔
//! PostgreSQL, streamed in batches (rows in, rows out) so memory stays bounded.
//!
//! [`TABLES`] is the one list of what is copied: each table with its columns, a type
//! tag per column (the backends store the same value differently: a UUID is a BLOB on
//! SQLite and a `UUID` on PostgreSQL, a time TEXT or `TIMESTAMPTZ`, a flag INTEGER or
//! `BOOLEAN`, bytes BLOB or `BYTEA`), the order rows are read in and the id column
//! whose sequence must move past the copied ids. [`SKIPPED`] names what is left out on
//! purpose, with the reason. `tests/dbcopy.rs` compares both lists with the tables and
//! columns the migrations create on each backend, so a migration that adds a table or
//! a column fails that test until the copy knows it.
//!
//! The source is read in one snapshot: one read transaction on one connection
//! (SQLite `BEGIN`, PostgreSQL `REPEATABLE READ READ ONLY`). The target is migrated
//! by its own migrations, then written in one transaction: a copy that fails leaves it
//! as empty as it was.

use std::str::FromStr;

use chrono::{DateTime, Utc};
use futures_util::{StreamExt, TryStreamExt, stream::BoxStream};
use serde::Serialize;
use sqlx::postgres::{PgConnectOptions, PgConnection, Postgres};
use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection};
use sqlx::{AssertSqlSafe, ConnectOptions, Connection, QueryBuilder, Row, Sqlite};
use uuid::Uuid;

use super::{Access, DatabaseUrl, StoreOptions};
use crate::error::{Error, Result};

/// How a column's values are read and written on both backends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `INTEGER` on PostgreSQL (4 bytes), INTEGER on SQLite.
    I32,
    /// `BIGINT` on PostgreSQL, INTEGER on SQLite.
    I64,
    /// `BOOLEAN` on PostgreSQL, 0/1 on SQLite.
    Bool,
    Text,
    /// `BYTEA` on PostgreSQL, BLOB on SQLite.
    Bytes,
    /// `UUID` on PostgreSQL, a 16-byte BLOB on SQLite.
    Uuid,
    /// `TIMESTAMPTZ` on PostgreSQL, RFC 3339 TEXT on SQLite.
    Time,
}

#[derive(Debug)]
pub struct Column {
    pub name: &'static str,
    pub kind: Kind,
}

#[derive(Debug)]
pub struct Table {
    pub name: &'static str,
    pub columns: &'static [Column],
    /// `ORDER BY` of the read: the primary key.
    pub order_by: &'static str,
    /// The id column a sequence fills (SQLite AUTOINCREMENT, PostgreSQL identity or
    /// serial): moved past the copied ids afterwards.
    pub serial: Option<&'static str>,
}

const fn col(name: &'static str, kind: Kind) -> Column {
    Column { name, kind }
}

use Kind::{Bool, Bytes, I32, I64, Text, Time, Uuid as Id};

/// Every table `db copy` copies, parents before children (foreign keys).
pub const TABLES: &[Table] = &[
    Table {
        name: "users",
        columns: &[
            col("id", I64),
            col("email", Text),
            col("email_norm", Text),
            col("username", Text),
            col("username_norm", Text),
            col("password_hash", Text),
            col("is_active", Bool),
            col("created_at", Time),
            col("updated_at", Time),
            col("failed_logins", I32),
            col("locked_until", Time),
            col("lock_count", I32),
            col("consecutive_failures", I32),
            col("logins_in_flight", I32),
            col("in_flight_until", Time),
            col("email_verified", Bool),
            col("security_stamp", I32),
        ],
        order_by: "id",
        serial: Some("id"),
    },
    Table {
        name: "token_families",
        columns: &[
            col("id", Id),
            col("user_id", I64),
            col("created_at", Time),
            col("revoked_at", Time),
            col("revoked_reason", Text),
            col("user_agent", Text),
            col("ip", Text),
            col("last_used_at", Time),
            col("amr", Text),
            col("kind", Text),
            col("client_id", Text),
            col("scope", Text),
            col("auth_time", Time),
            col("parent", Id),
        ],
        order_by: "id",
        serial: None,
    },
    Table {
        name: "refresh_tokens",
        columns: &[
            col("digest", Bytes),
            col("family_id", Id),
            col("issued_at", Time),
            col("expires_at", Time),
            col("rotated_at", Time),
            col("revoked_at", Time),
        ],
        order_by: "digest",
        serial: None,
    },
    Table {
        name: "settings",
        columns: &[col("name", Text), col("value", Text)],
        order_by: "name",
        serial: None,
    },
    Table {
        name: "signing_keys",
        columns: &[
            col("kid", Text),
            col("alg", Text),
            col("private_key", Bytes),
            col("public_jwk", Text),
            col("state", Text),
            col("created_at", Time),
            col("rotated_at", Time),
            col("expires_at", Time),
            col("retired_at", Time),
        ],
        order_by: "kid",
        serial: None,
    },
    Table {
        name: "oauth_clients",
        columns: &[
            col("client_id", Text),
            col("name", Text),
            col("secret_digest", Bytes),
            col("redirect_uris", Text),
            col("post_logout_redirect_uris", Text),
            col("id_token_alg", Text),
            col("created_at", Time),
        ],
        order_by: "client_id",
        serial: None,
    },
    Table {
        name: "id_token_keys",
        columns: &[
            col("kid", Text),
            col("alg", Text),
            col("private_key", Bytes),
            col("state", Text),
            col("created_at", Time),
            col("rotated_at", Time),
            col("expires_at", Time),
            col("retired_at", Time),
        ],
        order_by: "kid",
        serial: None,
    },
    Table {
        name: "audit_log",
        columns: &[
            col("id", I64),
            col("at", Time),
            col("kind", Text),
            col("user_id", I64),
            col("username", Text),
            col("family_id", Id),
            col("ip", Text),
            col("request_id", Text),
            col("detail", Text),
        ],
        order_by: "id",
        serial: Some("id"),
    },
    Table {
        name: "email_tokens",
        columns: &[
            col("digest", Bytes),
            col("user_id", I64),
            col("purpose", Text),
            col("email_norm", Text),
            col("stamp", I32),
            col("created_at", Time),
            col("expires_at", Time),
            col("used_at", Time),
        ],
        order_by: "digest",
        serial: None,
    },
    Table {
        name: "email_throttle",
        columns: &[
            col("address_digest", Bytes),
            col("kind", Text),
            col("last_at", Time),
        ],
        order_by: "address_digest, kind",
        serial: None,
    },
    Table {
        name: "email_outbox",
        columns: &[
            col("id", I64),
            col("kind", Text),
            col("user_id", I64),
            col("to_addr", Text),
            col("subject", Text),
            col("body", Text),
            col("message_id", Text),
            col("state", Text),
            col("attempts", I32),
            col("created_at", Time),
            col("next_attempt_at", Time),
            col("claimed_until", Time),
            col("last_error", Text),
            col("finished_at", Time),
        ],
        order_by: "id",
        serial: Some("id"),
    },
    Table {
        name: "user_mfa",
        columns: &[
            col("user_id", I64),
            col("secret", Bytes),
            col("created_at", Time),
            col("confirmed_at", Time),
            col("last_step", I64),
        ],
        order_by: "user_id",
        serial: None,
    },
    Table {
        name: "recovery_codes",
        columns: &[
            col("user_id", I64),
            col("digest", Bytes),
            col("used_at", Time),
        ],
        order_by: "user_id, digest",
        serial: None,
    },
    Table {
        name: "mfa_tokens",
        columns: &[
            col("digest", Bytes),
            col("user_id", I64),
            col("password_digest", Bytes),
            col("expires_at", Time),
            col("used_at", Time),
            col("failures", I32),
        ],
        order_by: "digest",
        serial: None,
    },
    Table {
        name: "user_roles",
        columns: &[col("user_id", I64), col("role", Text)],
        order_by: "user_id, role",
        serial: None,
    },
    Table {
        name: "api_keys",
        columns: &[
            col("id", I64),
            col("name", Text),
            col("digest", Bytes),
            col("scopes", Text),
            col("created_at", Time),
            col("expires_at", Time),
            col("last_used_at", Time),
            col("revoked_at", Time),
        ],
        order_by: "id",
        serial: Some("id"),
    },
];

/// Tables the migrations create that `db copy` leaves out on purpose, with the reason.
pub const SKIPPED: &[(&str, &str)] = &[
    (
        "_sqlx_migrations",
        "the target's own migrations fill it (the backends' migrations differ)",
    ),
    (
        "rate_limits",
        "rate-limit state: it expires within minutes, and the quotas start full on the target",
    ),
    (
        "oauth_codes",
        "authorization codes live 60 s: an authorization in flight during the move starts again",
    ),
];

/// At most this many rows per INSERT ...
pub(crate) const BATCH_ROWS: usize = 1000;
/// ... and at most this many bound values (SQLite allows 32766, PostgreSQL 65535).
pub(crate) const MAX_BINDS: usize = 30_000;

/// The rows one table contributed to a copy.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct TableCount {
    pub table: &'static str,
    pub rows: u64,
}

/// One column's value, as read from the source.
enum Value {
    I32(Option<i32>),
    I64(Option<i64>),
    Bool(Option<bool>),
    Text(Option<String>),
    Bytes(Option<Vec<u8>>),
    Uuid(Option<Uuid>),
    Time(Option<DateTime<Utc>>),
}

/// Reads one row by the table's type tags; a value the tag cannot read (a SQLite cell
/// of another type) is an error naming the table and column.
macro_rules! decode_row {
    ($row:expr, $table:expr) => {{
        let row = $row;
        let mut values = Vec::with_capacity($table.columns.len());
        for (i, c) in $table.columns.iter().enumerate() {
            let value = match c.kind {
                Kind::I32 => row.try_get(i).map(Value::I32),
                Kind::I64 => row.try_get(i).map(Value::I64),
                Kind::Bool => row.try_get(i).map(Value::Bool),
                Kind::Text => row.try_get(i).map(Value::Text),
                Kind::Bytes => row.try_get(i).map(Value::Bytes),
                Kind::Uuid => row.try_get(i).map(Value::Uuid),
                Kind::Time => row.try_get(i).map(Value::Time),
            }
            .map_err(|e| {
                Error::Internal(anyhow::anyhow!(
                    "reading {}.{} from the source: {e}",
                    $table.name,
                    c.name
                ))
            })?;
            values.push(value);
        }
        Ok::<_, Error>(values)
    }};
}

/// Adds one batch of rows to an INSERT.
macro_rules! push_rows {
    ($builder:expr, $rows:expr) => {
        $builder.push_values($rows.iter(), |mut b, row| {
            for v in row {
                match v {
                    Value::I32(x) => b.push_bind(*x),
                    Value::I64(x) => b.push_bind(*x),
                    Value::Bool(x) => b.push_bind(*x),
                    Value::Text(x) => b.push_bind(x.as_deref()),
                    Value::Bytes(x) => b.push_bind(x.as_deref()),
                    Value::Uuid(x) => b.push_bind(*x),
                    Value::Time(x) => b.push_bind(*x),
                };
            }
        })
    };
}

/// One connection of either backend.
enum Conn {
    Sqlite(SqliteConnection),
    Pg(PgConnection),
}

impl Conn {
    async fn open(url: &DatabaseUrl, read_only: bool) -> Result<Conn> {
        if url.is_postgres() {
            let options = PgConnectOptions::from_str(url.expose())
                .map_err(|_| Error::config(format!("{url} is not a usable PostgreSQL URL")))?
                .application_name("authctl db copy")
                // A table streamed whole is one long statement, not a slow query.
                .disable_statement_logging();
            Ok(Conn::Pg(PgConnection::connect_with(&options).await?))
        } else {
            let options = SqliteConnectOptions::from_str(url.expose())
                .map_err(|_| Error::config(format!("{url} is not a usable SQLite URL")))?
                .busy_timeout(std::time::Duration::from_secs(5))
                .foreign_keys(true)
                .read_only(read_only)
                .create_if_missing(false)
                .disable_statement_logging();
            Ok(Conn::Sqlite(
                SqliteConnection::connect_with(&options).await?,
            ))
        }
    }

    async fn execute(&mut self, sql: String) -> Result<u64> {
        let sql = AssertSqlSafe(sql);
        Ok(match self {
            Conn::Sqlite(c) => sqlx::raw_sql(sql).execute(c).await?.rows_affected(),
            Conn::Pg(c) => sqlx::raw_sql(sql).execute(c).await?.rows_affected(),
        })
    }

    /// One `BIGINT` from a query without binds.
    async fn scalar(&mut self, sql: String) -> Result<i64> {
        let sql = AssertSqlSafe(sql);
        Ok(match self {
            Conn::Sqlite(c) => sqlx::query_scalar(sql).fetch_one(c).await?,
            Conn::Pg(c) => sqlx::query_scalar(sql).fetch_one(c).await?,
        })
    }

    /// The table's rows, in key order, as a stream.
    fn rows(&mut self, table: &'static Table) -> BoxStream<'_, Result<Vec<Value>>> {
        let names: Vec<&str> = table.columns.iter().map(|c| c.name).collect();
        let sql = AssertSqlSafe(format!(
            "SELECT {} FROM {} ORDER BY {}",
            names.join(", "),
            table.name,
            table.order_by
        ));
        match self {
            Conn::Sqlite(c) => sqlx::query(sql)
                .fetch(c)
                .map(move |row| decode_row!(&row?, table))
                .boxed(),
            Conn::Pg(c) => sqlx::query(sql)
                .fetch(c)
                .map(move |row| decode_row!(&row?, table))
                .boxed(),
        }
    }

    async fn insert(&mut self, table: &Table, rows: &[Vec<Value>]) -> Result<()> {
        let names: Vec<&str> = table.columns.iter().map(|c| c.name).collect();
        let head = format!("INSERT INTO {} ({}) ", table.name, names.join(", "));
        match self {
            Conn::Sqlite(c) => {
                let mut q = QueryBuilder::<Sqlite>::new(head);
                push_rows!(q, rows);
                q.build().execute(c).await?;
            }
            Conn::Pg(c) => {
                // Identity columns are GENERATED ALWAYS: the copied ids are kept.
                let mut q = QueryBuilder::<Postgres>::new(head + "OVERRIDING SYSTEM VALUE ");
                push_rows!(q, rows);
                q.build().execute(c).await?;
            }
        }
        Ok(())
    }

    /// The highest id the table's sequence has handed out (deleted rows included).
    async fn sequence_high(&mut self, table: &Table, serial: &str) -> Result<i64> {
        let sql = match self {
            Conn::Sqlite(_) => format!(
                "SELECT COALESCE((SELECT seq FROM sqlite_sequence WHERE name = '{}'), 0)",
                table.name
            ),
            Conn::Pg(_) => format!(
                "SELECT COALESCE(pg_sequence_last_value(pg_get_serial_sequence('{}', '{serial}')::regclass), 0)",
                table.name
            ),
        };
        let high = self.scalar(sql).await?;
        let max = self
            .scalar(format!(
                "SELECT COALESCE(MAX({serial}), 0) FROM {}",
                table.name
            ))
            .await?;
        Ok(high.max(max))
    }

    /// Moves the sequence so that the next id is `high + 1`.
    async fn set_sequence(&mut self, table: &Table, serial: &str, high: i64) -> Result<()> {
        match self {
            Conn::Sqlite(_) => {
                let set = format!(
                    "UPDATE sqlite_sequence SET seq = {high} WHERE name = '{}'",
                    table.name
                );
                if self.execute(set).await? == 0 {
                    self.execute(format!(
                        "INSERT INTO sqlite_sequence (name, seq) VALUES ('{}', {high})",
                        table.name
                    ))
                    .await?;
                }
            }
            Conn::Pg(_) => {
                self.scalar(format!(
                    "SELECT setval(pg_get_serial_sequence('{}', '{serial}'), {}, false)",
                    table.name,
                    high + 1
                ))
                .await?;
            }
        }
        Ok(())
    }
}

/// Copies every table of `source` into `target` (see the module comment). `progress`
/// hears of each table once it is done.
pub async fn copy(
    source: &DatabaseUrl,
    target: &DatabaseUrl,
    mut progress: impl FnMut(&TableCount),
) -> Result<Vec<TableCount>> {
    // The source must have every migration this binary knows: the columns read are
    // the ones of the current schema.
    let src_store = super::connect(StoreOptions {
        access: Access::ReadOnly,
        url: source.clone(),
        pool_min: 0,
        pool_max: 1,
    })?;
    let current = src_store.schema_is_current().await;
    src_store.close().await;
    if !current? {
        return Err(Error::schema_not_current());
    }

    // The target's own migrations (a SQLite file is created, mode 0600).
    let dst_store = super::connect(StoreOptions {
        access: Access::Create,
        url: target.clone(),
        pool_min: 0,
        pool_max: 1,
    })?;
    let migrated = dst_store.migrate().await;
    dst_store.close().await;
    migrated?;

    let mut src = Conn::open(source, true).await?;
    src.execute(
        match src {
            Conn::Sqlite(_) => "BEGIN",
            Conn::Pg(_) => "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY",
        }
        .into(),
    )
    .await?;
    let mut dst = Conn::open(target, false).await?;
    dst.execute(
        match dst {
            Conn::Sqlite(_) => "BEGIN IMMEDIATE",
            Conn::Pg(_) => "BEGIN",
        }
        .into(),
    )
    .await?;
    if dst
        .scalar("SELECT COUNT(*) FROM (SELECT 1 FROM users LIMIT 1) AS any_user".into())
        .await?
        > 0
    {
        return Err(Error::StateConflict(
            "the target database already holds users: db copy only fills an empty database",
        ));
    }
    // Without users, what the target holds (keys and settings a `migrate` made, audit
    // lines of failed logins) is replaced by the source's.
    for table in TABLES.iter().rev() {
        dst.execute(format!("DELETE FROM {}", table.name)).await?;
    }

    let mut counts = Vec::with_capacity(TABLES.len());
    for table in TABLES {
        let rows = copy_table(&mut src, &mut dst, table).await?;
        if let Some(serial) = table.serial {
            let high = src.sequence_high(table, serial).await?;
            let high = high.max(dst.sequence_high(table, serial).await?);
            dst.set_sequence(table, serial, high).await?;
        }
        let count = TableCount {
            table: table.name,
            rows,
        };
        progress(&count);
        counts.push(count);
    }
    dst.execute("COMMIT".into()).await?;
    src.execute("COMMIT".into()).await?;
    Ok(counts)
}

/// Streams one table across in batches; returns how many rows it copied.
async fn copy_table(src: &mut Conn, dst: &mut Conn, table: &'static Table) -> Result<u64> {
    let per_batch = (MAX_BINDS / table.columns.len()).clamp(1, BATCH_ROWS);
    let mut batch = Vec::with_capacity(per_batch);
    let mut copied = 0u64;
    let mut rows = src.rows(table);
    while let Some(row) = rows.try_next().await? {
        batch.push(row);
        if batch.len() == per_batch {
            dst.insert(table, &batch).await?;
            copied += batch.len() as u64;
            batch.clear();
        }
    }
    if !batch.is_empty() {
        dst.insert(table, &batch).await?;
        copied += batch.len() as u64;
    }
    Ok(copied)
}
