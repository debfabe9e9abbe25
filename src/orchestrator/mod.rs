//! The orchestrator: from a compose project to running containers.

pub mod plan;
