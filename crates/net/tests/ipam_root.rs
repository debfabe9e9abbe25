//! IPAM against a real kernel route table: a bridge (this kernel has no dummy links) with a
//! 172.17.x address in a throw-away network namespace and a /32 on its
//! `lo` make `allocate_subnet` skip 172.17.0.0/16 and 172.18.0.0/16. Needs root.

use std::path::Path;
use std::process::Command;

use berth_net::ipam::{IpNet, allocate_subnet, default_pools, host_routes_in};

/// True when root; otherwise prints the skip (or panics under `CI=true`).
fn need_root() -> bool {
    if rustix::process::geteuid().is_root() {
        return true;
    }
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("CI=true and this test needs root");
    }
    eprintln!("skipped: needs root");
    false
}

/// Runs `ip args…` in the calling thread's network namespace; panics on failure.
fn ip(args: &[&str]) -> String {
    let out = Command::new("ip").args(args).output().expect("run ip");
    assert!(
        out.status.success(),
        "ip {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn subnet_avoids_a_route_of_a_real_interface() {
    if !need_root() {
        return;
    }
    let name = format!("bti{:x}", std::process::id() & 0xff_ffff);
    let dev = name.clone();
    // A dedicated thread moves into a fresh network namespace, which goes away with it.
    let routes = std::thread::spawn(move || {
        nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET).expect("unshare netns");
        ip(&["link", "add", &dev, "type", "bridge"]);
        ip(&["addr", "add", "172.17.5.1/24", "dev", &dev]);
        ip(&["link", "set", &dev, "up"]);
        // An address on lo has no route in the main table: only fib_trie shows it.
        ip(&["addr", "add", "172.18.0.9/32", "dev", "lo"]);
        ip(&["link", "set", "lo", "up"]);
        host_routes_in(Path::new("/proc/thread-self/net")).expect("read netns routes")
    })
    .join()
    .expect("netns thread");
    for inside in ["172.17.5.0/24", "172.18.0.9/32"] {
        let inside: IpNet = inside.parse().unwrap();
        assert!(routes.contains(&inside), "{routes:?}");
    }
    let subnet = allocate_subnet(&default_pools(), &[], &routes).unwrap();
    assert_eq!(subnet, "172.19.0.0/16".parse::<IpNet>().unwrap());
    // The host namespace was never touched: neither the test's link nor its addresses are
    // there. (Only what this test made is checked: other tests run beside it.)
    assert!(!ip(&["-o", "link", "show"]).contains(&name));
    let addrs = ip(&["-o", "addr", "show"]);
    assert!(
        !addrs.contains("172.17.5.1/24") && !addrs.contains("172.18.0.9/32"),
        "{addrs}"
    );
}
