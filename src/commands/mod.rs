//! One module per verb. Each exposes its clap arguments and a `run` taking the resolved
//! [`crate::cli::Settings`].

pub mod config;
pub mod image;
pub mod login;
pub mod pull;
pub mod version;
