//! The container process's user: `user` (`name`, `uid`, `name:group`, `uid:gid`, empty =
//! root) and `group_add` resolved to ids through the container's own `/etc/passwd` and
//! `/etc/group`, as runc's `user.GetExecUser` / `GetAdditionalGroups` do for Docker. The files
//! are opened with `openat2(RESOLVE_IN_ROOT)` relative to the rootfs, so symlinks and `..` in
//! the image cannot make berth read a host file.

use std::fs::File;
use std::io::{self, Read};
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};

use rustix::fs::{Mode, OFlags};

/// Why a user could not be resolved; every variant names the user or group and the rootfs.
#[derive(Debug, thiserror::Error)]
pub enum UserError {
    /// A user name that is not in the container's `/etc/passwd`.
    #[error("unable to find user {user}: no matching entries in passwd file of {}", rootfs.display())]
    NoSuchUser { user: String, rootfs: PathBuf },
    /// A group name (in `user` or `group_add`) that is not in the container's `/etc/group`.
    #[error("unable to find group {group}: no matching entries in group file of {}", rootfs.display())]
    NoSuchGroup { group: String, rootfs: PathBuf },
    /// A numeric id outside 0..=2^31-1.
    #[error("{what} {value} is out of range (0 to 2147483647)")]
    OutOfRange { what: &'static str, value: String },
    /// Reading `/etc/passwd` or `/etc/group` of the rootfs failed (other than not existing).
    #[error("read {} in {}: {source}", file, rootfs.display())]
    Read {
        file: &'static str,
        rootfs: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// The resolved identity of the container's process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecUser {
    pub uid: u32,
    pub gid: u32,
    /// The user's supplementary groups from `/etc/group`, then `group_add`, without duplicates.
    pub additional_gids: Vec<u32>,
    /// The home directory from `/etc/passwd` (`/` when the user has no entry).
    pub home: String,
}

struct PasswdEntry {
    name: String,
    uid: u32,
    gid: u32,
    home: String,
}

struct GroupEntry {
    name: String,
    gid: u32,
    members: Vec<String>,
}

const MAX_ID: u64 = i32::MAX as u64;

fn parse_id(what: &'static str, s: &str) -> Result<Option<u32>, UserError> {
    match s.parse::<u64>() {
        Ok(n) if n <= MAX_ID => Ok(u32::try_from(n).ok()),
        Ok(_) => Err(UserError::OutOfRange {
            what,
            value: s.to_string(),
        }),
        Err(_) if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) => {
            Err(UserError::OutOfRange {
                what,
                value: s.to_string(),
            })
        }
        Err(_) => Ok(None),
    }
}

/// Reads `path` (relative to the rootfs, e.g. `etc/passwd`) confined to `rootfs`; a missing
/// file is `Ok(None)`.
pub fn read_in_root(rootfs: &Path, path: &str) -> io::Result<Option<String>> {
    let root = rustix::fs::open(
        rootfs,
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    let fd = match open_in_root(&root, path) {
        Ok(fd) => fd,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let mut bytes = Vec::new();
    File::from(fd).read_to_end(&mut bytes)?;
    Ok(Some(String::from_utf8_lossy(&bytes).into_owned()))
}

/// `path` opened read-only inside `root` (see [`crate::fsutil::open_in_root`]).
fn open_in_root(root: &OwnedFd, path: &str) -> io::Result<OwnedFd> {
    crate::fsutil::open_in_root_io(root.as_fd(), path.as_bytes(), OFlags::RDONLY)
}

fn read_file(rootfs: &Path, file: &'static str) -> Result<Option<String>, UserError> {
    read_in_root(rootfs, file).map_err(|source| UserError::Read {
        file,
        rootfs: rootfs.to_path_buf(),
        source,
    })
}

fn parse_passwd(text: &str) -> Vec<PasswdEntry> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            Some(PasswdEntry {
                name: f.first()?.to_string(),
                uid: f.get(2)?.parse().ok()?,
                gid: f.get(3)?.parse().ok()?,
                home: f.get(5).map(|s| s.to_string()).unwrap_or_default(),
            })
        })
        .collect()
}

fn parse_group(text: &str) -> Vec<GroupEntry> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            Some(GroupEntry {
                name: f.first()?.to_string(),
                gid: f.get(2)?.parse().ok()?,
                members: f
                    .get(3)
                    .map(|m| {
                        m.split(',')
                            .map(str::trim)
                            .filter(|s| !s.is_empty())
                            .map(str::to_string)
                            .collect()
                    })
                    .unwrap_or_default(),
            })
        })
        .collect()
}

/// Resolves `user` and `group_add` against the passwd and group files of `rootfs`:
/// a numeric uid needs no passwd entry (gid 0, home `/` then); a name must have one; an
/// explicit group replaces the primary gid and drops the supplementary groups, otherwise
/// the user's groups from `/etc/group` are supplementary; `group_add` entries are group
/// names or numeric gids.
pub fn resolve_user(
    rootfs: &Path,
    user: &str,
    group_add: &[String],
) -> Result<ExecUser, UserError> {
    let passwd = read_file(rootfs, "etc/passwd")?
        .map(|t| parse_passwd(&t))
        .unwrap_or_default();
    let groups = read_file(rootfs, "etc/group")?
        .map(|t| parse_group(&t))
        .unwrap_or_default();
    let (user_arg, group_arg) = match user.split_once(':') {
        Some((u, g)) => (u.trim(), g.trim()),
        None => (user.trim(), ""),
    };
    let uid_arg = parse_id("uid", user_arg)?;
    let gid_arg = parse_id("gid", group_arg)?;

    let mut out = ExecUser {
        uid: 0,
        gid: 0,
        additional_gids: Vec::new(),
        home: "/".to_string(),
    };
    let found = passwd.iter().find(|p| match (user_arg, uid_arg) {
        ("", _) => p.uid == 0,
        (_, Some(uid)) => p.uid == uid,
        (name, None) => p.name == name,
    });
    let mut matched_name = None;
    match (found, uid_arg) {
        (Some(p), _) => {
            out.uid = p.uid;
            out.gid = p.gid;
            out.home = if p.home.is_empty() {
                "/".into()
            } else {
                p.home.clone()
            };
            matched_name = Some(p.name.as_str());
        }
        (None, Some(uid)) => out.uid = uid,
        (None, None) if user_arg.is_empty() => {}
        (None, None) => {
            return Err(UserError::NoSuchUser {
                user: user_arg.to_string(),
                rootfs: rootfs.to_path_buf(),
            });
        }
    }

    if !group_arg.is_empty() {
        let g = groups.iter().find(|g| match gid_arg {
            Some(gid) => g.gid == gid,
            None => g.name == group_arg,
        });
        out.gid = match (g, gid_arg) {
            (Some(g), _) => g.gid,
            (None, Some(gid)) => gid,
            (None, None) => {
                return Err(UserError::NoSuchGroup {
                    group: group_arg.to_string(),
                    rootfs: rootfs.to_path_buf(),
                });
            }
        };
    } else if let Some(name) = matched_name {
        out.additional_gids = groups
            .iter()
            .filter(|g| g.members.iter().any(|m| m == name))
            .map(|g| g.gid)
            .collect();
    }

    for add in group_add {
        let add = add.trim();
        let gid = match groups
            .iter()
            .find(|g| g.name == add || g.gid.to_string() == add)
        {
            Some(g) => g.gid,
            None => parse_id("gid", add)?.ok_or_else(|| UserError::NoSuchGroup {
                group: add.to_string(),
                rootfs: rootfs.to_path_buf(),
            })?,
        };
        out.additional_gids.push(gid);
    }
    let mut seen = std::collections::HashSet::new();
    out.additional_gids.retain(|g| seen.insert(*g));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\n\
        daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin\n\
        # a comment\n\
        \n\
        app:x:1000:1000:App:/home/app:/bin/sh\n\
        nohome:x:1001:1001::\n";
    const GROUP: &str = "root:x:0:\n\
        daemon:x:1:\n\
        wheel:x:10:app,daemon\n\
        audio:x:29:app\n\
        app:x:1000:\n\
        staff:x:50:\n";

    fn rootfs() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir(dir.path().join("etc")).unwrap();
        fs::write(dir.path().join("etc/passwd"), PASSWD).unwrap();
        fs::write(dir.path().join("etc/group"), GROUP).unwrap();
        dir
    }

    fn ids(u: &ExecUser) -> (u32, u32, Vec<u32>, &str) {
        (u.uid, u.gid, u.additional_gids.clone(), u.home.as_str())
    }

    #[test]
    fn user_specs_resolve_as_runc_does() {
        let r = rootfs();
        let p = r.path();
        let none: &[String] = &[];
        type Want = (u32, u32, Vec<u32>, &'static str);
        let cases: &[(&str, Want)] = &[
            ("", (0, 0, vec![], "/root")),
            ("root", (0, 0, vec![], "/root")),
            ("app", (1000, 1000, vec![10, 29], "/home/app")),
            ("1000", (1000, 1000, vec![10, 29], "/home/app")),
            ("app:staff", (1000, 50, vec![], "/home/app")),
            ("app:50", (1000, 50, vec![], "/home/app")),
            ("app:4242", (1000, 4242, vec![], "/home/app")),
            ("4242", (4242, 0, vec![], "/")),
            ("4242:4343", (4242, 4343, vec![], "/")),
            ("daemon", (1, 1, vec![10], "/usr/sbin")),
            ("nohome", (1001, 1001, vec![], "/")),
        ];
        for (spec, want) in cases {
            let got = resolve_user(p, spec, none).unwrap();
            assert_eq!(ids(&got), want.clone(), "user {spec:?}");
        }
    }

    #[test]
    fn group_add_takes_names_and_numbers() {
        let r = rootfs();
        let add = vec![
            "staff".to_string(),
            "777".into(),
            "wheel".into(),
            "29".into(),
        ];
        let got = resolve_user(r.path(), "app", &add).unwrap();
        assert_eq!(got.additional_gids, [10, 29, 50, 777]);
        let err = resolve_user(r.path(), "app", &["nogroup".to_string()]).unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("nogroup") && msg.contains(&*r.path().to_string_lossy()),
            "{msg}"
        );
    }

    #[test]
    fn unknown_names_are_errors_naming_user_and_rootfs() {
        let r = rootfs();
        let err = resolve_user(r.path(), "nobody", &[]).unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("nobody") && msg.contains(&*r.path().to_string_lossy()),
            "{msg}"
        );
        let err = resolve_user(r.path(), "app:nogroup", &[]).unwrap_err();
        assert!(matches!(err, UserError::NoSuchGroup { .. }), "{err}");
        let err = resolve_user(r.path(), "99999999999", &[]).unwrap_err();
        assert!(matches!(err, UserError::OutOfRange { .. }), "{err}");
    }

    #[test]
    fn missing_files_allow_numeric_ids_only() {
        let dir = tempfile::tempdir().unwrap();
        let got = resolve_user(dir.path(), "", &[]).unwrap();
        assert_eq!(ids(&got), (0, 0, vec![], "/"));
        let got = resolve_user(dir.path(), "1000:1000", &["5".to_string()]).unwrap();
        assert_eq!(ids(&got), (1000, 1000, vec![5], "/"));
        assert!(resolve_user(dir.path(), "app", &[]).is_err());
    }

    #[test]
    fn symlinked_passwd_cannot_escape_the_rootfs() {
        let top = tempfile::tempdir().unwrap();
        // A host file the container must not see.
        fs::write(
            top.path().join("host-passwd"),
            "escapee:x:4321:4321::/host:/bin/sh\n",
        )
        .unwrap();
        fs::write(top.path().join("host-group"), "hostgrp:x:4321:escapee\n").unwrap();
        let root = top.path().join("rootfs");
        fs::create_dir_all(root.join("etc")).unwrap();
        let outside = top.path().join("host-passwd");
        std::os::unix::fs::symlink(&outside, root.join("etc/passwd")).unwrap();
        std::os::unix::fs::symlink("../../host-group", root.join("etc/group")).unwrap();
        let err = resolve_user(&root, "escapee", &[]).unwrap_err();
        assert!(matches!(err, UserError::NoSuchUser { .. }), "{err}");
        let err = resolve_user(&root, "0", &["hostgrp".to_string()]).unwrap_err();
        assert!(matches!(err, UserError::NoSuchGroup { .. }), "{err}");
        // The same link resolves inside the rootfs when the target exists there.
        let inside = root.join(outside.strip_prefix("/").unwrap());
        fs::create_dir_all(inside.parent().unwrap()).unwrap();
        fs::write(&inside, "inside:x:7:7::/in:/bin/sh\n").unwrap();
        let got = resolve_user(&root, "inside", &[]).unwrap();
        assert_eq!(ids(&got), (7, 7, vec![], "/in"));
    }
}
