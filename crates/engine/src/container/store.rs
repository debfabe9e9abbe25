//! The container store: one directory per container under `<root>/containers/<id>/` holding
//! `config.json` (fixed at create), `state.json` (rewritten atomically at each transition),
//! the overlay dirs (`upper/`, `work/`, `merged/`), the logs (`log/`) and the shim's lock
//! (`shim.lock`). What a start writes anew every time (the OCI bundle, the generated `/etc`
//! files) is under the runtime directory instead ([`ContainerStore::bundle_dir`]).
//!
//! Names are reserved by a symlink `<root>/containers/.names/<name>` → `<id>`: creating it is
//! atomic and fails when the name is taken, so two concurrent creates of one name cannot both
//! win. A container directory is committed by one rename from a `.tmp-` directory, and removed
//! by renaming it back to a `.tmp-` name first; [`ContainerStore::open`] sweeps such leftovers,
//! so a crash never leaves a half-visible container.

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use crate::container::config::{ContainerConfig, ContainerState, MountKind};
use crate::events;
use crate::fsutil::{self, FsError, Lock};
use crate::layout::Root;

/// Directory of all containers, under the root.
pub const CONTAINERS_DIR: &str = "containers";
/// Name reservations, under [`CONTAINERS_DIR`].
pub const NAMES_DIR: &str = ".names";
/// The container's configuration.
pub const CONFIG_FILE: &str = "config.json";
/// The container's state.
pub const STATE_FILE: &str = "state.json";
/// Held exclusively by the container's shim for its whole life: a lock that can be taken
/// means no shim runs.
pub const SHIM_LOCK_FILE: &str = "shim.lock";
/// Held while a process mounts the container's rootfs: a starting shim (in its own mount
/// namespace) or a `cp`/`export` of a stopped container (on the host), never both at once.
pub const ROOTFS_LOCK_FILE: &str = "rootfs.lock";
/// The shim's own diagnostics.
pub const SHIM_LOG_FILE: &str = "shim.log";
/// The container's output.
pub const LOG_DIR: &str = "log";
/// Files written at create and bind-mounted into the container ([`MountKind::File`]).
pub const FILES_DIR: &str = "files";
const TMP_PREFIX: &str = ".tmp-";

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// No container has this name, id or id prefix.
    #[error("no such container: {0}")]
    NotFound(String),
    /// An id prefix matches several containers.
    #[error("multiple containers match {prefix:?}: {}", ids.join(", "))]
    Ambiguous { prefix: String, ids: Vec<String> },
    /// The name is held by another container (docker's wording).
    #[error(
        "Conflict. The container name \"/{name}\" is already in use by container \"{id}\". \
         You have to remove (or rename) that container to be able to reuse that name."
    )]
    NameInUse { name: String, id: String },
    /// The name does not match `[a-zA-Z0-9][a-zA-Z0-9_.-]+`.
    #[error("Invalid container name ({0}), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed")]
    InvalidName(String),
    /// A filesystem operation failed.
    #[error(transparent)]
    Fs(#[from] FsError),
}

/// A file of the container written when it is created and mounted by a [`MountKind::File`]
/// of the same name: what docker compose copies into a container for a secret or config
/// given by `content` or `environment`.
#[derive(Clone, PartialEq, Eq)]
pub struct ContainerFile {
    /// A plain file name (no `/`), unique in the container.
    pub name: String,
    pub content: Vec<u8>,
    pub uid: u32,
    pub gid: u32,
    /// Permission bits.
    pub mode: u32,
}

impl std::fmt::Debug for ContainerFile {
    // The content may be a secret: never in a log or a panic message.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ContainerFile")
            .field("name", &self.name)
            .field("len", &self.content.len())
            .field("uid", &self.uid)
            .field("gid", &self.gid)
            .field("mode", &format_args!("{:o}", self.mode))
            .finish()
    }
}

/// All containers under one root.
#[derive(Debug, Clone)]
pub struct ContainerStore {
    dir: PathBuf,
    run_dir: PathBuf,
}

/// One container's directory and paths.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerDir {
    pub id: String,
    pub path: PathBuf,
}

impl ContainerDir {
    pub fn config_file(&self) -> PathBuf {
        self.path.join(CONFIG_FILE)
    }
    pub fn state_file(&self) -> PathBuf {
        self.path.join(STATE_FILE)
    }
    pub fn shim_lock(&self) -> PathBuf {
        self.path.join(SHIM_LOCK_FILE)
    }
    pub fn rootfs_lock(&self) -> PathBuf {
        self.path.join(ROOTFS_LOCK_FILE)
    }
    pub fn shim_log(&self) -> PathBuf {
        self.path.join(SHIM_LOG_FILE)
    }
    pub fn log_dir(&self) -> PathBuf {
        self.path.join(LOG_DIR)
    }
    /// Where the files of [`MountKind::File`] mounts are.
    pub fn files_dir(&self) -> PathBuf {
        self.path.join(FILES_DIR)
    }

    /// The configuration.
    pub fn config(&self) -> Result<ContainerConfig, FsError> {
        fsutil::read_json(&self.config_file())
    }

    /// The state (default when the file is missing: a container being created).
    pub fn state(&self) -> Result<ContainerState, FsError> {
        Ok(fsutil::read_json_if_exists(&self.state_file())?.unwrap_or_default())
    }

    /// Read-modify-write of the state under a lock on the container directory itself (no
    /// lock file: every file a start creates costs, see ARCHITECTURE.md); returns the new
    /// state.
    pub fn update_state(
        &self,
        f: impl FnOnce(&mut ContainerState),
    ) -> Result<ContainerState, FsError> {
        let _lock = Lock::exclusive_dir(&self.path)?;
        let mut state = self.state()?;
        f(&mut state);
        fsutil::write_json_atomic(&self.state_file(), &state)?;
        Ok(state)
    }

    /// Whether a shim holds this container (its lock is taken).
    pub fn shim_alive(&self) -> Result<bool, FsError> {
        match Lock::try_exclusive(&self.shim_lock())? {
            Some(_released_at_once) => Ok(false),
            None => Ok(true),
        }
    }
}

impl ContainerStore {
    /// The store under `root`, creating its directories and sweeping leftovers of interrupted
    /// creates and removes.
    pub fn open(root: &Root) -> Result<ContainerStore, StoreError> {
        let dir = root.path().join(CONTAINERS_DIR);
        let store = ContainerStore {
            run_dir: root.path().join(crate::rundir::RUN_DIR),
            dir,
        };
        for d in [store.dir.join(NAMES_DIR), store.run_dir.clone()] {
            fs::create_dir_all(&d).map_err(|e| FsError::io("create directory", &d, e))?;
        }
        fsutil::spread_subdirectories(&store.dir);
        let entries =
            fs::read_dir(&store.dir).map_err(|e| FsError::io("read directory", &store.dir, e))?;
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if let Some(rest) = name.strip_prefix(TMP_PREFIX)
                && !fsutil::unique_name_owner_alive(rest)
            {
                fsutil::remove_dir_all_best_effort(&entry.path());
            }
        }
        Ok(store)
    }

    /// The state root the store lives under.
    pub fn root(&self) -> &Path {
        self.dir.parent().unwrap_or(&self.dir)
    }

    /// Directory for runtime files (sockets, the runtime's own state).
    pub fn run_dir(&self) -> &Path {
        &self.run_dir
    }

    /// The OCI bundle of container `id` while it runs (`run/b/<id16>/`: the spec as
    /// `config.json`, and the generated `hostname`, `hosts` and `resolv.conf` it bind-mounts).
    /// All of it is written anew at every start, so it lives with the runtime state.
    pub fn bundle_dir(&self, id: &str) -> PathBuf {
        self.run_dir.join("b").join(&id[..16.min(id.len())])
    }

    /// The directory of container `id` (not checked).
    pub fn dir_of(&self, id: &str) -> ContainerDir {
        ContainerDir {
            id: id.to_string(),
            path: self.dir.join(id),
        }
    }

    /// Creates the container record: reserves the name, then commits config and an initial
    /// `created` state in one rename.
    pub fn create(&self, config: &ContainerConfig) -> Result<ContainerDir, StoreError> {
        self.create_with_files(config, &[])
    }

    /// [`ContainerStore::create`] with `files` written into the container's `files/`
    /// directory (only root can traverse it; the container sees each file through its
    /// bind mount, with the file's own owner and mode) before the container appears.
    pub fn create_with_files(
        &self,
        config: &ContainerConfig,
        files: &[ContainerFile],
    ) -> Result<ContainerDir, StoreError> {
        validate_name(&config.name)?;
        for f in files {
            if f.name.is_empty() || f.name.contains('/') || f.name == "." || f.name == ".." {
                return Err(StoreError::Fs(FsError::io(
                    "name a container file",
                    Path::new(&f.name),
                    io::Error::from(io::ErrorKind::InvalidInput),
                )));
            }
        }
        let link = self.dir.join(NAMES_DIR).join(&config.name);
        match std::os::unix::fs::symlink(&config.id, &link) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                let id = fs::read_link(&link)
                    .map(|p| p.to_string_lossy().into_owned())
                    .unwrap_or_default();
                // A name left by a container whose directory is gone is free again.
                if !id.is_empty() && self.dir.join(&id).is_dir() {
                    return Err(StoreError::NameInUse {
                        name: config.name.clone(),
                        id,
                    });
                }
                let _ = fs::remove_file(&link);
                std::os::unix::fs::symlink(&config.id, &link)
                    .map_err(|e| FsError::io("reserve name", &link, e))?;
            }
            Err(e) => return Err(FsError::io("reserve name", &link, e).into()),
        }
        let result = (|| {
            let tmp = self.dir.join(fsutil::unique_name(TMP_PREFIX));
            fs::create_dir(&tmp).map_err(|e| FsError::io("create directory", &tmp, e))?;
            fsutil::write_json_atomic(&tmp.join(CONFIG_FILE), config)?;
            fsutil::write_json_atomic(&tmp.join(STATE_FILE), &ContainerState::default())?;
            if !files.is_empty() {
                write_files(&tmp.join(FILES_DIR), files)?;
            }
            let dst = self.dir.join(&config.id);
            fs::rename(&tmp, &dst).map_err(|e| FsError::io("commit container", &dst, e))?;
            fsutil::fsync_dir(&self.dir)?;
            Ok::<_, FsError>(self.dir_of(&config.id))
        })();
        match &result {
            Ok(_) => events::emit(self.root(), config, "create", &[]),
            Err(_) => {
                let _ = fs::remove_file(&link);
            }
        }
        Ok(result?)
    }

    /// Every container id.
    pub fn ids(&self) -> Result<Vec<String>, StoreError> {
        let entries =
            fs::read_dir(&self.dir).map_err(|e| FsError::io("read directory", &self.dir, e))?;
        let mut ids = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|e| FsError::io("read directory", &self.dir, e))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if is_id(&name) {
                ids.push(name);
            }
        }
        ids.sort();
        Ok(ids)
    }

    /// Finds a container by exact name, full id, or unique id prefix (docker's order).
    pub fn resolve(&self, key: &str) -> Result<ContainerDir, StoreError> {
        let key = key.strip_prefix('/').unwrap_or(key);
        if !key.is_empty()
            && !key.contains('/')
            && key != "."
            && key != ".."
            && let Ok(target) = fs::read_link(self.dir.join(NAMES_DIR).join(key))
        {
            let id = target.to_string_lossy().into_owned();
            if self.dir.join(&id).is_dir() {
                return Ok(self.dir_of(&id));
            }
        }
        if key.is_empty() || !key.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(StoreError::NotFound(key.to_string()));
        }
        let matches: Vec<String> = self
            .ids()?
            .into_iter()
            .filter(|id| id.starts_with(key))
            .collect();
        match matches.len() {
            0 => Err(StoreError::NotFound(key.to_string())),
            1 => Ok(self.dir_of(&matches[0])),
            _ => Err(StoreError::Ambiguous {
                prefix: key.to_string(),
                ids: matches,
            }),
        }
    }

    /// Volume name → the ids of the containers (any state) whose mounts use it: a volume in
    /// this map is in use and cannot be removed.
    pub fn volume_users(&self) -> Result<BTreeMap<String, Vec<String>>, StoreError> {
        let mut users: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for id in self.ids()? {
            let Ok(config) = self.dir_of(&id).config() else {
                continue;
            };
            for m in &config.mounts {
                if let MountKind::Volume { name, .. } = &m.kind {
                    users.entry(name.clone()).or_default().push(id.clone());
                }
            }
        }
        Ok(users)
    }

    /// The images containers (any state) were created from: never deleted, even by a forced
    /// `image rm`, so their layers stay.
    pub fn image_users(
        &self,
    ) -> Result<std::collections::HashSet<crate::digest::Digest>, StoreError> {
        let mut used = std::collections::HashSet::new();
        for id in self.ids()? {
            if let Ok(config) = self.dir_of(&id).config()
                && let Some(image) = config.image_id
            {
                used.insert(image);
            }
        }
        Ok(used)
    }

    /// Renames a container (`berth container rename`).
    pub fn rename(&self, dir: &ContainerDir, new_name: &str) -> Result<(), StoreError> {
        validate_name(new_name)?;
        let mut config = dir.config()?;
        let link = self.dir.join(NAMES_DIR).join(new_name);
        std::os::unix::fs::symlink(&dir.id, &link).map_err(|e| {
            if e.kind() == io::ErrorKind::AlreadyExists {
                StoreError::NameInUse {
                    name: new_name.to_string(),
                    id: fs::read_link(&link)
                        .map(|p| p.to_string_lossy().into_owned())
                        .unwrap_or_default(),
                }
            } else {
                FsError::io("reserve name", &link, e).into()
            }
        })?;
        let old = std::mem::replace(&mut config.name, new_name.to_string());
        fsutil::write_json_atomic(&dir.config_file(), &config)?;
        let _ = fs::remove_file(self.dir.join(NAMES_DIR).join(old));
        Ok(())
    }

    /// Rewrites a container's config through `f` (`network connect`/`disconnect`: the
    /// networks it is attached to at its next start).
    pub fn update_config(
        &self,
        dir: &ContainerDir,
        f: impl FnOnce(&mut ContainerConfig),
    ) -> Result<ContainerConfig, StoreError> {
        let mut config = dir.config()?;
        f(&mut config);
        fsutil::write_json_atomic(&dir.config_file(), &config)?;
        Ok(config)
    }

    /// Removes the record: the directory is renamed away first (so it vanishes at once), then
    /// the name is released and the files deleted. The caller has stopped the container and
    /// unmounted its rootfs.
    pub fn remove(&self, dir: &ContainerDir) -> Result<(), StoreError> {
        let config = dir.config().ok();
        let tmp = self.dir.join(fsutil::unique_name(TMP_PREFIX));
        match fs::rename(&dir.path, &tmp) {
            Ok(()) => {
                if let Some(config) = &config {
                    events::emit(self.root(), config, "destroy", &[]);
                }
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(FsError::io("remove container", &dir.path, e).into()),
        }
        if let Some(config) = config {
            let link = self.dir.join(NAMES_DIR).join(config.name);
            if fs::read_link(&link).is_ok_and(|t| t.as_os_str() == dir.id.as_str()) {
                let _ = fs::remove_file(&link);
            }
        }
        fs::remove_dir_all(&tmp)
            .or_else(|e| {
                if e.kind() == io::ErrorKind::NotFound {
                    Ok(())
                } else {
                    Err(e)
                }
            })
            .map_err(|e| FsError::io("remove directory", &tmp, e))?;
        Ok(())
    }
}

fn is_id(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// Docker's rule for container names: `[a-zA-Z0-9][a-zA-Z0-9_.-]+`.
/// Writes `files` into a new directory `dir` (mode 0700): each with its owner and mode, and
/// synced, as the rest of a container's directory is before its rename commits it.
fn write_files(dir: &Path, files: &[ContainerFile]) -> Result<(), FsError> {
    use std::io::Write;
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
    fs::DirBuilder::new()
        .mode(0o700)
        .create(dir)
        .map_err(|e| FsError::io("create directory", dir, e))?;
    for f in files {
        let path = dir.join(&f.name);
        let io = |op: &'static str| {
            let path = path.clone();
            move |e| FsError::io(op, path, e)
        };
        let mut file = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .map_err(io("create"))?;
        file.write_all(&f.content).map_err(io("write"))?;
        std::os::unix::fs::fchown(&file, Some(f.uid), Some(f.gid)).map_err(io("chown"))?;
        // After the chown, which clears set-id bits.
        file.set_permissions(fs::Permissions::from_mode(f.mode & 0o7777))
            .map_err(io("chmod"))?;
        file.sync_all().map_err(io("fsync"))?;
    }
    fsutil::fsync_dir(dir)
}

pub fn validate_name(name: &str) -> Result<(), StoreError> {
    let mut bytes = name.bytes();
    let ok = name.len() >= 2
        && bytes.next().is_some_and(|b| b.is_ascii_alphanumeric())
        && bytes.all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(StoreError::InvalidName(name.to_string()))
    }
}

/// A new random container id (64 hex).
pub fn new_id() -> String {
    use sha2::{Digest as _, Sha256};
    let mut seed = [0u8; 32];
    if fs::File::open("/dev/urandom")
        .and_then(|mut f| io::Read::read_exact(&mut f, &mut seed))
        .is_err()
    {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        seed[..16].copy_from_slice(&t.as_nanos().to_le_bytes());
        seed[16..20].copy_from_slice(&std::process::id().to_le_bytes());
    }
    let digest = Sha256::digest(seed);
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(name: &str) -> ContainerConfig {
        ContainerConfig {
            id: new_id(),
            name: name.to_string(),
            ..Default::default()
        }
    }

    #[test]
    fn create_resolve_rename_remove() {
        let tmp = tempfile::tempdir().unwrap();
        let root = Root::open(tmp.path().join("r")).unwrap();
        let store = ContainerStore::open(&root).unwrap();
        let a = cfg("web-1");
        let dir = store.create(&a).unwrap();
        assert_eq!(store.resolve("web-1").unwrap(), dir);
        assert_eq!(store.resolve("/web-1").unwrap(), dir);
        assert_eq!(store.resolve(&a.id[..6]).unwrap(), dir);
        assert_eq!(store.resolve(&a.id).unwrap(), dir);
        assert!(matches!(
            store.create(&cfg("web-1")),
            Err(StoreError::NameInUse { .. })
        ));
        store.rename(&dir, "web-2").unwrap();
        assert!(matches!(
            store.resolve("web-1"),
            Err(StoreError::NotFound(_))
        ));
        assert_eq!(dir.config().unwrap().name, "web-2");
        let b = store.create(&cfg("web-1")).unwrap();
        assert_eq!(store.ids().unwrap().len(), 2);
        store.remove(&dir).unwrap();
        store.remove(&b).unwrap();
        assert!(store.ids().unwrap().is_empty());
        assert!(
            fs::read_dir(tmp.path().join("r/containers/.names"))
                .unwrap()
                .next()
                .is_none()
        );
    }

    #[test]
    fn files_are_written_with_their_owner_and_mode() {
        use std::os::unix::fs::MetadataExt;
        let tmp = tempfile::tempdir().unwrap();
        let root = Root::open(tmp.path().join("r")).unwrap();
        let store = ContainerStore::open(&root).unwrap();
        let uid = rustix::process::geteuid().as_raw();
        let gid = rustix::process::getegid().as_raw();
        let file = |name: &str, mode| ContainerFile {
            name: name.into(),
            content: b"s3cret".to_vec(),
            uid,
            gid,
            mode,
        };
        let dir = store
            .create_with_files(&cfg("f-1"), &[file("a", 0o440), file("b", 0o644)])
            .unwrap();
        assert_eq!(fs::read(dir.files_dir().join("a")).unwrap(), b"s3cret");
        let meta = |n: &str| fs::metadata(dir.files_dir().join(n)).unwrap();
        assert_eq!(meta("a").mode() & 0o7777, 0o440);
        assert_eq!(meta("b").mode() & 0o7777, 0o644);
        assert_eq!((meta("a").uid(), meta("a").gid()), (uid, gid));
        assert_eq!(
            fs::metadata(dir.files_dir()).unwrap().mode() & 0o7777,
            0o700
        );
        // The content never shows in a debug print.
        assert!(!format!("{:?}", file("a", 0o400)).contains("s3cret"));
        // A name that is a path is refused before anything is created.
        for bad in ["../x", "", ".."] {
            assert!(
                store
                    .create_with_files(&cfg("f-2"), &[file(bad, 0o400)])
                    .is_err()
            );
        }
        assert!(store.resolve("f-2").is_err());
        assert_eq!(store.ids().unwrap().len(), 1);
        store.remove(&dir).unwrap();
    }

    #[test]
    fn invalid_names_and_state_updates() {
        for bad in ["", "a", "-x", "a/b", "a b", "ü1"] {
            assert!(validate_name(bad).is_err(), "{bad:?}");
        }
        validate_name("my_app.1-x").unwrap();
        let tmp = tempfile::tempdir().unwrap();
        let root = Root::open(tmp.path().join("r")).unwrap();
        let store = ContainerStore::open(&root).unwrap();
        let dir = store.create(&cfg("aa")).unwrap();
        let st = dir.update_state(|s| s.restart_count = 3).unwrap();
        assert_eq!(st.restart_count, 3);
        assert_eq!(dir.state().unwrap().restart_count, 3);
        assert!(!dir.shim_alive().unwrap());
        let _held = Lock::exclusive(&dir.shim_lock()).unwrap();
        // flock locks are per open file: a second open from this process conflicts too.
        assert!(dir.shim_alive().unwrap());
    }

    #[test]
    fn leftovers_are_swept_and_stale_names_reused() {
        let tmp = tempfile::tempdir().unwrap();
        let root = Root::open(tmp.path().join("r")).unwrap();
        let store = ContainerStore::open(&root).unwrap();
        // A leftover of a dead process goes; one a live process is building stays.
        fs::create_dir(tmp.path().join("r/containers/.tmp-7fffffff-0-0")).unwrap();
        let live = fsutil::unique_name(".tmp-");
        fs::create_dir(tmp.path().join("r/containers").join(&live)).unwrap();
        std::os::unix::fs::symlink("0".repeat(64), tmp.path().join("r/containers/.names/db"))
            .unwrap();
        let store2 = ContainerStore::open(&root).unwrap();
        assert!(!tmp.path().join("r/containers/.tmp-7fffffff-0-0").exists());
        assert!(tmp.path().join("r/containers").join(&live).exists());
        store2.create(&cfg("db")).unwrap();
        let _ = store;
    }
}
