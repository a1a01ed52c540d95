//! A node's data directory: its layout, drawn once here ([`DataDir`]), and its privacy. It
//! holds the state (accounts, sealed join tokens), the Raft log, snapshots, blob bytes and the
//! CA and node keys. Every folder in it is mode 0700 and every file 0600, whatever the umask:
//! a node process creates files under umask 077 ([`private_umask`]), the libraries set those
//! modes where they create files, and a directory from an earlier version, or one someone
//! loosened, is tightened when the node starts ([`DataDir::secure`]).
//!
//! ```text
//! <data-dir>/
//!   state.redb            the replicated state (wharf-store)
//!   raft-log.redb         the Raft log, vote and committed id (managers)
//!   snapshots/            Raft snapshots (current.snap, current.meta; incoming/ while received)
//!   blobs/                blob bytes: blobs/<alg>/<2 hex>/<hex>, uploads/<id> (wharf-blobstore)
//!   pki/                  ca.crt; on managers ca.key, token.key, token.crt
//!   node/                 node.key, node.crt, identity.json (written last: the node is complete)
//! ```

use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::NodeError;

/// Makes everything this process creates from now on private to its user (umask 077). Called
/// before a node starts anything; it does not touch files that exist.
pub fn private_umask() {
    rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o077));
}

/// Where a node keeps everything: the paths of its data directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataDir {
    root: PathBuf,
}

impl DataDir {
    pub fn new(root: impl Into<PathBuf>) -> DataDir {
        DataDir { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn state(&self) -> PathBuf {
        self.root.join("state.redb")
    }

    pub fn raft_log(&self) -> PathBuf {
        self.root.join("raft-log.redb")
    }

    pub fn snapshots(&self) -> PathBuf {
        self.root.join("snapshots")
    }

    /// Where snapshots are written while they are received.
    pub fn incoming_snapshots(&self) -> PathBuf {
        self.snapshots().join("incoming")
    }

    /// Which blob storage the node uses (`filesystem` or an `s3://` location, without
    /// credentials), written at its first start.
    pub fn storage_record(&self) -> PathBuf {
        self.root.join("storage")
    }

    pub fn blobs(&self) -> PathBuf {
        self.root.join("blobs")
    }

    /// The CA (and on managers its key and the token-signing key).
    pub fn pki(&self) -> PathBuf {
        self.root.join("pki")
    }

    pub fn ca_cert(&self) -> PathBuf {
        self.pki().join("ca.crt")
    }

    pub fn ca_key(&self) -> PathBuf {
        self.pki().join("ca.key")
    }

    pub fn token_key(&self) -> PathBuf {
        self.pki().join("token.key")
    }

    pub fn token_cert(&self) -> PathBuf {
        self.pki().join("token.crt")
    }

    /// The node's own identity: `node.key`, `node.crt`, `identity.json`.
    pub fn node(&self) -> PathBuf {
        self.root.join("node")
    }

    pub fn identity_file(&self) -> PathBuf {
        self.node().join("identity.json")
    }

    pub fn node_cert(&self) -> PathBuf {
        self.node().join("node.crt")
    }

    pub fn node_key(&self) -> PathBuf {
        self.node().join("node.key")
    }

    /// Creates the directory (mode 0700) if it is missing, then tightens it and everything
    /// under it: see [`secure`].
    pub fn secure(&self) -> Result<(), NodeError> {
        secure(&self.root)
    }
}

/// Creates `dir` (mode 0700) if it is missing, then tightens it and everything under it:
/// folders to 0700, files to 0600. Symbolic links are left alone and not followed. Says in the
/// log how many entries it changed.
pub fn secure(dir: &Path) -> Result<(), NodeError> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| NodeError::io(format!("create {}", dir.display()), e))?;
    let tightened = tighten(dir)?;
    if tightened > 0 {
        tracing::warn!(
            path = %dir.display(),
            entries = tightened,
            "the data directory was readable by other users: tightened folders to 0700 and files to 0600"
        );
    }
    Ok(())
}

/// Tightens `path` and, for a folder, everything under it; returns how many entries changed.
fn tighten(path: &Path) -> Result<usize, NodeError> {
    let meta = std::fs::symlink_metadata(path).map_err(|e| NodeError::io(format!("inspect {}", path.display()), e))?;
    if meta.file_type().is_symlink() {
        return Ok(0);
    }
    let wanted = if meta.is_dir() { 0o700 } else { 0o600 };
    let mode = meta.permissions().mode() & 0o7777;
    let mut changed = 0;
    if mode != wanted {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(wanted))
            .map_err(|e| NodeError::io(format!("make {} private", path.display()), e))?;
        changed += 1;
    }
    if meta.is_dir() {
        let read = |e| NodeError::io(format!("read {}", path.display()), e);
        for entry in std::fs::read_dir(path).map_err(read)? {
            changed += tighten(&entry.map_err(read)?.path())?;
        }
    }
    Ok(changed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(path: &Path) -> u32 {
        std::fs::symlink_metadata(path).expect("stat").permissions().mode() & 0o7777
    }

    #[test]
    fn an_open_directory_is_tightened_and_a_new_one_made_private() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().join("data");
        std::fs::create_dir_all(dir.join("blobs/sha256/ab")).expect("mkdir");
        std::fs::write(dir.join("state.redb"), b"x").expect("write");
        std::fs::write(dir.join("blobs/sha256/ab/abcd"), b"layer").expect("write");
        for (path, m) in [(&dir, 0o755), (&dir.join("blobs"), 0o777), (&dir.join("state.redb"), 0o644)] {
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(m)).expect("chmod");
        }
        std::fs::set_permissions(dir.join("blobs/sha256/ab/abcd"), std::fs::Permissions::from_mode(0o4755))
            .expect("chmod");
        let outside = tmp.path().join("outside");
        std::fs::write(&outside, b"not ours").expect("write");
        std::fs::set_permissions(&outside, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        std::os::unix::fs::symlink(&outside, dir.join("link")).expect("symlink");
        secure(&dir).expect("secure");
        for folder in [&dir, &dir.join("blobs"), &dir.join("blobs/sha256/ab")] {
            assert_eq!(mode(folder), 0o700, "{}", folder.display());
        }
        for file in [dir.join("state.redb"), dir.join("blobs/sha256/ab/abcd")] {
            assert_eq!(mode(&file), 0o600, "{}", file.display());
        }
        assert_eq!(mode(&outside), 0o644, "a link's target outside is not followed");
        assert_eq!(tighten(&dir).expect("again"), 0, "nothing left to change");
        let fresh = tmp.path().join("fresh/data");
        secure(&fresh).expect("create");
        assert_eq!(mode(&fresh), 0o700);
    }
}
