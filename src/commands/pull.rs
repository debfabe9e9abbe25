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
/// pull when absent; `never` never pulls; `build` leaves it to the build;
/// `daily`/`weekly`/`every_<duration>` pull when absent or when the local name is older than
/// that (`age`: since the name was last pulled, loaded or tagged — Docker's `LastTagTime`;
/// `None` when unknown, which counts as too old).
fn decide(policy: &str, present: bool, age: Option<std::time::Duration>) -> Decision {
    let period = match policy {
        "daily" => Some(std::time::Duration::from_secs(24 * 3600)),
        "weekly" => Some(std::time::Duration::from_secs(7 * 24 * 3600)),
        p => p
            .strip_prefix("every_")
            .and_then(|d| berth_compose::units::Duration::parse(d).ok())
            .map(|d| d.to_std()),
    };
    match policy {
        "never" => Decision::Skip("pull_policy: never"),
        "build" => Decision::Skip("pull_policy: build"),
        "missing" | "if_not_present" if present => Decision::Skip("already present"),
        _ => match period {
            Some(period) if present && age.is_some_and(|a| a < period) => {
                Decision::Skip("pulled recently")
            }
            _ => Decision::Pull,
        },
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
        let key = reference.to_string();
        let present = engine.stores.images.resolve(&key).is_ok();
        let age = engine
            .stores
            .images
            .refs()?
            .get(&key)
            .and_then(|e| e.tagged_at.as_deref())
            .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
            .and_then(|t| {
                (chrono::Utc::now() - t.with_timezone(&chrono::Utc))
                    .to_std()
                    .ok()
            });
        match decide(&svc.pull_policy, present, age) {
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
        let h = |n: u64| Some(std::time::Duration::from_secs(n * 3600));
        assert_eq!(decide("", true, h(0)), Decision::Pull);
        assert_eq!(decide("always", true, h(0)), Decision::Pull);
        assert_eq!(decide("missing", false, None), Decision::Pull);
        assert!(matches!(decide("missing", true, None), Decision::Skip(_)));
        assert!(matches!(
            decide("if_not_present", true, None),
            Decision::Skip(_)
        ));
        assert!(matches!(decide("never", false, None), Decision::Skip(_)));
        assert!(matches!(decide("build", false, None), Decision::Skip(_)));
        assert_eq!(decide("daily", false, None), Decision::Pull);
        assert!(matches!(decide("daily", true, h(23)), Decision::Skip(_)));
        assert_eq!(decide("daily", true, h(25)), Decision::Pull);
        assert_eq!(decide("daily", true, None), Decision::Pull, "unknown age");
        assert!(matches!(
            decide("weekly", true, h(24 * 6)),
            Decision::Skip(_)
        ));
        assert_eq!(decide("weekly", true, h(24 * 8)), Decision::Pull);
        assert!(matches!(
            decide("every_12h", true, h(11)),
            Decision::Skip(_)
        ));
        assert_eq!(decide("every_12h", true, h(13)), Decision::Pull);
        assert_eq!(decide("every_30m", true, h(1)), Decision::Pull);
    }
}
