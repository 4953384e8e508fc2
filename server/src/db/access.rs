//! Users, personal access tokens, groups, members and grants.
//!
//! A token is `agnes_<prefix>_<secret>`: 8 hex characters of prefix (stored, shown in
//! listings) and 40 of secret. Only the sha256 of the whole token is stored.

use serde::Serialize;
use sha2::{Digest, Sha256};

use super::now;
use crate::error::{ApiError, ApiResult};

/// Resource types a grant can name.
pub const RESOURCE_TYPES: [&str; 2] = ["table", "source"];

/// An authenticated caller, with everything the access check needs.
#[derive(Debug, Clone, Serialize)]
pub struct Principal {
    pub id: String,
    pub name: String,
    pub groups: Vec<String>,
    /// `(resource_type, resource_id)` granted through any of the groups.
    pub grants: Vec<(String, String)>,
}

impl Principal {
    pub fn is_admin(&self) -> bool {
        self.groups.iter().any(|g| g == "Admin")
    }

    /// The one access check for data: may this caller read `table` of `source`?
    pub fn can_read(&self, table: &str, source: &str) -> bool {
        self.is_admin()
            || self.grants.iter().any(|(t, id)| {
                (t == "table" && (id == table || id == "*")) || (t == "source" && id == source)
            })
    }

    pub fn require_admin(&self) -> ApiResult<()> {
        if self.is_admin() {
            Ok(())
        } else {
            Err(ApiError::Forbidden(
                "this needs membership of the Admin group".into(),
            ))
        }
    }
}

/// A token's metadata (never its secret).
#[derive(Debug, Clone, Serialize)]
pub struct TokenInfo {
    pub id: String,
    pub name: String,
    pub prefix: String,
    pub created_at: String,
    pub expires_at: Option<String>,
    pub revoked_at: Option<String>,
    pub last_used_at: Option<String>,
}

fn random_hex(bytes: usize) -> ApiResult<String> {
    let mut buf = vec![0u8; bytes];
    getrandom::fill(&mut buf).map_err(|e| ApiError::internal(format!("random: {e}")))?;
    Ok(hex::encode(buf))
}

/// sha256 of a token, hex: what is stored, and the auth cache key.
pub fn hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// Creates a user (member of `Everyone`) and returns its id.
pub fn create_user(conn: &duckdb::Connection, name: &str) -> ApiResult<String> {
    if name.is_empty() || name.len() > 100 || name.chars().any(char::is_control) {
        return Err(ApiError::BadRequest(
            "user name must be 1-100 characters without control characters".into(),
        ));
    }
    let exists: i64 = conn.query_row("SELECT count(*) FROM users WHERE name = ?", [name], |r| {
        r.get(0)
    })?;
    if exists > 0 {
        return Err(ApiError::Conflict(format!("user `{name}` exists")));
    }
    let id = format!("u_{}", random_hex(8)?);
    conn.execute(
        "INSERT INTO users VALUES (?, ?, CAST(? AS TIMESTAMP))",
        duckdb::params![id, name, now()],
    )?;
    conn.execute(
        "INSERT OR IGNORE INTO members VALUES ('Everyone', ?)",
        [&id],
    )?;
    Ok(id)
}

pub fn user_id(conn: &duckdb::Connection, name: &str) -> ApiResult<String> {
    conn.query_row("SELECT id FROM users WHERE name = ?", [name], |r| r.get(0))
        .map_err(|_| ApiError::NotFound(format!("no user `{name}`")))
}

pub fn count_users(conn: &duckdb::Connection) -> ApiResult<i64> {
    Ok(conn.query_row("SELECT count(*) FROM users", [], |r| r.get(0))?)
}

/// Issues a token for `user_id`; returns its metadata and the token itself (shown once).
pub fn create_token(
    conn: &duckdb::Connection,
    user_id: &str,
    name: &str,
    expires_in_days: Option<u32>,
) -> ApiResult<(TokenInfo, String)> {
    let prefix = random_hex(4)?;
    let token = format!("agnes_{prefix}_{}", random_hex(20)?);
    let id = format!("t_{}", random_hex(8)?);
    let created = now();
    let expires = expires_in_days.map(|d| {
        (chrono::Utc::now() + chrono::Duration::days(d.into()))
            .naive_utc()
            .format("%Y-%m-%d %H:%M:%S%.6f")
            .to_string()
    });
    conn.execute(
        "INSERT INTO tokens VALUES (?, ?, ?, ?, ?, CAST(? AS TIMESTAMP), CAST(? AS TIMESTAMP), NULL, NULL)",
        duckdb::params![id, user_id, name, prefix, hash(&token), created, expires],
    )?;
    let info = TokenInfo {
        id,
        name: name.into(),
        prefix,
        created_at: created,
        expires_at: expires,
        revoked_at: None,
        last_used_at: None,
    };
    Ok((info, token))
}

/// Resolves a bearer token to its user, or `None` when it is unknown, revoked or
/// expired. Records `last_used_at` (at most once a minute).
pub fn authenticate(conn: &duckdb::Connection, token: &str) -> ApiResult<Option<Principal>> {
    let Some(prefix) = token
        .strip_prefix("agnes_")
        .and_then(|t| t.split('_').next())
    else {
        return Ok(None);
    };
    let found = conn.query_row(
        "SELECT t.id, t.hash, u.id, u.name, \
         coalesce(t.last_used_at < now() - INTERVAL 60 SECOND, true) FROM tokens t JOIN users u ON u.id = t.user_id \
         WHERE t.prefix = ? AND t.revoked_at IS NULL AND (t.expires_at IS NULL OR t.expires_at > now())",
        [prefix],
        |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?, r.get::<_, String>(2)?, r.get::<_, String>(3)?, r.get::<_, bool>(4)?)),
    );
    let (token_id, stored, user_id, user_name, stale) = match found {
        Ok(row) => row,
        Err(duckdb::Error::QueryReturnedNoRows) => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    if stored != hash(token) {
        return Ok(None);
    }
    // a write per request would serialise every request on the database: once a minute
    if stale {
        conn.execute(
            "UPDATE tokens SET last_used_at = CAST(? AS TIMESTAMP) WHERE id = ?",
            duckdb::params![now(), token_id],
        )?;
    }
    principal(conn, &user_id, &user_name).map(Some)
}

fn principal(conn: &duckdb::Connection, id: &str, name: &str) -> ApiResult<Principal> {
    let mut stmt =
        conn.prepare("SELECT group_name FROM members WHERE user_id = ? ORDER BY group_name")?;
    let groups = stmt
        .query_map([id], |r| r.get(0))?
        .collect::<Result<Vec<String>, _>>()?;
    let mut stmt = conn.prepare(
        "SELECT DISTINCT g.resource_type, g.resource_id FROM grants g JOIN members m ON m.group_name = g.group_name \
         WHERE m.user_id = ? ORDER BY 1, 2",
    )?;
    let grants = stmt
        .query_map([id], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<Result<Vec<(String, String)>, _>>()?;
    Ok(Principal {
        id: id.into(),
        name: name.into(),
        groups,
        grants,
    })
}

pub fn list_tokens(conn: &duckdb::Connection, user_id: &str) -> ApiResult<Vec<TokenInfo>> {
    let mut stmt = conn.prepare(
        "SELECT id, name, prefix, CAST(created_at AS VARCHAR), CAST(expires_at AS VARCHAR), CAST(revoked_at AS VARCHAR), \
         CAST(last_used_at AS VARCHAR) FROM tokens WHERE user_id = ? ORDER BY created_at",
    )?;
    let rows = stmt.query_map([user_id], |r| {
        Ok(TokenInfo {
            id: r.get(0)?,
            name: r.get(1)?,
            prefix: r.get(2)?,
            created_at: r.get(3)?,
            expires_at: r.get(4)?,
            revoked_at: r.get(5)?,
            last_used_at: r.get(6)?,
        })
    })?;
    Ok(rows.collect::<Result<Vec<_>, _>>()?)
}

/// Revokes a token. Only its owner or an admin may (checked by the caller).
pub fn revoke_token(conn: &duckdb::Connection, token_id: &str) -> ApiResult<String> {
    let owner: String = conn
        .query_row("SELECT user_id FROM tokens WHERE id = ?", [token_id], |r| {
            r.get(0)
        })
        .map_err(|_| ApiError::NotFound(format!("no token `{token_id}`")))?;
    conn.execute(
        "UPDATE tokens SET revoked_at = CAST(? AS TIMESTAMP) WHERE id = ? AND revoked_at IS NULL",
        duckdb::params![now(), token_id],
    )?;
    Ok(owner)
}

pub fn create_group(conn: &duckdb::Connection, name: &str) -> ApiResult<()> {
    if name.is_empty()
        || name.len() > 100
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_ ".contains(c))
    {
        return Err(ApiError::BadRequest(
            "group name must be 1-100 characters of [A-Za-z0-9 _-]".into(),
        ));
    }
    let n = conn.execute(
        "INSERT OR IGNORE INTO groups VALUES (?, CAST(? AS TIMESTAMP))",
        duckdb::params![name, now()],
    )?;
    if n == 0 {
        return Err(ApiError::Conflict(format!("group `{name}` exists")));
    }
    Ok(())
}

fn require_group(conn: &duckdb::Connection, name: &str) -> ApiResult<()> {
    let n: i64 = conn.query_row("SELECT count(*) FROM groups WHERE name = ?", [name], |r| {
        r.get(0)
    })?;
    if n == 0 {
        Err(ApiError::NotFound(format!("no group `{name}`")))
    } else {
        Ok(())
    }
}

pub fn add_member(conn: &duckdb::Connection, group: &str, user_name: &str) -> ApiResult<()> {
    require_group(conn, group)?;
    let id = user_id(conn, user_name)?;
    conn.execute(
        "INSERT OR IGNORE INTO members VALUES (?, ?)",
        duckdb::params![group, id],
    )?;
    Ok(())
}

pub fn remove_member(conn: &duckdb::Connection, group: &str, user_name: &str) -> ApiResult<()> {
    require_group(conn, group)?;
    let id = user_id(conn, user_name)?;
    conn.execute(
        "DELETE FROM members WHERE group_name = ? AND user_id = ?",
        duckdb::params![group, id],
    )?;
    Ok(())
}

pub fn grant(
    conn: &duckdb::Connection,
    group: &str,
    resource_type: &str,
    resource_id: &str,
) -> ApiResult<()> {
    require_group(conn, group)?;
    if !RESOURCE_TYPES.contains(&resource_type) {
        return Err(ApiError::BadRequest(format!(
            "resource_type must be one of {RESOURCE_TYPES:?}, got `{resource_type}`"
        )));
    }
    if resource_id != "*" {
        agnes_runtime::names::validate_name(
            if resource_type == "table" {
                "table"
            } else {
                "source"
            },
            resource_id,
        )
        .map_err(|e| ApiError::BadRequest(e.to_string()))?;
    }
    conn.execute(
        "INSERT OR IGNORE INTO grants VALUES (?, ?, ?, CAST(? AS TIMESTAMP))",
        duckdb::params![group, resource_type, resource_id, now()],
    )?;
    Ok(())
}

pub fn revoke_grant(
    conn: &duckdb::Connection,
    group: &str,
    resource_type: &str,
    resource_id: &str,
) -> ApiResult<()> {
    let n = conn.execute(
        "DELETE FROM grants WHERE group_name = ? AND resource_type = ? AND resource_id = ?",
        duckdb::params![group, resource_type, resource_id],
    )?;
    if n == 0 {
        return Err(ApiError::NotFound(format!(
            "no grant of {resource_type} `{resource_id}` to `{group}`"
        )));
    }
    Ok(())
}

/// One group with its members and grants.
#[derive(Debug, Clone, Serialize)]
pub struct GroupInfo {
    pub name: String,
    pub members: Vec<String>,
    pub grants: Vec<(String, String)>,
}

pub fn list_groups(conn: &duckdb::Connection) -> ApiResult<Vec<GroupInfo>> {
    let mut stmt = conn.prepare("SELECT name FROM groups ORDER BY name")?;
    let names = stmt
        .query_map([], |r| r.get(0))?
        .collect::<Result<Vec<String>, _>>()?;
    let mut out = Vec::new();
    for name in names {
        let mut s = conn.prepare("SELECT u.name FROM members m JOIN users u ON u.id = m.user_id WHERE m.group_name = ? ORDER BY 1")?;
        let members = s
            .query_map([&name], |r| r.get(0))?
            .collect::<Result<Vec<String>, _>>()?;
        let mut s = conn.prepare(
            "SELECT resource_type, resource_id FROM grants WHERE group_name = ? ORDER BY 1, 2",
        )?;
        let grants = s
            .query_map([&name], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<Result<Vec<(String, String)>, _>>()?;
        out.push(GroupInfo {
            name,
            members,
            grants,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn db() -> (tempfile::TempDir, crate::db::Db) {
        let tmp = tempfile::tempdir().unwrap();
        let db = crate::db::Db::open(&tmp.path().join("system.duckdb")).unwrap();
        (tmp, db)
    }

    #[test]
    fn tokens_authenticate_until_revoked_and_only_hashes_are_stored() {
        let (_tmp, db) = db();
        db.blocking(|c| {
            let id = create_user(c, "ada")?;
            let (info, token) = create_token(c, &id, "laptop", None)?;
            assert!(token.starts_with(&format!("agnes_{}_", info.prefix)));
            let p = authenticate(c, &token)?.expect("valid token");
            assert_eq!(p.name, "ada");
            assert_eq!(p.groups, ["Everyone"]);
            let stored: i64 = c.query_row(
                "SELECT count(*) FROM tokens WHERE hash = ? OR prefix = ?",
                [&token, &token],
                |r| r.get(0),
            )?;
            assert_eq!(stored, 0, "the token itself is never stored");
            assert!(
                authenticate(c, &format!("{token}x"))?.is_none(),
                "a wrong secret with a right prefix"
            );
            assert!(authenticate(c, "nonsense")?.is_none());
            revoke_token(c, &info.id)?;
            assert!(authenticate(c, &token)?.is_none(), "revoked");
            let (_, expired) = create_token(c, &id, "old", Some(0))?;
            assert!(authenticate(c, &expired)?.is_none(), "expired");
            Ok(())
        })
        .unwrap();
    }

    #[test]
    fn grants_reach_members_only() {
        let (_tmp, db) = db();
        db.blocking(|c| {
            let a = create_user(c, "ana")?;
            let b = create_user(c, "bob")?;
            create_group(c, "finance")?;
            add_member(c, "finance", "ana")?;
            grant(c, "finance", "table", "orders")?;
            grant(c, "finance", "source", "crm")?;
            let pa = principal(c, &a, "ana")?;
            let pb = principal(c, &b, "bob")?;
            assert!(pa.can_read("orders", "demo") && pa.can_read("contacts", "crm"));
            assert!(!pa.can_read("customers", "demo"));
            assert!(!pb.can_read("orders", "demo"));
            assert!(matches!(
                grant(c, "finance", "table", "../x"),
                Err(ApiError::BadRequest(_))
            ));
            assert!(matches!(
                grant(c, "finance", "bucket", "x"),
                Err(ApiError::BadRequest(_))
            ));
            assert!(matches!(
                grant(c, "nobody", "table", "x"),
                Err(ApiError::NotFound(_))
            ));
            Ok(())
        })
        .unwrap();
    }
}
