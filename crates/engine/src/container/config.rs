//! What a container is (its [`ContainerConfig`], fixed at create time) and what happened to it
//! (its [`ContainerState`], rewritten atomically at each transition). Both are plain data: the
//! compose layer (in the binary) and `berth container run` fill a config; the shim and the
//! lifecycle code write the state.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::digest::Digest;

/// Everything needed to (re)create a container's process and OCI bundle. Written once at
/// create time (`config.json` in the container directory); never changed afterwards except by
/// `rename`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ContainerConfig {
    /// 64 lowercase hex characters.
    pub id: String,
    /// Unique name (`<project>-<service>-<n>` or the user's `--name`), without a leading `/`.
    pub name: String,
    /// RFC 3339 creation time (UTC, nanoseconds).
    pub created: String,
    /// The image as the user named it (`busybox`, `localhost:5000/app:1`).
    pub image_name: String,
    /// The image id (config digest) the container was created from.
    pub image_id: Option<Digest>,
    /// The process; already resolved from image config + overrides (see
    /// [`crate::container::spec::resolve_command`]).
    pub process: ProcessConfig,
    pub hostname: String,
    pub domainname: String,
    /// Labels (image labels below the user's).
    pub labels: BTreeMap<String, String>,
    /// Volumes, binds and tmpfs mounts, in the order given.
    pub mounts: Vec<MountConfig>,
    /// `read_only: true`: the rootfs is mounted read-only.
    pub read_only: bool,
    pub security: SecurityConfig,
    pub resources: ResourceConfig,
    /// `ulimits`: name (`nofile`, `nproc`, … without `RLIMIT_`) → (soft, hard).
    pub ulimits: BTreeMap<String, (u64, u64)>,
    /// `sysctls`; only namespaced ones are accepted (checked when the spec is built).
    pub sysctls: BTreeMap<String, String>,
    /// `devices`: `host[:container[:perms]]`.
    pub devices: Vec<DeviceConfig>,
    /// `device_cgroup_rules`: `TYPE MAJOR:MINOR ACCESS` (`c 1:3 mr`, `a *:* rwm`), allowed
    /// on top of the defaults.
    pub device_cgroup_rules: Vec<String>,
    /// `init: true`: berth's minimal init runs as pid 1 and execs the process as its child.
    pub init: bool,
    /// Signal name or number sent by `stop` (`SIGTERM` when empty).
    pub stop_signal: String,
    /// Seconds between the stop signal and SIGKILL (10 when `None`).
    pub stop_timeout: Option<u64>,
    pub log: LogConfig,
    pub restart: RestartPolicy,
    pub network: NetworkConfig,
    /// `pid`: own, the host's (`host`), or another container's (`container:x`, `service:x`).
    pub pid: NamespaceMode,
    /// `ipc`: own (`private`, `shareable`), `none` (own, without `/dev/shm`), the host's or
    /// another container's, whose `/dev/shm` it then shares.
    pub ipc: NamespaceMode,
    /// `uts`: own, or the host's (`host`: the host's hostname, which it cannot change).
    pub uts: NamespaceMode,
    /// `cgroup`: own (`private`; on a cgroup v2 host) or the host's (`host`).
    pub cgroupns: NamespaceMode,
    /// The networks a `Private` namespace is attached to, in order (the first gives the
    /// default route and carries the published ports). Empty: `lo` only. The binary gives
    /// them meaning; the engine only carries them.
    pub networks: Vec<EndpointConfig>,
    /// Published ports (`-p`, compose `ports`), one entry per port (ranges expanded).
    pub ports: Vec<PortConfig>,
    /// Remove the container when it exits (`run --rm`).
    pub auto_remove: bool,
    /// Extra `/etc/hosts` lines: (hostname, address).
    pub extra_hosts: Vec<(String, String)>,
    /// `dns`, `dns_search`, `dns_opt` for the generated `/etc/resolv.conf`.
    pub dns: DnsConfig,
    /// The container's cgroup is `/<cgroup_parent>/<id>` in every hierarchy; the parent
    /// (`berth/<project>` for compose services, `berth` otherwise) is removed when empty.
    pub cgroup_parent: String,
    /// The health check (`healthcheck:`, `--health-cmd`, the image's `HEALTHCHECK`), defaults
    /// applied; `None`: the container has none. Probed by the binary (`src/health.rs`).
    pub healthcheck: Option<HealthConfig>,
}

/// Docker's default time between two health probes.
pub const DEFAULT_HEALTH_INTERVAL_MS: u64 = 30_000;
/// Docker's default time a probe may take.
pub const DEFAULT_HEALTH_TIMEOUT_MS: u64 = 30_000;
/// Docker's default number of consecutive failures that make a container unhealthy.
pub const DEFAULT_HEALTH_RETRIES: u32 = 3;
/// Docker's default time between two probes during the start period.
pub const DEFAULT_HEALTH_START_INTERVAL_MS: u64 = 5_000;

/// A container's health check, with Docker's defaults already applied.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct HealthConfig {
    /// Docker's form: `["CMD", arg…]`, `["CMD-SHELL", command]` or `["NONE"]` (disabled).
    pub test: Vec<String>,
    /// Time between probes once the start period is over (or the container was healthy once).
    pub interval_ms: u64,
    /// A probe taking longer fails.
    pub timeout_ms: u64,
    /// Consecutive failures (outside the start period) that make the container unhealthy.
    pub retries: u32,
    /// Failures during this time after a start do not count.
    pub start_period_ms: u64,
    /// Time between probes during the start period.
    pub start_interval_ms: u64,
}

impl Default for HealthConfig {
    fn default() -> HealthConfig {
        HealthConfig {
            test: Vec::new(),
            interval_ms: DEFAULT_HEALTH_INTERVAL_MS,
            timeout_ms: DEFAULT_HEALTH_TIMEOUT_MS,
            retries: DEFAULT_HEALTH_RETRIES,
            start_period_ms: 0,
            start_interval_ms: DEFAULT_HEALTH_START_INTERVAL_MS,
        }
    }
}

impl HealthConfig {
    /// The command a probe runs in the container (`CMD-SHELL` through `/bin/sh -c`, as
    /// Docker on Linux); `None` when the check is disabled (`NONE`) or empty.
    pub fn probe_args(&self) -> Option<Vec<String>> {
        match self.test.split_first() {
            Some((kind, rest)) if kind == "CMD" && !rest.is_empty() => Some(rest.to_vec()),
            Some((kind, rest)) if kind == "CMD-SHELL" && !rest.is_empty() => Some(
                ["/bin/sh", "-c"]
                    .iter()
                    .map(|s| s.to_string())
                    .chain(rest.iter().cloned())
                    .collect(),
            ),
            _ => None,
        }
    }
}

/// The container's main process.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ProcessConfig {
    /// argv; never empty for a startable container.
    pub args: Vec<String>,
    /// `NAME=value`, image env < env_file < environment, already merged.
    pub env: Vec<String>,
    /// Absolute working directory (`/` when unset).
    pub cwd: String,
    /// `user` as given: `name`, `uid`, `name:group`, `uid:gid`, or empty (root).
    pub user: String,
    /// `group_add`: names or gids.
    pub group_add: Vec<String>,
    /// Allocate a pty.
    pub tty: bool,
    /// Keep stdin open (`-i`, `stdin_open`).
    pub stdin_open: bool,
}

/// One mount into the container.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MountConfig {
    /// Absolute path inside the container.
    pub target: String,
    pub read_only: bool,
    pub kind: MountKind,
}

/// Where a mount comes from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum MountKind {
    /// A host path.
    Bind {
        source: PathBuf,
        /// `rprivate` (default), `private`, `rshared`, `shared`, `rslave`, `slave`.
        #[serde(default)]
        propagation: Option<String>,
        /// Create a missing source directory (short syntax, `create_host_path`).
        #[serde(default)]
        create_host_path: bool,
    },
    /// A named (or anonymous: a generated name) volume under the state root.
    Volume {
        name: String,
        /// Do not copy the image's content at the mount point into a new volume.
        #[serde(default)]
        nocopy: bool,
        /// Anonymous (`- /data`, image `VOLUME`): removed with the container by `rm -v`.
        #[serde(default)]
        anonymous: bool,
        /// Mount only this sub-directory of the volume.
        #[serde(default)]
        subpath: Option<String>,
    },
    /// A file berth wrote into the container's directory when it created it
    /// (`files/<name>`, see [`crate::container::store::ContainerFile`]): a compose secret or
    /// config given by `content` or `environment`, which docker compose copies into the
    /// container. The content is not in the config, so `inspect` never shows it.
    File { name: String },
    /// A tmpfs.
    Tmpfs {
        /// Bytes; unlimited (the kernel's default: half of RAM) when `None`.
        #[serde(default)]
        size: Option<u64>,
        /// Octal mode of the tmpfs root (1777 when `None`).
        #[serde(default)]
        mode: Option<u32>,
    },
}

/// Capabilities, privileges, seccomp.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct SecurityConfig {
    pub privileged: bool,
    /// `CAP_` prefix optional, case-insensitive; `ALL` allowed.
    pub cap_add: Vec<String>,
    pub cap_drop: Vec<String>,
    /// `security_opt: no-new-privileges[:true]`.
    pub no_new_privileges: bool,
    pub seccomp: SeccompConfig,
}

/// Which seccomp filter the container gets.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SeccompConfig {
    /// berth's default profile, equivalent to Docker's.
    #[default]
    Default,
    /// `seccomp=unconfined`.
    Unconfined,
    /// `seccomp=<file>`: a Docker-format profile (JSON), read at create time and kept here.
    Profile(String),
}

/// Resource limits; `None` is "no limit".
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ResourceConfig {
    /// Bytes.
    pub memory: Option<i64>,
    /// Memory + swap in bytes; -1 unlimited swap.
    pub memory_swap: Option<i64>,
    /// Soft limit in bytes.
    pub memory_reservation: Option<i64>,
    /// CPUs × 1e9 (`cpus: 1.5` → 1_500_000_000).
    pub nano_cpus: Option<i64>,
    pub cpu_shares: Option<u64>,
    pub cpuset_cpus: Option<String>,
    pub cpuset_mems: Option<String>,
    pub pids_limit: Option<i64>,
    pub oom_score_adj: Option<i32>,
    /// `/dev/shm` size in bytes (64 MiB when `None`, as Docker).
    pub shm_size: Option<u64>,
    /// CFS period in µs (`cpu_period`; 100 ms when only a quota is set).
    pub cpu_period: Option<u64>,
    /// CFS quota in µs per period (`cpu_quota`; -1 unlimited).
    pub cpu_quota: Option<i64>,
    /// Real-time period and runtime in µs (`cpu_rt_period`, `cpu_rt_runtime`).
    pub cpu_rt_period: Option<u64>,
    pub cpu_rt_runtime: Option<i64>,
    /// 0–100 (`mem_swappiness`; cgroup v1 only, as with Docker).
    pub memory_swappiness: Option<u64>,
    /// `oom_kill_disable` (cgroup v1 only, as with Docker).
    pub oom_kill_disable: bool,
    /// `blkio_config`.
    pub blkio: BlkioConfig,
}

/// Block I/O weight and limits (`blkio_config`); devices by host path, turned into their
/// numbers when the container starts.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct BlkioConfig {
    /// 10–1000.
    pub weight: Option<u16>,
    pub weight_device: Vec<(PathBuf, u16)>,
    /// Bytes per second.
    pub read_bps: Vec<(PathBuf, u64)>,
    pub write_bps: Vec<(PathBuf, u64)>,
    /// Operations per second.
    pub read_iops: Vec<(PathBuf, u64)>,
    pub write_iops: Vec<(PathBuf, u64)>,
}

impl BlkioConfig {
    /// Nothing set.
    pub fn is_empty(&self) -> bool {
        *self == BlkioConfig::default()
    }
}

/// A host device made available in the container.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceConfig {
    pub host_path: PathBuf,
    pub container_path: String,
    /// Cgroup permissions, a subset of `rwm`.
    pub permissions: String,
}

/// Where and how the container's output is logged.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct LogConfig {
    /// `json-file` (berth's own format, the default), `local` (same) or `none`.
    pub driver: String,
    /// Rotate when the current file reaches this size in bytes (0: never).
    pub max_size: u64,
    /// Files kept, the current one included (≥ 1).
    pub max_file: u32,
}

impl Default for LogConfig {
    fn default() -> LogConfig {
        LogConfig {
            driver: "json-file".to_string(),
            max_size: 10 * 1024 * 1024,
            max_file: 3,
        }
    }
}

/// The restart policy (carried out by the supervisor).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct RestartPolicy {
    /// `no`, `always`, `on-failure`, `unless-stopped`.
    pub name: String,
    /// `on-failure:N`; 0 is unlimited.
    pub max_retries: u32,
    /// `deploy.restart_policy.delay` in milliseconds.
    pub delay_ms: Option<u64>,
    /// `deploy.restart_policy.window` in milliseconds.
    pub window_ms: Option<u64>,
}

/// The container's network namespace.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "mode", content = "path")]
pub enum NetworkConfig {
    /// A new network namespace: `lo`, and an interface per entry of
    /// [`ContainerConfig::networks`].
    #[default]
    Private,
    /// No network namespace of its own (`network_mode: host`).
    Host,
    /// `network_mode: none`: a new namespace, `lo` only.
    None,
    /// Join an existing namespace by path (a named netns file, `/proc/<pid>/ns/net`).
    Join(PathBuf),
    /// Share another container's namespace (`container:x`, compose's `service:x`): the id,
    /// resolved to its init's namespace each time this container starts.
    Container(String),
}

/// A namespace other than the network's.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "mode", content = "path")]
pub enum NamespaceMode {
    /// A new namespace.
    #[default]
    Private,
    /// The host's: no namespace of its own.
    Host,
    /// IPC only: a new namespace without `/dev/shm` (`ipc: none`).
    None,
    /// Another container's (the id), resolved to its init's namespace each time this
    /// container starts.
    Container(String),
    /// An existing namespace by path (`/proc/<pid>/ns/<kind>`): a `Container` once resolved.
    Join(PathBuf),
}

/// One network a container is attached to.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct EndpointConfig {
    /// The network's name.
    pub network: String,
    /// Extra DNS names on this network (compose `aliases`, `--network-alias`).
    pub aliases: Vec<String>,
    /// A fixed address (`ipv4_address`, `--ip`).
    pub ipv4_address: Option<String>,
    /// A fixed MAC (`mac_address`).
    pub mac_address: Option<String>,
    /// The interface name inside the container (`interface_name`); `eth<n>` when unset.
    pub interface_name: Option<String>,
    /// Links, `CONTAINER:ALIAS` (compose `external_links`; on the first network, as Docker
    /// puts them): in this container, `ALIAS` names that container on the networks they
    /// share. The binary gives them meaning.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub links: Vec<String>,
}

/// One published port.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct PortConfig {
    /// The host address; every address when unset.
    pub host_ip: Option<String>,
    /// The host port; a free one is chosen at each start when unset.
    pub host_port: Option<u16>,
    pub container_port: u16,
    /// `tcp` or `udp`.
    pub protocol: String,
}

/// `/etc/resolv.conf` settings.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct DnsConfig {
    pub servers: Vec<String>,
    pub search: Vec<String>,
    pub options: Vec<String>,
}

/// Docker's container statuses.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Created, never started (or start failed before the process ran).
    #[default]
    Created,
    Running,
    Paused,
    Restarting,
    /// Being removed.
    Removing,
    Exited,
    /// The shim vanished without recording an exit.
    Dead,
}

impl Status {
    /// Docker's lower-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Created => "created",
            Status::Running => "running",
            Status::Paused => "paused",
            Status::Restarting => "restarting",
            Status::Removing => "removing",
            Status::Exited => "exited",
            Status::Dead => "dead",
        }
    }
}

/// What happened to the container; `state.json` in its directory, written atomically.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ContainerState {
    pub status: Status,
    /// Host pid of the container's init process while it runs.
    pub pid: Option<i32>,
    /// Host pid of the shim while it runs.
    pub shim_pid: Option<i32>,
    /// The shim's start time (clock ticks since boot, /proc/<pid>/stat field 22): tells a live
    /// shim from a recycled pid.
    pub shim_start_time: Option<u64>,
    /// RFC 3339; empty when never started.
    pub started_at: String,
    pub finished_at: String,
    pub exit_code: Option<i32>,
    pub oom_killed: bool,
    /// Why the last start failed, or the shim's last error.
    pub error: String,
    /// Restarts done by the restart policy since the last user start.
    pub restart_count: u32,
    /// Stopped or killed by the user: `unless-stopped` and `always` do not restart it (until
    /// the next start by the user or the next `up`).
    pub manually_stopped: bool,
    /// The health of a container with a health check (`None` without one); reset to
    /// `starting` by the shim at each start, advanced by each probe's result.
    pub health: Option<Health>,
    /// The restart policy's current back-off in milliseconds (Docker's restart manager
    /// timeout: 100 ms, doubled at each exit, at most a minute). Meaningful only while
    /// `restart_count` is not 0: a user start resets the count, and with it the back-off.
    pub restart_delay_ms: u64,
    /// While `status` is `restarting`: when the policy restart is due (Unix time in
    /// milliseconds), so a supervisor started during the wait carries on from it.
    pub restart_due_ms: Option<u64>,
    /// Policy restarts counted against `max_retries`: `restart_count`, except that a run
    /// longer than `deploy.restart_policy.window` starts the count again.
    pub restart_attempts: u32,
    /// The `finished_at` of the last exit the restart policy judged: an exit is judged once,
    /// however often a supervisor looks at the container again.
    pub restart_judged: Option<String>,
}

/// Docker's health statuses.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HealthStatus {
    /// No probe has succeeded since the start, and not enough failed to give up.
    #[default]
    Starting,
    /// The last probe succeeded.
    Healthy,
    /// `retries` consecutive probes failed.
    Unhealthy,
}

impl HealthStatus {
    /// Docker's lower-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            HealthStatus::Starting => "starting",
            HealthStatus::Healthy => "healthy",
            HealthStatus::Unhealthy => "unhealthy",
        }
    }
}

/// Docker's maximum number of probe results kept in [`Health::log`].
pub const HEALTH_LOG_ENTRIES: usize = 5;

/// A container's health (`State.Health` in `docker inspect`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Health {
    pub status: HealthStatus,
    /// Consecutive failed probes that counted (outside the start period).
    pub failing_streak: u32,
    /// The last [`HEALTH_LOG_ENTRIES`] probe results, oldest first.
    pub log: Vec<HealthResult>,
}

/// One probe's result.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct HealthResult {
    /// RFC 3339 times the probe started and ended.
    pub start: String,
    pub end: String,
    /// The test's exit code: 0 healthy, anything else a failure (-1: it could not run or
    /// timed out, as Docker).
    pub exit_code: i32,
    /// The test's output (stdout and stderr), capped at 4 KiB.
    pub output: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probe_args_follow_docker_test_forms() {
        let hc = |test: &[&str]| HealthConfig {
            test: test.iter().map(|s| s.to_string()).collect(),
            ..HealthConfig::default()
        };
        assert_eq!(
            hc(&["CMD", "true", "x"]).probe_args(),
            Some(vec!["true".to_string(), "x".to_string()])
        );
        assert_eq!(
            hc(&["CMD-SHELL", "test -f /x"]).probe_args(),
            Some(vec![
                "/bin/sh".to_string(),
                "-c".to_string(),
                "test -f /x".to_string()
            ])
        );
        assert_eq!(hc(&["NONE"]).probe_args(), None);
        assert_eq!(hc(&[]).probe_args(), None);
        assert_eq!(hc(&["CMD"]).probe_args(), None);
    }

    #[test]
    fn old_state_files_read_without_health() {
        let s: ContainerState = serde_json::from_str(r#"{"status":"running"}"#).unwrap();
        assert_eq!(s.health, None);
        let c: ContainerConfig = serde_json::from_str(r#"{"id":"x"}"#).unwrap();
        assert_eq!(c.healthcheck, None);
        let h: HealthConfig = serde_json::from_str(r#"{"test":["CMD","true"]}"#).unwrap();
        assert_eq!(h.retries, DEFAULT_HEALTH_RETRIES);
    }
}
