//! Lifecycle hooks (`post_start`, `pre_stop`), as docker compose runs them: by the command
//! that starts or stops the container (not by the supervisor's restarts), each through the
//! exec machinery (`berth __exec`) with the hook's user, privilege, working directory and
//! environment, one after the other; a hook that exits non-zero fails the command.

use anyhow::{Context, bail};
use berth_compose::model::{Project, ServiceHook};
use berth_engine::container::ContainerConfig;
use berth_engine::container::exec::{EXEC_VERB, ExecRequest};
use berth_engine::container::store::ContainerDir;

use crate::commands::container::Ctx;
use crate::orchestrator::observe::Observed;

/// Which hooks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Hook {
    PostStart,
    PreStop,
}

impl Hook {
    fn key(self) -> &'static str {
        match self {
            Hook::PostStart => "post_start",
            Hook::PreStop => "pre_stop",
        }
    }
}

/// The `hook` hooks of `service` in `project` (none for a service the file no longer has).
pub fn of<'a>(project: &'a Project, service: &str, hook: Hook) -> &'a [ServiceHook] {
    match project.services.get(service) {
        Some(s) => match hook {
            Hook::PostStart => &s.post_start,
            Hook::PreStop => &s.pre_stop,
        },
        None => &[],
    }
}

/// The exec request of one hook in container `id`.
pub fn request(id: &str, h: &ServiceHook) -> ExecRequest {
    ExecRequest {
        id: id.to_string(),
        args: h.command.as_ref().map(|c| c.args()).unwrap_or_default(),
        // A variable left without a value by interpolation is not set.
        env: h
            .environment
            .iter()
            .filter_map(|(k, v)| v.as_ref().map(|v| format!("{k}={v}")))
            .collect(),
        user: h.user.clone(),
        workdir: (!h.working_dir.is_empty()).then(|| h.working_dir.clone()),
        privileged: h.privileged,
        detach: false,
        tty: false,
    }
}

/// Runs `hooks` in the container of `dir` (named `name` in messages), in order; the first
/// that cannot run or exits non-zero is the error, with what it printed.
pub fn run(
    ctx: &Ctx,
    dir: &ContainerDir,
    name: &str,
    hook: Hook,
    hooks: &[ServiceHook],
) -> anyhow::Result<()> {
    for (i, h) in hooks.iter().enumerate() {
        let req = request(&dir.id, h);
        if req.args.is_empty() {
            bail!(
                "container {name}: {}[{i}]: the hook has no command",
                hook.key()
            );
        }
        let out = std::process::Command::new(&ctx.shim_exe)
            .arg(EXEC_VERB)
            .args(req.to_args(ctx.root()))
            .stdin(std::process::Stdio::null())
            .output()
            .context("cannot run the exec helper")?;
        if !out.status.success() {
            let printed = String::from_utf8_lossy(&out.stdout).into_owned()
                + &String::from_utf8_lossy(&out.stderr);
            bail!(
                "container {name}: {}[{i}] {:?} exited with status {}{}{}",
                hook.key(),
                req.args,
                out.status.code().unwrap_or(-1),
                if printed.trim().is_empty() { "" } else { ":\n" },
                printed.trim_end()
            );
        }
    }
    Ok(())
}

/// A running container's `pre_stop` hooks (the project's, for its service), before a stop.
pub fn pre_stop(ctx: &Ctx, project: &Project, o: &Observed) -> anyhow::Result<()> {
    if !o.running() {
        return Ok(());
    }
    let hooks = of(project, o.service(), Hook::PreStop);
    run(ctx, &o.dir, &o.config.name, Hook::PreStop, hooks)
}

/// The `post_start` hooks of the container of `dir` (whose config is `config`), just started.
pub fn post_start(
    ctx: &Ctx,
    project: &Project,
    dir: &ContainerDir,
    config: &ContainerConfig,
) -> anyhow::Result<()> {
    let service = config
        .labels
        .get(crate::labels::SERVICE)
        .map(String::as_str)
        .unwrap_or("");
    let hooks = of(project, service, Hook::PostStart);
    run(ctx, dir, &config.name, Hook::PostStart, hooks)
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_compose::model::ShellCommand;

    #[test]
    fn a_hook_is_an_exec_of_its_command() {
        let h = ServiceHook {
            command: Some(ShellCommand::Shell("sh -c 'echo hi > /x'".into())),
            user: "app".into(),
            privileged: true,
            working_dir: "/w".into(),
            environment: [
                ("A".to_string(), Some("1".to_string())),
                ("UNSET".to_string(), None),
            ]
            .into_iter()
            .collect(),
            ..Default::default()
        };
        let r = request("abc", &h);
        assert_eq!(r.args, ["sh", "-c", "echo hi > /x"]);
        assert_eq!(r.env, ["A=1"]);
        assert_eq!((r.user.as_str(), r.workdir.as_deref()), ("app", Some("/w")));
        assert!(r.privileged && !r.detach && !r.tty);
    }
}
