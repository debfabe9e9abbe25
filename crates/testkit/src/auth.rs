//! A tiny token-auth front for a [`Registry`](crate::Registry), as Docker Hub does it: `/v2/*`
//! without a valid bearer token answers 401 with
//! `WWW-Authenticate: Bearer realm=…,service=…,scope=…`; the realm (`/token`) issues a token
//! for the right Basic credentials; authorised requests are forwarded to the real registry.
//!
//! Meant for pulls: `Location` headers of upload sessions still name the real registry.

use std::collections::HashSet;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use base64::Engine as _;

/// The `service` the front names in its challenges.
pub const SERVICE: &str = "berth-testkit";

struct State {
    upstream: SocketAddr,
    user: String,
    password: String,
    /// Accepted by `POST /token` with `grant_type=refresh_token` (Docker Hub's OAuth2 flow for
    /// an identity token).
    refresh_token: Option<String>,
    tokens: Mutex<HashSet<String>>,
    counter: AtomicU64,
    realm: String,
}

/// The running front; stopped on drop.
pub struct TokenAuthFront {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for TokenAuthFront {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenAuthFront")
            .field("addr", &self.addr)
            .finish()
    }
}

impl TokenAuthFront {
    /// Fronts `registry`, accepting only `user` / `password`.
    pub fn start(registry: &crate::Registry, user: &str, password: &str) -> TokenAuthFront {
        TokenAuthFront::start_with(registry, user, password, None)
    }

    /// Like [`TokenAuthFront::start`], also exchanging `refresh_token` for access tokens.
    pub fn start_with_refresh_token(
        registry: &crate::Registry,
        refresh_token: &str,
    ) -> TokenAuthFront {
        TokenAuthFront::start_with(registry, "-", "-", Some(refresh_token.to_string()))
    }

    fn start_with(
        registry: &crate::Registry,
        user: &str,
        password: &str,
        refresh_token: Option<String>,
    ) -> TokenAuthFront {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind auth front");
        let addr = listener.local_addr().expect("auth front address");
        let state = Arc::new(State {
            upstream: registry.addr(),
            user: user.into(),
            password: password.into(),
            refresh_token,
            tokens: Mutex::new(HashSet::new()),
            counter: AtomicU64::new(0),
            realm: format!("http://{addr}/token"),
        });
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let stop = Arc::clone(&stop);
            std::thread::spawn(move || {
                for conn in listener.incoming() {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(conn) = conn else { continue };
                    let state = Arc::clone(&state);
                    std::thread::spawn(move || handle(conn, &state));
                }
            })
        };
        TokenAuthFront {
            addr,
            stop,
            thread: Some(thread),
        }
    }

    /// `127.0.0.1:PORT` of the front.
    pub fn host(&self) -> String {
        self.addr.to_string()
    }
}

impl Drop for TokenAuthFront {
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
        if head.len() > 64 * 1024 || conn.read(&mut byte).ok()? == 0 {
            return None;
        }
        head.push(byte[0]);
    }
    String::from_utf8(head).ok()
}

fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines().skip(1).find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

fn respond(conn: &mut TcpStream, status: &str, extra: &str, body: &[u8]) {
    let _ = write!(
        conn,
        "HTTP/1.1 {status}\r\n{extra}Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let _ = conn.write_all(body);
}

fn issue_token(state: &State) -> String {
    let n = state.counter.fetch_add(1, Ordering::SeqCst);
    let token = crate::image::sha256(format!("{n}:{:?}", std::time::SystemTime::now()).as_bytes())
        .replace("sha256:", "");
    state
        .tokens
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .insert(token.clone());
    token
}

fn handle(mut conn: TcpStream, state: &State) {
    let Some(head) = read_head(&mut conn) else {
        return;
    };
    let target = head.split_whitespace().nth(1).unwrap_or("/").to_string();
    let auth = header(&head, "authorization").unwrap_or("");

    if target.starts_with("/token") && head.starts_with("POST ") {
        // OAuth2: the form body must carry grant_type=refresh_token and the known token.
        let len: usize = header(&head, "content-length")
            .and_then(|l| l.parse().ok())
            .unwrap_or(0);
        let mut body = vec![0u8; len.min(64 * 1024)];
        if conn.read_exact(&mut body).is_err() {
            return;
        }
        let form = String::from_utf8_lossy(&body).into_owned();
        let field = |name: &str| {
            form.split('&').find_map(|kv| {
                let (k, v) = kv.split_once('=')?;
                (k == name).then(|| v.to_string())
            })
        };
        let ok = field("grant_type").as_deref() == Some("refresh_token")
            && state.refresh_token.is_some()
            && field("refresh_token") == state.refresh_token
            && field("service").as_deref() == Some(SERVICE);
        if !ok {
            respond(
                &mut conn,
                "401 Unauthorized",
                "",
                br#"{"error":"invalid_grant"}"#,
            );
            return;
        }
        let token = issue_token(state);
        let body =
            serde_json::to_vec(&serde_json::json!({"access_token": token, "expires_in": 300}))
                .expect("token json");
        respond(&mut conn, "200 OK", "", &body);
        return;
    }

    if target.starts_with("/token") {
        let given = auth
            .strip_prefix("Basic ")
            .and_then(|b| {
                base64::engine::general_purpose::STANDARD
                    .decode(b.trim())
                    .ok()
            })
            .and_then(|b| String::from_utf8(b).ok());
        if given.as_deref() != Some(&format!("{}:{}", state.user, state.password)) {
            respond(
                &mut conn,
                "401 Unauthorized",
                "",
                br#"{"details":"incorrect username or password"}"#,
            );
            return;
        }
        let token = issue_token(state);
        let body = serde_json::to_vec(&serde_json::json!({"token": token, "expires_in": 300}))
            .expect("token json");
        respond(&mut conn, "200 OK", "", &body);
        return;
    }

    let authorised = auth.strip_prefix("Bearer ").is_some_and(|t| {
        state
            .tokens
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains(t.trim())
    });
    if !authorised {
        let repo = target
            .strip_prefix("/v2/")
            .and_then(|r| r.split("/manifests/").next())
            .and_then(|r| r.split("/blobs/").next())
            .unwrap_or("");
        let scope = if repo.is_empty() {
            String::new()
        } else {
            format!(",scope=\"repository:{repo}:pull\"")
        };
        let challenge = format!(
            "WWW-Authenticate: Bearer realm=\"{}\",service=\"{SERVICE}\"{scope}\r\n",
            state.realm
        );
        respond(
            &mut conn,
            "401 Unauthorized",
            &challenge,
            br#"{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}"#,
        );
        return;
    }
    forward(conn, &head, state.upstream);
}

/// Sends the request (minus Authorization, with `Connection: close`) upstream and copies the
/// answer back until upstream closes.
fn forward(mut conn: TcpStream, head: &str, upstream: SocketAddr) {
    let Ok(mut up) = TcpStream::connect(upstream) else {
        respond(&mut conn, "502 Bad Gateway", "", b"{}");
        return;
    };
    let mut lines = head.split("\r\n");
    let mut out = format!("{}\r\n", lines.next().unwrap_or(""));
    for l in lines.filter(|l| !l.is_empty()) {
        let name = l
            .split(':')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        if matches!(name.as_str(), "authorization" | "connection" | "host") {
            continue;
        }
        out.push_str(l);
        out.push_str("\r\n");
    }
    out.push_str(&format!("Host: {upstream}\r\nConnection: close\r\n\r\n"));
    if up.write_all(out.as_bytes()).is_err() {
        return;
    }
    if let Some(len) = header(head, "content-length").and_then(|v| v.parse::<u64>().ok()) {
        let _ = std::io::copy(&mut (&mut conn).take(len), &mut up);
    }
    let _ = std::io::copy(&mut up, &mut conn);
    let _ = conn.shutdown(std::net::Shutdown::Write);
}
