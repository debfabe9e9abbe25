//! A service (compose-go `ServiceConfig`) and the types only services use.

use std::collections::BTreeMap;
use std::fmt;

use serde::de::{self, Deserializer, SeqAccess, Visitor};
use serde::{Deserialize, Serialize, Serializer};

use super::{
    BuildConfig, DeployConfig, DeviceRequest, HostsList, Mapping, MappingWithEquals, OmitEmpty,
    OptOut, ShellCommand, Ulimit, nullable_mapping, string_or_list,
};
use crate::units::{ByteSize, Duration};

fn yes() -> bool {
    true
}

model! {
    /// One service, long syntax, keys in compose-go's order (the order `docker compose config`
    /// prints). The service's name is its key in [`crate::model::Project::services`].
    pub struct ServiceConfig [extensions] {
        /// Profiles that enable the service.
        pub profiles: Vec<String>,
        /// OCI annotations.
        #[serde(deserialize_with = "nullable_mapping")]
        pub annotations: Mapping,
        /// Whether `up` attaches to its logs.
        pub attach: Option<bool>,
        /// How to build its image.
        pub build: Option<BuildConfig>,
        /// `develop:` (watch rules).
        pub develop: Option<DevelopConfig>,
        /// Block IO limits.
        pub blkio_config: Option<BlkioConfig>,
        /// Capabilities added.
        pub cap_add: Vec<String>,
        /// Capabilities dropped.
        pub cap_drop: Vec<String>,
        /// Parent cgroup.
        pub cgroup_parent: String,
        /// `host` or `private` cgroup namespace.
        pub cgroup: String,
        /// CPU count (Windows).
        pub cpu_count: i64,
        /// CPU percent (Windows).
        pub cpu_percent: f32,
        /// CFS period.
        pub cpu_period: i64,
        /// CFS quota.
        pub cpu_quota: i64,
        /// Real-time period.
        pub cpu_rt_period: i64,
        /// Real-time runtime.
        pub cpu_rt_runtime: i64,
        /// CPUs (a fraction).
        pub cpus: f32,
        /// CPUs allowed.
        pub cpuset: String,
        /// CPU shares.
        pub cpu_shares: i64,
        /// Overrides the image's CMD.
        pub command: Option<ShellCommand>,
        /// Configs mounted.
        pub configs: Vec<ServiceConfigObjConfig>,
        /// A fixed container name.
        pub container_name: String,
        /// Credential spec (Windows).
        pub credential_spec: Option<CredentialSpecConfig>,
        /// Dependencies by service name.
        pub depends_on: BTreeMap<String, ServiceDependency>,
        /// Deployment settings.
        pub deploy: Option<DeployConfig>,
        /// Device cgroup rules.
        pub device_cgroup_rules: Vec<String>,
        /// Devices mapped.
        pub devices: Vec<DeviceMapping>,
        /// DNS servers.
        #[serde(deserialize_with = "string_or_list")]
        pub dns: Vec<String>,
        /// DNS options.
        pub dns_opt: Vec<String>,
        /// DNS search domains.
        #[serde(deserialize_with = "string_or_list")]
        pub dns_search: Vec<String>,
        /// Domain name.
        pub domainname: String,
        /// Overrides the image's ENTRYPOINT.
        pub entrypoint: Option<ShellCommand>,
        /// A provider instead of a container.
        pub provider: Option<ServiceProviderConfig>,
        /// Environment (null: from the host environment).
        pub environment: MappingWithEquals,
        /// Env files.
        pub env_file: Vec<EnvFile>,
        /// Ports exposed to linked services.
        pub expose: Vec<String>,
        /// The service it extends.
        pub extends: Option<ExtendsConfig>,
        /// Links to containers outside the project.
        pub external_links: Vec<String>,
        /// Extra `/etc/hosts` entries.
        pub extra_hosts: HostsList,
        /// Extra groups.
        pub group_add: Vec<String>,
        /// GPUs.
        pub gpus: Vec<DeviceRequest>,
        /// Host name.
        pub hostname: String,
        /// Health check.
        pub healthcheck: Option<HealthCheckConfig>,
        /// Image.
        pub image: String,
        /// Run an init process.
        pub init: Option<bool>,
        /// IPC mode.
        pub ipc: String,
        /// Isolation technology.
        pub isolation: String,
        /// Container labels.
        #[serde(deserialize_with = "nullable_mapping")]
        pub labels: Mapping,
        /// Label files.
        #[serde(deserialize_with = "string_or_list")]
        pub label_file: Vec<String>,
        /// Links to other services.
        pub links: Vec<String>,
        /// Logging.
        pub logging: Option<LoggingConfig>,
        /// Memory limit.
        pub mem_limit: ByteSize,
        /// Memory reservation.
        pub mem_reservation: ByteSize,
        /// Memory + swap limit (-1: unlimited).
        pub memswap_limit: ByteSize,
        /// Swappiness (compose-go reads it as a byte size too).
        pub mem_swappiness: ByteSize,
        /// MAC address.
        pub mac_address: String,
        /// AI models used, by name.
        pub models: BTreeMap<String, Option<ServiceModelConfig>>,
        /// Network mode.
        pub network_mode: String,
        /// Networks joined, by name.
        pub networks: BTreeMap<String, Option<ServiceNetworkConfig>>,
        /// Never OOM-kill.
        pub oom_kill_disable: bool,
        /// OOM score adjustment.
        pub oom_score_adj: i64,
        /// PID mode.
        pub pid: String,
        /// Process limit.
        pub pids_limit: i64,
        /// Platform.
        pub platform: String,
        /// Published ports.
        pub ports: Vec<ServicePortConfig>,
        /// Privileged.
        pub privileged: bool,
        /// When to pull.
        pub pull_policy: String,
        /// Pull again after this long (in the schema, not in compose-go's types).
        pub pull_refresh_after: String,
        /// Read-only root filesystem.
        pub read_only: bool,
        /// Restart policy.
        pub restart: String,
        /// OCI runtime.
        pub runtime: String,
        /// Number of containers.
        pub scale: Option<i64>,
        /// Secrets mounted.
        pub secrets: Vec<ServiceSecretConfig>,
        /// Security options.
        pub security_opt: Vec<String>,
        /// `/dev/shm` size.
        pub shm_size: ByteSize,
        /// Keep stdin open.
        pub stdin_open: bool,
        /// Grace period before SIGKILL.
        pub stop_grace_period: Option<Duration>,
        /// Stop signal.
        pub stop_signal: String,
        /// Storage driver options.
        #[serde(deserialize_with = "nullable_mapping")]
        pub storage_opt: Mapping,
        /// Kernel parameters.
        #[serde(deserialize_with = "nullable_mapping")]
        pub sysctls: Mapping,
        /// tmpfs mounts.
        #[serde(deserialize_with = "string_or_list")]
        pub tmpfs: Vec<String>,
        /// Allocate a TTY.
        pub tty: bool,
        /// Ulimits by name.
        pub ulimits: BTreeMap<String, Ulimit>,
        /// Mount the engine's API socket.
        pub use_api_socket: bool,
        /// User.
        pub user: String,
        /// User namespace mode.
        pub userns_mode: String,
        /// UTS namespace mode.
        pub uts: String,
        /// Mounts.
        pub volumes: Vec<ServiceVolumeConfig>,
        /// Mounts of other services or containers.
        pub volumes_from: Vec<String>,
        /// Working directory.
        pub working_dir: String,
        /// Hooks run after start.
        pub post_start: Vec<ServiceHook>,
        /// Hooks run before stop.
        pub pre_stop: Vec<ServiceHook>,
    }
}

model! {
    /// `provider:` (compose-go `ServiceProviderConfig`).
    pub struct ServiceProviderConfig [extensions] {
        /// The provider's type.
        pub r#type: String,
        /// Its options; a key may repeat.
        #[serde(deserialize_with = "multi_options")]
        pub options: BTreeMap<String, Vec<String>>,
    }
}

/// `deserialize_with` for compose-go `MultiOptions`: each value a scalar or a list of scalars.
pub fn multi_options<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<BTreeMap<String, Vec<String>>, D::Error> {
    struct Values(Vec<String>);
    impl<'de> Deserialize<'de> for Values {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Values, D::Error> {
            string_or_list(d).map(Values)
        }
    }
    let m: BTreeMap<String, Values> = BTreeMap::deserialize(d)?;
    Ok(m.into_iter().map(|(k, v)| (k, v.0)).collect())
}

model! {
    /// `blkio_config:` (compose-go `BlkioConfig`).
    pub struct BlkioConfig [extensions] {
        /// Weight.
        pub weight: u16,
        /// Weight per device.
        pub weight_device: Vec<WeightDevice>,
        /// Read rate per device.
        pub device_read_bps: Vec<ThrottleDevice>,
        /// Read IO/s per device.
        pub device_read_iops: Vec<ThrottleDevice>,
        /// Write rate per device.
        pub device_write_bps: Vec<ThrottleDevice>,
        /// Write IO/s per device.
        pub device_write_iops: Vec<ThrottleDevice>,
    }
}

model! {
    /// A device and its weight (compose-go `WeightDevice`; both keys always printed).
    pub struct WeightDevice [extensions] {
        /// Device path.
        [keep] pub path: String,
        /// Weight.
        [keep] pub weight: u16,
    }
}

model! {
    /// A device and its rate (compose-go `ThrottleDevice`; both keys always printed).
    pub struct ThrottleDevice [extensions] {
        /// Device path.
        [keep] pub path: String,
        /// Rate per second.
        [keep] pub rate: ByteSize,
    }
}

model! {
    /// A device mapping (compose-go `DeviceMapping`), long syntax.
    pub struct DeviceMapping [extensions] {
        /// Host device.
        pub source: String,
        /// Path in the container.
        pub target: String,
        /// cgroup permissions (`rwm`).
        pub permissions: String,
    }
}

model! {
    /// `logging:` (compose-go `LoggingConfig`).
    pub struct LoggingConfig [extensions] {
        /// Log driver.
        pub driver: String,
        /// Its options.
        #[serde(deserialize_with = "nullable_mapping")]
        pub options: Mapping,
    }
}

model! {
    /// A service's attachment to a network (compose-go `ServiceNetworkConfig`).
    pub struct ServiceNetworkConfig [extensions] {
        /// Aliases on the network.
        pub aliases: Vec<String>,
        /// Driver options of the endpoint.
        #[serde(deserialize_with = "nullable_mapping")]
        pub driver_opts: Mapping,
        /// Gateway priority.
        pub gw_priority: i64,
        /// Interface name in the container.
        pub interface_name: String,
        /// Static IPv4 address.
        pub ipv4_address: String,
        /// Static IPv6 address.
        pub ipv6_address: String,
        /// Link-local addresses.
        pub link_local_ips: Vec<String>,
        /// MAC address on this network.
        pub mac_address: String,
        /// Connection order priority.
        pub priority: i64,
    }
}

model! {
    /// A published port (compose-go `ServicePortConfig`), long syntax.
    pub struct ServicePortConfig [extensions] {
        /// A name.
        pub name: String,
        /// `ingress` or `host` (the canonical phase fills `ingress`).
        pub mode: String,
        /// Host address.
        pub host_ip: String,
        /// Container port.
        pub target: u32,
        /// Host port or range, as text.
        pub published: String,
        /// `tcp` or `udp` (the canonical phase fills `tcp`).
        pub protocol: String,
        /// Application protocol.
        pub app_protocol: String,
    }
}

model! {
    /// A mount (compose-go `ServiceVolumeConfig`), long syntax.
    pub struct ServiceVolumeConfig [extensions] {
        /// `bind`, `volume`, `tmpfs`, `npipe`, `cluster` or `image`.
        pub r#type: String,
        /// Host path, volume name or image.
        pub source: String,
        /// Path in the container.
        pub target: String,
        /// Read-only.
        pub read_only: bool,
        /// Consistency (macOS).
        pub consistency: String,
        /// Bind options.
        pub bind: Option<ServiceVolumeBind>,
        /// Volume options.
        pub volume: Option<ServiceVolumeVolume>,
        /// tmpfs options.
        pub tmpfs: Option<ServiceVolumeTmpfs>,
        /// Image options.
        pub image: Option<ServiceVolumeImage>,
    }
}

model! {
    /// `bind:` of a mount (compose-go `ServiceVolumeBind`).
    pub struct ServiceVolumeBind [extensions] {
        /// `z` or `Z`.
        pub selinux: String,
        /// Mount propagation.
        pub propagation: String,
        /// Create the host path when missing (short syntax implies it; compose-go v2.9 prints
        /// it when true).
        pub create_host_path: bool,
        /// Recursive read-only mode.
        pub recursive: String,
    }
}

model! {
    /// `volume:` of a mount (compose-go `ServiceVolumeVolume`).
    pub struct ServiceVolumeVolume [extensions] {
        /// Labels.
        #[serde(deserialize_with = "nullable_mapping")]
        pub labels: Mapping,
        /// Do not copy the image's data.
        pub nocopy: bool,
        /// Sub-path of the volume.
        pub subpath: String,
    }
}

model! {
    /// `tmpfs:` of a mount (compose-go `ServiceVolumeTmpfs`).
    pub struct ServiceVolumeTmpfs [extensions] {
        /// Size.
        pub size: ByteSize,
        /// File mode.
        pub mode: u32,
    }
}

model! {
    /// `image:` of a mount (compose-go `ServiceVolumeImage`).
    pub struct ServiceVolumeImage [extensions] {
        /// Sub-path of the image.
        pub subpath: String,
    }
}

model! {
    /// A secret or config mounted in a service (compose-go `FileReferenceConfig`), long syntax.
    pub struct FileReferenceConfig [extensions] {
        /// The secret or config name.
        pub source: String,
        /// Path in the container.
        pub target: String,
        /// Owner.
        pub uid: String,
        /// Group.
        pub gid: String,
        /// File mode.
        pub mode: Option<FileMode>,
    }
}

/// A secret mounted in a service.
pub type ServiceSecretConfig = FileReferenceConfig;
/// A config mounted in a service.
pub type ServiceConfigObjConfig = FileReferenceConfig;

/// A file mode (compose-go `FileMode`): an integer, or an octal string; printed as `"0444"`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FileMode(pub i64);

impl Serialize for FileMode {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&format_args!("0{:o}", self.0))
    }
}

impl<'de> Deserialize<'de> for FileMode {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<FileMode, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = FileMode;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an integer or an octal string")
            }
            fn visit_i64<E: de::Error>(self, i: i64) -> Result<FileMode, E> {
                Ok(FileMode(i))
            }
            fn visit_f64<E: de::Error>(self, f: f64) -> Result<FileMode, E> {
                if f.fract() == 0.0 && (0.0..1e15).contains(&f) {
                    Ok(FileMode(f as i64))
                } else {
                    Err(E::custom(format!(
                        "invalid file mode {f}\nhint: write an octal mode like \"0440\""
                    )))
                }
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<FileMode, E> {
                i64::from_str_radix(s, 8).map(FileMode).map_err(|_| {
                    E::custom(format!(
                        "invalid file mode {s:?}\nhint: write an octal mode like \"0440\""
                    ))
                })
            }
        }
        d.deserialize_any(V)
    }
}

model! {
    /// A dependency (compose-go `ServiceDependency`); `required` is always printed.
    pub struct ServiceDependency [extensions] {
        /// `service_started`, `service_healthy` or `service_completed_successfully`.
        pub condition: String,
        /// Restart this service when the dependency restarts.
        pub restart: bool,
        /// Whether the dependency must exist (default true).
        #[serde(default = "yes")]
        [keep] pub required: bool,
    }
}

model! {
    /// `extends:` (compose-go `ExtendsConfig`), long syntax.
    pub struct ExtendsConfig {
        /// The file holding the base service.
        pub file: String,
        /// The base service.
        pub service: String,
    }
}

model! {
    /// One `env_file:` entry (compose-go `EnvFile`), long syntax.
    pub struct EnvFile {
        /// The file.
        pub path: String,
        /// Whether a missing file is an error (default true).
        pub required: OptOut,
        /// `raw` or empty.
        pub format: String,
    }
}

model! {
    /// `credential_spec:` (compose-go `CredentialSpecConfig`).
    pub struct CredentialSpecConfig [extensions] {
        /// A config holding the spec.
        pub config: String,
        /// A file holding the spec.
        pub file: String,
        /// A registry value.
        pub registry: String,
    }
}

model! {
    /// `healthcheck:` (compose-go `HealthCheckConfig`).
    pub struct HealthCheckConfig [extensions] {
        /// The test; a string `s` is read as `["CMD-SHELL", s]` as compose-go does.
        pub test: HealthCheckTest,
        /// Timeout of one check.
        pub timeout: Option<Duration>,
        /// Time between checks.
        pub interval: Option<Duration>,
        /// Failures before unhealthy.
        pub retries: Option<u64>,
        /// Grace period at start.
        pub start_period: Option<Duration>,
        /// Time between checks during the start period.
        pub start_interval: Option<Duration>,
        /// Disable the image's check.
        pub disable: bool,
    }
}

/// `healthcheck.test` (compose-go `HealthCheckTest`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HealthCheckTest(pub Vec<String>);

impl OmitEmpty for HealthCheckTest {
    fn is_omitted(&self) -> bool {
        self.0.is_empty()
    }
}

impl Serialize for HealthCheckTest {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(s)
    }
}

impl<'de> Deserialize<'de> for HealthCheckTest {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<HealthCheckTest, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = HealthCheckTest;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string or a list of strings")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<HealthCheckTest, E> {
                Ok(HealthCheckTest(vec![
                    "CMD-SHELL".to_string(),
                    s.to_string(),
                ]))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<HealthCheckTest, A::Error> {
                let mut out = Vec::new();
                while let Some(s) = seq.next_element::<String>()? {
                    out.push(s);
                }
                Ok(HealthCheckTest(out))
            }
        }
        d.deserialize_any(V)
    }
}

model! {
    /// `develop:` (compose-go `DevelopConfig`).
    pub struct DevelopConfig [extensions] {
        /// Watch rules.
        pub watch: Vec<Trigger>,
    }
}

model! {
    /// One watch rule (compose-go `Trigger`); `path` and `action` are always printed.
    pub struct Trigger [extensions] {
        /// The watched path.
        [keep] pub path: String,
        /// `sync`, `rebuild`, `restart`, `sync+restart` or `sync+exec`.
        [keep] pub action: String,
        /// Path in the container.
        pub target: String,
        /// Command for `sync+exec`.
        pub exec: ServiceHook,
        /// Patterns included.
        pub include: Vec<String>,
        /// Patterns ignored.
        pub ignore: Vec<String>,
        /// Sync once before watching.
        pub initial_sync: bool,
    }
}

model! {
    /// A lifecycle hook (compose-go `ServiceHook`): `post_start`, `pre_stop`, watch `exec`.
    pub struct ServiceHook [extensions] {
        /// The command.
        pub command: Option<ShellCommand>,
        /// User.
        pub user: String,
        /// Privileged.
        pub privileged: bool,
        /// Working directory.
        pub working_dir: String,
        /// Environment.
        pub environment: MappingWithEquals,
    }
}

model! {
    /// A model used by a service (compose-go `ServiceModelConfig`).
    pub struct ServiceModelConfig [extensions] {
        /// Variable receiving the endpoint.
        pub endpoint_var: String,
        /// Variable receiving the model name.
        pub model_var: String,
    }
}
