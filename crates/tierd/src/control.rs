//! The control socket: how the CLI talks to a long-running tierd that owns the state file.
//!
//! A Unix stream socket, mode 0600, one JSON request line and one JSON response line per
//! connection. Reads are open to any peer that can connect; changes are refused unless the
//! peer's uid (from `SO_PEERCRED`, which the peer can't forge) is 0.
//!
//! Clients are served concurrently ([`crate::listener`]), each within [`SERVER_DEADLINE`]
//! and with requests of at most [`MAX_REQUEST_BYTES`], so an idle or slow client delays
//! nobody. A change is applied only while its client is still waiting: the server refuses
//! to start one after its deadline, the CLI waits [`CLIENT_TIMEOUT`] (twice as long) for
//! the answer, and a connection beyond the client limit is answered `EAGAIN` at once. So a
//! `tierd path set` that reports a failure does not take effect later; the one window left
//! is a change already saving when the CLI's 10 s run out (a disk stalled for 5 s), and the
//! CLI's timeout message says so.

use std::io::{self, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::listener::{Client, ClientError, Limits, Listener, Warnings};

/// The longest request line: a graph file is at most [`crate::input::MAX_TEXT_BYTES`],
/// and JSON escaping can double it.
pub const MAX_REQUEST_BYTES: usize = 3 << 20;
/// How long the server gives one client for its request and the answer.
pub const SERVER_DEADLINE: Duration = Duration::from_secs(5);
/// How long the CLI waits for an answer: longer than the server's deadline, so that a
/// change the server starts is answered before the CLI gives up.
pub const CLIENT_TIMEOUT: Duration = Duration::from_secs(10);
/// Clients served at once.
pub const MAX_CLIENTS: usize = 32;

use serde::{Deserialize, Serialize};
use tierd_core::{NodeId, PathGraph};

use crate::paths::{ChangeError, Paths, PathsView};

/// A request to the owner of the state.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Request {
    /// The table.
    Show,
    /// A sysfs store of raw bytes to a node's `migration_path`.
    Store {
        /// The node.
        node: u32,
        /// The bytes written, exactly.
        value: Vec<u8>,
    },
    /// The daemon's status (`tierd status`).
    Status,
    /// A whole graph in its TOML form.
    Apply {
        /// The graph file's text.
        graph: String,
        /// Validate only.
        dry_run: bool,
    },
}

/// The owner's answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum Response {
    /// Done; the table after the request.
    Ok {
        /// Bytes consumed by a store (as sysfs returns), else 0.
        count: usize,
        /// The table.
        view: PathsView,
    },
    /// The daemon's status, as JSON (see `crate::daemon::Status`).
    Status {
        /// The status document.
        report: serde_json::Value,
    },
    /// Refused.
    Error {
        /// The errno a sysfs writer would see.
        errno: i32,
        /// Why, for a person.
        message: String,
    },
}

/// Produces the daemon's status for [`Request::Status`].
pub type StatusSource = Arc<dyn Fn() -> serde_json::Value + Send + Sync>;

/// The control server: accepts connections until dropped, then removes its socket.
#[derive(Debug)]
pub struct Server {
    path: PathBuf,
    listener: Option<Listener>,
}

impl Server {
    /// Binds `path` (replacing a stale socket file: the caller owns the state lock, so no
    /// live owner can be using it), sets mode 0600 and serves `paths`.
    pub fn start(path: &Path, paths: Arc<Paths>) -> io::Result<Server> {
        Server::start_with_status(path, paths, None)
    }

    /// [`Server::start`], also answering [`Request::Status`] from `status`.
    pub fn start_with_status(
        path: &Path,
        paths: Arc<Paths>,
        status: Option<StatusSource>,
    ) -> io::Result<Server> {
        match std::fs::symlink_metadata(path) {
            Ok(meta) if std::os::unix::fs::FileTypeExt::is_socket(&meta.file_type()) => {
                std::fs::remove_file(path)?;
            }
            Ok(meta) => {
                return Err(io::Error::new(
                    io::ErrorKind::AlreadyExists,
                    format!(
                        "{} is {}, not a stale socket: refusing to replace it",
                        path.display(),
                        crate::input::kind_of(&meta).unwrap_or("a regular file")
                    ),
                ));
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        let listener = UnixListener::bind(path)?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
        let limits = Limits {
            max_clients: MAX_CLIENTS,
            deadline: SERVER_DEADLINE,
            max_request: MAX_REQUEST_BYTES,
        };
        let listener = Listener::spawn(
            "tierd-control",
            listener,
            limits,
            Arc::new(Warnings::new("control socket")),
            move |client: &mut Client<UnixStream>| serve_one(client, &paths, status.as_ref()),
            |client: &mut Client<UnixStream>| {
                let busy = Response::Error {
                    errno: libc::EAGAIN,
                    message: format!(
                        "Resource temporarily unavailable: tierd is serving {MAX_CLIENTS} \
                         clients already; nothing was changed, try again"
                    ),
                };
                let _ = answer(client, &busy);
            },
        )?;
        Ok(Server { path: path.to_path_buf(), listener: Some(listener) })
    }

    /// The socket path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        drop(self.listener.take());
        let _ = std::fs::remove_file(&self.path);
    }
}

fn peer_uid(stream: &UnixStream) -> io::Result<u32> {
    let cred = nix::sys::socket::getsockopt(stream, nix::sys::socket::sockopt::PeerCredentials)
        .map_err(io::Error::from)?;
    Ok(cred.uid())
}

fn answer(client: &mut Client<UnixStream>, response: &Response) -> io::Result<()> {
    let mut out = serde_json::to_string(response).map_err(io::Error::other)?;
    out.push('\n');
    client.write_all(out.as_bytes())
}

fn serve_one(
    client: &mut Client<UnixStream>,
    paths: &Paths,
    status: Option<&StatusSource>,
) -> Result<(), ClientError> {
    let uid = peer_uid(client.stream())?;
    let line = match client.read_until(b"\n") {
        Ok(line) => line,
        Err(e @ ClientError::TooLarge(_)) => {
            let response = Response::Error {
                errno: libc::E2BIG,
                message: format!("bad request: {e}; nothing was changed"),
            };
            let _ = answer(client, &response);
            return Err(e);
        }
        Err(e) => return Err(e),
    };
    let response = match serde_json::from_slice::<Request>(&line) {
        Ok(Request::Status) => match status {
            Some(f) => Response::Status { report: f() },
            None => Response::Error {
                errno: libc::ENOENT,
                message: "this tierd only serves the path table (tierd mount): no daemon status"
                    .into(),
            },
        },
        // The client may have given up by now and reported a failure: change nothing.
        Ok(req) if client.expired() && changes(&req) => Response::Error {
            errno: libc::ETIMEDOUT,
            message: "the request arrived after its deadline; nothing was changed".into(),
        },
        Ok(req) => handle(&req, uid, paths),
        Err(e) => Response::Error {
            errno: libc::EINVAL,
            message: tierd_core::quote::bound_lines(&format!("bad request: {e}")),
        },
    };
    Ok(answer(client, &response)?)
}

/// Whether `req` changes the table.
fn changes(req: &Request) -> bool {
    !matches!(req, Request::Show | Request::Status | Request::Apply { dry_run: true, .. })
}

/// Executes one request for a peer with `uid`.
pub fn handle(req: &Request, uid: u32, paths: &Paths) -> Response {
    if changes(req) && uid != 0 {
        return Response::Error {
            errno: libc::EACCES,
            message: format!(
                "Permission denied: only root may change migration paths (you are uid {uid})"
            ),
        };
    }
    let result = match req {
        Request::Show | Request::Status => Ok(0),
        Request::Store { node, value } => match usize::try_from(*node).ok().and_then(NodeId::new) {
            Some(n) => paths.store(n, value),
            None => Err(ChangeError::Store(tierd_core::StoreError::NoSuchNode(
                usize::try_from(*node).unwrap_or(usize::MAX),
            ))),
        },
        Request::Apply { graph, dry_run } => match PathGraph::from_toml(graph) {
            Ok(g) => paths.apply(&g, *dry_run).map(|()| 0),
            Err(e) => {
                return Response::Error {
                    errno: libc::EINVAL,
                    message: tierd_core::quote::bound_lines(&format!("Invalid argument: {e}")),
                };
            }
        },
    };
    match result {
        Ok(count) => Response::Ok { count, view: paths.view() },
        Err(e) => Response::Error { errno: e.errno(), message: e.to_string() },
    }
}

/// Sends one request to the owner listening at `socket` and waits up to
/// [`CLIENT_TIMEOUT`] for the answer.
pub fn call(socket: &Path, req: &Request) -> io::Result<Response> {
    let stream = UnixStream::connect(socket).map_err(|e| {
        io::Error::new(
            e.kind(),
            format!(
                "cannot reach the tierd that owns the state at {}: {e} (is it still running?)",
                socket.display()
            ),
        )
    })?;
    let mut line = serde_json::to_string(req).map_err(io::Error::other)?;
    line.push('\n');
    if line.len() > MAX_REQUEST_BYTES {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("request of {} bytes is over the {MAX_REQUEST_BYTES}-byte limit", line.len()),
        ));
    }
    let started = Instant::now();
    let left = || CLIENT_TIMEOUT.saturating_sub(started.elapsed()).max(Duration::from_millis(1));
    stream.set_write_timeout(Some(left()))?;
    (&stream).write_all(line.as_bytes())?;
    let mut answer = Vec::new();
    let mut chunk = [0u8; 8192];
    while !answer.ends_with(b"\n") {
        if answer.len() > MAX_REQUEST_BYTES {
            return Err(io::Error::new(io::ErrorKind::InvalidData, "answer too long"));
        }
        stream.set_read_timeout(Some(left()))?;
        match (&stream).read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => answer.extend_from_slice(&chunk[..n]),
            Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!(
                        "no answer from {} within {} s (the server starts no change later than \
                         {} s after a request arrives; if its disk stalled a change may still \
                         be saving: check with `tierd path show`)",
                        socket.display(),
                        CLIENT_TIMEOUT.as_secs(),
                        SERVER_DEADLINE.as_secs()
                    ),
                ));
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    serde_json::from_slice(&answer).map_err(|e| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("bad answer from {}: {e}", socket.display()),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::StateFile;
    use tierd_core::Topology;

    fn paths(dir: &Path) -> Arc<Paths> {
        let topo = Topology::synthetic(&[10, 20, 20, 10], &[true, false], &[1 << 30; 2]);
        Arc::new(Paths::open(&topo, StateFile::new(dir.join("paths.toml"))).unwrap())
    }

    #[test]
    fn round_trip_over_the_socket() {
        let dir = tempfile::tempdir().unwrap();
        let p = paths(dir.path());
        let server = Server::start(&dir.path().join("ctl.sock"), Arc::clone(&p)).unwrap();
        let mode = std::fs::metadata(server.path()).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let answer =
            call(server.path(), &Request::Store { node: 0, value: b"0x1\n".to_vec() }).unwrap();
        let Response::Ok { count, view } = answer else { panic!("{answer:?}") };
        assert_eq!(count, 4);
        assert_eq!(view.nodes[0].stored, 1);
        let answer =
            call(server.path(), &Request::Store { node: 1, value: b"0".to_vec() }).unwrap();
        assert!(
            matches!(&answer, Response::Error { errno: 22, message } if message.contains("cycle: 0 -> 1 -> 0")),
            "{answer:?}"
        );
    }

    #[test]
    fn an_idle_client_does_not_stall_a_store() {
        let dir = tempfile::tempdir().unwrap();
        let p = paths(dir.path());
        let server = Server::start(&dir.path().join("ctl.sock"), Arc::clone(&p)).unwrap();
        let mut idle = UnixStream::connect(server.path()).unwrap();
        idle.write_all(b"{\"op\":").unwrap();
        let t0 = Instant::now();
        let answer =
            call(server.path(), &Request::Store { node: 0, value: b"1".to_vec() }).unwrap();
        assert!(matches!(answer, Response::Ok { count: 1, .. }), "{answer:?}");
        assert!(t0.elapsed() < Duration::from_secs(2), "{:?}", t0.elapsed());
    }

    #[test]
    fn a_huge_request_line_is_refused_early() {
        let dir = tempfile::tempdir().unwrap();
        let p = paths(dir.path());
        let server = Server::start(&dir.path().join("ctl.sock"), Arc::clone(&p)).unwrap();
        let mut s = UnixStream::connect(server.path()).unwrap();
        // The answer comes while the request is still being written: read it alongside.
        let mut r = s.try_clone().unwrap();
        let reader = std::thread::spawn(move || {
            let mut answer = Vec::new();
            let mut chunk = [0u8; 4096];
            while let Ok(n @ 1..) = r.read(&mut chunk) {
                answer.extend_from_slice(&chunk[..n]);
            }
            String::from_utf8_lossy(&answer).into_owned()
        });
        let chunk = vec![b' '; 1 << 16];
        let mut sent = 0usize;
        while sent < 1 << 30 && s.write_all(&chunk).is_ok() {
            sent += chunk.len();
        }
        assert!(sent <= MAX_REQUEST_BYTES + (1 << 20), "the server read {sent} bytes");
        let answer = reader.join().unwrap();
        assert!(answer.contains("request longer than"), "{answer}");
    }

    #[test]
    fn a_stale_socket_is_replaced_but_nothing_else_is() {
        let dir = tempfile::tempdir().unwrap();
        let p = paths(dir.path());
        let file = dir.path().join("not-a-socket");
        std::fs::write(&file, "keep").unwrap();
        let err = Server::start(&file, Arc::clone(&p)).unwrap_err();
        assert!(err.to_string().contains("not a stale socket"), "{err}");
        assert_eq!(std::fs::read_to_string(&file).unwrap(), "keep");
    }

    #[test]
    fn changes_from_non_root_are_refused_reads_are_not() {
        let dir = tempfile::tempdir().unwrap();
        let p = paths(dir.path());
        let store = Request::Store { node: 0, value: b"1".to_vec() };
        assert!(matches!(handle(&store, 1000, &p), Response::Error { errno: libc::EACCES, .. }));
        assert_eq!(p.table().show(NodeId::new(0).unwrap()), Some(-1));
        assert!(matches!(handle(&Request::Show, 1000, &p), Response::Ok { .. }));
        let dry = Request::Apply { graph: "[node.0]\ntarget = 1\n".into(), dry_run: true };
        assert!(matches!(handle(&dry, 1000, &p), Response::Ok { .. }));
        assert!(matches!(handle(&store, 0, &p), Response::Ok { count: 1, .. }));
    }
}
