//! The DNS daemon of a state root (`berth __dns ROOT`): one process serving every berth
//! network of the root, on each network's gateway address, port 53.
//!
//! Why its own process: DNS must outlive any CLI call, serve single containers
//! (`container run --network`) and compose projects alike, and networks can be shared
//! between projects (`external: true`), so neither a shim nor a project's supervisor is the
//! right owner. It runs in the host's network namespace, so upstreams on the host's loopback
//! (systemd-resolved's 127.0.0.53) work.
//!
//! Life cycle: started on demand by the first container attached to a network
//! ([`crate::net::dns_reload`]), told to reload over `run/dns.sock` after each attach and
//! release (a reload swaps the records: listeners of networks that stay are never closed),
//! and told to exit by the release that leaves no endpoint on any network. It holds
//! `run/dns.lock` while it lives. Clients talk to it only under `run/dns.spawn.lock` (reload,
//! start, exit), so an exit never races with a container being attached.

use std::collections::BTreeMap;
use std::io::Write;
use std::net::SocketAddrV4;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};

use berth_engine::fsutil::Lock;
use berth_net::dns::{Config, Server, Zone};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

use crate::net::{DNS_VERB, DaemonConfig, store};

/// `berth __dns --launch ROOT` starts the daemon and exits once it serves (so the daemon is
/// nobody's child); `berth __dns ROOT` is the daemon.
pub fn main(args: &[String]) -> i32 {
    match args {
        [flag, root] if flag == "--launch" => launch(Path::new(root)),
        [root] => match serve(Path::new(root)) {
            Ok(()) => 0,
            Err(e) => {
                eprintln!("berth dns: {e}");
                1
            }
        },
        _ => {
            eprintln!("usage: berth {DNS_VERB} [--launch] ROOT");
            2
        }
    }
}

fn launch(root: &Path) -> i32 {
    let exe = match std::env::current_exe() {
        Ok(e) => e,
        Err(e) => {
            println!("error: find berth's binary: {e}");
            return 1;
        }
    };
    let child = Command::new(exe)
        .arg(DNS_VERB)
        .arg(root)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .process_group(0)
        .spawn();
    let mut child = match child {
        Ok(c) => c,
        Err(e) => {
            println!("error: start: {e}");
            return 1;
        }
    };
    let mut line = String::new();
    if let Some(out) = child.stdout.take() {
        let _ = std::io::BufRead::read_line(&mut std::io::BufReader::new(out), &mut line);
    }
    // The daemon is not waited for: it outlives this launcher and is re-parented.
    print!(
        "{}",
        if line.is_empty() {
            "error: no answer\n"
        } else {
            &line
        }
    );
    let _ = std::io::stdout().flush();
    0
}

fn serve(root: &Path) -> Result<(), String> {
    let run = root.join("run");
    std::fs::create_dir_all(&run).map_err(|e| format!("create {}: {e}", run.display()))?;
    // A predecessor that decided to exit holds it until it has.
    let _alive = Lock::exclusive(&run.join("dns.lock")).map_err(|e| e.to_string())?;
    let socket = run.join("dns.sock");
    let _ = std::fs::remove_file(&socket);
    let listener = std::os::unix::net::UnixListener::bind(&socket)
        .map_err(|e| format!("bind {}: {e}", socket.display()))?;
    listener.set_nonblocking(true).map_err(|e| e.to_string())?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("runtime: {e}"))?;
    rt.block_on(async move {
        let server = Server::new();
        let config = load(root);
        apply(&server, config).await;
        println!("ready");
        let _ = std::io::stdout().flush();
        // Nobody reads fd 1 any more.
        if let Ok(null) = std::fs::OpenOptions::new().write(true).open("/dev/null") {
            use std::os::fd::AsRawFd;
            let _ = nix::unistd::dup2(null.as_raw_fd(), 1);
        }
        let listener = tokio::net::UnixListener::from_std(listener).map_err(|e| e.to_string())?;
        loop {
            let (stream, _) = match listener.accept().await {
                Ok(s) => s,
                Err(e) => {
                    eprintln!("berth dns: accept: {e}");
                    continue;
                }
            };
            let (read, mut write) = stream.into_split();
            let mut line = String::new();
            let mut reader = BufReader::new(read);
            if reader.read_line(&mut line).await.is_err() {
                continue;
            }
            match line.trim() {
                "reload" => {
                    apply(&server, load(root)).await;
                    let _ = write.write_all(b"ok\n").await;
                }
                "exit" => {
                    // The client holds the spawn lock and found no endpoint left.
                    let _ = std::fs::remove_file(&socket);
                    let _ = write.write_all(b"ok\n").await;
                    return Ok(());
                }
                other => {
                    let _ = write
                        .write_all(format!("error unknown request {other:?}\n").as_bytes())
                        .await;
                }
            }
        }
    })
}

async fn apply(server: &Server, config: Config) {
    if let Err(errors) = server.apply(config).await {
        for e in errors {
            eprintln!("berth dns: {e}");
        }
    }
}

/// Zones from the records: each network with at least one endpoint, its names and
/// addresses; upstreams from `daemon.json` or the host.
fn load(root: &Path) -> Config {
    let mut zones = Vec::new();
    let upstreams = match DaemonConfig::load(root) {
        Ok(c) => c.upstreams(),
        Err(e) => {
            eprintln!("berth dns: {e}");
            Vec::new()
        }
    };
    match store(root).and_then(|s| {
        let mut out = Vec::new();
        for net in s.list().map_err(|e| e.to_string())? {
            let eps = s.endpoints(&net.name).map_err(|e| e.to_string())?;
            out.push((net, eps));
        }
        Ok(out)
    }) {
        Ok(nets) => {
            type Records = BTreeMap<String, Vec<std::net::Ipv4Addr>>;
            let records_of = |eps: &[berth_net::network::Endpoint]| {
                let mut records = Records::new();
                for ep in eps {
                    for name in &ep.names {
                        let ips = records.entry(name.clone()).or_default();
                        if !ips.contains(&ep.ip) {
                            ips.push(ep.ip);
                        }
                    }
                }
                records
            };
            let per_network: BTreeMap<&str, Records> = nets
                .iter()
                .map(|(net, eps)| (net.name.as_str(), records_of(eps)))
                .collect();
            // Each container's networks: it asks one resolver and sees all of them.
            let mut networks_of: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
            for (net, eps) in &nets {
                for ep in eps {
                    networks_of
                        .entry(ep.container_id.as_str())
                        .or_default()
                        .push(net.name.as_str());
                }
            }
            for (net, eps) in &nets {
                if eps.is_empty() {
                    continue;
                }
                let mut client_records = BTreeMap::new();
                for ep in eps {
                    let others = networks_of
                        .get(ep.container_id.as_str())
                        .map(|v| v.as_slice())
                        .unwrap_or_default();
                    let mut extra = Records::new();
                    for other in others.iter().filter(|o| **o != net.name) {
                        for (name, ips) in per_network.get(other).into_iter().flatten() {
                            let list = extra.entry(name.clone()).or_default();
                            for ip in ips {
                                if !list.contains(ip) {
                                    list.push(*ip);
                                }
                            }
                        }
                    }
                    if !extra.is_empty() {
                        client_records.insert(ep.ip, extra);
                    }
                }
                zones.push(Zone {
                    listen: SocketAddrV4::new(net.ipam.gateway, 53),
                    records: per_network
                        .get(net.name.as_str())
                        .cloned()
                        .unwrap_or_default(),
                    forward: !net.internal,
                    client_records,
                });
            }
        }
        Err(e) => eprintln!("berth dns: {e}"),
    }
    Config { zones, upstreams }
}
