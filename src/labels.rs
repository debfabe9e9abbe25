//! The labels berth puts on a project's containers, networks and volumes. They are Docker
//! Compose's own keys, so tools that already filter on them (`docker ps --filter
//! label=com.docker.compose.project=…`-style scripts, monitoring) find berth's resources too.
//! A contract: never change them casually.

/// The project name.
pub const PROJECT: &str = "com.docker.compose.project";
/// The service name.
pub const SERVICE: &str = "com.docker.compose.service";
// The replica number, one-off flag, config hash, working dir and config files follow with the
// orchestrator (`com.docker.compose.container-number`, `.oneoff`, `.config-hash`,
// `.project.working_dir`, `.project.config_files`).
