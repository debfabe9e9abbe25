//! The OCI runtime spec (`config.json` of the bundle) of a container, with Docker's defaults
//! and hardening: default mounts, capabilities, seccomp, masked and read-only paths, device
//! rules, namespaces, resources; plus Docker's entrypoint/cmd and environment rules.

use std::collections::{BTreeMap, HashSet};
use std::io;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Component, Path, PathBuf};

use oci_spec::runtime::{
    Capabilities, Capability, Linux, LinuxBlockIo, LinuxCapabilities, LinuxCpu, LinuxDevice,
    LinuxDeviceCgroup, LinuxDeviceType, LinuxMemory, LinuxNamespace, LinuxNamespaceType, LinuxPids,
    LinuxResources, LinuxThrottleDevice, LinuxThrottleDeviceBuilder, LinuxWeightDeviceBuilder,
    Mount, PosixRlimit, PosixRlimitBuilder, PosixRlimitType, Process, Root, Spec, User,
};

use super::caps::effective_caps;
use super::config::{
    ContainerConfig, DeviceConfig, MountConfig, MountKind, NamespaceMode, NetworkConfig,
    SeccompConfig,
};
use super::etc::{EtcFiles, container_hostname};
use super::seccomp::{default_profile, from_docker_json};
use super::user::{UserError, resolve_user};
use crate::images::ImageConfig;

/// Why a container's spec (or part of it) could not be built; each variant names what the
/// user has to fix.
#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    /// Neither the image nor the user gave a command.
    #[error("no command specified")]
    NoCommand,
    /// A `cap_add` / `cap_drop` name the kernel does not know.
    #[error("unknown capability: {0:?}")]
    UnknownCapability(String),
    /// A `seccomp=<file>` profile that does not parse or is inconsistent.
    #[error("invalid seccomp profile: {0}")]
    SeccompProfile(String),
    /// `user` / `group_add` do not resolve in the image.
    #[error(transparent)]
    User(#[from] UserError),
    /// A sysctl that is not namespaced (or `net.*` without a network namespace of its own).
    #[error("sysctl {name:?} is not allowed in a container: {reason}")]
    Sysctl { name: String, reason: &'static str },
    /// An `ulimits` name that is not a resource limit.
    #[error("unknown ulimit {0:?}")]
    Ulimit(String),
    /// A path that must be absolute is not (`working_dir`, a mount target).
    #[error("{what} {path:?} is not an absolute path")]
    NotAbsolute { what: &'static str, path: String },
    /// A volume mount whose volume has no entry in [`SpecContext::volume_sources`].
    #[error("volume {0} has no source directory")]
    MissingVolume(String),
    /// A volume `subpath` that is absolute, leaves the volume or does not exist in it.
    #[error("invalid subpath {subpath:?} of volume {volume}: {reason}")]
    Subpath {
        volume: String,
        subpath: String,
        reason: String,
    },
    /// `init: true` without an init binary in the context.
    #[error("init requested but no init binary is available")]
    NoInitBinary,
    /// A device (`devices`, or `/dev` for a privileged container) that cannot be used.
    #[error("device {}: {reason}", path.display())]
    Device { path: PathBuf, reason: String },
    /// Inconsistent resource limits.
    #[error("invalid resources: {0}")]
    Resources(String),
}

/// A command or entrypoint override: the exec form or the shell form (run by `/bin/sh -c`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CommandOverride {
    Exec(Vec<String>),
    Shell(String),
}

impl CommandOverride {
    /// The argv; an empty exec form or empty string is empty.
    fn argv(&self) -> Vec<String> {
        match self {
            CommandOverride::Exec(v) => v.clone(),
            CommandOverride::Shell(s) if s.trim().is_empty() => Vec::new(),
            CommandOverride::Shell(s) => vec!["/bin/sh".into(), "-c".into(), s.clone()],
        }
    }
}

/// The container's argv, as Docker builds it: an entrypoint override replaces the image's
/// entrypoint and clears the image's `Cmd` (an empty override resets the entrypoint); a
/// command override replaces `Cmd`; the argv is entrypoint + cmd and must not be empty.
pub fn resolve_command(
    image: &ImageConfig,
    entrypoint: Option<&CommandOverride>,
    command: Option<&CommandOverride>,
) -> Result<Vec<String>, SpecError> {
    let (entry, cmd) = match entrypoint {
        Some(e) => (e.argv(), command.map(|c| c.argv()).unwrap_or_default()),
        None => (
            image.entrypoint.clone().unwrap_or_default(),
            match command {
                Some(c) => c.argv(),
                None => image.cmd.clone().unwrap_or_default(),
            },
        ),
    };
    let argv: Vec<String> = entry.into_iter().chain(cmd).collect();
    if argv.is_empty() {
        return Err(SpecError::NoCommand);
    }
    Ok(argv)
}

/// Docker's `PATH` when neither image nor user set one.
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

fn env_key(entry: &str) -> &str {
    entry.split_once('=').map_or(entry, |(k, _)| k)
}

/// Docker's `ReplaceOrAppendEnvValues`: each override replaces the entry with its key in
/// place or is appended; an override without `=` removes the key.
fn replace_or_append(env: &mut Vec<String>, overrides: &[String]) {
    for o in overrides {
        let key = env_key(o);
        let pos = env.iter().position(|e| env_key(e) == key);
        match (pos, o.contains('=')) {
            (Some(i), true) => env[i] = o.clone(),
            (Some(i), false) => {
                env.remove(i);
            }
            (None, true) => env.push(o.clone()),
            (None, false) => {}
        }
    }
}

/// Merges environment lists: the image's, then each override list (env_file, environment,
/// …); a later value wins by key and keeps the first position; an entry without `=` unsets
/// the key. `PATH` is Docker's default when no list sets it. `HOSTNAME` (and `TERM` for a
/// tty, `HOME`) are added by [`build_spec`], which knows the hostname and user.
pub fn merge_env(image: &[String], overrides: &[&[String]]) -> Vec<String> {
    let mut env: Vec<String> = Vec::new();
    replace_or_append(&mut env, image);
    for o in overrides {
        replace_or_append(&mut env, o);
    }
    if !env.iter().any(|e| env_key(e) == "PATH") {
        env.insert(0, format!("PATH={DEFAULT_PATH}"));
    }
    env
}

/// The process environment as Docker's daemon builds it: `PATH`, `HOSTNAME` (and `TERM=xterm`
/// with a tty) first, replaced or extended by the container's env, then `HOME` from passwd
/// when still unset.
fn process_env(cfg: &ContainerConfig, hostname: &str, home: &str) -> Vec<String> {
    let mut env = vec![
        format!("PATH={DEFAULT_PATH}"),
        format!("HOSTNAME={hostname}"),
    ];
    if cfg.process.tty {
        env.push("TERM=xterm".into());
    }
    replace_or_append(&mut env, &cfg.process.env);
    if !env.iter().any(|e| env_key(e) == "HOME") {
        env.push(format!("HOME={home}"));
    }
    env
}

/// Where berth's init (tini-static) is bind-mounted for `init: true`.
pub const INIT_PATH: &str = "/sbin/berth-init";

/// What [`build_spec`] needs besides the container's config.
#[derive(Debug, Clone, Default)]
pub struct SpecContext {
    /// The mounted overlay rootfs.
    pub rootfs: PathBuf,
    /// Holds `hostname`, `hosts`, `resolv.conf` written by
    /// [`crate::container::etc::write_etc_files`] before the spec is used (the bundle).
    pub etc_dir: PathBuf,
    /// The container's `files/` ([`MountKind::File`] sources).
    pub files_dir: PathBuf,
    /// The `/dev/shm` of the container whose IPC namespace this one joins.
    pub ipc_shm: Option<PathBuf>,
    /// The OCI `cgroupsPath` (e.g. `/berth/<id>` or `system.slice:berth:<id>`).
    pub cgroups_path: String,
    /// Volume name → its host directory.
    pub volume_sources: BTreeMap<String, PathBuf>,
    /// The init binary (tini-static) bind-mounted at [`INIT_PATH`] for `init: true`.
    pub init_binary: Option<PathBuf>,
    /// The host has the unified cgroup v2 hierarchy: the container gets its own cgroup
    /// namespace, as Docker does there (see [`host_cgroup_v2`]).
    pub cgroup_v2: bool,
}

/// Whether `/sys/fs/cgroup` is a cgroup2 filesystem.
pub fn host_cgroup_v2() -> bool {
    const CGROUP2_SUPER_MAGIC: i64 = 0x6367_7270;
    // f_type is i64 on x86_64 and aarch64 but narrower on other architectures.
    #[allow(clippy::unnecessary_cast)]
    rustix::fs::statfs("/sys/fs/cgroup").is_ok_and(|s| s.f_type as i64 == CGROUP2_SUPER_MAGIC)
}

/// Docker's masked paths (none for a privileged container).
pub const MASKED_PATHS: [&str; 12] = [
    "/proc/asound",
    "/proc/acpi",
    "/proc/interrupts",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
];

/// Docker's read-only paths (none for a privileged container).
pub const READONLY_PATHS: [&str; 5] = [
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

/// Docker's default `/dev/shm` size.
pub const DEFAULT_SHM_SIZE: u64 = 64 * 1024 * 1024;

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

fn mount(dest: &str, typ: &str, source: impl Into<PathBuf>, options: Vec<String>) -> Mount {
    let mut m = Mount::default();
    m.set_destination(PathBuf::from(dest));
    m.set_typ(Some(typ.to_string()));
    m.set_source(Some(source.into()));
    m.set_options(Some(options));
    m
}

fn default_mounts(cfg: &ContainerConfig, ctx: &SpecContext) -> Vec<Mount> {
    let privileged = cfg.security.privileged;
    let shm = cfg.resources.shm_size.unwrap_or(DEFAULT_SHM_SIZE);
    let mut sys = strings(&["nosuid", "noexec", "nodev"]);
    let mut cgroup = strings(&["nosuid", "noexec", "nodev", "relatime"]);
    if !privileged {
        sys.push("ro".into());
        cgroup.push("ro".into());
    }
    let mut out = vec![
        mount(
            "/proc",
            "proc",
            "proc",
            strings(&["nosuid", "noexec", "nodev"]),
        ),
        mount(
            "/dev",
            "tmpfs",
            "tmpfs",
            strings(&["nosuid", "strictatime", "mode=755", "size=65536k"]),
        ),
        mount(
            "/dev/pts",
            "devpts",
            "devpts",
            strings(&[
                "nosuid",
                "noexec",
                "newinstance",
                "ptmxmode=0666",
                "mode=0620",
                "gid=5",
            ]),
        ),
        mount("/sys", "sysfs", "sysfs", sys),
        mount("/sys/fs/cgroup", "cgroup", "cgroup", cgroup),
    ];
    // IPC: the host's or another container's namespace comes with its /dev/shm (and the
    // host's with its /dev/mqueue); `ipc: none` has no /dev/shm.
    out.push(match &cfg.ipc {
        NamespaceMode::Host => bind("/dev/mqueue", Path::new("/dev/mqueue"), "rprivate", false),
        _ => mount(
            "/dev/mqueue",
            "mqueue",
            "mqueue",
            strings(&["nosuid", "noexec", "nodev"]),
        ),
    });
    let shared_shm = match &cfg.ipc {
        NamespaceMode::Host => Some(Path::new("/dev/shm")),
        NamespaceMode::None => return out,
        _ => ctx.ipc_shm.as_deref(),
    };
    out.push(match shared_shm {
        Some(source) => bind("/dev/shm", source, "rprivate", false),
        None => mount(
            "/dev/shm",
            "tmpfs",
            "shm",
            vec![
                "nosuid".into(),
                "noexec".into(),
                "nodev".into(),
                "mode=1777".into(),
                format!("size={shm}"),
            ],
        ),
    });
    out
}

fn bind(dest: &str, source: &Path, propagation: &str, read_only: bool) -> Mount {
    let mut opts = strings(&["rbind", propagation]);
    if read_only {
        opts.push("ro".into());
    }
    mount(dest, "bind", source, opts)
}

const PROPAGATIONS: [&str; 6] = [
    "private", "rprivate", "shared", "rshared", "slave", "rslave",
];

/// Resolves `subpath` beneath `volume_dir` (no escape through `..` or symlinks) and returns
/// the host path to bind.
fn volume_subpath(volume: &str, volume_dir: &Path, subpath: &str) -> Result<PathBuf, SpecError> {
    let err = |reason: String| SpecError::Subpath {
        volume: volume.to_string(),
        subpath: subpath.to_string(),
        reason,
    };
    let rel = Path::new(subpath);
    if rel
        .components()
        .any(|c| !matches!(c, Component::Normal(_) | Component::CurDir))
    {
        return Err(err("must be a relative path inside the volume".into()));
    }
    let dir = rustix::fs::open(
        volume_dir,
        rustix::fs::OFlags::PATH | rustix::fs::OFlags::DIRECTORY | rustix::fs::OFlags::CLOEXEC,
        rustix::fs::Mode::empty(),
    )
    .map_err(|e| err(io::Error::from(e).to_string()))?;
    rustix::fs::openat2(
        &dir,
        rel,
        rustix::fs::OFlags::PATH | rustix::fs::OFlags::CLOEXEC,
        rustix::fs::Mode::empty(),
        rustix::fs::ResolveFlags::BENEATH | rustix::fs::ResolveFlags::NO_MAGICLINKS,
    )
    .map_err(|e| err(io::Error::from(e).to_string()))?;
    Ok(volume_dir.join(rel))
}

fn user_mount(m: &MountConfig, ctx: &SpecContext) -> Result<Mount, SpecError> {
    if !m.target.starts_with('/') {
        return Err(SpecError::NotAbsolute {
            what: "mount target",
            path: m.target.clone(),
        });
    }
    Ok(match &m.kind {
        MountKind::Bind {
            source,
            propagation,
            ..
        } => {
            let prop = propagation.as_deref().unwrap_or("rprivate");
            if !PROPAGATIONS.contains(&prop) {
                return Err(SpecError::Resources(format!(
                    "unknown mount propagation {prop:?} for {}",
                    m.target
                )));
            }
            bind(&m.target, source, prop, m.read_only)
        }
        MountKind::Volume { name, subpath, .. } => {
            let dir = ctx
                .volume_sources
                .get(name)
                .ok_or_else(|| SpecError::MissingVolume(name.clone()))?;
            let source = match subpath.as_deref().filter(|s| !s.is_empty()) {
                Some(sub) => volume_subpath(name, dir, sub)?,
                None => dir.clone(),
            };
            bind(&m.target, &source, "rprivate", m.read_only)
        }
        MountKind::File { name } => {
            if name.is_empty() || name.contains('/') || name == "." || name == ".." {
                return Err(SpecError::Resources(format!(
                    "invalid file name {name:?} for {}",
                    m.target
                )));
            }
            bind(
                &m.target,
                &ctx.files_dir.join(name),
                "rprivate",
                m.read_only,
            )
        }
        MountKind::Tmpfs { size, mode } => {
            let mut opts = strings(&["noexec", "nosuid", "nodev", "rprivate"]);
            if let Some(size) = size {
                opts.push(format!("size={size}"));
            }
            opts.push(format!("mode={:o}", mode.unwrap_or(0o1777)));
            if m.read_only {
                opts.push("ro".into());
            }
            mount(&m.target, "tmpfs", "tmpfs", opts)
        }
    })
}

fn depth(dest: &Path) -> usize {
    dest.components()
        .filter(|c| matches!(c, Component::Normal(_)))
        .count()
}

fn mounts(cfg: &ContainerConfig, ctx: &SpecContext) -> Result<Vec<Mount>, SpecError> {
    let mut user = cfg
        .mounts
        .iter()
        .map(|m| user_mount(m, ctx))
        .collect::<Result<Vec<_>, _>>()?;
    // Parents before children, as Docker sorts them; stable for equal depth.
    user.sort_by_key(|m| depth(m.destination()));
    let taken: HashSet<PathBuf> = user.iter().map(|m| m.destination().clone()).collect();

    let etc = EtcFiles::in_dir(&ctx.etc_dir);
    let mut out = default_mounts(cfg, ctx);
    for (dest, src) in [
        ("/etc/resolv.conf", &etc.resolv_conf),
        ("/etc/hostname", &etc.hostname),
        ("/etc/hosts", &etc.hosts),
    ] {
        out.push(bind(dest, src, "rprivate", cfg.read_only));
    }
    if cfg.init {
        let init = ctx.init_binary.as_ref().ok_or(SpecError::NoInitBinary)?;
        out.push(bind(INIT_PATH, init, "rprivate", true));
    }
    out.retain(|m| !taken.contains(m.destination()));
    out.extend(user);
    Ok(out)
}

fn rlimit_type(name: &str) -> Option<PosixRlimitType> {
    use PosixRlimitType::*;
    Some(match name.to_ascii_lowercase().as_str() {
        "as" => RlimitAs,
        "core" => RlimitCore,
        "cpu" => RlimitCpu,
        "data" => RlimitData,
        "fsize" => RlimitFsize,
        "locks" => RlimitLocks,
        "memlock" => RlimitMemlock,
        "msgqueue" => RlimitMsgqueue,
        "nice" => RlimitNice,
        "nofile" => RlimitNofile,
        "nproc" => RlimitNproc,
        "rss" => RlimitRss,
        "rtprio" => RlimitRtprio,
        "rttime" => RlimitRttime,
        "sigpending" => RlimitSigpending,
        "stack" => RlimitStack,
        _ => return None,
    })
}

fn rlimits(cfg: &ContainerConfig) -> Result<Vec<PosixRlimit>, SpecError> {
    cfg.ulimits
        .iter()
        .map(|(name, (soft, hard))| {
            let typ = rlimit_type(name).ok_or_else(|| SpecError::Ulimit(name.clone()))?;
            if soft > hard {
                return Err(SpecError::Resources(format!(
                    "ulimit {name}: soft limit {soft} is above hard limit {hard}"
                )));
            }
            PosixRlimitBuilder::default()
                .typ(typ)
                .soft(*soft)
                .hard(*hard)
                .build()
                .map_err(|e| SpecError::Resources(format!("ulimit {name}: {e}")))
        })
        .collect()
}

fn to_capabilities(names: &[String]) -> Result<Capabilities, SpecError> {
    names
        .iter()
        .map(|n| {
            serde_json::from_value::<Capability>(serde_json::Value::String(n.clone()))
                .map_err(|_| SpecError::UnknownCapability(n.clone()))
        })
        .collect()
}

/// Checks that `name` is a namespaced sysctl the container may set.
pub fn check_sysctl(name: &str, own_netns: bool) -> Result<(), SpecError> {
    if is_ipc_sysctl(name) {
        return Ok(());
    }
    if name.starts_with("net.") {
        return if own_netns {
            Ok(())
        } else {
            Err(SpecError::Sysctl {
                name: name.to_string(),
                reason: "the container shares the host's network namespace",
            })
        };
    }
    Err(SpecError::Sysctl {
        name: name.to_string(),
        reason: "it is not namespaced",
    })
}

/// A sysctl of the IPC namespace.
fn is_ipc_sysctl(name: &str) -> bool {
    const IPC: [&str; 8] = [
        "kernel.msgmax",
        "kernel.msgmnb",
        "kernel.msgmni",
        "kernel.sem",
        "kernel.shmall",
        "kernel.shmmax",
        "kernel.shmmni",
        "kernel.shm_rmid_forced",
    ];
    IPC.contains(&name) || name.starts_with("fs.mqueue.")
}

fn namespace(typ: LinuxNamespaceType, path: Option<&Path>) -> LinuxNamespace {
    let mut ns = LinuxNamespace::default();
    ns.set_typ(typ);
    ns.set_path(path.map(Path::to_path_buf));
    ns
}

fn namespaces(cfg: &ContainerConfig, ctx: &SpecContext) -> Vec<LinuxNamespace> {
    let mut v = Vec::new();
    for (typ, mode) in [
        (LinuxNamespaceType::Pid, &cfg.pid),
        (LinuxNamespaceType::Ipc, &cfg.ipc),
        (LinuxNamespaceType::Uts, &cfg.uts),
    ] {
        match mode {
            NamespaceMode::Private | NamespaceMode::None => v.push(namespace(typ, None)),
            NamespaceMode::Host => {}
            NamespaceMode::Join(path) => v.push(namespace(typ, Some(path))),
            // Resolved to a `Join` by the shim before the spec is built; a private namespace
            // is never silently given instead.
            NamespaceMode::Container(id) => v.push(namespace(
                typ,
                Some(&PathBuf::from(format!(
                    "/nonexistent/unresolved-container-{id}"
                ))),
            )),
        }
    }
    v.push(namespace(LinuxNamespaceType::Mount, None));
    match &cfg.network {
        NetworkConfig::Private | NetworkConfig::None => {
            v.push(namespace(LinuxNamespaceType::Network, None));
        }
        NetworkConfig::Join(path) => v.push(namespace(LinuxNamespaceType::Network, Some(path))),
        // Resolved to a `Join` by the shim before the spec is built; a private namespace is
        // never silently given instead.
        NetworkConfig::Container(id) => v.push(namespace(
            LinuxNamespaceType::Network,
            Some(&PathBuf::from(format!(
                "/nonexistent/unresolved-container-{id}"
            ))),
        )),
        NetworkConfig::Host => {}
    }
    if ctx.cgroup_v2 && cfg.cgroupns != NamespaceMode::Host {
        v.push(namespace(LinuxNamespaceType::Cgroup, None));
    }
    v
}

fn device_rule(
    typ: Option<LinuxDeviceType>,
    major: Option<i64>,
    minor: Option<i64>,
    access: &str,
    allow: bool,
) -> LinuxDeviceCgroup {
    let mut r = LinuxDeviceCgroup::default();
    r.set_allow(allow);
    r.set_typ(typ);
    r.set_major(major);
    r.set_minor(minor);
    r.set_access(Some(access.to_string()));
    r
}

/// A `device_cgroup_rules` entry, `TYPE MAJOR:MINOR ACCESS` as Docker reads it: type `a`,
/// `b` or `c`, numbers or `*`, access a non-empty subset of `rwm`; an allow rule.
pub fn device_cgroup_rule(rule: &str) -> Result<LinuxDeviceCgroup, SpecError> {
    let bad = || {
        SpecError::Resources(format!(
            "invalid device cgroup rule {rule:?}: expected TYPE MAJOR:MINOR ACCESS, as \"c 1:3 mr\""
        ))
    };
    let parts: Vec<&str> = rule.split_whitespace().collect();
    let [typ, numbers, access] = parts[..] else {
        return Err(bad());
    };
    let typ = match typ {
        "a" => LinuxDeviceType::A,
        "b" => LinuxDeviceType::B,
        "c" => LinuxDeviceType::C,
        _ => return Err(bad()),
    };
    let (major, minor) = numbers.split_once(':').ok_or_else(bad)?;
    let number = |n: &str| -> Result<Option<i64>, SpecError> {
        match n {
            "*" => Ok(None),
            n => n
                .parse::<u32>()
                .map(|v| Some(i64::from(v)))
                .map_err(|_| bad()),
        }
    };
    if access.is_empty() || !access.chars().all(|c| "rwm".contains(c)) {
        return Err(bad());
    }
    Ok(device_rule(
        Some(typ),
        number(major)?,
        number(minor)?,
        access,
        true,
    ))
}

/// Docker's device cgroup rules for an unprivileged container: deny all, allow `mknod` of
/// any node, the standard character devices, ptys and the console. (No explicit deny after
/// the allows: fuse is denied by the first rule already, and a deny inside a wildcard allow is
/// a hole cgroup v1 cannot punch — runc refuses such a spec.)
fn default_device_rules() -> Vec<LinuxDeviceCgroup> {
    use LinuxDeviceType::{B, C};
    let mut v = vec![
        device_rule(None, None, None, "rwm", false),
        device_rule(Some(C), None, None, "m", true),
        device_rule(Some(B), None, None, "m", true),
    ];
    // null, zero, full, random, urandom, tty, console, ptmx, pts/*.
    for (major, minor) in [
        (1, Some(3)),
        (1, Some(5)),
        (1, Some(7)),
        (1, Some(8)),
        (1, Some(9)),
        (5, Some(0)),
        (5, Some(1)),
        (5, Some(2)),
        (136, None),
    ] {
        v.push(device_rule(Some(C), Some(major), minor, "rwm", true));
    }
    v
}

/// A device node at `host` (symlinks followed) as `container_path`.
fn device_from_path(host: &Path, container_path: &str) -> Result<LinuxDevice, SpecError> {
    let meta = std::fs::metadata(host).map_err(|e| SpecError::Device {
        path: host.to_path_buf(),
        reason: e.to_string(),
    })?;
    let ft = meta.file_type();
    let typ = if ft.is_char_device() {
        LinuxDeviceType::C
    } else if ft.is_block_device() {
        LinuxDeviceType::B
    } else {
        return Err(SpecError::Device {
            path: host.to_path_buf(),
            reason: "not a device node".into(),
        });
    };
    let rdev = meta.rdev();
    let mut d = LinuxDevice::default();
    d.set_path(PathBuf::from(container_path));
    d.set_typ(typ);
    d.set_major(i64::from(rustix::fs::major(rdev)));
    d.set_minor(i64::from(rustix::fs::minor(rdev)));
    d.set_file_mode(Some(meta.mode() & 0o7777));
    d.set_uid(Some(meta.uid()));
    d.set_gid(Some(meta.gid()));
    Ok(d)
}

fn user_device(dev: &DeviceConfig) -> Result<(LinuxDevice, LinuxDeviceCgroup), SpecError> {
    let target = if dev.container_path.is_empty() {
        dev.host_path.to_string_lossy().into_owned()
    } else {
        dev.container_path.clone()
    };
    let perms = if dev.permissions.is_empty() {
        "rwm"
    } else {
        dev.permissions.as_str()
    };
    if !perms.chars().all(|c| matches!(c, 'r' | 'w' | 'm')) {
        return Err(SpecError::Device {
            path: dev.host_path.clone(),
            reason: format!("invalid permissions {perms:?} (a subset of rwm)"),
        });
    }
    let d = device_from_path(&dev.host_path, &target)?;
    let rule = device_rule(Some(d.typ()), Some(d.major()), Some(d.minor()), perms, true);
    Ok((d, rule))
}

/// Every device node under `dev` (as runc's `HostDevices`: `pts`, `shm`, `fd`, `mqueue` and
/// `console` left out), for a privileged container.
pub fn host_devices(dev: &Path) -> Result<Vec<LinuxDevice>, SpecError> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<LinuxDevice>) -> Result<(), SpecError> {
        let entries = std::fs::read_dir(dir).map_err(|e| SpecError::Device {
            path: dir.to_path_buf(),
            reason: e.to_string(),
        })?;
        for entry in entries.flatten() {
            let path = entry.path();
            let Ok(ft) = entry.file_type() else { continue };
            let name = entry.file_name();
            if ft.is_dir() {
                if dir == root
                    && matches!(
                        name.to_str(),
                        Some("pts" | "shm" | "fd" | "mqueue" | ".lxc" | ".lxd-mounts" | ".udev")
                    )
                {
                    continue;
                }
                walk(root, &path, out)?;
            } else if (ft.is_char_device() || ft.is_block_device())
                && !(dir == root && name == "console")
            {
                // A node that vanished meanwhile is skipped.
                if let Ok(d) = device_from_path(&path, &path.to_string_lossy()) {
                    out.push(d);
                }
            }
        }
        Ok(())
    }
    let mut out = Vec::new();
    walk(dev, dev, &mut out)?;
    Ok(out)
}

fn resources(
    cfg: &ContainerConfig,
    device_rules: Vec<LinuxDeviceCgroup>,
    cgroup_v2: bool,
) -> Result<LinuxResources, SpecError> {
    let r = &cfg.resources;
    let mut res = LinuxResources::default();
    res.set_devices(Some(device_rules));

    if r.memory_swap.is_some_and(|s| s > 0) && r.memory.is_none_or(|m| m <= 0) {
        return Err(SpecError::Resources(
            "a memory limit is needed with a memory+swap limit".into(),
        ));
    }
    if let (Some(m), Some(s)) = (r.memory, r.memory_swap)
        && m > 0
        && s > 0
        && s < m
    {
        return Err(SpecError::Resources(format!(
            "memory+swap limit {s} is below the memory limit {m}"
        )));
    }
    let limit = r.memory.filter(|m| *m > 0);
    if r.memory_swappiness.is_some_and(|s| s > 100) {
        return Err(SpecError::Resources(
            "mem_swappiness must be between 0 and 100".into(),
        ));
    }
    // Docker: on cgroup v2 swappiness and the OOM killer switch do not exist, and are
    // dropped (its CLI warns).
    let swappiness = r.memory_swappiness.filter(|_| !cgroup_v2);
    let disable_oom = (r.oom_kill_disable && !cgroup_v2).then_some(true);
    if limit.is_some()
        || r.memory_reservation.is_some()
        || swappiness.is_some()
        || disable_oom.is_some()
    {
        let mut mem = LinuxMemory::default();
        mem.set_swappiness(swappiness);
        mem.set_disable_oom_killer(disable_oom);
        mem.set_limit(limit);
        mem.set_reservation(r.memory_reservation.filter(|m| *m > 0));
        // Docker: swap unset with a memory limit is twice the limit.
        mem.set_swap(match (limit, r.memory_swap) {
            (Some(_), Some(s)) if s != 0 => Some(s),
            (Some(m), _) => Some(m.saturating_mul(2)),
            (None, _) => None,
        });
        res.set_memory(Some(mem));
    }

    let quota = match r.nano_cpus {
        Some(n) if n < 0 => {
            return Err(SpecError::Resources(format!("cpus {n} is negative")));
        }
        Some(_) if r.cpu_period.is_some() || r.cpu_quota.is_some() => {
            return Err(SpecError::Resources(
                "conflicting options: cpus and cpu_period/cpu_quota cannot both be set".into(),
            ));
        }
        Some(n) if n > 0 => Some((n.saturating_mul(100_000) / 1_000_000_000).max(1000)),
        _ => r.cpu_quota.filter(|q| *q != 0),
    };
    let period = match (r.nano_cpus, r.cpu_period) {
        (Some(n), _) if n > 0 => Some(100_000),
        (_, Some(p)) if p > 0 => Some(p),
        _ if quota.is_some() => Some(100_000),
        _ => None,
    };
    if quota.is_some()
        || period.is_some()
        || r.cpu_shares.is_some()
        || r.cpuset_cpus.is_some()
        || r.cpuset_mems.is_some()
        || r.cpu_rt_period.is_some()
        || r.cpu_rt_runtime.is_some()
    {
        let mut cpu = LinuxCpu::default();
        cpu.set_quota(quota);
        cpu.set_period(period);
        cpu.set_realtime_period(r.cpu_rt_period.filter(|p| *p > 0));
        cpu.set_realtime_runtime(r.cpu_rt_runtime.filter(|p| *p != 0));
        cpu.set_shares(r.cpu_shares.filter(|s| *s > 0));
        cpu.set_cpus(r.cpuset_cpus.clone().filter(|s| !s.is_empty()));
        cpu.set_mems(r.cpuset_mems.clone().filter(|s| !s.is_empty()));
        res.set_cpu(Some(cpu));
    }

    if let Some(p) = r.pids_limit.filter(|p| *p > 0) {
        let mut pids = LinuxPids::default();
        pids.set_limit(p);
        res.set_pids(Some(pids));
    }
    if !r.blkio.is_empty() {
        let mut blkio = r.blkio.clone();
        if (blkio.weight.is_some() || !blkio.weight_device.is_empty())
            && !cgroup_v2
            && !["blkio.weight", "blkio.bfq.weight"]
                .iter()
                .any(|f| Path::new("/sys/fs/cgroup/blkio").join(f).exists())
        {
            // As Docker: the host's I/O schedulers have no weights; the limits still hold.
            eprintln!("blkio_config: weights dropped: the host's block I/O scheduler has none");
            blkio.weight = None;
            blkio.weight_device.clear();
        }
        res.set_block_io(Some(block_io(&blkio)?));
    }
    Ok(res)
}

/// `blkio_config`, each device by its numbers as the host has them now.
fn block_io(b: &super::config::BlkioConfig) -> Result<LinuxBlockIo, SpecError> {
    let numbers = |path: &Path| -> Result<(i64, i64), SpecError> {
        let meta = std::fs::metadata(path).map_err(|e| {
            SpecError::Resources(format!("blkio_config: device {}: {e}", path.display()))
        })?;
        if !meta.file_type().is_block_device() {
            return Err(SpecError::Resources(format!(
                "blkio_config: {} is not a block device",
                path.display()
            )));
        }
        let dev = meta.rdev();
        Ok((
            i64::from(rustix::fs::major(dev)),
            i64::from(rustix::fs::minor(dev)),
        ))
    };
    let weight_ok = |w: u16| -> Result<u16, SpecError> {
        if (10..=1000).contains(&w) {
            Ok(w)
        } else {
            Err(SpecError::Resources(format!(
                "blkio_config: weight {w} is outside 10..1000"
            )))
        }
    };
    let throttle =
        |list: &[(PathBuf, u64)]| -> Result<Option<Vec<LinuxThrottleDevice>>, SpecError> {
            if list.is_empty() {
                return Ok(None);
            }
            list.iter()
                .map(|(path, rate)| {
                    let (major, minor) = numbers(path)?;
                    LinuxThrottleDeviceBuilder::default()
                        .major(major)
                        .minor(minor)
                        .rate(*rate)
                        .build()
                        .map_err(|e| SpecError::Resources(e.to_string()))
                })
                .collect::<Result<Vec<_>, _>>()
                .map(Some)
        };
    let mut io = LinuxBlockIo::default();
    io.set_weight(b.weight.map(weight_ok).transpose()?);
    if !b.weight_device.is_empty() {
        io.set_weight_device(Some(
            b.weight_device
                .iter()
                .map(|(path, w)| {
                    let (major, minor) = numbers(path)?;
                    LinuxWeightDeviceBuilder::default()
                        .major(major)
                        .minor(minor)
                        .weight(weight_ok(*w)?)
                        .build()
                        .map_err(|e| SpecError::Resources(e.to_string()))
                })
                .collect::<Result<Vec<_>, SpecError>>()?,
        ));
    }
    io.set_throttle_read_bps_device(throttle(&b.read_bps)?);
    io.set_throttle_write_bps_device(throttle(&b.write_bps)?);
    io.set_throttle_read_iops_device(throttle(&b.read_iops)?);
    io.set_throttle_write_iops_device(throttle(&b.write_iops)?);
    Ok(io)
}

/// The OCI spec of `cfg`: Docker's defaults and hardening for what the config leaves out.
/// `ctx.container_dir` must hold the `/etc` files (or will before the container starts);
/// the user is resolved in `ctx.rootfs`, which must be mounted.
pub fn build_spec(cfg: &ContainerConfig, ctx: &SpecContext) -> Result<Spec, SpecError> {
    let sec = &cfg.security;
    let privileged = sec.privileged;
    let caps = effective_caps(sec)?;
    let exec_user = resolve_user(&ctx.rootfs, &cfg.process.user, &cfg.process.group_add)?;
    let hostname = container_hostname(cfg);

    // Process.
    if cfg.process.args.is_empty() {
        return Err(SpecError::NoCommand);
    }
    let mut args = cfg.process.args.clone();
    if cfg.init {
        args.splice(0..0, [INIT_PATH.to_string(), "--".to_string()]);
    }
    let cwd = if cfg.process.cwd.is_empty() {
        "/".to_string()
    } else {
        cfg.process.cwd.clone()
    };
    if !cwd.starts_with('/') {
        return Err(SpecError::NotAbsolute {
            what: "working directory",
            path: cwd,
        });
    }
    let mut user = User::default();
    user.set_uid(exec_user.uid);
    user.set_gid(exec_user.gid);
    user.set_additional_gids(
        (!exec_user.additional_gids.is_empty()).then(|| exec_user.additional_gids.clone()),
    );
    let set = to_capabilities(&caps)?;
    let mut capabilities = LinuxCapabilities::default();
    capabilities.set_bounding(Some(set.clone()));
    capabilities.set_effective(Some(set.clone()));
    capabilities.set_permitted(Some(set));
    capabilities.set_inheritable(Some(Capabilities::new()));
    capabilities.set_ambient(Some(Capabilities::new()));
    let rl = rlimits(cfg)?;

    let mut process = Process::default();
    process.set_terminal(Some(cfg.process.tty));
    process.set_user(user);
    process.set_args(Some(args));
    process.set_env(Some(process_env(cfg, &hostname, &exec_user.home)));
    process.set_cwd(PathBuf::from(cwd));
    process.set_capabilities(Some(capabilities));
    process.set_rlimits((!rl.is_empty()).then_some(rl));
    // Unset rather than `false`: libcontainer 0.7 loads a seccomp filter while it still has
    // CAP_SYS_ADMIN only when the field is absent; with `Some(false)` it loads it after the
    // capabilities are dropped, and the kernel refuses (no_new_privs is not set either).
    process.set_no_new_privileges(sec.no_new_privileges.then_some(true));
    process.set_oom_score_adj(cfg.resources.oom_score_adj);

    // Root.
    let mut root = Root::default();
    root.set_path(ctx.rootfs.clone());
    root.set_readonly(Some(cfg.read_only));

    // Linux.
    let own_netns = cfg.network != NetworkConfig::Host;
    for name in cfg.sysctls.keys() {
        check_sysctl(name, own_netns)?;
        if cfg.ipc == NamespaceMode::Host && is_ipc_sysctl(name) {
            return Err(SpecError::Sysctl {
                name: name.to_string(),
                reason: "the container shares the host's IPC namespace",
            });
        }
    }
    let (devices, device_rules) = if privileged {
        (
            host_devices(Path::new("/dev"))?,
            vec![device_rule(None, None, None, "rwm", true)],
        )
    } else {
        let mut devices = Vec::new();
        let mut rules = default_device_rules();
        for d in &cfg.devices {
            let (dev, rule) = user_device(d)?;
            devices.push(dev);
            rules.push(rule);
        }
        for r in &cfg.device_cgroup_rules {
            rules.push(device_cgroup_rule(r)?);
        }
        (devices, rules)
    };
    let seccomp = if privileged {
        None
    } else {
        match &sec.seccomp {
            SeccompConfig::Default => Some(default_profile(&caps)),
            SeccompConfig::Unconfined => None,
            SeccompConfig::Profile(json) => from_docker_json(json, &caps)?,
        }
    };
    let mut linux = Linux::default();
    linux.set_uid_mappings(None);
    linux.set_gid_mappings(None);
    linux.set_namespaces(Some(namespaces(cfg, ctx)));
    linux.set_resources(Some(resources(cfg, device_rules, ctx.cgroup_v2)?));
    linux.set_cgroups_path(Some(PathBuf::from(&ctx.cgroups_path)));
    linux.set_devices((!devices.is_empty()).then_some(devices));
    linux.set_seccomp(seccomp);
    linux.set_sysctl((!cfg.sysctls.is_empty()).then(|| cfg.sysctls.clone().into_iter().collect()));
    if privileged {
        linux.set_masked_paths(None);
        linux.set_readonly_paths(None);
    } else {
        linux.set_masked_paths(Some(strings(&MASKED_PATHS)));
        linux.set_readonly_paths(Some(strings(&READONLY_PATHS)));
    }
    // Shared / slave bind propagation needs the rootfs mount to propagate too, as Docker sets.
    let props: Vec<&str> = cfg
        .mounts
        .iter()
        .filter_map(|m| match &m.kind {
            MountKind::Bind { propagation, .. } => propagation.as_deref(),
            _ => None,
        })
        .collect();
    if props.iter().any(|p| p.ends_with("shared")) {
        linux.set_rootfs_propagation(Some("rshared".into()));
    } else if props.iter().any(|p| p.ends_with("slave")) {
        linux.set_rootfs_propagation(Some("rslave".into()));
    }

    let mut spec = Spec::default();
    spec.set_version("1.0.2".to_string());
    spec.set_root(Some(root));
    spec.set_process(Some(process));
    // In the host's UTS namespace the runtime must not set them: it would rename the host.
    let own_uts = cfg.uts != NamespaceMode::Host;
    spec.set_hostname(own_uts.then_some(hostname));
    spec.set_domainname((own_uts && !cfg.domainname.is_empty()).then(|| cfg.domainname.clone()));
    spec.set_mounts(Some(mounts(cfg, ctx)?));
    spec.set_linux(Some(linux));
    Ok(spec)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::container::caps::DEFAULT_CAPS;
    use oci_spec::runtime::LinuxSeccompAction;
    use std::fs;

    struct Fixture {
        _dir: tempfile::TempDir,
        ctx: SpecContext,
    }

    fn fixture() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let rootfs = dir.path().join("rootfs");
        fs::create_dir_all(rootfs.join("etc")).unwrap();
        fs::write(
            rootfs.join("etc/passwd"),
            "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000::/home/app:/bin/sh\n",
        )
        .unwrap();
        fs::write(
            rootfs.join("etc/group"),
            "root:x:0:\napp:x:1000:\nvideo:x:44:app\n",
        )
        .unwrap();
        let vol = dir.path().join("volumes/data");
        fs::create_dir_all(vol.join("sub/dir")).unwrap();
        let ctx = SpecContext {
            rootfs,
            etc_dir: dir.path().join("ctr"),
            files_dir: dir.path().join("files"),
            ipc_shm: None,
            cgroups_path: "/berth/abc".into(),
            volume_sources: [("data".to_string(), vol)].into_iter().collect(),
            init_binary: Some(dir.path().join("tini")),
            cgroup_v2: true,
        };
        Fixture { _dir: dir, ctx }
    }

    fn cfg() -> ContainerConfig {
        let mut c = ContainerConfig {
            id: "abcdef0123456789".repeat(4),
            ..ContainerConfig::default()
        };
        c.process.args = vec!["sh".into(), "-c".into(), "true".into()];
        c.process.env = vec!["PATH=/custom/bin".into(), "FOO=bar".into()];
        c
    }

    fn cap_names(s: &Option<Capabilities>) -> Vec<String> {
        let mut v: Vec<String> = s
            .iter()
            .flatten()
            .map(|c| {
                serde_json::to_value(c)
                    .unwrap()
                    .as_str()
                    .unwrap()
                    .to_string()
            })
            .collect();
        v.sort();
        v
    }

    fn find<'a>(spec: &'a Spec, dest: &str) -> Option<&'a Mount> {
        spec.mounts()
            .iter()
            .flatten()
            .find(|m| m.destination() == Path::new(dest))
    }

    fn opts(m: &Mount) -> Vec<&str> {
        m.options().iter().flatten().map(String::as_str).collect()
    }

    #[test]
    fn default_container_gets_dockers_defaults() {
        let f = fixture();
        let spec = build_spec(&cfg(), &f.ctx).unwrap();
        let p = spec.process().as_ref().unwrap();
        assert_eq!(p.args().as_deref().unwrap(), ["sh", "-c", "true"]);
        assert_eq!(
            p.env().as_deref().unwrap(),
            [
                "PATH=/custom/bin",
                &format!("HOSTNAME={}", &cfg().id[..12]),
                "FOO=bar",
                "HOME=/root"
            ]
        );
        assert_eq!(p.cwd(), Path::new("/"));
        assert_eq!((p.user().uid(), p.user().gid()), (0, 0));
        assert_eq!(p.terminal(), Some(false));
        assert_eq!(p.no_new_privileges(), None);
        assert!(p.rlimits().is_none());
        let caps = p.capabilities().as_ref().unwrap();
        let mut want: Vec<String> = DEFAULT_CAPS.iter().map(|s| s.to_string()).collect();
        want.sort();
        assert_eq!(cap_names(caps.bounding()), want);
        assert_eq!(cap_names(caps.effective()), want);
        assert_eq!(cap_names(caps.permitted()), want);
        assert!(cap_names(caps.inheritable()).is_empty());
        assert!(cap_names(caps.ambient()).is_empty());

        assert_eq!(spec.hostname().as_deref(), Some(&cfg().id[..12]));
        let root = spec.root().as_ref().unwrap();
        assert_eq!(root.path(), &f.ctx.rootfs);
        assert_eq!(root.readonly(), Some(false));

        let dests: Vec<&Path> = spec
            .mounts()
            .iter()
            .flatten()
            .map(|m| m.destination().as_path())
            .collect();
        let want_dests = [
            "/proc",
            "/dev",
            "/dev/pts",
            "/sys",
            "/sys/fs/cgroup",
            "/dev/mqueue",
            "/dev/shm",
            "/etc/resolv.conf",
            "/etc/hostname",
            "/etc/hosts",
        ];
        assert_eq!(dests, want_dests.map(Path::new));
        assert_eq!(
            opts(find(&spec, "/dev").unwrap()),
            ["nosuid", "strictatime", "mode=755", "size=65536k"]
        );
        assert_eq!(
            opts(find(&spec, "/dev/pts").unwrap()),
            [
                "nosuid",
                "noexec",
                "newinstance",
                "ptmxmode=0666",
                "mode=0620",
                "gid=5"
            ]
        );
        assert!(opts(find(&spec, "/dev/shm").unwrap()).contains(&"size=67108864"));
        assert!(opts(find(&spec, "/sys").unwrap()).contains(&"ro"));
        let cg = find(&spec, "/sys/fs/cgroup").unwrap();
        assert_eq!(cg.typ().as_deref(), Some("cgroup"));
        assert!(opts(cg).contains(&"ro"));
        let hosts = find(&spec, "/etc/hosts").unwrap();
        assert_eq!(
            hosts.source().as_deref(),
            Some(f.ctx.etc_dir.join("hosts").as_path())
        );
        assert_eq!(opts(hosts), ["rbind", "rprivate"]);

        let linux = spec.linux().as_ref().unwrap();
        let ns: Vec<LinuxNamespaceType> = linux
            .namespaces()
            .iter()
            .flatten()
            .map(|n| n.typ())
            .collect();
        use LinuxNamespaceType::*;
        assert_eq!(ns, [Pid, Ipc, Uts, Mount, Network, Cgroup]);
        assert_eq!(linux.masked_paths().as_deref().unwrap(), MASKED_PATHS);
        assert_eq!(linux.readonly_paths().as_deref().unwrap(), READONLY_PATHS);
        assert_eq!(
            linux.cgroups_path().as_deref(),
            Some(Path::new("/berth/abc"))
        );
        let seccomp = linux.seccomp().as_ref().unwrap();
        assert_eq!(seccomp.default_action(), LinuxSeccompAction::ScmpActErrno);
        let rules = linux
            .resources()
            .as_ref()
            .unwrap()
            .devices()
            .as_ref()
            .unwrap();
        assert!(!rules[0].allow() && rules[0].typ().is_none());
        assert!(
            rules
                .iter()
                .any(|r| r.allow() && r.major() == Some(1) && r.minor() == Some(3))
        );
        assert!(linux.devices().is_none());
        assert!(linux.uid_mappings().is_none());

        // What the shim writes is valid JSON the runtime reads back identically.
        let json = serde_json::to_string(&spec).unwrap();
        let back: Spec = serde_json::from_str(&json).unwrap();
        assert_eq!(back, spec);
    }

    #[test]
    fn privileged_gets_everything_and_no_confinement() {
        let f = fixture();
        let mut c = cfg();
        c.security.privileged = true;
        let spec = build_spec(&c, &f.ctx).unwrap();
        let caps = spec
            .process()
            .as_ref()
            .unwrap()
            .capabilities()
            .as_ref()
            .unwrap();
        assert_eq!(
            cap_names(caps.bounding()).len(),
            crate::container::caps::all_caps().len()
        );
        let linux = spec.linux().as_ref().unwrap();
        assert!(linux.masked_paths().is_none());
        assert!(linux.readonly_paths().is_none());
        assert!(linux.seccomp().is_none());
        let rules = linux
            .resources()
            .as_ref()
            .unwrap()
            .devices()
            .as_ref()
            .unwrap();
        assert_eq!(rules.len(), 1);
        assert!(rules[0].allow());
        assert!(
            linux
                .devices()
                .iter()
                .flatten()
                .any(|d| d.path() == Path::new("/dev/null")),
            "host devices are passed"
        );
        assert!(!opts(find(&spec, "/sys").unwrap()).contains(&"ro"));
    }

    #[test]
    fn device_cgroup_rules_are_added() {
        let f = fixture();
        let mut c = cfg();
        c.device_cgroup_rules = vec!["c 10:200 rwm".into(), "b *:* m".into()];
        let spec = build_spec(&c, &f.ctx).unwrap();
        let rules = spec
            .linux()
            .as_ref()
            .unwrap()
            .resources()
            .as_ref()
            .unwrap()
            .devices()
            .clone()
            .unwrap();
        let n = rules.len();
        let tun = &rules[n - 2];
        assert_eq!(
            (
                tun.typ(),
                tun.major(),
                tun.minor(),
                tun.access().as_deref(),
                tun.allow()
            ),
            (
                Some(LinuxDeviceType::C),
                Some(10),
                Some(200),
                Some("rwm"),
                true
            )
        );
        let all_b = &rules[n - 1];
        assert_eq!((all_b.major(), all_b.minor()), (None, None));
        for bad in [
            "c 1:3", "x 1:3 r", "c 1-3 r", "c 1:3 rx", "c a:3 r", "c 1:3 ",
        ] {
            assert!(device_cgroup_rule(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn cpu_memory_and_block_io_limits() {
        let f = fixture();
        let mut c = cfg();
        c.resources.cpu_period = Some(50_000);
        c.resources.cpu_quota = Some(25_000);
        c.resources.cpu_rt_runtime = Some(950);
        c.resources.memory_swappiness = Some(10);
        c.resources.oom_kill_disable = true;
        let v1 = SpecContext {
            cgroup_v2: false,
            ..f.ctx.clone()
        };
        let res = |spec: &Spec| spec.linux().as_ref().unwrap().resources().clone().unwrap();
        let r = res(&build_spec(&c, &v1).unwrap());
        let cpu = r.cpu().as_ref().unwrap();
        assert_eq!((cpu.quota(), cpu.period()), (Some(25_000), Some(50_000)));
        assert_eq!(cpu.realtime_runtime(), Some(950));
        let mem = r.memory().as_ref().unwrap();
        assert_eq!(
            (mem.swappiness(), mem.disable_oom_killer()),
            (Some(10), Some(true))
        );
        // cgroup v2 has neither knob: dropped, as Docker does.
        let r = res(&build_spec(&c, &f.ctx).unwrap());
        assert!(r.memory().is_none(), "{:?}", r.memory());
        // A quota alone gets the default period; `cpus` with a quota is a conflict.
        c.resources.cpu_period = None;
        let r = res(&build_spec(&c, &f.ctx).unwrap());
        assert_eq!(r.cpu().as_ref().unwrap().period(), Some(100_000));
        c.resources.nano_cpus = Some(500_000_000);
        assert!(build_spec(&c, &f.ctx).is_err());
        c.resources.nano_cpus = None;
        c.resources.memory_swappiness = Some(101);
        assert!(build_spec(&c, &v1).is_err());

        // Block I/O: devices by their numbers; a path that is no block device is an error.
        let mut c = cfg();
        c.resources.blkio.read_bps = vec![("/dev/null".into(), 1 << 20)];
        let e = build_spec(&c, &f.ctx).unwrap_err().to_string();
        assert!(e.contains("/dev/null is not a block device"), "{e}");
        let block = fs::read_dir("/dev")
            .unwrap()
            .flatten()
            .find(|e| e.file_type().is_ok_and(|t| t.is_block_device()));
        if let Some(dev) = block {
            let meta = fs::metadata(dev.path()).unwrap();
            c.resources.blkio.read_bps = vec![(dev.path(), 1 << 20)];
            c.resources.blkio.write_iops = vec![(dev.path(), 100)];
            c.resources.blkio.weight = Some(300);
            let r = res(&build_spec(&c, &f.ctx).unwrap());
            let io = r.block_io().as_ref().unwrap();
            let rb = io.throttle_read_bps_device().as_ref().unwrap();
            assert_eq!(
                (rb[0].major(), rb[0].minor(), rb[0].rate()),
                (
                    i64::from(rustix::fs::major(meta.rdev())),
                    i64::from(rustix::fs::minor(meta.rdev())),
                    1 << 20
                )
            );
            assert_eq!(
                io.throttle_write_iops_device().as_ref().unwrap()[0].rate(),
                100
            );
            assert_eq!(io.weight(), Some(300), "v2 has weights");
        } else {
            eprintln!("no block device under /dev: the device numbers went unchecked");
        }
    }

    #[test]
    fn host_and_shared_namespaces() {
        use LinuxNamespaceType::*;
        let f = fixture();
        let kinds = |spec: &Spec| -> Vec<(LinuxNamespaceType, Option<PathBuf>)> {
            let ns = spec.linux().as_ref().unwrap().namespaces().clone().unwrap();
            ns.iter().map(|n| (n.typ(), n.path().clone())).collect()
        };
        let mut c = cfg();
        c.pid = NamespaceMode::Host;
        c.uts = NamespaceMode::Host;
        c.ipc = NamespaceMode::Host;
        c.cgroupns = NamespaceMode::Host;
        c.hostname = "ignored".into();
        let spec = build_spec(&c, &f.ctx).unwrap();
        assert_eq!(
            kinds(&spec),
            [(Mount, None), (Network, None)],
            "only mount and network are the container's own"
        );
        // The runtime must not rename the host.
        assert_eq!(spec.hostname(), &None);
        assert_eq!(spec.domainname(), &None);
        let shm = find(&spec, "/dev/shm").unwrap();
        assert_eq!(shm.source().as_deref(), Some(Path::new("/dev/shm")));
        assert_eq!(shm.typ().as_deref(), Some("bind"));
        let mq = find(&spec, "/dev/mqueue").unwrap();
        assert_eq!(mq.source().as_deref(), Some(Path::new("/dev/mqueue")));
        c.sysctls.insert("kernel.shmmax".into(), "1".into());
        assert!(
            build_spec(&c, &f.ctx).is_err(),
            "an IPC sysctl of the host's namespace"
        );

        // Another container's PID and IPC namespaces, and its /dev/shm.
        let mut c = cfg();
        c.pid = NamespaceMode::Join("/proc/7/ns/pid".into());
        c.ipc = NamespaceMode::Join("/proc/7/ns/ipc".into());
        let ctx = SpecContext {
            ipc_shm: Some("/proc/7/root/dev/shm".into()),
            ..f.ctx.clone()
        };
        let spec = build_spec(&c, &ctx).unwrap();
        let ns = kinds(&spec);
        assert!(ns.contains(&(Pid, Some("/proc/7/ns/pid".into()))), "{ns:?}");
        assert!(ns.contains(&(Ipc, Some("/proc/7/ns/ipc".into()))), "{ns:?}");
        assert!(
            ns.contains(&(Uts, None)) && ns.contains(&(Cgroup, None)),
            "{ns:?}"
        );
        let shm = find(&spec, "/dev/shm").unwrap();
        assert_eq!(
            shm.source().as_deref(),
            Some(Path::new("/proc/7/root/dev/shm"))
        );
        // An unresolved container is never a private namespace.
        c.pid = NamespaceMode::Container("abc".into());
        let ns = kinds(&build_spec(&c, &ctx).unwrap());
        assert!(ns.iter().any(|(t, p)| *t == Pid && p.is_some()), "{ns:?}");

        // `ipc: none`: a namespace of its own and no /dev/shm.
        let mut c = cfg();
        c.ipc = NamespaceMode::None;
        let spec = build_spec(&c, &f.ctx).unwrap();
        assert!(kinds(&spec).contains(&(Ipc, None)));
        assert!(find(&spec, "/dev/shm").is_none());
        assert!(find(&spec, "/dev/mqueue").is_some());
    }

    #[test]
    fn container_files_are_bound_from_the_files_directory() {
        let f = fixture();
        let mut c = cfg();
        c.mounts = vec![MountConfig {
            target: "/run/secrets/token".into(),
            read_only: false,
            kind: MountKind::File {
                name: "secret-token".into(),
            },
        }];
        let spec = build_spec(&c, &f.ctx).unwrap();
        let m = find(&spec, "/run/secrets/token").unwrap();
        assert_eq!(
            m.source().as_deref(),
            Some(&*f.ctx.files_dir.join("secret-token"))
        );
        assert!(opts(m).contains(&"rbind") && !opts(m).contains(&"ro"));
        // A name is never a path: nothing outside files/ can be bound this way.
        for bad in ["../config.json", "", ".."] {
            c.mounts[0].kind = MountKind::File { name: bad.into() };
            assert!(build_spec(&c, &f.ctx).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn read_only_user_mounts_and_init() {
        let f = fixture();
        let mut c = cfg();
        c.read_only = true;
        c.init = true;
        c.resources.shm_size = Some(1 << 20);
        c.mounts = vec![
            MountConfig {
                target: "/data/cache".into(),
                read_only: false,
                kind: MountKind::Tmpfs {
                    size: Some(4096),
                    mode: Some(0o755),
                },
            },
            MountConfig {
                target: "/data".into(),
                read_only: true,
                kind: MountKind::Volume {
                    name: "data".into(),
                    nocopy: false,
                    anonymous: false,
                    subpath: Some("sub/dir".into()),
                },
            },
            MountConfig {
                target: "/etc/hosts".into(),
                read_only: false,
                kind: MountKind::Bind {
                    source: "/tmp/myhosts".into(),
                    propagation: Some("rshared".into()),
                    create_host_path: false,
                },
            },
        ];
        let spec = build_spec(&c, &f.ctx).unwrap();
        assert_eq!(spec.root().as_ref().unwrap().readonly(), Some(true));
        assert!(opts(find(&spec, "/etc/resolv.conf").unwrap()).contains(&"ro"));
        assert!(opts(find(&spec, "/dev/shm").unwrap()).contains(&"size=1048576"));
        let args = spec.process().as_ref().unwrap().args().clone().unwrap();
        assert_eq!(args, [INIT_PATH, "--", "sh", "-c", "true"]);
        let init = find(&spec, INIT_PATH).unwrap();
        assert_eq!(init.source(), &f.ctx.init_binary);
        assert!(opts(init).contains(&"ro"));
        // The user's /etc/hosts replaces the generated one; parents before children.
        let hosts: Vec<&Mount> = spec
            .mounts()
            .iter()
            .flatten()
            .filter(|m| m.destination() == Path::new("/etc/hosts"))
            .collect();
        assert_eq!(hosts.len(), 1);
        assert_eq!(
            hosts[0].source().as_deref(),
            Some(Path::new("/tmp/myhosts"))
        );
        assert_eq!(opts(hosts[0]), ["rbind", "rshared"]);
        let dests: Vec<&Path> = spec
            .mounts()
            .iter()
            .flatten()
            .map(|m| m.destination().as_path())
            .collect();
        let data = dests.iter().position(|d| *d == Path::new("/data")).unwrap();
        let cache = dests
            .iter()
            .position(|d| *d == Path::new("/data/cache"))
            .unwrap();
        assert!(data < cache);
        let vol = find(&spec, "/data").unwrap();
        assert_eq!(
            vol.source().as_deref(),
            Some(f.ctx.volume_sources["data"].join("sub/dir").as_path())
        );
        assert_eq!(opts(vol), ["rbind", "rprivate", "ro"]);
        assert_eq!(
            opts(find(&spec, "/data/cache").unwrap()),
            [
                "noexec",
                "nosuid",
                "nodev",
                "rprivate",
                "size=4096",
                "mode=755"
            ]
        );
        assert_eq!(
            spec.linux()
                .as_ref()
                .unwrap()
                .rootfs_propagation()
                .as_deref(),
            Some("rshared")
        );

        c.init = false;
        c.mounts = vec![MountConfig {
            target: "/x".into(),
            read_only: false,
            kind: MountKind::Volume {
                name: "data".into(),
                nocopy: false,
                anonymous: false,
                subpath: Some("../../etc".into()),
            },
        }];
        let err = build_spec(&c, &f.ctx).unwrap_err();
        assert!(matches!(err, SpecError::Subpath { .. }), "{err}");
        std::os::unix::fs::symlink("/", f.ctx.volume_sources["data"].join("escape")).unwrap();
        c.mounts[0].kind = MountKind::Volume {
            name: "data".into(),
            nocopy: false,
            anonymous: false,
            subpath: Some("escape".into()),
        };
        let err = build_spec(&c, &f.ctx).unwrap_err();
        assert!(matches!(err, SpecError::Subpath { .. }), "{err}");
        c.mounts[0].kind = MountKind::Volume {
            name: "other".into(),
            nocopy: false,
            anonymous: false,
            subpath: None,
        };
        assert_eq!(
            build_spec(&c, &f.ctx).unwrap_err().to_string(),
            "volume other has no source directory"
        );
        c.mounts.clear();
        c.init = true;
        let ctx = SpecContext {
            init_binary: None,
            ..f.ctx.clone()
        };
        assert!(matches!(
            build_spec(&c, &ctx).unwrap_err(),
            SpecError::NoInitBinary
        ));
    }

    #[test]
    fn limits() {
        let f = fixture();
        let mut c = cfg();
        c.resources.memory = Some(256 << 20);
        c.resources.memory_reservation = Some(128 << 20);
        c.resources.nano_cpus = Some(1_500_000_000);
        c.resources.cpu_shares = Some(512);
        c.resources.cpuset_cpus = Some("0-1".into());
        c.resources.pids_limit = Some(100);
        c.resources.oom_score_adj = Some(500);
        c.ulimits.insert("nofile".into(), (1024, 4096));
        let spec = build_spec(&c, &f.ctx).unwrap();
        let res = spec.linux().as_ref().unwrap().resources().as_ref().unwrap();
        let mem = res.memory().as_ref().unwrap();
        assert_eq!(mem.limit(), Some(256 << 20));
        assert_eq!(mem.reservation(), Some(128 << 20));
        assert_eq!(
            mem.swap(),
            Some(512 << 20),
            "Docker: swap defaults to twice the limit"
        );
        let cpu = res.cpu().as_ref().unwrap();
        assert_eq!((cpu.quota(), cpu.period()), (Some(150_000), Some(100_000)));
        assert_eq!(cpu.shares(), Some(512));
        assert_eq!(cpu.cpus().as_deref(), Some("0-1"));
        assert_eq!(res.pids().as_ref().unwrap().limit(), 100);
        let p = spec.process().as_ref().unwrap();
        assert_eq!(p.oom_score_adj(), Some(500));
        let rl = p.rlimits().as_ref().unwrap();
        assert_eq!(rl.len(), 1);
        assert_eq!(
            (rl[0].typ(), rl[0].soft(), rl[0].hard()),
            (PosixRlimitType::RlimitNofile, 1024, 4096)
        );

        c.resources.memory_swap = Some(-1);
        let spec = build_spec(&c, &f.ctx).unwrap();
        let res = spec.linux().as_ref().unwrap().resources().as_ref().unwrap();
        assert_eq!(res.memory().as_ref().unwrap().swap(), Some(-1));

        // No limits: no memory/cpu/pids sections at all.
        let spec = build_spec(&cfg(), &f.ctx).unwrap();
        let res = spec.linux().as_ref().unwrap().resources().as_ref().unwrap();
        assert!(res.memory().is_none() && res.cpu().is_none() && res.pids().is_none());

        let mut bad = cfg();
        bad.ulimits.insert("nofiles".into(), (1, 1));
        assert_eq!(
            build_spec(&bad, &f.ctx).unwrap_err().to_string(),
            "unknown ulimit \"nofiles\""
        );
        let mut bad = cfg();
        bad.resources.memory_swap = Some(1 << 30);
        assert!(matches!(
            build_spec(&bad, &f.ctx).unwrap_err(),
            SpecError::Resources(_)
        ));
    }

    #[test]
    fn sysctls_must_be_namespaced() {
        let f = fixture();
        let mut c = cfg();
        for ok in [
            "net.ipv4.ip_forward",
            "kernel.shmmax",
            "kernel.msgmax",
            "kernel.sem",
            "fs.mqueue.msg_max",
        ] {
            c.sysctls.insert(ok.into(), "1".into());
        }
        let spec = build_spec(&c, &f.ctx).unwrap();
        assert_eq!(
            spec.linux()
                .as_ref()
                .unwrap()
                .sysctl()
                .as_ref()
                .unwrap()
                .len(),
            5
        );

        let mut bad = cfg();
        bad.sysctls.insert("vm.swappiness".into(), "10".into());
        let err = build_spec(&bad, &f.ctx).unwrap_err();
        assert_eq!(
            err.to_string(),
            "sysctl \"vm.swappiness\" is not allowed in a container: it is not namespaced"
        );
        let mut bad = cfg();
        bad.sysctls.insert("kernel.hostname".into(), "x".into());
        assert!(build_spec(&bad, &f.ctx).is_err());
        let mut host = cfg();
        host.network = NetworkConfig::Host;
        host.sysctls
            .insert("net.core.somaxconn".into(), "1024".into());
        let err = build_spec(&host, &f.ctx).unwrap_err();
        assert!(err.to_string().contains("net.core.somaxconn"), "{err}");
        host.sysctls.clear();
        let spec = build_spec(&host, &f.ctx).unwrap();
        let ns = spec.linux().as_ref().unwrap().namespaces().clone().unwrap();
        assert!(!ns.iter().any(|n| n.typ() == LinuxNamespaceType::Network));
    }

    #[test]
    fn user_caps_and_seccomp_options() {
        let f = fixture();
        let mut c = cfg();
        c.process.user = "app".into();
        c.process.group_add = vec!["root".into()];
        c.process.cwd = "/work".into();
        c.process.tty = true;
        c.process.env = vec!["HOME=/custom".into()];
        c.security.cap_add = vec!["sys_admin".into()];
        c.security.cap_drop = vec!["net_raw".into()];
        c.security.no_new_privileges = true;
        c.network = NetworkConfig::Join("/run/netns/x".into());
        let spec = build_spec(&c, &f.ctx).unwrap();
        let p = spec.process().as_ref().unwrap();
        assert_eq!((p.user().uid(), p.user().gid()), (1000, 1000));
        assert_eq!(p.user().additional_gids().as_deref(), Some(&[44, 0][..]));
        assert_eq!(p.cwd(), Path::new("/work"));
        assert_eq!(p.terminal(), Some(true));
        assert_eq!(p.no_new_privileges(), Some(true));
        let env = p.env().clone().unwrap();
        assert!(
            env.contains(&"TERM=xterm".to_string()) && env.contains(&"HOME=/custom".to_string())
        );
        assert!(!env.iter().any(|e| e == "HOME=/home/app"));
        let caps = cap_names(p.capabilities().as_ref().unwrap().bounding());
        assert!(
            caps.contains(&"CAP_SYS_ADMIN".to_string())
                && !caps.contains(&"CAP_NET_RAW".to_string())
        );
        let linux = spec.linux().as_ref().unwrap();
        let seccomp = linux.seccomp().as_ref().unwrap();
        assert!(
            seccomp
                .syscalls()
                .iter()
                .flatten()
                .any(|s| s.names().iter().any(|n| n == "mount") && s.args().is_none())
        );
        let net = linux
            .namespaces()
            .iter()
            .flatten()
            .find(|n| n.typ() == LinuxNamespaceType::Network)
            .unwrap();
        assert_eq!(net.path().as_deref(), Some(Path::new("/run/netns/x")));

        let mut u = cfg();
        u.security.seccomp = SeccompConfig::Unconfined;
        assert!(
            build_spec(&u, &f.ctx)
                .unwrap()
                .linux()
                .as_ref()
                .unwrap()
                .seccomp()
                .is_none()
        );
        u.security.seccomp = SeccompConfig::Profile(r#"{"defaultAction":"SCMP_ACT_LOG"}"#.into());
        let spec = build_spec(&u, &f.ctx).unwrap();
        assert_eq!(
            spec.linux()
                .as_ref()
                .unwrap()
                .seccomp()
                .as_ref()
                .unwrap()
                .default_action(),
            LinuxSeccompAction::ScmpActLog
        );

        let mut bad = cfg();
        bad.process.user = "ghost".into();
        let err = build_spec(&bad, &f.ctx).unwrap_err();
        assert!(err.to_string().contains("ghost"), "{err}");
        let mut bad = cfg();
        bad.process.cwd = "relative".into();
        assert!(matches!(
            build_spec(&bad, &f.ctx).unwrap_err(),
            SpecError::NotAbsolute { .. }
        ));
        let mut bad = cfg();
        bad.process.args.clear();
        assert_eq!(
            build_spec(&bad, &f.ctx).unwrap_err().to_string(),
            "no command specified"
        );
        let mut bad = cfg();
        bad.security.cap_add = vec!["CAP_NOPE".into()];
        assert!(matches!(
            build_spec(&bad, &f.ctx).unwrap_err(),
            SpecError::UnknownCapability(_)
        ));
    }

    #[test]
    fn devices_add_a_node_and_a_rule() {
        let f = fixture();
        let mut c = cfg();
        c.devices = vec![DeviceConfig {
            host_path: "/dev/null".into(),
            container_path: "/dev/mynull".into(),
            permissions: "rw".into(),
        }];
        let spec = build_spec(&c, &f.ctx).unwrap();
        let linux = spec.linux().as_ref().unwrap();
        let d = &linux.devices().as_ref().unwrap()[0];
        assert_eq!(
            (d.path().as_path(), d.typ(), d.major(), d.minor()),
            (Path::new("/dev/mynull"), LinuxDeviceType::C, 1, 3)
        );
        let rule = linux
            .resources()
            .as_ref()
            .unwrap()
            .devices()
            .as_ref()
            .unwrap()
            .last()
            .unwrap();
        assert_eq!(
            (
                rule.allow(),
                rule.major(),
                rule.minor(),
                rule.access().as_deref()
            ),
            (true, Some(1), Some(3), Some("rw"))
        );
        c.devices[0].host_path = f.ctx.rootfs.join("etc/passwd");
        let err = build_spec(&c, &f.ctx).unwrap_err();
        assert!(err.to_string().contains("not a device node"), "{err}");
    }

    fn image(entrypoint: Option<&[&str]>, cmd: Option<&[&str]>) -> ImageConfig {
        ImageConfig {
            entrypoint: entrypoint.map(strings),
            cmd: cmd.map(strings),
            ..serde_json::from_str("{}").unwrap()
        }
    }

    #[test]
    fn entrypoint_and_command_follow_docker() {
        use CommandOverride::{Exec, Shell};
        let ex = |v: &[&str]| Some(Exec(strings(v)));
        let sh = |s: &str| Some(Shell(s.to_string()));
        type Case<'a> = (
            Option<&'a [&'a str]>,
            Option<&'a [&'a str]>,
            Option<CommandOverride>,
            Option<CommandOverride>,
            Result<&'a [&'a str], ()>,
        );
        let cases: Vec<Case> = vec![
            // image only
            (
                Some(&["/entry"]),
                Some(&["a", "b"]),
                None,
                None,
                Ok(&["/entry", "a", "b"]),
            ),
            (None, Some(&["cmd"]), None, None, Ok(&["cmd"])),
            (Some(&["/entry"]), None, None, None, Ok(&["/entry"])),
            (None, None, None, None, Err(())),
            // command replaces Cmd, keeps the entrypoint
            (
                Some(&["/entry"]),
                Some(&["a"]),
                None,
                ex(&["x", "y"]),
                Ok(&["/entry", "x", "y"]),
            ),
            (
                None,
                Some(&["a"]),
                None,
                sh("echo hi"),
                Ok(&["/bin/sh", "-c", "echo hi"]),
            ),
            (
                Some(&["/entry"]),
                Some(&["a"]),
                None,
                ex(&[]),
                Ok(&["/entry"]),
            ),
            (None, Some(&["a"]), None, ex(&[]), Err(())),
            // entrypoint replaces the entrypoint and clears Cmd
            (
                Some(&["/entry"]),
                Some(&["a"]),
                ex(&["/other"]),
                None,
                Ok(&["/other"]),
            ),
            (
                None,
                Some(&["a"]),
                ex(&["/other"]),
                ex(&["z"]),
                Ok(&["/other", "z"]),
            ),
            (
                Some(&["/entry"]),
                Some(&["a"]),
                sh("run.sh"),
                None,
                Ok(&["/bin/sh", "-c", "run.sh"]),
            ),
            // an empty entrypoint resets it (and Cmd)
            (
                Some(&["/entry"]),
                Some(&["a"]),
                ex(&[]),
                ex(&["ls"]),
                Ok(&["ls"]),
            ),
            (
                Some(&["/entry"]),
                Some(&["a"]),
                sh(""),
                ex(&["ls", "-l"]),
                Ok(&["ls", "-l"]),
            ),
            (Some(&["/entry"]), Some(&["a"]), ex(&[]), None, Err(())),
        ];
        for (i, (e, c, eo, co, want)) in cases.into_iter().enumerate() {
            let got = resolve_command(&image(e, c), eo.as_ref(), co.as_ref());
            match want {
                Ok(w) => assert_eq!(got.unwrap(), strings(w), "case {i}"),
                Err(()) => assert!(
                    matches!(got, Err(SpecError::NoCommand)),
                    "case {i}: {got:?}"
                ),
            }
        }
    }

    #[test]
    fn env_merges_by_key_in_order() {
        let image = strings(&["PATH=/img/bin", "A=1", "B=2"]);
        let file = strings(&["B=file", "C=3"]);
        let env = strings(&["A=env", "D=4", "C"]);
        assert_eq!(
            merge_env(&image, &[&file, &env]),
            ["PATH=/img/bin", "A=env", "B=file", "D=4"]
        );
        assert_eq!(
            merge_env(&strings(&["X=1"]), &[]),
            [&format!("PATH={DEFAULT_PATH}"), "X=1"]
        );
        assert_eq!(
            merge_env(&strings(&["V=a=b"]), &[&strings(&["V=c=d"])])[1],
            "V=c=d"
        );
    }
}
