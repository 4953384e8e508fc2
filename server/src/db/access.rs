//! Users, personal access tokens, groups, members and grants.
//!
//! A token is `agnes_<prefix>_<secret>`: 8 hex characters of prefix (stored, shown in
//! listings) and 40 of secret. Only the sha256 of the whole token is stored.

use sha2::{Digest, Sha256};

use super::sql::{Row, Sql, p};
use super::{now, stamp};
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
pub fn create_user(conn: &dyn Sql, name: &str) -> ApiResult<String> {
    if name.is_empty() || name.len() > 100 || name.chars().any(char::is_control) {
        return Err(ApiError::BadRequest(
            "user name must be 1-100 characters without control characters".into(),
        ));
    }
    let exists: i64 = conn.value("SELECT count(*) FROM users WHERE name = ?", p![name])?;
    if exists > 0 {
        return Err(ApiError::Conflict(format!("user `{name}` exists")));
    }
    let id = format!("u_{}", random_hex(8)?);
    conn.execute(
        "INSERT INTO users (id, name, created_at) VALUES (?, ?, CAST(? AS TIMESTAMP))",
        p![&id, name, now()],
    )?;
    conn.execute(
        "INSERT INTO members VALUES ('Everyone', ?) ON CONFLICT DO NOTHING",
        p![&id],
    )?;
    Ok(id)
}

pub fn user_id(conn: &dyn Sql, name: &str) -> ApiResult<String> {
    conn.row("SELECT id FROM users WHERE name = ?", p![name])?
        .ok_or_else(|| ApiError::NotFound(format!("no user `{name}`")))?
        .get(0)
}

pub fn count_users(conn: &dyn Sql) -> ApiResult<i64> {
    conn.value("SELECT count(*) FROM users", p![])
}

/// Issues a token for `user_id`; returns its metadata and the token itself (shown once).
pub fn create_token(
    conn: &dyn Sql,
    user_id: &str,
    name: &str,
    expires_in_days: Option<u32>,
) -> ApiResult<(TokenInfo, String)> {
    let prefix = random_hex(4)?;
    let token = format!("agnes_{prefix}_{}", random_hex(20)?);
    let id = format!("t_{}", random_hex(8)?);
    let created = now();
    let expires = expires_in_days.map(|d| stamp(chrono::Duration::days(d.into())));
    conn.execute(
        "INSERT INTO tokens VALUES (?, ?, ?, ?, ?, CAST(? AS TIMESTAMP), CAST(? AS TIMESTAMP), NULL, NULL)",
        p![&id, user_id, name, &prefix, hash(&token), &created, &expires],
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
pub fn authenticate(conn: &dyn Sql, token: &str) -> ApiResult<Option<Principal>> {
    let Some(prefix) = token
        .strip_prefix("agnes_")
        .and_then(|t| t.split('_').next())
    else {
        return Ok(None);
    };
    let at = now();
    let Some(row) = conn.row(
        "SELECT t.id, t.hash, u.id, u.name, \
         coalesce(t.last_used_at < CAST(? AS TIMESTAMP), true) FROM tokens t JOIN users u ON u.id = t.user_id \
         WHERE t.prefix = ? AND t.revoked_at IS NULL AND (t.expires_at IS NULL OR t.expires_at > CAST(? AS TIMESTAMP)) \
         AND u.id NOT IN (SELECT user_id FROM user_status)",
        p![stamp(chrono::Duration::seconds(-60)), prefix, &at],
    )?
    else {
        return Ok(None);
    };
    let (token_id, stored, user_id, user_name, stale): (String, String, String, String, bool) = (
        row.get(0)?,
        row.get(1)?,
        row.get(2)?,
        row.get(3)?,
        row.get(4)?,
    );
    if stored != hash(token) {
        return Ok(None);
    }
    // a write per request would serialise every request on the database: once a minute
    if stale {
        conn.execute(
            "UPDATE tokens SET last_used_at = CAST(? AS TIMESTAMP) WHERE id = ?",
            p![&at, &token_id],
        )?;
    }
    principal(conn, &user_id, &user_name).map(Some)
}

pub(crate) fn principal(conn: &dyn Sql, id: &str, name: &str) -> ApiResult<Principal> {
    let groups = conn.column(
        "SELECT group_name FROM members WHERE user_id = ? ORDER BY group_name",
        p![id],
    )?;
    let grants = conn
        .query(
            "SELECT DISTINCT g.resource_type, g.resource_id FROM grants g JOIN members m ON m.group_name = g.group_name \
             WHERE m.user_id = ? ORDER BY 1, 2",
            p![id],
        )?
        .iter()
        .map(|r| Ok((r.get(0)?, r.get(1)?)))
        .collect::<ApiResult<Vec<(String, String)>>>()?;
    Ok(Principal {
        id: id.into(),
        name: name.into(),
        groups,
        grants,
    })
}

/// The tokens of one user, or of every user (with the owner's name).
pub fn list_tokens(conn: &dyn Sql, user_id: Option<&str>) -> ApiResult<Vec<TokenInfo>> {
    let all = user_id.is_none();
    conn.query(
        "SELECT t.id, t.name, t.prefix, CAST(t.created_at AS VARCHAR), CAST(t.expires_at AS VARCHAR), \
         CAST(t.revoked_at AS VARCHAR), CAST(t.last_used_at AS VARCHAR), u.name FROM tokens t JOIN users u ON u.id = t.user_id \
         WHERE ?::VARCHAR IS NULL OR t.user_id = ? ORDER BY t.created_at, t.id",
        p![user_id, user_id],
    )?
    .iter()
    .map(|r| {
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
    })
    .collect()
}

/// Revokes a token: its owner may, and an admin may revoke any.
pub fn revoke_token(conn: &dyn Sql, token_id: &str, by: &Principal) -> ApiResult<()> {
    let owner: String = conn
        .row("SELECT user_id FROM tokens WHERE id = ?", p![token_id])?
        .ok_or_else(|| ApiError::NotFound(format!("no token `{token_id}`")))?
        .get(0)?;
    if owner != by.id && !by.is_admin() {
        return Err(ApiError::Forbidden(
            "you may only revoke your own tokens".into(),
        ));
    }
    conn.execute(
        "UPDATE tokens SET revoked_at = CAST(? AS TIMESTAMP) WHERE id = ? AND revoked_at IS NULL",
        p![now(), token_id],
    )?;
    Ok(())
}

/// Every user with their groups, in creation order.
pub fn list_users(conn: &dyn Sql) -> ApiResult<Vec<UserInfo>> {
    // group names are [A-Za-z0-9 _-]: a comma separates them
    conn.query(
        "SELECT u.id, u.name, CAST(u.created_at AS VARCHAR), CAST(s.disabled_at AS VARCHAR), \
         string_agg(m.group_name, ',' ORDER BY m.group_name) \
         FROM users u LEFT JOIN user_status s ON s.user_id = u.id LEFT JOIN members m ON m.user_id = u.id \
         GROUP BY u.id, u.name, u.created_at, s.disabled_at ORDER BY u.created_at, u.name",
        p![],
    )?
    .iter()
    .map(|r: &Row| {
        let groups: Option<String> = r.get(4)?;
        Ok(UserInfo {
            id: r.get(0)?,
            name: r.get(1)?,
            created_at: r.get(2)?,
            disabled_at: r.get(3)?,
            groups: groups
                .map(|g| g.split(',').map(str::to_owned).collect())
                .unwrap_or_default(),
        })
    })
    .collect()
}

/// Disables a user: their tokens stop authenticating at once (the caller clears the auth
/// cache). Disabling twice is a no-op.
pub fn disable_user(conn: &dyn Sql, name: &str) -> ApiResult<()> {
    let id = user_id(conn, name)?;
    conn.execute(
        "INSERT INTO user_status VALUES (?, CAST(? AS TIMESTAMP)) ON CONFLICT DO NOTHING",
        p![&id, now()],
    )?;
    Ok(())
}

pub fn create_group(conn: &dyn Sql, name: &str) -> ApiResult<()> {
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
        "INSERT INTO groups VALUES (?, CAST(? AS TIMESTAMP)) ON CONFLICT DO NOTHING",
        p![name, now()],
    )?;
    if n == 0 {
        return Err(ApiError::Conflict(format!("group `{name}` exists")));
    }
    Ok(())
}

fn require_group(conn: &dyn Sql, name: &str) -> ApiResult<()> {
    let n: i64 = conn.value("SELECT count(*) FROM groups WHERE name = ?", p![name])?;
    if n == 0 {
        Err(ApiError::NotFound(format!("no group `{name}`")))
    } else {
        Ok(())
    }
}

pub fn add_member(conn: &dyn Sql, group: &str, user_name: &str) -> ApiResult<()> {
    require_group(conn, group)?;
    let id = user_id(conn, user_name)?;
    conn.execute(
        "INSERT INTO members VALUES (?, ?) ON CONFLICT DO NOTHING",
        p![group, &id],
    )?;
    Ok(())
}

pub fn remove_member(conn: &dyn Sql, group: &str, user_name: &str) -> ApiResult<()> {
    require_group(conn, group)?;
    let id = user_id(conn, user_name)?;
    conn.execute(
        "DELETE FROM members WHERE group_name = ? AND user_id = ?",
        p![group, &id],
    )?;
    Ok(())
}

pub fn grant(conn: &dyn Sql, group: &str, resource_type: &str, resource_id: &str) -> ApiResult<()> {
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
        "INSERT INTO grants VALUES (?, ?, ?, CAST(? AS TIMESTAMP)) ON CONFLICT DO NOTHING",
        p![group, resource_type, resource_id, now()],
    )?;
    Ok(())
}

pub fn revoke_grant(
    conn: &dyn Sql,
    group: &str,
    resource_type: &str,
    resource_id: &str,
) -> ApiResult<()> {
    let n = conn.execute(
        "DELETE FROM grants WHERE group_name = ? AND resource_type = ? AND resource_id = ?",
        p![group, resource_type, resource_id],
    )?;
    if n == 0 {
        return Err(ApiError::NotFound(format!(
            "no grant of {resource_type} `{resource_id}` to `{group}`"
        )));
    }
    Ok(())
}

pub fn list_groups(conn: &dyn Sql) -> ApiResult<Vec<GroupInfo>> {
    let names: Vec<String> = conn.column("SELECT name FROM groups ORDER BY name", p![])?;
    let mut out = Vec::new();
    for name in names {
        let members = conn.column(
            "SELECT u.name FROM members m JOIN users u ON u.id = m.user_id WHERE m.group_name = ? ORDER BY 1",
            p![&name],
        )?;
        let grants = conn
            .query(
                "SELECT resource_type, resource_id FROM grants WHERE group_name = ? ORDER BY 1, 2",
                p![&name],
            )?
            .iter()
            .map(|r| Ok((r.get(0)?, r.get(1)?)))
            .collect::<ApiResult<Vec<(String, String)>>>()?;
        out.push(GroupInfo {
            name,
            members,
            grants,
        });
    }
    Ok(out)
}

/// Deletes a group with its memberships and grants. `Admin` and `Everyone` stay.
pub fn delete_group(conn: &dyn Sql, name: &str) -> ApiResult<()> {
    if name == "Admin" || name == "Everyone" {
        return Err(ApiError::BadRequest(format!(
            "group `{name}` is built in and cannot be removed"
        )));
    }
    require_group(conn, name)?;
    conn.execute("DELETE FROM grants WHERE group_name = ?", p![name])?;
    conn.execute("DELETE FROM members WHERE group_name = ?", p![name])?;
    conn.execute("DELETE FROM groups WHERE name = ?", p![name])?;
    Ok(())
}

/// Every grant, with whether it points at a registered source or table.
pub fn list_grants(conn: &dyn Sql) -> ApiResult<Vec<GrantInfo>> {
    conn.query(
        "SELECT g.group_name, g.resource_type, g.resource_id, CAST(g.created_at AS VARCHAR), \
         g.resource_id <> '*' AND CASE g.resource_type \
           WHEN 'table' THEN g.resource_id NOT IN (SELECT name FROM source_tables) \
           WHEN 'source' THEN g.resource_id NOT IN (SELECT name FROM sources) ELSE true END \
         FROM grants g ORDER BY 1, 2, 3",
        p![],
    )?
    .iter()
    .map(|r| {
        Ok(GrantInfo {
            group: r.get(0)?,
            resource_type: r.get(1)?,
            resource_id: r.get(2)?,
            created_at: r.get(3)?,
            dangling: r.get(4)?,
        })
    })
    .collect()
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
            let stored: i64 = c.value(
                "SELECT count(*) FROM tokens WHERE hash = ? OR prefix = ?",
                p![&token, &token],
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
