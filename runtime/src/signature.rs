//! Signed components: an ed25519 signature over the sha256 of the component bytes and the
//! sha256 of its `connector.toml`, checked against operator-trusted keys **before** the
//! component is compiled.
//!
//! Files:
//! - a key pair from [`keygen`]: `<name>.key` (hex secret, mode 0600) and `<name>.pub` (hex
//!   public key); the key id is the first 16 hex digits of sha256(public key);
//! - a trusted-keys directory: one `<anything>.pub` per trusted signer;
//! - a signature, `<component>.sig` by default: [`SignatureFile`] as JSON.
//!
//! The signed message is `agnes-connector-signature-v1\n<component sha256>\n<manifest sha256>\n`,
//! so a signature binds the exact component to the exact capabilities it requests.
//! (Why a detached file rather than a wasm custom section, as `wasmsign2` does: the
//! signature must cover `connector.toml`, which is not part of the module; a detached file
//! also keeps the component byte-identical to what cargo built. Documented in
//! docs/security.md.)

use std::collections::BTreeMap;
use std::path::Path;

use ed25519_dalek::{Signer, SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::Error;

const DOMAIN: &str = "agnes-connector-signature-v1";

/// A detached signature.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignatureFile {
    pub algorithm: String,
    pub key_id: String,
    pub component_sha256: String,
    pub manifest_sha256: String,
    /// hex, 64 bytes
    pub signature: String,
}

/// Who signed what, after a successful [`verify`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    pub key_id: String,
    pub component_sha256: String,
    pub manifest_sha256: String,
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

fn message(component_sha256: &str, manifest_sha256: &str) -> String {
    format!("{DOMAIN}\n{component_sha256}\n{manifest_sha256}\n")
}

/// The key id of a public key: first 16 hex digits of its sha256.
pub fn key_id(public: &VerifyingKey) -> String {
    sha256_hex(public.as_bytes())[..16].to_string()
}

fn bad(reason: impl Into<String>) -> Error {
    Error::Signature {
        reason: reason.into(),
    }
}

/// A new key pair: `(secret hex, public hex, key id)`.
pub fn keygen() -> Result<(String, String, String), Error> {
    let mut secret = [0u8; 32];
    getrandom::fill(&mut secret).map_err(|e| bad(format!("no randomness: {e}")))?;
    let key = SigningKey::from_bytes(&secret);
    let public = key.verifying_key();
    Ok((
        hex::encode(secret),
        hex::encode(public.as_bytes()),
        key_id(&public),
    ))
}

fn parse_hex32(text: &str, what: &str) -> Result<[u8; 32], Error> {
    let bytes = hex::decode(text.trim()).map_err(|e| bad(format!("{what} is not hex: {e}")))?;
    bytes
        .try_into()
        .map_err(|_| bad(format!("{what} must be 32 bytes")))
}

/// Signs a component and its manifest with a hex secret key.
pub fn sign(component: &[u8], manifest: &[u8], secret_hex: &str) -> Result<SignatureFile, Error> {
    let key = SigningKey::from_bytes(&parse_hex32(secret_hex, "the secret key")?);
    let (c, m) = (sha256_hex(component), sha256_hex(manifest));
    let sig = key.sign(message(&c, &m).as_bytes());
    Ok(SignatureFile {
        algorithm: "ed25519".into(),
        key_id: key_id(&key.verifying_key()),
        component_sha256: c,
        manifest_sha256: m,
        signature: hex::encode(sig.to_bytes()),
    })
}

/// The operator's trusted signers, by key id.
#[derive(Debug, Clone, Default)]
pub struct TrustedKeys {
    keys: BTreeMap<String, VerifyingKey>,
}

impl TrustedKeys {
    /// Reads every `*.pub` file in `dir` (hex ed25519 public keys).
    pub fn from_dir(dir: &Path) -> Result<TrustedKeys, Error> {
        let mut keys = BTreeMap::new();
        for entry in std::fs::read_dir(dir)
            .map_err(Error::io("reading trusted keys in", dir))?
            .flatten()
        {
            let path = entry.path();
            if path.extension().is_none_or(|e| e != "pub") {
                continue;
            }
            let text = std::fs::read_to_string(&path).map_err(Error::io("reading", &path))?;
            let bytes = parse_hex32(&text, &format!("trusted key {}", path.display()))?;
            let key = VerifyingKey::from_bytes(&bytes)
                .map_err(|e| bad(format!("trusted key {}: {e}", path.display())))?;
            keys.insert(key_id(&key), key);
        }
        if keys.is_empty() {
            return Err(bad(format!("no trusted keys (*.pub) in {}", dir.display())));
        }
        Ok(TrustedKeys { keys })
    }

    pub fn ids(&self) -> Vec<String> {
        self.keys.keys().cloned().collect()
    }
}

/// Checks a signature: both digests must match the bytes, the key must be trusted, the
/// signature must verify (strictly).
pub fn verify(
    component: &[u8],
    manifest: &[u8],
    sig: &SignatureFile,
    trusted: &TrustedKeys,
) -> Result<Verified, Error> {
    if sig.algorithm != "ed25519" {
        return Err(bad(format!("unsupported algorithm `{}`", sig.algorithm)));
    }
    let (c, m) = (sha256_hex(component), sha256_hex(manifest));
    if sig.component_sha256 != c {
        return Err(bad(format!(
            "the component was modified after signing (sha256 {c}, signed {})",
            sig.component_sha256
        )));
    }
    if sig.manifest_sha256 != m {
        return Err(bad(format!(
            "connector.toml was modified after signing (sha256 {m}, signed {})",
            sig.manifest_sha256
        )));
    }
    let key = trusted.keys.get(&sig.key_id).ok_or_else(|| {
        bad(format!("signed by key {}, which is not trusted (trusted: {}); add its .pub to the trusted keys", sig.key_id, trusted.ids().join(", ")))
    })?;
    let bytes: [u8; 64] = hex::decode(&sig.signature)
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| bad("the signature is not 64 hex-encoded bytes"))?;
    key.verify_strict(
        message(&c, &m).as_bytes(),
        &ed25519_dalek::Signature::from_bytes(&bytes),
    )
    .map_err(|_| bad("the signature does not verify"))?;
    Ok(Verified {
        key_id: sig.key_id.clone(),
        component_sha256: c,
        manifest_sha256: m,
    })
}

/// Where a component's signature lives unless told otherwise: `<component>.sig`.
pub fn default_path(component: &Path) -> std::path::PathBuf {
    let mut p = component.as_os_str().to_owned();
    p.push(".sig");
    p.into()
}

/// Reads and parses a signature file.
pub fn read_signature(path: &Path) -> Result<SignatureFile, Error> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        bad(format!(
            "no signature at {} ({e}); sign it with `agnes connector sign`",
            path.display()
        ))
    })?;
    serde_json::from_str(&text).map_err(|e| bad(format!("{}: {e}", path.display())))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trusted(dir: &Path, public: &str) -> TrustedKeys {
        std::fs::write(dir.join("ops.pub"), public).unwrap();
        TrustedKeys::from_dir(dir).unwrap()
    }

    #[test]
    fn a_signature_binds_component_and_manifest_to_a_trusted_key() {
        let tmp = tempfile::tempdir().unwrap();
        let (secret, public, id) = keygen().unwrap();
        let keys = trusted(tmp.path(), &public);
        let sig = sign(b"\0asm component", b"name = \"csv\"\n", &secret).unwrap();
        assert_eq!(sig.key_id, id);
        let ok = verify(b"\0asm component", b"name = \"csv\"\n", &sig, &keys).unwrap();
        assert_eq!(ok.key_id, id);

        let err = verify(b"\0asm componenT", b"name = \"csv\"\n", &sig, &keys)
            .unwrap_err()
            .to_string();
        assert!(err.contains("component was modified"), "{err}");
        let err = verify(
            b"\0asm component",
            b"name = \"csv\"\n[requests]\n",
            &sig,
            &keys,
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("connector.toml was modified"), "{err}");

        let (other_secret, _, _) = keygen().unwrap();
        let foreign = sign(b"\0asm component", b"name = \"csv\"\n", &other_secret).unwrap();
        let err = verify(b"\0asm component", b"name = \"csv\"\n", &foreign, &keys)
            .unwrap_err()
            .to_string();
        assert!(err.contains("not trusted"), "{err}");

        // a forged signature under the trusted key id
        let mut forged = foreign.clone();
        forged.key_id = id.clone();
        let err = verify(b"\0asm component", b"name = \"csv\"\n", &forged, &keys)
            .unwrap_err()
            .to_string();
        assert!(err.contains("does not verify"), "{err}");
        let mut garbled = sig.clone();
        garbled.signature = "zz".into();
        assert!(verify(b"\0asm component", b"name = \"csv\"\n", &garbled, &keys).is_err());
    }

    #[test]
    fn trusted_key_dirs_must_hold_valid_keys() {
        let tmp = tempfile::tempdir().unwrap();
        assert!(
            TrustedKeys::from_dir(tmp.path())
                .unwrap_err()
                .to_string()
                .contains("no trusted keys")
        );
        std::fs::write(tmp.path().join("bad.pub"), "nothex").unwrap();
        assert!(
            TrustedKeys::from_dir(tmp.path())
                .unwrap_err()
                .to_string()
                .contains("not hex")
        );
    }
}

/// Custom sections a packaged component carries (`agnes connector package`).
pub const MANIFEST_SECTION: &str = "agnes-manifest";
pub const SIGNATURE_SECTION: &str = "agnes-signature";

fn leb128(mut n: usize, out: &mut Vec<u8>) {
    loop {
        let byte = (n & 0x7f) as u8;
        n >>= 7;
        if n == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

fn read_leb128(bytes: &[u8], at: &mut usize) -> Option<usize> {
    let mut n: usize = 0;
    for shift in (0..35).step_by(7) {
        let b = *bytes.get(*at)?;
        *at += 1;
        n |= usize::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Some(n);
        }
    }
    None
}

/// One package: the component with its `connector.toml` and signature as two custom
/// sections appended at the end. The signature still covers the component *without* them,
/// so packing changes nothing a verifier checks; [`unpack`] gives the three parts back.
pub fn pack(component: &[u8], manifest: &str, sig: &SignatureFile) -> Result<Vec<u8>, Error> {
    let (bare, _) = strip(component).ok_or_else(|| bad("not a WebAssembly binary".to_string()))?;
    let mut out = bare;
    let sig = serde_json::to_vec(sig).map_err(|e| bad(e.to_string()))?;
    for (name, payload) in [
        (MANIFEST_SECTION, manifest.as_bytes()),
        (SIGNATURE_SECTION, &sig[..]),
    ] {
        let mut body = Vec::new();
        leb128(name.len(), &mut body);
        body.extend_from_slice(name.as_bytes());
        body.extend_from_slice(payload);
        out.push(0); // custom section
        leb128(body.len(), &mut out);
        out.extend_from_slice(&body);
    }
    Ok(out)
}

/// A custom section's name and payload.
type Section = (String, Vec<u8>);

/// The component without Agnes' custom sections, and those sections' payloads by name.
/// `None` when `bytes` is not a well-formed sequence of top-level sections.
fn strip(bytes: &[u8]) -> Option<(Vec<u8>, Vec<Section>)> {
    if bytes.len() < 8 || &bytes[..4] != b"\0asm" {
        return None;
    }
    let mut out = bytes[..8].to_vec();
    let mut found = Vec::new();
    let mut at = 8;
    while at < bytes.len() {
        let start = at;
        let id = bytes[at];
        at += 1;
        let size = read_leb128(bytes, &mut at)?;
        let end = at.checked_add(size).filter(|e| *e <= bytes.len())?;
        if id == 0 {
            let mut p = at;
            let len = read_leb128(bytes, &mut p)?;
            let name_end = p.checked_add(len).filter(|e| *e <= end)?;
            let name = std::str::from_utf8(&bytes[p..name_end]).ok()?;
            if name == MANIFEST_SECTION || name == SIGNATURE_SECTION {
                found.push((name.to_string(), bytes[name_end..end].to_vec()));
                at = end;
                continue;
            }
        }
        out.extend_from_slice(&bytes[start..end]);
        at = end;
    }
    Some((out, found))
}

/// The parts of a package: the bare component, its `connector.toml` and its signature; `None`
/// when `bytes` carries no Agnes sections (a plain component).
pub fn unpack(bytes: &[u8]) -> Result<Option<(Vec<u8>, String, SignatureFile)>, Error> {
    let Some((bare, found)) = strip(bytes) else {
        return Ok(None);
    };
    let get = |name: &str| {
        found
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, p)| p.clone())
    };
    match (get(MANIFEST_SECTION), get(SIGNATURE_SECTION)) {
        (None, None) => Ok(None),
        (Some(m), Some(s)) => {
            let manifest = String::from_utf8(m)
                .map_err(|_| bad("the packaged connector.toml is not UTF-8".to_string()))?;
            let sig: SignatureFile = serde_json::from_slice(&s)
                .map_err(|e| bad(format!("the packaged signature is not a signature: {e}")))?;
            Ok(Some((bare, manifest, sig)))
        }
        _ => Err(bad(
            "a package needs both the agnes-manifest and agnes-signature sections".to_string(),
        )),
    }
}

#[cfg(test)]
mod package_tests {
    use super::*;

    /// An empty component: the header alone.
    const EMPTY: &[u8] = b"\0asm\x0d\0\x01\0";

    #[test]
    fn a_package_unpacks_to_what_was_signed_and_verifies() {
        let (secret, public, _) = keygen().unwrap();
        let manifest = "name = \"x\"\nversion = \"1.0.0\"\n";
        let sig = sign(EMPTY, manifest.as_bytes(), &secret).unwrap();
        let packed = pack(EMPTY, manifest, &sig).unwrap();
        assert_ne!(packed, EMPTY);
        let (bare, m, s) = unpack(&packed).unwrap().unwrap();
        assert_eq!((bare.as_slice(), m.as_str(), &s), (EMPTY, manifest, &sig));
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("k.pub"), &public).unwrap();
        let trusted = TrustedKeys::from_dir(dir.path()).unwrap();
        verify(&bare, m.as_bytes(), &s, &trusted).unwrap();
        // packing again replaces the sections instead of stacking them
        assert_eq!(pack(&packed, manifest, &sig).unwrap(), packed);
        // a plain component is not a package; a flipped byte of the component fails to verify
        assert!(unpack(EMPTY).unwrap().is_none());
        let mut flipped = bare.clone();
        flipped[7] ^= 1;
        assert!(verify(&flipped, m.as_bytes(), &s, &trusted).is_err());
        // a truncated package is not mistaken for one
        assert!(unpack(&packed[..packed.len() - 3]).unwrap().is_none());
    }
}
