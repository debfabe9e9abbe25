//! Network namespaces: running code inside one, and named namespace files.
//!
//! A thread's network namespace is per thread, so [`run_in`] never switches the caller: it
//! spawns a dedicated thread that `setns`es into the target, runs the closure and exits. The
//! thread is never reused, so no later code runs in the wrong namespace by accident.
//!
//! A *named* namespace is a file on which a namespace's `/proc/thread-self/ns/net` is
//! bind-mounted; it keeps the namespace alive with no process in it (like `ip netns add`).

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::mount::{MntFlags, MsFlags, mount, umount2};
use nix::sched::{CloneFlags, setns, unshare};

/// Why a namespace operation failed; every variant names the namespace file.
#[derive(Debug, thiserror::Error)]
pub enum NetnsError {
    /// The namespace file could not be opened.
    #[error("open network namespace {}: {source}", path.display())]
    Open {
        /// The namespace file.
        path: PathBuf,
        /// The error from `open`.
        #[source]
        source: io::Error,
    },
    /// `setns` into the namespace failed (not a network namespace, or no permission).
    #[error("enter network namespace {}: {errno}", path.display())]
    Enter {
        /// The namespace file.
        path: PathBuf,
        /// The errno from `setns`.
        errno: Errno,
    },
    /// The dedicated thread could not be started.
    #[error("spawn a thread for network namespace {}: {source}", path.display())]
    Spawn {
        /// The namespace file.
        path: PathBuf,
        /// The error from the thread builder.
        #[source]
        source: io::Error,
    },
    /// The closure run inside the namespace panicked.
    #[error("the code run in network namespace {} panicked", path.display())]
    Panicked {
        /// The namespace file.
        path: PathBuf,
    },
    /// A new network namespace could not be created (`unshare`).
    #[error("create network namespace {}: {errno}", path.display())]
    Unshare {
        /// The file it was meant for.
        path: PathBuf,
        /// The errno from `unshare`.
        errno: Errno,
    },
    /// The namespace file could not be created or removed.
    #[error("{op} {}: {source}", path.display())]
    File {
        /// "create" or "remove".
        op: &'static str,
        /// The namespace file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
    /// Bind-mounting the namespace on its file, or unmounting it, failed.
    #[error("{op} network namespace {}: {errno}", path.display())]
    Mount {
        /// "bind-mount" or "unmount".
        op: &'static str,
        /// The namespace file.
        path: PathBuf,
        /// The errno from `mount`/`umount2`.
        errno: Errno,
    },
}

/// Runs `f` inside the network namespace at `path` (`/proc/<pid>/ns/net` or a named namespace
/// file) on a dedicated thread and returns its result. The calling thread's namespace is never
/// changed; the dedicated thread exits when `f` returns. `f` may borrow from the caller.
pub fn run_in<T, F>(path: &Path, f: F) -> Result<T, NetnsError>
where
    T: Send,
    F: FnOnce() -> T + Send,
{
    let ns = File::open(path).map_err(|source| NetnsError::Open {
        path: path.to_owned(),
        source,
    })?;
    std::thread::scope(|scope| {
        let handle = std::thread::Builder::new()
            .name("berth-netns".into())
            .spawn_scoped(scope, move || {
                setns(ns.as_fd(), CloneFlags::CLONE_NEWNET).map_err(|errno| NetnsError::Enter {
                    path: path.to_owned(),
                    errno,
                })?;
                drop(ns);
                Ok(f())
            })
            .map_err(|source| NetnsError::Spawn {
                path: path.to_owned(),
                source,
            })?;
        handle.join().map_err(|_| NetnsError::Panicked {
            path: path.to_owned(),
        })?
    })
}

/// Creates a new, empty network namespace (only `lo`, down) and pins it at `path`, which must
/// not exist yet; its parent directory must. Undo with [`remove_named`].
pub fn create_named(path: &Path) -> Result<(), NetnsError> {
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .map_err(|source| NetnsError::File {
            op: "create",
            path: path.to_owned(),
            source,
        })?;
    let result = std::thread::scope(|scope| {
        let handle = std::thread::Builder::new()
            .name("berth-netns-new".into())
            .spawn_scoped(scope, || {
                unshare(CloneFlags::CLONE_NEWNET).map_err(|errno| NetnsError::Unshare {
                    path: path.to_owned(),
                    errno,
                })?;
                mount(
                    Some("/proc/thread-self/ns/net"),
                    path,
                    None::<&str>,
                    MsFlags::MS_BIND,
                    None::<&str>,
                )
                .map_err(|errno| NetnsError::Mount {
                    op: "bind-mount",
                    path: path.to_owned(),
                    errno,
                })
            })
            .map_err(|source| NetnsError::Spawn {
                path: path.to_owned(),
                source,
            })?;
        handle.join().map_err(|_| NetnsError::Panicked {
            path: path.to_owned(),
        })?
    });
    if result.is_err() {
        let _ = fs::remove_file(path);
    }
    result
}

/// Removes a named namespace made by [`create_named`]: unmounts it (lazily, so an open handle
/// elsewhere does not make this fail) and unlinks the file. A missing file or a file that is
/// not mounted is not an error. The namespace itself goes away once nothing uses it.
pub fn remove_named(path: &Path) -> Result<(), NetnsError> {
    match umount2(path, MntFlags::MNT_DETACH) {
        Ok(()) | Err(Errno::EINVAL) | Err(Errno::ENOENT) => {}
        Err(errno) => {
            return Err(NetnsError::Mount {
                op: "unmount",
                path: path.to_owned(),
                errno,
            });
        }
    }
    match fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(NetnsError::File {
            op: "remove",
            path: path.to_owned(),
            source,
        }),
    }
}

/// The path of the network namespace of process `pid`.
pub fn pid_path(pid: u32) -> PathBuf {
    PathBuf::from(format!("/proc/{pid}/ns/net"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_in_missing_path_names_it() {
        let err = run_in(Path::new("/nonexistent/berth-ns"), || ()).unwrap_err();
        assert!(err.to_string().contains("/nonexistent/berth-ns"), "{err}");
    }

    #[test]
    fn remove_named_missing_is_ok() {
        remove_named(Path::new("/nonexistent/berth-ns-missing")).unwrap();
    }

    #[test]
    fn pid_path_format() {
        assert_eq!(pid_path(42), PathBuf::from("/proc/42/ns/net"));
    }
}
