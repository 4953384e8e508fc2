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
    Err(format!("`{shown}` is not allowed in a remote where; {ALLOWED}"))
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
        } => Expr::Like {
            expr: sub(expr)?,
            pattern: sub(pattern)?,
            negated: *negated,
            case_insensitive: false,
        },
        ast::Expr::ILike {
            negated,
            any: false,
            expr,
            pattern,
            escape_char: None,
        } => Expr::Like {
            expr: sub(expr)?,
            pattern: sub(pattern)?,
            negated: *negated,
            case_insensitive: true,
        },
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
        ast::DataType::Timestamp(..) | ast::DataType::Datetime(_) => {
            Literal::Timestamp(s.clone())
        }
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

    #[test]
    fn order_keys() {
        assert!(order_key("amount DESC").unwrap().descending);
        assert!(!order_key("amount").unwrap().descending);
        assert!(order_key("amount sideways").is_err());
        assert!(order_key("a b c").is_err());
    }
}
