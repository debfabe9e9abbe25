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
//! ([`crate::net::dns_publish`]). An attach asks it to `reload` and waits for the answer (its
//! container's first query must find the peers); requests queued together are answered by
//! one reload. A release only says `forget` and does not wait: the records are read once,
//! [`FORGET_DELAY`] after the first of a burst. A reload that finds no endpoint on any network
//! makes it exit, under `run/dns.spawn.lock` taken exclusively without waiting (attaches hold
//! it shared while they ask), so it never exits under an attach. It holds `run/dns.lock`
//! while it lives, so a successor waits until it is gone.

use std::collections::BTreeMap;
use std::io::Write;
use std::net::SocketAddrV4;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

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
        apply(&server, load(root).0).await;
        println!("ready");
        let _ = std::io::stdout().flush();
        // Nobody reads fd 1 any more.
        if let Ok(null) = std::fs::OpenOptions::new().write(true).open("/dev/null") {
            use std::os::fd::AsRawFd;
            let _ = nix::unistd::dup2(null.as_raw_fd(), 1);
        }
        let listener = tokio::net::UnixListener::from_std(listener).map_err(|e| e.to_string())?;
        // When a `forget` not yet applied is due.
        let mut due: Option<tokio::time::Instant> = None;
        loop {
            let accepted = match due {
                Some(at) => tokio::select! {
                    r = listener.accept() => Some(r),
                    () = tokio::time::sleep_until(at) => None,
                },
                None => Some(listener.accept().await),
            };
            let first = match accepted {
                Some(Ok((stream, _))) => stream,
                Some(Err(e)) => {
                    eprintln!("berth dns: accept: {e}");
                    continue;
                }
                None => {
                    due = None;
                    let (config, idle) = load(root);
                    if idle {
                        match exit_if_idle(root, &socket) {
                            Some(lock) => {
                                // Held until the process is gone: see `exit_if_idle`.
                                std::mem::forget(lock);
                                return Ok(());
                            }
                            // An attach is under way: look again later.
                            None => due = Some(tokio::time::Instant::now() + RETRY_EXIT),
                        }
                    }
                    apply(&server, config).await;
                    continue;
                }
            };
            // This request and every one already queued behind it: attaches that ask
            // together are answered by one reload.
            let mut batch = vec![first];
            while let Ok(Ok((stream, _))) =
                tokio::time::timeout(Duration::ZERO, listener.accept()).await
            {
                batch.push(stream);
            }
            let mut waiting = Vec::new();
            let mut reload = false;
            let mut exit = false;
            for stream in batch {
                let (read, write) = stream.into_split();
                let mut line = String::new();
                let mut reader = BufReader::new(read);
                // A client that connects and says nothing must not stall the others.
                match tokio::time::timeout(REQUEST_TIMEOUT, reader.read_line(&mut line)).await {
                    Ok(Ok(_)) => {}
                    _ => continue,
                }
                match line.trim() {
                    "reload" => {
                        reload = true;
                        waiting.push(write);
                    }
                    "forget" => {
                        due.get_or_insert_with(|| tokio::time::Instant::now() + FORGET_DELAY);
                    }
                    // From a berth of before `forget`: it holds the spawn lock exclusively
                    // and found no endpoint left.
                    "exit" => {
                        exit = true;
                        waiting.push(write);
                    }
                    other => {
                        let mut write = write;
                        let _ = write
                            .write_all(format!("error unknown request {other:?}\n").as_bytes())
                            .await;
                    }
                }
            }
            if exit {
                let _ = std::fs::remove_file(&socket);
                for mut w in waiting {
                    let _ = w.write_all(b"ok\n").await;
                }
                return Ok(());
            }
            if reload {
                // Read after every request of the batch arrived: it covers them all, and
                // any `forget` before them.
                due = None;
                apply(&server, load(root).0).await;
                for mut w in waiting {
                    let _ = w.write_all(b"ok\n").await;
                }
            }
        }
    })
}

/// How long after a `forget` the records are read again: a `down` releases its containers
/// within milliseconds of each other, and they are read once for all of them.
const FORGET_DELAY: Duration = Duration::from_millis(20);
/// How long an idle daemon that could not exit (an attach held the spawn lock) waits before
/// it looks again.
const RETRY_EXIT: Duration = Duration::from_millis(100);
/// How long a client may take to send its request once connected.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(1);

/// With no endpoint left on any network, the daemon exits: under `run/dns.spawn.lock` taken
/// exclusively without waiting, so never while an attach (which holds it shared while it asks
/// for a reload) is under way, and with the records read again under it. The socket goes
/// first; the lock is returned to be held until the process has exited, so the attach that
/// waits for it finds no socket and starts a new daemon, which waits for `run/dns.lock`.
fn exit_if_idle(root: &Path, socket: &Path) -> Option<Lock> {
    let lock = Lock::try_exclusive(&root.join("run").join("dns.spawn.lock")).ok()??;
    if !load(root).1 {
        return None;
    }
    let _ = std::fs::remove_file(socket);
    Some(lock)
}

async fn apply(server: &Server, config: Config) {
    if let Err(errors) = server.apply(config).await {
        for e in errors {
            eprintln!("berth dns: {e}");
        }
    }
}

/// Zones from the records: each network with at least one endpoint, its names and
/// addresses; upstreams from `daemon.json` or the host. And whether the records were read
/// and hold no endpoint at all.
fn load(root: &Path) -> (Config, bool) {
    let mut idle = false;
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
            idle = nets.iter().all(|(_, eps)| eps.is_empty());
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
                // A container's own `dns` servers answer what this resolver does not.
                let client_upstreams = eps
                    .iter()
                    .filter(|ep| !ep.upstreams.is_empty())
                    .map(|ep| {
                        let ups = ep
                            .upstreams
                            .iter()
                            .map(|ip| std::net::SocketAddr::new(*ip, 53))
                            .collect();
                        (ep.ip, ups)
                    })
                    .collect();
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
                    // Its links (`external_links`): ALIAS, to it alone, is CONTAINER's
                    // addresses on the networks the two share.
                    for link in &ep.links {
                        let Some((target, alias)) = crate::net::parse_link(link) else {
                            continue;
                        };
                        let target = target.to_ascii_lowercase();
                        let mut ips: Vec<std::net::Ipv4Addr> = Vec::new();
                        for network in std::iter::once(&net.name.as_str()).chain(others.iter()) {
                            if let Some(found) =
                                per_network.get(network).and_then(|r| r.get(&target))
                            {
                                for ip in found {
                                    if !ips.contains(ip) {
                                        ips.push(*ip);
                                    }
                                }
                            }
                        }
                        if !ips.is_empty() {
                            extra.insert(alias.to_ascii_lowercase(), ips);
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
                    client_upstreams,
                });
            }
        }
        Err(e) => eprintln!("berth dns: {e}"),
    }
    (Config { zones, upstreams }, idle)
}
