//! `berth image …`: the docker CLI for images (pull, ls, inspect, rm, tag).

use std::io::IsTerminal;
use std::time::{Duration, SystemTime};

use anyhow::{Context, bail};
use berth_engine::digest::Digest;
use berth_engine::images::ImageRecord;
use berth_engine::reference::Reference;
use clap::{Args, Subcommand};
use serde_json::json;

use crate::cli::Settings;
use crate::engine::{self, Engine};
use crate::progress::{Mode, PullProgress};

#[derive(Debug, Args)]
pub struct ImageArgs {
    #[command(subcommand)]
    pub command: ImageCommand,
}

#[derive(Debug, Subcommand)]
pub enum ImageCommand {
    /// Download an image from a registry
    Pull(PullArgs),
    /// List images
    #[command(alias = "list")]
    Ls(LsArgs),
    /// Display detailed information on one or more images
    Inspect(InspectArgs),
    /// Remove one or more images
    #[command(alias = "remove")]
    Rm(RmArgs),
    /// Create a tag TARGET_IMAGE that refers to SOURCE_IMAGE
    Tag(TagArgs),
    /// Remove unused images, then the blobs and layers nothing references
    Prune(PruneArgs),
    /// Load images from a tar archive (docker save or OCI format)
    Load(LoadArgs),
    /// Save images to a tar archive (docker save format, with an OCI layout)
    Save(SaveArgs),
    /// Import the contents from a tarball to create a filesystem image
    Import(ImportArgs),
}

#[derive(Debug, Args)]
pub struct LoadArgs {
    /// Read from tar archive file, instead of STDIN (plain, gzip or zstd)
    #[arg(short, long)]
    pub input: Option<std::path::PathBuf>,
    /// Suppress the load output
    #[arg(short, long)]
    pub quiet: bool,
}

#[derive(Debug, Args)]
pub struct SaveArgs {
    /// Write to a file, instead of STDOUT
    #[arg(short, long)]
    pub output: Option<std::path::PathBuf>,
    /// Archive format: docker (docker save, with an OCI layout) or oci
    #[arg(long, default_value = "docker")]
    pub format: String,
    #[arg(required = true)]
    pub images: Vec<String>,
}

#[derive(Debug, Args)]
pub struct ImportArgs {
    /// Apply Dockerfile instruction to the created image (CMD, ENTRYPOINT, ENV, EXPOSE, LABEL,
    /// STOPSIGNAL, USER, VOLUME, WORKDIR)
    #[arg(short, long = "change")]
    pub changes: Vec<String>,
    /// A rootfs tarball (plain, gzip or zstd), or - for STDIN
    pub file: String,
    /// REPOSITORY[:TAG]
    pub reference: Option<String>,
}

#[derive(Debug, Args)]
pub struct PruneArgs {
    /// Remove all images not used by a container, not just dangling ones
    #[arg(short, long)]
    pub all: bool,
    /// Do not prompt for confirmation (no `-f`: it is the global --file)
    #[arg(long)]
    pub force: bool,
}

#[derive(Debug, Args)]
pub struct PullArgs {
    /// Suppress verbose output
    #[arg(short, long)]
    pub quiet: bool,
    /// NAME[:TAG|@DIGEST]
    pub name: String,
}

#[derive(Debug, Args)]
pub struct LsArgs {
    /// Only show image IDs
    #[arg(short, long)]
    pub quiet: bool,
    /// Show digests
    #[arg(long)]
    pub digests: bool,
    /// Format output: table or json
    #[arg(long, default_value = "table")]
    pub format: String,
}

#[derive(Debug, Args)]
pub struct InspectArgs {
    #[arg(required = true)]
    pub images: Vec<String>,
}

#[derive(Debug, Args)]
pub struct RmArgs {
    /// Remove the image even when it has several names (no `-f`: it is the global `--file`)
    #[arg(long)]
    pub force: bool,
    #[arg(required = true)]
    pub images: Vec<String>,
}

#[derive(Debug, Args)]
pub struct TagArgs {
    pub source: String,
    pub target: String,
}

pub fn run(settings: &Settings, args: &ImageArgs) -> anyhow::Result<()> {
    let engine = Engine::open(settings)?;
    match &args.command {
        ImageCommand::Pull(a) => pull(settings, &engine, a),
        ImageCommand::Ls(a) => ls(&engine, a),
        ImageCommand::Inspect(a) => inspect(&engine, a),
        ImageCommand::Rm(a) => rm(&engine, a),
        ImageCommand::Tag(a) => tag(&engine, a),
        ImageCommand::Prune(a) => prune(&engine, a),
        ImageCommand::Load(a) => load(&engine, a),
        ImageCommand::Save(a) => save(&engine, a),
        ImageCommand::Import(a) => import(&engine, a),
    }
}

/// `docker pull`'s output: what is pulled, one line per layer, the digest and the status.
fn pull(settings: &Settings, engine: &Engine, a: &PullArgs) -> anyhow::Result<()> {
    let reference = Reference::parse(&a.name)?;
    let quiet = a.quiet;
    let last = a.name.rsplit('/').next().unwrap_or_default();
    if !quiet && !last.contains(':') && !a.name.contains('@') {
        println!("Using default tag: latest");
    }
    if !quiet {
        let what = reference
            .tag()
            .or(reference.digest().map(|_| "digest"))
            .unwrap_or("latest");
        println!("{what}: Pulling from {}", reference.repository());
    }
    let had = engine
        .stores
        .images
        .resolve(&reference.to_string())
        .ok()
        .map(|r| r.id);
    // Layer progress goes to stderr; stdout keeps docker's lines for scripts.
    let progress = PullProgress::image(Mode::new(settings, quiet));
    let report = |i: usize, d: &Digest, n: u64, t: u64| progress.report(i, d, n, t);
    let pulled = engine::runtime()?.block_on(engine.pull(&reference, Some(&report)));
    let pulled = match pulled {
        Ok(p) => p,
        Err(e) => {
            progress.abandon();
            return Err(e);
        }
    };
    let blobs: Vec<Digest> = pulled.image.layers.iter().map(|l| l.blob.clone()).collect();
    progress.finish(&blobs);
    if quiet {
        println!("{reference}");
        return Ok(());
    }
    // On one terminal the bars already say `Pull complete`.
    if !(progress.draws_layers() && std::io::stdout().is_terminal()) {
        for layer in &pulled.image.layers {
            println!("{}: Pull complete", &layer.blob.hex()[..12]);
        }
    }
    println!("Digest: {}", pulled.repo_digest);
    let status = if had.as_ref() == Some(&pulled.image.id) {
        format!("Image is up to date for {}", reference.familiar_string())
    } else {
        format!("Downloaded newer image for {}", reference.familiar_string())
    };
    println!("Status: {status}");
    println!("{reference}");
    Ok(())
}

/// One row per name (or one `<none>` row for an image without names), newest first.
fn ls(engine: &Engine, a: &LsArgs) -> anyhow::Result<()> {
    let mut images = engine.stores.images.list()?;
    images.sort_by(|x, y| y.created.cmp(&x.created).then(x.id.cmp(&y.id)));
    if a.quiet {
        let mut seen = std::collections::HashSet::new();
        for img in &images {
            if seen.insert(img.id.clone()) {
                println!("{}", img.id.short());
            }
        }
        return Ok(());
    }
    let mut rows: Vec<[String; 6]> = Vec::new();
    for img in &images {
        let digest = img
            .repo_digests
            .first()
            .and_then(|d| d.rsplit_once('@'))
            .map(|(_, d)| d.to_string());
        let names: Vec<(String, String)> = if img.repo_tags.is_empty() {
            vec![("<none>".into(), "<none>".into())]
        } else {
            img.repo_tags
                .iter()
                .map(|t| match Reference::parse(t) {
                    Ok(r) => (r.familiar(), r.tag().unwrap_or("<none>").to_string()),
                    Err(_) => (t.clone(), "<none>".into()),
                })
                .collect()
        };
        for (repo, tag) in names {
            rows.push([
                repo,
                tag,
                digest.clone().unwrap_or_else(|| "<none>".into()),
                img.id.short().to_string(),
                human_created(img.created.as_deref()),
                human_size(img.size),
            ]);
        }
    }
    if a.format == "json" {
        for r in &rows {
            let v = json!({"Repository": r[0], "Tag": r[1], "Digest": r[2], "ID": r[3], "CreatedSince": r[4], "Size": r[5]});
            println!("{v}");
        }
        return Ok(());
    }
    let mut header = vec!["REPOSITORY", "TAG"];
    if a.digests {
        header.push("DIGEST");
    }
    header.extend(["IMAGE ID", "CREATED", "SIZE"]);
    let table: Vec<Vec<String>> = std::iter::once(header.iter().map(|s| s.to_string()).collect())
        .chain(rows.iter().map(|r| {
            let mut v = vec![r[0].clone(), r[1].clone()];
            if a.digests {
                v.push(r[2].clone());
            }
            v.extend([r[3].clone(), r[4].clone(), r[5].clone()]);
            v
        }))
        .collect();
    print!("{}", super::tabwrite(&table, 0, 3));
    Ok(())
}

/// `docker image inspect`: a JSON array, the fields docker users script against.
fn inspect(engine: &Engine, a: &InspectArgs) -> anyhow::Result<()> {
    let mut out = Vec::new();
    for name in &a.images {
        let img = resolve(engine, name)?;
        out.push(json!({
            "Id": img.id.to_string(),
            "RepoTags": img.repo_tags,
            "RepoDigests": img.repo_digests,
            "Created": img.created,
            "Architecture": img.architecture,
            "Os": img.os,
            "Variant": img.variant,
            "Size": img.size,
            "Config": {
                "Entrypoint": img.config.entrypoint,
                "Cmd": img.config.cmd,
                "Env": img.config.env,
                "WorkingDir": img.config.working_dir.clone().unwrap_or_default(),
                "User": img.config.user.clone().unwrap_or_default(),
                "ExposedPorts": img.config.exposed_ports.iter().map(|p| (p.clone(), json!({}))).collect::<serde_json::Map<_, _>>(),
                "Volumes": img.config.volumes.iter().map(|p| (p.clone(), json!({}))).collect::<serde_json::Map<_, _>>(),
                "Labels": img.config.labels,
                "StopSignal": img.config.stop_signal,
            },
            "RootFS": {"Type": "layers", "Layers": img.layers.iter().map(|l| l.diff_id.to_string()).collect::<Vec<_>>()},
            "Metadata": {"ManifestDigest": img.manifest_digest.as_ref().map(Digest::to_string)},
        }));
    }
    println!("{}", serde_json::to_string_pretty(&out)?);
    Ok(())
}

/// `docker rmi`: a name is untagged (the image goes with its last name); an id removes the
/// image, refused when it has several names unless `--force`. Blobs and layers nothing
/// references any more are collected afterwards.
fn rm(engine: &Engine, a: &RmArgs) -> anyhow::Result<()> {
    let in_use =
        berth_engine::container::store::ContainerStore::open(&engine.stores.root)?.image_users()?;
    let mut failed = false;
    let mut removed_any = false;
    for name in &a.images {
        // Names are stored normalised (`docker.io/library/busybox:latest`); ids as given.
        let key = match Reference::parse(name) {
            Ok(r) if engine.stores.images.refs()?.contains_key(&r.to_string()) => r.to_string(),
            _ => resolve(engine, name)
                .map(|img| img.id.to_string())
                .unwrap_or_else(|_| name.clone()),
        };
        match berth_engine::prune::remove_image(&engine.stores, &key, a.force, &in_use) {
            Ok(report) => {
                for t in &report.untagged {
                    println!("Untagged: {}", familiar(t));
                }
                if let Some(id) = &report.deleted {
                    println!("Deleted: {id}");
                    removed_any = true;
                }
            }
            Err(e) => {
                eprintln!("Error response from daemon: {e}");
                failed = true;
            }
        }
    }
    if removed_any {
        berth_engine::prune::collect_garbage(&engine.stores)?;
    }
    if failed {
        bail!("some images could not be removed");
    }
    Ok(())
}

/// `docker image prune`: dangling images (or with `-a` every unused one), then what nothing
/// references; prints what went and the space reclaimed.
fn prune(engine: &Engine, a: &PruneArgs) -> anyhow::Result<()> {
    if !a.force {
        use std::io::{BufRead, IsTerminal, Write};
        let what = if a.all {
            "all images without at least one container associated to them"
        } else {
            "all dangling images"
        };
        if !std::io::stdin().is_terminal() {
            bail!("this would remove {what}\nhint: pass --force to confirm");
        }
        eprint!("WARNING! This will remove {what}.\nAre you sure you want to continue? [y/N] ");
        std::io::stderr().flush().ok();
        let mut line = String::new();
        std::io::stdin().lock().read_line(&mut line)?;
        if !matches!(line.trim(), "y" | "Y" | "yes") {
            return Ok(());
        }
    }
    let in_use =
        berth_engine::container::store::ContainerStore::open(&engine.stores.root)?.image_users()?;
    let report = berth_engine::prune::prune_images(&engine.stores, a.all, &in_use)?;
    if !report.images_removed.is_empty() {
        println!("Deleted Images:");
        for t in &report.untagged {
            println!("untagged: {}", familiar(t));
        }
        for id in &report.images_removed {
            println!("deleted: {id}");
        }
        println!();
    }
    println!(
        "Total reclaimed space: {}",
        human_size(report.bytes_reclaimed)
    );
    Ok(())
}

/// `docker load`: prints `Loaded image: NAME` per name (or `Loaded image ID:` for an image
/// without names).
fn load(engine: &Engine, a: &LoadArgs) -> anyhow::Result<()> {
    use berth_engine::transfer;
    let images = match &a.input {
        Some(path) => {
            let f = std::fs::File::open(path)
                .with_context(|| format!("failed to open {}", path.display()))?;
            transfer::load(
                &engine.stores,
                std::io::BufReader::with_capacity(1 << 20, f),
            )
        }
        None => {
            use std::io::IsTerminal;
            if std::io::stdin().is_terminal() {
                bail!(
                    "requested load from stdin, but stdin is empty\nhint: berth image load -i archive.tar"
                );
            }
            transfer::load(
                &engine.stores,
                std::io::BufReader::with_capacity(1 << 20, std::io::stdin().lock()),
            )
        }
    }?;
    if !a.quiet {
        for img in &images {
            if img.repo_tags.is_empty() {
                println!("Loaded image ID: {}", img.id);
            }
            for t in &img.repo_tags {
                println!("Loaded image: {}", familiar(t));
            }
        }
    }
    Ok(())
}

/// `docker save`: to `-o FILE`, or to stdout when it is not a terminal.
fn save(engine: &Engine, a: &SaveArgs) -> anyhow::Result<()> {
    use berth_engine::transfer::{self, SaveFormat};
    let format = match a.format.as_str() {
        "docker" => SaveFormat::Docker,
        "oci" => SaveFormat::Oci,
        other => bail!("unknown archive format {other:?}\nhint: use docker or oci"),
    };
    // Names are stored normalised; ids and id prefixes as given.
    let names: Vec<String> = a
        .images
        .iter()
        .map(|n| match Reference::parse(n) {
            Ok(r) if engine.stores.images.resolve(&r.to_string()).is_ok() => r.to_string(),
            _ => n.clone(),
        })
        .collect();
    match &a.output {
        Some(path) => {
            // Written beside the target and renamed: a failed save leaves no partial archive.
            let tmp = path.with_extension("berth-partial");
            let f = std::fs::File::create(&tmp)
                .with_context(|| format!("failed to create {}", tmp.display()))?;
            let mut w = std::io::BufWriter::with_capacity(1 << 20, f);
            let r = transfer::save(&engine.stores, &names, &mut w, format)
                .map_err(anyhow::Error::from)
                .and_then(|()| {
                    use std::io::Write;
                    w.flush()?;
                    Ok(())
                });
            if let Err(e) = r {
                let _ = std::fs::remove_file(&tmp);
                return Err(e);
            }
            std::fs::rename(&tmp, path)
                .with_context(|| format!("failed to write {}", path.display()))?;
        }
        None => {
            use std::io::IsTerminal;
            if std::io::stdout().is_terminal() {
                bail!(
                    "cowardly refusing to save to a terminal\nhint: use -o FILE or redirect stdout"
                );
            }
            let out = std::io::stdout().lock();
            transfer::save(
                &engine.stores,
                &names,
                std::io::BufWriter::with_capacity(1 << 20, out),
                format,
            )?;
        }
    }
    Ok(())
}

/// `docker import`: prints the new image's id.
fn import(engine: &Engine, a: &ImportArgs) -> anyhow::Result<()> {
    let name = a.reference.as_deref().map(Reference::parse).transpose()?;
    let record = if a.file == "-" {
        berth_engine::transfer::import(
            &engine.stores,
            std::io::BufReader::new(std::io::stdin().lock()),
            &a.changes,
            name.as_ref(),
        )?
    } else {
        let f =
            std::fs::File::open(&a.file).with_context(|| format!("failed to open {}", a.file))?;
        berth_engine::transfer::import(
            &engine.stores,
            std::io::BufReader::with_capacity(1 << 20, f),
            &a.changes,
            name.as_ref(),
        )?
    };
    println!("{}", record.id);
    Ok(())
}

/// A stored full name as docker prints it (`busybox:latest`).
fn familiar(name: &str) -> String {
    Reference::parse(name)
        .map(|r| r.familiar_string())
        .unwrap_or_else(|_| name.to_string())
}

fn tag(engine: &Engine, a: &TagArgs) -> anyhow::Result<()> {
    let img = resolve(engine, &a.source)?;
    let target = Reference::parse(&a.target)?;
    engine.stores.images.tag(&img.id, &target.to_string())?;
    Ok(())
}

/// An image by name (normalised as docker does), id or id prefix.
pub fn resolve(engine: &Engine, name: &str) -> anyhow::Result<ImageRecord> {
    let images = &engine.stores.images;
    if let Ok(r) = Reference::parse(name)
        && let Ok(img) = images.resolve(&r.to_string())
    {
        return Ok(img);
    }
    images
        .resolve(name)
        .with_context(|| format!("no such image: {name}"))
}

/// docker's SIZE column: go-units `HumanSizeWithPrecision(size, 3)`.
fn human_size(bytes: u64) -> String {
    crate::progress::human_size(bytes, 3)
}

fn human_created(created: Option<&str>) -> String {
    let Some(t) = created.and_then(parse_rfc3339) else {
        return "N/A".into();
    };
    let ago = SystemTime::now()
        .duration_since(t)
        .unwrap_or(Duration::ZERO)
        .as_secs();
    let (n, unit) = match ago {
        s if s < 60 => return "Less than a minute ago".into(),
        s if s < 3600 => (s / 60, "minute"),
        s if s < 86_400 => (s / 3600, "hour"),
        s if s < 14 * 86_400 => (s / 86_400, "day"),
        s if s < 60 * 86_400 => (s / (7 * 86_400), "week"),
        s if s < 730 * 86_400 => (s / (30 * 86_400), "month"),
        s => (s / (365 * 86_400), "year"),
    };
    if n == 1 {
        format!("1 {unit} ago").replace("1 hour", "About an hour")
    } else {
        format!("{n} {unit}s ago")
    }
}

/// `2024-01-02T03:04:05[.fff]Z` (or with an offset) to a time; `None` when unreadable.
fn parse_rfc3339(s: &str) -> Option<SystemTime> {
    let (date, rest) = s.split_once('T')?;
    let mut d = date.split('-').map(|x| x.parse::<i64>().ok());
    let (y, m, day) = (d.next()??, d.next()??, d.next()??);
    let time = rest.get(..8)?;
    let mut t = time.split(':').map(|x| x.parse::<i64>().ok());
    let (hh, mm, ss) = (t.next()??, t.next()??, t.next()??);
    // Days from civil (Howard Hinnant's algorithm).
    let y2 = if m <= 2 { y - 1 } else { y };
    let era = y2.div_euclid(400);
    let yoe = y2 - era * 400;
    let doy = (153 * (m + if m > 2 { -3 } else { 9 }) + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let secs = days * 86_400 + hh * 3600 + mm * 60 + ss;
    let offset = rest[8..].trim_start_matches(|c: char| c == '.' || c.is_ascii_digit());
    let secs = match offset.as_bytes().first() {
        Some(b'+') | Some(b'-') if offset.len() >= 6 => {
            let sign = if offset.starts_with('-') { -1 } else { 1 };
            let oh: i64 = offset[1..3].parse().ok()?;
            let om: i64 = offset[4..6].parse().ok()?;
            secs - sign * (oh * 3600 + om * 60)
        }
        _ => secs,
    };
    u64::try_from(secs)
        .ok()
        .map(|s| SystemTime::UNIX_EPOCH + Duration::from_secs(s))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_are_decimal_like_docker() {
        assert_eq!(human_size(999), "999B");
        assert_eq!(human_size(4_261_000), "4.26MB");
        assert_eq!(human_size(1_500_000_000), "1.5GB");
        assert_eq!(human_size(426_100_000), "426MB");
        assert_eq!(human_size(42_610), "42.6kB");
    }

    #[test]
    fn rfc3339_times() {
        let t = parse_rfc3339("1970-01-02T00:00:01Z").unwrap();
        assert_eq!(
            t.duration_since(SystemTime::UNIX_EPOCH).unwrap().as_secs(),
            86_401
        );
        let t = parse_rfc3339("1970-01-02T01:00:01.123+01:00").unwrap();
        assert_eq!(
            t.duration_since(SystemTime::UNIX_EPOCH).unwrap().as_secs(),
            86_401
        );
        assert!(parse_rfc3339("yesterday").is_none());
    }
}
