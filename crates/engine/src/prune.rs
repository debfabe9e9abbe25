//! Removing images and collecting what no image needs any more: `docker rmi`,
//! `docker image prune [-a]` and the garbage collection of blobs and layers behind them.
//!
//! Removing an image only drops its record and names; its blobs and layers go with
//! [`collect_garbage`], which deletes everything in `content/` and `layers/` that is not
//! reachable from an image record ([`ImageStore::gc_roots`](crate::images::ImageStore::gc_roots)).
//!
//! Not safe against a concurrent pull in another process: a pull commits blobs and layers
//! before it writes the image record that makes them reachable, and a collection running in
//! that window deletes them (the pull then fails or must be retried). Callers serialise pulls
//! and collections (containerd uses leases for this).

use std::collections::{BTreeSet, HashSet};
use std::fs;
use std::io;
use std::time::Duration;

use crate::content::ContentError;
use crate::digest::Digest;
use crate::fsutil::{self, FsError};
use crate::images::{ImageError, ImageRecord};
use crate::layers::LayerError;
use crate::layout::{LAYER_TMP_PREFIX, Stores};
use crate::rootfs::{INIT_LAYERS_DIR, link_id};

/// Ingest files untouched for this long are abandoned downloads.
pub const STALE_INGEST_AGE: Duration = Duration::from_secs(60 * 60);

/// Why removing or pruning failed.
#[derive(Debug, thiserror::Error)]
pub enum PruneError {
    /// The image is used by a container (`force` overrides).
    #[error("conflict: unable to remove {reference} (must be forced) - image {} is in use by a container", id.short())]
    InUse { reference: String, id: Digest },
    /// Removing by id an image named in several repositories (`force` overrides).
    #[error(
        "conflict: unable to delete {} (must be forced) - image is referenced in multiple repositories: {}",
        id.short(),
        repositories.join(", ")
    )]
    MultipleRepositories {
        id: Digest,
        repositories: Vec<String>,
    },
    /// The image store failed (including "no such image").
    #[error(transparent)]
    Image(#[from] ImageError),
    /// The content store failed.
    #[error(transparent)]
    Content(#[from] ContentError),
    /// The layer store failed.
    #[error(transparent)]
    Layer(#[from] LayerError),
    /// A filesystem operation failed.
    #[error(transparent)]
    Fs(#[from] FsError),
}

/// What a prune removed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PruneReport {
    /// Image ids whose records were removed.
    pub images_removed: Vec<Digest>,
    /// Names removed with those images.
    pub untagged: Vec<String>,
    /// Blobs deleted from the content store.
    pub blobs_removed: Vec<Digest>,
    /// chainIDs of the layers deleted from the layer store.
    pub layers_removed: Vec<Digest>,
    /// Abandoned ingest files removed.
    pub ingest_removed: usize,
    /// Leftover `layers/.tmp-*` directories removed.
    pub tmp_removed: usize,
    /// Blob bytes plus the unpacked size of the removed layers.
    pub bytes_reclaimed: u64,
}

/// What [`remove_image`] did, as `docker rmi` prints it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RemoveReport {
    /// Names removed (`Untagged:` lines).
    pub untagged: Vec<String>,
    /// The image id, when the image itself was removed (`Deleted:` line).
    pub deleted: Option<Digest>,
}

/// The repository part of a stored name: without `@digest`, or without the `:tag` after the
/// last `/`.
fn repository(name: &str) -> &str {
    if let Some((repo, _)) = name.split_once('@') {
        return repo;
    }
    let last_slash = name.rfind('/').map_or(0, |i| i + 1);
    match name[last_slash..].rfind(':') {
        Some(colon) => &name[..last_slash + colon],
        None => name,
    }
}

fn names(image: &ImageRecord) -> Vec<String> {
    let mut all: Vec<String> = image
        .repo_tags
        .iter()
        .chain(&image.repo_digests)
        .cloned()
        .collect();
    all.sort();
    all
}

/// `docker rmi`: `name_or_id` is a full name (as stored in refs.json) or an id / id prefix.
///
/// By name: the name is removed, and when it was the last tag of its repository, that
/// repository's digest names go too (as Docker does). The image itself is removed only when
/// no name is left; then, if it is in `in_use`, nothing changes unless `force`.
/// By id: the image and all its names are removed; without `force` this is refused when the
/// names span several repositories or the image is in `in_use`. An image in `in_use` is never
/// deleted, even with `force`: only its names go.
///
/// Blobs and layers stay until [`collect_garbage`].
pub fn remove_image(
    stores: &Stores,
    name_or_id: &str,
    force: bool,
    in_use: &HashSet<Digest>,
) -> Result<RemoveReport, PruneError> {
    let by_name = stores.images.refs()?.contains_key(name_or_id);
    let image = stores.images.resolve(name_or_id)?;
    let all = names(&image);
    let used = in_use.contains(&image.id);
    if by_name {
        let mut doomed = vec![name_or_id.to_string()];
        if !name_or_id.contains('@') {
            let repo = repository(name_or_id);
            let other_tags = all
                .iter()
                .any(|n| n != name_or_id && !n.contains('@') && repository(n) == repo);
            if !other_tags {
                doomed.extend(
                    all.iter()
                        .filter(|n| n.contains('@') && repository(n) == repo)
                        .cloned(),
                );
            }
        }
        if all.iter().any(|n| !doomed.contains(n)) {
            // Still named: untag only, in use or not.
            for name in &doomed {
                stores.images.untag(name)?;
            }
            doomed.sort();
            return Ok(RemoveReport {
                untagged: doomed,
                deleted: None,
            });
        }
        if used && !force {
            return Err(PruneError::InUse {
                reference: name_or_id.to_string(),
                id: image.id,
            });
        }
    } else if !force {
        let repositories: BTreeSet<&str> = all.iter().map(|n| repository(n)).collect();
        if repositories.len() > 1 {
            return Err(PruneError::MultipleRepositories {
                id: image.id,
                repositories: repositories.into_iter().map(str::to_string).collect(),
            });
        }
        if used {
            return Err(PruneError::InUse {
                reference: image.id.short().to_string(),
                id: image.id,
            });
        }
    }
    if used {
        // Forced, but a container still stands on this image's layers: its names go, the
        // record stays (a dangling image, as Docker leaves it) so collection keeps the layers.
        for name in &all {
            stores.images.untag(name)?;
        }
        return Ok(RemoveReport {
            untagged: all,
            deleted: None,
        });
    }
    stores.images.remove(&image.id)?;
    Ok(RemoveReport {
        untagged: all,
        deleted: Some(image.id),
    })
}

/// `docker image prune [-a]`: removes the images without any name (dangling), or with `all`
/// every image, skipping those in `in_use`; then [`collect_garbage`]. The report holds both.
pub fn prune_images(
    stores: &Stores,
    all: bool,
    in_use: &HashSet<Digest>,
) -> Result<PruneReport, PruneError> {
    let mut report = PruneReport::default();
    for image in stores.images.list()? {
        let named = !image.repo_tags.is_empty() || !image.repo_digests.is_empty();
        if in_use.contains(&image.id) || (named && !all) {
            continue;
        }
        if stores.images.remove(&image.id)? {
            report.untagged.extend(names(&image));
            report.images_removed.push(image.id);
        }
    }
    let gc = collect_garbage(stores)?;
    Ok(PruneReport {
        images_removed: report.images_removed,
        untagged: report.untagged,
        ..gc
    })
}

/// Deletes every blob and layer not reachable from an image record, the short links of the
/// removed layers (and any link left dangling), ingest files older than
/// [`STALE_INGEST_AGE`] and leftover `layers/.tmp-*` directories.
pub fn collect_garbage(stores: &Stores) -> Result<PruneReport, PruneError> {
    // No pull, load or import may be between storing content and recording its image.
    let _guard = stores.collection_guard()?;
    let roots = stores.images.gc_roots()?;
    let mut report = PruneReport::default();

    for blob in stores.content.list()? {
        if roots.blobs.contains(&blob) {
            continue;
        }
        let size = match stores.content.size(&blob) {
            Ok(size) => size,
            Err(ContentError::NotFound { .. }) => continue,
            Err(e) => return Err(e.into()),
        };
        if stores.content.delete(&blob)? {
            report.bytes_reclaimed += size;
            report.blobs_removed.push(blob);
        }
    }

    // Read the directory rather than `LayerStore::list`, so that a layer with a corrupt or
    // missing meta.json is collected too instead of stopping the collection.
    let layers_dir = stores.root.layers_dir();
    let mut layers = Vec::new();
    let entries =
        fs::read_dir(&layers_dir).map_err(|e| FsError::io("read directory", &layers_dir, e))?;
    for entry in entries {
        let entry = entry.map_err(|e| FsError::io("read directory", &layers_dir, e))?;
        if let Ok(chain_id) = Digest::from_hex(&entry.file_name().to_string_lossy()) {
            layers.push(chain_id);
        }
    }
    layers.sort();
    let links_dir = stores.root.layer_links_dir();
    // Link ids of the layers that stay: their init layers stay too.
    let mut kept = HashSet::new();
    for chain_id in layers {
        if roots.chain_ids.contains(&chain_id) {
            kept.insert(link_id(&chain_id));
            continue;
        }
        let size = stores
            .layers
            .get(&chain_id)
            .ok()
            .flatten()
            .map_or(0, |m| m.size);
        if stores.layers.remove(&chain_id)? {
            remove_link(&links_dir.join(link_id(&chain_id)))?;
            report.bytes_reclaimed += size;
            report.layers_removed.push(chain_id);
        } else {
            kept.insert(link_id(&chain_id));
        }
    }
    remove_dangling_links(&links_dir)?;
    remove_stale_init_layers(stores, &kept)?;

    report.ingest_removed = stores.content.prune_ingest(STALE_INGEST_AGE)?;
    report.tmp_removed = stores.layers.prune_tmp()?;
    Ok(report)
}

fn remove_link(link: &std::path::Path) -> Result<(), FsError> {
    match fs::remove_file(link) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(FsError::io("remove", link, e)),
    }
}

/// Removes init layers (see [`crate::rootfs`]) whose top layer is gone, and the leftovers of
/// interrupted ones.
fn remove_stale_init_layers(stores: &Stores, live: &HashSet<String>) -> Result<(), FsError> {
    let dir = stores.root.layers_dir().join(INIT_LAYERS_DIR);
    let entries = match fs::read_dir(&dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(FsError::io("read directory", &dir, e)),
    };
    for entry in entries {
        let entry = entry.map_err(|e| FsError::io("read directory", &dir, e))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let stale = match name.strip_prefix(LAYER_TMP_PREFIX) {
            Some(rest) => !fsutil::unique_name_owner_alive(rest),
            None => !live.contains(&name),
        };
        if stale {
            fsutil::remove_dir_all_best_effort(&entry.path());
        }
    }
    Ok(())
}

/// Removes links in `layers/l/` whose layer is gone (a layer removed by an older berth or
/// an interrupted collection).
fn remove_dangling_links(links_dir: &std::path::Path) -> Result<(), FsError> {
    let entries = match fs::read_dir(links_dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(FsError::io("read directory", links_dir, e)),
    };
    for entry in entries {
        let entry = entry.map_err(|e| FsError::io("read directory", links_dir, e))?;
        let path = entry.path();
        let is_link = entry.file_type().is_ok_and(|t| t.is_symlink());
        if is_link && fs::metadata(&path).is_err_and(|e| e.kind() == io::ErrorKind::NotFound) {
            remove_link(&path)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::images::ImageConfig;

    fn record(seed: &str) -> ImageRecord {
        ImageRecord {
            id: Digest::of_bytes(format!("config {seed}").as_bytes()),
            manifest_digest: None,
            repo_tags: vec![],
            repo_digests: vec![],
            created: None,
            architecture: "amd64".to_string(),
            os: "linux".to_string(),
            variant: None,
            config: ImageConfig::default(),
            layers: vec![],
            size: 0,
        }
    }

    fn put(stores: &Stores, seed: &str, names: &[&str]) -> Digest {
        let mut r = record(seed);
        for n in names {
            if n.contains('@') {
                r.repo_digests.push(n.to_string());
            } else {
                r.repo_tags.push(n.to_string());
            }
        }
        stores.images.put(&r).unwrap();
        r.id
    }

    fn names_of(stores: &Stores, id: &Digest) -> Option<Vec<String>> {
        stores.images.get(id).unwrap().map(|r| names(&r))
    }

    #[test]
    fn repository_of_names() {
        assert_eq!(
            repository("docker.io/library/busybox:latest"),
            "docker.io/library/busybox"
        );
        assert_eq!(repository("localhost:5000/app"), "localhost:5000/app");
        assert_eq!(repository("localhost:5000/app:v1"), "localhost:5000/app");
        assert_eq!(
            repository("localhost:5000/app@sha256:abc"),
            "localhost:5000/app"
        );
    }

    #[test]
    fn rmi_by_name_untags_until_the_last_name() {
        let dir = tempfile::tempdir().unwrap();
        let stores = Stores::open(dir.path()).unwrap();
        let none = HashSet::new();
        let digest_name = format!("r.io/a@{}", Digest::of_bytes(b"m"));
        let id = put(
            &stores,
            "a",
            &["r.io/a:1", "r.io/a:2", &digest_name, "r.io/b:1"],
        );
        let in_use: HashSet<Digest> = [id.clone()].into();

        // Another tag of r.io/a remains: only this name goes (in use or not).
        let r = remove_image(&stores, "r.io/a:1", false, &in_use).unwrap();
        assert_eq!(r.untagged, ["r.io/a:1"]);
        assert_eq!(r.deleted, None);
        // Last tag of r.io/a: its digest name goes with it; r.io/b:1 keeps the image.
        let r = remove_image(&stores, "r.io/a:2", false, &none).unwrap();
        assert_eq!(r.untagged, ["r.io/a:2".to_string(), digest_name.clone()]);
        assert_eq!(r.deleted, None);
        assert_eq!(names_of(&stores, &id).unwrap(), ["r.io/b:1"]);

        // The last name of an image in use: refused, nothing changes.
        let err = remove_image(&stores, "r.io/b:1", false, &in_use).unwrap_err();
        assert!(
            matches!(&err, PruneError::InUse { id: i, .. } if *i == id),
            "{err}"
        );
        assert!(err.to_string().contains(id.short()), "{err}");
        assert_eq!(names_of(&stores, &id).unwrap(), ["r.io/b:1"]);
        // Forced while in use: the name goes, the record stays (a container needs its layers).
        let r = remove_image(&stores, "r.io/b:1", true, &in_use).unwrap();
        assert_eq!(r.untagged, ["r.io/b:1"]);
        assert_eq!(r.deleted, None);
        assert_eq!(names_of(&stores, &id).unwrap(), Vec::<String>::new());
        // Not in use any more: by id, the image goes.
        let r = remove_image(&stores, &id.to_string(), false, &none).unwrap();
        assert_eq!(r.deleted, Some(id.clone()));
        assert_eq!(names_of(&stores, &id), None);

        let other = put(&stores, "b", &["r.io/c:1"]);
        let r = remove_image(&stores, "r.io/c:1", false, &none).unwrap();
        assert_eq!(r.deleted, Some(other));
        let err = remove_image(&stores, "r.io/c:1", false, &none).unwrap_err();
        assert!(
            matches!(err, PruneError::Image(ImageError::NotFound { .. })),
            "{err}"
        );
    }

    #[test]
    fn rmi_by_id_needs_force_across_repositories_or_in_use() {
        let dir = tempfile::tempdir().unwrap();
        let stores = Stores::open(dir.path()).unwrap();
        let none = HashSet::new();
        let id = put(&stores, "a", &["r.io/a:1", "r.io/b:1"]);
        let err = remove_image(&stores, id.short(), false, &none).unwrap_err();
        assert!(
            matches!(&err, PruneError::MultipleRepositories { repositories, .. } if repositories == &["r.io/a", "r.io/b"]),
            "{err}"
        );
        assert_eq!(names_of(&stores, &id).unwrap().len(), 2);
        let r = remove_image(&stores, &id.to_string(), true, &none).unwrap();
        assert_eq!(r.untagged, ["r.io/a:1", "r.io/b:1"]);
        assert_eq!(r.deleted, Some(id.clone()));
        assert!(stores.images.list().unwrap().is_empty());

        // Several tags of one repository: no force needed, unless in use.
        let id = put(&stores, "b", &["r.io/a:1", "r.io/a:2"]);
        let in_use: HashSet<Digest> = [id.clone()].into();
        let err = remove_image(&stores, id.hex(), false, &in_use).unwrap_err();
        assert!(matches!(err, PruneError::InUse { .. }), "{err}");
        assert!(names_of(&stores, &id).is_some());
        let r = remove_image(&stores, id.hex(), false, &none).unwrap();
        assert_eq!(r.untagged, ["r.io/a:1", "r.io/a:2"]);
        assert_eq!(r.deleted, Some(id));

        // An unnamed image by id.
        let id = put(&stores, "c", &[]);
        let r = remove_image(&stores, id.hex(), false, &none).unwrap();
        assert_eq!(
            r,
            RemoveReport {
                untagged: vec![],
                deleted: Some(id)
            }
        );
    }

    #[test]
    fn prune_images_takes_dangling_ones_or_all_but_those_in_use() {
        let dir = tempfile::tempdir().unwrap();
        let stores = Stores::open(dir.path()).unwrap();
        let named = put(&stores, "named", &["r.io/a:1"]);
        let by_digest = put(&stores, "digest", &["r.io/d@sha256:0000"]);
        let dangling = put(&stores, "dangling", &[]);
        let used_dangling = put(&stores, "used", &[]);
        let in_use: HashSet<Digest> = [used_dangling.clone(), named.clone()].into();

        let r = prune_images(&stores, false, &in_use).unwrap();
        assert_eq!(r.images_removed, [dangling]);
        assert!(r.untagged.is_empty());
        let r = prune_images(&stores, true, &in_use).unwrap();
        assert_eq!(r.images_removed, [by_digest]);
        assert_eq!(r.untagged, ["r.io/d@sha256:0000"]);
        let left: Vec<Digest> = stores
            .images
            .list()
            .unwrap()
            .into_iter()
            .map(|r| r.id)
            .collect();
        let mut want = vec![named, used_dangling];
        want.sort();
        assert_eq!(left, want);
    }
}
