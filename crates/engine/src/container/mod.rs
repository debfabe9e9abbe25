//! Containers: their configuration and state on disk, the OCI spec berth gives the runtime,
//! and the per-container shim that runs them.

pub mod config;

pub use config::*;
pub mod lifecycle;
pub mod shim;
pub mod store;
