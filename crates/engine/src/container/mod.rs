//! Containers: their configuration and state on disk, the OCI spec berth gives the runtime,
//! and the per-container shim that runs them.

pub mod caps;
pub mod cgroupfs;
pub mod config;
pub mod etc;
pub mod exec;
pub mod lifecycle;
pub mod ops;
pub mod seccomp;
pub mod seccomp_bpf;
pub mod shim;
pub mod spec;
pub mod store;
pub mod user;

pub use config::*;
