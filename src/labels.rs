//! The labels berth puts on a project's containers, networks and volumes. They are Docker
//! Compose's own keys, so tools that already filter on them (`docker ps --filter
//! label=com.docker.compose.project=…`-style scripts, monitoring) find berth's resources too.
//! A contract: never change them casually.

/// The project name.
pub const PROJECT: &str = "com.docker.compose.project";
/// The service name.
pub const SERVICE: &str = "com.docker.compose.service";
/// The replica number of a service's container, 1-based (`"1"`, `"2"`, …).
pub const CONTAINER_NUMBER: &str = "com.docker.compose.container-number";
/// `True` for `run` containers, `False` for the service's own (Python's spelling, as
/// docker compose writes it).
pub const ONEOFF: &str = "com.docker.compose.oneoff";
/// The service's config hash when the container was created (`berth_compose::hash`).
pub const CONFIG_HASH: &str = "com.docker.compose.config-hash";
/// The project directory.
pub const WORKING_DIR: &str = "com.docker.compose.project.working_dir";
/// The compose files, absolute, comma-joined.
pub const CONFIG_FILES: &str = "com.docker.compose.project.config_files";
/// The version of the tool that created the container (berth's own version).
pub const VERSION: &str = "com.docker.compose.version";
/// The image id (`sha256:…`) the container was created from.
pub const IMAGE: &str = "com.docker.compose.image";
/// A network's key in the compose file.
pub const NETWORK: &str = "com.docker.compose.network";
/// A volume's key in the compose file.
pub const VOLUME: &str = "com.docker.compose.volume";
