//! `berth network …`: the docker CLI for networks (create, ls, inspect, rm, prune, connect,
//! disconnect).

use std::collections::BTreeMap;
use std::io::Write;

use anyhow::{Context, bail};
use berth_engine::container::store::ContainerStore;
use berth_engine::container::{EndpointConfig, Status};
use berth_engine::layout::Root;
use berth_net::ipam::{self, SubnetConfig};
use berth_net::network::{CreateRequest, EndpointRequest, Network, NetworkStore};
use clap::{Args, Subcommand};
use serde_json::json;

use crate::cli::Settings;
use crate::net;

#[derive(Debug, Args)]
pub struct NetworkArgs {
    #[command(subcommand)]
    pub command: NetworkCommand,
}

#[derive(Debug, Subcommand)]
pub enum NetworkCommand {
    /// Connect a container to a network
    Connect(ConnectArgs),
    /// Create a network
    Create(CreateArgs),
    /// Disconnect a container from a network
    Disconnect(DisconnectArgs),
    /// Display detailed information on one or more networks
    Inspect(InspectArgs),
    /// List networks
    #[command(alias = "list")]
    Ls(LsArgs),
    /// Remove all unused networks
    Prune(PruneArgs),
    /// Remove one or more networks
    #[command(alias = "remove")]
    Rm(RmArgs),
}

#[derive(Debug, Args)]
pub struct CreateArgs {
    /// Driver to manage the network (bridge)
    #[arg(short, long, default_value = "bridge")]
    pub driver: String,
    /// Subnet in CIDR format
    #[arg(long)]
    pub subnet: Option<String>,
    /// Allocate container addresses from a sub-range
    #[arg(long = "ip-range")]
    pub ip_range: Option<String>,
    /// IPv4 gateway for the subnet
    #[arg(long)]
    pub gateway: Option<String>,
    /// Restrict external access to the network
    #[arg(long)]
    pub internal: bool,
    /// Enable IPv6 networking (refused: berth's networks are IPv4 only)
    #[arg(long)]
    pub ipv6: bool,
    /// Auxiliary IPv4 addresses kept from containers (NAME=IP; needs --subnet)
    #[arg(long = "aux-address", value_name = "NAME=IP")]
    pub aux_addresses: Vec<String>,
    /// Enable manual container attachment (always on for bridge networks)
    #[arg(long)]
    pub attachable: bool,
    /// Set metadata on a network
    #[arg(long = "label", value_name = "KEY=VALUE")]
    pub labels: Vec<String>,
    /// Set driver specific options (com.docker.network.bridge.name, com.docker.network.driver.mtu)
    #[arg(short = 'o', long = "opt", value_name = "KEY=VALUE")]
    pub opts: Vec<String>,
    pub name: String,
}

#[derive(Debug, Args)]
pub struct InspectArgs {
    #[arg(required = true, value_name = "NETWORK")]
    pub networks: Vec<String>,
}

#[derive(Debug, Args)]
pub struct LsArgs {
    /// Only display network IDs
    #[arg(short, long)]
    pub quiet: bool,
    /// Do not truncate the output
    #[arg(long = "no-trunc")]
    pub no_trunc: bool,
    /// Filter output based on conditions provided (name, id, label, driver)
    #[arg(short, long, value_name = "filter")]
    pub filter: Vec<String>,
    /// Format output: table or json
    #[arg(long, default_value = "table")]
    pub format: String,
}

#[derive(Debug, Args)]
pub struct RmArgs {
    /// Do not error if the network does not exist
    #[arg(short, long)]
    pub force: bool,
    #[arg(required = true, value_name = "NETWORK")]
    pub networks: Vec<String>,
}

#[derive(Debug, Args)]
pub struct PruneArgs {
    /// Do not prompt for confirmation
    #[arg(short, long)]
    pub force: bool,
    /// Provide filter values (label=KEY[=VALUE])
    #[arg(long, value_name = "filter")]
    pub filter: Vec<String>,
}

#[derive(Debug, Args)]
pub struct ConnectArgs {
    /// Add network-scoped alias for the container
    #[arg(long)]
    pub alias: Vec<String>,
    /// IPv4 address
    #[arg(long)]
    pub ip: Option<String>,
    pub network: String,
    pub container: String,
}

#[derive(Debug, Args)]
pub struct DisconnectArgs {
    /// Force the container to disconnect from a network
    #[arg(short, long)]
    pub force: bool,
    pub network: String,
    pub container: String,
}

struct Ctx {
    root: Root,
    store: NetworkStore,
}

pub fn run(settings: &Settings, args: &NetworkArgs) -> anyhow::Result<()> {
    let root = Root::open(&settings.root).with_context(|| {
        format!(
            "failed to open berth's state directory {}",
            settings.root.display()
        )
    })?;
    let store = net::store(root.path()).map_err(anyhow::Error::msg)?;
    let ctx = Ctx { root, store };
    match &args.command {
        NetworkCommand::Create(a) => create(&ctx, a),
        NetworkCommand::Inspect(a) => inspect(&ctx, a),
        NetworkCommand::Ls(a) => ls(&ctx, a),
        NetworkCommand::Rm(a) => rm(&ctx, a),
        NetworkCommand::Prune(a) => prune(&ctx, a),
        NetworkCommand::Connect(a) => connect(&ctx, a),
        NetworkCommand::Disconnect(a) => disconnect(&ctx, a),
    }
}

fn key_values(items: &[String]) -> BTreeMap<String, String> {
    items
        .iter()
        .map(|kv| match kv.split_once('=') {
            Some((k, v)) => (k.to_string(), v.to_string()),
            None => (kv.clone(), String::new()),
        })
        .collect()
}

/// Creates a network (the CLI's and compose's way): subnet from the request or the pools of
/// `daemon.json`, avoiding host routes; the firewall follows.
pub fn create_network(
    root: &Root,
    store: &NetworkStore,
    req: &CreateRequest,
) -> anyhow::Result<Network> {
    let network = create_network_records(root, store, req)?;
    if let Err(e) = net::sync_firewall(root.path(), store) {
        let _ = store.remove(&network.name);
        let _ = net::sync_firewall(root.path(), store);
        bail!("network {}: firewall: {e}", network.name);
    }
    Ok(network)
}

/// Makes a network (its subnet, records and bridge) without rewriting the firewall: the
/// caller does, before any container on it runs (`up` beside the containers' creation).
pub fn create_network_records(
    root: &Root,
    store: &NetworkStore,
    req: &CreateRequest,
) -> anyhow::Result<Network> {
    let config = net::DaemonConfig::load(root.path()).map_err(anyhow::Error::msg)?;
    let pools = config.pools().map_err(anyhow::Error::msg)?;
    let routes = if req.ipam.is_some() {
        Vec::new()
    } else {
        ipam::host_routes()?
    };
    Ok(store.create(
        req,
        &pools,
        &routes,
        berth_engine::container::shim::now_rfc3339(),
    )?)
}

/// Removes a network and rewrites the firewall.
pub fn remove_network(root: &Root, store: &NetworkStore, name: &str) -> anyhow::Result<()> {
    let result = store.remove(name);
    let fw = net::sync_firewall(root.path(), store);
    result?;
    fw.map_err(|e| anyhow::anyhow!("network {name}: firewall: {e}"))
}

fn create(ctx: &Ctx, a: &CreateArgs) -> anyhow::Result<()> {
    if a.ipv6 {
        bail!("--ipv6: IPv6 is not supported by berth yet (its networks are IPv4 only)");
    }
    let ipam = match &a.subnet {
        Some(subnet) => Some(SubnetConfig::from_compose(
            subnet,
            a.ip_range.as_deref().unwrap_or(""),
            a.gateway.as_deref().unwrap_or(""),
        )?),
        None if a.ip_range.is_some() || a.gateway.is_some() => {
            bail!("--ip-range and --gateway need a --subnet")
        }
        None => None,
    };
    let mut aux_addresses = BTreeMap::new();
    for entry in &a.aux_addresses {
        let (name, ip) = entry
            .split_once('=')
            .and_then(|(n, ip)| Some((n, ip.parse::<std::net::Ipv4Addr>().ok()?)))
            .with_context(|| format!("--aux-address {entry:?}: expected NAME=IPv4"))?;
        aux_addresses.insert(name.to_string(), ip);
    }
    // Checked against the subnet when the network is made.
    if ipam.is_none() && !aux_addresses.is_empty() {
        bail!("--aux-address needs a --subnet");
    }
    let req = CreateRequest {
        name: a.name.clone(),
        driver: a.driver.clone(),
        ipam,
        aux_addresses,
        internal: a.internal,
        labels: key_values(&a.labels),
        options: key_values(&a.opts),
    };
    let network = create_network(&ctx.root, &ctx.store, &req)?;
    println!("{}", network.id);
    Ok(())
}

fn find(ctx: &Ctx, key: &str) -> anyhow::Result<Network> {
    if let Some(n) = ctx.store.get(key)? {
        return Ok(n);
    }
    let all = ctx.store.list()?;
    let by_id: Vec<&Network> = all
        .iter()
        .filter(|n| key.len() >= 2 && n.id.starts_with(key))
        .collect();
    match by_id.as_slice() {
        [one] => Ok((*one).clone()),
        [] => bail!("network {key} not found"),
        _ => bail!("network {key} is ambiguous ({} matches)", by_id.len()),
    }
}

fn inspect_json(ctx: &Ctx, n: &Network) -> anyhow::Result<serde_json::Value> {
    let mut containers = serde_json::Map::new();
    for ep in ctx.store.endpoints(&n.name)? {
        containers.insert(
            ep.container_id.clone(),
            json!({
                "Name": ep.container_name,
                "EndpointID": ep.host_veth,
                "MacAddress": ep.mac,
                "IPv4Address": format!("{}/{}", ep.ip, ep.prefix),
                "IPv6Address": "",
            }),
        );
    }
    let mut cfg = json!({
        "Subnet": n.ipam.subnet.to_string(),
        "Gateway": n.ipam.gateway.to_string(),
    });
    if let Some(r) = n.ipam.ip_range {
        cfg["IPRange"] = json!(r.to_string());
    }
    if !n.aux_addresses.is_empty() {
        let aux: BTreeMap<&str, String> = n
            .aux_addresses
            .iter()
            .map(|(k, ip)| (k.as_str(), ip.to_string()))
            .collect();
        cfg["AuxiliaryAddresses"] = json!(aux);
    }
    let mut options = n.options.clone();
    options
        .entry(berth_net::network::OPT_BRIDGE_NAME.to_string())
        .or_insert_with(|| n.bridge.clone());
    Ok(json!({
        "Name": n.name,
        "Id": n.id,
        "Created": n.created,
        "Scope": "local",
        "Driver": n.driver,
        "EnableIPv6": n.enable_ipv6,
        "IPAM": { "Driver": "default", "Options": {}, "Config": [cfg] },
        "Internal": n.internal,
        "Attachable": n.attachable,
        "Ingress": false,
        "ConfigFrom": { "Network": "" },
        "ConfigOnly": false,
        "Containers": containers,
        "Options": options,
        "Labels": n.labels,
    }))
}

fn inspect(ctx: &Ctx, a: &InspectArgs) -> anyhow::Result<()> {
    let mut out = Vec::new();
    let mut missing = Vec::new();
    for key in &a.networks {
        match find(ctx, key) {
            Ok(n) => out.push(inspect_json(ctx, &n)?),
            Err(e) => missing.push(e.to_string()),
        }
    }
    println!("{}", serde_json::to_string_pretty(&out)?);
    if !missing.is_empty() {
        bail!("{}", missing.join("\n"));
    }
    Ok(())
}

fn matches(n: &Network, filters: &[(String, String)]) -> bool {
    filters.iter().all(|(k, v)| match k.as_str() {
        "name" => n.name.contains(v.as_str()),
        "id" => n.id.starts_with(v.as_str()),
        "driver" => n.driver == *v,
        "label" => match v.split_once('=') {
            Some((lk, lv)) => n.labels.get(lk).is_some_and(|x| x == lv),
            None => n.labels.contains_key(v.as_str()),
        },
        "type" => v == "custom",
        _ => false,
    })
}

fn parse_filters(raw: &[String]) -> anyhow::Result<Vec<(String, String)>> {
    raw.iter()
        .map(|f| {
            let (k, v) = f
                .split_once('=')
                .with_context(|| format!("bad format of filter (expected name=value): {f}"))?;
            if !matches!(k, "name" | "id" | "driver" | "label" | "type" | "until") {
                bail!("invalid filter '{k}'");
            }
            Ok((k.to_string(), v.to_string()))
        })
        .collect()
}

fn ls(ctx: &Ctx, a: &LsArgs) -> anyhow::Result<()> {
    let filters = parse_filters(&a.filter)?;
    let nets: Vec<Network> = ctx
        .store
        .list()?
        .into_iter()
        .filter(|n| matches(n, &filters))
        .collect();
    let mut out = std::io::stdout().lock();
    let id = |n: &Network| {
        if a.no_trunc {
            n.id.clone()
        } else {
            n.id[..12].to_string()
        }
    };
    if a.quiet {
        for n in &nets {
            writeln!(out, "{}", id(n))?;
        }
        return Ok(());
    }
    match a.format.as_str() {
        "json" => {
            for n in &nets {
                let labels = n
                    .labels
                    .iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect::<Vec<_>>()
                    .join(",");
                writeln!(
                    out,
                    "{}",
                    json!({
                        "CreatedAt": n.created,
                        "Driver": n.driver,
                        "ID": id(n),
                        "IPv6": n.enable_ipv6.to_string(),
                        "Internal": n.internal.to_string(),
                        "Labels": labels,
                        "Name": n.name,
                        "Scope": "local",
                    })
                )?;
            }
        }
        "table" => {
            let mut rows = vec![vec![
                "NETWORK ID".to_string(),
                "NAME".to_string(),
                "DRIVER".to_string(),
                "SCOPE".to_string(),
            ]];
            for n in &nets {
                rows.push(vec![
                    id(n),
                    n.name.clone(),
                    n.driver.clone(),
                    "local".into(),
                ]);
            }
            write!(out, "{}", super::tabwrite(&rows, 10, 3))?;
        }
        other => bail!("unknown format {other:?} (table, json)"),
    }
    Ok(())
}

fn rm(ctx: &Ctx, a: &RmArgs) -> anyhow::Result<()> {
    let mut failed = Vec::new();
    for key in &a.networks {
        let result = find(ctx, key).and_then(|n| remove_network(&ctx.root, &ctx.store, &n.name));
        match result {
            Ok(()) => println!("{key}"),
            Err(e) if a.force && e.to_string().ends_with("not found") => {}
            Err(e) => failed.push(format!("{e:#}")),
        }
    }
    if !failed.is_empty() {
        bail!("{}", failed.join("\n"));
    }
    Ok(())
}

fn prune(ctx: &Ctx, a: &PruneArgs) -> anyhow::Result<()> {
    let mut filters = Vec::new();
    for f in &a.filter {
        match f.split_once('=') {
            Some(("label", v)) => filters.push(("label".to_string(), v.to_string())),
            _ => bail!("invalid filter {f:?} (label=KEY[=VALUE])"),
        }
    }
    if !a.force {
        eprint!(
            "WARNING! This will remove all custom networks not used by at least one container.\nAre you sure you want to continue? [y/N] "
        );
        let mut answer = String::new();
        std::io::stdin().read_line(&mut answer)?;
        if !matches!(answer.trim(), "y" | "Y" | "yes") {
            return Ok(());
        }
    }
    let mut deleted = Vec::new();
    for n in ctx.store.list()? {
        if !matches(&n, &filters) || !ctx.store.endpoints(&n.name)?.is_empty() {
            continue;
        }
        // Containers that are attached but stopped still count as users.
        if !users(ctx, &n.name)?.is_empty() {
            continue;
        }
        remove_network(&ctx.root, &ctx.store, &n.name)?;
        deleted.push(n.name);
    }
    if !deleted.is_empty() {
        println!("Deleted Networks:");
        for n in deleted {
            println!("{n}");
        }
    }
    Ok(())
}

/// The containers (any state) configured on network `name`.
fn users(ctx: &Ctx, name: &str) -> anyhow::Result<Vec<String>> {
    let cs = ContainerStore::open(&ctx.root)?;
    let mut out = Vec::new();
    for id in cs.ids()? {
        if let Ok(c) = cs.dir_of(&id).config()
            && c.networks.iter().any(|e| e.network == name)
        {
            out.push(c.name);
        }
    }
    Ok(out)
}

fn connect(ctx: &Ctx, a: &ConnectArgs) -> anyhow::Result<()> {
    let net = find(ctx, &a.network)?;
    let cs = ContainerStore::open(&ctx.root)?;
    let dir = cs.resolve(&a.container)?;
    let config = dir.config()?;
    if config.networks.iter().any(|e| e.network == net.name) {
        bail!(
            "endpoint with name {} already exists in network {}",
            config.name,
            net.name
        );
    }
    if config.network != berth_engine::container::NetworkConfig::Private {
        bail!(
            "container {} does not have a network namespace of its own to connect",
            config.name
        );
    }
    let endpoint = EndpointConfig {
        network: net.name.clone(),
        aliases: a.alias.clone(),
        ipv4_address: a.ip.clone(),
        mac_address: None,
        interface_name: None,
        links: Vec::new(),
    };
    let state = berth_engine::container::shim::observed_state(&dir)?;
    if let (Status::Running | Status::Paused, Some(pid)) = (state.status, state.pid) {
        let index = config.networks.len();
        let req = EndpointRequest {
            network: net.name.clone(),
            aliases: a.alias.clone(),
            ipv4_address: match &a.ip {
                Some(ip) => Some(ip.parse().with_context(|| format!("--ip {ip}"))?),
                None => None,
            },
            mac: None,
            ifname: None,
            upstreams: net::dns_upstreams(&config).map_err(anyhow::Error::msg)?,
            links: Vec::new(),
        };
        let names = net::dns_names(&config);
        let ep = ctx
            .store
            .connect(&config.id, &config.name, &names, &req, index)?;
        let ns = std::path::PathBuf::from(format!("/proc/{pid}/ns/net"));
        if let Err(e) = ctx.store.plug(std::slice::from_ref(&ep), &ns) {
            let _ = ctx.store.disconnect(&config.id, &net.name);
            return Err(e.into());
        }
        net::dns_publish(ctx.root.path()).map_err(anyhow::Error::msg)?;
    }
    cs.update_config(&dir, |c| c.networks.push(endpoint))?;
    Ok(())
}

fn disconnect(ctx: &Ctx, a: &DisconnectArgs) -> anyhow::Result<()> {
    let net = find(ctx, &a.network)?;
    let cs = ContainerStore::open(&ctx.root)?;
    let dir = cs.resolve(&a.container)?;
    let config = dir.config()?;
    if !config.networks.iter().any(|e| e.network == net.name) && !a.force {
        bail!(
            "container {} is not connected to network {}",
            config.name,
            net.name
        );
    }
    let released = ctx.store.disconnect(&config.id, &net.name)?;
    cs.update_config(&dir, |c| c.networks.retain(|e| e.network != net.name))?;
    if let Some(ep) = released {
        if !ep.ports.is_empty() {
            net::sync_firewall(ctx.root.path(), &ctx.store).map_err(anyhow::Error::msg)?;
        }
        net::dns_forget(ctx.root.path());
    }
    Ok(())
}
