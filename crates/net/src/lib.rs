//! berth-net: bridges, veth, IPAM, DNS, port publishing and NAT. Filled in by the networking issue.

pub mod ipam;
