//! berth-engine: images, the content store, layers and overlay rootfs; later containers
//! (runtime shim), volumes and logs. README.md in this crate draws the state layout and lists
//! the modules with their contracts.
//!
//! Architecture invariant: nothing here knows compose files, networks, clap or terminals.

pub mod auth;
pub mod container;
pub mod content;
pub mod digest;
pub mod error;
pub mod events;
pub mod fsutil;
pub mod images;
pub mod install;
pub mod layers;
pub mod layout;
pub mod logs;
pub mod prune;
pub mod pull;
pub mod reference;
pub mod registry;
pub mod rootfs;
pub mod rundir;
pub mod transfer;
pub mod unpack;
pub mod volumes;
