//! Links over netlink, for real, as root. Everything happens inside throw-away network
//! namespaces the tests create (named namespace files in a private temp dir): the host's
//! namespace is only read, to check no link of ours ever shows up there.
//!
//! Not root: each test prints `skipped: needs root` and passes; with `CI=true` it panics.

use std::collections::BTreeSet;
use std::fs::{self, File};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use berth_net::link::{ContainerLink, LinkError, Netlink, configure_container_link};
use berth_net::netns::{self, run_in};

fn is_root() -> bool {
    if nix::unistd::geteuid().is_root() {
        return true;
    }
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("CI=true: this test needs root");
    }
    println!("skipped: needs root");
    false
}

/// A private directory holding named namespaces `a` and `b`; removed (namespaces first) on
/// drop, even when the test fails.
struct Namespaces {
    dir: PathBuf,
    a: PathBuf,
    b: PathBuf,
}

impl Namespaces {
    fn new(tag: &str) -> Namespaces {
        static N: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "berth-net-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        fs::create_dir(&dir).unwrap();
        let ns = Namespaces {
            a: dir.join("a"),
            b: dir.join("b"),
            dir,
        };
        netns::create_named(&ns.a).unwrap();
        netns::create_named(&ns.b).unwrap();
        ns
    }
}

impl Drop for Namespaces {
    fn drop(&mut self) {
        let _ = netns::remove_named(&self.a);
        let _ = netns::remove_named(&self.b);
        let _ = fs::remove_dir(&self.dir);
    }
}

fn link_names(nl: &mut Netlink) -> BTreeSet<String> {
    nl.list_links()
        .unwrap()
        .into_iter()
        .map(|l| l.name)
        .collect()
}

fn names_in(ns: &Path) -> BTreeSet<String> {
    run_in(ns, || link_names(&mut Netlink::open().unwrap())).unwrap()
}

fn host_names() -> BTreeSet<String> {
    // The test thread is in the host's namespace: read-only listing.
    link_names(&mut Netlink::open().unwrap())
}

fn only_lo() -> BTreeSet<String> {
    BTreeSet::from(["lo".to_owned()])
}

const GW: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 1);
const CT: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 2);
const MAC: [u8; 6] = [0x02, 0x42, 0x0a, 0x4d, 0x00, 0x02];

/// In `a`: bridge `br0` with GW/24, up. Returns the bridge's index.
fn make_bridge(nl: &mut Netlink) -> u32 {
    let br = nl.create_bridge("br0", Some(1500)).unwrap();
    nl.add_address("br0", IpAddr::V4(GW), 24).unwrap();
    nl.set_up("br0").unwrap();
    br
}

fn container_link() -> ContainerLink {
    ContainerLink {
        peer_name: "peer0".into(),
        name: "eth0".into(),
        addresses: vec![(IpAddr::V4(CT), 24)],
        gateway: Some(IpAddr::V4(GW)),
        mac: Some(MAC),
    }
}

#[test]
fn bridge_veth_into_container_carries_udp_then_leaves_nothing() {
    if !is_root() {
        return;
    }
    let host_before = host_names();
    let ns = Namespaces::new("udp");
    assert_eq!(names_in(&ns.a), only_lo());
    assert_eq!(names_in(&ns.b), only_lo());

    // Network side, in A: bridge + veth whose peer is born in B.
    run_in(&ns.a, || {
        let mut nl = Netlink::open().unwrap();
        let br = make_bridge(&mut nl);
        let b = File::open(&ns.b).unwrap();
        nl.create_veth_into("vethtest0", "peer0", b.as_fd(), Some(1500))
            .unwrap();
        assert!(nl.link("peer0").unwrap().is_none(), "peer left in A");
        nl.set_master("vethtest0", "br0").unwrap();
        nl.set_up("vethtest0").unwrap();
        let veth = nl.link("vethtest0").unwrap().unwrap();
        assert_eq!(veth.kind.as_deref(), Some("veth"));
        assert_eq!(veth.master, Some(br));
        assert!(veth.up);
        // Plus the kernel's IPv6 link-local one.
        let addrs = nl.addresses("br0").unwrap();
        assert!(addrs.contains(&(IpAddr::V4(GW), 24)), "{addrs:?}");
    })
    .unwrap();

    // Container side, in B.
    configure_container_link(&ns.b, &container_link()).unwrap();
    run_in(&ns.b, || {
        let mut nl = Netlink::open().unwrap();
        assert_eq!(
            link_names(&mut nl),
            BTreeSet::from(["lo".to_owned(), "eth0".to_owned()])
        );
        let eth0 = nl.link("eth0").unwrap().unwrap();
        assert!(eth0.up);
        assert_eq!(eth0.mac.as_deref(), Some(&MAC[..]));
        assert_eq!(eth0.mtu, Some(1500));
        assert!(nl.link("lo").unwrap().unwrap().up);
        assert!(
            nl.addresses("eth0")
                .unwrap()
                .contains(&(IpAddr::V4(CT), 24))
        );
        let routes = nl.routes().unwrap();
        assert!(
            routes
                .iter()
                .any(|r| r.destination.is_none() && r.gateway == Some(IpAddr::V4(GW))),
            "no default route via {GW}: {routes:?}"
        );
    })
    .unwrap();
    // Configuring again is harmless (address and route already there).
    configure_container_link(&ns.b, &container_link()).unwrap();

    // Traffic A -> B over the bridge: a UDP socket bound in B, a sender in A.
    let (port_tx, port_rx) = mpsc::channel();
    let (got, src) = std::thread::scope(|s| {
        let receiver = s.spawn(|| {
            run_in(&ns.b, || {
                let sock = UdpSocket::bind(SocketAddr::new(IpAddr::V4(CT), 0)).unwrap();
                sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
                port_tx.send(sock.local_addr().unwrap().port()).unwrap();
                let mut buf = [0u8; 64];
                let (n, src) = sock.recv_from(&mut buf).unwrap();
                (buf[..n].to_vec(), src)
            })
            .unwrap()
        });
        let port = port_rx.recv().unwrap();
        run_in(&ns.a, || {
            let sock = UdpSocket::bind(SocketAddr::new(IpAddr::V4(GW), 0)).unwrap();
            // A few copies in case the first waits on ARP; the receiver takes one.
            for _ in 0..3 {
                sock.send_to(b"berth", SocketAddr::new(IpAddr::V4(CT), port))
                    .unwrap();
                std::thread::sleep(Duration::from_millis(20));
            }
        })
        .unwrap();
        receiver.join().unwrap()
    });
    assert_eq!(got, b"berth");
    assert_eq!(src.ip(), IpAddr::V4(GW));

    // Teardown: deleting the host end removes the peer in B; deletes are idempotent.
    run_in(&ns.a, || {
        let mut nl = Netlink::open().unwrap();
        nl.delete_link("vethtest0").unwrap();
        nl.delete_link("vethtest0").unwrap();
        nl.delete_link("br0").unwrap();
        nl.delete_link("br0").unwrap();
        assert_eq!(link_names(&mut nl), only_lo());
        assert!(nl.routes().unwrap().is_empty());
    })
    .unwrap();
    run_in(&ns.b, || {
        let mut nl = Netlink::open().unwrap();
        assert_eq!(link_names(&mut nl), only_lo());
        let lo = nl.link("lo").unwrap().unwrap().index;
        let routes = nl.routes().unwrap();
        assert!(
            routes.iter().all(|r| r.oif == Some(lo)),
            "routes left: {routes:?}"
        );
    })
    .unwrap();
    drop(ns);
    let host_after = host_names();
    for ours in ["br0", "vethtest0", "peer0", "eth0"] {
        assert!(
            host_before.contains(ours) || !host_after.contains(ours),
            "{ours} leaked to the host"
        );
    }
}

#[test]
fn create_and_delete_are_idempotent_and_kinds_checked() {
    if !is_root() {
        return;
    }
    let ns = Namespaces::new("idem");
    run_in(&ns.a, || {
        let mut nl = Netlink::open().unwrap();
        let first = nl.create_bridge("br-idem", None).unwrap();
        assert_eq!(nl.create_bridge("br-idem", None).unwrap(), first);
        nl.add_address("br-idem", IpAddr::V4(GW), 24).unwrap();
        nl.add_address("br-idem", IpAddr::V4(GW), 24).unwrap();
        let v6: IpAddr = "fd00:77::1".parse().unwrap();
        nl.add_address("br-idem", v6, 64).unwrap();
        let addrs = nl.addresses("br-idem").unwrap();
        assert!(addrs.contains(&(IpAddr::V4(GW), 24)), "{addrs:?}");
        assert!(addrs.contains(&(v6, 64)), "{addrs:?}");

        // A veth pair inside this same namespace: a bridge of that name is refused.
        let here = File::open("/proc/thread-self/ns/net").unwrap();
        nl.create_veth_into("v-idem-a", "v-idem-b", here.as_fd(), None)
            .unwrap();
        match nl.create_bridge("v-idem-a", None) {
            Err(LinkError::WrongKind { kind, .. }) => assert_eq!(kind, "veth"),
            other => panic!("expected WrongKind, got {other:?}"),
        }
        // An existing veth is EEXIST, with the name in the message.
        let err = nl
            .create_veth_into("v-idem-a", "v-idem-c", here.as_fd(), None)
            .unwrap_err();
        assert!(err.to_string().contains("v-idem-a"), "{err}");
        // Rename only while down; then the new name is there and the old one is not.
        nl.rename("v-idem-b", "v-idem-r").unwrap();
        assert!(nl.link("v-idem-b").unwrap().is_none());
        assert!(nl.link("v-idem-r").unwrap().is_some());

        // Errors name what is missing or wrong; nothing is sent for a bad name.
        let err = nl.set_up("no-such-if").unwrap_err();
        assert_eq!(err.to_string(), "interface no-such-if not found");
        assert!(matches!(
            nl.create_bridge("a-name-far-too-long", None),
            Err(LinkError::InvalidName(_))
        ));
        assert!(matches!(
            nl.add_address("br-idem", IpAddr::V4(GW), 33),
            Err(LinkError::InvalidPrefix { .. })
        ));

        nl.delete_link("v-idem-a").unwrap();
        assert!(
            nl.link("v-idem-r").unwrap().is_none(),
            "peer outlived its pair"
        );
        nl.delete_link("br-idem").unwrap();
        nl.delete_link("br-idem").unwrap();
        nl.delete_link("v-idem-a").unwrap();
        assert_eq!(link_names(&mut nl), only_lo());
    })
    .unwrap();
    assert_eq!(names_in(&ns.b), only_lo());
}

#[test]
fn named_namespace_lifecycle() {
    if !is_root() {
        return;
    }
    let ns = Namespaces::new("life");
    // A fresh namespace is not ours: its lo is down and distinct from the host's view.
    let lo_up = run_in(&ns.a, || {
        Netlink::open().unwrap().link("lo").unwrap().unwrap().up
    })
    .unwrap();
    assert!(!lo_up);
    // Creating over an existing file is refused and leaves it alone.
    assert!(netns::create_named(&ns.a).is_err());
    assert!(ns.a.exists());
    netns::remove_named(&ns.a).unwrap();
    assert!(!ns.a.exists());
    netns::remove_named(&ns.a).unwrap();
    assert!(run_in(&ns.a, || ()).is_err());
    // A panic inside is reported, not propagated.
    let err = run_in(&ns.b, || panic!("boom")).unwrap_err();
    assert!(err.to_string().contains("panicked"), "{err}");
}

#[test]
fn veth_setup_teardown_timing() {
    if !is_root() {
        return;
    }
    let ns = Namespaces::new("time");
    let samples = run_in(&ns.a, || {
        let mut nl = Netlink::open().unwrap();
        make_bridge(&mut nl);
        let b = File::open(&ns.b).unwrap();
        let link = container_link();
        let mut samples = Vec::with_capacity(100);
        for _ in 0..100 {
            let t = Instant::now();
            nl.create_veth_into("vethtime0", "peer0", b.as_fd(), Some(1500))
                .unwrap();
            nl.set_master("vethtime0", "br0").unwrap();
            nl.set_up("vethtime0").unwrap();
            configure_container_link(&ns.b, &link).unwrap();
            let setup = t.elapsed();
            nl.delete_link("vethtime0").unwrap();
            samples.push((t.elapsed(), setup));
        }
        nl.delete_link("br0").unwrap();
        assert_eq!(link_names(&mut nl), only_lo());
        samples
    })
    .unwrap();
    assert_eq!(names_in(&ns.b), only_lo());
    let median = |mut v: Vec<Duration>| {
        v.sort();
        v[v.len() / 2]
    };
    let total: Vec<Duration> = samples.iter().map(|s| s.0).collect();
    let setup: Vec<Duration> = samples.iter().map(|s| s.1).collect();
    let teardown: Vec<Duration> = samples.iter().map(|s| s.0 - s.1).collect();
    println!(
        "veth setup+teardown over {} runs (create into netns, master, up, eth0 configured in \
         the netns, delete): median {:?} (setup {:?}, teardown {:?})",
        total.len(),
        median(total.clone()),
        median(setup),
        median(teardown)
    );
}
