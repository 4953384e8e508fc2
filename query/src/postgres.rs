//! Renders a [`Request`] into PostgreSQL: identifiers quoted, every literal a bind
//! parameter (`$1::int8`) — or, for statements that cannot take parameters (`COPY`), a
//! quoted literal. The connection must run with `standard_conforming_strings = on` and
//! `TimeZone = UTC` (the Agnes host sets both when it opens a database connection).

use crate::{Expr, Literal, Request};

/// A statement and its parameters, as text (`None` is SQL NULL).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Statement {
    pub sql: String,
    pub params: Vec<String>,
}

/// `"name"`, with embedded quotes doubled.
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// `'text'`, with embedded quotes doubled (standard-conforming strings). A NUL character
/// cannot be sent to PostgreSQL at all; it is dropped.
pub fn quote_literal(text: &str) -> String {
    format!("'{}'", text.replace('\0', "").replace('\'', "''"))
}

/// How literals are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Literals {
    /// As bind parameters `$n::type`, collected in [`Statement::params`].
    Bind,
    /// Inline, quoted (for `COPY (SELECT ...)`, which takes no parameters).
    Inline,
}

/// `SELECT <columns> FROM <relation> [WHERE <filter>] [ORDER BY ...] [LIMIT n]`.
/// `relation` is the already-quoted relation (`"public"."orders"`); `select` renders one
/// selected column (quoted identifier by default, or e.g. a cast to text for a type the
/// connector reads as text).
pub fn render(
    request: &Request,
    relation: &str,
    all_columns: &[String],
    select: &dyn Fn(&str) -> String,
    literals: Literals,
) -> Statement {
    let mut out = Statement::default();
    let columns = if request.columns.is_empty() {
        all_columns
    } else {
        &request.columns
    };
    let list: Vec<String> = columns.iter().map(|c| select(c)).collect();
    out.sql = format!(
        "SELECT {} FROM {relation}",
        if list.is_empty() {
            // zero columns (e.g. only a count is wanted): still one row per match
            "NULL".to_string()
        } else {
            list.join(", ")
        }
    );
    if let Some(f) = &request.filter {
        out.sql.push_str(" WHERE ");
        let rendered = filter(f, &mut out.params, literals);
        out.sql.push_str(&rendered);
    }
    if !request.order_by.is_empty() {
        let keys: Vec<String> = request
            .order_by
            .iter()
            .map(|k| {
                format!(
                    "{} {}",
                    quote_ident(&k.column),
                    if k.descending { "DESC" } else { "ASC" }
                )
            })
            .collect();
        out.sql.push_str(" ORDER BY ");
        out.sql.push_str(&keys.join(", "));
    }
    if let Some(n) = request.limit {
        out.sql.push_str(&format!(" LIMIT {n}"));
    }
    out
}

/// Renders one filter expression; bind parameters are appended to `params`.
pub fn filter(e: &Expr, params: &mut Vec<String>, literals: Literals) -> String {
    let mut r = |e: &Expr| filter(e, params, literals);
    match e {
        Expr::Column(c) => quote_ident(c),
        Expr::Literal(l) => literal(l, params, literals),
        Expr::Binary { op, left, right } => {
            let l = r(left);
            let rr = r(right);
            format!("({l} {} {rr})", op.sql())
        }
        Expr::Not(e) => format!("(NOT {})", r(e)),
        Expr::Negate(e) => format!("(- {})", r(e)),
        Expr::IsNull { expr, negated } => format!(
            "({} IS {}NULL)",
            r(expr),
            if *negated { "NOT " } else { "" }
        ),
        Expr::InList {
            expr,
            list,
            negated,
        } => {
            let head = r(expr);
            let items: Vec<String> = list.iter().map(&mut r).collect();
            format!(
                "({head} {}IN ({}))",
                if *negated { "NOT " } else { "" },
                items.join(", ")
            )
        }
        Expr::Between {
            expr,
            low,
            high,
            negated,
        } => {
            let (e, l, h) = (r(expr), r(low), r(high));
            format!(
                "({e} {}BETWEEN {l} AND {h})",
                if *negated { "NOT " } else { "" }
            )
        }
        Expr::Like {
            expr,
            pattern,
            negated,
            case_insensitive,
        } => {
            let (e, p) = (r(expr), r(pattern));
            format!(
                "({e} {}{} {p})",
                if *negated { "NOT " } else { "" },
                if *case_insensitive { "ILIKE" } else { "LIKE" }
            )
        }
    }
}

fn literal(l: &Literal, params: &mut Vec<String>, literals: Literals) -> String {
    let (text, ty) = match l {
        Literal::Null => return "NULL".into(),
        Literal::Bool(b) => return if *b { "TRUE" } else { "FALSE" }.into(),
        Literal::Int(i) => (i.to_string(), "int8"),
        Literal::Float(f) => (format!("{f:?}"), "float8"),
        Literal::Decimal(d) => (d.clone(), "numeric"),
        Literal::String(s) => (s.clone(), "text"),
        Literal::Date(d) => (d.clone(), "date"),
        Literal::Timestamp(t) => {
            let has_offset =
                t.ends_with(['Z', 'z']) || t.len() > 19 && t[19..].contains(['+', '-']);
            (
                if has_offset {
                    t.clone()
                } else {
                    format!("{t}Z")
                },
                "timestamptz",
            )
        }
    };
    match literals {
        Literals::Bind => {
            params.push(text);
            format!("${}::{ty}", params.len())
        }
        Literals::Inline => format!("{}::{ty}", quote_literal(&text)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{BinaryOp, OrderKey};

    #[test]
    fn renders_with_parameters_and_quoting() {
        let req = Request {
            table: "orders".into(),
            columns: vec!["id".into(), "we\"ird".into()],
            filter: Some(Expr::binary(
                Expr::binary(
                    Expr::column("country"),
                    BinaryOp::Eq,
                    Expr::lit(Literal::String("C'Z".into())),
                ),
                BinaryOp::Or,
                Expr::InList {
                    expr: Box::new(Expr::column("at")),
                    list: vec![Expr::lit(Literal::Timestamp("2024-01-01 00:00:00".into()))],
                    negated: true,
                },
            )),
            order_by: vec![OrderKey {
                column: "id".into(),
                descending: true,
            }],
            limit: Some(5),
        };
        let s = render(
            &req,
            "\"public\".\"orders\"",
            &[],
            &|c| quote_ident(c),
            Literals::Bind,
        );
        assert_eq!(
            s.sql,
            "SELECT \"id\", \"we\"\"ird\" FROM \"public\".\"orders\" WHERE ((\"country\" = $1::text) OR (\"at\" NOT IN ($2::timestamptz))) ORDER BY \"id\" DESC LIMIT 5"
        );
        assert_eq!(
            s.params,
            vec!["C'Z".to_string(), "2024-01-01 00:00:00Z".into()]
        );
        let inline = render(&req, "t", &[], &|c| quote_ident(c), Literals::Inline);
        assert!(inline.sql.contains("'C''Z'::text"), "{}", inline.sql);
        assert!(inline.params.is_empty());
    }
}
