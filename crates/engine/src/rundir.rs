//! `<root>/run`: what lives only as long as the machine runs (the shims' control sockets,
//! libcontainer's state, console sockets, the DNS daemon's socket and locks). It is put on a
//! tmpfs of its own, as Docker's exec root sits on `/run`: every container start used to
//! create, and every removal delete, half a dozen of these files on the root's filesystem,
//! and on ext4 the inode allocator slows down sharply right after mass deletion (a `down`).
//! With `run/` on tmpfs, `up -d` of 50 services took a fifth less CPU.
//!
//! The mount is made once, by the first process about to put something there (a shim
//! starting, a DNS request), under `run.lock`; it stays until the machine reboots (or
//! someone unmounts it), like `/run`. It is made only over a `run/` that nothing alive uses:
//! a shim or DNS daemon of an older berth listening there keeps the plain directory. Without
//! the right to mount (not root), `run/` stays a plain directory.

use std::fs;
use std::os::unix::net::UnixStream;
use std::path::Path;

use rustix::mount::MountFlags;

use crate::fsutil::Lock;

/// The runtime directory, under the state root.
pub const RUN_DIR: &str = "run";
/// Serialises the mount of [`RUN_DIR`], under the state root.
const RUN_LOCK_FILE: &str = "run.lock";

/// Makes sure `<root>/run` is a tmpfs when it can be (see the module doc); best effort,
/// never failing: a plain directory works too, only slower.
pub fn prepare(root: &Path) {
    let run = root.join(RUN_DIR);
    if mounted(&run) {
        return;
    }
    if let Err(e) = fs::create_dir_all(&run) {
        tracing::debug!(path = %run.display(), error = %e, "cannot create the runtime directory");
        return;
    }
    let _lock = match Lock::exclusive(&root.join(RUN_LOCK_FILE)) {
        Ok(lock) => lock,
        Err(e) => {
            tracing::debug!(error = %e, "cannot lock the runtime directory");
            return;
        }
    };
    if mounted(&run) || in_use(&run) {
        return;
    }
    let flags = MountFlags::NOSUID | MountFlags::NODEV | MountFlags::NOEXEC;
    if let Err(e) = rustix::mount::mount("tmpfs", &run, "tmpfs", flags, c"mode=0700") {
        tracing::debug!(path = %run.display(), error = %e, "runtime directory stays on disk");
    }
}

fn mounted(run: &Path) -> bool {
    crate::rootfs::is_mounted(run).unwrap_or(false)
}

/// Whether a live process listens on a socket in `run` (a shim's control socket, the DNS
/// daemon's): mounting over it would hide it from every later command.
fn in_use(run: &Path) -> bool {
    let mut sockets = vec![run.join("dns.sock")];
    if let Ok(entries) = fs::read_dir(run.join("s")) {
        sockets.extend(entries.flatten().map(|e| e.path()));
    }
    sockets.iter().any(|p| UnixStream::connect(p).is_ok())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixListener;

    #[test]
    fn a_listening_socket_means_in_use() {
        let dir = tempfile::tempdir().unwrap();
        let run = dir.path();
        assert!(!in_use(run));
        fs::create_dir(run.join("s")).unwrap();
        // A stale socket file (its process gone) does not count.
        drop(UnixListener::bind(run.join("s/0123.sock")).unwrap());
        assert!(!in_use(run));
        let _live = UnixListener::bind(run.join("dns.sock")).unwrap();
        assert!(in_use(run));
    }
}
