//! # agnes-query
//!
//! The structured request of `agnes:connector@0.2.0`'s `estimate` and `query`: which table,
//! which columns, a filter, an order and a limit. The host builds it (from an analyst's
//! request, after parsing and checking it), validates it against the table's columns
//! ([`Request::validate`]) and hands it to the connector; analyst text never reaches a
//! connector verbatim. The connector renders it into its source's dialect
//! ([`postgres::render`] for PostgreSQL).
//!
//! WIT has no recursive types, so the filter crosses the boundary as **canonical JSON**:
//! the serde form of [`Expr`] (externally tagged, snake_case), e.g. `country = 'CZ' AND
//! amount > 10`:
//!
//! ```json
//! {"binary": {"op": "and",
//!   "left":  {"binary": {"op": "eq", "left": {"column": "country"}, "right": {"literal": {"string": "CZ"}}}},
//!   "right": {"binary": {"op": "gt", "left": {"column": "amount"},  "right": {"literal": {"int": 10}}}}}}
//! ```
//!
//! | node | JSON |
//! |---|---|
//! | column of the table | `{"column": "name"}` |
//! | literal | `{"literal": "null"}`, `{"literal": {"bool": true}}`, `{"literal": {"int": 1}}`, `{"literal": {"float": 1.5}}`, `{"literal": {"decimal": "12.30"}}`, `{"literal": {"string": "x"}}`, `{"literal": {"date": "2024-01-31"}}`, `{"literal": {"timestamp": "2024-01-31T10:00:00Z"}}` |
//! | comparison, AND/OR, arithmetic | `{"binary": {"op": "eq"/"not_eq"/"lt"/"lt_eq"/"gt"/"gt_eq"/"and"/"or"/"plus"/"minus"/"multiply"/"divide"/"modulo", "left": …, "right": …}}` |
//! | NOT, unary minus | `{"not": …}`, `{"negate": …}` |
//! | IS [NOT] NULL | `{"is_null": {"expr": …, "negated": false}}` |
//! | [NOT] IN | `{"in_list": {"expr": …, "list": [ … ], "negated": false}}` |
//! | [NOT] BETWEEN | `{"between": {"expr": …, "low": …, "high": …, "negated": false}}` |
//! | [NOT] LIKE / ILIKE | `{"like": {"expr": …, "pattern": …, "negated": false, "case_insensitive": false}}` |
//!
//! A timestamp literal without an offset is UTC.

use serde::{Deserialize, Serialize};

pub mod postgres;

/// Nodes a filter may have.
pub const MAX_NODES: usize = 10_000;
/// Nesting depth of a filter.
pub const MAX_DEPTH: usize = 64;
/// Items of one IN list.
pub const MAX_IN_LIST: usize = 10_000;
/// Length of one string literal, in bytes.
pub const MAX_STRING: usize = 64 * 1024;

/// A filter expression over the columns of one table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Expr {
    /// A column of the request's table.
    Column(String),
    Literal(Literal),
    Binary {
        op: BinaryOp,
        left: Box<Expr>,
        right: Box<Expr>,
    },
    Not(Box<Expr>),
    /// Unary minus.
    Negate(Box<Expr>),
    IsNull {
        expr: Box<Expr>,
        negated: bool,
    },
    InList {
        expr: Box<Expr>,
        list: Vec<Expr>,
        negated: bool,
    },
    Between {
        expr: Box<Expr>,
        low: Box<Expr>,
        high: Box<Expr>,
        negated: bool,
    },
    Like {
        expr: Box<Expr>,
        pattern: Box<Expr>,
        negated: bool,
        case_insensitive: bool,
    },
}

/// A constant.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Literal {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    /// An exact decimal number as text: `-12.30`.
    Decimal(String),
    String(String),
    /// `YYYY-MM-DD`.
    Date(String),
    /// `YYYY-MM-DD[T ]HH:MM:SS[.ffffff][Z|±HH:MM]`; without an offset, UTC.
    Timestamp(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BinaryOp {
    Eq,
    NotEq,
    Lt,
    LtEq,
    Gt,
    GtEq,
    And,
    Or,
    Plus,
    Minus,
    Multiply,
    Divide,
    Modulo,
}

impl BinaryOp {
    /// The SQL operator.
    pub fn sql(self) -> &'static str {
        match self {
            BinaryOp::Eq => "=",
            BinaryOp::NotEq => "<>",
            BinaryOp::Lt => "<",
            BinaryOp::LtEq => "<=",
            BinaryOp::Gt => ">",
            BinaryOp::GtEq => ">=",
            BinaryOp::And => "AND",
            BinaryOp::Or => "OR",
            BinaryOp::Plus => "+",
            BinaryOp::Minus => "-",
            BinaryOp::Multiply => "*",
            BinaryOp::Divide => "/",
            BinaryOp::Modulo => "%",
        }
    }

    fn is_comparison(self) -> bool {
        matches!(
            self,
            BinaryOp::Eq
                | BinaryOp::NotEq
                | BinaryOp::Lt
                | BinaryOp::LtEq
                | BinaryOp::Gt
                | BinaryOp::GtEq
        )
    }
}

/// The kind of value a column (or an expression) has, as far as a filter cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Bool,
    Number,
    Text,
    Date,
    Timestamp,
    /// Time of day, binary, lists, structs: may be tested for NULL and compared with
    /// nothing else.
    Other,
    /// The NULL literal: compatible with every kind.
    Null,
}

/// One column of an ORDER BY.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OrderKey {
    pub column: String,
    #[serde(default)]
    pub descending: bool,
}

/// What to read: the connector answers it with the rows of `table` that pass `filter`,
/// only `columns` (all when empty), in `order_by` order, at most `limit` of them.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Request {
    pub table: String,
    pub columns: Vec<String>,
    pub filter: Option<Expr>,
    pub order_by: Vec<OrderKey>,
    pub limit: Option<u64>,
}

/// Why a request or filter was refused: what part, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid(pub String);

impl std::fmt::Display for Invalid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Invalid {}

fn invalid<T>(message: impl Into<String>) -> Result<T, Invalid> {
    Err(Invalid(message.into()))
}

impl Expr {
    /// Parses the canonical JSON form.
    pub fn from_json(json: &str) -> Result<Expr, Invalid> {
        serde_json::from_str(json).map_err(|e| Invalid(format!("the filter is not valid: {e}")))
    }

    /// The canonical JSON form.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("a filter always serializes")
    }

    pub fn column(name: &str) -> Expr {
        Expr::Column(name.to_string())
    }

    pub fn lit(literal: Literal) -> Expr {
        Expr::Literal(literal)
    }

    pub fn binary(left: Expr, op: BinaryOp, right: Expr) -> Expr {
        Expr::Binary {
            op,
            left: Box::new(left),
            right: Box::new(right),
        }
    }

    /// Checks the filter against the table's columns (`kind_of` answers a column's kind,
    /// `None` for no such column): every column exists, operands have compatible kinds,
    /// literals are well formed, the whole is a boolean, and it stays within
    /// [`MAX_NODES`] and [`MAX_DEPTH`].
    pub fn validate(&self, kind_of: &dyn Fn(&str) -> Option<Kind>) -> Result<(), Invalid> {
        let mut nodes = 0;
        match self.check(kind_of, 0, &mut nodes)? {
            Kind::Bool | Kind::Null => Ok(()),
            other => invalid(format!(
                "the filter must be a condition (true or false), not a {}",
                name(other)
            )),
        }
    }

    fn check(
        &self,
        kind_of: &dyn Fn(&str) -> Option<Kind>,
        depth: usize,
        nodes: &mut usize,
    ) -> Result<Kind, Invalid> {
        *nodes += 1;
        if *nodes > MAX_NODES {
            return invalid(format!("the filter has more than {MAX_NODES} terms"));
        }
        if depth > MAX_DEPTH {
            return invalid(format!("the filter nests deeper than {MAX_DEPTH} levels"));
        }
        let sub = |e: &Expr, nodes: &mut usize| e.check(kind_of, depth + 1, nodes);
        match self {
            Expr::Column(c) => kind_of(c).map_or_else(
                || invalid(format!("`{}` is not a column of the table", shown(c))),
                Ok,
            ),
            Expr::Literal(l) => l.check(),
            Expr::Binary { op, left, right } => {
                let (l, r) = (sub(left, nodes)?, sub(right, nodes)?);
                match op {
                    BinaryOp::And | BinaryOp::Or => {
                        for k in [l, r] {
                            expect(k, &[Kind::Bool], op.sql())?;
                        }
                        Ok(Kind::Bool)
                    }
                    op if op.is_comparison() => {
                        comparable(l, r, op.sql())?;
                        if l == Kind::Other || r == Kind::Other {
                            return invalid(format!(
                                "`{}` cannot compare this column's type; only IS [NOT] NULL can test it",
                                op.sql()
                            ));
                        }
                        Ok(Kind::Bool)
                    }
                    _ => {
                        for k in [l, r] {
                            expect(k, &[Kind::Number], op.sql())?;
                        }
                        Ok(Kind::Number)
                    }
                }
            }
            Expr::Not(e) => {
                expect(sub(e, nodes)?, &[Kind::Bool], "NOT")?;
                Ok(Kind::Bool)
            }
            Expr::Negate(e) => {
                expect(sub(e, nodes)?, &[Kind::Number], "unary -")?;
                Ok(Kind::Number)
            }
            Expr::IsNull { expr, .. } => {
                sub(expr, nodes)?;
                Ok(Kind::Bool)
            }
            Expr::InList { expr, list, .. } => {
                if list.is_empty() {
                    return invalid("IN needs at least one value");
                }
                if list.len() > MAX_IN_LIST {
                    return invalid(format!("IN lists more than {MAX_IN_LIST} values"));
                }
                let k = sub(expr, nodes)?;
                for item in list {
                    comparable(k, sub(item, nodes)?, "IN")?;
                }
                Ok(Kind::Bool)
            }
            Expr::Between {
                expr, low, high, ..
            } => {
                let k = sub(expr, nodes)?;
                comparable(k, sub(low, nodes)?, "BETWEEN")?;
                comparable(k, sub(high, nodes)?, "BETWEEN")?;
                Ok(Kind::Bool)
            }
            Expr::Like { expr, pattern, .. } => {
                expect(sub(expr, nodes)?, &[Kind::Text], "LIKE")?;
                expect(sub(pattern, nodes)?, &[Kind::Text], "LIKE")?;
                Ok(Kind::Bool)
            }
        }
    }

    /// Every column the filter references, each once, in first-use order.
    pub fn columns(&self) -> Vec<&str> {
        let mut out = Vec::new();
        self.visit(&mut |e| {
            if let Expr::Column(c) = e
                && !out.contains(&c.as_str())
            {
                out.push(c.as_str());
            }
        });
        out
    }

    fn visit<'a>(&'a self, f: &mut dyn FnMut(&'a Expr)) {
        f(self);
        match self {
            Expr::Column(_) | Expr::Literal(_) => {}
            Expr::Binary { left, right, .. } => {
                left.visit(f);
                right.visit(f);
            }
            Expr::Not(e) | Expr::Negate(e) | Expr::IsNull { expr: e, .. } => e.visit(f),
            Expr::InList { expr, list, .. } => {
                expr.visit(f);
                for e in list {
                    e.visit(f);
                }
            }
            Expr::Between {
                expr, low, high, ..
            } => {
                expr.visit(f);
                low.visit(f);
                high.visit(f);
            }
            Expr::Like { expr, pattern, .. } => {
                expr.visit(f);
                pattern.visit(f);
            }
        }
    }
}

fn name(k: Kind) -> &'static str {
    match k {
        Kind::Bool => "boolean",
        Kind::Number => "number",
        Kind::Text => "text",
        Kind::Date => "date",
        Kind::Timestamp => "timestamp",
        Kind::Other => "value of this type",
        Kind::Null => "NULL",
    }
}

fn expect(k: Kind, allowed: &[Kind], what: &str) -> Result<(), Invalid> {
    if k == Kind::Null || allowed.contains(&k) {
        return Ok(());
    }
    invalid(format!(
        "`{what}` needs a {}, not a {}",
        allowed
            .iter()
            .map(|k| name(*k))
            .collect::<Vec<_>>()
            .join(" or "),
        name(k)
    ))
}

fn comparable(a: Kind, b: Kind, what: &str) -> Result<(), Invalid> {
    let ok = a == b
        || a == Kind::Null
        || b == Kind::Null
        // a date compares with a timestamp (midnight)
        || matches!((a, b), (Kind::Date, Kind::Timestamp) | (Kind::Timestamp, Kind::Date));
    if ok {
        return Ok(());
    }
    invalid(format!(
        "`{what}` compares a {} with a {}",
        name(a),
        name(b)
    ))
}

impl Literal {
    fn check(&self) -> Result<Kind, Invalid> {
        match self {
            Literal::Null => Ok(Kind::Null),
            Literal::Bool(_) => Ok(Kind::Bool),
            Literal::Int(_) => Ok(Kind::Number),
            Literal::Float(f) if f.is_finite() => Ok(Kind::Number),
            Literal::Float(_) => invalid("a float literal must be finite"),
            Literal::Decimal(d) => {
                let digits = d.strip_prefix('-').unwrap_or(d);
                let (int, frac) = digits.split_once('.').unwrap_or((digits, ""));
                let ok = !int.is_empty()
                    && int.len() + frac.len() <= 1000
                    && int.bytes().all(|b| b.is_ascii_digit())
                    && frac.bytes().all(|b| b.is_ascii_digit());
                if ok {
                    Ok(Kind::Number)
                } else {
                    invalid(format!("`{}` is not a decimal number", shown(d)))
                }
            }
            Literal::String(s) if s.len() > MAX_STRING => invalid(format!(
                "a string literal is longer than {MAX_STRING} bytes"
            )),
            Literal::String(s) if s.contains('\0') => {
                invalid("a string literal contains a NUL character")
            }
            Literal::String(_) => Ok(Kind::Text),
            Literal::Date(d) if is_date(d) => Ok(Kind::Date),
            Literal::Date(d) => invalid(format!("`{}` is not a date (YYYY-MM-DD)", shown(d))),
            Literal::Timestamp(t) if is_timestamp(t) => Ok(Kind::Timestamp),
            Literal::Timestamp(t) => invalid(format!(
                "`{}` is not a timestamp (YYYY-MM-DD HH:MM:SS[.ffffff][Z|±HH:MM])",
                shown(t)
            )),
        }
    }
}

/// `YYYY-MM-DD` with a plausible month and day.
fn is_date(s: &str) -> bool {
    let b = s.as_bytes();
    if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
        return false;
    }
    let num = |r: std::ops::Range<usize>| -> Option<u32> {
        let part = &s[r];
        part.bytes()
            .all(|c| c.is_ascii_digit())
            .then(|| part.parse().ok())
            .flatten()
    };
    matches!(
        (num(0..4), num(5..7), num(8..10)),
        (Some(y), Some(m), Some(d)) if y >= 1 && (1..=12).contains(&m) && (1..=31).contains(&d)
    )
}

/// `YYYY-MM-DD[T ]HH:MM:SS[.f{1,9}][Z|±HH:MM]`.
fn is_timestamp(s: &str) -> bool {
    if s.len() < 19 || !s.is_char_boundary(10) || !is_date(&s[..10]) {
        return false;
    }
    let b = s.as_bytes();
    if b[10] != b'T' && b[10] != b' ' {
        return false;
    }
    let two = |i: usize, max: u32| {
        b[i].is_ascii_digit()
            && b[i + 1].is_ascii_digit()
            && u32::from(b[i] - b'0') * 10 + u32::from(b[i + 1] - b'0') <= max
    };
    if !(two(11, 23) && b[13] == b':' && two(14, 59) && b[16] == b':' && two(17, 60)) {
        return false;
    }
    let mut rest = &s[19..];
    if let Some(frac) = rest.strip_prefix('.') {
        let n = frac.bytes().take_while(u8::is_ascii_digit).count();
        if n == 0 || n > 9 {
            return false;
        }
        rest = &frac[n..];
    }
    match rest {
        "" | "Z" | "z" => true,
        off => {
            let o = off.as_bytes();
            o.len() == 6
                && (o[0] == b'+' || o[0] == b'-')
                && o[1..3].iter().all(u8::is_ascii_digit)
                && o[3] == b':'
                && o[4..6].iter().all(u8::is_ascii_digit)
        }
    }
}

/// A name as shown in messages: at most 64 characters, control characters escaped.
pub fn shown(s: &str) -> String {
    let mut out: String = s.chars().take(64).flat_map(char::escape_debug).collect();
    if s.chars().count() > 64 {
        out.push('…');
    }
    out
}

impl Request {
    /// Checks the request against the table's columns (name and kind, in table order):
    /// the columns, order keys and filter name real columns, nothing is asked twice, and
    /// the filter is valid ([`Expr::validate`]).
    pub fn validate(&self, columns: &[(String, Kind)]) -> Result<(), Invalid> {
        let kind_of = |c: &str| columns.iter().find(|(n, _)| n == c).map(|(_, k)| *k);
        for (i, c) in self.columns.iter().enumerate() {
            if kind_of(c).is_none() {
                return invalid(format!(
                    "`{}` is not a column of `{}`",
                    shown(c),
                    shown(&self.table)
                ));
            }
            if self.columns[..i].contains(c) {
                return invalid(format!("column `{}` is selected twice", shown(c)));
            }
        }
        for k in &self.order_by {
            match kind_of(&k.column) {
                None => {
                    return invalid(format!(
                        "cannot order by `{}`: not a column of `{}`",
                        shown(&k.column),
                        shown(&self.table)
                    ));
                }
                Some(Kind::Other) => {
                    return invalid(format!(
                        "cannot order by `{}`: its type has no order",
                        shown(&k.column)
                    ));
                }
                Some(_) => {}
            }
        }
        if let Some(f) = &self.filter {
            f.validate(&kind_of)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cols() -> Vec<(String, Kind)> {
        [
            ("id", Kind::Number),
            ("country", Kind::Text),
            ("day", Kind::Date),
            ("at", Kind::Timestamp),
            ("ok", Kind::Bool),
            ("blob", Kind::Other),
        ]
        .into_iter()
        .map(|(n, k)| (n.to_string(), k))
        .collect()
    }

    fn check(e: &Expr) -> Result<(), Invalid> {
        Request {
            table: "t".into(),
            filter: Some(e.clone()),
            ..Request::default()
        }
        .validate(&cols())
    }

    #[test]
    fn canonical_json_round_trips() {
        let e = Expr::binary(
            Expr::binary(
                Expr::column("country"),
                BinaryOp::Eq,
                Expr::lit(Literal::String("CZ".into())),
            ),
            BinaryOp::And,
            Expr::Between {
                expr: Box::new(Expr::column("day")),
                low: Box::new(Expr::lit(Literal::Date("2024-01-01".into()))),
                high: Box::new(Expr::lit(Literal::Date("2024-12-31".into()))),
                negated: false,
            },
        );
        let json = e.to_json();
        assert!(json.starts_with(r#"{"binary":{"op":"and","left":{"binary":{"op":"eq","left":{"column":"country"},"right":{"literal":{"string":"CZ"}}}}"#), "{json}");
        assert_eq!(Expr::from_json(&json).unwrap(), e);
        assert_eq!(
            Expr::from_json(r#"{"literal":"null"}"#).unwrap(),
            Expr::Literal(Literal::Null)
        );
        assert!(Expr::from_json(r#"{"sql":"1=1"}"#).is_err());
        assert!(Expr::from_json(r#"{"column":"a","extra":1}"#).is_err());
        check(&e).unwrap();
    }

    #[test]
    fn refuses_unknown_columns_and_mismatched_kinds() {
        let cases = [
            (
                Expr::binary(
                    Expr::column("nope"),
                    BinaryOp::Eq,
                    Expr::lit(Literal::Int(1)),
                ),
                "`nope` is not a column",
            ),
            (
                Expr::binary(
                    Expr::column("country"),
                    BinaryOp::Gt,
                    Expr::lit(Literal::Int(1)),
                ),
                "compares a text with a number",
            ),
            (Expr::column("id"), "must be a condition"),
            (
                Expr::binary(Expr::column("blob"), BinaryOp::Eq, Expr::column("blob")),
                "only IS [NOT] NULL",
            ),
            (
                Expr::binary(Expr::column("id"), BinaryOp::And, Expr::column("ok")),
                "`AND` needs a boolean",
            ),
            (
                Expr::Like {
                    expr: Box::new(Expr::column("id")),
                    pattern: Box::new(Expr::lit(Literal::String("1%".into()))),
                    negated: false,
                    case_insensitive: false,
                },
                "`LIKE` needs a text",
            ),
            (
                Expr::binary(
                    Expr::column("day"),
                    BinaryOp::Eq,
                    Expr::lit(Literal::Date("2024-13-01".into())),
                ),
                "not a date",
            ),
            (
                Expr::binary(
                    Expr::column("at"),
                    BinaryOp::Eq,
                    Expr::lit(Literal::Timestamp("2024-01-01 25:00:00".into())),
                ),
                "not a timestamp",
            ),
            (
                Expr::binary(
                    Expr::column("id"),
                    BinaryOp::Eq,
                    Expr::lit(Literal::Decimal("1e5".into())),
                ),
                "not a decimal",
            ),
            (
                Expr::InList {
                    expr: Box::new(Expr::column("id")),
                    list: vec![],
                    negated: false,
                },
                "at least one",
            ),
        ];
        for (e, why) in cases {
            let err = check(&e).unwrap_err().0;
            assert!(err.contains(why), "{e:?}: {err}");
        }
    }

    #[test]
    fn accepts_every_form() {
        let ts = Expr::lit(Literal::Timestamp("2024-01-01T10:00:00.5+02:00".into()));
        let ok = [
            Expr::binary(Expr::column("at"), BinaryOp::GtEq, ts),
            Expr::binary(
                Expr::column("at"),
                BinaryOp::Lt,
                Expr::lit(Literal::Date("2024-02-01".into())),
            ),
            Expr::IsNull {
                expr: Box::new(Expr::column("blob")),
                negated: true,
            },
            Expr::InList {
                expr: Box::new(Expr::column("country")),
                list: vec![
                    Expr::lit(Literal::String("CZ".into())),
                    Expr::lit(Literal::Null),
                ],
                negated: true,
            },
            Expr::Not(Box::new(Expr::column("ok"))),
            Expr::binary(
                Expr::binary(
                    Expr::column("id"),
                    BinaryOp::Modulo,
                    Expr::lit(Literal::Int(2)),
                ),
                BinaryOp::Eq,
                Expr::Negate(Box::new(Expr::lit(Literal::Float(1.5)))),
            ),
            Expr::Like {
                expr: Box::new(Expr::column("country")),
                pattern: Box::new(Expr::lit(Literal::String("C%".into()))),
                negated: false,
                case_insensitive: true,
            },
        ];
        for e in ok {
            check(&e).unwrap_or_else(|err| panic!("{e:?}: {err}"));
        }
    }

    #[test]
    fn bounds_size_and_depth() {
        let mut e = Expr::column("ok");
        for _ in 0..=MAX_DEPTH {
            e = Expr::Not(Box::new(e));
        }
        assert!(check(&e).unwrap_err().0.contains("deeper"));
        let wide = Expr::InList {
            expr: Box::new(Expr::column("id")),
            list: vec![Expr::lit(Literal::Int(1)); MAX_IN_LIST + 1],
            negated: false,
        };
        assert!(check(&wide).unwrap_err().0.contains("more than"));
    }

    #[test]
    fn request_columns_and_order() {
        let mut r = Request {
            table: "t".into(),
            columns: vec!["id".into(), "country".into()],
            order_by: vec![OrderKey {
                column: "day".into(),
                descending: true,
            }],
            limit: Some(10),
            filter: None,
        };
        r.validate(&cols()).unwrap();
        r.columns.push("id".into());
        assert!(r.validate(&cols()).unwrap_err().0.contains("twice"));
        r.columns.pop();
        r.order_by[0].column = "blob".into();
        assert!(r.validate(&cols()).unwrap_err().0.contains("no order"));
        r.order_by[0].column = "x\"y".into();
        assert!(r.validate(&cols()).unwrap_err().0.contains("not a column"));
    }
}
