//! What networking costs per container, without a container: the endpoint half of berth's
//! `--network NAME` (what the shim's `prepare`/`attach`/`release` hooks do), timed alone.
//! Run as root by `bench/network.sh`, or by hand:
//! `cargo run --release -p berth-net --example endpoint_bench -- [N]` (N defaults to 100).
//!
//! Everything happens inside a throw-away network namespace H (a named namespace file in a
//! private temp dir, entered with `netns::run_in`): the store (in the same temp dir), the
//! network's bridge, every netlink call. The host's namespace is never written to. One
//! network is created from the pool `10.201.0.0/16` (host routes: none). Then:
//!
//! 1. N times (after 3 untimed warm-ups): a fresh named namespace C (a container's
//!    stands-in, untimed), **setup** = `reserve` + `plug` (address, record, veth into C,
//!    configured there: name, MAC, address, up, default route), **teardown** = `release` +
//!    `remove_named(C)`. Median, p90 and min of each and of their four parts, in ms. The
//!    first endpoint is checked (interface up, address, default route) outside the timing.
//!    Then N teardowns the other way round (namespace first, as when a container exits
//!    before the shim releases it): `release` finds the veth going or gone.
//! 2. 50 endpoints joining the network back to back (50 namespaces made beforehand): total.
//! 3. The same 50 from 4 threads at once: the store's `flock` serialises the records, the
//!    veths and their configuration run in parallel.
//!
//!    2 and 3 alternate, 3 rounds each (the machine is shared): each round's total, the
//!    median, and how long the 50 took to leave again (sequentially).
//!
//! Teardown of a namespace here is the unmount of its file: the kernel frees the namespace
//! (and the veth peer in it) asynchronously, after `remove_named` returns.
//!
//! At the end the network is removed and H must hold only `lo`; H, every C and the temp dir
//! are removed even on failure.

use std::error::Error;
use std::fs;
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use berth_net::ipam::{IpNet, Pool};
use berth_net::link::Netlink;
use berth_net::netns;
use berth_net::network::{CreateRequest, EndpointRequest, NetworkStore};

type Res<T> = Result<T, Box<dyn Error + Send + Sync>>;

const NETWORK: &str = "benchnet";
const POOL: &str = "10.201.0.0/16";
const WARMUP: usize = 3;
const JOIN: usize = 50;
const THREADS: usize = 4;
const ROUNDS: usize = 3;

/// The temp dir with H's and the C namespaces' files; on drop every namespace file in it
/// is unmounted and removed (C first, H last), then the dir goes.
struct Scratch {
    dir: tempfile::TempDir,
}

impl Scratch {
    fn new() -> Res<Scratch> {
        let dir = tempfile::Builder::new()
            .prefix("berth-endpoint-bench.")
            .tempdir()?;
        fs::create_dir(dir.path().join("ns"))?;
        Ok(Scratch { dir })
    }

    fn host(&self) -> PathBuf {
        self.dir.path().join("h")
    }

    fn container(&self, tag: &str, i: usize) -> PathBuf {
        self.dir.path().join("ns").join(format!("{tag}{i}"))
    }

    fn store_dir(&self) -> PathBuf {
        self.dir.path().join("networks")
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if let Ok(entries) = fs::read_dir(self.dir.path().join("ns")) {
            for e in entries.flatten() {
                if let Err(err) = netns::remove_named(&e.path()) {
                    eprintln!("cleanup: {err}");
                }
            }
        }
        if let Err(err) = netns::remove_named(&self.host()) {
            eprintln!("cleanup: {err}");
        }
    }
}

fn main() {
    let n = match std::env::args().nth(1).map(|a| a.parse::<usize>()) {
        None => 100,
        Some(Ok(n)) if n > 0 => n,
        Some(_) => {
            eprintln!("usage: endpoint_bench [N > 0]");
            std::process::exit(2);
        }
    };
    if let Err(e) = run(n) {
        eprintln!("endpoint_bench: {e}");
        std::process::exit(1);
    }
}

fn run(n: usize) -> Res<()> {
    let scratch = Scratch::new()?;
    netns::create_named(&scratch.host())?;
    netns::run_in(&scratch.host(), || bench(&scratch, n))?
}

/// A container id (64 hex digits) and name for endpoint `i` of a phase.
fn container(tag: &str, i: usize) -> (String, String) {
    let tag_hex: String = tag.bytes().map(|b| format!("{b:02x}")).collect();
    (
        format!("{tag_hex:0<48}{i:016x}"),
        format!("bench-{tag}-{i}"),
    )
}

/// `reserve` + `plug`: the endpoint of container `tag`/`i` in the namespace `ns`. Returns
/// how long each of the two took.
fn join(store: &NetworkStore, tag: &str, i: usize, ns: &Path) -> Res<[Duration; 2]> {
    let (id, name) = container(tag, i);
    let req = EndpointRequest {
        network: NETWORK.into(),
        ..Default::default()
    };
    let t = Instant::now();
    let eps = store.reserve(&id, &name, std::slice::from_ref(&name), &[req], &[])?;
    let reserved = t.elapsed();
    store.plug(&eps, ns)?;
    Ok([reserved, t.elapsed() - reserved])
}

/// `release` + `remove_named`; how long each took.
fn leave(store: &NetworkStore, tag: &str, i: usize, ns: &Path) -> Res<[Duration; 2]> {
    let (id, _) = container(tag, i);
    let t = Instant::now();
    store.release(&id)?;
    let released = t.elapsed();
    netns::remove_named(ns)?;
    Ok([released, t.elapsed() - released])
}

/// Runs on H's dedicated thread.
fn bench(scratch: &Scratch, n: usize) -> Res<()> {
    Netlink::open()?.set_up("lo")?;
    let store = NetworkStore::open(scratch.store_dir())?;
    let pool = Pool::new(POOL.parse::<IpNet>()?, 16)?;
    let req = CreateRequest {
        name: NETWORK.into(),
        ..Default::default()
    };
    let net = store.create(&req, &[pool], &[], "2026-11-23T00:00:00Z".into())?;
    println!(
        "network {NETWORK}: {} on {}, store {}",
        net.ipam.subnet,
        net.bridge,
        store.dir().display()
    );

    // 1. One container at a time.
    // Per run: setup, teardown, and their parts: reserve, plug, release, rm netns.
    let mut t: [Vec<Duration>; 6] = Default::default();
    for i in 0..WARMUP + n {
        let ns = scratch.container("c", i);
        netns::create_named(&ns)?;
        let [reserve, plug] = join(&store, "c", i, &ns)?;
        if i == 0 {
            check_endpoint(&store, &container("c", 0).0, &ns)?;
        }
        let [release, rm] = leave(&store, "c", i, &ns)?;
        if i >= WARMUP {
            let parts = [reserve + plug, release + rm, reserve, plug, release, rm];
            for (v, d) in t.iter_mut().zip(parts) {
                v.push(d);
            }
        }
    }
    println!("per container, {n} runs after {WARMUP} warm-ups:");
    let names = [
        "setup (reserve + plug)",
        "teardown (release + rm netns)",
        "  of setup: reserve",
        "  of setup: plug",
        "  of teardown: release",
        "  of teardown: rm netns",
    ];
    for (name, v) in names.iter().zip(&mut t) {
        report(name, v);
    }

    // 1b. Teardown the other way round, as after a container's exit: its namespace goes
    // first (the kernel destroys it, and the veth with it, asynchronously), then `release`.
    let mut exit_first = Vec::with_capacity(n);
    for i in 0..n {
        let ns = scratch.container("x", i);
        netns::create_named(&ns)?;
        join(&store, "x", i, &ns)?;
        let t = Instant::now();
        netns::remove_named(&ns)?;
        store.release(&container("x", i).0)?;
        exit_first.push(t.elapsed());
    }
    report("teardown, netns removed first", &mut exit_first);

    // 2. and 3.: 50 joining back to back, then from 4 threads; ROUNDS rounds each.
    let mut seq = Vec::new();
    let mut par = Vec::new();
    for r in 0..ROUNDS {
        seq.push(join_many(scratch, &store, &format!("s{r}-"), 1)?);
        par.push(join_many(scratch, &store, &format!("p{r}-"), THREADS)?);
    }
    for (label, v) in [("one after another", &seq), ("from 4 threads", &par)] {
        let rounds: Vec<String> = v.iter().map(|(j, _)| format!("{:.0}", ms(*j))).collect();
        let (join_ms, leave_ms) = (
            median_ms(v.iter().map(|x| x.0)),
            median_ms(v.iter().map(|x| x.1)),
        );
        println!(
            "{JOIN} joining {label:<17}: median {join_ms:6.1} ms ({:.2} ms each; rounds {} ms); \
             leaving {leave_ms:.0} ms",
            join_ms / JOIN as f64,
            rounds.join(", "),
        );
    }
    let ratio = median_ms(seq.iter().map(|x| x.0)) / median_ms(par.iter().map(|x| x.0));
    println!("sequential/parallel: {ratio:.2}");
    store.remove(NETWORK)?;
    let left: Vec<String> = Netlink::open()?
        .list_links()?
        .into_iter()
        .map(|l| l.name)
        .filter(|n| n != "lo")
        .collect();
    if !left.is_empty() {
        return Err(format!("links left in the bench namespace: {left:?}").into());
    }
    Ok(())
}

/// `JOIN` endpoints joining the network from `threads` threads at once (each entering H
/// itself; the namespaces are made beforehand), checked, then leaving (sequentially).
/// Returns the wall time of the joins and of the leaves.
fn join_many(
    scratch: &Scratch,
    store: &NetworkStore,
    tag: &str,
    threads: usize,
) -> Res<(Duration, Duration)> {
    let ns: Vec<PathBuf> = (0..JOIN).map(|i| scratch.container(tag, i)).collect();
    for p in &ns {
        netns::create_named(p)?;
    }
    let host = scratch.host();
    let t = Instant::now();
    if threads == 1 {
        for (i, p) in ns.iter().enumerate() {
            join(store, tag, i, p)?;
        }
    } else {
        std::thread::scope(|s| -> Res<()> {
            let workers: Vec<_> = (0..threads)
                .map(|w| {
                    let (ns, host) = (&ns, &host);
                    s.spawn(move || -> Res<()> {
                        netns::run_in(host, || -> Res<()> {
                            for i in (w..JOIN).step_by(threads) {
                                join(store, tag, i, &ns[i])?;
                            }
                            Ok(())
                        })?
                    })
                })
                .collect();
            for w in workers {
                w.join().map_err(|_| "a worker panicked")??;
            }
            Ok(())
        })?;
    }
    let joined = t.elapsed();
    check_attached(store, JOIN)?;
    let t = Instant::now();
    for (i, p) in ns.iter().enumerate() {
        leave(store, tag, i, p)?;
    }
    Ok((joined, t.elapsed()))
}

/// The container side of the first endpoint: `eth0` up with its address, the default route
/// through the gateway.
fn check_endpoint(store: &NetworkStore, id: &str, ns: &Path) -> Res<()> {
    let ep = store
        .container_endpoints(id)?
        .pop()
        .ok_or("no endpoint recorded")?;
    let (up, addrs, gws) = netns::run_in(ns, || -> Res<_> {
        let mut nl = Netlink::open()?;
        let up = nl.link("eth0")?.is_some_and(|l| l.up);
        let addrs = nl.addresses("eth0")?;
        let gws: Vec<Option<IpAddr>> = nl
            .routes()?
            .into_iter()
            .filter(|r| r.destination.is_none())
            .map(|r| r.gateway)
            .collect();
        Ok((up, addrs, gws))
    })??;
    let want = (IpAddr::V4(ep.ip), ep.prefix);
    let gw = ep.gateway.map(IpAddr::V4);
    if !up || !addrs.contains(&want) || gws != [gw] {
        return Err(format!(
            "endpoint not configured: eth0 up={up}, addresses {addrs:?} (want {want:?}), \
             default routes {gws:?} (want {gw:?})"
        )
        .into());
    }
    Ok(())
}

/// `count` endpoints recorded and as many veths on the bridge, up.
fn check_attached(store: &NetworkStore, count: usize) -> Res<()> {
    let eps = store.endpoints(NETWORK)?.len();
    let net = store.require(NETWORK)?;
    let mut nl = Netlink::open()?;
    let bridge = nl.link(&net.bridge)?.ok_or("the bridge is gone")?.index;
    let ports = nl
        .list_links()?
        .into_iter()
        .filter(|l| l.master == Some(bridge) && l.up)
        .count();
    let ips: std::collections::BTreeSet<Ipv4Addr> =
        store.endpoints(NETWORK)?.iter().map(|e| e.ip).collect();
    if eps != count || ports != count || ips.len() != count {
        return Err(format!(
            "{count} endpoints expected: {eps} records, {} distinct addresses, {ports} veths up on the bridge",
            ips.len()
        )
        .into());
    }
    Ok(())
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn median_ms(v: impl Iterator<Item = Duration>) -> f64 {
    let mut v: Vec<Duration> = v.collect();
    v.sort();
    let n = v.len();
    if n % 2 == 1 {
        ms(v[n / 2])
    } else {
        (ms(v[n / 2 - 1]) + ms(v[n / 2])) / 2.0
    }
}

fn report(what: &str, v: &mut [Duration]) {
    v.sort();
    let n = v.len();
    let median = median_ms(v.iter().copied());
    let p90 = ms(v[(n * 9).div_ceil(10) - 1]);
    println!(
        "  {what:<30} median {median:6.2} ms   p90 {p90:6.2} ms   min {:6.2} ms",
        ms(v[0])
    );
}
