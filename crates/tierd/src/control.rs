//! The control socket: how the CLI talks to a long-running tierd that owns the state file.
//!
//! A Unix stream socket, mode 0600, one JSON request line and one JSON response line per
//! connection. Reads are open to any peer that can connect; changes are refused unless the
//! peer's uid (from `SO_PEERCRED`, which the peer can't forge) is 0.

use std::io::{self, BufRead, BufReader, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

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

/// The control server: a thread accepting connections until dropped.
#[derive(Debug)]
pub struct Server {
    path: PathBuf,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
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
        match std::fs::remove_file(path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        let listener = UnixListener::bind(path)?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
        listener.set_nonblocking(true)?;
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let thread = std::thread::Builder::new().name("tierd-control".into()).spawn(move || {
            while !flag.load(Ordering::Acquire) {
                match listener.accept() {
                    Ok((stream, _)) => {
                        if let Err(e) = serve_one(&stream, &paths, status.as_ref()) {
                            tracing::warn!("control socket: {e}");
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        std::thread::sleep(Duration::from_millis(20));
                    }
                    Err(e) => tracing::warn!("control socket accept: {e}"),
                }
            }
        })?;
        Ok(Server { path: path.to_path_buf(), stop, thread: Some(thread) })
    }

    /// The socket path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        let _ = std::fs::remove_file(&self.path);
    }
}

fn peer_uid(stream: &UnixStream) -> io::Result<u32> {
    let cred = nix::sys::socket::getsockopt(stream, nix::sys::socket::sockopt::PeerCredentials)
        .map_err(io::Error::from)?;
    Ok(cred.uid())
}

fn serve_one(stream: &UnixStream, paths: &Paths, status: Option<&StatusSource>) -> io::Result<()> {
    stream.set_nonblocking(false)?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    let uid = peer_uid(stream)?;
    let mut line = String::new();
    BufReader::new(stream).read_line(&mut line)?;
    let response = match serde_json::from_str::<Request>(&line) {
        Ok(Request::Status) => match status {
            Some(f) => Response::Status { report: f() },
            None => Response::Error {
                errno: libc::ENOENT,
                message: "this tierd only serves the path table (tierd mount): no daemon status"
                    .into(),
            },
        },
        Ok(req) => handle(&req, uid, paths),
        Err(e) => Response::Error { errno: libc::EINVAL, message: format!("bad request: {e}") },
    };
    let mut out = serde_json::to_string(&response).map_err(io::Error::other)?;
    out.push('\n');
    let mut w = stream;
    w.write_all(out.as_bytes())
}

/// Executes one request for a peer with `uid`.
pub fn handle(req: &Request, uid: u32, paths: &Paths) -> Response {
    let changes =
        !matches!(req, Request::Show | Request::Status | Request::Apply { dry_run: true, .. });
    if changes && uid != 0 {
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
                    message: format!("Invalid argument: {e}"),
                };
            }
        },
    };
    match result {
        Ok(count) => Response::Ok { count, view: paths.view() },
        Err(e) => Response::Error { errno: e.errno(), message: e.to_string() },
    }
}

/// Sends one request to the owner listening at `socket`.
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
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut line = serde_json::to_string(req).map_err(io::Error::other)?;
    line.push('\n');
    (&stream).write_all(line.as_bytes())?;
    let mut answer = String::new();
    BufReader::new(&stream).read_line(&mut answer)?;
    serde_json::from_str(&answer).map_err(|e| {
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
