//! berth-compose: compose files → a validated `Project` and its service graph.
//!
//! Pure: bytes, environment and a working directory in; a typed model out. No container I/O,
//! no `unsafe`. README.md in this crate lists the pipeline of phases in order.

pub mod discovery;
pub mod emit;
pub mod error;
pub mod yaml;

pub use error::{Error, ErrorKind, Result};
