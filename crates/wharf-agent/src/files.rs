//! The secrets and configs of a node's tasks, as files on a tmpfs: written just before a task's
//! container is created, bind-mounted read-only into it at their targets, and removed once the
//! task no longer runs. A secret never touches this node's disks, and only the nodes that run
//! a task using it ever hold it.

use std::collections::BTreeSet;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use wharf_api::cluster::TaskFile;

/// Where the files live: `/dev/shm` is a tmpfs on every Linux machine.
pub const ROOT: &str = "/dev/shm/wharf-task-files";

/// The directory of task `task`'s files (per cluster and node: several nodes may share a
/// machine).
pub fn task_dir(cluster: &str, node: u64, task: &str) -> PathBuf {
    node_dir(cluster, node).join(task)
}

fn node_dir(cluster: &str, node: u64) -> PathBuf {
    Path::new(ROOT).join(cluster).join(node.to_string())
}

/// Writes `files` into `dir` (on a tmpfs, or not at all), each owned and permitted as its
/// reference says; returns (file on this machine, target in the container) for each.
pub fn write(dir: &Path, files: &[TaskFile]) -> Result<Vec<(String, String)>, String> {
    if !on_tmpfs(Path::new(ROOT)) {
        return Err(format!("secrets and configs are kept on a tmpfs, and {ROOT} is on none on this node"));
    }
    let private = |path: &Path| std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o700));
    for ancestor in [Path::new(ROOT), dir] {
        std::fs::create_dir_all(ancestor).map_err(|e| format!("{}: {e}", ancestor.display()))?;
        private(ancestor).map_err(|e| format!("{}: {e}", ancestor.display()))?;
    }
    let mut mounts = Vec::with_capacity(files.len());
    for (n, file) in files.iter().enumerate() {
        let path = dir.join(n.to_string());
        let fail = |e: std::io::Error| format!("{}: {e}", path.display());
        let _ = std::fs::remove_file(&path);
        let mut out = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&path).map_err(fail)?;
        out.write_all(&file.data).map_err(fail)?;
        std::os::unix::fs::chown(&path, Some(file.uid), Some(file.gid)).map_err(fail)?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(file.mode & 0o7777)).map_err(fail)?;
        mounts.push((path.to_string_lossy().into_owned(), file.target.clone()));
    }
    Ok(mounts)
}

/// Removes the files of this node's tasks but those in `keep`.
pub fn keep_only(cluster: &str, node: u64, keep: &BTreeSet<String>) {
    let Ok(entries) = std::fs::read_dir(node_dir(cluster, node)) else { return };
    for entry in entries.flatten() {
        if !keep.contains(entry.file_name().to_string_lossy().as_ref())
            && let Err(e) = std::fs::remove_dir_all(entry.path())
        {
            tracing::warn!(dir = %entry.path().display(), error = %e, "removing a task's files failed");
        }
    }
}

/// Whether `path` is on a tmpfs (the mount point with the longest prefix of it, in
/// `/proc/mounts`).
fn on_tmpfs(path: &Path) -> bool {
    let Ok(mounts) = std::fs::read_to_string("/proc/mounts") else { return false };
    mounts
        .lines()
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            let (_, point, kind) = (fields.next()?, fields.next()?, fields.next()?);
            path.starts_with(point).then_some((point.len(), kind == "tmpfs"))
        })
        .max_by_key(|(len, _)| *len)
        .is_some_and(|(_, tmpfs)| tmpfs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_are_written_on_the_tmpfs_as_their_references_say_and_removed_with_their_task() {
        assert!(on_tmpfs(Path::new(ROOT)), "/dev/shm is a tmpfs");
        assert!(!on_tmpfs(Path::new(env!("CARGO_MANIFEST_DIR"))), "the sources are not");
        let cluster = format!("test-{}", std::process::id());
        let file = |target: &str, mode| TaskFile {
            target: target.into(),
            uid: 0,
            gid: 0,
            mode,
            secret: true,
            data: b"s3cret".to_vec(),
        };
        let dir = task_dir(&cluster, 1, "t1");
        let mounts = write(&dir, &[file("/run/secrets/a", 0o400), file("/etc/b", 0o444)]).expect("write");
        assert_eq!(mounts.iter().map(|(_, t)| t.as_str()).collect::<Vec<_>>(), ["/run/secrets/a", "/etc/b"]);
        let meta = std::fs::metadata(&mounts[0].0).expect("written");
        assert_eq!(meta.permissions().mode() & 0o7777, 0o400);
        assert_eq!(std::fs::read(&mounts[1].0).expect("read"), b"s3cret");
        write(&task_dir(&cluster, 1, "t2"), &[file("/x", 0o444)]).expect("write");
        keep_only(&cluster, 1, &BTreeSet::from(["t2".to_owned()]));
        assert!(!dir.exists() && task_dir(&cluster, 1, "t2").exists());
        keep_only(&cluster, 1, &BTreeSet::new());
        let _ = std::fs::remove_dir_all(Path::new(ROOT).join(&cluster));
    }
}
