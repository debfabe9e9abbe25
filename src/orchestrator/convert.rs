//! A compose service → the engine's [`ContainerConfig`], key by key as `docker compose` maps a
//! service onto the Docker engine's container config (its `pkg/compose/create.go`), with the
//! same precedence rules as `berth container create` (`src/commands/container.rs`).
//!
//! Pure but for the reads the Docker CLI also does on the client side: `label_file`s, a
//! `security_opt: seccomp=<file>` profile, `/dev/urandom` for the id and the names of
//! anonymous volumes, and the `file:` of a secret or config whose owner or mode is set. Keys berth cannot honour and whose absence would change what the
//! container does are refused with an error naming the service and the key; keys that only
//! matter elsewhere (`depends_on`, `scale`, …) or never on Linux are ignored.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, anyhow};
use berth_compose::loader::Environment;
use berth_compose::model::{
    FileReferenceConfig, Project, ServiceConfig, ServiceNetworkConfig, ServiceVolumeConfig, Ulimit,
};
use berth_engine::container::HealthConfig;
use berth_engine::container::spec::{self, CommandOverride};
use berth_engine::container::store::ContainerFile;
use berth_engine::container::{
    BlkioConfig, ContainerConfig, DeviceConfig, DnsConfig, EndpointConfig, LogConfig, MountConfig,
    MountKind, NamespaceMode, NetworkConfig, PortConfig, ProcessConfig, ResourceConfig,
    RestartPolicy, SeccompConfig, SecurityConfig,
};
use berth_engine::images::ImageRecord;

use crate::health::HealthOverrides;
use crate::labels;

/// One container of a service, as the orchestrator is about to create it.
pub struct ServiceInstance<'a> {
    pub project: &'a Project,
    /// The service's key.
    pub service: &'a str,
    /// Replica number, 1-based.
    pub number: u32,
    /// A `berth run` container: named `<project>-<service>-run-<12 hex>`, labelled
    /// `oneoff=True`.
    pub oneoff: bool,
    /// The resolved image (its config gives the defaults).
    pub image: &'a ImageRecord,
    /// The service's config hash (computed by the caller).
    pub config_hash: String,
    /// The project directory.
    pub working_dir: String,
    /// The compose files, absolute.
    pub config_files: Vec<String>,
    /// The containers whose namespaces the service joins, resolved by the caller: each
    /// `service:x` / `container:x` value of `network_mode`, `pid` and `ipc` → container id.
    pub joined: BTreeMap<String, String>,
    /// The project's interpolation environment: the values of secrets and configs given by
    /// `environment:`.
    pub environment: &'a Environment,
    /// The mounts of the containers `volumes_from` names, resolved by the caller: the source
    /// of each entry (see [`volumes_from_source`]) → that container's mounts.
    pub volumes_from: BTreeMap<String, Vec<MountConfig>>,
}

/// One `volumes_from` entry: its source (`service:NAME` or `container:NAME`) and its mode
/// (`ro`, `rw`, or none: each mount keeps its own), as docker compose reads `NAME[:MODE]`
/// and `container:NAME[:MODE]`.
pub fn volumes_from_source(entry: &str) -> (String, Option<&str>) {
    let (source, rest) = match entry.strip_prefix("container:") {
        Some(rest) => ("container", rest),
        None => ("service", entry),
    };
    match rest.rsplit_once(':') {
        Some((name, mode @ ("ro" | "rw"))) => (format!("{source}:{name}"), Some(mode)),
        _ => (format!("{source}:{rest}"), None),
    }
}

/// A container about to be created: its config and the files its [`MountKind::File`] mounts
/// bind (secrets and configs given by content), for
/// [`berth_engine::container::store::ContainerStore::create_with_files`].
#[derive(Debug)]
pub struct NewContainer {
    pub config: ContainerConfig,
    pub files: Vec<ContainerFile>,
}

/// The container's name: `container_name`, else `<project>-<service>-<n>`.
pub fn container_name(project: &Project, service: &str, number: u32) -> String {
    match project.service(service) {
        Some(s) if !s.container_name.is_empty() => s.container_name.clone(),
        _ => format!("{}-{service}-{number}", project.name),
    }
}

/// A project network's engine name: its `name:`, else `<project>_<key>` (external: its name or
/// key).
pub fn network_name(project: &Project, key: &str) -> String {
    match project.networks.get(key) {
        Some(Some(n)) if !n.name.is_empty() => n.name.clone(),
        Some(Some(n)) if n.external.0 => key.to_string(),
        _ => format!("{}_{key}", project.name),
    }
}

/// A project volume's engine name: `name:`, else `<project>_<key>` (external: its name or key).
pub fn volume_name(project: &Project, key: &str) -> String {
    match project.volumes.get(key) {
        Some(Some(v)) if !v.name.is_empty() => v.name.clone(),
        Some(Some(v)) if v.external.0 => key.to_string(),
        _ => format!("{}_{key}", project.name),
    }
}

/// The whole config of one container of a service (id: a fresh
/// [`berth_engine::container::store::new_id`]; created now). `auto_remove` is left false:
/// `run --rm` sets it; a `run --name` replaces `name` afterwards.
pub fn container_config(inst: &ServiceInstance) -> anyhow::Result<NewContainer> {
    let svc = inst
        .project
        .service(inst.service)
        .with_context(|| format!("no such service: {}", inst.service))?;
    let conv = Conv {
        inst,
        svc,
        files: std::cell::RefCell::new(Vec::new()),
    };
    let config = conv.build()?;
    Ok(NewContainer {
        config,
        files: conv.files.into_inner(),
    })
}

/// Converts one container of `service` against a stand-in image (no config but a command) and
/// stand-ins for the containers it joins or takes volumes from, and drops the result: the
/// errors of the service's own keys (a missing secret file, a bad `mem_swappiness`, a
/// refused key) come out before any image is pulled, not after.
pub fn preflight(
    project: &Project,
    service: &str,
    environment: &Environment,
) -> anyhow::Result<()> {
    let svc = project
        .service(service)
        .with_context(|| format!("no such service: {service}"))?;
    let image = ImageRecord {
        id: berth_engine::digest::Digest::of_bytes(b"berth preflight"),
        manifest_digest: None,
        repo_tags: Vec::new(),
        repo_digests: Vec::new(),
        created: None,
        architecture: String::new(),
        os: String::new(),
        variant: None,
        config: berth_engine::images::ImageConfig {
            cmd: Some(vec!["true".into()]),
            ..Default::default()
        },
        layers: Vec::new(),
        size: 0,
    };
    let joined = [&svc.network_mode, &svc.pid, &svc.ipc]
        .into_iter()
        .filter(|m| m.starts_with("service:") || m.starts_with("container:"))
        .map(|m| (m.clone(), "0".repeat(64)))
        .collect();
    let volumes_from = svc
        .volumes_from
        .iter()
        .map(|e| (volumes_from_source(e).0, Vec::new()))
        .collect();
    container_config(&ServiceInstance {
        project,
        service,
        number: 1,
        oneoff: false,
        image: &image,
        config_hash: String::new(),
        working_dir: String::new(),
        config_files: Vec::new(),
        joined,
        environment,
        volumes_from,
    })
    .map(drop)
}

/// The conversion of one service, with the error helper every key uses.
struct Conv<'a> {
    inst: &'a ServiceInstance<'a>,
    svc: &'a ServiceConfig,
    /// The files of the [`MountKind::File`] mounts made so far.
    files: std::cell::RefCell<Vec<ContainerFile>>,
}

/// A secret or a config.
#[derive(Clone, Copy, PartialEq, Eq)]
enum FileRef {
    Secret,
    Config,
}

impl FileRef {
    fn key(self) -> &'static str {
        match self {
            FileRef::Secret => "secrets",
            FileRef::Config => "configs",
        }
    }

    fn noun(self) -> &'static str {
        match self {
            FileRef::Secret => "secret",
            FileRef::Config => "config",
        }
    }

    /// Where docker compose puts it: a secret under `/run/secrets/` unless its target is
    /// absolute, a config at `/<source>` or `/<target>`.
    fn target(self, r: &FileReferenceConfig) -> String {
        let name = if r.target.is_empty() {
            &r.source
        } else {
            &r.target
        };
        match self {
            _ if name.starts_with('/') => name.clone(),
            FileRef::Secret => format!("/run/secrets/{name}"),
            FileRef::Config => format!("/{name}"),
        }
    }
}

impl Conv<'_> {
    /// `service "web": key: message`.
    fn err(&self, key: &str, msg: impl std::fmt::Display) -> anyhow::Error {
        anyhow!("service {:?}: {key}: {msg}", self.inst.service)
    }

    fn build(&self) -> anyhow::Result<ContainerConfig> {
        self.refuse_unsupported()?;
        let svc = self.svc;
        let image = &self.inst.image.config;
        let id = berth_engine::container::store::new_id();
        let name = if self.inst.oneoff {
            format!(
                "{}-{}-run-{}",
                self.inst.project.name,
                self.inst.service,
                &id[..12]
            )
        } else {
            container_name(self.inst.project, self.inst.service, self.inst.number)
        };
        let mounts = self.mounts()?;
        let (network, networks) = self.networking()?;
        let (pid, ipc, uts, cgroupns) = self.namespace_modes()?;
        let ports = self.ports(&network)?;
        Ok(ContainerConfig {
            id,
            name,
            created: berth_engine::container::shim::now_rfc3339(),
            image_name: svc.image.clone(),
            image_id: Some(self.inst.image.id.clone()),
            process: self.process()?,
            hostname: svc.hostname.clone(),
            domainname: svc.domainname.clone(),
            labels: self.labels()?,
            mounts,
            read_only: svc.read_only,
            security: self.security()?,
            resources: self.resources()?,
            ulimits: self.ulimits()?,
            sysctls: svc.sysctls.clone(),
            devices: self.devices()?,
            device_cgroup_rules: self
                .svc
                .device_cgroup_rules
                .iter()
                .enumerate()
                .map(|(i, r)| {
                    spec::device_cgroup_rule(r)
                        .map(|_| r.clone())
                        .map_err(|e| self.err(&format!("device_cgroup_rules[{i}]"), e))
                })
                .collect::<anyhow::Result<_>>()?,
            init: svc.init.unwrap_or(false),
            stop_signal: if svc.stop_signal.is_empty() {
                image.stop_signal.clone().unwrap_or_default()
            } else {
                svc.stop_signal.clone()
            },
            stop_timeout: match svc.stop_grace_period {
                // Whole seconds, truncated, as docker compose's `ToSeconds`.
                Some(d) if d.as_nanos() < 0 => {
                    return Err(self.err("stop_grace_period", "must not be negative"));
                }
                Some(d) => Some(d.as_nanos() as u64 / 1_000_000_000),
                None => None,
            },
            log: self.log()?,
            restart: self.restart()?,
            network,
            pid,
            ipc,
            uts,
            cgroupns,
            networks,
            ports,
            auto_remove: false,
            extra_hosts: svc
                .extra_hosts
                .0
                .iter()
                .flat_map(|(host, ips)| ips.iter().map(|ip| (host.clone(), ip.clone())))
                .collect(),
            dns: DnsConfig {
                servers: svc.dns.clone(),
                search: svc.dns_search.clone(),
                options: svc.dns_opt.clone(),
            },
            cgroup_parent: if svc.cgroup_parent.is_empty() {
                format!("berth/{}", self.inst.project.name)
            } else {
                svc.cgroup_parent.clone()
            },
            healthcheck: self.healthcheck()?,
        })
    }

    /// Keys whose effect berth cannot give: an error rather than a container that silently
    /// behaves differently.
    fn refuse_unsupported(&self) -> anyhow::Result<()> {
        let s = self.svc;
        let unsupported = |key: &str| self.err(key, "not supported by berth");
        let set = [
            // berth never remaps users: `host` is what every container gets.
            (
                "userns_mode",
                !s.userns_mode.is_empty() && s.userns_mode != "host",
            ),
            (
                "runtime",
                !s.runtime.is_empty() && s.runtime != "runc" && s.runtime != "youki",
            ),
            ("gpus", !s.gpus.is_empty()),
            ("storage_opt", !s.storage_opt.is_empty()),
            ("use_api_socket", s.use_api_socket),
            ("provider", s.provider.is_some()),
            ("models", !s.models.is_empty()),
        ];
        if let Some((key, _)) = set.iter().find(|(_, on)| *on) {
            return Err(unsupported(key));
        }
        if s.image.is_empty() {
            return Err(if s.build.is_some() {
                self.err(
                    "build",
                    "building images is not supported by berth yet; set `image:` to a built image",
                )
            } else {
                self.err("image", "no image given")
            });
        }
        if let Some(deploy) = &s.deploy {
            for (which, r) in [
                ("limits", &deploy.resources.limits),
                ("reservations", &deploy.resources.reservations),
            ] {
                let Some(r) = r else { continue };
                if !r.devices.is_empty() {
                    return Err(unsupported(&format!("deploy.resources.{which}.devices")));
                }
                if !r.generic_resources.is_empty() {
                    return Err(unsupported(&format!(
                        "deploy.resources.{which}.generic_resources"
                    )));
                }
            }
        }
        Ok(())
    }

    /// argv (image ENTRYPOINT/CMD under `entrypoint`/`command`, as Docker resolves them), env
    /// (image env under `environment`, which already holds the `env_file`s), cwd, user.
    fn process(&self) -> anyhow::Result<ProcessConfig> {
        let svc = self.svc;
        let image = &self.inst.image.config;
        // compose's string form is split into words (no `sh -c`), so both are exec forms.
        let entrypoint = svc
            .entrypoint
            .as_ref()
            .map(|e| CommandOverride::Exec(e.args()));
        let command = svc
            .command
            .as_ref()
            .map(|c| CommandOverride::Exec(c.args()));
        let args = spec::resolve_command(image, entrypoint.as_ref(), command.as_ref())
            .map_err(|e| self.err("command", e))?;
        // A variable without a value (unset in the environment) removes the image's, as the
        // engine does with a `NAME` entry.
        let own: Vec<String> = svc
            .environment
            .iter()
            .map(|(k, v)| match v {
                Some(v) => format!("{k}={v}"),
                None => k.clone(),
            })
            .collect();
        let env = spec::merge_env(&image.env, &[&own]);
        let non_empty = |s: &String| !s.is_empty();
        Ok(ProcessConfig {
            args,
            env,
            cwd: Some(&svc.working_dir)
                .filter(|w| non_empty(w))
                .or(image.working_dir.as_ref().filter(|w| non_empty(w)))
                .cloned()
                .unwrap_or_else(|| "/".to_string()),
            user: Some(&svc.user)
                .filter(|u| non_empty(u))
                .or(image.user.as_ref())
                .cloned()
                .unwrap_or_default(),
            group_add: svc.group_add.clone(),
            tty: svc.tty,
            stdin_open: svc.stdin_open,
        })
    }

    /// Image labels < `label_file`s < `labels` < compose's own.
    fn labels(&self) -> anyhow::Result<BTreeMap<String, String>> {
        let inst = self.inst;
        let mut out = inst.image.config.labels.clone();
        for (i, file) in self.svc.label_file.iter().enumerate() {
            let path = self.absolute(file);
            let values = berth_compose::dotenv::read_file(&path, &|_| None)
                .map_err(|e| self.err(&format!("label_file[{i}]"), e))?;
            out.extend(values);
        }
        out.extend(self.svc.labels.clone());
        let own = [
            (labels::PROJECT, inst.project.name.clone()),
            (labels::SERVICE, inst.service.to_string()),
            (labels::CONTAINER_NUMBER, inst.number.to_string()),
            (
                labels::ONEOFF,
                if inst.oneoff { "True" } else { "False" }.to_string(),
            ),
            (labels::CONFIG_HASH, inst.config_hash.clone()),
            (labels::WORKING_DIR, inst.working_dir.clone()),
            (labels::CONFIG_FILES, inst.config_files.join(",")),
            (
                labels::VERSION,
                crate::commands::version::VERSION.to_string(),
            ),
            (labels::IMAGE, inst.image.id.to_string()),
        ];
        for (k, v) in own {
            out.insert(k.to_string(), v);
        }
        Ok(out)
    }

    /// A path from the compose file: absolute already (the loader's paths phase), else taken
    /// relative to the project directory.
    fn absolute(&self, p: &str) -> PathBuf {
        let path = Path::new(p);
        if path.is_absolute() {
            path.to_path_buf()
        } else {
            Path::new(&self.inst.working_dir).join(path)
        }
    }

    /// `volumes`, then `tmpfs`, then the image's `VOLUME`s no mount covers (anonymous
    /// volumes, as the engine gives them).
    fn mounts(&self) -> anyhow::Result<Vec<MountConfig>> {
        let mut mounts: Vec<MountConfig> = Vec::new();
        let mut push = |m: MountConfig, key: String| -> anyhow::Result<()> {
            let t = m.target.trim_end_matches('/');
            if mounts.iter().any(|o| o.target.trim_end_matches('/') == t) {
                return Err(self.err(&key, format!("duplicate mount point {}", m.target)));
            }
            mounts.push(m);
            Ok(())
        };
        for (i, v) in self.svc.volumes.iter().enumerate() {
            let key = format!("volumes[{i}]");
            push(self.volume(v, &key)?, key)?;
        }
        for (i, t) in self.svc.tmpfs.iter().enumerate() {
            let key = format!("tmpfs[{i}]");
            push(self.tmpfs_entry(t, &key)?, key)?;
        }
        for (kind, refs) in [
            (FileRef::Secret, &self.svc.secrets),
            (FileRef::Config, &self.svc.configs),
        ] {
            for (i, r) in refs.iter().enumerate() {
                let key = format!("{}[{i}]", kind.key());
                push(self.file_reference(kind, i, r, &key)?, key)?;
            }
        }
        // `volumes_from`: the other container's volumes and binds where this one mounts
        // nothing itself (Docker: its own mounts win), the volumes shared, never owned (a
        // `rm -v` of this container must not take another's anonymous volume along).
        for (i, entry) in self.svc.volumes_from.iter().enumerate() {
            let key = format!("volumes_from[{i}]");
            let (source, mode) = volumes_from_source(entry);
            let theirs = self.inst.volumes_from.get(&source).ok_or_else(|| {
                self.err(
                    &key,
                    format!("{entry:?}: the container to take volumes from is not there"),
                )
            })?;
            for m in theirs {
                let t = m.target.trim_end_matches('/');
                if mounts.iter().any(|o| o.target.trim_end_matches('/') == t) {
                    continue;
                }
                let kind = match &m.kind {
                    MountKind::Volume {
                        name,
                        nocopy,
                        subpath,
                        ..
                    } => MountKind::Volume {
                        name: name.clone(),
                        nocopy: *nocopy,
                        anonymous: false,
                        subpath: subpath.clone(),
                    },
                    MountKind::Bind { .. } => m.kind.clone(),
                    // Not volumes: a tmpfs or a secret is the other container's own.
                    MountKind::Tmpfs { .. } | MountKind::File { .. } => continue,
                };
                mounts.push(MountConfig {
                    target: m.target.clone(),
                    read_only: match mode {
                        Some("ro") => true,
                        Some(_) => false,
                        None => m.read_only,
                    },
                    kind,
                });
            }
        }
        for target in &self.inst.image.config.volumes {
            let t = target.trim_end_matches('/');
            if !mounts.iter().any(|m| m.target.trim_end_matches('/') == t) {
                mounts.push(MountConfig {
                    target: target.clone(),
                    read_only: false,
                    kind: MountKind::Volume {
                        name: berth_engine::volumes::random_name()?,
                        nocopy: false,
                        anonymous: true,
                        subpath: None,
                    },
                });
            }
        }
        Ok(mounts)
    }

    /// One entry of `secrets:` or `configs:`, as docker compose gives it: an object with
    /// `content` or `environment` is copied into the container (owner `uid`:`gid`, default
    /// root, mode default 0444); one with a `file` is bind-mounted read-only, except that
    /// berth copies it too when `uid`, `gid` or `mode` is set, which docker compose ignores
    /// with a warning. `external` objects live in Swarm and are refused.
    fn file_reference(
        &self,
        kind: FileRef,
        index: usize,
        r: &FileReferenceConfig,
        key: &str,
    ) -> anyhow::Result<MountConfig> {
        let project = self.inst.project;
        // A secret and a config carry the same fields (compose-go's `FileObjectConfig`).
        macro_rules! fields {
            ($d:expr) => {
                (
                    &$d.file,
                    &$d.environment,
                    &$d.content,
                    $d.external.0,
                    &$d.driver,
                    &$d.template_driver,
                )
            };
        }
        let (file, environment, content, external, driver, template_driver) = match kind {
            FileRef::Secret => project.secrets.get(&r.source).map(|d| fields!(d)),
            FileRef::Config => project.configs.get(&r.source).map(|d| fields!(d)),
        }
        .ok_or_else(|| {
            self.err(
                key,
                format!(
                    "{} {:?} is not defined in the top-level `{}:`",
                    kind.noun(),
                    r.source,
                    kind.key()
                ),
            )
        })?;
        let noun = kind.noun();
        let source = &r.source;
        if external {
            return Err(self.err(
                key,
                format!(
                    "{noun} {source:?} is external: external {}s live in Swarm, which berth \
                     is not; give it a `file:` or an `environment:`",
                    noun
                ),
            ));
        }
        if !driver.is_empty() || !template_driver.is_empty() {
            return Err(self.err(
                key,
                format!("{noun} {source:?}: `driver` and `template_driver` are not supported"),
            ));
        }
        let target = kind.target(r);
        let content: Option<Vec<u8>> = if !content.is_empty() {
            Some(content.clone().into_bytes())
        } else if !environment.is_empty() {
            let value = self.inst.environment.get(environment).ok_or_else(|| {
                self.err(
                    key,
                    format!(
                        "environment variable {environment:?} required by {noun} {source:?} \
                         is not set"
                    ),
                )
            })?;
            Some(value.clone().into_bytes())
        } else if file.is_empty() {
            return Err(self.err(
                key,
                format!("{noun} {source:?} has none of file, environment, content"),
            ));
        } else {
            let path = self.absolute(file);
            if !path.exists() {
                return Err(self.err(
                    key,
                    format!("{noun} {source:?}: file {} does not exist", path.display()),
                ));
            }
            if r.uid.is_empty() && r.gid.is_empty() && r.mode.is_none() {
                return Ok(MountConfig {
                    target,
                    read_only: true,
                    kind: MountKind::Bind {
                        source: path,
                        propagation: None,
                        create_host_path: false,
                    },
                });
            }
            Some(std::fs::read(&path).map_err(|e| {
                self.err(
                    key,
                    format!("{noun} {source:?}: read {}: {e}", path.display()),
                )
            })?)
        };
        let id = |what: &str, v: &str| -> anyhow::Result<u32> {
            if v.is_empty() {
                return Ok(0);
            }
            v.parse().map_err(|_| {
                self.err(
                    &format!("{key}.{what}"),
                    format!("{v:?} is not a numeric id"),
                )
            })
        };
        let mode = match r.mode {
            None => 0o444,
            Some(m) if (0..=0o7777).contains(&m.0) => m.0 as u32,
            Some(m) => {
                return Err(self.err(
                    &format!("{key}.mode"),
                    format!("{:o} is not a file mode", m.0),
                ));
            }
        };
        let name = format!("{noun}-{index}");
        self.files.borrow_mut().push(ContainerFile {
            name: name.clone(),
            content: content.unwrap_or_default(),
            uid: id("uid", &r.uid)?,
            gid: id("gid", &r.gid)?,
            mode,
        });
        Ok(MountConfig {
            target,
            read_only: false,
            kind: MountKind::File { name },
        })
    }

    /// One long-syntax `volumes:` entry.
    fn volume(&self, v: &ServiceVolumeConfig, key: &str) -> anyhow::Result<MountConfig> {
        if !v.target.starts_with('/') {
            return Err(self.err(
                key,
                format!("the target {:?} must be an absolute path", v.target),
            ));
        }
        let kind = match v.r#type.as_str() {
            "volume" => {
                let opts = v.volume.as_ref();
                let subpath = opts.map(|o| o.subpath.clone()).filter(|s| !s.is_empty());
                if let Some(s) = &subpath
                    && (s.starts_with('/')
                        || Path::new(s).components().any(|c| c.as_os_str() == ".."))
                {
                    return Err(self.err(
                        key,
                        format!("subpath {s:?} must be relative and stay inside the volume"),
                    ));
                }
                let nocopy = opts.is_some_and(|o| o.nocopy);
                if v.source.is_empty() {
                    MountKind::Volume {
                        name: berth_engine::volumes::random_name()?,
                        nocopy,
                        anonymous: true,
                        subpath,
                    }
                } else {
                    // A key of the top-level `volumes:` by its engine name; anything else
                    // (consistency lets none through) as written, as docker compose does.
                    let name = if self.inst.project.volumes.contains_key(&v.source) {
                        volume_name(self.inst.project, &v.source)
                    } else {
                        v.source.clone()
                    };
                    MountKind::Volume {
                        name,
                        nocopy,
                        anonymous: false,
                        subpath,
                    }
                }
            }
            "bind" => {
                if v.source.is_empty() {
                    return Err(self.err(key, "a bind mount needs a source"));
                }
                let bind = v.bind.as_ref();
                if let Some(b) = bind
                    && !b.recursive.is_empty()
                    && b.recursive != "enabled"
                {
                    return Err(
                        self.err(&format!("{key}.bind.recursive"), "not supported by berth")
                    );
                }
                let propagation = bind
                    .map(|b| b.propagation.clone())
                    .filter(|p| !p.is_empty());
                if let Some(p) = &propagation
                    && !matches!(
                        p.as_str(),
                        "rprivate" | "private" | "rshared" | "shared" | "rslave" | "slave"
                    )
                {
                    return Err(self.err(
                        &format!("{key}.bind.propagation"),
                        format!("invalid propagation mode {p:?}"),
                    ));
                }
                MountKind::Bind {
                    source: self.absolute(&v.source),
                    propagation,
                    create_host_path: bind.is_some_and(|b| b.create_host_path),
                }
            }
            "tmpfs" => {
                let t = v.tmpfs.as_ref();
                let size = t.map(|t| t.size.bytes()).unwrap_or(0);
                if size < 0 {
                    return Err(self.err(&format!("{key}.tmpfs.size"), "must not be negative"));
                }
                MountKind::Tmpfs {
                    size: (size > 0).then_some(size as u64),
                    mode: t.map(|t| t.mode).filter(|m| *m != 0),
                }
            }
            other => {
                return Err(self.err(
                    key,
                    format!("mounts of type {other:?} are not supported (volume, bind, tmpfs)"),
                ));
            }
        };
        Ok(MountConfig {
            target: v.target.clone(),
            read_only: v.read_only,
            kind,
        })
    }

    /// One `tmpfs:` entry: `PATH[:size=…,mode=…,ro]`. `noexec`, `nosuid` and `nodev` are what
    /// berth mounts anyway; options that would lift them are refused.
    fn tmpfs_entry(&self, t: &str, key: &str) -> anyhow::Result<MountConfig> {
        let (path, opts) = t.split_once(':').unwrap_or((t, ""));
        if !path.starts_with('/') {
            return Err(self.err(key, format!("the target {path:?} must be an absolute path")));
        }
        let mut size = None;
        let mut mode = None;
        let mut read_only = false;
        for o in opts.split(',').filter(|o| !o.is_empty()) {
            match o.split_once('=') {
                Some(("size", v)) => {
                    let b = berth_compose::units::ByteSize::parse(v)
                        .map_err(|e| self.err(key, format!("invalid size {v:?}: {e}")))?
                        .bytes();
                    size = (b > 0).then_some(b as u64);
                }
                Some(("mode", v)) => {
                    mode = Some(
                        u32::from_str_radix(v, 8)
                            .map_err(|_| self.err(key, format!("invalid mode {v:?}")))?,
                    );
                }
                None if o == "ro" => read_only = true,
                None if matches!(o, "rw" | "noexec" | "nosuid" | "nodev") => {}
                _ => return Err(self.err(key, format!("tmpfs option {o:?} is not supported"))),
            }
        }
        Ok(MountConfig {
            target: path.to_string(),
            read_only,
            kind: MountKind::Tmpfs { size, mode },
        })
    }

    /// `privileged`, `cap_add`/`cap_drop`, `security_opt`.
    fn security(&self) -> anyhow::Result<SecurityConfig> {
        let svc = self.svc;
        let mut security = SecurityConfig {
            privileged: svc.privileged,
            cap_add: svc.cap_add.clone(),
            cap_drop: svc.cap_drop.clone(),
            ..Default::default()
        };
        for (i, opt) in svc.security_opt.iter().enumerate() {
            let key = format!("security_opt[{i}]");
            let (k, v) = opt.split_once(['=', ':']).unwrap_or((opt.as_str(), "true"));
            match k {
                "no-new-privileges" => match v {
                    "true" => security.no_new_privileges = true,
                    "false" => security.no_new_privileges = false,
                    _ => return Err(self.err(&key, format!("invalid value {opt:?}"))),
                },
                "seccomp" if v == "unconfined" => security.seccomp = SeccompConfig::Unconfined,
                "seccomp" => {
                    // Read here, as the docker CLI reads the profile on the client side.
                    let path = self.absolute(v);
                    let text = std::fs::read_to_string(&path).map_err(|e| {
                        self.err(
                            &key,
                            format!("cannot read seccomp profile {}: {e}", path.display()),
                        )
                    })?;
                    security.seccomp = SeccompConfig::Profile(text);
                }
                // berth applies neither SELinux labels nor AppArmor profiles.
                "label" | "apparmor" => {}
                _ => {
                    return Err(self.err(&key, format!("{opt:?} is not supported by berth")));
                }
            }
        }
        Ok(security)
    }

    /// The service's limits, with `deploy.resources` winning where set (as docker compose's
    /// `setLimits`/`setReservations`: memory, cpus and pids limits, memory reservation).
    fn resources(&self) -> anyhow::Result<ResourceConfig> {
        let svc = self.svc;
        let bytes = |b: berth_compose::units::ByteSize| (b.bytes() != 0).then_some(b.bytes());
        let nano_cpus = |cpus: f32, key: &str| -> anyhow::Result<Option<i64>> {
            if cpus < 0.0 || !cpus.is_finite() {
                return Err(self.err(key, format!("invalid number of CPUs {cpus}")));
            }
            // Through the decimal text, so `0.1` is 100000000 and not f32's 100000001.
            let c: f64 = cpus.to_string().parse().unwrap_or(f64::from(cpus));
            Ok((cpus > 0.0).then(|| (c * 1e9).round() as i64))
        };
        let non_negative = |v: i64, key: &str| -> anyhow::Result<Option<i64>> {
            if v < 0 && v != -1 {
                return Err(self.err(key, format!("invalid value {v}")));
            }
            Ok((v != 0).then_some(v))
        };
        let positive = |v: i64, key: &str| -> anyhow::Result<Option<u64>> {
            match v {
                0 => Ok(None),
                v if v > 0 => Ok(Some(v as u64)),
                v => Err(self.err(key, format!("invalid value {v}"))),
            }
        };
        let mut r = ResourceConfig {
            memory: non_negative(svc.mem_limit.bytes(), "mem_limit")?,
            memory_swap: non_negative(svc.memswap_limit.bytes(), "memswap_limit")?,
            memory_reservation: non_negative(svc.mem_reservation.bytes(), "mem_reservation")?,
            nano_cpus: nano_cpus(svc.cpus, "cpus")?,
            cpu_shares: match svc.cpu_shares {
                0 => None,
                n if n > 0 => Some(n as u64),
                n => return Err(self.err("cpu_shares", format!("invalid value {n}"))),
            },
            cpuset_cpus: Some(svc.cpuset.clone()).filter(|s| !s.is_empty()),
            cpuset_mems: None,
            pids_limit: (svc.pids_limit != 0).then_some(svc.pids_limit),
            oom_score_adj: match svc.oom_score_adj {
                0 => None,
                n @ -1000..=1000 => Some(n as i32),
                n => {
                    return Err(self.err("oom_score_adj", format!("{n} is outside -1000..1000")));
                }
            },
            shm_size: match svc.shm_size.bytes() {
                0 => None,
                n if n > 0 => Some(n as u64),
                n => return Err(self.err("shm_size", format!("invalid size {n}"))),
            },
            cpu_period: positive(svc.cpu_period, "cpu_period")?,
            cpu_quota: match svc.cpu_quota {
                0 => None,
                n if n > 0 || n == -1 => Some(n),
                n => return Err(self.err("cpu_quota", format!("invalid value {n}"))),
            },
            cpu_rt_period: positive(svc.cpu_rt_period, "cpu_rt_period")?,
            cpu_rt_runtime: match svc.cpu_rt_runtime {
                0 => None,
                n if n > 0 || n == -1 => Some(n),
                n => return Err(self.err("cpu_rt_runtime", format!("invalid value {n}"))),
            },
            memory_swappiness: match svc.mem_swappiness.bytes() {
                0 => None,
                n @ 1..=100 => Some(n as u64),
                n => {
                    return Err(self.err("mem_swappiness", format!("{n} is outside 0..100")));
                }
            },
            oom_kill_disable: svc.oom_kill_disable,
            blkio: self.blkio()?,
        };
        let resources = self.svc.deploy.as_ref().map(|d| &d.resources);
        if let Some(l) = resources.and_then(|r| r.limits.as_ref()) {
            if let Some(m) = bytes(l.memory) {
                r.memory = non_negative(m, "deploy.resources.limits.memory")?;
            }
            if let Some(c) = nano_cpus(l.cpus, "deploy.resources.limits.cpus")? {
                r.nano_cpus = Some(c);
            }
            if l.pids > 0 {
                r.pids_limit = Some(l.pids);
            }
        }
        // A CPU reservation is a swarm placement hint and pids only a limit: only memory.
        if let Some(m) = resources
            .and_then(|r| r.reservations.as_ref())
            .and_then(|r| bytes(r.memory))
        {
            r.memory_reservation = non_negative(m, "deploy.resources.reservations.memory")?;
        }
        Ok(r)
    }

    /// `blkio_config`: devices as given (the shim finds their numbers when it starts the
    /// container).
    fn blkio(&self) -> anyhow::Result<BlkioConfig> {
        let Some(b) = &self.svc.blkio_config else {
            return Ok(BlkioConfig::default());
        };
        let weight = |w: u16, key: &str| -> anyhow::Result<u16> {
            if (10..=1000).contains(&w) {
                Ok(w)
            } else {
                Err(self.err(key, format!("weight {w} is outside 10..1000")))
            }
        };
        let rates = |list: &[berth_compose::model::ThrottleDevice], key: &str| {
            list.iter()
                .enumerate()
                .map(|(i, d)| {
                    let rate = d.rate.bytes();
                    if rate < 0 {
                        return Err(self.err(
                            &format!("blkio_config.{key}[{i}].rate"),
                            "must not be negative",
                        ));
                    }
                    Ok((PathBuf::from(&d.path), rate as u64))
                })
                .collect::<anyhow::Result<Vec<_>>>()
        };
        Ok(BlkioConfig {
            weight: match b.weight {
                0 => None,
                w => Some(weight(w, "blkio_config.weight")?),
            },
            weight_device: b
                .weight_device
                .iter()
                .enumerate()
                .map(|(i, d)| {
                    Ok((
                        PathBuf::from(&d.path),
                        weight(d.weight, &format!("blkio_config.weight_device[{i}].weight"))?,
                    ))
                })
                .collect::<anyhow::Result<_>>()?,
            read_bps: rates(&b.device_read_bps, "device_read_bps")?,
            write_bps: rates(&b.device_write_bps, "device_write_bps")?,
            read_iops: rates(&b.device_read_iops, "device_read_iops")?,
            write_iops: rates(&b.device_write_iops, "device_write_iops")?,
        })
    }

    /// `ulimits`: one value is soft and hard; -1 is unlimited.
    fn ulimits(&self) -> anyhow::Result<BTreeMap<String, (u64, u64)>> {
        let limit = |name: &str, v: i64| -> anyhow::Result<u64> {
            match v {
                -1 => Ok(u64::MAX),
                v if v >= 0 => Ok(v as u64),
                v => Err(self.err(&format!("ulimits.{name}"), format!("invalid value {v}"))),
            }
        };
        self.svc
            .ulimits
            .iter()
            .map(|(name, u)| {
                let (soft, hard) = match *u {
                    Ulimit::Single(v) => (v, v),
                    Ulimit::Pair { soft, hard } => (soft, hard),
                };
                Ok((name.clone(), (limit(name, soft)?, limit(name, hard)?)))
            })
            .collect()
    }

    /// `devices` (long syntax: source, target, permissions); CDI names are refused.
    fn devices(&self) -> anyhow::Result<Vec<DeviceConfig>> {
        self.svc
            .devices
            .iter()
            .enumerate()
            .map(|(i, d)| {
                let key = format!("devices[{i}]");
                let target = if d.target.is_empty() {
                    &d.source
                } else {
                    &d.target
                };
                let perms = if d.permissions.is_empty() {
                    "rwm"
                } else {
                    d.permissions.as_str()
                };
                if !d.source.starts_with('/') || !target.starts_with('/') {
                    return Err(self.err(
                        &key,
                        format!(
                            "{:?}: device paths must be absolute (CDI devices are not supported)",
                            d.source
                        ),
                    ));
                }
                if !perms.chars().all(|c| "rwm".contains(c)) {
                    return Err(self.err(&key, format!("invalid device permissions {perms:?}")));
                }
                Ok(DeviceConfig {
                    host_path: PathBuf::from(&d.source),
                    container_path: target.clone(),
                    permissions: perms.to_string(),
                })
            })
            .collect()
    }

    /// `logging`: `json-file` (the default), `local` or `none`, with `max-size` and
    /// `max-file`. Options that only decorate log entries are ignored.
    fn log(&self) -> anyhow::Result<LogConfig> {
        let mut log = LogConfig::default();
        let Some(l) = &self.svc.logging else {
            return Ok(log);
        };
        match l.driver.as_str() {
            "" => {}
            "json-file" | "local" | "none" => log.driver = l.driver.clone(),
            other => {
                return Err(self.err(
                    "logging.driver",
                    format!("{other:?} is not supported (json-file, local, none)"),
                ));
            }
        }
        for (k, v) in &l.options {
            let key = format!("logging.options.{k}");
            match k.as_str() {
                "max-size" if v == "-1" => log.max_size = 0,
                "max-size" => {
                    log.max_size = berth_compose::units::ByteSize::parse(v)
                        .map_err(|e| self.err(&key, format!("invalid size {v:?}: {e}")))?
                        .bytes()
                        .max(0) as u64;
                }
                "max-file" => {
                    log.max_file = v
                        .parse::<u32>()
                        .ok()
                        .filter(|n| *n >= 1)
                        .ok_or_else(|| self.err(&key, format!("invalid count {v:?}")))?;
                }
                "compress" | "tag" | "labels" | "labels-regex" | "env" | "env-regex" => {}
                _ => return Err(self.err(&key, "unknown log option")),
            }
        }
        Ok(log)
    }

    /// `healthcheck` over the image's `HEALTHCHECK` (each unset key keeps the image's value,
    /// then Docker's default); `disable: true` is the test `NONE`.
    fn healthcheck(&self) -> anyhow::Result<Option<HealthConfig>> {
        let image = self.inst.image.config.healthcheck.as_ref();
        let Some(h) = &self.svc.healthcheck else {
            return Ok(crate::health::resolve(image, &HealthOverrides::default()));
        };
        // The loader already refused a test not starting with CMD, CMD-SHELL or NONE.
        let dur = |key: &str, d: Option<berth_compose::units::Duration>| match d {
            None => Ok(None),
            Some(d) => {
                crate::health::duration(d).map_err(|e| self.err(&format!("healthcheck.{key}"), e))
            }
        };
        let over = HealthOverrides {
            test: h.test.0.clone(),
            interval: dur("interval", h.interval)?,
            timeout: dur("timeout", h.timeout)?,
            retries: h
                .retries
                .map(|r| u32::try_from(r).map_err(|_| self.err("healthcheck.retries", "too large")))
                .transpose()?,
            start_period: dur("start_period", h.start_period)?,
            start_interval: dur("start_interval", h.start_interval)?,
            disable: h.disable,
        };
        Ok(crate::health::resolve(image, &over))
    }

    /// `restart`, overridden by `deploy.restart_policy` (condition `none`/`on-failure`/`any`
    /// → `no`/`on-failure`/`always`, as docker compose maps it).
    fn restart(&self) -> anyhow::Result<RestartPolicy> {
        let mut policy = RestartPolicy {
            name: "no".to_string(),
            ..Default::default()
        };
        if !self.svc.restart.is_empty() {
            let r = &self.svc.restart;
            let (name, retries) = r.split_once(':').unwrap_or((r.as_str(), "0"));
            if !matches!(name, "no" | "always" | "on-failure" | "unless-stopped") {
                return Err(self.err("restart", format!("invalid restart policy {r:?}")));
            }
            policy.name = name.to_string();
            policy.max_retries = retries
                .parse()
                .map_err(|_| self.err("restart", format!("invalid retry count in {r:?}")))?;
        }
        let Some(p) = self
            .svc
            .deploy
            .as_ref()
            .and_then(|d| d.restart_policy.as_ref())
        else {
            return Ok(policy);
        };
        policy.name = match p.condition.as_str() {
            // docker compose hands an empty condition to the engine, which does not restart.
            "none" | "no" | "" => "no",
            "on-failure" => "on-failure",
            "any" | "always" => "always",
            "unless-stopped" => "unless-stopped",
            other => {
                return Err(self.err(
                    "deploy.restart_policy.condition",
                    format!("invalid condition {other:?} (none, on-failure, any)"),
                ));
            }
        }
        .to_string();
        policy.max_retries = match p.max_attempts {
            None => 0,
            Some(n) => u32::try_from(n).map_err(|_| {
                self.err(
                    "deploy.restart_policy.max_attempts",
                    format!("{n} is too large"),
                )
            })?,
        };
        let millis = |d: Option<berth_compose::units::Duration>, key: &str| match d {
            None => Ok(None),
            Some(d) if d.as_nanos() < 0 => Err(self.err(key, "must not be negative")),
            Some(d) => Ok(Some(d.as_nanos() as u64 / 1_000_000)),
        };
        policy.delay_ms = millis(p.delay, "deploy.restart_policy.delay")?;
        policy.window_ms = millis(p.window, "deploy.restart_policy.window")?;
        Ok(policy)
    }

    /// The container a `service:x` / `container:x` value of `key` names.
    fn joined(&self, key: &str, mode: &str) -> anyhow::Result<String> {
        self.inst.joined.get(mode).cloned().ok_or_else(|| {
            self.err(
                key,
                format!("{mode:?}: the container to join is not running"),
            )
        })
    }

    /// `pid`, `ipc`, `uts`, `cgroup`: the namespaces besides the network's, as Docker reads
    /// them.
    fn namespace_modes(
        &self,
    ) -> anyhow::Result<(NamespaceMode, NamespaceMode, NamespaceMode, NamespaceMode)> {
        let svc = self.svc;
        let shared = |key: &str, mode: &str| -> anyhow::Result<Option<NamespaceMode>> {
            Ok(match mode {
                "host" => Some(NamespaceMode::Host),
                m if m.starts_with("service:") || m.starts_with("container:") => {
                    Some(NamespaceMode::Container(self.joined(key, m)?))
                }
                _ => None,
            })
        };
        let pid = match svc.pid.as_str() {
            "" => NamespaceMode::Private,
            m => shared("pid", m)?.ok_or_else(|| {
                self.err(
                    "pid",
                    format!("{m:?} is not supported (host, service:NAME, container:NAME)"),
                )
            })?,
        };
        let ipc = match svc.ipc.as_str() {
            "" | "private" | "shareable" => NamespaceMode::Private,
            "none" => NamespaceMode::None,
            m => shared("ipc", m)?.ok_or_else(|| {
                self.err(
                    "ipc",
                    format!(
                        "{m:?} is not supported (private, shareable, none, host, service:NAME, \
                         container:NAME)"
                    ),
                )
            })?,
        };
        let uts = match svc.uts.as_str() {
            "" => NamespaceMode::Private,
            "host" if !svc.hostname.is_empty() || !svc.domainname.is_empty() => {
                return Err(self.err(
                    "uts",
                    "conflicting options: `hostname`/`domainname` and `uts: host`",
                ));
            }
            "host" => NamespaceMode::Host,
            m => return Err(self.err("uts", format!("{m:?} is not supported (host)"))),
        };
        let cgroupns = match svc.cgroup.as_str() {
            "" | "private" => NamespaceMode::Private,
            "host" => NamespaceMode::Host,
            m => return Err(self.err("cgroup", format!("{m:?} is not supported (host, private)"))),
        };
        Ok((pid, ipc, uts, cgroupns))
    }

    /// The container's links, as `NAME:ALIAS` for its endpoint on the first network, where
    /// Docker puts them: each `external_links` entry (`CONTAINER` or `CONTAINER:ALIAS`), and
    /// each `links` entry `SERVICE:ALIAS`. The DNS daemon answers ALIAS to this container
    /// alone, with NAME's addresses on the networks the two share; a `links` entry without
    /// an alias adds nothing, as the service's name resolves on those networks already.
    fn links(&self) -> anyhow::Result<Vec<String>> {
        let mut out = Vec::new();
        for (key, entries, what, implicit) in [
            (
                "external_links",
                &self.svc.external_links,
                "CONTAINER",
                true,
            ),
            ("links", &self.svc.links, "SERVICE", false),
        ] {
            for (i, entry) in entries.iter().enumerate() {
                let (name, alias) = crate::net::parse_link(entry).ok_or_else(|| {
                    self.err(
                        &format!("{key}[{i}]"),
                        format!("{entry:?} is not {what} or {what}:ALIAS"),
                    )
                })?;
                // An external link is kept without an alias too (`up` checks that its
                // container exists); a service's name resolves on its networks already.
                if implicit || alias != name {
                    out.push(format!("{name}:{alias}"));
                }
            }
        }
        Ok(out)
    }

    /// `network_mode` and `networks`.
    fn networking(&self) -> anyhow::Result<(NetworkConfig, Vec<EndpointConfig>)> {
        let svc = self.svc;
        let mode = svc.network_mode.as_str();
        let special = match mode {
            "" => None,
            "host" => Some(NetworkConfig::Host),
            "none" => Some(NetworkConfig::None),
            m if m.starts_with("service:") || m.starts_with("container:") => {
                Some(NetworkConfig::Container(self.joined("network_mode", m)?))
            }
            m => {
                return Err(self.err(
                    "network_mode",
                    format!(
                        "{m:?} is not supported (host, none, service:NAME, container:NAME, \
                         or networks:)"
                    ),
                ));
            }
        };
        let links = self.links()?;
        if let Some(config) = special {
            // Docker refuses links with a network mode too.
            for (key, set) in [
                ("external_links", &svc.external_links),
                ("links", &svc.links),
            ] {
                if !set.is_empty() {
                    return Err(self.err(
                        key,
                        format!("cannot be combined with network_mode {mode:?}"),
                    ));
                }
            }
            if !svc.networks.is_empty() {
                return Err(self.err(
                    "networks",
                    format!("cannot be combined with network_mode {mode:?}"),
                ));
            }
            return Ok((config, Vec::new()));
        }
        let none = ServiceNetworkConfig::default();
        let mut keys: Vec<(&String, &ServiceNetworkConfig)> = svc
            .networks
            .iter()
            .map(|(k, v)| (k, v.as_ref().unwrap_or(&none)))
            .collect();
        // compose-go's NetworksByPriority: higher `priority` first, then by key.
        keys.sort_by(|a, b| b.1.priority.cmp(&a.1.priority).then(a.0.cmp(b.0)));
        let mut endpoints = Vec::new();
        for (i, (key, n)) in keys.iter().enumerate() {
            let at = |k: &str| format!("networks.{key}.{k}");
            if !n.ipv6_address.is_empty() {
                return Err(self.err(&at("ipv6_address"), "IPv6 is not supported by berth yet"));
            }
            if !n.link_local_ips.is_empty() {
                return Err(self.err(&at("link_local_ips"), "not supported by berth"));
            }
            if !n.driver_opts.is_empty() {
                return Err(self.err(&at("driver_opts"), "not supported by berth"));
            }
            if n.gw_priority != 0 {
                return Err(self.err(
                    &at("gw_priority"),
                    "not supported by berth: the first network (by priority) is the gateway",
                ));
            }
            let aliases = n.aliases.clone();
            let non_empty = |s: &String| (!s.is_empty()).then(|| s.clone());
            let mac = non_empty(&n.mac_address).or_else(|| {
                if i == 0 {
                    non_empty(&svc.mac_address)
                } else {
                    None
                }
            });
            endpoints.push(EndpointConfig {
                network: network_name(self.inst.project, key),
                aliases,
                ipv4_address: non_empty(&n.ipv4_address),
                mac_address: mac,
                interface_name: non_empty(&n.interface_name),
                // On the first network, as docker compose puts them.
                links: if i == 0 { links.clone() } else { Vec::new() },
            });
        }
        Ok((NetworkConfig::Private, endpoints))
    }

    /// `ports` (long syntax) through the same parser as `container run -p`. With
    /// `network_mode: host` or `none` they are dropped, as the engine drops them.
    fn ports(&self, network: &NetworkConfig) -> anyhow::Result<Vec<PortConfig>> {
        let ports = &self.svc.ports;
        match network {
            _ if ports.is_empty() => return Ok(Vec::new()),
            NetworkConfig::Host | NetworkConfig::None => return Ok(Vec::new()),
            NetworkConfig::Container(_) | NetworkConfig::Join(_) => {
                return Err(self.err(
                    "ports",
                    "cannot publish ports of a container that shares another's network",
                ));
            }
            NetworkConfig::Private if self.svc.networks.is_empty() => {
                return Err(self.err("ports", "publishing ports needs a network"));
            }
            NetworkConfig::Private => {}
        }
        let mut out = Vec::new();
        for (i, p) in ports.iter().enumerate() {
            let key = format!("ports[{i}]");
            let mut spec = String::new();
            if !p.host_ip.is_empty() {
                if p.host_ip.contains(':') {
                    spec.push_str(&format!("[{}]:", p.host_ip));
                } else {
                    spec.push_str(&format!("{}:", p.host_ip));
                }
            }
            if !p.published.is_empty() || !p.host_ip.is_empty() {
                spec.push_str(&format!("{}:", p.published));
            }
            let protocol = if p.protocol.is_empty() {
                "tcp"
            } else {
                p.protocol.as_str()
            };
            spec.push_str(&format!("{}/{protocol}", p.target));
            let configs =
                crate::commands::container::port_configs(&spec).map_err(|e| self.err(&key, e))?;
            out.extend(configs);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_compose::discovery::ConfigFile;
    use berth_compose::loader::{self, LoadOptions};
    use berth_engine::digest::Digest;
    use berth_engine::images::ImageConfig;

    fn load(yaml: &str) -> Project {
        let files = vec![ConfigFile {
            name: "/proj/compose.yaml".into(),
            path: Some("/proj/compose.yaml".into()),
            content: yaml.into(),
        }];
        let mut env = loader::Environment::new();
        env.insert("FROM_SHELL".into(), "shell".into());
        let mut opts = LoadOptions::new(files, PathBuf::from("/proj"), env);
        opts.explicit_name = Some("demo".into());
        match loader::load(&opts) {
            Ok(l) => l.project,
            Err(e) => panic!("test project does not load: {e}"),
        }
    }

    fn image() -> ImageRecord {
        ImageRecord {
            id: Digest::of_bytes(b"image"),
            manifest_digest: None,
            repo_tags: Vec::new(),
            repo_digests: Vec::new(),
            created: None,
            architecture: "amd64".into(),
            os: "linux".into(),
            variant: None,
            config: ImageConfig {
                entrypoint: Some(vec!["/entry".into()]),
                cmd: Some(vec!["serve".into(), "--port=80".into()]),
                env: vec!["PATH=/img/bin".into(), "A=image".into(), "B=image".into()],
                working_dir: Some("/app".into()),
                user: Some("app".into()),
                volumes: vec!["/data".into(), "/cache".into()],
                labels: BTreeMap::from([
                    ("img".into(), "1".into()),
                    ("shared".into(), "image".into()),
                    (labels::PROJECT.into(), "spoofed".into()),
                ]),
                stop_signal: Some("SIGQUIT".into()),
                ..Default::default()
            },
            layers: Vec::new(),
            size: 0,
        }
    }

    fn inst<'a>(
        project: &'a Project,
        image: &'a ImageRecord,
        service: &'a str,
    ) -> ServiceInstance<'a> {
        ServiceInstance {
            project,
            service,
            number: 2,
            oneoff: false,
            image,
            config_hash: "abc123".into(),
            working_dir: "/proj".into(),
            config_files: vec!["/proj/compose.yaml".into(), "/proj/override.yaml".into()],
            joined: BTreeMap::new(),
            environment: &ENVIRONMENT,
            volumes_from: BTreeMap::new(),
        }
    }

    static ENVIRONMENT: std::sync::LazyLock<Environment> = std::sync::LazyLock::new(|| {
        Environment::from([
            ("TOKEN".to_string(), "from-env".to_string()),
            ("EMPTY".to_string(), String::new()),
        ])
    });

    fn convert(yaml: &str) -> anyhow::Result<ContainerConfig> {
        let p = load(yaml);
        let img = image();
        container_config(&inst(&p, &img, "web")).map(|c| c.config)
    }

    fn ok(yaml: &str) -> ContainerConfig {
        match convert(yaml) {
            Ok(c) => c,
            Err(e) => panic!("conversion failed: {e:#}"),
        }
    }

    fn err(yaml: &str) -> String {
        match convert(yaml) {
            Ok(c) => panic!("conversion succeeded: {c:?}"),
            Err(e) => format!("{e:#}"),
        }
    }

    #[test]
    fn names() {
        let p = load(
            "services:\n  web: {image: x}\n  db: {image: x, container_name: the-db}\n\
             networks:\n  back: {}\n  named: {name: custom}\n  ext: {external: true}\n\
             volumes:\n  data: {}\n  old: {external: true}\n  n: {name: vol-n}\n",
        );
        assert_eq!(container_name(&p, "web", 3), "demo-web-3");
        assert_eq!(container_name(&p, "db", 1), "the-db");
        assert_eq!(network_name(&p, "back"), "demo_back");
        assert_eq!(network_name(&p, "default"), "demo_default");
        assert_eq!(network_name(&p, "named"), "custom");
        assert_eq!(network_name(&p, "ext"), "ext");
        assert_eq!(volume_name(&p, "data"), "demo_data");
        assert_eq!(volume_name(&p, "old"), "old");
        assert_eq!(volume_name(&p, "n"), "vol-n");
    }

    #[test]
    fn defaults_come_from_the_image() {
        let c = ok("services:\n  web:\n    image: busybox\n");
        assert_eq!(c.id.len(), 64);
        assert_eq!(c.name, "demo-web-2");
        assert_eq!(c.image_name, "busybox");
        assert_eq!(c.image_id, Some(Digest::of_bytes(b"image")));
        assert_eq!(c.process.args, ["/entry", "serve", "--port=80"]);
        assert_eq!(c.process.env, ["PATH=/img/bin", "A=image", "B=image"]);
        assert_eq!(c.process.cwd, "/app");
        assert_eq!(c.process.user, "app");
        assert_eq!(c.hostname, "");
        assert_eq!(c.stop_signal, "SIGQUIT");
        assert_eq!(c.stop_timeout, None);
        assert_eq!(c.restart.name, "no");
        assert_eq!(c.log, LogConfig::default());
        assert_eq!(c.cgroup_parent, "berth/demo");
        assert!(!c.init && !c.read_only && !c.auto_remove);
        assert_eq!(c.network, NetworkConfig::Private);
        // The implicit default network.
        assert_eq!(c.networks.len(), 1);
        assert_eq!(c.networks[0].network, "demo_default");
        assert!(c.networks[0].aliases.is_empty());
        // Image VOLUMEs as anonymous volumes.
        let targets: Vec<_> = c.mounts.iter().map(|m| m.target.as_str()).collect();
        assert_eq!(targets, ["/data", "/cache"]);
        assert!(c.mounts.iter().all(|m| matches!(
            &m.kind,
            MountKind::Volume { anonymous: true, name, .. } if name.len() == 64
        )));
    }

    #[test]
    fn entrypoint_and_command_override_as_docker() {
        let c = ok("services:\n  web:\n    image: x\n    command: run 'a b'\n");
        assert_eq!(c.process.args, ["/entry", "run", "a b"]);
        // An entrypoint drops the image's CMD too.
        let c = ok("services:\n  web:\n    image: x\n    entrypoint: [/bin/sh, -c]\n");
        assert_eq!(c.process.args, ["/bin/sh", "-c"]);
        let c = ok("services:\n  web:\n    image: x\n    entrypoint: /e\n    command: [x, y]\n");
        assert_eq!(c.process.args, ["/e", "x", "y"]);
        let e = err("services:\n  web:\n    image: x\n    entrypoint: []\n");
        assert!(e.starts_with("service \"web\": command: "), "{e}");
    }

    #[test]
    fn process_settings() {
        let c = ok(
            "services:\n  web:\n    image: x\n    environment:\n      A: svc\n      B:\n      \
             C: 'x=y'\n      FROM_SHELL:\n    working_dir: /w\n    user: '1000:1000'\n    \
             group_add: [audio, '44']\n    tty: true\n    stdin_open: true\n    hostname: h\n    \
             domainname: example.org\n",
        );
        // B has no value (unset in the environment): the image's B goes, as with the engine.
        assert_eq!(
            c.process.env,
            ["PATH=/img/bin", "A=svc", "C=x=y", "FROM_SHELL=shell"]
        );
        assert_eq!(c.process.cwd, "/w");
        assert_eq!(c.process.user, "1000:1000");
        assert_eq!(c.process.group_add, ["audio", "44"]);
        assert!(c.process.tty && c.process.stdin_open);
        assert_eq!(c.hostname, "h");
        assert_eq!(c.domainname, "example.org");
    }

    #[test]
    fn labels_layered_with_compose_labels_last() {
        let c = ok(
            "services:\n  web:\n    image: x\n    labels:\n      shared: svc\n      \
             com.docker.compose.service: spoofed\n      mine: '1'\n",
        );
        let l = &c.labels;
        assert_eq!(l["img"], "1");
        assert_eq!(l["shared"], "svc");
        assert_eq!(l["mine"], "1");
        assert_eq!(l[labels::PROJECT], "demo");
        assert_eq!(l[labels::SERVICE], "web");
        assert_eq!(l[labels::CONTAINER_NUMBER], "2");
        assert_eq!(l[labels::ONEOFF], "False");
        assert_eq!(l[labels::CONFIG_HASH], "abc123");
        assert_eq!(l[labels::WORKING_DIR], "/proj");
        assert_eq!(
            l[labels::CONFIG_FILES],
            "/proj/compose.yaml,/proj/override.yaml"
        );
        assert_eq!(l[labels::VERSION], crate::commands::version::VERSION);
        assert_eq!(l[labels::IMAGE], Digest::of_bytes(b"image").to_string());
    }

    #[test]
    fn label_files_under_labels() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("labels");
        std::fs::write(&file, "# c\nfrom_file=1\nshared=file\n").expect("write");
        let c = ok(&format!(
            "services:\n  web:\n    image: x\n    label_file: {}\n    labels: {{shared: svc}}\n",
            file.display()
        ));
        assert_eq!(c.labels["from_file"], "1");
        assert_eq!(c.labels["shared"], "svc");
        let e = err("services:\n  web:\n    image: x\n    label_file: /nonexistent/l\n");
        assert!(e.starts_with("service \"web\": label_file[0]: "), "{e}");
    }

    #[test]
    fn oneoff_containers() {
        let p = load("services:\n  web: {image: x, container_name: fixed}\n");
        let img = image();
        let mut i = inst(&p, &img, "web");
        i.oneoff = true;
        let c = container_config(&i).expect("converts").config;
        assert_eq!(c.name, format!("demo-web-run-{}", &c.id[..12]));
        assert_eq!(c.labels[labels::ONEOFF], "True");
        let i = inst(&p, &img, "web");
        assert_eq!(container_config(&i).expect("converts").config.name, "fixed");
        let i = inst(&p, &img, "nope");
        assert!(container_config(&i).is_err());
    }

    #[test]
    fn volumes_long_and_short() {
        let c = ok(
            "services:\n  web:\n    image: x\n    volumes:\n      - data:/data:ro\n      \
             - ext:/ext\n      - /anon\n      - ./src:/src\n      \
             - type: volume\n        source: data\n        target: /sub\n        \
             volume: {nocopy: true, subpath: a/b}\n      \
             - type: bind\n        source: /host\n        target: /b\n        \
             bind: {propagation: rshared, create_host_path: false}\n      \
             - type: tmpfs\n        target: /t\n        tmpfs: {size: 1m, mode: 0o700}\n    \
             tmpfs: [/run, '/tmp:size=64k,mode=1777,ro,noexec']\n\
             volumes:\n  data: {}\n  ext: {external: true, name: outside}\n",
        );
        let m = |t: &str| {
            c.mounts
                .iter()
                .find(|m| m.target == t)
                .unwrap_or_else(|| panic!("no mount at {t}"))
        };
        assert_eq!(
            m("/data"),
            &MountConfig {
                target: "/data".into(),
                read_only: true,
                kind: MountKind::Volume {
                    name: "demo_data".into(),
                    nocopy: false,
                    anonymous: false,
                    subpath: None
                }
            }
        );
        assert!(matches!(&m("/ext").kind, MountKind::Volume { name, .. } if name == "outside"));
        assert!(matches!(
            &m("/anon").kind,
            MountKind::Volume {
                anonymous: true,
                ..
            }
        ));
        assert_eq!(
            m("/src").kind,
            MountKind::Bind {
                source: "/proj/src".into(),
                propagation: None,
                create_host_path: true
            }
        );
        assert_eq!(
            m("/sub").kind,
            MountKind::Volume {
                name: "demo_data".into(),
                nocopy: true,
                anonymous: false,
                subpath: Some("a/b".into())
            }
        );
        assert_eq!(
            m("/b").kind,
            MountKind::Bind {
                source: "/host".into(),
                propagation: Some("rshared".into()),
                create_host_path: false
            }
        );
        assert_eq!(
            m("/t").kind,
            MountKind::Tmpfs {
                size: Some(1 << 20),
                mode: Some(0o700)
            }
        );
        assert_eq!(
            m("/run").kind,
            MountKind::Tmpfs {
                size: None,
                mode: None
            }
        );
        assert!(m("/tmp").read_only);
        assert_eq!(
            m("/tmp").kind,
            MountKind::Tmpfs {
                size: Some(64 << 10),
                mode: Some(0o1777)
            }
        );
        // The image's /data is covered; /cache still gets an anonymous volume.
        assert_eq!(c.mounts.iter().filter(|m| m.target == "/data").count(), 1);
        assert!(matches!(
            &m("/cache").kind,
            MountKind::Volume {
                anonymous: true,
                ..
            }
        ));
    }

    #[test]
    fn bad_mounts_are_refused() {
        let e = err("services:\n  web:\n    image: x\n    tmpfs: ['/t:exec']\n");
        assert!(e.starts_with("service \"web\": tmpfs[0]: "), "{e}");
        // The loader already merged `volumes` entries by target; `tmpfs` may still clash.
        let e = err("services:\n  web:\n    image: x\n    volumes: [/a]\n    tmpfs: [/a/]\n");
        assert!(e.contains("tmpfs[0]: duplicate mount point /a/"), "{e}");
        let e = err(
            "services:\n  web:\n    image: x\n    volumes:\n      - type: image\n        \
             source: alpine\n        target: /i\n",
        );
        assert!(e.starts_with("service \"web\": volumes[0]: "), "{e}");
        let e = err(
            "services:\n  web:\n    image: x\n    volumes:\n      - type: volume\n        \
             source: d\n        target: /i\n        volume: {subpath: ../x}\n\
             volumes:\n  d: {}\n",
        );
        assert!(e.contains("subpath"), "{e}");
    }

    #[test]
    fn security_and_resources() {
        let c = ok(
            "services:\n  web:\n    image: x\n    read_only: true\n    privileged: true\n    \
             cap_add: [NET_ADMIN]\n    cap_drop: [ALL]\n    \
             security_opt: ['no-new-privileges:true', 'seccomp:unconfined', 'label:disable']\n    \
             mem_limit: 1g\n    memswap_limit: -1\n    mem_reservation: 100m\n    cpus: 0.1\n    \
             cpu_shares: 512\n    cpuset: '0-1'\n    pids_limit: 50\n    oom_score_adj: -500\n    \
             shm_size: 128m\n    ulimits:\n      nproc: 100\n      nofile: {soft: 10, hard: 20}\n      \
             core: -1\n    sysctls: {net.core.somaxconn: '1024'}\n    \
             devices: ['/dev/fuse', '/dev/a:/dev/b:r']\n    init: true\n    \
             stop_signal: SIGINT\n    stop_grace_period: 1m30s\n",
        );
        assert!(c.read_only);
        let s = &c.security;
        assert!(s.privileged && s.no_new_privileges);
        assert_eq!(s.cap_add, ["NET_ADMIN"]);
        assert_eq!(s.cap_drop, ["ALL"]);
        assert_eq!(s.seccomp, SeccompConfig::Unconfined);
        let r = &c.resources;
        assert_eq!(r.memory, Some(1 << 30));
        assert_eq!(r.memory_swap, Some(-1));
        assert_eq!(r.memory_reservation, Some(100 << 20));
        assert_eq!(r.nano_cpus, Some(100_000_000));
        assert_eq!(r.cpu_shares, Some(512));
        assert_eq!(r.cpuset_cpus.as_deref(), Some("0-1"));
        assert_eq!(r.pids_limit, Some(50));
        assert_eq!(r.oom_score_adj, Some(-500));
        assert_eq!(r.shm_size, Some(128 << 20));
        assert_eq!(c.ulimits["nproc"], (100, 100));
        assert_eq!(c.ulimits["nofile"], (10, 20));
        assert_eq!(c.ulimits["core"], (u64::MAX, u64::MAX));
        assert_eq!(c.sysctls["net.core.somaxconn"], "1024");
        assert_eq!(
            c.devices,
            [
                DeviceConfig {
                    host_path: "/dev/fuse".into(),
                    container_path: "/dev/fuse".into(),
                    permissions: "rwm".into()
                },
                DeviceConfig {
                    host_path: "/dev/a".into(),
                    container_path: "/dev/b".into(),
                    permissions: "r".into()
                }
            ]
        );
        assert!(c.init);
        assert_eq!(c.stop_signal, "SIGINT");
        assert_eq!(c.stop_timeout, Some(90));
    }

    #[test]
    fn cpu_quota_swappiness_oom_and_blkio() {
        let c = ok(
            "services:\n  web:\n    image: x\n    cpu_period: 50000\n    cpu_quota: 25000\n    \
             cpu_rt_period: 1000000\n    cpu_rt_runtime: 950000\n    mem_swappiness: 10\n    \
             oom_kill_disable: true\n    blkio_config:\n      weight: 300\n      \
             weight_device: [{path: /dev/sda, weight: 400}]\n      \
             device_read_bps: [{path: /dev/sda, rate: 12mb}]\n      \
             device_write_iops: [{path: /dev/sdb, rate: 30}]\n",
        );
        let r = &c.resources;
        assert_eq!((r.cpu_period, r.cpu_quota), (Some(50_000), Some(25_000)));
        assert_eq!(
            (r.cpu_rt_period, r.cpu_rt_runtime),
            (Some(1_000_000), Some(950_000))
        );
        assert_eq!((r.memory_swappiness, r.oom_kill_disable), (Some(10), true));
        assert_eq!(r.blkio.weight, Some(300));
        assert_eq!(r.blkio.weight_device, [("/dev/sda".into(), 400)]);
        assert_eq!(r.blkio.read_bps, [("/dev/sda".into(), 12 << 20)]);
        assert_eq!(r.blkio.write_iops, [("/dev/sdb".into(), 30)]);
        assert!(r.blkio.write_bps.is_empty() && r.blkio.read_iops.is_empty());
        for (yaml, want) in [
            (
                "mem_swappiness: 101",
                "mem_swappiness: 101 is outside 0..100",
            ),
            ("cpu_quota: -5", "cpu_quota: invalid value -5"),
            ("cpu_period: -1", "cpu_period: invalid value -1"),
            (
                "blkio_config: {weight: 5}",
                "blkio_config.weight: weight 5 is outside 10..1000",
            ),
        ] {
            let e = err(&format!("services:\n  web:\n    image: x\n    {yaml}\n"));
            assert_eq!(e, format!("service \"web\": {want}"));
        }
    }

    #[test]
    fn deploy_resources_win() {
        let c = ok(
            "services:\n  web:\n    image: x\n    mem_limit: 1g\n    cpus: 2\n    \
             pids_limit: 5\n    mem_reservation: 1m\n    deploy:\n      resources:\n        \
             limits: {memory: 512m, cpus: '1.5', pids: 9}\n        \
             reservations: {memory: 2m, cpus: '0.5'}\n",
        );
        let r = &c.resources;
        assert_eq!(r.memory, Some(512 << 20));
        assert_eq!(r.nano_cpus, Some(1_500_000_000));
        assert_eq!(r.pids_limit, Some(9));
        assert_eq!(r.memory_reservation, Some(2 << 20));
    }

    #[test]
    fn logging() {
        let c = ok(
            "services:\n  web:\n    image: x\n    logging:\n      driver: local\n      \
             options: {max-size: 1m, max-file: '2', tag: x}\n",
        );
        assert_eq!(
            c.log,
            LogConfig {
                driver: "local".into(),
                max_size: 1 << 20,
                max_file: 2
            }
        );
        let e = err("services:\n  web:\n    image: x\n    logging: {driver: syslog}\n");
        assert!(e.starts_with("service \"web\": logging.driver: "), "{e}");
        let e = err("services:\n  web:\n    image: x\n    logging: {options: {max-file: '0'}}\n");
        assert!(e.contains("logging.options.max-file"), "{e}");
    }

    #[test]
    fn restart_policies() {
        let c = ok("services:\n  web: {image: x, restart: 'on-failure:3'}\n");
        assert_eq!(
            (c.restart.name.as_str(), c.restart.max_retries),
            ("on-failure", 3)
        );
        let c = ok("services:\n  web: {image: x, restart: unless-stopped}\n");
        assert_eq!(c.restart.name, "unless-stopped");
        let c = ok(
            "services:\n  web:\n    image: x\n    restart: always\n    deploy:\n      \
             restart_policy: {condition: on-failure, max_attempts: 4, delay: 5s, window: 1m}\n",
        );
        assert_eq!(
            c.restart,
            RestartPolicy {
                name: "on-failure".into(),
                max_retries: 4,
                delay_ms: Some(5000),
                window_ms: Some(60_000)
            }
        );
        for (cond, want) in [("none", "no"), ("any", "always")] {
            let c = ok(&format!(
                "services:\n  web:\n    image: x\n    deploy:\n      \
                 restart_policy: {{condition: {cond}}}\n"
            ));
            assert_eq!(c.restart.name, want);
        }
        let e = err("services:\n  web: {image: x, restart: sometimes}\n");
        assert!(e.starts_with("service \"web\": restart: "), "{e}");
    }

    #[test]
    fn networks_by_priority_with_aliases_and_links() {
        let p = load(
            "services:\n  web:\n    image: x\n    mac_address: 02:00:00:00:00:01\n    \
             networks:\n      a:\n      b:\n        aliases: [www]\n        \
             ipv4_address: 10.1.0.5\n        interface_name: eth9\n      \
             c:\n        priority: 10\n        mac_address: 02:00:00:00:00:09\n  \
             app:\n    image: x\n    links: ['web:site', 'web']\n    networks: [b]\n  \
             other:\n    image: x\n    links: ['web:elsewhere']\n    networks: [a]\n\
             networks:\n  a: {}\n  b: {name: bee}\n  c: {}\n",
        );
        let img = image();
        let c = container_config(&inst(&p, &img, "web"))
            .expect("converts")
            .config;
        let nets: Vec<_> = c.networks.iter().map(|n| n.network.as_str()).collect();
        assert_eq!(nets, ["demo_c", "demo_a", "bee"]);
        // The service's own MAC goes to the first network only when it has none of its own.
        assert_eq!(
            c.networks[0].mac_address.as_deref(),
            Some("02:00:00:00:00:09")
        );
        assert_eq!(c.networks[1].mac_address, None);
        // `links` give no alias to the linked service: the linking container gets the link.
        assert!(c.networks[1].aliases.is_empty());
        let b = &c.networks[2];
        assert_eq!(b.aliases, ["www"]);
        assert_eq!(b.ipv4_address.as_deref(), Some("10.1.0.5"));
        assert_eq!(b.interface_name.as_deref(), Some("eth9"));

        for (service, want) in [("app", "web:site"), ("other", "web:elsewhere")] {
            let c = container_config(&inst(&p, &img, service))
                .expect("converts")
                .config;
            assert_eq!(c.networks[0].links, [want], "{service}");
        }

        let p = load("services:\n  web:\n    image: x\n    mac_address: 02:00:00:00:00:01\n");
        let c = container_config(&inst(&p, &img, "web"))
            .expect("converts")
            .config;
        assert_eq!(
            c.networks[0].mac_address.as_deref(),
            Some("02:00:00:00:00:01")
        );
    }

    #[test]
    fn network_modes() {
        let c = ok("services:\n  web: {image: x, network_mode: host, ports: ['80:80']}\n");
        assert_eq!(c.network, NetworkConfig::Host);
        assert!(c.networks.is_empty() && c.ports.is_empty());
        let c = ok("services:\n  web: {image: x, network_mode: none}\n");
        assert_eq!(c.network, NetworkConfig::None);
        assert!(c.networks.is_empty());

        let yaml = "services:\n  db: {image: x}\n  web: {image: x, network_mode: 'service:db'}\n";
        let e = err(yaml);
        assert!(e.starts_with("service \"web\": network_mode: "), "{e}");
        let p = load(yaml);
        let img = image();
        let mut i = inst(&p, &img, "web");
        i.joined.insert("service:db".into(), "f".repeat(64));
        let c = container_config(&i).expect("converts").config;
        assert_eq!(c.network, NetworkConfig::Container("f".repeat(64)));
        assert!(c.networks.is_empty());

        let e = err("services:\n  web: {image: x, network_mode: bridge}\n");
        assert!(e.starts_with("service \"web\": network_mode: "), "{e}");
        let e = err("services:\n  web:\n    image: x\n    networks:\n      \
             default: {ipv6_address: 'fd00::5'}\n");
        assert!(e.contains("networks.default.ipv6_address"), "{e}");
    }

    #[test]
    fn links_go_on_the_first_network() {
        let yaml = "services:\n  web:\n    image: x\n    external_links: ['db', 'cache:kv']\n    \
                    networks: {b: {priority: 1}, a: {priority: 9}}\nnetworks: {a: {}, b: {}}\n";
        let c = ok(yaml);
        assert_eq!(c.networks[0].network, "demo_a");
        assert_eq!(c.networks[0].links, ["db:db", "cache:kv"]);
        assert!(c.networks[1].links.is_empty());
        for (bad, key) in [
            ("external_links: [':x']", "external_links[0]"),
            ("external_links: ['a:b:c']", "external_links[0]"),
            (
                "external_links: [db]\n    network_mode: host",
                "external_links",
            ),
        ] {
            let yaml = format!("services:\n  web:\n    image: x\n    {bad}\n");
            let e = err(&yaml);
            assert!(e.starts_with(&format!("service \"web\": {key}: ")), "{e}");
        }
        // Links to services join them, on the first network too.
        let yaml = "services:\n  db: {image: x}\n  web:\n    image: x\n    \
                    links: ['db:database', 'db']\n    external_links: [cache]\n";
        assert_eq!(ok(yaml).networks[0].links, ["cache:cache", "db:database"]);
        let e = err("services:\n  db: {image: x}\n  web:\n    image: x\n    \
                     links: [db]\n    network_mode: host\n");
        assert!(
            e.starts_with("service \"web\": links: cannot be combined with network_mode"),
            "{e}"
        );
    }

    #[test]
    fn preflight_finds_the_services_own_errors_without_an_image() {
        // Joins, volumes_from and a command left to the image raise nothing without them.
        let project = load(
            "services:\n  db: {image: x}\n  web:\n    image: x\n    \
             network_mode: 'service:db'\n    pid: 'container:other'\n    \
             volumes_from: ['db:ro', 'container:c1']\n",
        );
        preflight(&project, "web", &ENVIRONMENT).unwrap();
        preflight(&project, "db", &ENVIRONMENT).unwrap();
        // A key of the service's own is checked.
        let project = load("services:\n  web:\n    image: x\n    mem_swappiness: 500\n");
        let e = preflight(&project, "web", &ENVIRONMENT)
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("service \"web\": mem_swappiness: "), "{e}");
        let e = preflight(&project, "nope", &ENVIRONMENT)
            .unwrap_err()
            .to_string();
        assert_eq!(e, "no such service: nope");
    }

    #[test]
    fn volumes_from_shares_volumes_and_binds() {
        assert_eq!(volumes_from_source("db"), ("service:db".into(), None));
        assert_eq!(
            volumes_from_source("db:ro"),
            ("service:db".into(), Some("ro"))
        );
        assert_eq!(
            volumes_from_source("container:c1"),
            ("container:c1".into(), None)
        );
        assert_eq!(
            volumes_from_source("container:c1:rw"),
            ("container:c1".into(), Some("rw"))
        );
        let yaml = "services:\n  db: {image: x}\n  web:\n    image: x\n    \
                    volumes_from: ['db:ro']\n    volumes: ['/own:/data']\n";
        let e = err(yaml);
        assert!(e.starts_with("service \"web\": volumes_from[0]: "), "{e}");
        let p = load(yaml);
        let img = image();
        let mut i = inst(&p, &img, "web");
        let theirs = vec![
            MountConfig {
                target: "/data".into(),
                read_only: false,
                kind: MountKind::Volume {
                    name: "db-data".into(),
                    nocopy: false,
                    anonymous: false,
                    subpath: None,
                },
            },
            MountConfig {
                target: "/cache".into(),
                read_only: false,
                kind: MountKind::Volume {
                    name: "a".repeat(64),
                    nocopy: false,
                    anonymous: true,
                    subpath: None,
                },
            },
            MountConfig {
                target: "/conf".into(),
                read_only: false,
                kind: MountKind::Bind {
                    source: "/etc/db".into(),
                    propagation: None,
                    create_host_path: false,
                },
            },
            MountConfig {
                target: "/tmp".into(),
                read_only: false,
                kind: MountKind::Tmpfs {
                    size: None,
                    mode: None,
                },
            },
        ];
        i.volumes_from.insert("service:db".into(), theirs);
        let c = container_config(&i).expect("converts").config;
        let m = |t: &str| c.mounts.iter().find(|m| m.target == t);
        // Its own mount wins; the rest come read-only; the anonymous volume is shared, not
        // owned; a tmpfs is not a volume.
        assert!(
            matches!(&m("/data").unwrap().kind, MountKind::Bind { source, .. } if source == Path::new("/own"))
        );
        let cache = m("/cache").unwrap();
        assert!(cache.read_only);
        assert!(
            matches!(&cache.kind, MountKind::Volume { anonymous: false, name, .. } if *name == "a".repeat(64))
        );
        assert!(m("/conf").unwrap().read_only);
        assert!(m("/tmp").is_none());
        // The image's VOLUMEs it covers get no new anonymous volume.
        assert!(
            c.mounts.iter().filter(|m| m.target == "/cache").count() == 1,
            "{:?}",
            c.mounts
        );
    }

    #[test]
    fn namespace_modes() {
        let c = ok("services:\n  web: {image: x, pid: host, ipc: none, uts: host, cgroup: host}\n");
        assert_eq!(
            (c.pid, c.ipc, c.uts, c.cgroupns),
            (
                NamespaceMode::Host,
                NamespaceMode::None,
                NamespaceMode::Host,
                NamespaceMode::Host
            )
        );
        let c = ok("services:\n  web: {image: x, ipc: shareable, cgroup: private}\n");
        assert_eq!((c.pid, c.ipc, c.cgroupns), Default::default());

        let yaml = "services:\n  db: {image: x}\n  web: {image: x, pid: 'service:db', ipc: 'service:db'}\n";
        let e = err(yaml);
        assert!(
            e.starts_with("service \"web\": pid: \"service:db\": "),
            "{e}"
        );
        let p = load(yaml);
        let img = image();
        let mut i = inst(&p, &img, "web");
        i.joined.insert("service:db".into(), "d".repeat(64));
        let c = container_config(&i).expect("converts").config;
        assert_eq!(c.pid, NamespaceMode::Container("d".repeat(64)));
        assert_eq!(c.ipc, NamespaceMode::Container("d".repeat(64)));

        for (yaml, want) in [
            (
                "{image: x, uts: host, hostname: h}",
                "service \"web\": uts: conflicting options: `hostname`/`domainname` and `uts: host`",
            ),
            (
                "{image: x, ipc: weird}",
                "service \"web\": ipc: \"weird\" is not supported (private, shareable, none, host, service:NAME, container:NAME)",
            ),
            (
                "{image: x, pid: private}",
                "service \"web\": pid: \"private\" is not supported (host, service:NAME, container:NAME)",
            ),
        ] {
            assert_eq!(err(&format!("services:\n  web: {yaml}\n")), want);
        }
    }

    #[test]
    fn ports() {
        let c = ok(
            "services:\n  web:\n    image: x\n    ports:\n      - '8080:80'\n      \
             - '127.0.0.1::53/udp'\n      - 9000-9001:90-91\n      \
             - {target: 443, published: '8443-8450', host_ip: 127.0.0.2}\n      - '7000'\n",
        );
        let got: Vec<_> = c
            .ports
            .iter()
            .map(|p| {
                (
                    p.host_ip.as_deref(),
                    p.host_port,
                    p.container_port,
                    p.protocol.as_str(),
                )
            })
            .collect();
        assert_eq!(
            got,
            [
                (None, Some(8080), 80, "tcp"),
                (Some("127.0.0.1"), None, 53, "udp"),
                (None, Some(9000), 90, "tcp"),
                (None, Some(9001), 91, "tcp"),
                (Some("127.0.0.2"), Some(8443), 443, "tcp"),
                (None, None, 7000, "tcp"),
            ]
        );
        let e = err("services:\n  web:\n    image: x\n    ports: ['1:1', '80/sctp']\n");
        assert!(e.starts_with("service \"web\": ports[1]: "), "{e}");
        // A project loaded without normalisation may leave a service on no network at all.
        let mut p = load("services:\n  web: {image: x, ports: ['80']}\n");
        if let Some(web) = p.services.get_mut("web") {
            web.networks.clear();
        }
        let img = image();
        let e = format!(
            "{:#}",
            container_config(&inst(&p, &img, "web")).unwrap_err()
        );
        assert_eq!(
            e,
            "service \"web\": ports: publishing ports needs a network"
        );
    }

    #[test]
    fn misc_keys() {
        let c = ok(
            "services:\n  web:\n    image: x\n    extra_hosts: ['a=1.2.3.4', 'b:5.6.7.8']\n    \
             dns: 9.9.9.9\n    dns_search: [example.org]\n    dns_opt: [ndots:2]\n    \
             cgroup_parent: custom\n    expose: ['81']\n",
        );
        assert_eq!(
            c.extra_hosts,
            [
                ("a".to_string(), "1.2.3.4".to_string()),
                ("b".to_string(), "5.6.7.8".to_string())
            ]
        );
        assert_eq!(c.dns.servers, ["9.9.9.9"]);
        assert_eq!(c.dns.search, ["example.org"]);
        assert_eq!(c.dns.options, ["ndots:2"]);
        assert_eq!(c.cgroup_parent, "custom");
        assert!(c.ports.is_empty());
    }

    #[test]
    fn healthcheck_over_the_image_default() {
        let with_image_check = |yaml: &str| {
            let p = load(yaml);
            let mut img = image();
            img.config.healthcheck = Some(berth_engine::images::Healthcheck {
                test: vec!["CMD".into(), "/probe".into()],
                interval: Some(std::time::Duration::from_secs(9)),
                timeout: None,
                start_period: None,
                start_interval: None,
                retries: Some(4),
            });
            container_config(&inst(&p, &img, "web")).map(|c| c.config.healthcheck)
        };
        // No healthcheck key: the image's, with Docker's defaults for what it leaves unset.
        let hc = with_image_check("services:\n  web:\n    image: x\n")
            .unwrap()
            .unwrap();
        assert_eq!(hc.test, ["CMD", "/probe"]);
        assert_eq!(
            (hc.interval_ms, hc.timeout_ms, hc.retries),
            (9000, 30_000, 4)
        );
        // Some keys only: the image's test stays.
        let hc = with_image_check(
            "services:\n  web:\n    image: x\n    healthcheck:\n      interval: 2s\n      \
             start_period: 1m\n      start_interval: 500ms\n",
        )
        .unwrap()
        .unwrap();
        assert_eq!(hc.test, ["CMD", "/probe"]);
        assert_eq!(
            (
                hc.interval_ms,
                hc.start_period_ms,
                hc.start_interval_ms,
                hc.retries
            ),
            (2000, 60_000, 500, 4)
        );
        // A string is CMD-SHELL; `disable` is NONE.
        let hc = with_image_check(
            "services:\n  web:\n    image: x\n    healthcheck:\n      test: curl -f x\n      \
             retries: 1\n      timeout: 3s\n",
        )
        .unwrap()
        .unwrap();
        assert_eq!(hc.test, ["CMD-SHELL", "curl -f x"]);
        assert_eq!((hc.retries, hc.timeout_ms), (1, 3000));
        let hc = with_image_check(
            "services:\n  web:\n    image: x\n    healthcheck:\n      disable: true\n",
        )
        .unwrap()
        .unwrap();
        assert_eq!(hc.test, ["NONE"]);
        assert_eq!(hc.probe_args(), None);
        // No check anywhere: none.
        assert_eq!(ok("services:\n  web:\n    image: x\n").healthcheck, None);
        let hc = ok("services:\n  web:\n    image: x\n    healthcheck:\n      test: [CMD, true]\n")
            .healthcheck
            .unwrap();
        assert_eq!(
            (
                hc.interval_ms,
                hc.timeout_ms,
                hc.retries,
                hc.start_period_ms,
                hc.start_interval_ms
            ),
            (30_000, 30_000, 3, 0, 5000)
        );
    }

    #[test]
    fn bad_healthchecks_are_refused() {
        let e = err(
            "services:\n  web:\n    image: x\n    healthcheck:\n      test: [CMD, x]\n      \
             interval: 10us\n",
        );
        assert!(e.contains("service \"web\": healthcheck.interval:"), "{e}");
    }

    #[test]
    fn secrets_and_configs_as_docker_compose_places_them() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("pw.txt");
        std::fs::write(&file, "from-file").unwrap();
        let yaml = format!(
            "services:\n  web:\n    image: x\n    secrets:\n      - pw\n      - source: tok\n        \
             target: token\n        uid: '1000'\n        mode: 0400\n      - {{source: inline, target: /etc/inline}}\n    \
             configs:\n      - conf\n      - {{source: pw_conf, target: etc/app.conf, gid: '5', mode: 0640}}\n\
             secrets:\n  pw: {{file: {f}}}\n  tok: {{environment: TOKEN}}\n  inline: {{environment: EMPTY}}\n\
             configs:\n  conf: {{content: 'a=1'}}\n  pw_conf: {{file: {f}}}\n",
            f = file.display()
        );
        let p = load(&yaml);
        let img = image();
        let NewContainer { config, files } = container_config(&inst(&p, &img, "web")).unwrap();
        let by_target = |t: &str| {
            config
                .mounts
                .iter()
                .find(|m| m.target == t)
                .unwrap_or_else(|| panic!("no mount at {t}: {:?}", config.mounts))
        };
        // A file: bound read-only.
        let m = by_target("/run/secrets/pw");
        assert!(m.read_only);
        assert!(matches!(&m.kind, MountKind::Bind { source, .. } if *source == file));
        // environment and content: files of the container, 0444 root unless told.
        let file_of = |t: &str| {
            let MountKind::File { name } = &by_target(t).kind else {
                panic!("{t} is not a container file");
            };
            files.iter().find(|f| &f.name == name).unwrap().clone()
        };
        let tok = file_of("/run/secrets/token");
        assert_eq!(
            (tok.content.as_slice(), tok.uid, tok.gid, tok.mode),
            (&b"from-env"[..], 1000, 0, 0o400)
        );
        assert_eq!(file_of("/etc/inline").content, b"");
        let conf = file_of("/conf");
        assert_eq!((conf.content.as_slice(), conf.mode), (&b"a=1"[..], 0o444));
        // A file with an owner or mode is copied so that they hold.
        let pw_conf = file_of("/etc/app.conf");
        assert_eq!(
            (pw_conf.content.as_slice(), pw_conf.gid, pw_conf.mode),
            (&b"from-file"[..], 5, 0o640)
        );
        // Nothing of the content is in the config that `inspect` prints.
        let json = serde_json::to_string(&config).unwrap();
        assert!(
            !json.contains("from-env") && !json.contains("a=1"),
            "{json}"
        );
    }

    #[test]
    fn secrets_and_configs_that_cannot_be_given() {
        let base = "services:\n  web:\n    image: x\n";
        for (yaml, want) in [
            (
                "    secrets: [s]\nsecrets:\n  s: {environment: UNSET}\n",
                "service \"web\": secrets[0]: environment variable \"UNSET\" required by secret \"s\" is not set",
            ),
            (
                "    secrets: [s]\nsecrets:\n  s: {external: true}\n",
                "service \"web\": secrets[0]: secret \"s\" is external: external secrets live in Swarm, which berth is not; give it a `file:` or an `environment:`",
            ),
            (
                "    configs: [c]\nconfigs:\n  c: {file: /nonexistent/c.conf}\n",
                "service \"web\": configs[0]: config \"c\": file /nonexistent/c.conf does not exist",
            ),
            (
                "    secrets: [{source: s, uid: app}]\nsecrets:\n  s: {environment: TOKEN}\n",
                "service \"web\": secrets[0].uid: \"app\" is not a numeric id",
            ),
            (
                "    secrets: [s, {source: s, target: s}]\nsecrets:\n  s: {environment: TOKEN}\n",
                "service \"web\": secrets[1]: duplicate mount point /run/secrets/s",
            ),
        ] {
            assert_eq!(err(&format!("{base}{yaml}")), want, "{yaml}");
        }
    }

    #[test]
    fn unsupported_keys_are_refused() {
        for (key, yaml) in [
            ("userns_mode", "userns_mode: keep-id"),
            ("gpus", "gpus: all"),
        ] {
            let e = err(&format!(
                "services:\n  web:\n    image: x\n    {yaml}\n  other: {{image: x}}\n\
                 secrets:\n  s: {{file: /etc/hostname}}\nconfigs:\n  c: {{file: /etc/hostname}}\n"
            ));
            assert_eq!(e, format!("service \"web\": {key}: not supported by berth"));
        }
        let e = err("services:\n  web:\n    build: .\n");
        assert!(e.starts_with("service \"web\": build: "), "{e}");
    }
}
