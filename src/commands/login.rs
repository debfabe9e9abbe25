//! `berth login` / `berth logout`: credentials in Docker's `config.json` (or its credential
//! helper), so docker, podman and berth share them. As with docker, a login is verified with
//! the registry before anything is stored.

use std::io::{BufRead, IsTerminal, Write};

use anyhow::{Context, bail};
use berth_engine::auth::{self, Credentials};
use berth_engine::registry::RegistryError;
use clap::Args;

use crate::cli::Settings;
use crate::engine::Engine;

#[derive(Debug, Args)]
pub struct LoginArgs {
    /// Username
    #[arg(short, long)]
    pub username: Option<String>,
    /// Password (prefer --password-stdin; no `-p`: it is the global --project-name)
    #[arg(long)]
    pub password: Option<String>,
    /// Take the password from stdin
    #[arg(long)]
    pub password_stdin: bool,
    /// Registry host (default: Docker Hub)
    pub server: Option<String>,
}

#[derive(Debug, Args)]
pub struct LogoutArgs {
    /// Registry host (default: Docker Hub)
    pub server: Option<String>,
}

const DOCKER_HUB: &str = "docker.io";

pub fn login(settings: &Settings, a: &LoginArgs) -> anyhow::Result<()> {
    let engine = Engine::open(settings)?;
    let server = a.server.clone().unwrap_or_else(|| DOCKER_HUB.to_string());
    let username = match &a.username {
        Some(u) => u.clone(),
        None => prompt("Username: ")?,
    };
    let password = if a.password_stdin {
        let mut line = String::new();
        std::io::stdin()
            .lock()
            .read_line(&mut line)
            .context("failed to read the password from stdin")?;
        line.trim_end_matches(['\n', '\r']).to_string()
    } else if let Some(p) = &a.password {
        eprintln!("WARNING! Using --password via the CLI is insecure. Use --password-stdin.");
        p.clone()
    } else {
        // Reading it from a terminal would echo it: not until berth turns echo off.
        bail!(
            "interactive password entry is not supported yet\nhint: echo \"$TOKEN\" | berth login -u {username} --password-stdin {server}"
        );
    };
    if username.is_empty() || password.is_empty() {
        bail!(
            "username and password are required\nhint: berth login -u USER --password-stdin {server}"
        );
    }
    let credentials = Credentials::Basic { username, password };
    let check = auth::to_registry_auth(&Some(credentials.clone()));
    let verified =
        crate::engine::runtime()?.block_on(engine.registry().check_login(&server, &check));
    match verified {
        Ok(()) => {}
        Err(RegistryError::Unauthorized { reason, .. }) => {
            bail!("login to {server} failed: unauthorized: {reason}")
        }
        Err(e) => return Err(anyhow::Error::new(e).context(format!("login to {server} failed"))),
    }
    let mut config = engine.docker_config()?;
    if config.helper_for(&server).is_none() {
        eprintln!(
            "WARNING! Your password will be stored unencrypted in {}.\nConfigure a credential helper to remove this warning.",
            config.path().display()
        );
    }
    config.store(&server, &credentials)?;
    println!("Login Succeeded");
    Ok(())
}

pub fn logout(settings: &Settings, a: &LogoutArgs) -> anyhow::Result<()> {
    let engine = Engine::open(settings)?;
    let server = a.server.clone().unwrap_or_else(|| DOCKER_HUB.to_string());
    let mut config = engine.docker_config()?;
    if config.erase(&server)? {
        println!("Removing login credentials for {server}");
    } else {
        println!("Not logged in to {server}");
    }
    Ok(())
}

fn prompt(what: &str) -> anyhow::Result<String> {
    if !std::io::stdin().is_terminal() {
        bail!(
            "cannot prompt for {}: stdin is not a terminal\nhint: use -u and --password-stdin",
            what.trim_end_matches(": ")
        );
    }
    eprint!("{what}");
    std::io::stderr().flush().ok();
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line)?;
    Ok(line.trim_end_matches(['\n', '\r']).to_string())
}
