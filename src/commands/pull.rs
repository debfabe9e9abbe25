//! `berth pull`: pull the images of the project's services, in parallel, honouring
//! `pull_policy` as docker compose does.

use anyhow::bail;
use berth_engine::digest::Digest;
use berth_engine::reference::Reference;
use clap::Args;

use crate::cli::Settings;
use crate::engine::{self, Engine};
use crate::progress::{ComposeProgress, Mode};
use crate::project::{self, LoadFlags};

#[derive(Debug, Args)]
pub struct PullArgs {
    #[command(flatten)]
    pub shorts: crate::cli::ShortGlobals,
    /// Pull what it can and ignore images that fail
    #[arg(long)]
    pub ignore_pull_failures: bool,
    /// Pull without printing progress
    #[arg(short, long)]
    pub quiet: bool,
    /// Also pull services declared as buildable (build comes with the build issue)
    #[arg(long)]
    pub include_deps: bool,
    /// Services to pull (default: all)
    pub services: Vec<String>,
}

/// What to do for one service.
#[derive(Debug, PartialEq, Eq)]
enum Decision {
    Pull,
    /// Already present and the policy does not ask for a fresh copy.
    Skip(&'static str),
}

/// compose's `pull_policy` for `berth pull`: `always`/unset pull; `missing`/`if_not_present`
/// pull when absent; `never` never pulls; `build` leaves it to the build.
/// `daily`/`weekly`/`every_<d>` pull when absent (berth does not record pull times yet).
fn decide(policy: &str, present: bool) -> Decision {
    match policy {
        "never" => Decision::Skip("pull_policy: never"),
        "build" => Decision::Skip("pull_policy: build"),
        "missing" | "if_not_present" if present => Decision::Skip("already present"),
        p if (p == "daily" || p == "weekly" || p.starts_with("every_")) && present => {
            Decision::Skip("already present")
        }
        _ => Decision::Pull,
    }
}

pub fn run(settings: &Settings, args: &PullArgs) -> anyhow::Result<()> {
    let flags = LoadFlags {
        services: args.services.clone(),
        ..LoadFlags::default()
    };
    let project = project::load(settings, &flags)?;
    let engine = Engine::open(settings)?;
    let mut jobs: Vec<(String, Reference)> = Vec::new();
    for (name, svc) in &project.loaded.project.services {
        if !args.services.is_empty() && !args.services.contains(name) {
            continue;
        }
        if svc.image.is_empty() {
            continue;
        }
        let image = svc.image.as_str();
        let reference =
            Reference::parse(image).map_err(|e| anyhow::anyhow!("service {name}: {e}"))?;
        let present = engine.stores.images.resolve(&reference.to_string()).is_ok();
        match decide(&svc.pull_policy, present) {
            Decision::Pull => jobs.push((name.clone(), reference)),
            Decision::Skip(why) => {
                if !args.quiet {
                    eprintln!(" {name} Skipped - {why}");
                }
            }
        }
    }
    let progress = ComposeProgress::new(Mode::new(settings, args.quiet), jobs.len());
    let results = engine::runtime()?.block_on(async {
        let engine = &engine;
        let progress = &progress;
        let pulls = jobs.iter().map(|(name, reference)| async move {
            let service = progress.service(name);
            let report = |i: usize, d: &Digest, n: u64, t: u64| service.report(i, d, n, t);
            let r = engine.pull(reference, Some(&report)).await;
            match &r {
                Ok(p) => {
                    let blobs: Vec<Digest> =
                        p.image.layers.iter().map(|l| l.blob.clone()).collect();
                    service.done(Ok(&blobs));
                }
                Err(e) => service.done(Err(e)),
            }
            r
        });
        futures_util::future::join_all(pulls).await
    });
    let failures: Vec<String> = jobs
        .iter()
        .zip(results)
        .filter_map(|((name, _), r)| r.err().map(|e| format!("{name}: {e:#}")))
        .collect();
    if !failures.is_empty() && !args.ignore_pull_failures {
        bail!(
            "failed to pull {} image(s):\n{}",
            failures.len(),
            failures.join("\n")
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pull_policies() {
        assert_eq!(decide("", true), Decision::Pull);
        assert_eq!(decide("always", true), Decision::Pull);
        assert_eq!(decide("missing", false), Decision::Pull);
        assert!(matches!(decide("missing", true), Decision::Skip(_)));
        assert!(matches!(decide("if_not_present", true), Decision::Skip(_)));
        assert!(matches!(decide("never", false), Decision::Skip(_)));
        assert!(matches!(decide("build", false), Decision::Skip(_)));
        assert_eq!(decide("daily", false), Decision::Pull);
        assert!(matches!(decide("every_12h", true), Decision::Skip(_)));
    }
}
