//! Following a project's output as `logs -f` and attached `up` do: the containers there now
//! and those that appear later (recreated by another `up`, scaled, restarted under a new
//! id), each until it is done — removed, or exited with no restart coming.

use std::collections::HashSet;

use berth_engine::container::store::ContainerDir;
use berth_engine::container::{ContainerState, RestartPolicy, Status, lifecycle};
use berth_engine::logs::LogReader;

use crate::commands::container::Ctx;
use crate::commands::project_logs::Prefix;
use crate::orchestrator::observe::{Observed, project_containers};

/// How often the project is looked at again for new containers.
pub const RESCAN: std::time::Duration = std::time::Duration::from_millis(250);

/// Whether the restart policy will bring the container back (the supervisor's rule), so its
/// output is still followed.
pub fn will_restart(policy: &RestartPolicy, st: &ContainerState) -> bool {
    if st.status == Status::Restarting {
        return true;
    }
    if st.manually_stopped {
        return false;
    }
    let code = st.exit_code.unwrap_or(0);
    match policy.name.as_str() {
        "always" | "unless-stopped" => true,
        "on-failure" => {
            code != 0 && (policy.max_retries == 0 || st.restart_count < policy.max_retries)
        }
        _ => false,
    }
}

/// True once the container is gone, or stopped with no restart coming. A container created
/// but not started yet (being recreated, or made by `create`) is not done.
pub fn done(dir: &ContainerDir, policy: &RestartPolicy) -> bool {
    if dir.shim_alive().unwrap_or(false) {
        return false;
    }
    // Removed (a missing state file reads as a fresh `created` state).
    if !dir.path.exists() {
        return true;
    }
    match lifecycle::state(dir) {
        Ok(st) => st.status != Status::Created && !will_restart(policy, &st),
        // Removed (or being removed).
        Err(_) => true,
    }
}

/// The container's log, once its first start has made it; `None` if the container is done
/// before that.
pub fn open_log(o: &Observed) -> Option<LogReader> {
    loop {
        if let Ok(reader) = LogReader::open(&o.dir.log_dir()) {
            return Some(reader);
        }
        if done(&o.dir, &o.config.restart) && !o.dir.log_dir().exists() {
            return None;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// The project's containers that `select` accepts, each reported once: [`Tracker::new_ones`]
/// returns those not seen before.
pub struct Tracker<'a> {
    ctx: &'a Ctx,
    project: String,
    select: Box<dyn Fn(&Observed) -> bool + 'a>,
    seen: HashSet<String>,
}

impl<'a> Tracker<'a> {
    pub fn new(ctx: &'a Ctx, project: &str, select: impl Fn(&Observed) -> bool + 'a) -> Self {
        Tracker {
            ctx,
            project: project.to_string(),
            select: Box::new(select),
            seen: HashSet::new(),
        }
    }

    /// The selected containers not returned before, by service then number.
    pub fn new_ones(&mut self) -> anyhow::Result<Vec<Observed>> {
        let mut out = Vec::new();
        for o in project_containers(&self.ctx.store, &self.project)? {
            if !o.oneoff() && (self.select)(&o) && self.seen.insert(o.dir.id.clone()) {
                out.push(o);
            }
        }
        Ok(out)
    }
}

/// Prefixes for containers that keep arriving: padded to the widest name seen at the start
/// (or the name itself when longer), coloured in docker compose's order of arrival.
pub struct Prefixes {
    width: usize,
    next: usize,
    plain: bool,
    color: bool,
}

impl Prefixes {
    pub fn new(first: &[Observed], plain: bool, color: bool) -> Self {
        Prefixes {
            width: first
                .iter()
                .map(|o| display_name(o).len())
                .max()
                .unwrap_or(0),
            next: 0,
            plain,
            color,
        }
    }

    pub fn next(&mut self, o: &Observed) -> Prefix {
        let p = Prefix::new(
            &display_name(o),
            self.width,
            self.next,
            self.plain,
            self.color,
        );
        self.next += 1;
        p
    }
}

/// `service-n`, or the container's name for unnumbered containers.
pub fn display_name(o: &Observed) -> String {
    if o.oneoff() || o.number() == 0 {
        o.config.name.clone()
    } else {
        format!("{}-{}", o.service(), o.number())
    }
}
