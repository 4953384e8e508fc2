//! # jira connector
//!
//! Jira Cloud issues, their comments and their changelog as three tables, through the
//! REST search API (`GET /rest/api/3/search/jql`, `nextPageToken` paging), incremental by
//! the issues' `updated` with a JQL `updated >= "…"` cursor. It also turns one Jira
//! webhook payload (handed over by the server's `/api/webhooks/jira` in `config.webhook`)
//! into rows, without calling Jira. See README.md.

use agnes_connector_sdk::arrow_schema::SchemaRef;
use agnes_connector_sdk::http::{Client, Request, Retry, encode, secret_base64};
use agnes_connector_sdk::json::{Kind, parse_timestamp, schema, snippet, text, to_batch};
use agnes_connector_sdk::{Connector, Error, Level, ReadContext, Spec, Table};
use serde::Deserialize;
use serde_json::{Value, json};

/// The connector's config.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// `https://<your-site>.atlassian.net`.
    pub site: String,
    /// Extra JQL, ANDed with the cursor (e.g. `project = ABC`).
    #[serde(default)]
    pub jql: Option<String>,
    /// Issues per search page (Jira caps it at 100 with changelog).
    #[serde(default = "default_page_size")]
    pub page_size: u32,
    /// How far before the cursor an incremental run starts: JQL dates are minutes in the
    /// Jira user's time zone, the cursor is UTC, so the default covers any zone.
    #[serde(default = "default_overlap")]
    pub overlap_minutes: u64,
    #[serde(default = "default_retries")]
    pub max_retries: u32,
    #[serde(default = "default_backoff")]
    pub backoff_ms: u64,
    #[serde(default)]
    pub min_interval_ms: u64,
    /// A webhook payload to apply instead of searching (set by the server).
    #[serde(default)]
    pub webhook: Option<Value>,
}

fn default_page_size() -> u32 {
    100
}
fn default_overlap() -> u64 {
    24 * 60
}
fn default_retries() -> u32 {
    5
}
fn default_backoff() -> u64 {
    500
}

const FIELDS: &str = "summary,status,issuetype,priority,assignee,reporter,created,updated,labels,project,resolution,parent,description,comment";

fn issues_schema() -> SchemaRef {
    schema(&[
        ("id", Kind::Int64),
        ("key", Kind::String),
        ("project", Kind::String),
        ("issue_type", Kind::String),
        ("summary", Kind::String),
        ("status", Kind::String),
        ("priority", Kind::String),
        ("assignee", Kind::String),
        ("assignee_account_id", Kind::String),
        ("reporter", Kind::String),
        ("labels", Kind::Json),
        ("resolution", Kind::String),
        ("parent_key", Kind::String),
        ("description", Kind::String),
        ("created", Kind::Timestamp),
        ("updated", Kind::Timestamp),
    ])
}

fn comments_schema() -> SchemaRef {
    schema(&[
        ("id", Kind::Int64),
        ("issue_id", Kind::Int64),
        ("issue_key", Kind::String),
        ("author", Kind::String),
        ("body", Kind::String),
        ("created", Kind::Timestamp),
        ("updated", Kind::Timestamp),
    ])
}

fn changelog_schema() -> SchemaRef {
    schema(&[
        ("id", Kind::String),
        ("history_id", Kind::Int64),
        ("issue_id", Kind::Int64),
        ("issue_key", Kind::String),
        ("author", Kind::String),
        ("created", Kind::Timestamp),
        ("field", Kind::String),
        ("from_value", Kind::String),
        ("to_value", Kind::String),
    ])
}

/// Plain text of an Atlassian Document Format value (or a plain string).
pub fn adf_text(v: &Value) -> Option<String> {
    fn walk(v: &Value, out: &mut String) {
        match v {
            Value::String(s) => out.push_str(s),
            Value::Object(o) => {
                if let Some(Value::String(t)) = o.get("text") {
                    out.push_str(t);
                }
                if o.get("type").and_then(Value::as_str) == Some("hardBreak") {
                    out.push('\n');
                }
                if let Some(Value::Array(content)) = o.get("content") {
                    for (i, c) in content.iter().enumerate() {
                        let block = matches!(
                            c.get("type").and_then(Value::as_str),
                            Some("paragraph" | "heading" | "codeBlock" | "listItem" | "blockquote")
                        );
                        if block && i > 0 && !out.is_empty() && !out.ends_with('\n') {
                            out.push('\n');
                        }
                        walk(c, out);
                    }
                }
            }
            _ => {}
        }
    }
    if v.is_null() {
        return None;
    }
    let mut out = String::new();
    walk(v, &mut out);
    Some(out)
}

fn name_of(v: Option<&Value>) -> Value {
    v.and_then(|x| {
        x.get("displayName")
            .or_else(|| x.get("name"))
            .or_else(|| x.get("key"))
    })
    .cloned()
    .unwrap_or(Value::Null)
}

/// An id Jira sends as a string of digits.
fn numeric_id(v: Option<&Value>) -> Value {
    match v {
        Some(Value::String(s)) => s.parse::<i64>().map(Value::from).unwrap_or(Value::Null),
        Some(n @ Value::Number(_)) => n.clone(),
        _ => Value::Null,
    }
}

/// One `issues` row from a REST (or webhook) issue.
pub fn issue_row(issue: &Value) -> Value {
    let f = issue.get("fields").unwrap_or(&Value::Null);
    json!({
        "id": numeric_id(issue.get("id")),
        "key": issue.get("key"),
        "project": f.pointer("/project/key"),
        "issue_type": name_of(f.get("issuetype")),
        "summary": f.get("summary"),
        "status": name_of(f.get("status")),
        "priority": name_of(f.get("priority")),
        "assignee": name_of(f.get("assignee")),
        "assignee_account_id": f.pointer("/assignee/accountId"),
        "reporter": name_of(f.get("reporter")),
        "labels": f.get("labels"),
        "resolution": name_of(f.get("resolution")),
        "parent_key": f.pointer("/parent/key"),
        "description": f.get("description").and_then(adf_text),
        "created": f.get("created"),
        "updated": f.get("updated"),
    })
}

/// One `comments` row.
pub fn comment_row(issue: &Value, c: &Value) -> Value {
    json!({
        "id": numeric_id(c.get("id")),
        "issue_id": numeric_id(issue.get("id")),
        "issue_key": issue.get("key"),
        "author": name_of(c.get("author")),
        "body": c.get("body").and_then(adf_text),
        "created": c.get("created"),
        "updated": c.get("updated"),
    })
}

/// The `changelog` rows of one history entry (one per changed field).
pub fn history_rows(issue: &Value, h: &Value, out: &mut Vec<Value>) {
    let hid = numeric_id(h.get("id"));
    let items = h
        .get("items")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    for (i, item) in items.iter().enumerate() {
        out.push(json!({
            "id": format!("{}:{i}", text(&hid)),
            "history_id": hid,
            "issue_id": numeric_id(issue.get("id")),
            "issue_key": issue.get("key"),
            "author": name_of(h.get("author")),
            "created": h.get("created"),
            "field": item.get("field"),
            "from_value": item.get("fromString").or_else(|| item.get("from")),
            "to_value": item.get("toString").or_else(|| item.get("to")),
        }));
    }
}

/// `yyyy-MM-dd HH:mm` (UTC) of epoch microseconds, for JQL.
pub fn jql_minute(micros: i64) -> String {
    let secs = micros.div_euclid(1_000_000);
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // civil from days (Howard Hinnant's algorithm)
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}",
        rem / 3600,
        rem % 3600 / 60
    )
}

/// The search JQL: the user's filter and, from a cursor, `updated >= cursor - overlap`.
pub fn search_jql(config: &Config, cursor: Option<&str>) -> Result<String, Error> {
    let since = match cursor {
        Some(c) => {
            let micros = parse_timestamp(c)
                .ok_or_else(|| Error::Internal(format!("state cursor `{c}` is not a timestamp")))?;
            jql_minute(micros - config.overlap_minutes as i64 * 60_000_000)
        }
        // the enhanced search refuses unbounded JQL
        None => "1970-01-01 00:00".to_string(),
    };
    let bound = format!("updated >= \"{since}\"");
    Ok(
        match config
            .jql
            .as_deref()
            .map(str::trim)
            .filter(|j| !j.is_empty())
        {
            Some(j) => format!("({j}) AND {bound} ORDER BY updated ASC"),
            None => format!("{bound} ORDER BY updated ASC"),
        },
    )
}

struct Jira<'a> {
    config: &'a Config,
    client: Client,
}

impl Jira<'_> {
    fn get(&mut self, path_and_query: &str) -> Result<Value, Error> {
        let url = format!("{}{path_and_query}", self.config.site.trim_end_matches('/'));
        let req = Request::get(url)
            .header("accept", "application/json")
            .header(
                "authorization",
                format!("Basic {}", secret_base64("jira_token")),
            );
        self.client.send(&req)?.json()
    }

    /// Every comment of `issue`: those in the search result, then the rest page by page.
    fn comments(&mut self, issue: &Value) -> Result<Vec<Value>, Error> {
        self.all_of(issue, "/fields/comment", "comments", "comment", "comments")
    }

    /// Every changelog history of `issue` (the search's `expand=changelog` holds at most
    /// 100; the rest come from the changelog endpoint).
    fn histories(&mut self, issue: &Value) -> Result<Vec<Value>, Error> {
        self.all_of(issue, "/changelog", "histories", "changelog", "values")
    }

    /// The items of a paged list embedded in `issue` at `at` (`{<embedded>: [...], total}`),
    /// completed from `/rest/api/3/issue/{id}/<endpoint>?startAt=` (`{<paged>: [...]}`).
    fn all_of(
        &mut self,
        issue: &Value,
        at: &str,
        embedded: &str,
        endpoint: &str,
        paged: &str,
    ) -> Result<Vec<Value>, Error> {
        let list = issue.pointer(at);
        let mut all: Vec<Value> = list
            .and_then(|c| c.get(embedded))
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        let total = list
            .and_then(|c| c.get("total"))
            .and_then(Value::as_u64)
            .unwrap_or(0) as usize;
        let id = text(issue.get("id").unwrap_or(&Value::Null));
        while all.len() < total {
            let page = self.get(&format!(
                "/rest/api/3/issue/{id}/{endpoint}?startAt={}&maxResults=100",
                all.len()
            ))?;
            let more = page
                .get(paged)
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            if more.is_empty() {
                break;
            }
            all.extend(more);
        }
        Ok(all)
    }
}

/// Rows of the three tables.
#[derive(Default)]
struct Rows {
    issues: Vec<Value>,
    comments: Vec<Value>,
    changelog: Vec<Value>,
}

impl Rows {
    fn emit(&mut self, ctx: &mut ReadContext) -> Result<(), Error> {
        for (name, schema, rows) in [
            ("issues", issues_schema(), &mut self.issues),
            ("comments", comments_schema(), &mut self.comments),
            ("changelog", changelog_schema(), &mut self.changelog),
        ] {
            if ctx.is_selected(name) && !rows.is_empty() {
                ctx.emit(name, &to_batch(name, &schema, rows)?)?;
            }
            rows.clear();
        }
        Ok(())
    }
}

/// The rows one webhook payload carries: the issue, its comments (and the event's comment),
/// and the event's changelog entry.
pub fn webhook_rows(payload: &Value) -> Result<(Vec<Value>, Vec<Value>, Vec<Value>), Error> {
    let bad = |why: &str| Error::Config(format!("webhook payload: {why}: {}", snippet(payload)));
    let issue = payload
        .get("issue")
        .filter(|i| i.is_object())
        .ok_or_else(|| bad("no issue"))?;
    if issue.get("id").is_none() || issue.get("key").is_none() {
        return Err(bad("the issue has no id or key"));
    }
    let issues = vec![issue_row(issue)];
    let mut comments: Vec<Value> = issue
        .pointer("/fields/comment/comments")
        .and_then(Value::as_array)
        .map(|cs| cs.iter().map(|c| comment_row(issue, c)).collect())
        .unwrap_or_default();
    if let Some(c) = payload.get("comment").filter(|c| c.is_object()) {
        comments.push(comment_row(issue, c));
    }
    let mut changelog = Vec::new();
    if let Some(cl) = payload.get("changelog").filter(|c| c.is_object()) {
        // a webhook changelog has no author/created of its own: the event's
        let mut h = cl.clone();
        if let Some(o) = h.as_object_mut() {
            o.entry("author")
                .or_insert(payload.get("user").cloned().unwrap_or(Value::Null));
            let when = issue
                .pointer("/fields/updated")
                .cloned()
                .unwrap_or(Value::Null);
            o.entry("created").or_insert(when);
        }
        history_rows(issue, &h, &mut changelog);
    }
    Ok((issues, comments, changelog))
}

pub struct JiraConnector;

impl Connector for JiraConnector {
    type Config = Config;

    fn spec() -> Spec {
        Spec::new("jira", env!("CARGO_PKG_VERSION")).config_schema(json!({
            "type": "object",
            "required": ["site"],
            "properties": {
                "site": {"type": "string"}, "jql": {"type": "string"},
                "page_size": {"type": "integer"}, "overlap_minutes": {"type": "integer"},
                "max_retries": {"type": "integer"}, "backoff_ms": {"type": "integer"},
                "min_interval_ms": {"type": "integer"}, "webhook": {"type": "object"}
            }
        }))
    }

    fn discover(config: &Config) -> Result<Vec<Table>, Error> {
        agnes_connector_sdk::http::Url::parse(&config.site)
            .map_err(|e| Error::Config(format!("site: {e}")))?;
        if config.page_size == 0 || config.page_size > 100 {
            return Err(Error::Config("page_size must be 1..=100".into()));
        }
        Ok(vec![
            Table::new("issues", issues_schema())
                .description("Jira issues (one row per issue, current state)")
                .primary_key(["id"])
                .cursor_field("updated"),
            Table::new("comments", comments_schema())
                .description("Comments of the issues")
                .primary_key(["id"])
                .cursor_field("updated"),
            Table::new("changelog", changelog_schema())
                .description("Field changes of the issues, one row per changed field")
                .primary_key(["id"])
                .cursor_field("created"),
        ])
    }

    fn read(config: &Config, ctx: &mut ReadContext) -> Result<(), Error> {
        Self::discover(config)?;
        let state: Value = match ctx.state() {
            Some(s) => {
                serde_json::from_str(s).map_err(|e| Error::Internal(format!("state: {e}")))?
            }
            None => json!({}),
        };
        let cursor = state
            .get("updated")
            .and_then(Value::as_str)
            .map(str::to_string);

        if let Some(payload) = &config.webhook {
            let (issues, comments, changelog) = webhook_rows(payload)?;
            let mut rows = Rows {
                issues,
                comments,
                changelog,
            };
            rows.emit(ctx)?;
            // a webhook does not move the search cursor: the next sync still sees everything
            ctx.set_state(state.to_string());
            return Ok(());
        }

        let mut jira = Jira {
            config,
            client: Client::new(Retry {
                max_retries: config.max_retries,
                backoff_ms: config.backoff_ms,
                min_interval_ms: config.min_interval_ms,
                ..Retry::default()
            }),
        };
        let jql = search_jql(config, cursor.as_deref())?;
        let mut newest = cursor.clone();
        let mut token: Option<String> = None;
        let (mut pages, mut count) = (0, 0);
        loop {
            let mut q = format!(
                "/rest/api/3/search/jql?jql={}&maxResults={}&fields={}&expand=changelog",
                encode(&jql),
                config.page_size,
                encode(FIELDS)
            );
            if let Some(t) = &token {
                q.push_str(&format!("&nextPageToken={}", encode(t)));
            }
            let page = jira.get(&q)?;
            let issues = page
                .get("issues")
                .and_then(Value::as_array)
                .ok_or_else(|| {
                    Error::Source(format!(
                        "search answered without `issues`: {}",
                        snippet(&page)
                    ))
                })?;
            let mut rows = Rows::default();
            for issue in issues {
                rows.issues.push(issue_row(issue));
                if ctx.is_selected("comments") {
                    for c in jira.comments(issue)? {
                        rows.comments.push(comment_row(issue, &c));
                    }
                }
                if ctx.is_selected("changelog") {
                    for h in jira.histories(issue)? {
                        history_rows(issue, &h, &mut rows.changelog);
                    }
                }
                if let Some(u) = issue.pointer("/fields/updated").and_then(Value::as_str) {
                    let later = match (&newest, parse_timestamp(u)) {
                        (Some(n), Some(t)) => parse_timestamp(n).is_none_or(|old| t > old),
                        (None, Some(_)) => true,
                        _ => false,
                    };
                    if later {
                        newest = Some(u.to_string());
                    }
                }
            }
            count += issues.len();
            pages += 1;
            rows.emit(ctx)?;
            let last = page.get("isLast").and_then(Value::as_bool).unwrap_or(true);
            match page.get("nextPageToken").and_then(Value::as_str) {
                Some(t) if !last && !t.is_empty() && token.as_deref() != Some(t) => {
                    token = Some(t.to_string())
                }
                _ => break,
            }
        }
        ctx.log(
            Level::Info,
            &format!("{count} issues in {pages} search pages"),
        );
        let mut state = state;
        if let (Some(n), Some(o)) = (newest, state.as_object_mut()) {
            o.insert("updated".into(), Value::String(n));
        }
        ctx.set_state(state.to_string());
        Ok(())
    }
}

agnes_connector_sdk::export_connector!(JiraConnector);

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> Config {
        serde_json::from_value(json!({"site": "https://acme.atlassian.net", "jql": "project = ABC", "overlap_minutes": 30})).unwrap()
    }

    #[test]
    fn jql_with_and_without_a_cursor() {
        assert_eq!(
            search_jql(&config(), None).unwrap(),
            "(project = ABC) AND updated >= \"1970-01-01 00:00\" ORDER BY updated ASC"
        );
        assert_eq!(
            search_jql(&config(), Some("2024-03-01T00:10:00.000+0000")).unwrap(),
            "(project = ABC) AND updated >= \"2024-02-29 23:40\" ORDER BY updated ASC",
            "30 minutes of overlap, across a leap day"
        );
        assert!(search_jql(&config(), Some("garbage")).is_err());
        assert_eq!(jql_minute(0), "1970-01-01 00:00");
        assert_eq!(jql_minute(1_704_164_645_000_000), "2024-01-02 03:04");
    }

    #[test]
    fn rows_from_an_issue() {
        let issue = json!({
            "id": "10001", "key": "ABC-1",
            "fields": {
                "summary": "Broken build", "status": {"name": "In Progress"}, "issuetype": {"name": "Bug"},
                "priority": {"name": "High"}, "assignee": {"displayName": "Ada", "accountId": "a1"},
                "reporter": null, "labels": ["ci", "urgent"], "project": {"key": "ABC"},
                "parent": {"key": "ABC-0"}, "created": "2024-05-01T10:00:00.000+0000", "updated": "2024-05-02T10:00:00.000+0000",
                "description": {"type": "doc", "content": [
                    {"type": "paragraph", "content": [{"type": "text", "text": "first"}]},
                    {"type": "paragraph", "content": [{"type": "text", "text": "second"}]}
                ]}
            }
        });
        let row = issue_row(&issue);
        assert_eq!(row["id"], 10001);
        assert_eq!(row["status"], "In Progress");
        assert_eq!(row["assignee_account_id"], "a1");
        assert_eq!(row["reporter"], Value::Null);
        assert_eq!(row["description"], "first\nsecond");
        let batch = to_batch("issues", &issues_schema(), &[row]).unwrap();
        assert_eq!(batch.num_rows(), 1);

        let mut out = Vec::new();
        history_rows(
            &issue,
            &json!({"id": "77", "author": {"displayName": "Bob"}, "created": "2024-05-02T10:00:00.000+0000",
                    "items": [{"field": "status", "fromString": "To Do", "toString": "In Progress"}, {"field": "assignee", "fromString": null, "toString": "Ada"}]}),
            &mut out,
        );
        assert_eq!(out.len(), 2);
        assert_eq!(out[1]["id"], "77:1");
        assert_eq!(out[0]["to_value"], "In Progress");
        to_batch("changelog", &changelog_schema(), &out).unwrap();
    }

    #[test]
    fn webhook_payloads() {
        let payload = json!({
            "webhookEvent": "jira:issue_updated", "timestamp": 1714557600000u64,
            "user": {"displayName": "Ada"},
            "issue": {"id": "10002", "key": "ABC-2", "fields": {"summary": "x", "updated": "2024-05-01T10:00:00.000+0000"}},
            "changelog": {"id": "99", "items": [{"field": "summary", "fromString": "old", "toString": "x"}]},
            "comment": {"id": "5", "body": "hi", "created": "2024-05-01T10:00:00.000+0000", "updated": "2024-05-01T10:00:00.000+0000"}
        });
        let (i, c, h) = webhook_rows(&payload).unwrap();
        assert_eq!((i.len(), c.len(), h.len()), (1, 1, 1));
        assert_eq!(h[0]["author"], "Ada");
        assert_eq!(h[0]["created"], "2024-05-01T10:00:00.000+0000");
        for bad in [
            json!({}),
            json!({"issue": 3}),
            json!({"issue": {"key": "A-1"}}),
        ] {
            let err = webhook_rows(&bad).unwrap_err().to_string();
            assert!(err.contains("webhook payload"), "{err}");
        }
    }
}
