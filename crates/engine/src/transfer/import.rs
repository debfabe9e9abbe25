//! `docker import`: a rootfs tarball becomes a one-layer image.

use std::io::{self, BufWriter, Read, Write};
use std::time::{SystemTime, UNIX_EPOCH};

use super::changes::apply_changes;
use super::load::synthesize_manifest;
use super::{Added, Compression, Result, TransferError, install_tracked, read_head};
use crate::digest::{Digest, DigestWriter};
use crate::images::{ImageConfig, ImageRecord};
use crate::install::{ImageBlobs, LayerBlob};
use crate::layout::Stores;
use crate::reference::Reference;
use crate::registry::Platform;

/// Imports the rootfs tarball `reader` (plain, gzip or zstd; stored as given) as a one-layer
/// image for this host's platform, created now, with its config set by `changes` (see
/// [`apply_changes`]), and names it `name` if given. The config has `rootfs.diff_ids` (the
/// sha256 of the uncompressed tar) and an OCI manifest is stored with it, so the image saves
/// and pushes like a pulled one. On failure nothing this call added stays.
pub fn import<R: Read>(
    stores: &Stores,
    reader: R,
    changes: &[String],
    name: Option<&Reference>,
) -> Result<ImageRecord> {
    // Held until the image record protects what this import stores (see layout::GC_LOCK_FILE).
    let _guard = stores.content_guard()?;
    if let Some(n) = name
        && n.digest().is_some()
    {
        return Err(TransferError::BadName {
            reference: n.to_string(),
            reason: "an imported image is named by a tag, not a digest",
        });
    }
    let mut config = ImageConfig::default();
    apply_changes(&mut config, changes)?;
    let mut added = Added::default();
    let result = import_inner(stores, reader, &config, name, &mut added);
    added.remove_unreferenced(stores);
    result
}

fn import_inner<R: Read>(
    stores: &Stores,
    reader: R,
    config: &ImageConfig,
    name: Option<&Reference>,
    added: &mut Added,
) -> Result<ImageRecord> {
    let layer = store_layer(stores, reader, added)?;
    let created = rfc3339(SystemTime::now());
    let platform = Platform::host();
    let config_json = serde_json::json!({
        "architecture": platform.architecture,
        "os": platform.os,
        "created": created,
        "config": docker_config(config),
        "rootfs": {"type": "layers", "diff_ids": [layer.diff_id.to_string()]},
        "history": [{"created": created, "comment": "Imported from -"}],
    });
    // Serialising a `Value` built here cannot fail.
    let config_bytes = serde_json::to_vec(&config_json).unwrap_or_default();
    let config_digest = Digest::of_bytes(&config_bytes);
    if !stores.content.has(&config_digest) {
        stores.content.put_bytes(&config_bytes)?;
        added.blobs.insert(config_digest.clone());
    }
    let layers = vec![layer.blob];
    let manifest_digest = synthesize_manifest(
        stores,
        &config_digest,
        config_bytes.len() as u64,
        &layers,
        added,
    )?;
    let blobs = ImageBlobs {
        manifest_digest: Some(manifest_digest),
        config_digest,
        layers,
    };
    let names: Vec<String> = name.map(|n| n.to_string()).into_iter().collect();
    install_tracked(stores, &blobs, &[layer.diff_id], &names, added)
}

/// The layer blob as stored, and the sha256 of its uncompressed tar.
struct StoredLayer {
    blob: LayerBlob,
    diff_id: Digest,
}

/// Copies everything read through it to `out`.
struct Tee<R, W> {
    inner: R,
    out: W,
}

impl<R: Read, W: Write> Read for Tee<R, W> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.out.write_all(&buf[..n])?;
        Ok(n)
    }
}

/// Streams the tarball into the content store as is, hashing the blob and (decompressing on
/// the side) the tar inside it.
fn store_layer<R: Read>(stores: &Stores, mut reader: R, added: &mut Added) -> Result<StoredLayer> {
    let read_err = |source| TransferError::Read {
        entry: None,
        source,
    };
    let head = read_head(&mut reader).map_err(read_err)?;
    if head.is_empty() {
        return Err(read_err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "the rootfs tarball is empty",
        )));
    }
    let compression = Compression::detect(&head);
    let ing = stores.content.ingest()?;
    let ingest_path = ing.path.clone();
    let streamed = (|| {
        let mut tee = Tee {
            inner: io::Cursor::new(head).chain(reader),
            out: DigestWriter::new(BufWriter::with_capacity(1 << 20, ing.file)),
        };
        let mut tar_hash = DigestWriter::new(io::sink());
        match compression {
            Compression::None => {
                io::copy(&mut tee, &mut tar_hash)?;
            }
            Compression::Gzip => {
                io::copy(
                    &mut flate2::read::MultiGzDecoder::new(&mut tee),
                    &mut tar_hash,
                )?;
            }
            Compression::Zstd => {
                io::copy(
                    &mut zstd::stream::read::Decoder::new(&mut tee)?,
                    &mut tar_hash,
                )?;
            }
        }
        // Whatever follows the compressed stream is part of the blob too.
        io::copy(&mut tee, &mut io::sink())?;
        let (diff_id, _, _) = tar_hash.finish();
        let (digest, size, buf) = tee.out.finish();
        buf.into_inner().map_err(|e| e.into_error())?.flush()?;
        Ok::<_, io::Error>((digest, size, diff_id))
    })();
    let (digest, size, diff_id) = match streamed {
        Ok(v) => v,
        Err(e) => {
            let _ = std::fs::remove_file(&ingest_path);
            return Err(read_err(e));
        }
    };
    let new = !stores.content.has(&digest);
    stores
        .content
        .commit(&ingest_path, &digest, Some(size), &digest, size)?;
    if new {
        added.blobs.insert(digest.clone());
    }
    Ok(StoredLayer {
        blob: LayerBlob {
            digest,
            media_type: compression.oci_layer_type().to_string(),
            size,
        },
        diff_id,
    })
}

/// The `config` object of a Docker image config, with only the fields that are set.
fn docker_config(c: &ImageConfig) -> serde_json::Value {
    let mut m = serde_json::Map::new();
    let set = |v: &[String]| {
        v.iter()
            .map(|k| (k.clone(), serde_json::json!({})))
            .collect::<serde_json::Map<_, _>>()
    };
    if let Some(u) = &c.user {
        m.insert("User".into(), u.clone().into());
    }
    if !c.exposed_ports.is_empty() {
        m.insert("ExposedPorts".into(), set(&c.exposed_ports).into());
    }
    if !c.env.is_empty() {
        m.insert("Env".into(), c.env.clone().into());
    }
    if let Some(e) = &c.entrypoint {
        m.insert("Entrypoint".into(), e.clone().into());
    }
    if let Some(cmd) = &c.cmd {
        m.insert("Cmd".into(), cmd.clone().into());
    }
    if !c.volumes.is_empty() {
        m.insert("Volumes".into(), set(&c.volumes).into());
    }
    if let Some(w) = &c.working_dir {
        m.insert("WorkingDir".into(), w.clone().into());
    }
    if !c.labels.is_empty() {
        m.insert(
            "Labels".into(),
            serde_json::to_value(&c.labels).unwrap_or_default(),
        );
    }
    if let Some(s) = &c.stop_signal {
        m.insert("StopSignal".into(), s.clone().into());
    }
    m.into()
}

/// `t` as RFC 3339 in UTC with nanoseconds (trailing zeros dropped), as Go's RFC3339Nano.
fn rfc3339(t: SystemTime) -> String {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, day) = civil_from_days(i64::try_from(days).unwrap_or(0));
    let mut s = format!(
        "{y:04}-{m:02}-{day:02}T{:02}:{:02}:{:02}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    );
    let nanos = d.subsec_nanos();
    if nanos != 0 {
        let frac = format!("{nanos:09}");
        s.push('.');
        s.push_str(frac.trim_end_matches('0'));
    }
    s.push('Z');
    s
}

/// Days since 1970-01-01 → (year, month, day) in the proleptic Gregorian calendar.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (
        y,
        u32::try_from(m).unwrap_or(1),
        u32::try_from(d).unwrap_or(1),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn rfc3339_formats_known_instants() {
        let at = |s: u64, n: u32| rfc3339(UNIX_EPOCH + Duration::new(s, n));
        assert_eq!(at(0, 0), "1970-01-01T00:00:00Z");
        assert_eq!(at(951_782_400, 0), "2000-02-29T00:00:00Z");
        assert_eq!(at(1_700_000_000, 120_000_000), "2023-11-14T22:13:20.12Z");
        assert_eq!(at(4_102_444_799, 1), "2099-12-31T23:59:59.000000001Z");
    }

    #[test]
    fn docker_config_has_only_what_is_set() {
        let mut c = ImageConfig::default();
        assert_eq!(docker_config(&c), serde_json::json!({}));
        c.cmd = Some(vec!["sh".into()]);
        c.exposed_ports = vec!["80/tcp".into()];
        c.env = vec!["A=1".into()];
        assert_eq!(
            docker_config(&c),
            serde_json::json!({"ExposedPorts": {"80/tcp": {}}, "Env": ["A=1"], "Cmd": ["sh"]})
        );
    }
}
