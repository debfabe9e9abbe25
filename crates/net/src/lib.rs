//! berth-net: bridges, veth, IPAM, DNS, port publishing and NAT, for berth's containers.
//!
//! - `netns`: run code inside a network namespace on a dedicated thread; named namespaces.
//! - `link`: links over netlink (bridges, veths into a namespace, addresses, routes).
//! - `ipam`: subnets from pools, avoiding host routes; addresses persisted per network.
//! - `network`: network and endpoint records and what they mean in the kernel.
//! - `firewall`: published ports and NAT in berth's own nftables table.
//! - `dns`: the embedded DNS server answering container names on each network.

pub mod dns;
pub mod firewall;
pub mod ipam;
pub mod link;
pub mod netns;
pub mod network;
