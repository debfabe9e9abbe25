//! The orchestrator: compose services → containers.

pub mod convert;
