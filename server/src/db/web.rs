//! Browser sign-in: password hashes (argon2id, PHC strings) and sessions. A session id is
//! 32 random bytes handed to the browser once as a cookie; only its sha256 is stored, with
//! the session's CSRF token, expiry and the client it was made from.

use super::sql::{Sql, p};
use super::{now, stamp};
use crate::error::{ApiError, ApiResult};
use crate::store::{Principal, WebSession};

/// Stores `hash` (a PHC string) as user `name`'s password.
pub fn set_password(conn: &dyn Sql, name: &str, hash: &str) -> ApiResult<()> {
    let changed = conn.execute(
        "UPDATE users SET password_hash = ? WHERE name = ?",
        p![hash, name],
    )?;
    if changed == 0 {
        return Err(ApiError::NotFound(format!("no user `{name}`")));
    }
    // a new password ends the user's browser sessions
    conn.execute(
        "UPDATE web_sessions SET revoked_at = CAST(? AS TIMESTAMP) WHERE revoked_at IS NULL \
         AND user_id = (SELECT id FROM users WHERE name = ?)",
        p![now(), name],
    )?;
    Ok(())
}

/// `(user id, password hash)` of an enabled user with a password.
pub fn password_of(conn: &dyn Sql, name: &str) -> ApiResult<Option<(String, String)>> {
    conn.row(
        "SELECT id, password_hash FROM users WHERE name = ? AND password_hash IS NOT NULL \
         AND id NOT IN (SELECT user_id FROM user_status)",
        p![name],
    )?
    .map(|r| Ok((r.get(0)?, r.get(1)?)))
    .transpose()
}

pub fn create_session(
    conn: &dyn Sql,
    id_hash: &str,
    user_id: &str,
    csrf: &str,
    ttl_secs: u64,
    client: &str,
) -> ApiResult<()> {
    // sessions ended a month ago are history nobody lists: drop them as new ones start
    let month_ago = stamp(-chrono::Duration::days(30));
    conn.execute(
        "DELETE FROM web_sessions WHERE expires_at < CAST(? AS TIMESTAMP) \
         OR revoked_at < CAST(? AS TIMESTAMP)",
        p![&month_ago, &month_ago],
    )?;
    let ttl = chrono::Duration::seconds(i64::try_from(ttl_secs).unwrap_or(i64::MAX / 1000));
    conn.execute(
        "INSERT INTO web_sessions VALUES (?, ?, ?, CAST(? AS TIMESTAMP), CAST(? AS TIMESTAMP), NULL, ?)",
        p![id_hash, user_id, csrf, now(), stamp(ttl), client],
    )?;
    Ok(())
}

/// The signed-in user and the session's CSRF token, for a live session of an enabled user.
pub fn session(conn: &dyn Sql, id_hash: &str) -> ApiResult<Option<(Principal, String)>> {
    let Some(row) = conn.row(
        "SELECT u.id, u.name, s.csrf FROM web_sessions s JOIN users u ON u.id = s.user_id \
         WHERE s.id_hash = ? AND s.revoked_at IS NULL AND s.expires_at > CAST(? AS TIMESTAMP) \
         AND u.id NOT IN (SELECT user_id FROM user_status)",
        p![id_hash, now()],
    )?
    else {
        return Ok(None);
    };
    let (id, name, csrf): (String, String, String) = (row.get(0)?, row.get(1)?, row.get(2)?);
    Ok(Some((super::access::principal(conn, &id, &name)?, csrf)))
}

/// Live sessions, newest first; `id` is the first 12 characters of the stored hash.
pub fn list_sessions(conn: &dyn Sql) -> ApiResult<Vec<WebSession>> {
    conn.query(
        "SELECT left(s.id_hash, 12), u.name, CAST(s.created_at AS VARCHAR), \
         CAST(s.expires_at AS VARCHAR), s.client FROM web_sessions s JOIN users u ON u.id = s.user_id \
         WHERE s.revoked_at IS NULL AND s.expires_at > CAST(? AS TIMESTAMP) ORDER BY s.created_at DESC",
        p![now()],
    )?
    .iter()
    .map(|r| {
        Ok(WebSession {
            id: r.get(0)?,
            user: r.get(1)?,
            created_at: r.get(2)?,
            expires_at: r.get(3)?,
            client: r.get(4)?,
        })
    })
    .collect()
}

/// Revokes the sessions whose stored hash starts with `id` (a listing's id, or a full
/// hash); returns how many.
pub fn revoke_session(conn: &dyn Sql, id: &str) -> ApiResult<usize> {
    if id.len() < 12 || !id.chars().all(|c| c.is_ascii_hexdigit()) {
        return Err(ApiError::BadRequest(
            "a session id is at least 12 hex characters".into(),
        ));
    }
    conn.execute(
        "UPDATE web_sessions SET revoked_at = CAST(? AS TIMESTAMP) \
         WHERE starts_with(id_hash, ?) AND revoked_at IS NULL",
        p![now(), id],
    )
}
