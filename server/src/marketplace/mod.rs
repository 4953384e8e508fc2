//! Claude Code plugin marketplaces: admins register git marketplaces; the server fetches
//! them ([`sync`]), keeps every plugin's files as a content-addressed bundle
//! ([`bundle`]), has each new bundle reviewed by the uploaded reviewer components
//! ([`review`]) and re-serves, per caller, the approved plugins granted to one of their
//! groups as a zip and as a read-only git repository ([`serve`]).
//!
//! Serving never follows the upstream directly: what an analyst gets is the bundle an
//! administrator (or a review) approved, rebuilt deterministically, so one view has one
//! ETag and one commit id for every user who has it.

pub mod bundle;
pub mod review;
pub mod serve;
pub mod sync;

use agnes_runtime::SecretGrant;
use serde::{Deserialize, Serialize};

use crate::error::{ApiError, ApiResult};
use crate::store::Principal;

/// What an admin registers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MarketplaceSpec {
    /// `[a-z][a-z0-9_]*`: the prefix of its plugins' served names (`<name>-<plugin>`) and of
    /// grants (`marketplace_plugin` `<name>/<plugin>`).
    pub name: String,
    /// The git repository: `https://…` (or `http://…`); `file://…` only when the server's
    /// `[marketplace] allow_file_urls` is set.
    pub url: String,
    /// A branch, tag or full commit id; absent: the remote's default branch.
    #[serde(default, rename = "ref", skip_serializing_if = "Option::is_none")]
    pub git_ref: Option<String>,
    /// A token for a private repository, as a secret reference (`env` or `file`), sent as
    /// HTTP Basic credentials to the repository's host only. Never stored or logged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<SecretGrant>,
    /// Allow a loopback or private address for the repository's host (off: such
    /// addresses are refused after resolution, as for connectors' egress).
    #[serde(default)]
    pub allow_private: bool,
    /// How often it is fetched (`every 30m`, `every 6h`, `every 1d`); absent: only on demand.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule: Option<String>,
}

/// A registered marketplace and its last sync.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Marketplace {
    #[serde(flatten)]
    pub spec: MarketplaceSpec,
    pub created_at: String,
    pub created_by: String,
    #[serde(default)]
    pub synced_at: Option<String>,
    /// The commit the last successful sync read.
    #[serde(default)]
    pub commit: Option<String>,
    /// Why the last sync failed (the previous plugins keep being served).
    #[serde(default)]
    pub error: Option<String>,
    #[serde(default)]
    pub last_attempt_at: Option<String>,
}

/// The states of a plugin's newest synced bundle.
pub mod status {
    /// Approved (by the reviewers' `allow` or by an admin): this bundle is served.
    pub const APPROVED: &str = "approved";
    /// Flagged, unreviewed or a failed review: held for an admin; the previously approved
    /// bundle (if any) keeps being served.
    pub const PENDING: &str = "pending";
    /// A reviewer denied it: held for an admin, who may still approve it.
    pub const DENIED: &str = "denied";
    /// An admin refused this bundle.
    pub const REJECTED: &str = "rejected";
    /// Structurally refused at sync (a symlink, a submodule, an escaping path, over the
    /// size limits): it cannot be approved.
    pub const REFUSED: &str = "refused";
}

/// One plugin of a marketplace.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Plugin {
    pub marketplace: String,
    pub name: String,
    #[serde(default)]
    pub version: Option<String>,
    #[serde(default)]
    pub description: Option<String>,
    /// Its directory in the marketplace repository.
    pub path: String,
    /// Digest of the newest synced bundle (`None` when refused before one was built).
    #[serde(default)]
    pub bundle: Option<String>,
    /// See [`status`].
    pub status: String,
    /// Why it was refused, or the combined review outcome in words.
    #[serde(default)]
    pub reason: Option<String>,
    /// Combined verdict of the reviewers over `bundle` (`allow`, `flag`, `deny`), or
    /// `unreviewed` when no reviewer is configured.
    #[serde(default)]
    pub verdict: Option<String>,
    /// The bundle served (approved), and its version.
    #[serde(default)]
    pub approved: Option<String>,
    #[serde(default)]
    pub approved_version: Option<String>,
    #[serde(default)]
    pub decided_at: Option<String>,
    #[serde(default)]
    pub decided_by: Option<String>,
    /// Disabled by an admin: not served, whatever was approved.
    #[serde(default)]
    pub disabled: bool,
    pub synced_at: String,
}

impl Plugin {
    /// Its grant id and served-name suffix: `<marketplace>/<name>`.
    pub fn id(&self) -> String {
        format!("{}/{}", self.marketplace, self.name)
    }
    /// Its directory and entry name in what is served: `<marketplace>-<name>`.
    pub fn served_name(&self) -> String {
        format!("{}-{}", self.marketplace, self.name)
    }
}

/// One reviewer's review of one bundle.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PluginReview {
    pub bundle: String,
    /// `name@version` of the reviewer.
    pub reviewer: String,
    pub reviewer_digest: String,
    pub verdict: String,
    pub findings: Vec<agnes_runtime::hook::Finding>,
    #[serde(default)]
    pub failure: Option<String>,
    pub millis: u64,
    pub reviewed_at: String,
}

/// An uploaded reviewer component.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReviewerInfo {
    pub name: String,
    pub version: String,
    pub digest: String,
    pub key_id: String,
    pub imports: Vec<String>,
    pub uploaded_at: String,
    pub uploaded_by: String,
    /// Only the newest upload of a name is enabled; every enabled reviewer reviews every
    /// bundle.
    pub enabled: bool,
}

/// `[a-z][a-z0-9_]*`, at most 63 characters.
pub fn validate_marketplace_name(name: &str) -> ApiResult<()> {
    agnes_runtime::names::validate_name("marketplace", name)
        .map_err(|e| ApiError::BadRequest(e.to_string()))
}

/// A plugin name from `marketplace.json`: `[A-Za-z0-9][A-Za-z0-9._-]*`, at most 100.
pub fn validate_plugin_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 100
        && name.as_bytes()[0].is_ascii_alphanumeric()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "plugin name `{}` must be 1-100 characters of [A-Za-z0-9._-], starting with a letter or digit",
            agnes_runtime::names::shown(name)
        ))
    }
}

/// A `marketplace_plugin` grant id: `*`, `<marketplace>/*` or `<marketplace>/<plugin>`.
pub fn validate_grant_id(id: &str) -> ApiResult<()> {
    if id == "*" {
        return Ok(());
    }
    let (mp, plugin) = id.split_once('/').ok_or_else(|| {
        ApiError::BadRequest(format!(
            "a marketplace_plugin grant is `<marketplace>/<plugin>`, `<marketplace>/*` or `*`, got `{}`",
            agnes_runtime::names::shown(id)
        ))
    })?;
    validate_marketplace_name(mp)?;
    if plugin != "*" {
        validate_plugin_name(plugin).map_err(ApiError::BadRequest)?;
    }
    Ok(())
}

/// Whether `principal` may install `plugin`: a `marketplace_plugin` grant to one of their
/// groups. Admins get no exception: what an admin's agent installs is granted like anyone's.
pub fn granted(principal: &Principal, plugin: &Plugin) -> bool {
    principal.grants.iter().any(|(t, id)| {
        t == "marketplace_plugin"
            && (id == "*"
                || id.split_once('/').is_some_and(|(m, p)| {
                    m == plugin.marketplace && (p == "*" || p == plugin.name)
                }))
    })
}
