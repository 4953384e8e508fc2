//! Plugin bundles, content-addressed: `<data_dir>/marketplace/bundles/<hex>/` holds
//! `files.json` (path, executable bit, size, sha256 of every file, sorted by path) and
//! `tree/<path>` with the contents. The digest is the sha256 of the file list, so the same
//! files give the same bundle whichever commit or marketplace they came from; a bundle,
//! once written, never changes.

use std::path::{Path, PathBuf};

use agnes_runtime::hook::{Bundle, BundleFile};
use sha2::{Digest, Sha256};

/// At most this many files in one plugin.
pub const MAX_FILES: usize = 10_000;
/// At most this many bytes in one plugin.
pub const MAX_BYTES: u64 = 256 << 20;

/// `sha256:<hex>` of the canonical file list.
pub fn digest_of(files: &[BundleFile]) -> String {
    let mut h = Sha256::new();
    for f in files {
        h.update(format!(
            "{} {} {} {}\n",
            if f.executable { "100755" } else { "100644" },
            f.sha256,
            f.size,
            f.path
        ));
    }
    format!("sha256:{}", hex::encode(h.finalize()))
}

fn dir(data_dir: &Path, digest: &str) -> Option<PathBuf> {
    let hex = digest.strip_prefix("sha256:")?;
    (hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()))
        .then(|| data_dir.join("marketplace").join("bundles").join(hex))
}

/// Whether `path` is a relative, `/`-separated path with no empty, `.` or `..` component,
/// no backslash and no control character: safe to join under a directory.
pub fn safe_path(path: &str) -> bool {
    !path.is_empty()
        && path.len() <= 1024
        && !path.starts_with('/')
        && !path.contains('\\')
        && !path.chars().any(char::is_control)
        && path
            .split('/')
            .all(|c| !c.is_empty() && c != "." && c != "..")
}

/// Writes a bundle (if it is not already stored) and returns its digest. `files` must be
/// sorted by path with safe paths.
pub fn write(data_dir: &Path, files: &[(BundleFile, Vec<u8>)]) -> std::io::Result<String> {
    let list: Vec<BundleFile> = files.iter().map(|(f, _)| f.clone()).collect();
    let digest = digest_of(&list);
    let target = dir(data_dir, &digest).expect("a digest this module made");
    if target.join("files.json").exists() {
        return Ok(digest);
    }
    let tmp = target.with_extension(format!("tmp{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    for (f, bytes) in files {
        assert!(safe_path(&f.path), "unsafe bundle path {:?}", f.path);
        let path = tmp.join("tree").join(&f.path);
        std::fs::create_dir_all(path.parent().expect("under tree"))?;
        std::fs::write(&path, bytes)?;
    }
    std::fs::create_dir_all(&tmp)?;
    std::fs::write(
        tmp.join("files.json"),
        serde_json::to_vec(&list).map_err(std::io::Error::other)?,
    )?;
    match std::fs::rename(&tmp, &target) {
        Ok(()) => Ok(digest),
        // written meanwhile by a concurrent sync: same digest, same contents
        Err(_) if target.join("files.json").exists() => {
            let _ = std::fs::remove_dir_all(&tmp);
            Ok(digest)
        }
        Err(e) => Err(e),
    }
}

/// A stored bundle.
pub fn open(data_dir: &Path, digest: &str) -> std::io::Result<Bundle> {
    let dir = dir(data_dir, digest)
        .ok_or_else(|| std::io::Error::other(format!("`{digest}` is not a bundle digest")))?;
    let files: Vec<BundleFile> = serde_json::from_slice(&std::fs::read(dir.join("files.json"))?)
        .map_err(std::io::Error::other)?;
    if files.iter().any(|f| !safe_path(&f.path)) {
        return Err(std::io::Error::other(format!(
            "bundle {digest} lists an unsafe path"
        )));
    }
    Ok(Bundle {
        root: dir.join("tree"),
        files,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unsafe_paths_are_refused() {
        for bad in [
            "",
            "/etc/passwd",
            "../x",
            "a/../b",
            "a//b",
            "./a",
            "a\\b",
            "a\nb",
            "a/.",
        ] {
            assert!(!safe_path(bad), "{bad:?}");
        }
        for good in ["a", "a/b.md", ".claude-plugin/plugin.json", "x/..y"] {
            assert!(safe_path(good), "{good:?}");
        }
    }

    #[test]
    fn the_digest_is_the_file_list() {
        let tmp = tempfile::tempdir().unwrap();
        let file = |path: &str, bytes: &[u8], executable| {
            (
                BundleFile {
                    path: path.into(),
                    executable,
                    size: bytes.len() as u64,
                    sha256: agnes_runtime::hook::file_digest(bytes),
                },
                bytes.to_vec(),
            )
        };
        let a = write(tmp.path(), &[file("a.md", b"hi", false)]).unwrap();
        assert_eq!(a, write(tmp.path(), &[file("a.md", b"hi", false)]).unwrap());
        assert_ne!(a, write(tmp.path(), &[file("a.md", b"hi", true)]).unwrap());
        assert_ne!(a, write(tmp.path(), &[file("a.md", b"ho", false)]).unwrap());
        let b = open(tmp.path(), &a).unwrap();
        assert_eq!(std::fs::read(b.root.join("a.md")).unwrap(), b"hi");
        assert!(open(tmp.path(), "sha256:../../etc").is_err());
    }
}
