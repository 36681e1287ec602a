//! The subcommands. Each returns what to print, or an error whose message says what to do.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use tierd_core::{NodeId, PathGraph, Topology};
use tierd_linux::SysRoot;

use crate::control::{self, Request, Response};
use crate::paths::{Paths, PathsView};
use crate::state::{OwnerLock, StateFile};

/// Where the machine and the state are.
#[derive(Clone, Debug)]
pub struct Env {
    /// The sysfs and procfs roots.
    pub root: SysRoot,
    /// The state file.
    pub state: PathBuf,
    /// The control socket a long-running command serves (default: `<state>.sock`).
    pub socket: Option<PathBuf>,
}

impl Env {
    /// Reads the topology from the roots.
    pub fn topology(&self) -> Result<Topology> {
        tierd_linux::read_topology(&self.root).with_context(|| {
            format!(
                "cannot read the NUMA topology under {} (is this Linux with sysfs mounted? \
                 point --sysfs-root at a fixture tree to try tierd elsewhere)",
                self.root.sys.display()
            )
        })
    }

    fn state_file(&self) -> StateFile {
        StateFile::new(&self.state)
    }

    /// The socket a long-running owner serves.
    pub fn socket_path(&self) -> PathBuf {
        self.socket.clone().unwrap_or_else(|| {
            let mut p = self.state.clone().into_os_string();
            p.push(".sock");
            PathBuf::from(p)
        })
    }
}

/// How a command reaches the table: directly (this process holds the lock, or only reads)
/// or through the long-running owner's control socket.
enum Access {
    Direct(Box<Paths>, #[allow(dead_code)] Option<OwnerLock>),
    Remote(PathBuf),
}

/// How long a change waits for another short CLI call to release the state.
const LOCK_WAIT: Duration = Duration::from_secs(5);

fn access(env: &Env, for_change: bool) -> Result<Access> {
    let state = env.state_file();
    if !for_change {
        // Reads never lock. A long-running owner is asked (it may know a fresher online
        // set); otherwise the file is read: it is replaced atomically, so it is always whole.
        return Ok(match state.owner_socket(Duration::ZERO) {
            Some(socket) => Access::Remote(socket),
            None => Access::Direct(Box::new(Paths::open(&env.topology()?, state)?), None),
        });
    }
    let lock = state.lock_within(LOCK_WAIT).map_err(|e| {
        let denied = matches!(&e, crate::state::StateError::Lock { cause, .. }
            if cause.kind() == std::io::ErrorKind::PermissionDenied);
        if denied {
            anyhow!(e).context("cannot take ownership of the state to change it (are you root?)")
        } else {
            anyhow!(e)
        }
    })?;
    if let Some(lock) = lock {
        // Only a direct change needs this machine's topology; an owner knows its own.
        return Ok(Access::Direct(Box::new(Paths::open(&env.topology()?, state)?), Some(lock)));
    }
    match state.owner_socket(Duration::from_millis(500)) {
        Some(socket) => Ok(Access::Remote(socket)),
        None => bail!(
            "{} is locked by {} and no control socket answers for it; wait for it to finish \
             or stop it",
            env.state.display(),
            state.owner_pid().map_or("another process".to_string(), |p| format!("pid {p}"))
        ),
    }
}

fn remote(socket: &Path, req: &Request) -> Result<(usize, PathsView)> {
    match control::call(socket, req)? {
        Response::Ok { count, view } => Ok((count, view)),
        Response::Error { message, .. } => Err(anyhow!(message)),
        Response::Status { .. } => {
            Err(anyhow!("unexpected status answer from {}", socket.display()))
        }
    }
}

/// The table for reading: from the owner when one answers, else from the state file (a
/// non-root user can't reach the root-only socket, and an owner may have died).
fn read_view(env: &Env) -> Result<PathsView> {
    match access(env, false)? {
        Access::Direct(paths, _) => Ok(paths.view()),
        Access::Remote(socket) => match control::call(&socket, &Request::Show) {
            Ok(Response::Ok { view, .. }) => Ok(view),
            // A busy owner: the file is whole and at most one change behind.
            Ok(Response::Error { errno: libc::EAGAIN, .. }) | Err(_) => {
                Ok(Paths::open(&env.topology()?, env.state_file())?.view())
            }
            Ok(Response::Error { message, .. }) => Err(anyhow!(message)),
            Ok(Response::Status { .. }) => Err(anyhow!("unexpected status answer")),
        },
    }
}

/// `tierd topology`.
pub fn topology(env: &Env, json: bool) -> Result<String> {
    let topo = env.topology()?;
    let report = crate::report::TopologyReport::new(&topo);
    if json { Ok(serde_json::to_string_pretty(&report)? + "\n") } else { Ok(report.to_text()) }
}

/// `tierd path show [NODE]`.
pub fn path_show(env: &Env, node: Option<NodeId>, json: bool) -> Result<String> {
    let view = read_view(env)?;
    let state_exists = env.state.exists();
    match node {
        Some(n) => {
            let row = view.nodes.iter().find(|r| r.node == u32::from(n)).ok_or_else(|| {
                anyhow!(
                    "node {n} is not a possible node of this machine (possible: {})",
                    view.possible
                )
            })?;
            if json {
                Ok(serde_json::to_string_pretty(row)? + "\n")
            } else {
                Ok(format!("{}\n", row.stored))
            }
        }
        None if json => Ok(serde_json::to_string_pretty(&view)? + "\n"),
        None => Ok(crate::report::paths_text(&view, state_exists.then_some(&env.state))),
    }
}

/// `tierd path set NODE VALUE`: one sysfs store.
pub fn path_set(env: &Env, node: NodeId, value: &[u8]) -> Result<String> {
    let stored = match access(env, true)? {
        Access::Direct(paths, _) => {
            paths.store(node, value).map_err(|e| anyhow!("node{node}/migration_path: {e}"))?;
            paths.table().show(node)
        }
        Access::Remote(socket) => {
            let req = Request::Store { node: u32::from(node), value: value.to_vec() };
            let (_, view) =
                remote(&socket, &req).map_err(|e| anyhow!("node{node}/migration_path: {e}"))?;
            view.nodes.iter().find(|r| r.node == u32::from(node)).map(|r| r.stored)
        }
    };
    Ok(format!("node{node}/migration_path = {}\n", stored.unwrap_or(-1)))
}

/// Why a graph file is unusable: it could not be read (the message names the file), or
/// its text is not a graph (the message does not; the caller says which file).
enum GraphFileError {
    Input(crate::input::InputError),
    Parse(String),
}

fn load_graph(file: &Path) -> Result<(String, PathGraph), GraphFileError> {
    use crate::input::{self, Links, MAX_TEXT_BYTES};
    let text = if file == Path::new("-") {
        input::read_stdin(MAX_TEXT_BYTES, "a path graph")
    } else {
        input::read_text(file, Links::Follow, MAX_TEXT_BYTES, "a path graph")
    }
    .map_err(GraphFileError::Input)?;
    let graph = PathGraph::from_toml(&text).map_err(|e| {
        GraphFileError::Parse(tierd_core::quote::bound_lines(e.to_string().trim_end()))
    })?;
    Ok((text, graph))
}

fn read_graph(file: &Path) -> Result<(String, PathGraph)> {
    load_graph(file).map_err(|e| match e {
        GraphFileError::Input(e) => anyhow!(e),
        GraphFileError::Parse(e) => anyhow!("{}: {e}", file.display()),
    })
}

/// `tierd path apply FILE [--dry-run]`.
pub fn path_apply(env: &Env, file: &Path, dry_run: bool) -> Result<String> {
    let (text, graph) = read_graph(file)?;
    let view = match access(env, !dry_run)? {
        Access::Direct(paths, _) => {
            paths.apply(&graph, dry_run).map_err(|e| anyhow!("{}: {e}", file.display()))?;
            paths.view()
        }
        Access::Remote(socket) => {
            remote(&socket, &Request::Apply { graph: text, dry_run })
                .map_err(|e| anyhow!("{}: {e}", file.display()))?
                .1
        }
    };
    if dry_run {
        Ok(format!(
            "{}: valid; applying it would make every node it leaves out terminal\n",
            file.display()
        ))
    } else {
        Ok(crate::report::paths_text(&view, Some(&env.state)))
    }
}

/// `tierd path check FILE`: validation against this machine, every problem listed.
/// Returns the text and whether the graph is valid.
pub fn path_check(env: &Env, file: &Path, json: bool) -> Result<(String, bool)> {
    let topo = env.topology()?;
    // Each text line names the file once: an unreadable file's error already does.
    let (errors, named): (Vec<String>, bool) = match load_graph(file) {
        Ok((_, graph)) => match graph.validate(topo.online, crate::paths::capacity_of(&topo)) {
            Ok(()) => (Vec::new(), false),
            Err(errs) => (errs.iter().map(ToString::to_string).collect(), false),
        },
        Err(GraphFileError::Input(e)) => (vec![e.to_string()], true),
        Err(GraphFileError::Parse(e)) => (vec![e], false),
    };
    let ok = errors.is_empty();
    let out = if json {
        serde_json::to_string_pretty(
            &serde_json::json!({ "file": file, "ok": ok, "errors": errors }),
        )? + "\n"
    } else if ok {
        format!("{}: ok\n", file.display())
    } else {
        errors.iter().fold(String::new(), |mut s, e| {
            if named {
                let _ = writeln!(s, "{e}");
            } else {
                let _ = writeln!(s, "{}: {e}", file.display());
            }
            s
        })
    };
    Ok((out, ok))
}

/// `tierd path auto [--apply]`.
pub fn path_auto(env: &Env, apply: bool, json: bool) -> Result<String> {
    let topo = env.topology()?;
    let auto = tierd_core::auto::auto(&topo);
    let graph = auto.to_graph();
    let mut out = if json {
        serde_json::to_string_pretty(&crate::report::auto_json(&auto, &graph))? + "\n"
    } else {
        crate::report::auto_text(&auto, &graph)
    };
    if apply {
        let view = match access(env, true)? {
            Access::Direct(paths, _) => {
                paths
                    .apply(&graph, false)
                    .map_err(|e| anyhow!("cannot apply the automatic paths: {e}"))?;
                paths.view()
            }
            Access::Remote(socket) => {
                remote(&socket, &Request::Apply { graph: graph.to_toml(), dry_run: false })?.1
            }
        };
        if !json {
            out.push_str("\napplied:\n");
            out.push_str(&crate::report::paths_text(&view, Some(&env.state)));
        }
    }
    Ok(out)
}

/// `tierd mount MOUNTPOINT`: serves the tree until SIGINT/SIGTERM or an external unmount.
pub fn mount(env: &Env, mountpoint: &Path) -> Result<()> {
    crate::mount::check_mountpoint(mountpoint).map_err(|e| anyhow!(e))?;
    let topo = env.topology()?;
    let state = env.state_file();
    let socket = env.socket_path();
    let mut lock = state.lock_within(LOCK_WAIT)?.ok_or_else(|| {
        anyhow!(
            "{} is owned by another tierd ({}); stop it first (one owner per state file)",
            env.state.display(),
            state.owner_pid().map_or("pid unknown".to_string(), |p| format!("pid {p}"))
        )
    })?;
    let online_root = env.root.clone();
    let paths = Arc::new(Paths::open(&topo, state)?.with_online_source(Box::new(move || {
        tierd_linux::topology::read_online(&online_root).ok()
    })));
    let server = control::Server::start(&socket, Arc::clone(&paths))
        .with_context(|| format!("cannot serve the control socket {}", socket.display()))?;
    lock.publish_socket(&socket)?;
    let root = nix::unistd::geteuid().is_root();
    let mut config = fuser::Config::default();
    config.mount_options = vec![
        fuser::MountOption::FSName("tierd".into()),
        fuser::MountOption::Subtype("tierd".into()),
        fuser::MountOption::DefaultPermissions,
        fuser::MountOption::NoDev,
        fuser::MountOption::NoSuid,
    ];
    if root {
        // Let every user read, as sysfs does; writes stay root-only (mode 0644 and checks).
        config.acl = fuser::SessionACL::All;
    }
    // SIGHUP (a closed terminal, `systemctl reload`) must not kill the server and leave a
    // dead mount behind: there is nothing to reload, so it is logged and ignored. Every
    // signal that ends the process in its default action and that can be caught unmounts.
    let mut signals = signal_hook::iterator::Signals::new(crate::mount::SIGNALS)?;
    let session = fuser::spawn_mount(
        crate::mount::PathFs::new(Arc::clone(&paths), topo),
        mountpoint,
        &config,
    )
    .map_err(|e| {
        let hint = match e.kind() {
            std::io::ErrorKind::PermissionDenied => " (mounting FUSE needs root or fusermount3)",
            std::io::ErrorKind::NotFound => " (is /dev/fuse there? modprobe fuse)",
            _ => "",
        };
        anyhow!("cannot mount a FUSE filesystem on {}: {e}{hint}", mountpoint.display())
    })?;
    tracing::info!(
        mountpoint = %mountpoint.display(),
        state = %env.state.display(),
        socket = %socket.display(),
        "serving migration paths; Ctrl-C or SIGTERM unmounts"
    );
    let reason = 'serve: loop {
        for sig in signals.pending() {
            if sig == signal_hook::consts::SIGHUP {
                tracing::info!("SIGHUP: tierd mount has nothing to reload; still serving");
                continue;
            }
            break 'serve format!("signal {sig}");
        }
        if session.guard.is_finished() {
            break "unmounted from outside".to_string();
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    tracing::info!("stopping ({reason})");
    let unmounted =
        if session.guard.is_finished() { session.join() } else { session.umount_and_join() };
    drop(server);
    drop(lock);
    unmounted.with_context(|| format!("unmounting {}", mountpoint.display()))
}
