//! Networks and endpoints on disk, and what they mean in the kernel: a network is a record
//! (`<dir>/<name>.json`), its subnet and addresses in the IPAM file (`<dir>/ipam.json`) and a
//! Linux bridge; an endpoint is a container's attachment to a network — a record
//! (`<dir>/<name>.ep/<container id>.json`, what DNS and the firewall are built from), an
//! address, and a veth pair whose peer lives in the container's network namespace.
//!
//! Every change happens under one `flock` (`<dir>/.lock`), so concurrent processes (several
//! shims starting at once, a `network rm`) never see half a change. Creation records first
//! and then makes the bridge; removal undoes in the reverse order and keeps going past
//! errors, so a half-done setup is always removable. Bridges are (re)made lazily by
//! [`NetworkStore::ensure_bridge`]: after a reboot the records survive and the bridges do not.

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::net::{IpAddr, Ipv4Addr};
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::ipam::{Allocator, IpNet, IpamError, Pool, SubnetConfig};
use crate::link::{self, ContainerLink, LinkError, Netlink};
use crate::netns;

/// Docker's driver option naming the bridge interface.
pub const OPT_BRIDGE_NAME: &str = "com.docker.network.bridge.name";
/// Docker's driver option setting the bridge's MTU.
pub const OPT_MTU: &str = "com.docker.network.driver.mtu";

/// Why a network operation failed; each variant names the network, container or file.
#[derive(Debug, thiserror::Error)]
pub enum NetworkError {
    /// No network has this name.
    #[error("network {0} not found")]
    NotFound(String),
    /// `create` of a name that exists.
    #[error("network with name {0} already exists")]
    Exists(String),
    /// The name is not one Docker accepts.
    #[error(
        "invalid network name {0:?}: only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed, up to 64 characters"
    )]
    InvalidName(String),
    /// A driver other than `bridge`.
    #[error("network {name}: driver {driver:?} is not supported (berth has the bridge driver)")]
    Driver {
        /// The network.
        name: String,
        /// The driver asked for.
        driver: String,
    },
    /// A driver option with a bad value.
    #[error("network {name}: option {option}={value:?}: {reason}")]
    Option {
        /// The network.
        name: String,
        /// The option.
        option: String,
        /// Its value.
        value: String,
        /// What is wrong.
        reason: String,
    },
    /// `rm` of a network containers are attached to.
    #[error("network {name} has active endpoints ({containers})")]
    InUse {
        /// The network.
        name: String,
        /// The attached containers' names.
        containers: String,
    },
    /// A host port another container publishes, or another process has bound.
    #[error("Bind for {addr}:{port}/{protocol} failed: port is already allocated{by}")]
    PortInUse {
        /// The host address (`0.0.0.0` for all).
        addr: String,
        /// The host port.
        port: u16,
        /// `tcp` or `udp`.
        protocol: String,
        /// ` (by container X)` / ` (by another program)`.
        by: String,
    },
    /// A host address that is not this host's.
    #[error("cannot publish on {addr}:{port}/{protocol}: {source}")]
    HostAddress {
        /// The host address.
        addr: String,
        /// The host port.
        port: u16,
        /// `tcp` or `udp`.
        protocol: String,
        /// Why binding it failed.
        source: io::Error,
    },
    /// Two networks would share one bridge name.
    #[error("network {name}: bridge {bridge} is already used by network {other}")]
    BridgeTaken {
        /// The network.
        name: String,
        /// The bridge name.
        bridge: String,
        /// The network that has it.
        other: String,
    },
    /// A record could not be read, parsed or written.
    #[error("{op} {path}: {source}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// The file.
        path: PathBuf,
        /// Why it failed.
        source: io::Error,
    },
    /// A record does not parse.
    #[error("corrupt record {path}: {source}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// The parse error.
        source: serde_json::Error,
    },
    /// Address management failed.
    #[error(transparent)]
    Ipam(#[from] IpamError),
    /// A netlink operation failed.
    #[error("network {name}: {source}")]
    Link {
        /// The network.
        name: String,
        /// The kernel's or the socket's error.
        source: LinkError,
    },
    /// Writing a sysctl failed.
    #[error("set {path}: {source}")]
    Sysctl {
        /// The /proc/sys file.
        path: String,
        /// Why.
        source: io::Error,
    },
    /// Several cleanup steps failed (every step was tried).
    #[error("{}", .0.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("; "))]
    Many(Vec<NetworkError>),
}

fn io_err<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> NetworkError + 'a {
    move |source| NetworkError::Io {
        op,
        path: path.to_path_buf(),
        source,
    }
}

/// A network, as recorded at creation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Network {
    /// 64 hex characters, random.
    pub id: String,
    /// The name (`<project>_<network>` for compose networks).
    pub name: String,
    /// Always `bridge`.
    pub driver: String,
    /// RFC 3339 creation time.
    pub created: String,
    /// The bridge interface (`br-<12 hex of the id>` unless a driver option names it).
    pub bridge: String,
    /// Subnet, range and gateway.
    pub ipam: SubnetConfig,
    /// Addresses of the subnet kept from containers (Compose `aux_addresses`), by name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub aux_addresses: BTreeMap<String, Ipv4Addr>,
    /// No route out: no masquerade, no forwarding to other interfaces, no upstream DNS.
    pub internal: bool,
    /// Containers may be attached by `network connect` (always true for bridges here).
    pub attachable: bool,
    /// Always false for a network made now (berth refuses IPv6); true in the record of a
    /// network an older berth made with `--ipv6`, which never had IPv6 addresses.
    #[serde(default)]
    pub enable_ipv6: bool,
    /// The bridge's and veths' MTU, if set.
    pub mtu: Option<u32>,
    /// User labels.
    pub labels: BTreeMap<String, String>,
    /// Driver options as given.
    pub options: BTreeMap<String, String>,
}

/// What `create` is asked for.
#[derive(Debug, Clone, Default)]
pub struct CreateRequest {
    pub name: String,
    /// Empty means `bridge`.
    pub driver: String,
    /// Compose `ipam.config[0]`, if any.
    pub ipam: Option<SubnetConfig>,
    /// Its `aux_addresses` (name → address): never given to a container.
    pub aux_addresses: BTreeMap<String, Ipv4Addr>,
    pub internal: bool,
    pub labels: BTreeMap<String, String>,
    /// `driver_opts`: [`OPT_BRIDGE_NAME`], [`OPT_MTU`]; others are kept and ignored.
    pub options: BTreeMap<String, String>,
}

/// A published port of an endpoint (on its container's first network).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublishedPort {
    /// `None`: every host address.
    pub host_ip: Option<Ipv4Addr>,
    pub host_port: u16,
    pub container_port: u16,
    /// `tcp` or `udp`.
    pub protocol: String,
}

/// A container attached to a network.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Endpoint {
    pub container_id: String,
    pub container_name: String,
    /// The network's name.
    pub network: String,
    pub ip: Ipv4Addr,
    pub prefix: u8,
    /// The network's gateway, when this is the container's default route.
    pub gateway: Option<Ipv4Addr>,
    /// `aa:bb:…`.
    pub mac: String,
    /// The interface inside the container (`eth0`, …).
    pub ifname: String,
    /// The host side of the veth.
    pub host_veth: String,
    /// Names DNS answers with this address on this network (container name, short id,
    /// service name, aliases, hostname), lower-case.
    pub names: Vec<String>,
    /// Only the user's aliases (for `inspect`).
    pub aliases: Vec<String>,
    /// Published ports (DNAT to `ip`).
    #[serde(default)]
    pub ports: Vec<PublishedPort>,
    /// The container's own nameservers (`dns`): the network's resolver forwards this
    /// container's queries it cannot answer to them rather than to its upstreams.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub upstreams: Vec<IpAddr>,
    /// `CONTAINER:ALIAS` links: the network's resolver answers `ALIAS` to this container
    /// alone, with CONTAINER's addresses on the networks the two share.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub links: Vec<String>,
}

/// What a container asks of one network when it is attached.
#[derive(Debug, Clone, Default)]
pub struct EndpointRequest {
    pub network: String,
    pub aliases: Vec<String>,
    pub ipv4_address: Option<Ipv4Addr>,
    pub mac: Option<[u8; 6]>,
    /// Name inside the container; `eth<index>` when unset.
    pub ifname: Option<String>,
    /// The container's own nameservers (see [`Endpoint::upstreams`]).
    pub upstreams: Vec<IpAddr>,
    /// Links (see [`Endpoint::links`]).
    pub links: Vec<String>,
}

/// The network records, endpoints and address allocations of one state root.
#[derive(Debug, Clone)]
pub struct NetworkStore {
    dir: PathBuf,
    ipam: Allocator,
}

/// A held `flock` on the store's lock file.
pub struct StoreLock {
    _file: fs::File,
}

impl NetworkStore {
    /// The store in `dir` (`<root>/networks`), created if missing.
    pub fn open(dir: impl Into<PathBuf>) -> Result<NetworkStore, NetworkError> {
        let dir = dir.into();
        fs::create_dir_all(&dir).map_err(io_err("create", &dir))?;
        Ok(NetworkStore {
            ipam: Allocator::new(dir.join("ipam.json")),
            dir,
        })
    }

    /// The store's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Takes the store's exclusive lock (blocking).
    pub fn lock(&self) -> Result<StoreLock, NetworkError> {
        let path = self.dir.join(".lock");
        let file = fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(io_err("open", &path))?;
        loop {
            match rustix::fs::flock(&file, rustix::fs::FlockOperation::LockExclusive) {
                Ok(()) => return Ok(StoreLock { _file: file }),
                Err(rustix::io::Errno::INTR) => continue,
                Err(e) => return Err(io_err("lock", &path)(e.into())),
            }
        }
    }

    fn record_path(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}.json"))
    }

    fn endpoints_dir(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}.ep"))
    }

    /// The network named `name`, if any.
    pub fn get(&self, name: &str) -> Result<Option<Network>, NetworkError> {
        if check_name(name).is_err() {
            return Ok(None);
        }
        read_json(&self.record_path(name))
    }

    /// The network named `name`, or [`NetworkError::NotFound`].
    pub fn require(&self, name: &str) -> Result<Network, NetworkError> {
        self.get(name)?
            .ok_or_else(|| NetworkError::NotFound(name.to_string()))
    }

    /// Every network, by name.
    pub fn list(&self) -> Result<Vec<Network>, NetworkError> {
        let mut out = Vec::new();
        let entries = match fs::read_dir(&self.dir) {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(out),
            Err(e) => return Err(io_err("read", &self.dir)(e)),
        };
        for entry in entries {
            let entry = entry.map_err(io_err("read", &self.dir))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let Some(stem) = name.strip_suffix(".json") else {
                continue;
            };
            if stem == "ipam" || stem.starts_with('.') {
                continue;
            }
            if let Some(n) = read_json::<Network>(&entry.path())? {
                out.push(n);
            }
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    /// The endpoints attached to network `name`, by container id.
    pub fn endpoints(&self, name: &str) -> Result<Vec<Endpoint>, NetworkError> {
        let dir = self.endpoints_dir(name);
        let mut out = Vec::new();
        let entries = match fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(out),
            Err(e) => return Err(io_err("read", &dir)(e)),
        };
        for entry in entries {
            let entry = entry.map_err(io_err("read", &dir))?;
            if !entry.file_name().to_string_lossy().ends_with(".json") {
                continue;
            }
            if let Some(ep) = read_json::<Endpoint>(&entry.path())? {
                out.push(ep);
            }
        }
        out.sort_by(|a, b| a.container_id.cmp(&b.container_id));
        Ok(out)
    }

    /// Every endpoint of container `id`, on any network, in the container's network order
    /// (by interface name).
    pub fn container_endpoints(&self, id: &str) -> Result<Vec<Endpoint>, NetworkError> {
        let mut out = Vec::new();
        self.endpoints_on(&self.list()?, id, &mut out)?;
        out.sort_by_key(|e| natural_ifname_key(&e.ifname));
        Ok(out)
    }

    /// Appends to `out` the endpoints container `id` has on networks `nets`, in their order.
    fn endpoints_on(
        &self,
        nets: &[Network],
        id: &str,
        out: &mut Vec<Endpoint>,
    ) -> Result<(), NetworkError> {
        for net in nets {
            let path = self.endpoints_dir(&net.name).join(format!("{id}.json"));
            if let Some(ep) = read_json::<Endpoint>(&path)? {
                out.push(ep);
            }
        }
        Ok(())
    }

    /// Creates network `req.name`: the record, its subnet (requested, or the first free one
    /// of `pools` that overlaps neither another network nor `host_routes`), then its bridge.
    /// A failure after the record is written removes everything again.
    pub fn create(
        &self,
        req: &CreateRequest,
        pools: &[Pool],
        host_routes: &[IpNet],
        created: String,
    ) -> Result<Network, NetworkError> {
        check_name(&req.name)?;
        let driver = if req.driver.is_empty() {
            "bridge"
        } else {
            req.driver.as_str()
        };
        if driver != "bridge" {
            return Err(NetworkError::Driver {
                name: req.name.clone(),
                driver: driver.to_string(),
            });
        }
        let id = random_id()?;
        let mtu = match req.options.get(OPT_MTU) {
            None => None,
            Some(v) => Some(v.parse::<u32>().ok().filter(|m| *m >= 68).ok_or_else(|| {
                NetworkError::Option {
                    name: req.name.clone(),
                    option: OPT_MTU.into(),
                    value: v.clone(),
                    reason: "must be a number of bytes, at least 68".into(),
                }
            })?),
        };
        let bridge = match req.options.get(OPT_BRIDGE_NAME) {
            None => link::bridge_name(&id),
            Some(b) => {
                link::check_ifname(b).map_err(|e| NetworkError::Option {
                    name: req.name.clone(),
                    option: OPT_BRIDGE_NAME.into(),
                    value: b.clone(),
                    reason: e.to_string(),
                })?;
                b.clone()
            }
        };
        let _lock = self.lock()?;
        if self.get(&req.name)?.is_some() {
            return Err(NetworkError::Exists(req.name.clone()));
        }
        if let Some(other) = self.list()?.into_iter().find(|n| n.bridge == bridge) {
            return Err(NetworkError::BridgeTaken {
                name: req.name.clone(),
                bridge,
                other: other.name,
            });
        }
        let ipam = self.ipam.add_network(
            &req.name,
            req.ipam.as_ref(),
            &req.aux_addresses,
            pools,
            host_routes,
        )?;
        let net = Network {
            id,
            name: req.name.clone(),
            driver: "bridge".into(),
            created,
            bridge,
            ipam,
            aux_addresses: req.aux_addresses.clone(),
            internal: req.internal,
            attachable: true,
            enable_ipv6: false,
            mtu,
            labels: req.labels.clone(),
            options: req.options.clone(),
        };
        let result =
            write_json(&self.record_path(&net.name), &net).and_then(|()| self.ensure_bridge(&net));
        if let Err(e) = result {
            let _ = self.remove_locked(&net.name, true);
            return Err(e);
        }
        Ok(net)
    }

    /// Makes `net`'s bridge exist, with the gateway address, up, in the caller's network
    /// namespace; `route_localnet` on it (published ports answer on 127.0.0.1) and, for a
    /// network with a way out, IPv4 forwarding. Idempotent and cheap when all is there.
    pub fn ensure_bridge(&self, net: &Network) -> Result<(), NetworkError> {
        let le = |source| NetworkError::Link {
            name: net.name.clone(),
            source,
        };
        let mut nl = Netlink::open().map_err(le)?;
        let existing = nl.link(&net.bridge).map_err(le)?;
        let fresh = existing.is_none();
        if fresh {
            nl.create_bridge(&net.bridge, net.mtu).map_err(le)?;
        } else if existing.as_ref().and_then(|l| l.kind.as_deref()) != Some("bridge") {
            return Err(le(LinkError::WrongKind {
                name: net.bridge.clone(),
                kind: existing
                    .and_then(|l| l.kind)
                    .unwrap_or_else(|| "device".into()),
                wanted: "bridge",
            }));
        }
        let up = existing.as_ref().is_some_and(|l| l.up);
        if fresh || !up {
            nl.add_address(
                &net.bridge,
                IpAddr::V4(net.ipam.gateway),
                net.ipam.subnet.prefix(),
            )
            .map_err(le)?;
            set_sysctl(&format!(
                "/proc/sys/net/ipv4/conf/{}/route_localnet",
                net.bridge
            ))?;
            nl.set_up(&net.bridge).map_err(le)?;
        }
        if !net.internal {
            enable_ip_forward()?;
        }
        Ok(())
    }

    /// Removes network `name`: refused while containers are attached; the bridge, the
    /// subnet and the records go, every step tried even when one fails.
    pub fn remove(&self, name: &str) -> Result<(), NetworkError> {
        self.remove_records(name)?.delete_bridge()
    }

    /// The part of [`NetworkStore::remove`] under the store lock: refused while containers
    /// are attached; the subnet and the records go. The bridge is left to
    /// [`RemovedNetwork::delete_bridge`], outside the lock: a link delete waits for the
    /// kernel's rtnl lock, which namespace teardown holds for tens of milliseconds after
    /// containers exit, and nothing can attach to a network without records.
    pub fn remove_records(&self, name: &str) -> Result<RemovedNetwork, NetworkError> {
        let _lock = self.lock()?;
        self.remove_records_locked(name, false)
    }

    fn remove_locked(&self, name: &str, force: bool) -> Result<(), NetworkError> {
        self.remove_records_locked(name, force)?.delete_bridge()
    }

    fn remove_records_locked(
        &self,
        name: &str,
        force: bool,
    ) -> Result<RemovedNetwork, NetworkError> {
        let net = self.require(name)?;
        let eps = self.endpoints(name)?;
        if !force && !eps.is_empty() {
            return Err(NetworkError::InUse {
                name: name.to_string(),
                containers: eps
                    .iter()
                    .map(|e| e.container_name.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
            });
        }
        let mut errors = Vec::new();
        if let Err(e) = self.ipam.release_network(name) {
            errors.push(e.into());
        }
        let ep_dir = self.endpoints_dir(name);
        match fs::remove_dir_all(&ep_dir) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => errors.push(io_err("remove", &ep_dir)(e)),
        }
        let record = self.record_path(name);
        match fs::remove_file(&record) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => errors.push(io_err("remove", &record)(e)),
        }
        Ok(RemovedNetwork {
            name: net.name,
            bridge: net.bridge,
            errors,
        })
    }

    /// Reserves container `id`'s addresses and writes its endpoint records, one per request,
    /// in order: the first network is the default route, interfaces are `eth0`, `eth1`, …
    /// unless named. Bridges are ensured. Anything the container held before (a shim killed
    /// before it could release) is released first. On failure nothing stays reserved.
    pub fn reserve(
        &self,
        id: &str,
        name: &str,
        names: &[String],
        requests: &[EndpointRequest],
        ports: &[PublishedPort],
    ) -> Result<Vec<Endpoint>, NetworkError> {
        let _lock = self.lock()?;
        self.release_locked(id)?;
        let result = self.reserve_locked(id, name, names, requests, ports);
        if result.is_err() {
            let _ = self.release_locked(id);
        }
        result
    }

    fn reserve_locked(
        &self,
        id: &str,
        name: &str,
        names: &[String],
        requests: &[EndpointRequest],
        ports: &[PublishedPort],
    ) -> Result<Vec<Endpoint>, NetworkError> {
        let ports = self.resolve_ports(id, ports)?;
        let mut out: Vec<Endpoint> = Vec::new();
        for (i, req) in requests.iter().enumerate() {
            // The default route: the first network with a way out.
            let route = !out.iter().any(|e| e.gateway.is_some());
            out.push(self.endpoint_locked(id, name, names, req, i, route, &ports)?);
        }
        Ok(out)
    }

    /// Reserves and records one endpoint, the `i`th network of the container (the first
    /// carries `ports`); with `route`, its gateway is the default route unless the network
    /// is internal. The store lock is held.
    #[allow(clippy::too_many_arguments)]
    fn endpoint_locked(
        &self,
        id: &str,
        name: &str,
        names: &[String],
        req: &EndpointRequest,
        i: usize,
        route: bool,
        ports: &[PublishedPort],
    ) -> Result<Endpoint, NetworkError> {
        let net = self.require(&req.network)?;
        self.ensure_bridge(&net)?;
        let ip = self.ipam.allocate(&net.name, id, req.ipv4_address)?;
        let mac = req.mac.unwrap_or_else(|| mac_for(ip));
        let mut all_names: Vec<String> = Vec::new();
        for n in names.iter().chain(req.aliases.iter()) {
            let n = n.trim_end_matches('.').to_ascii_lowercase();
            if !n.is_empty() && !all_names.contains(&n) {
                all_names.push(n);
            }
        }
        let ep = Endpoint {
            container_id: id.to_string(),
            container_name: name.to_string(),
            network: net.name.clone(),
            ip,
            prefix: net.ipam.subnet.prefix(),
            gateway: (route && !net.internal).then_some(net.ipam.gateway),
            mac: format_mac(mac),
            ifname: req.ifname.clone().unwrap_or_else(|| format!("eth{i}")),
            host_veth: link::veth_name(id, i as u32),
            names: all_names,
            aliases: req.aliases.clone(),
            ports: if i == 0 { ports.to_vec() } else { Vec::new() },
            upstreams: req.upstreams.clone(),
            links: req.links.clone(),
        };
        let dir = self.endpoints_dir(&net.name);
        fs::create_dir_all(&dir).map_err(io_err("create", &dir))?;
        if let Err(e) = write_json(&dir.join(format!("{id}.json")), &ep) {
            let _ = self.ipam.release(&net.name, id);
            return Err(e);
        }
        Ok(ep)
    }

    /// Attaches one more network to container `id` (whose other endpoints stay): its
    /// address reserved and its record written, as interface `eth<index>` unless named.
    pub fn connect(
        &self,
        id: &str,
        name: &str,
        names: &[String],
        req: &EndpointRequest,
        index: usize,
    ) -> Result<Endpoint, NetworkError> {
        let _lock = self.lock()?;
        let path = self.endpoints_dir(&req.network).join(format!("{id}.json"));
        if read_json::<Endpoint>(&path)?.is_some() {
            return Err(NetworkError::Exists(format!(
                "{name} in network {}",
                req.network
            )));
        }
        let route = !self
            .container_endpoints(id)?
            .iter()
            .any(|e| e.gateway.is_some());
        self.endpoint_locked(id, name, names, req, index, route, &[])
    }

    /// Detaches container `id` from network `network`: the host side of the veth (and so
    /// the container's interface), the address and the record go. Returns the endpoint
    /// released, if there was one.
    pub fn disconnect(&self, id: &str, network: &str) -> Result<Option<Endpoint>, NetworkError> {
        let _lock = self.lock()?;
        let path = self.endpoints_dir(network).join(format!("{id}.json"));
        let Some(ep) = read_json::<Endpoint>(&path)? else {
            return Ok(None);
        };
        let mut errors = Vec::new();
        if let Err(source) = Netlink::open().and_then(|mut nl| nl.delete_link(&ep.host_veth)) {
            errors.push(NetworkError::Link {
                name: network.to_string(),
                source,
            });
        }
        if let Err(e) = self.ipam.release(network, id) {
            errors.push(e.into());
        }
        if let Err(e) = fs::remove_file(&path)
            && e.kind() != io::ErrorKind::NotFound
        {
            errors.push(io_err("remove", &path)(e));
        }
        many(errors).map(|()| Some(ep))
    }

    /// Every published port of every container but `except`, with its container's name.
    pub fn published_ports(
        &self,
        except: &str,
    ) -> Result<Vec<(PublishedPort, String)>, NetworkError> {
        let mut out = Vec::new();
        for net in self.list()? {
            for ep in self.endpoints(&net.name)? {
                if ep.container_id != except {
                    out.extend(ep.ports.into_iter().map(|p| (p, ep.container_name.clone())));
                }
            }
        }
        Ok(out)
    }

    /// Checks each explicit host port is free — published by no other container, bindable
    /// on the host — and picks a free one for each port without (`host_port` 0), as the
    /// kernel hands out ephemeral ports.
    fn resolve_ports(
        &self,
        id: &str,
        ports: &[PublishedPort],
    ) -> Result<Vec<PublishedPort>, NetworkError> {
        if ports.is_empty() {
            return Ok(Vec::new());
        }
        let mut taken = self.published_ports(id)?;
        let mut out = Vec::new();
        for p in ports {
            let mut p = p.clone();
            if p.host_port == 0 {
                let mut tries = 0;
                p.host_port = loop {
                    let port = probe_bind(&p, 0)?;
                    if port_owner(&taken, &p, port).is_none() || tries > 64 {
                        break port;
                    }
                    tries += 1;
                };
            } else {
                if let Some(owner) = port_owner(&taken, &p, p.host_port) {
                    return Err(port_in_use(&p, format!(" (by container {owner})")));
                }
                probe_bind(&p, p.host_port)?;
            }
            taken.push((p.clone(), "this container".into()));
            out.push(p);
        }
        Ok(out)
    }

    /// Plugs reserved endpoints into the network namespace at `netns_path`: a veth per
    /// endpoint, its host side on the network's bridge, its peer created inside the
    /// namespace and configured there (name, MAC, address, the default route for the first).
    pub fn plug(&self, endpoints: &[Endpoint], netns_path: &Path) -> Result<(), NetworkError> {
        let ns = fs::File::open(netns_path).map_err(io_err("open", netns_path))?;
        let mut links = Vec::new();
        let mut nl = Netlink::open().map_err(|source| NetworkError::Link {
            name: String::new(),
            source,
        })?;
        for ep in endpoints {
            let net = self.require(&ep.network)?;
            let le = |source| NetworkError::Link {
                name: net.name.clone(),
                source,
            };
            // A leftover of an earlier run of this container (its namespace is gone, the
            // host side may not be).
            nl.delete_link(&ep.host_veth).map_err(le)?;
            // A fresh namespace has no `eth*`: the peer gets its final name at once.
            let peer = ep.ifname.clone();
            nl.create_veth_into(&ep.host_veth, &peer, ns.as_fd(), net.mtu)
                .map_err(le)?;
            nl.set_master(&ep.host_veth, &net.bridge).map_err(le)?;
            nl.set_hairpin(&ep.host_veth).map_err(le)?;
            nl.set_up(&ep.host_veth).map_err(le)?;
            links.push(ContainerLink {
                peer_name: peer,
                name: ep.ifname.clone(),
                addresses: vec![(IpAddr::V4(ep.ip), ep.prefix)],
                gateway: ep.gateway.map(IpAddr::V4),
                mac: parse_mac(&ep.mac),
            });
        }
        configure_links(netns_path, &links)
    }

    /// Releases everything container `id` holds: endpoint records, addresses, host-side
    /// veths (gone already when its namespace went). Returns the endpoints released.
    /// Idempotent.
    pub fn release(&self, id: &str) -> Result<Vec<Endpoint>, NetworkError> {
        self.release_all(&[id], HostVeths::Delete)
    }

    /// [`release`](Self::release) for many containers at once: one store lock and one
    /// address-book write for all (`down` stops every container, then releases them here
    /// together, instead of each shim queueing for the lock and a durable write of its own).
    /// `veths` says whether their host-side veths are deleted here. Returns the endpoints
    /// released. Idempotent.
    pub fn release_all(
        &self,
        ids: &[&str],
        veths: HostVeths,
    ) -> Result<Vec<Endpoint>, NetworkError> {
        // The records are read and the veths deleted before the lock. Deleting a link waits
        // for the kernel's rtnl lock, which namespace teardown holds for tens of milliseconds
        // when many containers exit at once (`down`): under the store lock, that wait queued
        // every other release behind it. This is as safe as it was under the lock: a veth is
        // named after its container alone, records are written whole (temp file + rename),
        // and only the container's own start adds them.
        let nets = self.list()?;
        let mut held = Vec::new();
        for id in ids {
            self.endpoints_on(&nets, id, &mut held)?;
        }
        if held.is_empty() {
            // Released already, usually by the container's shim as it exited: `down` and
            // `rm` call this once more for each container, and no longer queue for the lock.
            return Ok(held);
        }
        let mut errors = Vec::new();
        if veths == HostVeths::Delete {
            remove_host_veths(&held, &mut errors);
        }
        let _lock = self.lock()?;
        self.release_records(&held, &mut errors);
        many(errors).map(|()| held)
    }

    /// Reads container `id`'s records and releases them with their addresses and host veths
    /// (the caller holds the lock).
    fn release_locked(&self, id: &str) -> Result<Vec<Endpoint>, NetworkError> {
        let eps = self.container_endpoints(id)?;
        let mut errors = Vec::new();
        remove_host_veths(&eps, &mut errors);
        self.release_records(&eps, &mut errors);
        many(errors).map(|()| eps)
    }

    /// Frees `eps`' addresses (one write) and removes their records (the caller holds the
    /// lock). Both are idempotent: a concurrent release of the same container does no harm.
    fn release_records(&self, eps: &[Endpoint], errors: &mut Vec<NetworkError>) {
        let held: Vec<(&str, &str)> = eps
            .iter()
            .map(|e| (e.network.as_str(), e.container_id.as_str()))
            .collect();
        if let Err(e) = self.ipam.release_all(&held) {
            errors.push(e.into());
        }
        for ep in eps {
            let path = self
                .endpoints_dir(&ep.network)
                .join(format!("{}.json", ep.container_id));
            match fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => errors.push(io_err("remove", &path)(e)),
            }
        }
    }
}

/// Whether a release deletes the containers' host-side veths (see
/// [`NetworkStore::release_all`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostVeths {
    /// Delete each one still there: a namespace another process still holds keeps its end,
    /// and the host end stays on the bridge with it.
    Delete,
    /// Leave them to the kernel: when a network namespace is dismantled, the kernel deletes
    /// the veths in it with their peers, many namespaces in one batch. For callers that know
    /// every process of the containers has exited (`down`): deleting each here would queue
    /// on the kernel's rtnl lock behind that very teardown, one link at a time.
    LeaveToKernel,
}

fn port_in_use(p: &PublishedPort, by: String) -> NetworkError {
    NetworkError::PortInUse {
        addr: p.host_ip.unwrap_or(Ipv4Addr::UNSPECIFIED).to_string(),
        port: p.host_port,
        protocol: p.protocol.clone(),
        by,
    }
}

/// The container already publishing `port` for `p`'s protocol on an overlapping address.
fn port_owner<'a>(
    taken: &'a [(PublishedPort, String)],
    p: &PublishedPort,
    port: u16,
) -> Option<&'a str> {
    taken
        .iter()
        .find(|(t, _)| {
            t.host_port == port
                && t.protocol == p.protocol
                && (t.host_ip.is_none() || p.host_ip.is_none() || t.host_ip == p.host_ip)
        })
        .map(|(_, name)| name.as_str())
}

/// Binds (and closes) `p`'s host address and `port` for its protocol: the port the kernel
/// gave (for 0), or why it cannot be had.
fn probe_bind(p: &PublishedPort, port: u16) -> Result<u16, NetworkError> {
    let addr = std::net::SocketAddr::from((p.host_ip.unwrap_or(Ipv4Addr::UNSPECIFIED), port));
    let result = if p.protocol == "udp" {
        std::net::UdpSocket::bind(addr).and_then(|s| s.local_addr())
    } else {
        std::net::TcpListener::bind(addr).and_then(|s| s.local_addr())
    };
    match result {
        Ok(a) => Ok(a.port()),
        Err(e) if e.kind() == io::ErrorKind::AddrInUse => {
            let mut q = p.clone();
            q.host_port = port;
            Err(port_in_use(&q, " (by another program)".into()))
        }
        Err(source) => Err(NetworkError::HostAddress {
            addr: addr.ip().to_string(),
            port,
            protocol: p.protocol.clone(),
            source,
        }),
    }
}

/// Configures every container-side link in one visit to the namespace: `lo` up, each peer
/// renamed, its MAC, address and the link up, then the default route.
fn configure_links(netns_path: &Path, links: &[ContainerLink]) -> Result<(), NetworkError> {
    let le = |source| NetworkError::Link {
        name: String::new(),
        source,
    };
    netns::run_in(netns_path, || -> Result<(), LinkError> {
        let mut nl = Netlink::open()?;
        nl.set_up("lo")?;
        for l in links {
            if l.peer_name != l.name {
                nl.rename(&l.peer_name, &l.name)?;
            }
            if let Some(mac) = l.mac {
                nl.set_mac(&l.name, mac)?;
            }
            for &(addr, prefix) in &l.addresses {
                nl.add_address(&l.name, addr, prefix)?;
            }
            nl.set_up(&l.name)?;
        }
        for l in links {
            if let Some(gw) = l.gateway {
                nl.add_default_route(gw)?;
            }
        }
        Ok(())
    })
    .map_err(|e| le(LinkError::Netns(e)))?
    .map_err(le)
}

/// Deletes the host ends of `eps`' veths that are still there (the kernel removes a veth
/// with the namespace of its other end, usually before this runs).
/// Deletes the host-side veths of `eps` that are still there (after a release that left
/// them to the kernel, [`HostVeths::LeaveToKernel`]: one whose namespace something else
/// still holds).
pub fn delete_host_veths(eps: &[Endpoint]) -> Result<(), NetworkError> {
    let mut errors = Vec::new();
    remove_host_veths(eps, &mut errors);
    many(errors)
}

fn remove_host_veths(eps: &[Endpoint], errors: &mut Vec<NetworkError>) {
    let mut nl: Option<Netlink> = None;
    for ep in eps {
        let result = link::link_exists(&ep.host_veth).and_then(|present| {
            if !present {
                return Ok(());
            }
            let nl = match &mut nl {
                Some(nl) => nl,
                None => nl.insert(Netlink::open()?),
            };
            nl.delete_link(&ep.host_veth)
        });
        if let Err(source) = result {
            errors.push(NetworkError::Link {
                name: ep.network.clone(),
                source,
            });
        }
    }
}

/// A network whose records [`NetworkStore::remove_records`] removed; its bridge is still to
/// go.
#[derive(Debug)]
#[must_use = "the bridge stays until `delete_bridge`"]
pub struct RemovedNetwork {
    name: String,
    bridge: String,
    errors: Vec<NetworkError>,
}

impl RemovedNetwork {
    /// The network's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Deletes the bridge (one already gone is fine); the errors of the whole removal.
    pub fn delete_bridge(mut self) -> Result<(), NetworkError> {
        if let Err(source) = Netlink::open().and_then(|mut nl| nl.delete_link(&self.bridge)) {
            self.errors.insert(
                0,
                NetworkError::Link {
                    name: self.name.clone(),
                    source,
                },
            );
        }
        many(self.errors)
    }
}

fn many(mut errors: Vec<NetworkError>) -> Result<(), NetworkError> {
    match errors.len() {
        0 => Ok(()),
        1 => Err(errors.remove(0)),
        _ => Err(NetworkError::Many(errors)),
    }
}

/// Docker's rule for network names.
pub fn check_name(name: &str) -> Result<(), NetworkError> {
    let mut chars = name.chars();
    let ok = name.len() <= 64
        && chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if ok {
        Ok(())
    } else {
        Err(NetworkError::InvalidName(name.to_string()))
    }
}

/// Docker's MAC for an address: `02:42:` and the four bytes of the IPv4 address.
pub fn mac_for(ip: Ipv4Addr) -> [u8; 6] {
    let o = ip.octets();
    [0x02, 0x42, o[0], o[1], o[2], o[3]]
}

/// `aa:bb:cc:dd:ee:ff`.
pub fn format_mac(mac: [u8; 6]) -> String {
    mac.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// Parses `aa:bb:cc:dd:ee:ff` (or with `-`); `None` when it is not six hex bytes.
pub fn parse_mac(s: &str) -> Option<[u8; 6]> {
    let parts: Vec<&str> = s.split([':', '-']).collect();
    if parts.len() != 6 {
        return None;
    }
    let mut out = [0u8; 6];
    for (o, p) in out.iter_mut().zip(parts) {
        if p.len() != 2 {
            return None;
        }
        *o = u8::from_str_radix(p, 16).ok()?;
    }
    Some(out)
}

fn natural_ifname_key(name: &str) -> (String, u64) {
    let digits = name.len() - name.trim_end_matches(|c: char| c.is_ascii_digit()).len();
    let (stem, num) = name.split_at(name.len() - digits);
    (stem.to_string(), num.parse().unwrap_or(0))
}

/// Turns IPv4 forwarding on in the caller's network namespace (only written when off).
pub fn enable_ip_forward() -> Result<(), NetworkError> {
    let path = "/proc/sys/net/ipv4/ip_forward";
    if fs::read_to_string(path).is_ok_and(|v| v.trim() == "1") {
        return Ok(());
    }
    set_sysctl(path)
}

fn set_sysctl(path: &str) -> Result<(), NetworkError> {
    fs::write(path, b"1").map_err(|source| NetworkError::Sysctl {
        path: path.to_string(),
        source,
    })
}

fn random_id() -> Result<String, NetworkError> {
    let mut bytes = [0u8; 32];
    let path = Path::new("/dev/urandom");
    use std::io::Read;
    fs::File::open(path)
        .and_then(|mut f| f.read_exact(&mut bytes))
        .map_err(io_err("read", path))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<Option<T>, NetworkError> {
    match fs::read(path) {
        Ok(bytes) => {
            serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|source| NetworkError::Corrupt {
                    path: path.to_path_buf(),
                    source,
                })
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io_err("read", path)(e)),
    }
}

/// Temp file + rename (no fsync: records are rebuilt or released at the next start; the
/// IPAM file, which must never hand out an address twice, is fsynced by the allocator).
fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<(), NetworkError> {
    let mut bytes = serde_json::to_vec_pretty(value).map_err(|source| NetworkError::Corrupt {
        path: path.to_path_buf(),
        source,
    })?;
    bytes.push(b'\n');
    let tmp = path.with_extension(format!("tmp-{}", std::process::id()));
    fs::write(&tmp, &bytes).map_err(io_err("write", &tmp))?;
    fs::rename(&tmp, path).map_err(|e| {
        let _ = fs::remove_file(&tmp);
        io_err("rename", path)(e)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_docker() {
        assert!(check_name("proj_default").is_ok());
        assert!(check_name("a.b-c").is_ok());
        assert!(check_name("_x").is_err());
        assert!(check_name("").is_err());
        assert!(check_name("a/b").is_err());
        assert!(check_name(&"a".repeat(65)).is_err());
    }

    #[test]
    fn macs() {
        let ip: Ipv4Addr = "172.18.0.2".parse().unwrap();
        assert_eq!(format_mac(mac_for(ip)), "02:42:ac:12:00:02");
        assert_eq!(parse_mac("02:42:ac:12:00:02"), Some(mac_for(ip)));
        assert_eq!(parse_mac("02-42-AC-12-00-02"), Some(mac_for(ip)));
        assert_eq!(parse_mac("02:42:ac:12:00"), None);
        assert_eq!(parse_mac("02:42:ac:12:00:zz"), None);
    }

    #[test]
    fn interfaces_sort_naturally() {
        let mut v = vec!["eth10", "eth2", "eth0"];
        v.sort_by_key(|n| natural_ifname_key(n));
        assert_eq!(v, ["eth0", "eth2", "eth10"]);
    }

    #[test]
    fn records_without_kernel() {
        // Listing, reading and releasing work on records alone (no bridge is touched when
        // a container holds nothing).
        let dir = tempfile::tempdir().unwrap();
        let store = NetworkStore::open(dir.path().join("networks")).unwrap();
        assert!(store.list().unwrap().is_empty());
        assert!(store.get("nope").unwrap().is_none());
        assert!(matches!(
            store.require("nope"),
            Err(NetworkError::NotFound(_))
        ));
        assert!(store.release("abc").unwrap().is_empty());
        let err = store
            .create(
                &CreateRequest {
                    name: "x".into(),
                    driver: "overlay".into(),
                    ..Default::default()
                },
                &[],
                &[],
                String::new(),
            )
            .unwrap_err();
        assert!(err.to_string().contains("overlay"), "{err}");
    }
}
