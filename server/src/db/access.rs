//! Users, personal access tokens, groups, members and grants.
//!
//! A token is `agnes_<prefix>_<secret>`: 8 hex characters of prefix (stored, shown in
//! listings) and 40 of secret. Only the sha256 of the whole token is stored.

use sha2::{Digest, Sha256};

use super::now;
use crate::error::{ApiError, ApiResult};
use crate::store::{GrantInfo, GroupInfo, Principal, RESOURCE_TYPES, TokenInfo, UserInfo};

pub(crate) fn random_hex(bytes: usize) -> ApiResult<String> {
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
        "INSERT INTO users (id, name, created_at) VALUES (?, ?, CAST(? AS TIMESTAMP))",
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
        user: None,
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
         WHERE t.prefix = ? AND t.revoked_at IS NULL AND (t.expires_at IS NULL OR t.expires_at > now()) \
         AND u.id NOT IN (SELECT user_id FROM user_status)",
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

pub(crate) fn principal(conn: &duckdb::Connection, id: &str, name: &str) -> ApiResult<Principal> {
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

/// The tokens of one user, or of every user (with the owner's name).
pub fn list_tokens(conn: &duckdb::Connection, user_id: Option<&str>) -> ApiResult<Vec<TokenInfo>> {
    let mut stmt = conn.prepare(
        "SELECT t.id, t.name, t.prefix, CAST(t.created_at AS VARCHAR), CAST(t.expires_at AS VARCHAR), \
         CAST(t.revoked_at AS VARCHAR), CAST(t.last_used_at AS VARCHAR), u.name FROM tokens t JOIN users u ON u.id = t.user_id \
         WHERE ?::VARCHAR IS NULL OR t.user_id = ? ORDER BY t.created_at, t.id",
    )?;
    let all = user_id.is_none();
    let rows = stmt.query_map(duckdb::params![user_id, user_id], |r| {
        Ok(TokenInfo {
            id: r.get(0)?,
            name: r.get(1)?,
            prefix: r.get(2)?,
            created_at: r.get(3)?,
            expires_at: r.get(4)?,
            revoked_at: r.get(5)?,
            last_used_at: r.get(6)?,
            user: if all { Some(r.get(7)?) } else { None },
        })
    })?;
    Ok(rows.collect::<Result<Vec<_>, _>>()?)
}

/// Revokes a token: its owner may, and an admin may revoke any.
pub fn revoke_token(conn: &duckdb::Connection, token_id: &str, by: &Principal) -> ApiResult<()> {
    let owner: String = conn
        .query_row("SELECT user_id FROM tokens WHERE id = ?", [token_id], |r| {
            r.get(0)
        })
        .map_err(|_| ApiError::NotFound(format!("no token `{token_id}`")))?;
    if owner != by.id && !by.is_admin() {
        return Err(ApiError::Forbidden(
            "you may only revoke your own tokens".into(),
        ));
    }
    conn.execute(
        "UPDATE tokens SET revoked_at = CAST(? AS TIMESTAMP) WHERE id = ? AND revoked_at IS NULL",
        duckdb::params![now(), token_id],
    )?;
    Ok(())
}

/// Every user with their groups, in creation order.
pub fn list_users(conn: &duckdb::Connection) -> ApiResult<Vec<UserInfo>> {
    let mut stmt = conn.prepare(
        "SELECT u.id, u.name, CAST(u.created_at AS VARCHAR), CAST(s.disabled_at AS VARCHAR), \
         coalesce(list(m.group_name ORDER BY m.group_name) FILTER (WHERE m.group_name IS NOT NULL), []) \
         FROM users u LEFT JOIN user_status s ON s.user_id = u.id LEFT JOIN members m ON m.user_id = u.id \
         GROUP BY ALL ORDER BY 3, 2",
    )?;
    let rows = stmt.query_map([], |r| {
        let groups: duckdb::types::Value = r.get(4)?;
        Ok(UserInfo {
            id: r.get(0)?,
            name: r.get(1)?,
            created_at: r.get(2)?,
            disabled_at: r.get(3)?,
            groups: text_list(groups),
        })
    })?;
    Ok(rows.collect::<Result<Vec<_>, _>>()?)
}

fn text_list(v: duckdb::types::Value) -> Vec<String> {
    match v {
        duckdb::types::Value::List(items) => items
            .into_iter()
            .filter_map(|i| match i {
                duckdb::types::Value::Text(t) => Some(t),
                _ => None,
            })
            .collect(),
        _ => vec![],
    }
}

/// Disables a user: their tokens stop authenticating at once (the caller clears the auth
/// cache). Disabling twice is a no-op.
pub fn disable_user(conn: &duckdb::Connection, name: &str) -> ApiResult<()> {
    let id = user_id(conn, name)?;
    conn.execute(
        "INSERT OR IGNORE INTO user_status VALUES (?, CAST(? AS TIMESTAMP))",
        duckdb::params![id, now()],
    )?;
    Ok(())
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
    if resource_type == "marketplace_plugin" {
        crate::marketplace::validate_grant_id(resource_id)?;
    } else if resource_id != "*" {
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

/// Deletes a group with its memberships and grants. `Admin` and `Everyone` stay.
pub fn delete_group(conn: &duckdb::Connection, name: &str) -> ApiResult<()> {
    if name == "Admin" || name == "Everyone" {
        return Err(ApiError::BadRequest(format!(
            "group `{name}` is built in and cannot be removed"
        )));
    }
    require_group(conn, name)?;
    conn.execute("DELETE FROM grants WHERE group_name = ?", [name])?;
    conn.execute("DELETE FROM members WHERE group_name = ?", [name])?;
    conn.execute("DELETE FROM groups WHERE name = ?", [name])?;
    Ok(())
}

/// Every grant, with whether it points at a registered source or table.
pub fn list_grants(conn: &duckdb::Connection) -> ApiResult<Vec<GrantInfo>> {
    let mut stmt = conn.prepare(
        "SELECT g.group_name, g.resource_type, g.resource_id, CAST(g.created_at AS VARCHAR), \
         g.resource_id <> '*' AND CASE g.resource_type \
           WHEN 'table' THEN g.resource_id NOT IN (SELECT name FROM source_tables) \
           WHEN 'source' THEN g.resource_id NOT IN (SELECT name FROM sources) ELSE true END \
         FROM grants g ORDER BY 1, 2, 3",
    )?;
    let rows = stmt.query_map([], |r| {
        Ok(GrantInfo {
            group: r.get(0)?,
            resource_type: r.get(1)?,
            resource_id: r.get(2)?,
            created_at: r.get(3)?,
            dangling: r.get(4)?,
        })
    })?;
    Ok(rows.collect::<Result<Vec<_>, _>>()?)
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
            revoke_token(c, &info.id, &p)?;
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
