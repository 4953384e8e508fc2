//! Checks a connector config against the JSON Schema its `spec()` declares, before the
//! config is stored or a run starts, so an admin hears "`config.delimiter`: must be at most
//! 1 characters" at registration instead of a connector error at 3 a.m.
//!
//! The subset of JSON Schema (2020-12 keywords) understood: `type` (one or a list; `integer`
//! is a number without a fraction), `enum`, `const`, `properties`, `required`,
//! `additionalProperties` (boolean or schema), `items`, `minItems`, `maxItems`, `minimum`,
//! `maximum`, `exclusiveMinimum`, `exclusiveMaximum`, `minLength`, `maxLength` (in
//! characters), `allOf`, `anyOf`, `oneOf`, `not`, and boolean schemas. Other keywords
//! (annotations such as `default`, `description`, `title`, and anything else) are ignored,
//! as JSON Schema requires of unknown keywords; the connector still validates its own
//! config.

use serde_json::{Map, Value};

/// The deepest nesting of schemas walked (a hostile schema cannot recurse the host).
const MAX_DEPTH: usize = 64;

/// Validates `value` against `schema`. The error names the offending key as a path from
/// `root` (`config.tables[0].name`) and says what is wrong.
pub fn validate(schema: &Value, value: &Value, root: &str) -> Result<(), String> {
    check(schema, value, root, 0)
}

fn check(schema: &Value, value: &Value, path: &str, depth: usize) -> Result<(), String> {
    if depth > MAX_DEPTH {
        return Err(format!(
            "{path}: the schema nests deeper than {MAX_DEPTH} levels"
        ));
    }
    let s = match schema {
        Value::Bool(true) => return Ok(()),
        Value::Bool(false) => return Err(format!("`{path}`: is not allowed here")),
        Value::Object(s) => s,
        _ => return Ok(()),
    };
    if let Some(t) = s.get("type") {
        let allowed: Vec<&str> = match t {
            Value::String(t) => vec![t.as_str()],
            Value::Array(ts) => ts.iter().filter_map(Value::as_str).collect(),
            _ => vec![],
        };
        if !allowed.is_empty() && !allowed.iter().any(|t| is_type(value, t)) {
            return Err(format!(
                "`{path}`: must be {}, not {}",
                allowed.join(" or "),
                type_name(value)
            ));
        }
    }
    if let Some(Value::Array(options)) = s.get("enum")
        && !options.contains(value)
    {
        return Err(format!(
            "`{path}`: must be one of {}",
            Value::Array(options.clone())
        ));
    }
    if let Some(c) = s.get("const")
        && c != value
    {
        return Err(format!("`{path}`: must be {c}"));
    }
    match value {
        Value::Object(obj) => object(s, obj, path, depth)?,
        Value::Array(items) => array(s, items, path, depth)?,
        Value::String(text) => {
            let n = text.chars().count() as u64;
            if let Some(min) = s.get("minLength").and_then(Value::as_u64)
                && n < min
            {
                return Err(format!("`{path}`: must be at least {min} characters"));
            }
            if let Some(max) = s.get("maxLength").and_then(Value::as_u64)
                && n > max
            {
                return Err(format!("`{path}`: must be at most {max} characters"));
            }
        }
        Value::Number(n) => number(s, n.as_f64().unwrap_or(f64::NAN), path)?,
        _ => {}
    }
    for sub in list(s, "allOf") {
        check(sub, value, path, depth + 1)?;
    }
    let any = list(s, "anyOf");
    if !any.is_empty()
        && !any
            .iter()
            .any(|sub| check(sub, value, path, depth + 1).is_ok())
    {
        return Err(format!(
            "`{path}`: matches none of the allowed forms (anyOf)"
        ));
    }
    let one = list(s, "oneOf");
    if !one.is_empty() {
        let matching = one
            .iter()
            .filter(|sub| check(sub, value, path, depth + 1).is_ok())
            .count();
        if matching != 1 {
            return Err(format!(
                "`{path}`: must match exactly one of the allowed forms (oneOf), matches {matching}"
            ));
        }
    }
    if let Some(not) = s.get("not")
        && check(not, value, path, depth + 1).is_ok()
    {
        return Err(format!(
            "`{path}`: matches a form that is not allowed (not)"
        ));
    }
    Ok(())
}

fn list<'a>(s: &'a Map<String, Value>, key: &str) -> &'a [Value] {
    s.get(key)
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[])
}

fn object(
    s: &Map<String, Value>,
    obj: &Map<String, Value>,
    path: &str,
    depth: usize,
) -> Result<(), String> {
    for key in list(s, "required").iter().filter_map(Value::as_str) {
        if !obj.contains_key(key) {
            return Err(format!("`{path}.{key}`: is required"));
        }
    }
    let props = s.get("properties").and_then(Value::as_object);
    for (key, v) in obj {
        let child = format!("{path}.{key}");
        match props.and_then(|p| p.get(key)) {
            Some(sub) => check(sub, v, &child, depth + 1)?,
            None => match s.get("additionalProperties") {
                Some(Value::Bool(false)) => {
                    let known: Vec<&str> = props
                        .map(|p| p.keys().map(String::as_str).collect())
                        .unwrap_or_default();
                    return Err(format!(
                        "`{child}`: is not a known key; the connector accepts {}",
                        if known.is_empty() {
                            "no keys here".to_string()
                        } else {
                            known.join(", ")
                        }
                    ));
                }
                Some(sub) => check(sub, v, &child, depth + 1)?,
                None => {}
            },
        }
    }
    Ok(())
}

fn array(s: &Map<String, Value>, items: &[Value], path: &str, depth: usize) -> Result<(), String> {
    let n = items.len() as u64;
    if let Some(min) = s.get("minItems").and_then(Value::as_u64)
        && n < min
    {
        return Err(format!("`{path}`: must have at least {min} items"));
    }
    if let Some(max) = s.get("maxItems").and_then(Value::as_u64)
        && n > max
    {
        return Err(format!("`{path}`: must have at most {max} items"));
    }
    if let Some(sub) = s.get("items") {
        for (i, v) in items.iter().enumerate() {
            check(sub, v, &format!("{path}[{i}]"), depth + 1)?;
        }
    }
    Ok(())
}

fn number(s: &Map<String, Value>, n: f64, path: &str) -> Result<(), String> {
    let bound = |k: &str| s.get(k).and_then(Value::as_f64);
    if let Some(min) = bound("minimum")
        && n < min
    {
        return Err(format!("`{path}`: must be at least {min}"));
    }
    if let Some(max) = bound("maximum")
        && n > max
    {
        return Err(format!("`{path}`: must be at most {max}"));
    }
    if let Some(min) = bound("exclusiveMinimum")
        && n <= min
    {
        return Err(format!("`{path}`: must be more than {min}"));
    }
    if let Some(max) = bound("exclusiveMaximum")
        && n >= max
    {
        return Err(format!("`{path}`: must be less than {max}"));
    }
    Ok(())
}

fn is_type(v: &Value, t: &str) -> bool {
    match t {
        "object" => v.is_object(),
        "array" => v.is_array(),
        "string" => v.is_string(),
        "boolean" => v.is_boolean(),
        "null" => v.is_null(),
        "number" => v.is_number(),
        "integer" => v.is_i64() || v.is_u64() || v.as_f64().is_some_and(|f| f.fract() == 0.0),
        _ => true,
    }
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn csv_schema() -> Value {
        json!({
            "type": "object",
            "additionalProperties": false,
            "required": ["dir"],
            "properties": {
                "dir": {"type": "string"},
                "delimiter": {"type": "string", "minLength": 1, "maxLength": 1},
                "batch_rows": {"type": "integer", "minimum": 1, "maximum": 1000000},
                "tables": {"type": "object", "additionalProperties": {"type": "string"}},
                "columns": {"type": "array", "items": {"enum": ["a", "b"]}, "maxItems": 2}
            }
        })
    }

    #[test]
    fn errors_name_the_key_and_the_reason() {
        let s = csv_schema();
        let ok = json!({"dir": "/d", "delimiter": ";", "batch_rows": 10, "tables": {"t": "t.csv"}});
        assert_eq!(validate(&s, &ok, "config"), Ok(()));
        for (bad, expected) in [
            (json!({}), "`config.dir`: is required"),
            (
                json!({"dir": 1}),
                "`config.dir`: must be string, not a number",
            ),
            (
                json!({"dir": "/d", "delimiter": ";;"}),
                "`config.delimiter`: must be at most 1 characters",
            ),
            (
                json!({"dir": "/d", "batch_rows": 0}),
                "`config.batch_rows`: must be at least 1",
            ),
            (
                json!({"dir": "/d", "batch_rows": 1.5}),
                "`config.batch_rows`: must be integer, not a number",
            ),
            (
                json!({"dir": "/d", "tables": {"t": 3}}),
                "`config.tables.t`: must be string, not a number",
            ),
            (
                json!({"dir": "/d", "columns": ["c"]}),
                "`config.columns[0]`: must be one of [\"a\",\"b\"]",
            ),
            (
                json!({"dir": "/d", "columns": ["a", "a", "b"]}),
                "`config.columns`: must have at most 2 items",
            ),
        ] {
            assert_eq!(validate(&s, &bad, "config").unwrap_err(), expected, "{bad}");
        }
        let unknown = validate(&s, &json!({"dir": "/d", "delimeter": ","}), "config").unwrap_err();
        assert!(
            unknown.starts_with("`config.delimeter`: is not a known key"),
            "{unknown}"
        );
        assert!(
            unknown.contains("delimiter"),
            "lists the known keys: {unknown}"
        );
    }

    #[test]
    fn combinators_and_boolean_schemas() {
        let s = json!({"anyOf": [{"type": "string"}, {"type": "integer"}]});
        assert!(validate(&s, &json!("x"), "c").is_ok());
        assert!(validate(&s, &json!(true), "c").is_err());
        let s = json!({"oneOf": [{"minimum": 0}, {"maximum": 10}]});
        assert!(
            validate(&s, &json!(5), "c")
                .unwrap_err()
                .contains("matches 2")
        );
        assert!(validate(&json!(false), &json!(1), "c").is_err());
        assert!(validate(&json!(true), &json!(1), "c").is_ok());
        assert!(validate(&json!({"not": {"type": "null"}}), &Value::Null, "c").is_err());
    }

    #[test]
    fn a_deeply_nested_schema_is_refused_not_recursed() {
        let mut s = json!({"type": "object"});
        let mut v = json!(1);
        for _ in 0..200 {
            s = json!({"properties": {"a": s}});
            v = json!({"a": v});
        }
        assert!(validate(&s, &v, "c").unwrap_err().contains("nests deeper"));
    }
}
