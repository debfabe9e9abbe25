//! Loading the project every verb works on: discovery (files, project directory, env files,
//! profiles), the interpolation environment (shell over env files), the explicit project name,
//! then the compose loader. Warnings are printed here, on stderr, the way docker compose prints
//! them (`WARN[0000] …`).

use anyhow::Context;
use berth_compose::discovery::{self, Discovered};
use berth_compose::{dotenv, loader};

use crate::cli::Settings;

/// What the loader must do (the `config` verb can turn phases off).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoadFlags {
    pub interpolate: bool,
    pub normalize: bool,
    pub resolve_paths: bool,
    pub consistency: bool,
    /// Services named on the command line: they and their dependencies are selected, whatever
    /// their profiles. Empty for all.
    pub services: Vec<String>,
}

impl Default for LoadFlags {
    fn default() -> Self {
        LoadFlags {
            interpolate: true,
            normalize: true,
            resolve_paths: true,
            consistency: true,
            services: Vec::new(),
        }
    }
}

/// A loaded project and what it was loaded from.
#[derive(Debug)]
pub struct Project {
    pub loaded: loader::Loaded,
    pub discovered: Discovered,
    /// The environment used for interpolation: the shell's over the env files'.
    pub environment: loader::Environment,
}

/// Discovers and loads the project of `settings`.
pub fn load(settings: &Settings, flags: &LoadFlags) -> anyhow::Result<Project> {
    let mut discovered = discovery::discover(&settings.project)?;
    // Messages name files as the user would type them: relative to where berth runs.
    for f in &mut discovered.files {
        if let Some(rel) = f
            .path
            .as_deref()
            .and_then(|p| p.strip_prefix(&settings.project.working_dir).ok())
        {
            f.name = rel.display().to_string();
        }
    }
    for w in &discovered.warnings {
        warn(w);
    }
    let shell = &settings.project.environment;
    let lookup = |k: &str| shell.get(k).cloned();
    let mut environment = dotenv::env_from_files(&discovered.env_files, &lookup)
        .with_context(|| "failed to read the env files".to_string())?;
    for (k, v) in shell {
        environment.insert(k.clone(), v.clone());
    }
    let non_empty = |s: &String| !s.is_empty();
    let explicit_name = settings
        .project
        .project_name
        .clone()
        .filter(non_empty)
        .or_else(|| {
            environment
                .get("COMPOSE_PROJECT_NAME")
                .cloned()
                .filter(non_empty)
        });
    // `--profile` wins; otherwise COMPOSE_PROFILES from the shell (discovery) or from `.env`.
    let mut profiles = discovered.profiles.clone();
    if profiles.is_empty()
        && let Some(p) = environment.get("COMPOSE_PROFILES")
    {
        profiles = p
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(String::from)
            .collect();
    }
    let mut opts = loader::LoadOptions::new(
        discovered.files.clone(),
        discovered.project_dir.clone(),
        environment.clone(),
    );
    opts.explicit_name = explicit_name;
    opts.profiles = profiles;
    opts.services = flags.services.clone();
    opts.interpolate = flags.interpolate;
    opts.normalize = flags.normalize;
    opts.resolve_paths = flags.resolve_paths;
    opts.consistency = flags.consistency;
    opts.home = environment
        .get("HOME")
        .filter(|h| !h.is_empty())
        .map(Into::into);
    let loaded = loader::load(&opts)?;
    for w in &loaded.warnings {
        warn(&w.message);
    }
    Ok(Project {
        loaded,
        discovered,
        environment,
    })
}

/// A warning as docker compose prints it.
pub fn warn(message: &str) {
    eprintln!("WARN[0000] {message}");
}
