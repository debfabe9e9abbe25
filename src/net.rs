//! The binary's networking: what `crates/net` is asked to do for a container, when. The shim
//! calls [`ShimNetworking`] (engine's `Networking` hooks) at each start and exit; the CLI's
//! network verbs, `rm` and the DNS daemon use the rest.
//!
//! - `prepare` (before the container exists, single-threaded): addresses reserved, host ports
//!   checked and chosen, endpoint records written, the firewall table rewritten when the
//!   container publishes ports.
//! - `attach` (container created, not started): a veth per network into its namespace,
//!   configured there; the DNS daemon told to reload (started when none runs).
//! - `release` (container exited or failed to start; also `rm`): records, addresses and
//!   host-side veths go, the firewall and DNS follow.

use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use berth_engine::container::ContainerConfig;
use berth_engine::container::shim::{NetworkSetup, Networking};
use berth_engine::fsutil::Lock;
use berth_net::firewall;
use berth_net::ipam::{self, IpNet, Pool};
use berth_net::network::{Endpoint, EndpointRequest, HostVeths, NetworkStore, PublishedPort};
use serde::Deserialize;

use crate::labels;

/// Hidden verb of the DNS daemon (`berth __dns ROOT`).
pub const DNS_VERB: &str = "__dns";

/// The network store of a state root.
pub fn store(root: &Path) -> Result<NetworkStore, String> {
    NetworkStore::open(root.join("networks")).map_err(|e| e.to_string())
}

/// `<root>/daemon.json`: the settings of berth's networking, in the spelling of Docker's
/// daemon.json: `default-address-pools` (`[{"base": "10.10.0.0/16", "size": 24}]`) and `dns`
/// (the upstream servers of the embedded resolvers, `ip` or `ip:port`; the host's
/// `/etc/resolv.conf` when unset).
#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "kebab-case")]
pub struct DaemonConfig {
    pub default_address_pools: Vec<PoolConfig>,
    pub dns: Vec<String>,
}

/// One `default-address-pools` entry.
#[derive(Debug, Deserialize)]
pub struct PoolConfig {
    pub base: String,
    pub size: u8,
}

impl DaemonConfig {
    /// The root's `daemon.json`, or defaults when there is none.
    pub fn load(root: &Path) -> Result<DaemonConfig, String> {
        let path = root.join("daemon.json");
        match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| {
                format!(
                    "{}: {e}\nhint: see `berth network --help` for the keys",
                    path.display()
                )
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(DaemonConfig::default()),
            Err(e) => Err(format!("read {}: {e}", path.display())),
        }
    }

    /// The address pools new networks take subnets from.
    pub fn pools(&self) -> Result<Vec<Pool>, String> {
        if self.default_address_pools.is_empty() {
            return Ok(ipam::default_pools());
        }
        self.default_address_pools
            .iter()
            .map(|p| {
                let base: IpNet = p
                    .base
                    .parse()
                    .map_err(|e| format!("daemon.json default-address-pools: {e}"))?;
                Pool::new(base, p.size)
                    .map_err(|e| format!("daemon.json default-address-pools: {e}"))
            })
            .collect()
    }

    /// Upstream resolvers: `dns`, else the host's.
    pub fn upstreams(&self) -> Vec<SocketAddr> {
        if self.dns.is_empty() {
            let text = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
            return berth_net::dns::upstreams_from_resolv_conf(&text);
        }
        self.dns
            .iter()
            .filter_map(|s| {
                s.parse::<SocketAddr>()
                    .ok()
                    .or_else(|| s.parse::<IpAddr>().ok().map(|ip| SocketAddr::new(ip, 53)))
            })
            .collect()
    }
}

/// The nftables table of a state root: `berth` for the default root, else `berth_` and 8 hex
/// digits of the root's path (several roots — test runs — on one host keep their own rules).
pub fn table_name(root: &Path) -> String {
    if root == Path::new("/var/lib/berth") {
        return "berth".to_string();
    }
    use sha2::Digest;
    let d = sha2::Sha256::digest(root.as_os_str().as_encoded_bytes());
    format!(
        "berth_{}",
        d[..4]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    )
}

/// The firewall's lock, in `<root>/run`: held exclusively while the table is rewritten from
/// the records, so that two rewrites never interleave. Each writes the whole table, and one
/// built from older records would drop what the other had just added (two containers
/// publishing ports as they start together lost one of the two ports). Held shared by a
/// container about to start, to read the stamp.
const FIREWALL_LOCK: &str = "firewall.lock";
/// The firewall's stamp, in `<root>/run`: where the table was last written (the boot and the
/// network namespace, [`firewall_scope`]), then the names of the networks it covers, one a
/// line. Removed before each rewrite, written after it succeeded: it never names a network
/// whose rules the table may lack, unless someone else removed them.
const FIREWALL_STAMP: &str = "firewall.applied";

/// A file of `<root>/run`.
fn run_file(root: &Path, name: &str) -> PathBuf {
    root.join(berth_engine::rundir::RUN_DIR).join(name)
}

/// The firewall lock, `<root>/run` made (on its tmpfs) first when missing: the stamp beside
/// it is read and written with it held.
fn firewall_lock(root: &Path, shared: bool) -> Result<Lock, String> {
    berth_engine::rundir::prepare(root);
    let path = run_file(root, FIREWALL_LOCK);
    if let Some(run) = path.parent() {
        fs::create_dir_all(run).map_err(|e| format!("create {}: {e}", run.display()))?;
    }
    let lock = if shared {
        Lock::shared(&path)
    } else {
        Lock::exclusive(&path)
    };
    lock.map_err(|e| format!("lock {}: {e}", path.display()))
}

/// Where a table written now takes effect: this boot of the machine, and the calling thread's
/// network namespace (`nft` runs in it). A stamp from another boot or namespace is void: the
/// table it speaks of is gone.
fn firewall_scope() -> String {
    use std::os::unix::fs::MetadataExt;
    let boot = fs::read_to_string("/proc/sys/kernel/random/boot_id").unwrap_or_default();
    let netns = fs::metadata("/proc/thread-self/ns/net")
        .map(|m| format!("{}:{}", m.dev(), m.ino()))
        .unwrap_or_default();
    format!("boot {} netns {netns}", boot.trim())
}

/// Whether a stamp's text covers `networks` here: written in this boot and namespace, and
/// naming each of them.
fn stamp_covers(stamp: &str, scope: &str, networks: &[&str]) -> bool {
    let mut lines = stamp.lines();
    lines.next() == Some(scope) && {
        let named: Vec<&str> = lines.collect();
        networks.iter().all(|n| named.contains(n))
    }
}

/// Rewrites the root's firewall table from the records: every network's rules and every
/// endpoint's published ports; removes the table when no network is left. Under the
/// firewall lock (see [`FIREWALL_LOCK`]).
pub fn sync_firewall(root: &Path, store: &NetworkStore) -> Result<(), String> {
    let _lock = firewall_lock(root, false)?;
    sync_firewall_locked(root, store)
}

/// Makes sure the firewall table has the rules of the networks of `eps` before their container
/// runs: the stamp says so, or the table is rewritten. This is what lets `up` write the table
/// beside the containers' creation ([`FirewallSync`]): a start waits for that rewrite (the
/// lock), and finds its networks in the stamp. After a reboot (or in another network
/// namespace) the stamp is void and the first container to start writes the table again.
fn ensure_firewall(root: &Path, store: &NetworkStore, eps: &[Endpoint]) -> Result<(), String> {
    if eps.is_empty() {
        return Ok(());
    }
    let networks: Vec<&str> = eps.iter().map(|e| e.network.as_str()).collect();
    {
        let _shared = firewall_lock(root, true)?;
        let stamp = fs::read_to_string(run_file(root, FIREWALL_STAMP)).unwrap_or_default();
        if stamp_covers(&stamp, &firewall_scope(), &networks) && !table_gone(root) {
            return Ok(());
        }
    }
    sync_firewall(root, store)
}

/// Whether the kernel says the root's table is missing here, although a stamp may claim it:
/// someone removed it (`nft flush ruleset`). A failed question counts as no: the stamp
/// stands, as it did before berth asked.
fn table_gone(root: &Path) -> bool {
    matches!(firewall::table_exists(&table_name(root)), Ok(false))
}

/// Writes the table again when the stamp says it was written here, for networks, and the
/// kernel no longer has it: what a reload of the host's firewall (`nft flush ruleset`) did
/// to the published ports and masquerading of containers already running. The supervisors
/// call it on each rescan; true when it rewrote the table.
pub fn heal_firewall(root: &Path) -> Result<bool, String> {
    let claimed = |root: &Path| {
        let stamp = fs::read_to_string(run_file(root, FIREWALL_STAMP)).unwrap_or_default();
        let mut lines = stamp.lines();
        lines.next() == Some(firewall_scope().as_str()) && lines.next().is_some()
    };
    // The cheap look first, without the lock: nearly always the table is there.
    if !claimed(root) || !table_gone(root) {
        return Ok(false);
    }
    let _lock = firewall_lock(root, false)?;
    // Another supervisor (or a start) may have rewritten it meanwhile.
    if !claimed(root) || !table_gone(root) {
        return Ok(false);
    }
    sync_firewall_locked(root, &store(root)?)?;
    Ok(true)
}

/// A rewrite of the firewall table on a thread of its own, started by `up` once it has made
/// networks, so that the containers' creation goes on meanwhile (`nft` takes tens of
/// milliseconds). It holds the firewall lock from the start: every container waits for it
/// before running ([`ensure_firewall`]). [`FirewallSync::finish`] reports how it went; a
/// dropped one is waited for.
#[derive(Debug, Default)]
pub struct FirewallSync {
    handle: Option<std::thread::JoinHandle<Result<(), String>>>,
}

impl FirewallSync {
    /// Takes the lock, then rewrites the table on a new thread.
    pub fn start(root: &Path) -> Result<FirewallSync, String> {
        let lock = firewall_lock(root, false)?;
        let root = root.to_path_buf();
        let handle = std::thread::Builder::new()
            .name("firewall".into())
            .spawn(move || {
                let _lock = lock;
                sync_firewall_locked(&root, &store(&root)?)
            })
            .map_err(|e| format!("start the firewall thread: {e}"))?;
        Ok(FirewallSync {
            handle: Some(handle),
        })
    }

    /// Waits for the rewrite; its error, if any.
    pub fn finish(mut self) -> Result<(), String> {
        match self.handle.take() {
            None => Ok(()),
            Some(h) => h
                .join()
                .unwrap_or_else(|_| Err("the firewall thread panicked".into())),
        }
    }
}

impl Drop for FirewallSync {
    fn drop(&mut self) {
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

/// [`sync_firewall`] with the firewall lock held: the stamp goes, the table is rewritten, and
/// the stamp names the networks the new table covers.
fn sync_firewall_locked(root: &Path, store: &NetworkStore) -> Result<(), String> {
    let table = table_name(root);
    let nets = store.list().map_err(|e| e.to_string())?;
    let stamp = run_file(root, FIREWALL_STAMP);
    match fs::remove_file(&stamp) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(format!("remove {}: {e}", stamp.display())),
    }
    if nets.is_empty() {
        return firewall::remove(&table).map_err(|e| e.to_string());
    }
    let mut ruleset = firewall::Ruleset {
        table,
        networks: Vec::new(),
        ports: Vec::new(),
    };
    for net in &nets {
        ruleset.networks.push(firewall::NetworkRules {
            bridge: net.bridge.clone(),
            subnet: net.ipam.subnet,
            internal: net.internal,
        });
        for ep in store.endpoints(&net.name).map_err(|e| e.to_string())? {
            for p in &ep.ports {
                ruleset.ports.push(firewall::PortMap {
                    host_ip: p.host_ip,
                    host_port: p.host_port,
                    protocol: if p.protocol == "udp" {
                        firewall::Protocol::Udp
                    } else {
                        firewall::Protocol::Tcp
                    },
                    container_ip: ep.ip,
                    container_port: p.container_port,
                });
            }
        }
    }
    firewall::apply(&ruleset).map_err(|e| e.to_string())?;
    let mut text = format!("{}\n", firewall_scope());
    for net in &nets {
        text.push_str(&net.name);
        text.push('\n');
    }
    berth_engine::fsutil::write_replace(&stamp, text.as_bytes()).map_err(|e| e.to_string())
}

/// The DNS names of a container on its networks: its name, short id, hostname when the user
/// gave one, its compose service, then each network's aliases.
pub fn dns_names(config: &ContainerConfig) -> Vec<String> {
    let mut names = vec![
        config.name.clone(),
        config.id[..12.min(config.id.len())].to_string(),
    ];
    if !config.hostname.is_empty() {
        names.push(config.hostname.clone());
    }
    if let Some(service) = config.labels.get(labels::SERVICE) {
        names.push(service.clone());
    }
    names
}

/// A link as Docker reads it (`--link`, compose `external_links`): `NAME` or `NAME:ALIAS`, as
/// (name, alias); `None` when malformed. Endpoint records keep it as `NAME:ALIAS`.
pub fn parse_link(entry: &str) -> Option<(&str, &str)> {
    let (name, alias) = entry.split_once(':').unwrap_or((entry, entry));
    (!name.is_empty() && !alias.is_empty() && !alias.contains(':')).then_some((name, alias))
}

/// The container's `dns` servers, which its networks' resolver forwards to for it.
pub fn dns_upstreams(config: &ContainerConfig) -> Result<Vec<IpAddr>, String> {
    config
        .dns
        .servers
        .iter()
        .map(|s| {
            s.parse::<IpAddr>()
                .map_err(|_| format!("dns {s:?} is not an IP address"))
        })
        .collect()
}

fn endpoint_requests(config: &ContainerConfig) -> Result<Vec<EndpointRequest>, String> {
    let upstreams = dns_upstreams(config)?;
    config
        .networks
        .iter()
        .map(|n| {
            Ok(EndpointRequest {
                network: n.network.clone(),
                aliases: n.aliases.clone(),
                ipv4_address: match &n.ipv4_address {
                    Some(ip) => Some(ip.parse::<Ipv4Addr>().map_err(|_| {
                        format!(
                            "network {}: ipv4_address {ip:?} is not an IPv4 address",
                            n.network
                        )
                    })?),
                    None => None,
                },
                mac: match &n.mac_address {
                    Some(m) => Some(berth_net::network::parse_mac(m).ok_or_else(|| {
                        format!(
                            "network {}: mac_address {m:?} is not a MAC address",
                            n.network
                        )
                    })?),
                    None => None,
                },
                ifname: n.interface_name.clone(),
                upstreams: upstreams.clone(),
                links: n.links.clone(),
            })
        })
        .collect()
}

fn published(config: &ContainerConfig) -> Result<Vec<PublishedPort>, String> {
    config
        .ports
        .iter()
        .map(|p| {
            Ok(PublishedPort {
                host_ip: match p.host_ip.as_deref() {
                    None | Some("") | Some("0.0.0.0") => None,
                    Some(ip) => Some(ip.parse::<Ipv4Addr>().map_err(|_| {
                        format!(
                            "port {}: host ip {ip:?} is not an IPv4 address",
                            p.container_port
                        )
                    })?),
                },
                host_port: p.host_port.unwrap_or(0),
                container_port: p.container_port,
                protocol: if p.protocol.is_empty() {
                    "tcp".into()
                } else {
                    p.protocol.clone()
                },
            })
        })
        .collect()
}

/// The engine's networking hooks, as the shim runs them.
pub struct ShimNetworking;

impl Networking for ShimNetworking {
    fn prepare(&self, root: &Path, config: &ContainerConfig) -> Result<NetworkSetup, String> {
        if config.networks.is_empty() {
            if !config.ports.is_empty() {
                return Err("published ports need a network (the container has none)".into());
            }
            return Ok(NetworkSetup::default());
        }
        let store = store(root)?;
        let requests = endpoint_requests(config)?;
        let ports = published(config)?;
        let eps = store
            .reserve(
                &config.id,
                &config.name,
                &dns_names(config),
                &requests,
                &ports,
            )
            .map_err(|e| e.to_string())?;
        if eps.iter().any(|e| !e.ports.is_empty()) {
            // The shim is single-threaded here; `nft` runs as a child process.
            if let Err(e) = sync_firewall(root, &store) {
                let _ = store.release(&config.id);
                let _ = sync_firewall(root, &store);
                return Err(e);
            }
        }
        let gateway = eps.first().and_then(|e| gateway_of(&store, e));
        Ok(NetworkSetup {
            addresses: eps.iter().map(|e| IpAddr::V4(e.ip)).collect(),
            host_gateway: gateway.as_deref().and_then(|g| g.parse().ok()),
            nameservers: gateway.into_iter().collect(),
        })
    }

    fn attach(&self, root: &Path, config: &ContainerConfig, pid: i32) -> Result<(), String> {
        let ns = PathBuf::from(format!("/proc/{pid}/ns/net"));
        if config.networks.is_empty() {
            return berth_net::netns::run_in(&ns, || -> Result<(), String> {
                let mut nl = berth_net::link::Netlink::open().map_err(|e| e.to_string())?;
                nl.set_up("lo").map_err(|e| e.to_string())
            })
            .map_err(|e| e.to_string())?;
        }
        let store = store(root)?;
        let eps = store
            .container_endpoints(&config.id)
            .map_err(|e| e.to_string())?;
        store.plug(&eps, &ns).map_err(|e| e.to_string())?;
        dns_publish(root)?;
        ensure_firewall(root, &store, &eps)
    }

    fn release(&self, root: &Path, id: &str) {
        if let Err(e) = release(root, id) {
            eprintln!("network release of {id}: {e}");
        }
    }
}

/// The embedded resolver's address for an endpoint's network.
fn gateway_of(store: &NetworkStore, ep: &Endpoint) -> Option<String> {
    store
        .get(&ep.network)
        .ok()
        .flatten()
        .map(|n| n.ipam.gateway.to_string())
}

/// Gives back everything container `id` holds on networks; the firewall and the DNS daemon
/// follow. Idempotent, and cheap for a container without endpoints.
pub fn release(root: &Path, id: &str) -> Result<(), String> {
    let Some(released) = release_endpoints(root, &[id], HostVeths::Delete)? else {
        return Ok(());
    };
    if released.published_ports() {
        sync_firewall(root, &released.store)?;
    }
    Ok(())
}

/// What [`release_endpoints`] gave back, and the store it came from.
pub struct Released {
    pub store: NetworkStore,
    pub endpoints: Vec<Endpoint>,
}

impl Released {
    /// Whether the firewall must be rewritten: some endpoint published ports.
    pub fn published_ports(&self) -> bool {
        self.endpoints.iter().any(|e| !e.ports.is_empty())
    }
}

/// Gives back everything containers `ids` hold on networks, all in one go (one store lock,
/// one address-book write), and tells the DNS daemon; `veths` as
/// [`NetworkStore::release_all`]. The firewall is the caller's (see
/// [`Released::published_ports`]). `None`: the root has no networks. Idempotent.
pub fn release_endpoints(
    root: &Path,
    ids: &[&str],
    veths: HostVeths,
) -> Result<Option<Released>, String> {
    if !root.join("networks").exists() {
        return Ok(None);
    }
    let store = store(root)?;
    let endpoints = store.release_all(ids, veths).map_err(|e| e.to_string())?;
    if !endpoints.is_empty() {
        dns_forget(root);
    }
    Ok(Some(Released { store, endpoints }))
}

fn dns_socket(root: &Path) -> PathBuf {
    root.join("run").join("dns.sock")
}

/// Tells the root's DNS daemon to reload its records and waits until it has, so that the
/// container just attached finds its peers by its first query; starts the daemon when none
/// answers. Attaches ask under `run/dns.spawn.lock` held *shared* (the daemon takes it
/// exclusively before it exits when idle, so it never exits under an attach, and concurrent
/// attaches are answered together by one reload); starting a daemon takes it exclusively.
pub fn dns_publish(root: &Path) -> Result<(), String> {
    berth_engine::rundir::prepare(root);
    let run = root.join(berth_engine::rundir::RUN_DIR);
    std::fs::create_dir_all(&run).map_err(|e| format!("create {}: {e}", run.display()))?;
    let lock_path = run.join("dns.spawn.lock");
    let lock_err = |e| format!("lock {}: {e}", lock_path.display());
    {
        let _shared = Lock::shared(&lock_path).map_err(lock_err)?;
        if poke(&dns_socket(root), "reload").is_ok() {
            return Ok(());
        }
    }
    let _exclusive = Lock::exclusive(&lock_path).map_err(lock_err)?;
    // Another attach may have started one meanwhile.
    match poke(&dns_socket(root), "reload") {
        Ok(()) => Ok(()),
        Err(Poke::OtherBinary(pid)) => {
            // Started by another berth binary (an upgrade): its successor reads the records
            // as it starts, so nothing is lost but the few milliseconds between the two.
            stop_daemon(root, pid)?;
            start_daemon(root)
        }
        Err(Poke::Failed) => start_daemon(root),
    }
}

/// Stops the DNS daemon `pid` (SIGTERM; SIGKILL after 5 s: it keeps nothing that is not on
/// disk) and waits until it has let go of `run/dns.lock`.
fn stop_daemon(root: &Path, pid: i32) -> Result<(), String> {
    use crate::supervisor::wait_free;
    use nix::sys::signal::{Signal, kill};
    let lock = root.join("run").join("dns.lock");
    let pid = nix::unistd::Pid::from_raw(pid);
    for signal in [Signal::SIGTERM, Signal::SIGKILL] {
        let _ = kill(pid, signal);
        if wait_free(&lock, Duration::from_secs(5)) {
            return Ok(());
        }
    }
    Err(format!("the DNS daemon (pid {pid}) does not exit"))
}

/// Tells the root's DNS daemon that endpoints went away, without waiting: a name that
/// resolves a few milliseconds longer harms nobody, while waiting serialised every exit of a
/// `down` behind one reload each. The daemon reloads once for a burst of these, and exits
/// when no endpoint is left (see `dnsd`). No daemon: nothing to tell.
pub fn dns_forget(root: &Path) {
    if let Ok(mut s) = UnixStream::connect(dns_socket(root)) {
        let _ = s.write_all(b"forget\n");
    }
}

/// Why a request to the DNS daemon was not answered `ok`.
enum Poke {
    /// The daemon (this pid) runs another berth binary; it was not asked.
    OtherBinary(i32),
    /// No daemon, or no good answer (a new one is started).
    Failed,
}

fn poke(socket: &Path, request: &str) -> Result<(), Poke> {
    let fail = |_| Poke::Failed;
    let mut s = UnixStream::connect(socket).map_err(fail)?;
    // The daemon's pid from the connection itself: the old daemons wrote it nowhere.
    if let Ok(cred) = nix::sys::socket::getsockopt(&s, nix::sys::socket::sockopt::PeerCredentials)
        && crate::binary::runs_other_binary(cred.pid())
    {
        return Err(Poke::OtherBinary(cred.pid()));
    }
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(fail)?;
    s.write_all(format!("{request}\n").as_bytes())
        .map_err(fail)?;
    let mut line = String::new();
    BufReader::new(&s).read_line(&mut line).map_err(fail)?;
    match line.trim() {
        "ok" => Ok(()),
        _ => Err(Poke::Failed),
    }
}

/// Starts `berth __dns ROOT` detached (own session, stdio away from the caller, errors in
/// `run/dns.log`) through a short-lived launcher, so the daemon is nobody's child, and waits
/// for it to say it serves.
fn start_daemon(root: &Path) -> Result<(), String> {
    let exe = std::env::current_exe().map_err(|e| format!("find berth's binary: {e}"))?;
    let log_path = root.join("run").join("dns.log");
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .map_err(|e| format!("open {}: {e}", log_path.display()))?;
    let mut child = Command::new(&exe)
        .arg(DNS_VERB)
        .arg("--launch")
        .arg(root)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(log)
        .process_group(0)
        .spawn()
        .map_err(|e| format!("start the DNS daemon: {e}"))?;
    let mut line = String::new();
    if let Some(out) = child.stdout.take() {
        let _ = BufReader::new(out).read_line(&mut line);
    }
    let _ = child.wait();
    if line.trim() == "ready" {
        Ok(())
    } else {
        Err(format!(
            "the DNS daemon did not start (see {}): {}",
            log_path.display(),
            line.trim()
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stamp_covers_its_networks_in_its_scope_only() {
        let scope = "boot b1 netns 4:10";
        let stamp = "boot b1 netns 4:10\nfront\nback\n";
        assert!(stamp_covers(stamp, scope, &["front"]));
        assert!(stamp_covers(stamp, scope, &["back", "front"]));
        assert!(stamp_covers(stamp, scope, &[]));
        // A network the table was not written for.
        assert!(!stamp_covers(stamp, scope, &["front", "other"]));
        // Another boot, another namespace, no stamp at all.
        assert!(!stamp_covers(stamp, "boot b2 netns 4:10", &["front"]));
        assert!(!stamp_covers(stamp, "boot b1 netns 4:11", &["front"]));
        assert!(!stamp_covers("", scope, &["front"]));
        // A name is a whole line.
        assert!(!stamp_covers(stamp, scope, &["fro"]));
    }

    #[test]
    fn the_scope_names_this_boot_and_namespace() {
        let scope = firewall_scope();
        let boot = fs::read_to_string("/proc/sys/kernel/random/boot_id").unwrap();
        assert!(
            scope.starts_with(&format!("boot {} netns ", boot.trim())),
            "{scope}"
        );
        assert_eq!(scope, firewall_scope());
        // Another thread in the same namespace shares it.
        assert_eq!(std::thread::spawn(firewall_scope).join().unwrap(), scope);
    }
}
