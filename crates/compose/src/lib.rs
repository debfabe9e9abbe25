//! berth-compose: compose files → a validated `Project` and its service graph.
//!
//! Pure: bytes, environment and a working directory in; a typed model out. No container I/O,
//! no `unsafe`. README.md in this crate lists the pipeline of phases in order; the modules
//! below are alphabetical.

pub mod canonical;
pub mod consistency;
pub mod de;
pub mod defaults;
pub mod discovery;
pub mod dotenv;
pub mod emit;
pub mod error;
pub mod extends;
pub mod graph;
pub mod hash;
pub mod interpolate;
pub mod loader;
pub mod merge;
pub mod model;
pub mod normalize;
pub mod paths;
pub mod profiles;
pub mod template;
pub mod unicity;
pub mod units;
pub mod yaml;

pub use error::{Error, ErrorKind, Result};
