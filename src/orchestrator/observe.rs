//! Observe: the project's containers as they are on disk and in the kernel (a state file
//! whose shim is gone is reported exited, as everywhere else).

use berth_engine::container::store::{ContainerDir, ContainerStore};
use berth_engine::container::{ContainerConfig, ContainerState, Status};

use crate::labels;
use crate::orchestrator::plan::{ObservedContainer, ObservedState};

/// One container of the project.
#[derive(Debug, Clone)]
pub struct Observed {
    pub dir: ContainerDir,
    pub config: ContainerConfig,
    pub state: ContainerState,
}

impl Observed {
    fn label(&self, key: &str) -> &str {
        self.config
            .labels
            .get(key)
            .map(String::as_str)
            .unwrap_or("")
    }

    /// The compose service.
    pub fn service(&self) -> &str {
        self.label(labels::SERVICE)
    }

    /// The replica number (0 when unlabelled).
    pub fn number(&self) -> u32 {
        self.label(labels::CONTAINER_NUMBER).parse().unwrap_or(0)
    }

    /// A `berth run` container.
    pub fn oneoff(&self) -> bool {
        self.label(labels::ONEOFF).eq_ignore_ascii_case("true")
    }

    /// Running or paused.
    pub fn running(&self) -> bool {
        matches!(self.state.status, Status::Running | Status::Paused)
    }

    /// What the planner needs.
    pub fn to_plan(&self) -> ObservedContainer {
        ObservedContainer {
            id: self.dir.id.clone(),
            name: self.config.name.clone(),
            service: self.service().to_string(),
            number: self.number(),
            hash: self.label(labels::CONFIG_HASH).to_string(),
            state: match self.state.status {
                Status::Created => ObservedState::Created,
                Status::Running => ObservedState::Running,
                Status::Paused => ObservedState::Paused,
                Status::Restarting => ObservedState::Restarting,
                Status::Exited | Status::Removing => ObservedState::Exited,
                Status::Dead => ObservedState::Dead,
            },
            oneoff: self.oneoff(),
        }
    }
}

/// Every container labelled with project `project`, by service then number.
pub fn project_containers(store: &ContainerStore, project: &str) -> anyhow::Result<Vec<Observed>> {
    let mut out = Vec::new();
    for id in store.ids()? {
        let dir = store.dir_of(&id);
        // A container being removed concurrently is simply not there.
        let Ok(config) = dir.config() else { continue };
        if config.labels.get(labels::PROJECT).map(String::as_str) != Some(project) {
            continue;
        }
        let Ok(state) = berth_engine::container::lifecycle::state(&dir) else {
            continue;
        };
        out.push(Observed { dir, config, state });
    }
    out.sort_by(|a, b| {
        (a.service(), a.oneoff(), a.number(), &a.config.name).cmp(&(
            b.service(),
            b.oneoff(),
            b.number(),
            &b.config.name,
        ))
    });
    Ok(out)
}
