//! berth-net: bridges, veth, IPAM, DNS, port publishing and NAT. What exists so far: network
//! namespaces (`netns`), links over netlink (`link`) and address management (`ipam`).
//! `firewall`: published ports and NAT in berth's own nftables table.

pub mod firewall;
//! `dns`: the embedded DNS server answering container names on each network.

pub mod dns;
pub mod ipam;
pub mod link;
pub mod netns;
