//! The one SQL boundary both state backends implement: the embedded DuckDB connection and a
//! PostgreSQL connection ([`super::pg`]). The use-case modules (`access`, `sources`, ...) and
//! the migration ladder are written once against [`Sql`], in the SQL both engines speak:
//!
//! - parameters are `?`, bound from [`Val`]s (PostgreSQL gets `$1..$n`; a `NULL` is written
//!   into the statement, so its type comes from where it stands);
//! - timestamps are `TIMESTAMP` columns written from Rust's [`super::now`] as
//!   `CAST(? AS TIMESTAMP)` and read as `CAST(... AS VARCHAR)`; "now" is always a bound
//!   parameter, never the engine's clock (the same instant whatever the session's time zone);
//! - upserts are `INSERT ... ON CONFLICT`, aggregates are standard (`string_agg`,
//!   `FILTER`), no `GROUP BY ALL`, no `INTERVAL 1 DAY`.
//!
//! A column of another type than text, integer, boolean or float is an error: a new query
//! that forgets a cast fails its test on both backends.

use crate::error::{ApiError, ApiResult};

/// A value crossing the boundary, in either direction.
#[derive(Debug, Clone, PartialEq)]
pub enum Val {
    Null,
    Int(i64),
    Float(f64),
    Bool(bool),
    Text(String),
}

impl From<&str> for Val {
    fn from(v: &str) -> Val {
        Val::Text(v.to_owned())
    }
}
impl From<&String> for Val {
    fn from(v: &String) -> Val {
        Val::Text(v.clone())
    }
}
impl From<String> for Val {
    fn from(v: String) -> Val {
        Val::Text(v)
    }
}
impl From<i64> for Val {
    fn from(v: i64) -> Val {
        Val::Int(v)
    }
}
impl From<&i64> for Val {
    fn from(v: &i64) -> Val {
        Val::Int(*v)
    }
}
impl From<u32> for Val {
    fn from(v: u32) -> Val {
        Val::Int(v.into())
    }
}
impl From<bool> for Val {
    fn from(v: bool) -> Val {
        Val::Bool(v)
    }
}
impl From<&bool> for Val {
    fn from(v: &bool) -> Val {
        Val::Bool(*v)
    }
}
/// `None` is NULL (concrete impls: a blanket one sends inference in circles).
macro_rules! nullable {
    ($($t:ty),*) => {$(
        impl From<Option<$t>> for Val {
            fn from(v: Option<$t>) -> Val {
                v.map_or(Val::Null, Val::from)
            }
        }
        impl From<&Option<$t>> for Val {
            fn from(v: &Option<$t>) -> Val {
                v.clone().map_or(Val::Null, Val::from)
            }
        }
    )*};
}
nullable!(String, &str, &String, i64, bool);

/// `p![a, b, c]`: a parameter list.
macro_rules! p {
    ($($v:expr),* $(,)?) => { &[$($crate::db::sql::Val::from($v)),*][..] };
}
pub(crate) use p;

/// A value read back into a Rust type.
pub trait FromVal: Sized {
    fn from_val(v: &Val) -> Option<Self>;
}
impl FromVal for String {
    fn from_val(v: &Val) -> Option<Self> {
        match v {
            Val::Text(t) => Some(t.clone()),
            _ => None,
        }
    }
}
impl FromVal for i64 {
    fn from_val(v: &Val) -> Option<Self> {
        match v {
            Val::Int(i) => Some(*i),
            _ => None,
        }
    }
}
impl FromVal for u32 {
    fn from_val(v: &Val) -> Option<Self> {
        match v {
            Val::Int(i) => u32::try_from(*i).ok(),
            _ => None,
        }
    }
}
impl FromVal for bool {
    fn from_val(v: &Val) -> Option<Self> {
        match v {
            Val::Bool(b) => Some(*b),
            _ => None,
        }
    }
}
impl<T: FromVal> FromVal for Option<T> {
    fn from_val(v: &Val) -> Option<Self> {
        match v {
            Val::Null => Some(None),
            v => T::from_val(v).map(Some),
        }
    }
}

impl FromVal for Val {
    fn from_val(v: &Val) -> Option<Self> {
        Some(v.clone())
    }
}

/// One result row.
#[derive(Debug, Clone)]
pub struct Row(pub Vec<Val>);

impl Row {
    /// Column `i` as `T`; a type mismatch is an internal error naming the column.
    pub fn get<T: FromVal>(&self, i: usize) -> ApiResult<T> {
        let v = self.0.get(i).unwrap_or(&Val::Null);
        T::from_val(v).ok_or_else(|| {
            ApiError::internal(format!(
                "system database: column {i} is {v:?}, not a {}",
                std::any::type_name::<T>()
            ))
        })
    }
}

/// A connection (or a transaction on one) of either backend.
pub trait Sql {
    /// Runs one statement; returns the rows it changed.
    fn execute(&self, sql: &str, params: &[Val]) -> ApiResult<usize>;
    /// Runs one query; returns every row.
    fn query(&self, sql: &str, params: &[Val]) -> ApiResult<Vec<Row>>;
    /// Runs statements separated by `;`, without parameters (DDL, transaction control).
    fn batch(&self, sql: &str) -> ApiResult<()>;
    /// PostgreSQL (shared by several processes), where row locks matter.
    fn postgres(&self) -> bool {
        false
    }
}

impl dyn Sql + '_ {
    /// The first row, if any.
    pub fn row(&self, sql: &str, params: &[Val]) -> ApiResult<Option<Row>> {
        Ok(self.query(sql, params)?.into_iter().next())
    }

    /// The first column of the first row (a query that returns a row, like `count(*)`).
    pub fn value<T: FromVal>(&self, sql: &str, params: &[Val]) -> ApiResult<T> {
        match self.row(sql, params)? {
            Some(r) => r.get(0),
            None => Err(ApiError::internal(format!(
                "system database: no row from {sql}"
            ))),
        }
    }

    /// The first column of every row.
    pub fn column<T: FromVal>(&self, sql: &str, params: &[Val]) -> ApiResult<Vec<T>> {
        self.query(sql, params)?.iter().map(|r| r.get(0)).collect()
    }

    /// Runs `f` in a transaction: committed when it returns `Ok`, rolled back otherwise.
    pub fn transaction<T>(&self, f: impl FnOnce(&dyn Sql) -> ApiResult<T>) -> ApiResult<T> {
        self.batch("BEGIN TRANSACTION")?;
        match f(self) {
            Ok(v) => {
                self.batch("COMMIT")?;
                Ok(v)
            }
            Err(e) => {
                let _ = self.batch("ROLLBACK");
                Err(e)
            }
        }
    }
}

impl duckdb::ToSql for Val {
    fn to_sql(&self) -> duckdb::Result<duckdb::types::ToSqlOutput<'_>> {
        use duckdb::types::{ToSqlOutput, Value, ValueRef};
        Ok(match self {
            Val::Null => ToSqlOutput::Owned(Value::Null),
            Val::Int(i) => ToSqlOutput::Owned(Value::BigInt(*i)),
            Val::Float(f) => ToSqlOutput::Owned(Value::Double(*f)),
            Val::Bool(b) => ToSqlOutput::Owned(Value::Boolean(*b)),
            Val::Text(t) => ToSqlOutput::Borrowed(ValueRef::Text(t.as_bytes())),
        })
    }
}

fn from_duck(v: duckdb::types::Value) -> ApiResult<Val> {
    use duckdb::types::Value as V;
    Ok(match v {
        V::Null => Val::Null,
        V::Boolean(b) => Val::Bool(b),
        V::TinyInt(i) => Val::Int(i.into()),
        V::SmallInt(i) => Val::Int(i.into()),
        V::Int(i) => Val::Int(i.into()),
        V::BigInt(i) => Val::Int(i),
        V::UTinyInt(i) => Val::Int(i.into()),
        V::USmallInt(i) => Val::Int(i.into()),
        V::UInt(i) => Val::Int(i.into()),
        V::UBigInt(i) => Val::Int(i64::try_from(i).map_err(ApiError::internal)?),
        V::HugeInt(i) => Val::Int(i64::try_from(i).map_err(ApiError::internal)?),
        V::Float(f) => Val::Float(f.into()),
        V::Double(f) => Val::Float(f),
        V::Text(t) => Val::Text(t),
        other => {
            return Err(ApiError::internal(format!(
                "system database: a column of type {:?} (cast it to VARCHAR)",
                other.data_type()
            )));
        }
    })
}

impl Sql for duckdb::Connection {
    fn execute(&self, sql: &str, params: &[Val]) -> ApiResult<usize> {
        Ok(self
            .prepare(sql)?
            .execute(duckdb::params_from_iter(params))?)
    }

    fn query(&self, sql: &str, params: &[Val]) -> ApiResult<Vec<Row>> {
        // not `prepare_cached` (here and above): DuckDB 1.5 answered a re-run cached query
        // from the result of its first run (`a_cached_statement_sees_new_rows`)
        let mut stmt = self.prepare(sql)?;
        let mut rows = stmt.query(duckdb::params_from_iter(params))?;
        let mut out = Vec::new();
        while let Some(r) = rows.next()? {
            let n = r.as_ref().column_count();
            let mut row = Vec::with_capacity(n);
            for i in 0..n {
                row.push(from_duck(r.get(i)?)?);
            }
            out.push(Row(row));
        }
        Ok(out)
    }

    fn batch(&self, sql: &str) -> ApiResult<()> {
        Ok(self.execute_batch(sql)?)
    }
}

/// `?` placeholders as PostgreSQL's `$1..$n`, skipping quoted text; a `NULL` parameter is
/// written into the statement instead (a bound NULL would need a type, a literal takes the
/// type of where it stands). Returns the statement and the parameters left to bind.
pub(crate) fn numbered<'p>(sql: &str, params: &'p [Val]) -> ApiResult<(String, Vec<&'p Val>)> {
    let mut out = String::with_capacity(sql.len() + 8);
    let mut bound = Vec::with_capacity(params.len());
    let mut next = params.iter();
    let mut quoted = false;
    for c in sql.chars() {
        match c {
            '\'' => {
                quoted = !quoted;
                out.push(c);
            }
            '?' if !quoted => {
                let v = next.next().ok_or_else(|| {
                    ApiError::internal(format!("system database: too few parameters for {sql}"))
                })?;
                if *v == Val::Null {
                    out.push_str("NULL");
                } else {
                    bound.push(v);
                    out.push('$');
                    out.push_str(&bound.len().to_string());
                }
            }
            c => out.push(c),
        }
    }
    if next.next().is_some() {
        return Err(ApiError::internal(format!(
            "system database: too many parameters for {sql}"
        )));
    }
    Ok((out, bound))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_numbered_outside_quotes_and_nulls_are_written_in() {
        let params = p!["a", Option::<&str>::None, 3i64];
        let (sql, bound) = numbered("SELECT ?, '?', ?::VARCHAR IS NULL, x = ?", params).unwrap();
        assert_eq!(sql, "SELECT $1, '?', NULL::VARCHAR IS NULL, x = $2");
        assert_eq!(bound, [&Val::from("a"), &Val::Int(3)]);
        assert!(numbered("SELECT ?", p![]).is_err());
        assert!(numbered("SELECT 1", p![1i64]).is_err());
    }

    #[test]
    fn a_cached_statement_sees_new_rows() {
        let c = duckdb::Connection::open_in_memory().unwrap();
        let c: &dyn Sql = &c;
        c.batch("CREATE TABLE t (a BIGINT)").unwrap();
        let count = || {
            let plain = c.query("SELECT a FROM t WHERE a IN (1, 2)", p![]).unwrap();
            let bound = c
                .query("SELECT a FROM t WHERE a IN (?, ?)", p![1i64, 2i64])
                .unwrap();
            assert_eq!(plain.len(), bound.len());
            plain.len()
        };
        assert_eq!(count(), 0);
        c.execute("INSERT INTO t VALUES (?)", p![1i64]).unwrap();
        assert_eq!(count(), 1);
        c.execute("INSERT INTO t VALUES (?)", p![2i64]).unwrap();
        assert_eq!(count(), 2);
    }

    #[test]
    fn both_directions_through_duckdb() {
        let c = duckdb::Connection::open_in_memory().unwrap();
        let c: &dyn Sql = &c;
        c.batch("CREATE TABLE t (a VARCHAR, b BIGINT, c BOOLEAN, d TIMESTAMP)")
            .unwrap();
        let n = c
            .execute(
                "INSERT INTO t VALUES (?, ?, ?, CAST(? AS TIMESTAMP)), (?, ?, ?, ?)",
                p![
                    "x",
                    7i64,
                    true,
                    "2026-01-02 03:04:05",
                    Option::<String>::None,
                    Option::<i64>::None,
                    false,
                    Option::<String>::None
                ],
            )
            .unwrap();
        assert_eq!(n, 2);
        let rows = c
            .query(
                "SELECT a, b, c, CAST(d AS VARCHAR) FROM t ORDER BY b NULLS LAST",
                p![],
            )
            .unwrap();
        assert_eq!(rows[0].get::<String>(0).unwrap(), "x");
        assert_eq!(rows[0].get::<i64>(1).unwrap(), 7);
        assert!(rows[0].get::<bool>(2).unwrap());
        assert_eq!(rows[0].get::<String>(3).unwrap(), "2026-01-02 03:04:05");
        assert_eq!(rows[1].get::<Option<String>>(0).unwrap(), None);
        assert!(rows[1].get::<String>(0).is_err(), "NULL is not a String");
        let err = c.query("SELECT d FROM t", p![]).unwrap_err();
        assert!(
            err.to_string().contains("cast it to VARCHAR")
                || matches!(err, ApiError::Internal(ref m) if m.contains("cast it to VARCHAR")),
            "{err:?}"
        );
    }
}
