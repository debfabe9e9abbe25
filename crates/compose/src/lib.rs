//! berth-compose: compose files → a validated `Project` and its service graph.
//!
//! Pure: bytes, environment and a working directory in; a typed model out. No container I/O,
//! no `unsafe`. README.md in this crate lists the pipeline of phases in order.

pub mod canonical;
pub mod error;
pub mod hash;
pub mod yaml;

pub mod normalize;
pub mod paths;
pub mod profiles;
pub mod consistency;
pub mod graph;

pub use error::{Error, ErrorKind, Result};
