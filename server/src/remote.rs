//! Remote tables: the data stays at the source; scans are pushed to the source's
//! connector (`agnes:connector@0.2.0` `query`/`estimate`).
//!
//! An analyst's `where` text never reaches a connector. [`parse_where`] parses it with a
//! SQL parser (`sqlparser`, generic dialect) and converts the expression into the
//! structured filter ([`agnes_query::Expr`]) — comparisons, AND/OR/NOT, IN, BETWEEN,
//! LIKE/ILIKE, IS [NOT] NULL, literals (incl. `DATE '…'`, `TIMESTAMP '…'`), arithmetic and
//! columns of the scanned table — refusing anything else with a message naming the part
//! it refused. The host then validates the request against the table's columns before the
//! connector runs (`Runtime::query`).

use agnes_query::{BinaryOp, Expr, Literal};
use sqlparser::ast::{self, BinaryOperator, UnaryOperator};
use sqlparser::dialect::GenericDialect;
use sqlparser::tokenizer::{Token, Tokenizer, Whitespace};

/// What a remote table's `where` may say, for analysts (the schema endpoint shows it).
pub const WHERE_SYNTAX: &str = "one SQL expression over the table's columns: = <> < <= > >=, AND OR NOT, \
    IN (...), BETWEEN, LIKE / ILIKE, IS [NOT] NULL, + - * / %, literals (12, 1.5, 'text', TRUE, NULL, \
    DATE '2024-01-31', TIMESTAMP '2024-01-31 10:00:00'); no functions, subqueries, comments or `;`";

/// The longest `where` text accepted.
pub const MAX_WHERE: usize = 64 * 1024;

/// What the allowed forms are, for refusals.
const ALLOWED: &str = "use comparisons, AND/OR/NOT, IN (...), BETWEEN, LIKE/ILIKE, IS [NOT] NULL, \
                       + - * / %, literals (numbers, 'text', DATE '…', TIMESTAMP '…', TRUE, NULL) \
                       and columns of the table";

/// Parses an analyst's `where` over `table` into the structured filter.
pub fn parse_where(text: &str, table: &str) -> Result<Expr, String> {
    if text.len() > MAX_WHERE {
        return Err(format!("the where is longer than {MAX_WHERE} bytes"));
    }
    let dialect = GenericDialect {};
    let tokens = Tokenizer::new(&dialect, text)
        .tokenize()
        .map_err(|e| format!("the where is not valid SQL: {e}"))?;
    for t in &tokens {
        match t {
            Token::Whitespace(Whitespace::SingleLineComment { .. })
            | Token::Whitespace(Whitespace::MultiLineComment(_)) => {
                return Err("comments are not allowed in a where".into());
            }
            Token::SemiColon => {
                return Err("`;` is not allowed: the where is one expression".into());
            }
            _ => {}
        }
    }
    let mut parser = sqlparser::parser::Parser::new(&dialect)
        .try_with_sql(text)
        .map_err(|e| format!("the where is not valid SQL: {e}"))?;
    let expr = parser
        .parse_expr()
        .map_err(|e| format!("the where is not valid SQL: {e}"))?;
    let next = parser.peek_token();
    if next.token != Token::EOF {
        return Err(format!(
            "unexpected `{}` after the expression: the where is one expression",
            next.token
        ));
    }
    convert(&expr, table, 0)
}

fn refuse<T>(what: impl std::fmt::Display) -> Result<T, String> {
    let mut shown = what.to_string();
    if shown.len() > 120 {
        let mut end = 120;
        while !shown.is_char_boundary(end) {
            end -= 1;
        }
        shown.truncate(end);
        shown.push('…');
    }
    Err(format!(
        "`{shown}` is not allowed in a remote where; {ALLOWED}"
    ))
}

fn convert(e: &ast::Expr, table: &str, depth: usize) -> Result<Expr, String> {
    if depth > agnes_query::MAX_DEPTH {
        return Err(format!(
            "the where nests deeper than {} levels",
            agnes_query::MAX_DEPTH
        ));
    }
    let sub = |e: &ast::Expr| convert(e, table, depth + 1).map(Box::new);
    Ok(match e {
        ast::Expr::Identifier(id) => Expr::Column(id.value.clone()),
        ast::Expr::CompoundIdentifier(parts) => match parts.as_slice() {
            [t, c] if t.value == table => Expr::Column(c.value.clone()),
            _ => {
                return Err(format!(
                    "`{e}` is not a column of `{table}`: a remote where may only use the scanned table's columns"
                ));
            }
        },
        ast::Expr::Value(v) => Expr::Literal(literal(&v.value)?),
        ast::Expr::TypedString(ts) => typed(&ts.data_type, &ts.value.value, e)?,
        ast::Expr::Cast {
            expr, data_type, ..
        } => match expr.as_ref() {
            ast::Expr::Value(v) => typed(data_type, &v.value, e)?,
            _ => return refuse(e),
        },
        ast::Expr::Nested(inner) => convert(inner, table, depth + 1)?,
        ast::Expr::BinaryOp { left, op, right } => {
            let op = match op {
                BinaryOperator::Eq => BinaryOp::Eq,
                BinaryOperator::NotEq => BinaryOp::NotEq,
                BinaryOperator::Lt => BinaryOp::Lt,
                BinaryOperator::LtEq => BinaryOp::LtEq,
                BinaryOperator::Gt => BinaryOp::Gt,
                BinaryOperator::GtEq => BinaryOp::GtEq,
                BinaryOperator::And => BinaryOp::And,
                BinaryOperator::Or => BinaryOp::Or,
                BinaryOperator::Plus => BinaryOp::Plus,
                BinaryOperator::Minus => BinaryOp::Minus,
                BinaryOperator::Multiply => BinaryOp::Multiply,
                BinaryOperator::Divide => BinaryOp::Divide,
                BinaryOperator::Modulo => BinaryOp::Modulo,
                other => return refuse(format!("operator {other}")),
            };
            Expr::Binary {
                op,
                left: sub(left)?,
                right: sub(right)?,
            }
        }
        ast::Expr::UnaryOp { op, expr } => match op {
            UnaryOperator::Not => Expr::Not(sub(expr)?),
            UnaryOperator::Minus => Expr::Negate(sub(expr)?),
            UnaryOperator::Plus => convert(expr, table, depth + 1)?,
            other => return refuse(format!("operator {other}")),
        },
        ast::Expr::IsNull(inner) => Expr::IsNull {
            expr: sub(inner)?,
            negated: false,
        },
        ast::Expr::IsNotNull(inner) => Expr::IsNull {
            expr: sub(inner)?,
            negated: true,
        },
        ast::Expr::In {
            expr,
            target: ast::InTarget::List(list),
            negated,
            ..
        } => Expr::InList {
            expr: sub(expr)?,
            list: list
                .iter()
                .map(|i| convert(i, table, depth + 1))
                .collect::<Result<_, _>>()?,
            negated: *negated,
        },
        ast::Expr::Between {
            expr,
            negated,
            low,
            high,
        } => Expr::Between {
            expr: sub(expr)?,
            low: sub(low)?,
            high: sub(high)?,
            negated: *negated,
        },
        ast::Expr::Like {
            negated,
            any: false,
            expr,
            pattern,
            escape_char: None,
        } => like(sub(expr)?, sub(pattern)?, *negated, false),
        ast::Expr::ILike {
            negated,
            any: false,
            expr,
            pattern,
            escape_char: None,
        } => like(sub(expr)?, sub(pattern)?, *negated, true),
        ast::Expr::Function(f) => {
            return Err(format!(
                "function `{}` is not allowed in a remote where (no functions are); {ALLOWED}",
                f.name
            ));
        }
        ast::Expr::Subquery(_)
        | ast::Expr::Exists { .. }
        | ast::Expr::In {
            target: ast::InTarget::Subquery(_),
            ..
        } => {
            return Err(format!(
                "a subquery is not allowed in a remote where; {ALLOWED}"
            ));
        }
        other => return refuse(other),
    })
}

fn like(expr: Box<Expr>, pattern: Box<Expr>, negated: bool, case_insensitive: bool) -> Expr {
    Expr::Like {
        expr,
        pattern,
        negated,
        case_insensitive,
    }
}

fn literal(v: &ast::Value) -> Result<Literal, String> {
    Ok(match v {
        ast::Value::Number(n, _) => {
            if let Ok(i) = n.parse::<i64>() {
                Literal::Int(i)
            } else if n.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
                Literal::Decimal(n.clone())
            } else {
                match n.parse::<f64>() {
                    Ok(f) if f.is_finite() => Literal::Float(f),
                    _ => return refuse(format!("number {n}")),
                }
            }
        }
        ast::Value::SingleQuotedString(s) => Literal::String(s.clone()),
        ast::Value::Boolean(b) => Literal::Bool(*b),
        ast::Value::Null => Literal::Null,
        other => return refuse(other),
    })
}

fn typed(t: &ast::DataType, v: &ast::Value, whole: &ast::Expr) -> Result<Expr, String> {
    let ast::Value::SingleQuotedString(s) = v else {
        return refuse(whole);
    };
    Ok(Expr::Literal(match t {
        ast::DataType::Date => Literal::Date(s.clone()),
        ast::DataType::Timestamp(..) | ast::DataType::Datetime(_) => Literal::Timestamp(s.clone()),
        _ => return refuse(whole),
    }))
}

/// `column`, `column ASC` or `column DESC` → an order key.
pub fn order_key(item: &str) -> Result<agnes_query::OrderKey, String> {
    let mut words = item.split_whitespace();
    let column = words.next().unwrap_or("").to_string();
    let descending = match words.next().map(str::to_ascii_uppercase).as_deref() {
        None | Some("ASC") => false,
        Some("DESC") => true,
        Some(other) => {
            return Err(format!(
                "order_by `{}`: the direction must be ASC or DESC, not `{}`",
                agnes_runtime::names::shown(item),
                agnes_runtime::names::shown(other)
            ));
        }
    };
    if column.is_empty() || words.next().is_some() {
        return Err(format!(
            "order_by `{}`: name a column, optionally followed by ASC or DESC",
            agnes_runtime::names::shown(item)
        ));
    }
    Ok(agnes_query::OrderKey { column, descending })
}

/// What an analyst asks of a remote table (the fields of `/api/v2/scan`).
pub struct ScanAsk<'a> {
    pub select: &'a [String],
    pub predicate: Option<&'a str>,
    pub order_by: &'a [String],
    pub limit: Option<u64>,
}

/// The structured request of a scan of remote table `table`.
pub fn request(table: &str, ask: &ScanAsk<'_>) -> Result<agnes_query::Request, String> {
    let filter = match ask.predicate.map(str::trim).filter(|p| !p.is_empty()) {
        Some(p) => Some(parse_where(p, table)?),
        None => None,
    };
    Ok(agnes_query::Request {
        table: table.to_string(),
        columns: ask.select.to_vec(),
        filter,
        order_by: ask
            .order_by
            .iter()
            .map(|o| order_key(o))
            .collect::<Result<_, _>>()?,
        limit: ask.limit,
    })
}

/// A scan's guardrails: the scan cap (the table's `max_scan_bytes` option, else the
/// server's) and the caller's daily budget, both against the connector's estimate.
pub struct Guard {
    pub cap: u64,
    pub budget: u64,
    /// Estimated bytes the caller scanned today (UTC) before this scan.
    pub used_today: u64,
}

impl Guard {
    /// Reads the cap and today's use.
    pub async fn load(
        state: &crate::state::AppState,
        user: &str,
        source: &str,
        table: &str,
    ) -> crate::error::ApiResult<Guard> {
        let limits = &state.config.remote;
        let option = state
            .store
            .list_tables(Some(source))
            .await?
            .into_iter()
            .find(|t| t.spec.name == table)
            .and_then(|t| {
                t.spec
                    .options
                    .get("max_scan_bytes")
                    .and_then(|v| v.as_u64())
            });
        let today = chrono::Utc::now().format("%Y-%m-%d").to_string();
        let entries = state
            .store
            .list_audit(&crate::store::AuditFilter {
                since: Some(today),
                action: Some(SCAN_ACTION.into()),
                limit: 1_000_000,
            })
            .await?;
        let used_today = entries
            .iter()
            .filter(|e| e.user.as_deref() == Some(user))
            .filter_map(|e| e.detail.as_deref().and_then(scanned_bytes))
            .fold(0u64, u64::saturating_add);
        Ok(Guard {
            cap: option.unwrap_or(limits.max_scan_bytes),
            budget: limits.daily_scan_bytes_per_user,
            used_today,
        })
    }

    /// Refuses a scan whose estimate is over the cap or the remaining budget.
    pub fn check(&self, table: &str, scan_bytes: u64) -> crate::error::ApiResult<()> {
        use crate::error::ApiError::Refused;
        if self.cap > 0 && scan_bytes > self.cap {
            return Err(Refused(
                "remote_scan_too_large",
                format!(
                    "scanning `{table}` as asked would read about {scan_bytes} bytes at the source, over the \
                     scan cap of {} bytes; narrow it (`agnes snapshot create {table} --where ... --select ...`) \
                     or ask an admin to raise the table's max_scan_bytes",
                    self.cap
                ),
            ));
        }
        if self.budget > 0 && self.used_today.saturating_add(scan_bytes) > self.budget {
            return Err(Refused(
                "remote_budget_exceeded",
                format!(
                    "this scan (about {scan_bytes} bytes at the source) would take you over your daily remote \
                     scan budget of {} bytes ({} used today, UTC); narrow it or try tomorrow",
                    self.budget, self.used_today
                ),
            ));
        }
        Ok(())
    }
}

/// The audit action of a remote scan; its detail starts with `scanned_bytes=N`.
pub const SCAN_ACTION: &str = "data.remote_scan";

fn scanned_bytes(detail: &str) -> Option<u64> {
    detail
        .strip_prefix("scanned_bytes=")?
        .split(|c: char| !c.is_ascii_digit())
        .next()?
        .parse()
        .ok()
}

/// What an analyst's query needs of remote table `table`: the columns it mentions and the
/// conditions of its top-level `WHERE` that only concern this table. `None` when the query
/// does not use the table.
///
/// The plan is conservative: the source receives a *pre-filter* — the whole query still
/// runs in the query sandbox over what came back, so pushing a condition never changes an
/// answer, it only moves fewer rows. Columns: every identifier of the query that names a
/// column of the table (all of them if the query selects `*`; the first one if it names
/// none, e.g. `count(*)`). Conditions: the top-level `WHERE`'s `AND` terms that convert to
/// the structured filter and only use this table's columns, pushed only when the table
/// appears once and no outer join could make them change which rows are null-extended.
pub fn pushdown(
    sql: &str,
    table: &str,
    columns: &[(String, agnes_query::Kind)],
) -> Result<Option<agnes_query::Request>, String> {
    use sqlparser::ast::{ObjectNamePart, SelectItem, SetExpr, TableFactor, Visit, Visitor};
    use std::ops::ControlFlow;

    let dialect = sqlparser::dialect::DuckDbDialect {};
    let statements = sqlparser::parser::Parser::parse_sql(&dialect, sql).map_err(|e| {
        format!("the query could not be planned for the remote table `{table}`: {e}")
    })?;
    let [statement] = statements.as_slice() else {
        return Err("send one statement".into());
    };
    let is_table = |name: &ast::ObjectName| matches!(name.0.last(), Some(ObjectNamePart::Identifier(id)) if id.value.eq_ignore_ascii_case(table));
    let mut uses = 0;
    let _ = ast::visit_relations(statement, |name| {
        if is_table(name) {
            uses += 1;
        }
        ControlFlow::<()>::Continue(())
    });
    if uses == 0 {
        return Ok(None);
    }
    let is_column = |name: &str| columns.iter().any(|(c, _)| c.eq_ignore_ascii_case(name));
    let mut wanted: Vec<String> = Vec::new();
    let mut add = |name: &str| {
        if let Some((c, _)) = columns.iter().find(|(c, _)| c.eq_ignore_ascii_case(name))
            && !wanted.contains(c)
        {
            wanted.push(c.clone());
        }
    };
    let _ = ast::visit_expressions(statement, |e| {
        match e {
            ast::Expr::Identifier(id) => add(&id.value),
            ast::Expr::CompoundIdentifier(parts) => {
                if let Some(last) = parts.last() {
                    add(&last.value)
                }
            }
            _ => {}
        }
        ControlFlow::<()>::Continue(())
    });

    /// Finds `SELECT *` / `t.*` anywhere, and the top-level select.
    struct Wildcards(bool);
    fn selects<'a>(set: &'a SetExpr, out: &mut Vec<&'a ast::Select>) {
        match set {
            SetExpr::Select(s) => out.push(s),
            SetExpr::Query(q) => selects(&q.body, out),
            SetExpr::SetOperation { left, right, .. } => {
                selects(left, out);
                selects(right, out);
            }
            _ => {}
        }
    }
    impl Visitor for Wildcards {
        type Break = ();
        fn pre_visit_query(&mut self, q: &ast::Query) -> ControlFlow<()> {
            let mut all = Vec::new();
            selects(&q.body, &mut all);
            for s in all {
                if s.projection.iter().any(|i| {
                    matches!(
                        i,
                        SelectItem::Wildcard(_) | SelectItem::QualifiedWildcard(..)
                    )
                }) {
                    self.0 = true;
                }
            }
            ControlFlow::Continue(())
        }
    }
    let mut wild = Wildcards(false);
    let _ = statement.visit(&mut wild);
    let mut request = agnes_query::Request {
        table: table.to_string(),
        columns: if wild.0 {
            Vec::new()
        } else if wanted.is_empty() {
            columns
                .first()
                .map(|(c, _)| vec![c.clone()])
                .unwrap_or_default()
        } else {
            wanted
        },
        ..Default::default()
    };

    // conditions of the top-level WHERE, when they cannot change outer-join results
    let ast::Statement::Query(query) = statement else {
        return Ok(Some(request));
    };
    let SetExpr::Select(select) = query.body.as_ref() else {
        return Ok(Some(request));
    };
    if uses != 1 {
        return Ok(Some(request));
    }
    let mut alias = None;
    let mut others = 0;
    let mut outer = false;
    for twj in &select.from {
        let factors = std::iter::once(&twj.relation).chain(twj.joins.iter().map(|j| &j.relation));
        for f in factors {
            match f {
                TableFactor::Table { name, alias: a, .. } if is_table(name) => {
                    alias = Some(
                        a.as_ref()
                            .map_or_else(|| table.to_string(), |a| a.name.value.clone()),
                    );
                }
                _ => others += 1,
            }
        }
        outer |= twj.joins.iter().any(|j| {
            !matches!(
                j.join_operator,
                ast::JoinOperator::Join(_)
                    | ast::JoinOperator::Inner(_)
                    | ast::JoinOperator::CrossJoin(_)
            )
        });
    }
    let (Some(alias), false, Some(selection)) = (alias, outer, select.selection.as_ref()) else {
        return Ok(Some(request));
    };
    let mut terms = Vec::new();
    split_and(selection, &mut terms);
    let kind_of = |c: &str| columns.iter().find(|(n, _)| n == c).map(|(_, k)| *k);
    let mut pushed: Option<Expr> = None;
    for term in terms {
        // with other tables in FROM, only conditions qualified with this table's name
        let mut qualified_only = true;
        let _ = ast::visit_expressions(term, |e| {
            if let ast::Expr::Identifier(id) = e
                && (others > 0 || !is_column(&id.value))
            {
                qualified_only = false;
            }
            ControlFlow::<()>::Continue(())
        });
        if !qualified_only {
            continue;
        }
        let Ok(expr) = convert(term, &alias, 0) else {
            continue;
        };
        // column names as the table spells them
        if expr.validate(&kind_of).is_err() {
            continue;
        }
        pushed = Some(match pushed {
            None => expr,
            Some(p) => Expr::binary(p, BinaryOp::And, expr),
        });
    }
    request.filter = pushed;
    Ok(Some(request))
}

fn split_and<'a>(e: &'a ast::Expr, out: &mut Vec<&'a ast::Expr>) {
    match e {
        ast::Expr::BinaryOp {
            left,
            op: BinaryOperator::And,
            right,
        } => {
            split_and(left, out);
            split_and(right, out);
        }
        ast::Expr::Nested(inner) => split_and(inner, out),
        other => out.push(other),
    }
}

/// The source of remote table `table`, the request as its connector gets it, and the
/// connector's estimate of it.
pub async fn estimate(
    state: &crate::state::AppState,
    table: &crate::catalog::TableEntry,
    request: agnes_query::Request,
) -> crate::error::ApiResult<(
    crate::store::Source,
    agnes_runtime::query::QueryRequest,
    agnes_runtime::Estimate,
)> {
    let request = agnes_runtime::query::QueryRequest::Structured(request);
    let source = crate::routes::sources::require_source(state, &table.source).await?;
    let estimate =
        crate::connector::estimate(state, &source.spec, &table.name, request.clone()).await?;
    Ok((source, request, estimate))
}

/// Runs `request` on remote table `table` for `user`: the connector's estimate, the scan
/// cap and the daily budget, the query at the source (into a temporary directory that
/// lives as long as the returned handle), and the audit entry with the bytes scanned and
/// the rows the connector emitted.
pub async fn fetch(
    state: &crate::state::AppState,
    user: &crate::auth::AuthUser,
    table: &crate::catalog::TableEntry,
    request: agnes_query::Request,
) -> crate::error::ApiResult<(tempfile::TempDir, agnes_runtime::query::QueryReport)> {
    use crate::error::ApiError;
    let (source, request, estimate) = estimate(state, table, request).await?;
    let scan_bytes = estimate.scan_bytes.or(estimate.result_bytes).unwrap_or(0);
    let guard = Guard::load(state, &user.0.name, &table.source, &table.name).await?;
    if let Err(refused) = guard.check(&table.name, scan_bytes) {
        crate::routes::audit(
            state,
            &user.0,
            "data.remote_scan_refused",
            Some(table.name.clone()),
            Some(format!(
                "estimated_scan_bytes={scan_bytes}: {}",
                refused.code()
            )),
        )
        .await;
        return Err(refused);
    }
    let out = tempfile::tempdir().map_err(ApiError::internal)?;
    let report = crate::connector::query(
        state,
        &source.spec,
        &table.name,
        request,
        out.path().to_path_buf(),
    )
    .await?;
    crate::routes::audit(
        state,
        &user.0,
        SCAN_ACTION,
        Some(table.name.clone()),
        Some(format!(
            "scanned_bytes={scan_bytes} rows={} result_bytes={} source_read_bytes={}",
            report.rows, report.size_bytes, report.db_bytes_read
        )),
    )
    .await;
    Ok((out, report))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allowed_forms_convert() {
        let e = parse_where(
            "country = 'CZ' AND (amount >= 10.5 OR id IN (1, 2)) AND NOT note LIKE 'x%' \
             AND day BETWEEN DATE '2024-01-01' AND '2024-02-01' AND at > TIMESTAMP '2024-01-01 10:00:00' \
             AND blob IS NOT NULL AND -id % 2 = 0 AND orders.id <> 3 AND name ILIKE 'a%'",
            "orders",
        )
        .unwrap();
        let json = e.to_json();
        for part in [
            r#"{"literal":{"decimal":"10.5"}}"#,
            r#"{"literal":{"date":"2024-01-01"}}"#,
            r#"{"literal":{"timestamp":"2024-01-01 10:00:00"}}"#,
            r#""case_insensitive":true"#,
            r#"{"column":"id"}"#,
        ] {
            assert!(json.contains(part), "{part} in {json}");
        }
    }

    #[test]
    fn everything_else_is_refused_naming_the_part() {
        for (text, why) in [
            ("id IN (SELECT id FROM other)", "subquery"),
            ("EXISTS (SELECT 1)", "subquery"),
            ("lower(country) = 'cz'", "function `lower`"),
            ("pg_sleep(10) IS NULL", "function `pg_sleep`"),
            ("other.id = 1", "not a column of `orders`"),
            ("id = 1 -- ' OR 1=1", "comments"),
            ("id = 1 /* x */", "comments"),
            ("id = 1; DROP TABLE orders", "`;`"),
            ("id = 1 id", "unexpected"),
            ("country ~ 'x'", "not allowed"),
            ("id = $1", "not allowed"),
            ("CAST(id AS text) = '1'", "not allowed"),
        ] {
            let err = parse_where(text, "orders").unwrap_err();
            assert!(err.contains(why), "{text}: {err}");
        }
        assert!(parse_where(&"x".repeat(MAX_WHERE + 1), "t").is_err());
    }

    fn cols() -> Vec<(String, agnes_query::Kind)> {
        use agnes_query::Kind;
        [
            ("id", Kind::Number),
            ("country", Kind::Text),
            ("amount", Kind::Number),
        ]
        .into_iter()
        .map(|(n, k)| (n.to_string(), k))
        .collect()
    }

    #[test]
    fn pushdown_takes_the_columns_and_the_conditions_of_the_table() {
        let p = |sql: &str| pushdown(sql, "events", &cols()).unwrap();
        assert_eq!(p("SELECT 1 FROM orders"), None, "not used");
        let r = p("SELECT count(*) FROM events WHERE country = 'CZ' AND amount > 10").unwrap();
        assert_eq!(r.columns, ["country", "amount"]);
        let f = r.filter.unwrap().to_json();
        assert!(
            f.contains(r#""string":"CZ""#) && f.contains(r#""op":"gt""#),
            "{f}"
        );
        // count(*) alone: one column, no filter
        let r = p("SELECT count(*) FROM events").unwrap();
        assert_eq!((r.columns, r.filter), (vec!["id".to_string()], None));
        // SELECT *: every column
        assert!(
            p("SELECT * FROM events WHERE id = 1")
                .unwrap()
                .columns
                .is_empty()
        );
        // a join: only conditions qualified with this table's alias
        let r = p(
            "SELECT e.id, o.total FROM events e JOIN orders o ON e.id = o.id \
                   WHERE e.country = 'CZ' AND o.total > 5 AND id > 3",
        )
        .unwrap();
        let f = r.filter.unwrap().to_json();
        assert!(
            f.contains("CZ") && !f.contains("total") && !f.contains(r#""int":3"#),
            "{f}"
        );
        // an outer join: no condition is pushed
        assert_eq!(
            p("SELECT * FROM orders o LEFT JOIN events e ON e.id = o.id WHERE e.country IS NULL")
                .unwrap()
                .filter,
            None
        );
        // a condition the filter cannot express stays in the sandbox only
        let r = p("SELECT id FROM events WHERE lower(country) = 'cz' AND id < 5").unwrap();
        assert_eq!(
            r.filter.unwrap().to_json(),
            r#"{"binary":{"op":"lt","left":{"column":"id"},"right":{"literal":{"int":5}}}}"#
        );
        assert!(pushdown("SELEC nonsense events", "events", &cols()).is_err());
    }

    #[test]
    fn order_keys() {
        assert!(order_key("amount DESC").unwrap().descending);
        assert!(!order_key("amount").unwrap().descending);
        assert!(order_key("amount sideways").is_err());
        assert!(order_key("a b c").is_err());
    }
}
