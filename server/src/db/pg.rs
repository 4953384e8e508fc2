//! The PostgreSQL state backend (`[state] backend = "postgres"`), for several `agnes serve`
//! processes sharing one state: a `sqlx` pool. The use cases are the same synchronous code
//! as the embedded store's ([`super::sql::Sql`]): each call takes one pooled connection to a
//! blocking thread and drives it there with the runtime's handle, so a transaction is one
//! connection, start to end, and the async executor never waits on the database.
//!
//! Schema changes run under a PostgreSQL advisory lock: replicas that start together
//! migrate once; the others wait, then find the schema current.

use std::cell::RefCell;
use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions, PgRow};
use sqlx::{Column as _, PgConnection, Row as _, TypeInfo as _};

use super::sql::{Row, Sql, Val, numbered};
use crate::error::{ApiError, ApiResult};

/// The advisory lock key under which the schema is migrated ("agnes" in ASCII).
const MIGRATION_LOCK: i64 = 0x61676e6573;

/// The advisory lock the one scheduling process holds.
pub const SCHEDULER_LOCK: i64 = 0x61676e6573 + 1;

/// A pool of connections to the state database.
#[derive(Clone)]
pub struct Pg {
    pool: PgPool,
}

/// How to reach the state database (its `Debug` never shows the password).
#[derive(Clone)]
pub struct PgTarget {
    /// `postgres://user@host:port/database?sslmode=...` (a password here is accepted, but
    /// `password` keeps it out of the configuration file).
    pub url: String,
    pub password: Option<String>,
    pub max_connections: u32,
}

impl std::fmt::Debug for PgTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // a password in the URL is cut too: everything between `://` and `@`
        let url = match (self.url.find("://"), self.url.rfind('@')) {
            (Some(s), Some(at)) if at > s => {
                format!("{}://…@{}", &self.url[..s], &self.url[at + 1..])
            }
            _ => self.url.clone(),
        };
        f.debug_struct("PgTarget")
            .field("url", &url)
            .field("password", &self.password.as_ref().map(|_| "…"))
            .field("max_connections", &self.max_connections)
            .finish()
    }
}

impl Pg {
    /// Connects, then migrates the schema under the advisory lock.
    pub async fn connect(target: &PgTarget) -> Result<Pg, String> {
        let mut options = PgConnectOptions::from_str(&target.url)
            .map_err(|e| format!("[state] url: {e}"))?
            .application_name("agnes")
            // `now()` in the migrations writes UTC, as every timestamp the store writes
            .options([("timezone", "UTC")]);
        if let Some(p) = &target.password {
            options = options.password(p);
        }
        let pool = PgPoolOptions::new()
            .max_connections(target.max_connections.max(2))
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(options)
            .await
            .map_err(|e| format!("connecting to the PostgreSQL state database: {e}"))?;
        let pg = Pg { pool };
        pg.run(|c| {
            c.value::<Val>("SELECT pg_advisory_lock(?)", super::sql::p![MIGRATION_LOCK])
                .map(drop)?;
            let migrated = super::migrations::migrate(c);
            c.execute(
                "SELECT pg_advisory_unlock(?)",
                super::sql::p![MIGRATION_LOCK],
            )?;
            migrated.map(drop).map_err(ApiError::Internal)
        })
        .await
        .map_err(|e| e.detail())?;
        Ok(pg)
    }

    /// Keeps or takes the session advisory lock `key` on a connection of its own: `held` is
    /// the connection that held it (checked alive); returns the connection holding it, or
    /// `None` when another process does. A process that dies loses it with its session.
    pub async fn lead(
        &self,
        held: Option<sqlx::pool::PoolConnection<sqlx::Postgres>>,
        key: i64,
    ) -> Option<sqlx::pool::PoolConnection<sqlx::Postgres>> {
        if let Some(mut conn) = held {
            if sqlx::query("SELECT 1").execute(&mut *conn).await.is_ok() {
                return Some(conn);
            }
            // the session is gone, and the lock with it: close, try again below
            let _ = conn.close().await;
        }
        let mut conn = self.pool.acquire().await.ok()?;
        let got: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
            .bind(key)
            .fetch_one(&mut *conn)
            .await
            .ok()?;
        got.then_some(conn)
    }

    /// The pool (LISTEN/NOTIFY, readiness).
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Runs `f` with one pooled connection on a blocking thread. A panic inside `f` rolls
    /// back whatever transaction it left open before the connection goes back to the pool.
    pub async fn run<T, F>(&self, f: F) -> ApiResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&dyn Sql) -> ApiResult<T> + Send + 'static,
    {
        let mut conn = self.pool.acquire().await?;
        let rt = tokio::runtime::Handle::current();
        tokio::task::spawn_blocking(move || {
            let sql = PgSql {
                conn: RefCell::new(&mut *conn),
                rt: &rt,
            };
            let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(&sql)));
            result.unwrap_or_else(|panic| {
                let _ = sql.batch("ROLLBACK");
                std::panic::resume_unwind(panic)
            })
        })
        .await
        .map_err(ApiError::internal)?
    }
}

/// One connection, driven from a blocking thread.
struct PgSql<'c> {
    conn: RefCell<&'c mut PgConnection>,
    rt: &'c tokio::runtime::Handle,
}

type PgQuery<'q> = sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments>;

fn bind<'q>(mut q: PgQuery<'q>, params: &[&Val]) -> PgQuery<'q> {
    for v in params {
        q = match v {
            Val::Int(i) => q.bind(*i),
            Val::Float(f) => q.bind(*f),
            Val::Bool(b) => q.bind(*b),
            Val::Text(t) => q.bind(t.clone()),
            // written into the statement by `numbered`
            Val::Null => q,
        };
    }
    q
}

fn decode(row: &PgRow) -> ApiResult<Row> {
    let mut out = Vec::with_capacity(row.columns().len());
    for (i, col) in row.columns().iter().enumerate() {
        let ty = col.type_info().name();
        let v = match ty {
            "INT2" => row
                .try_get::<Option<i16>, _>(i)?
                .map(|v| Val::Int(v.into())),
            "INT4" => row
                .try_get::<Option<i32>, _>(i)?
                .map(|v| Val::Int(v.into())),
            "INT8" => row.try_get::<Option<i64>, _>(i)?.map(Val::Int),
            "BOOL" => row.try_get::<Option<bool>, _>(i)?.map(Val::Bool),
            "FLOAT4" => row
                .try_get::<Option<f32>, _>(i)?
                .map(|v| Val::Float(v.into())),
            "FLOAT8" => row.try_get::<Option<f64>, _>(i)?.map(Val::Float),
            "TEXT" | "VARCHAR" | "BPCHAR" | "NAME" => {
                row.try_get::<Option<String>, _>(i)?.map(Val::Text)
            }
            // pg_advisory_lock() and friends
            "VOID" => None,
            other => {
                return Err(ApiError::internal(format!(
                    "system database: column {} is a {other} (cast it to VARCHAR)",
                    col.name()
                )));
            }
        };
        out.push(v.unwrap_or(Val::Null));
    }
    Ok(Row(out))
}

impl Sql for PgSql<'_> {
    fn execute(&self, sql: &str, params: &[Val]) -> ApiResult<usize> {
        let (sql, bound) = numbered(sql, params)?;
        let q = bind(sqlx::query(sqlx::AssertSqlSafe(sql)), &bound);
        let mut conn = self.conn.borrow_mut();
        let done = self.rt.block_on(q.execute(&mut **conn))?;
        Ok(done.rows_affected() as usize)
    }

    fn query(&self, sql: &str, params: &[Val]) -> ApiResult<Vec<Row>> {
        let (sql, bound) = numbered(sql, params)?;
        let q = bind(sqlx::query(sqlx::AssertSqlSafe(sql)), &bound);
        let mut conn = self.conn.borrow_mut();
        let rows = self.rt.block_on(q.fetch_all(&mut **conn))?;
        rows.iter().map(decode).collect()
    }

    fn postgres(&self) -> bool {
        true
    }

    fn batch(&self, sql: &str) -> ApiResult<()> {
        let mut conn = self.conn.borrow_mut();
        self.rt
            .block_on(sqlx::raw_sql(sqlx::AssertSqlSafe(sql)).execute(&mut **conn))?;
        Ok(())
    }
}
