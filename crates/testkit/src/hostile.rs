//! A hostile registry on 127.0.0.1 (plain HTTP/1.1, one thread per connection) serving
//! content a client must reject.
//!
//! - `bad:latest`: an OCI manifest whose config is fine and whose layers are, in order,
//!   [`WRONG`] (right size, wrong bytes), [`TRUNCATED`] (Content-Length as promised, then the
//!   connection closes early), [`OVERSIZED`] (more bytes than the descriptor says, no
//!   Content-Length) and [`GOOD`] (served correctly, to show the server itself works).
//! - `huge:latest`: a 100 MB manifest announced by Content-Length and streamed;
//!   `huge-unsized:latest`: the same without Content-Length (body ends when the connection
//!   closes). Neither is ever allocated.
//! - `liar:latest`: a valid manifest whose `Docker-Content-Digest` header names other bytes.
//! - `pinned@`[`pinned_digest`]: `bad`'s manifest served under a digest it does not have.
//! - `private/*`: 401 for everything.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;

use crate::image::{Compression, Format, Layer, sha256};

/// Index in `bad`'s layers of the blob served with wrong bytes.
pub const WRONG: usize = 0;
/// Index of the blob cut short.
pub const TRUNCATED: usize = 1;
/// Index of the blob with more bytes than its descriptor.
pub const OVERSIZED: usize = 2;
/// Index of the blob served correctly.
pub const GOOD: usize = 3;

/// The digest under which `pinned@DIGEST` serves `bad`'s manifest, whose sha256 differs.
pub fn pinned_digest() -> String {
    sha256(b"pinned")
}

/// Size of the `huge` manifests.
pub const HUGE: u64 = 100 * 1024 * 1024;

#[derive(Clone)]
enum Body {
    /// Exactly these bytes with a Content-Length.
    Bytes(Vec<u8>, Option<String>),
    /// Content-Length of `announced`, then only `bytes`, then close.
    Short { bytes: Vec<u8>, announced: u64 },
    /// These bytes, no Content-Length, close to end.
    Unsized(Vec<u8>),
    /// `len` bytes of JSON-ish filler, streamed; with or without Content-Length.
    Huge { len: u64, sized: bool },
}

struct Routes {
    manifests: HashMap<String, Body>,
    blobs: HashMap<String, Body>,
    huge_sent: AtomicU64,
}

/// The running hostile server; stopped on drop.
pub struct HostileServer {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    routes: Arc<Routes>,
    thread: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for HostileServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HostileServer")
            .field("addr", &self.addr)
            .finish()
    }
}

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

impl HostileServer {
    /// Binds 127.0.0.1:0 and serves until dropped.
    pub fn start() -> HostileServer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind hostile server");
        let addr = listener.local_addr().expect("hostile server address");

        let mut manifests = HashMap::new();
        let mut blobs = HashMap::new();

        let config = serde_json::to_vec(&serde_json::json!({
            "architecture": crate::host_arch(), "os": "linux",
            "rootfs": {"type": "layers", "diff_ids": []},
            "config": {},
        }))
        .expect("config json");
        let config_digest = sha256(&config);
        blobs.insert(config_digest.clone(), Body::Bytes(config.clone(), None));

        let promised: Vec<Vec<u8>> = vec![
            pattern(4096, 1),
            pattern(64 * 1024, 2),
            pattern(1000, 3),
            Layer::new(
                &crate::image::app_tar("hostile"),
                Compression::Gzip,
                Format::Oci,
            )
            .blob,
        ];
        let served = [
            Body::Bytes(pattern(4096, 9), None),
            Body::Short {
                bytes: promised[TRUNCATED][..1024].to_vec(),
                announced: promised[TRUNCATED].len() as u64,
            },
            Body::Unsized(pattern(1000 + 256 * 1024, 3)),
            Body::Bytes(promised[GOOD].clone(), None),
        ];
        let mut layers = Vec::new();
        for (bytes, body) in promised.iter().zip(served) {
            let digest = sha256(bytes);
            layers.push(serde_json::json!({
                "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                "digest": digest,
                "size": bytes.len(),
            }));
            blobs.insert(digest, body);
        }
        let manifest = serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                "digest": config_digest,
                "size": config.len(),
            },
            "layers": layers,
        }))
        .expect("manifest json");
        let md = sha256(&manifest);
        manifests.insert(
            "bad:latest".into(),
            Body::Bytes(manifest.clone(), Some(md.clone())),
        );
        manifests.insert(format!("bad:{md}"), Body::Bytes(manifest.clone(), Some(md)));
        manifests.insert(
            format!("pinned:{}", pinned_digest()),
            Body::Bytes(manifest.clone(), None),
        );
        manifests.insert(
            "liar:latest".into(),
            Body::Bytes(manifest, Some(sha256(b"something else"))),
        );
        manifests.insert(
            "huge:latest".into(),
            Body::Huge {
                len: HUGE,
                sized: true,
            },
        );
        manifests.insert(
            "huge-unsized:latest".into(),
            Body::Huge {
                len: HUGE,
                sized: false,
            },
        );

        let routes = Arc::new(Routes {
            manifests,
            blobs,
            huge_sent: AtomicU64::new(0),
        });
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (routes, stop) = (Arc::clone(&routes), Arc::clone(&stop));
            std::thread::spawn(move || {
                for conn in listener.incoming() {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(conn) = conn else { continue };
                    let routes = Arc::clone(&routes);
                    std::thread::spawn(move || serve(conn, &routes));
                }
            })
        };
        HostileServer {
            addr,
            stop,
            routes,
            thread: Some(thread),
        }
    }

    /// Its address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `127.0.0.1:PORT`.
    pub fn host(&self) -> String {
        self.addr.to_string()
    }

    /// Bytes of the huge manifests the server managed to write before the client hung up.
    pub fn huge_bytes_sent(&self) -> u64 {
        self.routes.huge_sent.load(Ordering::SeqCst)
    }
}

impl Drop for HostileServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(self.addr);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn read_head(conn: &mut TcpStream) -> Option<String> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if head.len() > 16 * 1024 || conn.read(&mut byte).ok()? == 0 {
            return None;
        }
        head.push(byte[0]);
    }
    String::from_utf8(head).ok()
}

fn serve(mut conn: TcpStream, routes: &Routes) {
    let Some(head) = read_head(&mut conn) else {
        return;
    };
    let mut parts = head.split_whitespace();
    let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let path = path.split('?').next().unwrap_or(path);
    let head_only = method == "HEAD";

    let body = if path == "/v2/" || path == "/v2" {
        Some(Body::Bytes(b"{}".to_vec(), None))
    } else if let Some(rest) = path.strip_prefix("/v2/") {
        if let Some((name, reference)) = rest.split_once("/manifests/") {
            routes
                .manifests
                .get(&format!("{name}:{reference}"))
                .cloned()
        } else if let Some((_, digest)) = rest.split_once("/blobs/") {
            routes.blobs.get(digest).cloned()
        } else {
            None
        }
    } else {
        None
    };
    if path.starts_with("/v2/private/") {
        let msg = br#"{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}"#;
        let _ = write!(
            conn,
            "HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Basic realm=\"hostile\"\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            msg.len()
        );
        let _ = conn.write_all(msg);
        return;
    }
    let Some(body) = body else {
        let msg = br#"{"errors":[{"code":"MANIFEST_UNKNOWN","message":"unknown"}]}"#;
        let _ = write!(
            conn,
            "HTTP/1.1 404 Not Found\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            msg.len()
        );
        let _ = conn.write_all(msg);
        return;
    };
    let ok =
        "HTTP/1.1 200 OK\r\nConnection: close\r\nDocker-Distribution-API-Version: registry/2.0\r\n";
    let ct = if path.contains("/manifests/") {
        "application/vnd.oci.image.manifest.v1+json"
    } else {
        "application/octet-stream"
    };
    let _ = match body {
        Body::Bytes(bytes, digest) => {
            let digest = digest
                .map(|d| format!("Docker-Content-Digest: {d}\r\n"))
                .unwrap_or_default();
            write!(
                conn,
                "{ok}Content-Type: {ct}\r\n{digest}Content-Length: {}\r\n\r\n",
                bytes.len()
            )
            .and_then(|()| {
                if head_only {
                    Ok(())
                } else {
                    conn.write_all(&bytes)
                }
            })
        }
        Body::Short { bytes, announced } => write!(
            conn,
            "{ok}Content-Type: {ct}\r\nContent-Length: {announced}\r\n\r\n"
        )
        .and_then(|()| conn.write_all(&bytes)),
        Body::Unsized(bytes) => write!(conn, "{ok}Content-Type: {ct}\r\n\r\n").and_then(|()| {
            if head_only {
                Ok(())
            } else {
                conn.write_all(&bytes)
            }
        }),
        Body::Huge { len, sized } => {
            let cl = if sized {
                format!("Content-Length: {len}\r\n")
            } else {
                String::new()
            };
            let r = write!(conn, "{ok}Content-Type: {ct}\r\n{cl}\r\n");
            if r.is_ok() && !head_only {
                let mut chunk = vec![b' '; 64 * 1024];
                chunk[0] = b'{';
                let mut sent = 0u64;
                while sent < len {
                    let n = (len - sent).min(chunk.len() as u64) as usize;
                    if conn.write_all(&chunk[..n]).is_err() {
                        break;
                    }
                    chunk[0] = b' ';
                    sent += n as u64;
                    routes.huge_sent.fetch_add(n as u64, Ordering::SeqCst);
                }
            }
            r
        }
    };
    let _ = conn.flush();
    let _ = conn.shutdown(std::net::Shutdown::Write);
}
