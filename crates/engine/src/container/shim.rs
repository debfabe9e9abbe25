//! The per-container shim: the berth binary re-executed as `berth __shim --root R ID`, a small
//! single-threaded process (no tokio, no threads: youki's libcontainer deadlocks in a
//! multi-threaded process) that
//!
//! 1. takes the container's `shim.lock` for its whole life (so anyone can tell a live shim by
//!    failing to take it, without trusting pids),
//! 2. mounts the overlay rootfs, writes the OCI bundle, creates and starts the container with
//!    libcontainer, its stdout/stderr on pipes the shim owns,
//! 3. reports `ok <pid>` (or `error <message>`) on its stdout to whoever spawned it, then
//!    detaches from that pipe,
//! 4. runs a `poll` loop: container output → the log, control-socket requests (state, kill,
//!    wait, pause, resume), the init process' pidfd,
//! 5. when the init process exits: drains the output, records exit code, time and OOM kill in
//!    `state.json` (atomically), deletes the runtime state and the cgroup, unmounts the rootfs,
//!    answers every `wait`, and exits.
//!
//! The shim runs in its own process group, so a terminal's Ctrl-C or hang-up that kills the
//! berth command which started it does not reach it; it survives any berth process dying.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::signal::Signal;
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;

use crate::container::cgroupfs::CgroupFs;
use crate::container::config::{
    ContainerConfig, ContainerState, Health, HealthStatus, MountKind, NamespaceMode, NetworkConfig,
    Status,
};
use crate::container::spec::{SpecContext, build_spec};
use crate::container::store::{ContainerDir, ContainerStore};
use crate::events;
use crate::fsutil::{self, Lock};
use crate::layout::Stores;
use crate::logs::{LogWriter, Stream};
use crate::rootfs::Rootfs;
use crate::volumes::VolumeStore;

/// The hidden verb the binary dispatches to [`main`].
pub const SHIM_VERB: &str = "__shim";

/// The word after `stop SIG` by which the stopper says it releases the container's
/// networking itself (see [`Networking::release`]): the shim exits without it.
pub const KEEP_NETWORK: &str = "keep-network";

/// Why the shim could not start the container (sent to the starter as `error …`).
#[derive(Debug, thiserror::Error)]
pub enum ShimError {
    #[error("{0}")]
    Msg(String),
    #[error(transparent)]
    Fs(#[from] fsutil::FsError),
    #[error(transparent)]
    Store(#[from] crate::container::store::StoreError),
    #[error(transparent)]
    Rootfs(#[from] crate::rootfs::RootfsError),
    #[error(transparent)]
    Spec(#[from] crate::container::spec::SpecError),
    #[error(transparent)]
    Etc(#[from] crate::container::etc::EtcError),
    #[error("runtime: {0}")]
    Runtime(String),
    #[error("{op}: {source}")]
    Io {
        op: &'static str,
        #[source]
        source: io::Error,
    },
}

fn io_err(op: &'static str) -> impl FnOnce(io::Error) -> ShimError {
    move |source| ShimError::Io { op, source }
}

/// Paths of a container's runtime files.
pub fn socket_path(store: &ContainerStore, id: &str) -> PathBuf {
    store
        .run_dir()
        .join("s")
        .join(format!("{}.sock", &id[..12.min(id.len())]))
}

/// libcontainer's state directory root (short: it puts a unix socket under it).
pub fn runtime_root(store: &ContainerStore) -> PathBuf {
    store.run_dir().join("rt")
}

/// libcontainer's id for a container: a prefix of ours, to keep socket paths short.
pub fn runtime_id(id: &str) -> &str {
    &id[..16.min(id.len())]
}

/// A started shim: its process, the container's init pid, and the shim's report pipe, on
/// which it writes `exit <code>` when the container has exited, before anything is removed
/// (so `run --rm` in the foreground learns the code of a container that removes itself).
#[derive(Debug)]
pub struct Spawned {
    pub child: std::process::Child,
    pub pid: i32,
    pub report: BufReader<std::process::ChildStdout>,
}

impl Spawned {
    /// Blocks until the shim reports the exit; `None` when it died without reporting.
    pub fn wait_exit(&mut self) -> Option<i32> {
        let mut line = String::new();
        loop {
            line.clear();
            match self.report.read_line(&mut line) {
                Ok(0) | Err(_) => return None,
                Ok(_) => {
                    if let Some(code) = line.trim_end().strip_prefix("exit ") {
                        return code.parse().ok();
                    }
                }
            }
        }
    }
}

/// Spawns the shim for container `dir` and waits until it reports the container started (its
/// init pid) or failed. The shim is left running, in its own process group; the caller must
/// reap the returned child eventually (a short-lived CLI can simply exit).
pub fn spawn(shim_exe: &Path, root: &Path, dir: &ContainerDir) -> Result<Spawned, ShimError> {
    let log = OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.shim_log())
        .map_err(io_err("open shim log"))?;
    let mut child = Command::new(shim_exe)
        .arg(SHIM_VERB)
        .arg("--root")
        .arg(root)
        .arg(&dir.id)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::from(log))
        .process_group(0)
        .env_remove("RUST_LOG")
        .spawn()
        .map_err(io_err("spawn the shim"))?;
    let stdout = child.stdout.take().expect("piped stdout");
    let mut report = BufReader::new(stdout);
    let mut line = String::new();
    report
        .read_line(&mut line)
        .map_err(io_err("read the shim's report"))?;
    let line = line.trim_end();
    if let Some(pid) = line.strip_prefix("ok ") {
        let pid = pid
            .parse()
            .map_err(|_| ShimError::Msg(format!("shim reported a bad pid: {line:?}")))?;
        return Ok(Spawned { child, pid, report });
    }
    let _ = child.wait();
    let msg = match line.strip_prefix("error ") {
        Some(m) => m.to_string(),
        None => {
            let tail = fs::read_to_string(dir.shim_log()).unwrap_or_default();
            let last = tail.lines().last().unwrap_or("").to_string();
            format!("the shim exited without reporting: {last}")
        }
    };
    Err(ShimError::Msg(msg))
}

/// Entry point of `berth __shim --root ROOT ID`: returns the process exit code.
/// `settle` runs once the container is up, before the shim goes idle in its poll loop: the
/// binary uses it to hand the start-up's freed memory back to the kernel (the engine knows
/// nothing of the allocator).
/// `network` is the binary's networking (the engine knows none of it), see [`Networking`].
pub fn main(args: &[String], shim_exe: &Path, settle: &dyn Fn(), network: &dyn Networking) -> i32 {
    let (root, id) = match args {
        [flag, root, id] if flag == "--root" => (PathBuf::from(root), id.clone()),
        _ => {
            eprintln!("usage: berth {SHIM_VERB} --root ROOT ID");
            return 2;
        }
    };
    // A parent that blocked signals for its own signal thread (an attached `berth up`, the
    // daemon) passes its mask on through fork and exec: the shim and its container start
    // from an empty one, or the container would never see the SIGTERM of a `stop`.
    sys::unblock_all_signals();
    let mut report = ReportPipe::stdout();
    match Shim::start(&root, &id, network) {
        Ok(mut shim) => {
            report.send(&format!("ok {}", shim.pid));
            settle();
            // A container still running after a moment is handed over to a fresh image of
            // this binary (see `hand_over`); a short one (`run --rm … true`) is done with
            // before, without paying for the exec.
            let handover = HandOver {
                at: std::time::Instant::now() + HAND_OVER_AFTER,
                root: root.clone(),
                exe: shim_exe.to_path_buf(),
            };
            let code = shim.run(Some(handover));
            if !shim.keep_network {
                network.release(&root, &id);
            }
            report.send(&format!("exit {code}"));
            if shim.config.auto_remove {
                report.wait_for_starter(SESSION_GRACE);
            }
            report.close();
            shim.remove_if_asked();
            0
        }
        Err(e) => {
            let msg = e.to_string().replace('\n', " ");
            eprintln!("shim {id}: {msg}");
            report.send(&format!("error {msg}"));
            report.close();
            1
        }
    }
}

/// A container's networking, supplied by the binary: the engine carries
/// [`ContainerConfig::networks`] and `ports` without knowing what they mean. Called only for
/// containers with a namespace of their own (`Private`, `None`), in the shim (single-threaded
/// until the runtime has forked: `prepare` must not start threads).
pub trait Networking {
    /// Before the bundle is written: reserve addresses and ports. The result goes into the
    /// generated `/etc/hosts` and `/etc/resolv.conf`. An error fails the start.
    fn prepare(&self, root: &Path, config: &ContainerConfig) -> Result<NetworkSetup, String>;
    /// After the container is created, before its process runs: set up the namespace of
    /// `pid` (`lo` up, interfaces, routes) and publish the container (DNS, ports).
    fn attach(&self, root: &Path, config: &ContainerConfig, pid: i32) -> Result<(), String>;
    /// After the container exited or failed to start: give back everything `prepare` and
    /// `attach` took. Idempotent; never fails (problems are the binary's to report).
    fn release(&self, root: &Path, id: &str);
}

/// What [`Networking::prepare`] found for the container's `/etc` files.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NetworkSetup {
    /// The container's addresses (its hostname maps to the first).
    pub addresses: Vec<std::net::IpAddr>,
    /// Nameservers that come before the user's `dns` and replace the host's (the
    /// networks' embedded resolvers).
    pub nameservers: Vec<String>,
    /// The host as the container reaches it (its first network's gateway): what
    /// `host-gateway` in `extra_hosts` stands for.
    pub host_gateway: Option<std::net::IpAddr>,
}

/// No networking beyond `lo` (tests, and tools that start containers without the binary).
pub struct LoopbackOnly;

impl Networking for LoopbackOnly {
    fn prepare(&self, _: &Path, _: &ContainerConfig) -> Result<NetworkSetup, String> {
        Ok(NetworkSetup::default())
    }
    fn attach(&self, _: &Path, _: &ContainerConfig, _: i32) -> Result<(), String> {
        Ok(())
    }
    fn release(&self, _: &Path, _: &str) {}
}

/// The hidden verb of the shim's second stage (see [`Shim::hand_over`]).
pub const MONITOR_VERB: &str = "__monitor";

/// Entry point of `berth __monitor …`: the shim after its hand-over, with the descriptors its
/// first stage left open. Returns the process exit code. `network` releases what the
/// container held once it has exited.
pub fn monitor_main(args: &[String], network: &dyn Networking) -> i32 {
    let mut report = ReportPipe::stdout();
    let mut shim = match Shim::adopt(args) {
        Ok(s) => s,
        Err(e) => {
            // The container runs, but nobody watches it: say so where the user will look.
            eprintln!("shim monitor: {e}");
            return 1;
        }
    };
    let code = shim.run(None);
    if let [root, id, ..] = args
        && !shim.keep_network
    {
        network.release(Path::new(root), id);
    }
    report.send(&format!("exit {code}"));
    if shim.config.auto_remove {
        report.wait_for_starter(SESSION_GRACE);
    }
    report.close();
    shim.remove_if_asked();
    0
}

/// How long an exited `--rm` container waits for its starter to hang up the report pipe
/// before it is removed anyway.
const SESSION_GRACE: Duration = Duration::from_secs(10);

/// How long the first stage monitors a container itself before handing over.
const HAND_OVER_AFTER: Duration = Duration::from_millis(500);

/// When and how the first stage hands over to `__monitor`.
struct HandOver {
    at: std::time::Instant,
    root: PathBuf,
    exe: PathBuf,
}

/// The starter's pipe on fd 1: `ok <pid>` or `error …` first, `exit <code>` last. A starter
/// that went away makes the writes fail with EPIPE (SIGPIPE is ignored here), nothing more.
struct ReportPipe {
    closed: bool,
}

impl ReportPipe {
    fn stdout() -> ReportPipe {
        ReportPipe { closed: false }
    }
    fn send(&mut self, line: &str) {
        if self.closed {
            return;
        }
        let mut out = io::stdout().lock();
        let _ = writeln!(out, "{line}");
        let _ = out.flush();
    }
    /// Waits (at most `limit`) until the starter has hung up its end: a foreground `run
    /// --rm` does once it has read the container's output and its exit code. Removing the
    /// container before that lost the output of a quick command (`run --rm app echo hi`
    /// printed nothing now and then). A starter that detached has hung up already.
    fn wait_for_starter(&self, limit: Duration) {
        if self.closed
            || !rustix::fs::fstat(io::stdout()).is_ok_and(|st| {
                rustix::fs::FileType::from_raw_mode(st.st_mode) == rustix::fs::FileType::Fifo
            })
        {
            return;
        }
        let deadline = std::time::Instant::now() + limit;
        let stdout = io::stdout();
        while let Some(left) = deadline.checked_duration_since(std::time::Instant::now()) {
            // No event asked for: a pipe's writer gets POLLERR once no reader is left.
            let mut fds = [PollFd::new(stdout.as_fd(), PollFlags::empty())];
            let ms = u16::try_from(left.as_millis()).unwrap_or(u16::MAX);
            match poll(&mut fds, PollTimeout::from(ms)) {
                Ok(0) => return,
                Ok(_) => {
                    if fds[0].revents().is_some_and(|r| {
                        r.intersects(PollFlags::POLLERR | PollFlags::POLLHUP | PollFlags::POLLNVAL)
                    }) {
                        return;
                    }
                }
                Err(nix::errno::Errno::EINTR) => {}
                Err(_) => return,
            }
        }
    }

    /// Points fd 1 at /dev/null: the starter sees EOF.
    fn close(&mut self) {
        self.closed = true;
        if let Ok(null) = File::options().write(true).open("/dev/null") {
            let _ = nix::unistd::dup2(null.as_raw_fd(), 1);
        }
    }
}

struct Client {
    stream: UnixStream,
    buf: Vec<u8>,
    waiting: bool,
    /// After `attach`: every byte from the client is the container's input.
    attached: bool,
}

struct Shim {
    dir: ContainerDir,
    config: ContainerConfig,
    container: libcontainer::container::Container,
    pid: i32,
    pidfd: OwnedFd,
    stdout: Option<File>,
    stderr: Option<File>,
    /// Where attached clients' input goes: the stdin pipe (`-i`) or the pty master (`-t`).
    input: Option<File>,
    /// The pty master when the container has a terminal (also `stdout` reads from a clone).
    tty: bool,
    log: LogWriter,
    listener: UnixListener,
    socket: PathBuf,
    clients: Vec<Client>,
    rootfs: Rootfs,
    /// Opened by the monitor as it starts, for the cleanup after the exit (see `cgroupfs`);
    /// the first stage opens one if its container exits before the hand-over.
    cgroupfs: Option<CgroupFs>,
    /// A user's `stop` came: recorded with the exit, in the same write (see `handle`).
    manually_stopped: bool,
    /// The `stop` said its sender releases the networking ([`KEEP_NETWORK`]). Not handed
    /// over to the monitor: a stop that early only costs a release the sender repeats.
    keep_network: bool,
    _lock: Lock,
}

impl Shim {
    fn start(root: &Path, id: &str, network: &dyn Networking) -> Result<Shim, ShimError> {
        let stores =
            Stores::open(root).map_err(|e| ShimError::Msg(format!("open state root: {e}")))?;
        let store = ContainerStore::open(&stores.root)?;
        // Before this start puts its first runtime file there.
        crate::rundir::prepare(stores.root.path());
        let dir = store.dir_of(id);
        let config = dir.config()?;
        let lock = Lock::try_exclusive(&dir.shim_lock())?
            .ok_or_else(|| ShimError::Msg(format!("container {id} is already running")))?;
        // A user's later `kill`/`stop` must not be lost between the starter's request and the
        // container being up: the starter waits for our report before it can ask.
        let result = Self::launch(&stores, &store, &dir, &config, lock, network);
        if let Err(e) = &result {
            network.release(root, id);
            let msg = e.to_string();
            let _ = dir.update_state(|s| {
                s.status = if s.started_at.is_empty() {
                    Status::Created
                } else {
                    Status::Exited
                };
                s.error = msg;
                s.pid = None;
                s.shim_pid = None;
                if s.exit_code.is_none() {
                    s.exit_code = Some(128);
                }
            });
            cleanup_after_failure(&store, &dir, &config);
        }
        result
    }

    fn launch(
        stores: &Stores,
        store: &ContainerStore,
        dir: &ContainerDir,
        config: &ContainerConfig,
        lock: Lock,
        network: &dyn Networking,
    ) -> Result<Shim, ShimError> {
        let image_id = config
            .image_id
            .as_ref()
            .ok_or_else(|| ShimError::Msg("container has no image".to_string()))?;
        let image = stores
            .images
            .get(image_id)
            .map_err(|e| ShimError::Msg(e.to_string()))?
            .ok_or_else(|| ShimError::Msg(format!("image {image_id} is gone")))?;
        // `container:x` namespaces: x's running init's, as of this start.
        let init_of = |other: &str, what: &str| -> Result<i32, ShimError> {
            let st = observed_state(&store.dir_of(other))?;
            match (st.status, st.pid) {
                (Status::Running | Status::Paused, Some(pid)) => Ok(pid),
                _ => Err(ShimError::Msg(format!(
                    "cannot join the {what} namespace of container {other}: it is not running"
                ))),
            }
        };
        // The init whose /dev/shm comes along with a joined IPC namespace.
        let mut ipc_owner = None;
        let joined;
        let config = if matches!(config.network, NetworkConfig::Container(_))
            || matches!(config.pid, NamespaceMode::Container(_))
            || matches!(config.ipc, NamespaceMode::Container(_))
        {
            let mut c = config.clone();
            if let NetworkConfig::Container(other) = &config.network {
                let pid = init_of(other, "network")?;
                c.network = NetworkConfig::Join(PathBuf::from(format!("/proc/{pid}/ns/net")));
            }
            if let NamespaceMode::Container(other) = &config.pid {
                let pid = init_of(other, "PID")?;
                c.pid = NamespaceMode::Join(PathBuf::from(format!("/proc/{pid}/ns/pid")));
            }
            if let NamespaceMode::Container(other) = &config.ipc {
                let pid = init_of(other, "IPC")?;
                c.ipc = NamespaceMode::Join(PathBuf::from(format!("/proc/{pid}/ns/ipc")));
                // Its /dev/shm comes along (see `clone_foreign_mount`).
                ipc_owner = Some(pid);
            }
            joined = c;
            &joined
        } else {
            config
        };
        // The overlay is mounted in a mount namespace of the shim's own. The host's mount
        // table then holds no line per running container: libcgroups v1 reads it once per
        // controller on every start (youki once more), and `up -d` of 50 services spent an
        // eighth of its CPU there. A shim killed outright takes its mount along; the
        // container keeps its own copy. The lock orders this with a `cp` or `export` that
        // mounts a stopped container's rootfs on the host: it is held until the state names
        // this shim, where they find the mount from then on.
        let mounting = Lock::exclusive(&dir.rootfs_lock())?;
        enter_private_mount_namespace();
        let rootfs = Rootfs::mount(stores, &image, &dir.path)?;
        let volume_sources =
            prepare_mounts(&stores.root, config, rootfs.merged(), &dir.files_dir())?;

        // The bundle.
        let bundle = store.bundle_dir(&dir.id);
        fs::create_dir_all(&bundle).map_err(io_err("create the bundle directory"))?;
        // The joined container's /dev/shm, a mount of its own mount namespace, cloned into
        // the shim's for the runtime to bind.
        let staged_shm = match ipc_owner {
            Some(pid) => {
                let target = bundle.join("shm");
                clone_foreign_mount(pid, "/dev/shm", &target)?;
                Some(target)
            }
            None => None,
        };
        let ipc_shm = staged_shm.clone();
        let ctx = SpecContext {
            rootfs: rootfs.merged().to_path_buf(),
            etc_dir: bundle.clone(),
            files_dir: dir.files_dir(),
            ipc_shm,
            cgroups_path: cgroups_path(config),
            volume_sources,
            init_binary: init_binary(config),
            cgroup_v2: crate::container::spec::host_cgroup_v2(),
        };
        let own_netns = matches!(config.network, NetworkConfig::Private | NetworkConfig::None);
        let setup = if own_netns {
            network
                .prepare(stores.root.path(), config)
                .map_err(|e| ShimError::Msg(format!("network setup: {e}")))?
        } else {
            NetworkSetup::default()
        };
        crate::container::etc::write_etc_files(
            config,
            &bundle,
            &crate::container::etc::HostFiles::default(),
            &setup.addresses,
            &setup.nameservers,
            setup.host_gateway,
        )?;
        let mut spec = build_spec(config, &ctx)?;
        let seccomp =
            crate::container::seccomp_bpf::take_from_spec(&mut spec, &seccomp_cache_dir(store))
                .map_err(|e| ShimError::Msg(e.to_string()))?;
        let spec_json = serde_json::to_vec(&spec)
            .map_err(|e| ShimError::Msg(format!("serialise the OCI spec: {e}")))?;
        // Rewritten at every start: no fsync needed.
        fsutil::write_replace(&bundle.join("config.json"), &spec_json)?;

        // stdio: pipes whose read ends we keep (with a terminal, the runtime sends us the pty
        // master over a console socket instead). Close-on-exec, as every descriptor of the
        // shim: the runtime puts the container's ends on 0-2 itself, and anything the shim
        // spawns (the DNS daemon, `nft`) must not hold them. A DNS daemon started by a shim
        // kept that container's stdin open for good, so its input never ended.
        let pipe = || {
            nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| io_err("pipe")(e.into()))
        };
        let (out_r, out_w) = pipe()?;
        let (err_r, err_w) = pipe()?;
        let (stdin_r, stdin_w): (OwnedFd, Option<File>) =
            if config.process.stdin_open && !config.process.tty {
                let (r, w) = pipe()?;
                (r, Some(File::from(w)))
            } else {
                let null = File::open("/dev/null").map_err(io_err("open /dev/null"))?;
                (OwnedFd::from(null), None)
            };
        let console = if config.process.tty {
            let path = store
                .run_dir()
                .join("c")
                .join(format!("{}.sock", &dir.id[..12]));
            if let Some(parent) = path.parent() {
                fs::create_dir_all(parent).map_err(io_err("create the console directory"))?;
            }
            let _ = fs::remove_file(&path);
            let listener = UnixListener::bind(&path).map_err(io_err("bind the console socket"))?;
            Some((listener, path))
        } else {
            None
        };

        let rt_root = runtime_root(store);
        fs::create_dir_all(&rt_root).map_err(io_err("create the runtime directory"))?;
        let rt_id = runtime_id(&dir.id).to_string();
        // A leftover runtime state of an earlier run of this container (its shim was killed)
        // would make the create fail: remove it.
        remove_runtime_state(&rt_root, &rt_id);
        warm_runtime_caches();
        let container = libcontainer::container::builder::ContainerBuilder::new(
            rt_id.clone(),
            libcontainer::syscall::syscall::SyscallType::default(),
        )
        .with_root_path(&rt_root)
        .map_err(|e| ShimError::Runtime(e.to_string()))?
        .with_stdin(stdin_r)
        .with_stdout(out_w)
        .with_stderr(err_w)
        .with_console_socket(console.as_ref().map(|(_, p)| p.clone()))
        .with_executor(ShimExecutor { seccomp })
        .as_init(&bundle)
        .with_systemd(false)
        .with_detach(true)
        .build();
        // The container has its own copy of the mount by now (or failed).
        if let Some(staged) = &staged_shm {
            let _ = nix::mount::umount2(staged, nix::mount::MntFlags::MNT_DETACH);
        }
        let container = match container {
            Ok(c) => c,
            Err(e) => {
                if let Some((_, path)) = &console {
                    let _ = fs::remove_file(path);
                }
                return Err(ShimError::Runtime(e.to_string()));
            }
        };
        let mut container = container;
        let master = match &console {
            Some((listener, path)) => {
                let master = receive_pty_master(listener);
                let _ = fs::remove_file(path);
                Some(master?)
            }
            None => None,
        };
        let pid = container
            .pid()
            .ok_or_else(|| ShimError::Runtime("the runtime reported no pid".to_string()))?
            .as_raw();
        let pidfd = rustix::process::pidfd_open(
            rustix::process::Pid::from_raw(pid)
                .ok_or_else(|| ShimError::Runtime(format!("bad pid {pid}")))?,
            rustix::process::PidfdFlags::empty(),
        )
        .map_err(|e| io_err("pidfd_open")(e.into()))?;
        let log = LogWriter::open(&dir.log_dir(), &config.log)
            .map_err(|e| ShimError::Msg(format!("open the log: {e}")))?;

        let socket = socket_path(store, &dir.id);
        if let Some(parent) = socket.parent() {
            fs::create_dir_all(parent).map_err(io_err("create the socket directory"))?;
        }
        let _ = fs::remove_file(&socket);
        let listener = UnixListener::bind(&socket).map_err(io_err("bind the control socket"))?;
        listener
            .set_nonblocking(true)
            .map_err(io_err("control socket"))?;

        if own_netns {
            network
                .attach(stores.root.path(), config, pid)
                .map_err(|e| ShimError::Msg(format!("network setup: {e}")))?;
        }
        if config.resources.oom_kill_disable {
            disable_oom_killer(config);
        }
        let now = now_rfc3339();
        let shim_pid = std::process::id() as i32;
        let shim_start_time = process_start_time(shim_pid);
        container
            .start()
            .map_err(|e| ShimError::Runtime(e.to_string()))?;
        dir.update_state(|s| {
            s.status = Status::Running;
            s.pid = Some(pid);
            s.shim_pid = Some(shim_pid);
            s.shim_start_time = shim_start_time;
            s.started_at = now;
            s.finished_at.clear();
            s.exit_code = None;
            s.oom_killed = false;
            s.error.clear();
            // Each start begins `starting` with a fresh streak; the log of earlier runs stays
            // (as Docker's). A container without an active check has no health at all.
            s.health = match config.healthcheck.as_ref().and_then(|h| h.probe_args()) {
                Some(_) => Some(Health {
                    status: HealthStatus::Starting,
                    failing_streak: 0,
                    log: s.health.take().map(|h| h.log).unwrap_or_default(),
                }),
                None => None,
            };
        })?;
        drop(mounting);
        // Here rather than in the starter: a container that exits at once records its `die`
        // in this process, which must come after its `start`.
        events::emit_for(dir, "start", &[]);
        for f in [&out_r, &err_r] {
            set_nonblocking(f)?;
        }
        let (stdout, input, stderr) = match master {
            Some(master) => {
                set_nonblocking(&master)?;
                let reader = master.try_clone().map_err(io_err("dup the pty master"))?;
                // With a terminal both streams are the pty: the pipes stay unused.
                (File::from(reader), Some(File::from(master)), None)
            }
            None => (File::from(out_r), stdin_w, Some(File::from(err_r))),
        };
        Ok(Shim {
            dir: dir.clone(),
            config: config.clone(),
            container,
            pid,
            pidfd,
            stdout: Some(stdout),
            stderr,
            input,
            tty: config.process.tty,
            log,
            listener,
            socket,
            clients: Vec::new(),
            rootfs,
            cgroupfs: None,
            manually_stopped: false,
            keep_network: false,
            _lock: lock,
        })
    }

    /// Re-executes the binary as `__monitor`, passing every descriptor the poll loop needs
    /// (pidfd, output pipes or pty, stdin, control socket, the held `shim.lock`) by number.
    /// Returns only on failure. The start-up (store, image, spec, libcontainer) leaves a
    /// megabyte of private memory behind; the monitor starts with none of it.
    fn hand_over(&mut self, root: &Path, exe: &Path) -> Result<(), ShimError> {
        if let Err(e) = self.log.flush_partial() {
            eprintln!("shim: log: {e}");
        }
        if self.manually_stopped {
            // The monitor starts without it: the record keeps it.
            let _ = self.dir.update_state(|s| s.manually_stopped = true);
        }
        let fd_of = |f: Option<&File>| f.map(|f| f.as_raw_fd()).unwrap_or(-1);
        let fds = [
            self.pidfd.as_raw_fd(),
            fd_of(self.stdout.as_ref()),
            fd_of(self.stderr.as_ref()),
            fd_of(self.input.as_ref()),
            self.listener.as_raw_fd(),
            self._lock.file().as_raw_fd(),
        ];
        for fd in fds.iter().filter(|fd| **fd >= 0) {
            sys::keep_across_exec(*fd).map_err(io_err("clear close-on-exec"))?;
        }
        let mut args = vec![
            MONITOR_VERB.to_string(),
            root.to_string_lossy().into_owned(),
            self.dir.id.clone(),
            self.pid.to_string(),
        ];
        args.extend(fds.iter().map(|fd| fd.to_string()));
        let err = Command::new(exe).args(&args).exec();
        // Still here: the descriptors go back to close-on-exec so the container's later
        // execs (none from this process) and our own spawns don't inherit them.
        for fd in fds.iter().filter(|fd| **fd >= 0) {
            let _ = sys::close_on_exec(*fd);
        }
        Err(io_err("exec the monitor")(err))
    }

    /// The second stage: rebuilds the shim around inherited descriptors
    /// (`ROOT ID PID PIDFD OUT ERR IN LISTENER LOCK`, -1 for none).
    fn adopt(args: &[String]) -> Result<Shim, ShimError> {
        let [root, id, pid, fds @ ..] = args else {
            return Err(ShimError::Msg(
                "usage: __monitor ROOT ID PID FDS…".to_string(),
            ));
        };
        let fds: Vec<i32> = fds
            .iter()
            .map(|f| f.parse::<i32>())
            .collect::<Result<_, _>>()
            .map_err(|_| ShimError::Msg(format!("bad descriptor list {fds:?}")))?;
        let [pidfd, out, err, input, listener, lock] = fds[..] else {
            return Err(ShimError::Msg(format!(
                "expected 6 descriptors, got {fds:?}"
            )));
        };
        let pid: i32 = pid
            .parse()
            .map_err(|_| ShimError::Msg(format!("bad pid {pid:?}")))?;
        // Take ownership of every inherited descriptor first, so none leaks on an error below.
        let take = |fd: i32| (fd >= 0).then(|| sys::adopt_fd(fd));
        let pidfd = take(pidfd);
        let out = take(out).map(File::from);
        let err = take(err).map(File::from);
        let input = take(input).map(File::from);
        let listener = take(listener).map(UnixListener::from);
        let lock = take(lock).map(File::from);
        for fd in [&out, &err, &input, &lock].into_iter().flatten() {
            let _ = sys::close_on_exec(fd.as_raw_fd());
        }
        let (Some(pidfd), Some(listener), Some(lock)) = (pidfd, listener, lock) else {
            return Err(ShimError::Msg(
                "pidfd, listener and lock are required".to_string(),
            ));
        };
        let _ = sys::close_on_exec(pidfd.as_raw_fd());
        let _ = sys::close_on_exec(listener.as_raw_fd());
        let root_path = PathBuf::from(root);
        let root = crate::layout::Root::open(&root_path)
            .map_err(|e| ShimError::Msg(format!("open state root: {e}")))?;
        let store = ContainerStore::open(&root)?;
        let dir = store.dir_of(id);
        let config = dir.config()?;
        let container = libcontainer::container::Container::load(
            runtime_root(&store).join(runtime_id(&dir.id)),
        )
        .map_err(|e| ShimError::Runtime(e.to_string()))?;
        let log = LogWriter::open(&dir.log_dir(), &config.log)
            .map_err(|e| ShimError::Msg(format!("open the log: {e}")))?;
        Ok(Shim {
            socket: socket_path(&store, &dir.id),
            rootfs: Rootfs::at(&dir.path),
            _lock: Lock::from_held(lock, &dir.shim_lock()),
            tty: config.process.tty,
            dir,
            config,
            container,
            pid,
            pidfd,
            stdout: out,
            stderr: err,
            input,
            log,
            listener,
            clients: Vec::new(),
            cgroupfs: CgroupFs::open().ok(),
            manually_stopped: false,
            keep_network: false,
        })
    }

    /// The poll loop; returns the exit code once the container has exited and everything is
    /// recorded.
    fn run(&mut self, mut handover: Option<HandOver>) -> i32 {
        let mut exit: Option<i32> = None;
        let mut buf = vec![0u8; 32 * 1024];
        loop {
            if exit.is_none() {
                exit = self.reap();
            }
            if exit.is_some() && self.stdout.is_none() && self.stderr.is_none() {
                break;
            }
            let mut fds: Vec<PollFd<'_>> = Vec::with_capacity(4 + self.clients.len());
            let mut kinds: Vec<u8> = Vec::with_capacity(4 + self.clients.len());
            if exit.is_none() {
                fds.push(PollFd::new(self.pidfd.as_fd(), PollFlags::POLLIN));
                kinds.push(0);
            }
            if let Some(f) = &self.stdout {
                fds.push(PollFd::new(f.as_fd(), PollFlags::POLLIN));
                kinds.push(1);
            }
            if let Some(f) = &self.stderr {
                fds.push(PollFd::new(f.as_fd(), PollFlags::POLLIN));
                kinds.push(2);
            }
            fds.push(PollFd::new(self.listener.as_fd(), PollFlags::POLLIN));
            kinds.push(3);
            for c in &self.clients {
                fds.push(PollFd::new(c.stream.as_fd(), PollFlags::POLLIN));
                kinds.push(4);
            }
            // After the exit, the output pipes are drained without blocking on them forever:
            // a process that escaped the pid namespace could hold them open.
            let timeout = if exit.is_some() {
                PollTimeout::from(200u16)
            } else if let Some(h) = &handover {
                let left = h.at.saturating_duration_since(std::time::Instant::now());
                PollTimeout::try_from(left).unwrap_or(PollTimeout::from(500u16))
            } else {
                PollTimeout::NONE
            };
            match poll(&mut fds, timeout) {
                Ok(0) if exit.is_some() => {
                    self.stdout = None;
                    self.stderr = None;
                    continue;
                }
                Ok(0) => {
                    let now = std::time::Instant::now();
                    let due = handover.as_ref().is_some_and(|h| now >= h.at);
                    // An attached session would lose its connection: wait for its end.
                    if due && self.clients.iter().any(|c| c.attached) {
                        if let Some(h) = &mut handover {
                            h.at = now + HAND_OVER_AFTER;
                        }
                        continue;
                    }
                    if due && let Some(h) = handover.take() {
                        drop(fds);
                        // Returns only when the exec failed: then this process goes on.
                        if let Err(e) = self.hand_over(&h.root, &h.exe) {
                            eprintln!(
                                "shim: cannot hand over to a monitor ({e}); monitoring in place"
                            );
                        }
                    }
                    continue;
                }
                Ok(_) => {}
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => {
                    eprintln!("shim: poll: {e}");
                    std::thread::sleep(Duration::from_millis(100));
                    continue;
                }
            }
            let ready: Vec<(u8, usize)> = fds
                .iter()
                .enumerate()
                .filter(|(_, f)| f.revents().is_some_and(|r| !r.is_empty()))
                .map(|(i, _)| (kinds[i], i))
                .collect();
            drop(fds);
            // Clients are polled last, in `self.clients` order; new ones are appended by
            // `accept`, so these indexes stay valid until served (highest first, as serving
            // may `swap_remove`).
            let first_client = kinds.iter().position(|k| *k == 4).unwrap_or(usize::MAX);
            let mut readable_clients = Vec::new();
            for (kind, i) in ready {
                match kind {
                    1 => self.pump(Stream::Stdout, &mut buf),
                    2 => self.pump(Stream::Stderr, &mut buf),
                    3 => self.accept(),
                    4 => readable_clients.push(i - first_client),
                    _ => {}
                }
            }
            for i in readable_clients.into_iter().rev() {
                self.serve(i, exit);
            }
        }
        let code = exit.unwrap_or(255);
        self.finish(code);
        code
    }

    /// Reaps children; returns the init process' exit code once it has exited.
    fn reap(&mut self) -> Option<i32> {
        let mut result = None;
        loop {
            match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::Exited(pid, code)) if pid.as_raw() == self.pid => {
                    result = Some(code)
                }
                Ok(WaitStatus::Signaled(pid, sig, _)) if pid.as_raw() == self.pid => {
                    result = Some(128 + sig as i32)
                }
                Ok(WaitStatus::StillAlive) | Err(_) => break,
                Ok(_) => {}
            }
        }
        result
    }

    fn pump(&mut self, stream: Stream, buf: &mut [u8]) {
        let slot = match stream {
            Stream::Stdout => &mut self.stdout,
            Stream::Stderr => &mut self.stderr,
        };
        let Some(file) = slot else { return };
        loop {
            match file.read(buf) {
                Ok(0) => {
                    *slot = None;
                    return;
                }
                Ok(n) => {
                    if let Err(e) = self.log.write(stream, &buf[..n]) {
                        eprintln!("shim: log: {e}");
                    }
                    if self.tty {
                        // A terminal's output goes to attached clients as it comes (the log
                        // keeps whole lines; a prompt has none).
                        for c in self.clients.iter_mut().filter(|c| c.attached) {
                            let _ = c.stream.set_nonblocking(false);
                            let _ = c.stream.write_all(&buf[..n]);
                            let _ = c.stream.set_nonblocking(true);
                        }
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                // A pty master reads EIO once the last process holding the terminal is gone.
                Err(_) => {
                    *slot = None;
                    return;
                }
            }
        }
    }

    fn accept(&mut self) {
        while let Ok((stream, _)) = self.listener.accept() {
            if stream.set_nonblocking(true).is_ok() {
                self.clients.push(Client {
                    stream,
                    buf: Vec::new(),
                    waiting: false,
                    attached: false,
                });
            }
        }
    }

    fn serve(&mut self, i: usize, exit: Option<i32>) {
        let mut chunk = [0u8; 4096];
        let closed = loop {
            match self.clients[i].stream.read(&mut chunk) {
                Ok(0) => break true,
                Ok(n) if self.clients[i].attached => self.feed_input(&chunk[..n]),
                Ok(n) => {
                    self.clients[i].buf.extend_from_slice(&chunk[..n]);
                    if self.clients[i].buf.len() > 4096 {
                        break true;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break false,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => break true,
            }
        };
        while !self.clients[i].attached
            && let Some(pos) = self.clients[i].buf.iter().position(|b| *b == b'\n')
        {
            let line: Vec<u8> = self.clients[i].buf.drain(..=pos).collect();
            let line = String::from_utf8_lossy(&line).trim().to_string();
            let reply = self.handle(&line, i, exit);
            if let Some(reply) = reply {
                let _ = self.clients[i].stream.set_nonblocking(false);
                let _ = writeln!(self.clients[i].stream, "{reply}");
                let _ = self.clients[i].stream.set_nonblocking(true);
            }
        }
        if self.clients[i].attached && !self.clients[i].buf.is_empty() {
            // Input that came in the same read as the `attach` line.
            let rest = std::mem::take(&mut self.clients[i].buf);
            self.feed_input(&rest);
        }
        if closed {
            let client = self.clients.swap_remove(i);
            // The attached client's input ended: the container's stdin ends too (as docker
            // closes stdin when `run -i`'s input ends). A terminal stays open.
            if client.attached && !self.tty {
                self.input = None;
            }
        }
    }

    /// Writes attached input to the container (blocking: a container that does not read its
    /// stdin holds up its own input, never its output for long: the pipe takes 64 KiB).
    fn feed_input(&mut self, bytes: &[u8]) {
        let Some(input) = &mut self.input else { return };
        let mut rest = bytes;
        while !rest.is_empty() {
            match input.write(rest) {
                Ok(n) => rest = &rest[n..],
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err(_) => {
                    self.input = None;
                    return;
                }
            }
        }
    }

    fn handle(&mut self, line: &str, client: usize, exit: Option<i32>) -> Option<String> {
        let mut words = line.split_whitespace();
        let verb = words.next().unwrap_or("");
        Some(match verb {
            // `stop SIG`: a user's stop (Docker marks the container manually stopped, so no
            // restart policy brings it back). The mark goes into the exit's record: one
            // durable write less per container in a `stop` or `down`.
            "kill" | "stop" => {
                if exit.is_some() {
                    return Some("error container is not running".to_string());
                }
                if verb == "stop" {
                    self.manually_stopped = true;
                }
                let sig = words
                    .next()
                    .and_then(|s| s.parse::<i32>().ok())
                    .unwrap_or(15);
                // Only a stop that reached the container: the sender releases only
                // containers whose stop it saw succeed.
                let keep_network = verb == "stop" && words.next() == Some(KEEP_NETWORK);
                match Signal::try_from(sig) {
                    Ok(sig) => match nix::sys::signal::kill(Pid::from_raw(self.pid), sig) {
                        Ok(()) => {
                            self.keep_network |= keep_network;
                            "ok".to_string()
                        }
                        Err(e) => format!("error kill: {e}"),
                    },
                    Err(_) => format!("error invalid signal {sig}"),
                }
            }
            "wait" => match exit {
                Some(code) => format!("exit {code}"),
                None => {
                    self.clients[client].waiting = true;
                    return None;
                }
            },
            "pause" => match self.container.pause() {
                Ok(()) => {
                    let _ = self.dir.update_state(|s| s.status = Status::Paused);
                    "ok".to_string()
                }
                Err(e) => format!("error pause: {e}"),
            },
            "resume" => match self.container.resume() {
                Ok(()) => {
                    let _ = self.dir.update_state(|s| s.status = Status::Running);
                    "ok".to_string()
                }
                Err(e) => format!("error resume: {e}"),
            },
            "pid" => format!("ok {}", self.pid),
            "attach" => {
                if self.input.is_none() {
                    return Some("error the container's stdin is not open".to_string());
                }
                self.clients[client].attached = true;
                "ok".to_string()
            }
            "resize" => {
                let rows = words.next().and_then(|w| w.parse::<u16>().ok());
                let cols = words.next().and_then(|w| w.parse::<u16>().ok());
                match (self.tty, &self.input, rows, cols) {
                    (true, Some(master), Some(rows), Some(cols)) => {
                        let size = rustix::termios::Winsize {
                            ws_row: rows,
                            ws_col: cols,
                            ws_xpixel: 0,
                            ws_ypixel: 0,
                        };
                        match rustix::termios::tcsetwinsize(master, size) {
                            Ok(()) => "ok".to_string(),
                            Err(e) => format!("error resize: {e}"),
                        }
                    }
                    (false, ..) => "error the container has no terminal".to_string(),
                    _ => "error usage: resize ROWS COLS".to_string(),
                }
            }
            _ => format!("error unknown request {verb:?}"),
        })
    }

    /// Records the exit, cleans up the runtime state, cgroup and rootfs, answers the waiters.
    fn finish(&mut self, code: i32) {
        if let Err(e) = self.log.flush_partial() {
            eprintln!("shim: log: {e}");
        }
        let cg = cgroups_path(&self.config);
        let cgroupfs = self.cgroupfs.take().or_else(|| CgroupFs::open().ok());
        let oom = cgroupfs.as_ref().is_some_and(|fs| fs.oom_killed(&cg));
        // The init has exited, and with it the rest of its pid namespace: what libcontainer's
        // `delete` would do is left to remove (no hooks, no Intel RDT here). Its cgroup
        // manager read /proc/self/mountinfo once per v1 controller, and that file holds a
        // line per running container: a quarter of the CPU of `down` went there.
        if let Some(fs) = &cgroupfs {
            fs.remove(&cg);
        }
        for dir in [&self.container.root, self.container.bundle()] {
            if let Err(e) = fs::remove_dir_all(dir) {
                eprintln!("shim: delete runtime state {}: {e}", dir.display());
            }
        }
        if let Err(e) = self.rootfs.unmount() {
            eprintln!("shim: {e}");
        }
        let now = now_rfc3339();
        let manually_stopped = self.manually_stopped;
        let mut started_at = String::new();
        let _ = self.dir.update_state(|s| {
            s.status = Status::Exited;
            s.pid = None;
            s.shim_pid = None;
            s.shim_start_time = None;
            s.finished_at = now;
            s.exit_code = Some(code);
            s.oom_killed = oom;
            s.manually_stopped |= manually_stopped;
            started_at.clone_from(&s.started_at);
        });
        if oom {
            events::emit_for(&self.dir, "oom", &[]);
        }
        let ran_for = chrono::DateTime::parse_from_rfc3339(&started_at)
            .map(|t| (chrono::Utc::now() - t.to_utc()).num_seconds().max(0))
            .unwrap_or(0);
        events::emit_for(
            &self.dir,
            "die",
            &[
                ("exitCode", code.to_string()),
                ("execDuration", ran_for.to_string()),
            ],
        );
        let _ = fs::remove_file(&self.socket);
        // Requests that came with the exit were never read: the loop ends once the output
        // is drained, and a connection made before the socket's name went may be accepted
        // but unserved, or still queued. Unanswered, such a client waits until this process
        // exits, which a `--rm` container's shim puts off until its starter hangs up, and
        // the starter may be that client (`run -i` attaching as its container exits). They
        // are all served now, with the exit; those whose request has not come are hung up on
        // (their client asks again, or reads the exit from the record).
        self.accept();
        for i in (0..self.clients.len()).rev() {
            if !self.clients[i].attached {
                self.serve(i, Some(code));
            }
        }
        self.clients.retain(|c| c.attached || c.waiting);
        for c in &mut self.clients {
            if c.waiting {
                let _ = c.stream.set_nonblocking(false);
                let _ = writeln!(c.stream, "exit {code}");
            }
        }
    }

    /// `--rm`: the record goes once the exit is reported.
    fn remove_if_asked(&self) {
        if !self.config.auto_remove {
            return;
        }
        let Some(root) = self.dir.path.parent().and_then(Path::parent) else {
            return;
        };
        if let Ok(root) = crate::layout::Root::open(root)
            && let Ok(store) = ContainerStore::open(&root)
        {
            let _ = store.remove(&self.dir);
            crate::container::lifecycle::remove_anonymous_volumes(&root, &store, &self.config);
        }
    }
}

/// Mounts a copy of the mount at `path` in the mount namespace of process `pid` (a
/// container's: `/dev/shm`) at `target`, a new directory. A mount of another namespace cannot
/// be bound directly (EINVAL), so the shim, single-threaded, steps into that namespace to
/// clone it (`open_tree`) and back, and attaches the clone here (`move_mount`).
fn clone_foreign_mount(pid: i32, path: &str, target: &Path) -> Result<(), ShimError> {
    use rustix::mount::{MoveMountFlags, OpenTreeFlags, move_mount, open_tree};
    use rustix::thread::{LinkNameSpaceType, move_into_link_name_space};
    let fail = |what: &str, e: &dyn std::fmt::Display| {
        ShimError::Msg(format!("share the {path} of process {pid}: {what}: {e}"))
    };
    let open = |p: &str| File::open(p).map_err(|e| fail(&format!("open {p}"), &e));
    let ours = open("/proc/self/ns/mnt")?;
    let theirs = open(&format!("/proc/{pid}/ns/mnt"))?;
    let cwd = open(".")?;
    move_into_link_name_space(theirs.as_fd(), Some(LinkNameSpaceType::Mount))
        .map_err(|e| fail("enter its mount namespace", &e))?;
    let tree = open_tree(
        rustix::fs::CWD,
        path,
        OpenTreeFlags::OPEN_TREE_CLONE | OpenTreeFlags::OPEN_TREE_CLOEXEC,
    );
    if let Err(e) = move_into_link_name_space(ours.as_fd(), Some(LinkNameSpaceType::Mount)) {
        // Anything this shim did from here on would be in the other container's mounts.
        eprintln!("shim: cannot return to its own mount namespace: {e}");
        std::process::abort();
    }
    rustix::process::fchdir(&cwd).map_err(|e| fail("return to its directory", &e))?;
    let tree = tree.map_err(|e| fail("clone the mount", &e))?;
    fs::create_dir_all(target).map_err(io_err("create a staging directory"))?;
    move_mount(
        tree.as_fd(),
        "",
        rustix::fs::CWD,
        target,
        MoveMountFlags::MOVE_MOUNT_F_EMPTY_PATH,
    )
    .map_err(|e| fail("attach the clone", &e))
}

/// Moves this (single-threaded) shim into a mount namespace of its own, a slave of the
/// host's: the host's unmounts still reach it (a disk the user unmounts is not held busy by
/// every shim), while what it mounts stays in it. Best effort: without one, the rootfs is
/// mounted on the host, as before.
fn enter_private_mount_namespace() {
    use nix::mount::{MsFlags, mount};
    use nix::sched::{CloneFlags, unshare};
    if let Err(e) = unshare(CloneFlags::CLONE_NEWNS) {
        eprintln!("shim: no mount namespace of its own ({e}): the rootfs is mounted on the host");
        return;
    }
    if let Err(e) = mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_REC | MsFlags::MS_SLAVE,
        None::<&str>,
    ) {
        eprintln!("shim: cannot make its mount namespace a slave of the host's ({e})");
    }
}

/// Volumes: each one's host directory, filled from the image on first use (Docker's copy-up)
/// unless `nocopy`. Binds: a missing source is created when the short syntax asked for it,
/// else refused. Files written at create must still be there.
fn prepare_mounts(
    root: &crate::layout::Root,
    config: &ContainerConfig,
    rootfs: &Path,
    files_dir: &Path,
) -> Result<BTreeMap<String, PathBuf>, ShimError> {
    let mut sources = BTreeMap::new();
    let mut volumes = None;
    for m in &config.mounts {
        match &m.kind {
            MountKind::Volume { name, nocopy, .. } => {
                let store = match &volumes {
                    Some(s) => s,
                    None => volumes.insert(
                        VolumeStore::open(root).map_err(|e| ShimError::Msg(e.to_string()))?,
                    ),
                };
                let vol_err = |e: crate::volumes::VolumeError| ShimError::Msg(e.to_string());
                let volume = match store.get(name) {
                    Ok(v) => v,
                    // Removed behind the container's back: made again, as Docker does.
                    Err(_) => store
                        .create(name, &crate::volumes::VolumeOptions::default())
                        .map_err(vol_err)?,
                };
                if !nocopy {
                    store.populate(name, rootfs, &m.target).map_err(vol_err)?;
                }
                sources.insert(name.clone(), store.mountpoint_of(&volume));
            }
            MountKind::Bind {
                source,
                create_host_path,
                ..
            } => {
                if !source.exists() {
                    if *create_host_path {
                        fs::create_dir_all(source).map_err(io_err("create the bind source"))?;
                    } else {
                        return Err(ShimError::Msg(format!(
                            "invalid mount config for type \"bind\": bind source path does not exist: {}",
                            source.display()
                        )));
                    }
                }
            }
            MountKind::File { name } => {
                let path = files_dir.join(name);
                if !path.is_file() {
                    return Err(ShimError::Msg(format!(
                        "the file for {} is missing: {} (recreate the container)",
                        m.target,
                        path.display()
                    )));
                }
            }
            MountKind::Tmpfs { .. } => {}
        }
    }
    Ok(sources)
}

/// Receives the pty master the runtime sends over the console socket (SCM_RIGHTS).
pub(crate) fn receive_pty_master(listener: &UnixListener) -> Result<OwnedFd, ShimError> {
    use rustix::net::{RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, recvmsg};
    use std::mem::MaybeUninit;
    let (conn, _) = listener
        .accept()
        .map_err(io_err("accept the console socket"))?;
    conn.set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(io_err("console socket"))?;
    let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(1))];
    let mut control = RecvAncillaryBuffer::new(&mut space);
    let mut name = [0u8; 256];
    let mut iov = [io::IoSliceMut::new(&mut name)];
    recvmsg(&conn, &mut iov, &mut control, RecvFlags::CMSG_CLOEXEC)
        .map_err(|e| io_err("receive the pty master")(e.into()))?;
    for msg in control.drain() {
        if let RecvAncillaryMessage::ScmRights(mut fds) = msg
            && let Some(fd) = fds.next()
        {
            return Ok(fd);
        }
    }
    Err(ShimError::Runtime(
        "the runtime sent no terminal over the console socket".to_string(),
    ))
}

fn set_nonblocking(fd: &OwnedFd) -> Result<(), ShimError> {
    use nix::fcntl::{FcntlArg, OFlag, fcntl};
    let flags = fcntl(fd.as_raw_fd(), FcntlArg::F_GETFL).map_err(|e| io_err("fcntl")(e.into()))?;
    fcntl(
        fd.as_raw_fd(),
        FcntlArg::F_SETFL(OFlag::from_bits_truncate(flags) | OFlag::O_NONBLOCK),
    )
    .map_err(|e| io_err("fcntl")(e.into()))?;
    Ok(())
}

/// `/<cgroup_parent>/<id>`.
pub fn cgroups_path(config: &ContainerConfig) -> String {
    let parent = if config.cgroup_parent.is_empty() {
        "berth"
    } else {
        config.cgroup_parent.trim_matches('/')
    };
    format!("/{parent}/{}", config.id)
}

/// `oom_kill_disable` on a cgroup v1 host (v2 has no such switch; Docker drops it there),
/// written by the shim because libcontainer applies every memory setting but this one.
fn disable_oom_killer(config: &ContainerConfig) {
    let file = Path::new("/sys/fs/cgroup/memory")
        .join(cgroups_path(config).trim_start_matches('/'))
        .join("memory.oom_control");
    if file.exists()
        && let Err(e) = fs::write(&file, "1")
    {
        eprintln!("shim: oom_kill_disable: write {}: {e}", file.display());
    }
}

/// The init binary bind-mounted for `init: true` (Docker's docker-init is tini, too).
fn init_binary(config: &ContainerConfig) -> Option<PathBuf> {
    if !config.init {
        return None;
    }
    let from_env = std::env::var_os("BERTH_INIT_PATH").map(PathBuf::from);
    from_env.or_else(|| Some(PathBuf::from("/usr/bin/tini-static")))
}

/// Removes the container's cgroup (if the runtime left it) and then its parents, as long as
/// they are empty (see [`CgroupFs::remove_parents`]).
pub fn remove_cgroup_parents(cgroups_path: &str) {
    if let Ok(fs) = CgroupFs::open() {
        fs.remove_parents(cgroups_path);
    }
}

/// SIGKILLs every process of the cgroup until it is empty or `max` has passed (see
/// [`CgroupFs::kill`]).
pub fn kill_cgroup(cgroups_path: &str, max: Duration) {
    if let Ok(fs) = CgroupFs::open() {
        fs.kill(cgroups_path, max);
    }
}

/// Fills, in the shim, the per-process caches of the crates libcontainer uses, so that its
/// intermediate and init processes (forks of the shim) inherit them instead of each building
/// its own: pathrs' procfs handle (a private `proc` mount made with `fsopen`, checked at each
/// use) and, on a cgroup v1 or hybrid host, libcgroups' cgroup mount points (read from
/// `/proc/self/mountinfo`; cached by berth's patch of libcgroups). Both are what the children
/// would compute themselves: the mount table and procfs do not change between the fork and
/// their use, and the descriptor is close-on-exec, so it never reaches the container's process.
/// Errors are left for libcontainer to meet and report.
fn warm_runtime_caches() {
    let _ = pathrs::procfs::ProcfsHandle::new();
    if !crate::container::spec::host_cgroup_v2() {
        let _ = libcgroups::v1::util::list_subsystem_mount_points();
    }
}

fn remove_runtime_state(rt_root: &Path, rt_id: &str) {
    let dir = rt_root.join(rt_id);
    if dir.exists() {
        if let Ok(mut c) = libcontainer::container::Container::load(dir.clone()) {
            let _ = c.delete(true);
        }
        let _ = fs::remove_dir_all(&dir);
    }
}

/// After a failed start: nothing of this attempt may stay behind.
fn cleanup_after_failure(store: &ContainerStore, dir: &ContainerDir, config: &ContainerConfig) {
    remove_runtime_state(&runtime_root(store), runtime_id(&dir.id));
    let _ = fs::remove_dir_all(store.bundle_dir(&dir.id));
    remove_cgroup_parents(&cgroups_path(config));
    let _ = Rootfs::at(&dir.path).unmount();
    let _ = fs::remove_file(socket_path(store, &dir.id));
}

/// Field 22 of `/proc/<pid>/stat`: the start time in clock ticks since boot.
pub fn process_start_time(pid: i32) -> Option<u64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = &stat[stat.rfind(')')? + 2..];
    after.split_whitespace().nth(19)?.parse().ok()
}

/// Now, RFC 3339 with nanoseconds, UTC.
pub fn now_rfc3339() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)
}

/// Sends one request to a container's shim and returns the first reply line.
pub fn request(socket: &Path, line: &str, timeout: Option<Duration>) -> io::Result<String> {
    request_then(socket, line, timeout, None)
}

/// [`request`], then, the reply read, waits for the shim to close the connection: a shim
/// closes its clients' connections only as it exits (they go with it), so after the `exit`
/// answer to a `wait` this returns as the shim exits, instead of a poll of its lock some
/// milliseconds later. Every 10 ms without the close, `exited` is asked (should something
/// else hold the connection open), and `linger` bounds the whole wait.
pub fn request_until_closed(
    socket: &Path,
    line: &str,
    timeout: Option<Duration>,
    linger: Duration,
    exited: &dyn Fn() -> bool,
) -> io::Result<String> {
    request_then(socket, line, timeout, Some((linger, exited)))
}

type Linger<'a> = (Duration, &'a dyn Fn() -> bool);

fn request_then(
    socket: &Path,
    line: &str,
    timeout: Option<Duration>,
    linger: Option<Linger<'_>>,
) -> io::Result<String> {
    let mut stream = UnixStream::connect(socket)?;
    stream.set_read_timeout(timeout)?;
    writeln!(stream, "{line}")?;
    let mut reader = BufReader::new(&stream);
    let mut reply = String::new();
    reader.read_line(&mut reply)?;
    if reply.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "the shim closed the connection",
        ));
    }
    if let Some((linger, exited)) = linger
        && stream
            .set_read_timeout(Some(Duration::from_millis(10)))
            .is_ok()
    {
        let deadline = std::time::Instant::now() + linger;
        let mut sink = [0u8; 256];
        loop {
            match reader.read(&mut sink) {
                Ok(0) => break,
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) && !exited()
                        && std::time::Instant::now() < deadline => {}
                Err(_) => break,
            }
        }
    }
    Ok(reply.trim_end().to_string())
}

/// The state as last written, corrected for a shim that died without recording the exit (it
/// was killed): such a container is reported exited with code 255 and an error, since nobody
/// can learn its real exit any more.
pub fn observed_state(dir: &ContainerDir) -> Result<ContainerState, fsutil::FsError> {
    let mut state = dir.state()?;
    if matches!(state.status, Status::Running | Status::Paused) && !dir.shim_alive()? {
        state.status = Status::Exited;
        if state.exit_code.is_none() {
            state.exit_code = Some(255);
        }
        if state.error.is_empty() {
            state.error = "the container's shim is gone".to_string();
        }
    }
    Ok(state)
}

/// Where compiled seccomp filters are kept (`run/seccomp/`, a tmpfs: rebuilt after a reboot).
pub(crate) fn seccomp_cache_dir(store: &ContainerStore) -> PathBuf {
    store.run_dir().join("seccomp")
}

/// libcontainer's default executor, after putting every signal back to its default action
/// and loading the container's precompiled seccomp filter (`seccomp_bpf`).
///
/// Signals: the shim (like any Rust program) ignores SIGPIPE, and ignored signals survive
/// `execve`, so without this the container's processes would ignore SIGPIPE too (Docker's
/// don't).
#[derive(Clone)]
pub(crate) struct ShimExecutor {
    pub(crate) seccomp: Option<crate::container::seccomp_bpf::Filter>,
}

impl libcontainer::workload::Executor for ShimExecutor {
    fn exec(
        &self,
        spec: &oci_spec::runtime::Spec,
    ) -> Result<(), libcontainer::workload::ExecutorError> {
        sys::reset_signal_dispositions();
        if let Some(filter) = &self.seccomp {
            filter.apply().map_err(|e| {
                libcontainer::workload::ExecutorError::Other(format!(
                    "load the seccomp filter: {e}"
                ))
            })?;
        }
        libcontainer::workload::default::get_executor().exec(spec)
    }

    fn validate(
        &self,
        spec: &oci_spec::runtime::Spec,
    ) -> Result<(), libcontainer::workload::ExecutorValidationError> {
        libcontainer::workload::default::get_executor().validate(spec)
    }
}

#[allow(unsafe_code)]
mod sys {
    use nix::fcntl::{FcntlArg, FdFlag, fcntl};
    use nix::sys::signal::{SigHandler, Signal, signal};
    use std::os::fd::{FromRawFd, OwnedFd, RawFd};

    /// Clears close-on-exec: the descriptor survives the hand-over to the monitor.
    pub(super) fn keep_across_exec(fd: RawFd) -> std::io::Result<()> {
        fcntl(fd, FcntlArg::F_SETFD(FdFlag::empty()))?;
        Ok(())
    }

    /// Sets close-on-exec again.
    pub(super) fn close_on_exec(fd: RawFd) -> std::io::Result<()> {
        fcntl(fd, FcntlArg::F_SETFD(FdFlag::FD_CLOEXEC))?;
        Ok(())
    }

    /// Owns a descriptor inherited from the shim's first stage.
    pub(super) fn adopt_fd(fd: RawFd) -> OwnedFd {
        // SAFETY: `fd` is a number the first stage of this shim passed on its command line
        // after clearing close-on-exec on that very descriptor; it stays open across execve,
        // nothing else in this fresh process image knows of it, and each number is adopted
        // exactly once (`Shim::adopt` takes each argument once).
        unsafe { OwnedFd::from_raw_fd(fd) }
    }

    /// Every catchable signal back to `SIG_DFL`.
    /// Empties the calling thread's signal mask (inherited across fork and exec).
    pub(super) fn unblock_all_signals() {
        let _ = nix::sys::signal::SigSet::empty().thread_set_mask();
    }

    pub(super) fn reset_signal_dispositions() {
        unblock_all_signals();
        for sig in Signal::iterator() {
            if matches!(sig, Signal::SIGKILL | Signal::SIGSTOP) {
                continue;
            }
            // SAFETY: installing SIG_DFL registers no handler code, so no async-signal-safety
            // requirement applies; this runs in the container's init process right before it
            // execs the payload, with no other thread.
            let _ = unsafe { signal(sig, SigHandler::SigDfl) };
        }
    }
}
