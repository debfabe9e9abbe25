//! The orchestrator: a compose project's containers made to match its file. Observe (what
//! runs: `observe`), reconcile (a pure plan: `plan`), execute (networks, volumes, then the
//! plan's operations level by level: `execute`); `convert` turns a service into the engine's
//! container config.

pub mod convert;
pub mod execute;
pub mod observe;
pub mod plan;
