//! `tierd`: user-defined NUMA migration paths, and pages migrated down them instead of being
//! swapped or dropped. The binary only parses arguments and wires the library together.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use tierd::commands::{self, Env};
use tierd_core::NodeId;

mod simulate;

#[derive(Parser)]
#[command(
    name = "tierd",
    version,
    about = "Migrate pages in lieu of discard: per-node migration paths for tiered memory",
    long_about = "tierd keeps, for every NUMA node, where that node's cold pages go next (its \
migration path: node 0 -> node 1 -> node 2, -1 = terminal), with the exact semantics of the \
kernel RFC's nodeN/migration_path file: terminal nodes, online targets only, no cycles.\n\n\
Start with `tierd topology` to see the machine, `tierd path auto` for the kernel's own \
default, and `tierd path show` for the table in force.",
    after_help = "Examples:\n  tierd topology\n  tierd path auto --apply\n  tierd path set 0 2\n  \
tierd path apply paths.toml --dry-run\n  tierd mount /run/tierd/tree\n  \
tierd topology --sysfs-root fixtures/dram-cxl-pmem/sys"
)]
struct Cli {
    #[command(flatten)]
    global: Global,
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Args)]
struct Global {
    /// Where sysfs is. Point it at a fixture tree to look at another machine.
    #[arg(long, global = true, value_name = "DIR", default_value = "/sys")]
    sysfs_root: PathBuf,
    /// Where procfs is [default: /proc, or the `proc` directory beside a --sysfs-root that
    /// has one, as the fixture trees do].
    #[arg(long, global = true, value_name = "DIR")]
    procfs_root: Option<PathBuf>,
    /// The state file that keeps the path table [default: /var/lib/tierd/paths.toml; for
    /// `tierd run`, the config's `[paths] state`, which this replaces].
    #[arg(long, global = true, value_name = "PATH")]
    state: Option<PathBuf>,
    /// The control socket a long-running tierd serves [default: <state>.sock; for `tierd
    /// run`, the config's `[daemon] socket`, which this replaces].
    #[arg(long, global = true, value_name = "PATH")]
    socket: Option<PathBuf>,
}

#[derive(Subcommand)]
enum Command {
    /// Show the NUMA topology: nodes, distances, HMAT figures, memory tiers, kernel demotion.
    Topology {
        /// Print JSON (stable field names).
        #[arg(long)]
        json: bool,
    },
    /// Show, set, check and apply migration paths.
    #[command(subcommand)]
    Path(PathCommand),
    /// Serve the table as a sysfs-compatible FUSE tree (nodeN/migration_path, online,
    /// possible) until SIGINT/SIGTERM.
    #[command(long_about = "Serve the path table as a sysfs-compatible tree with FUSE:\n\n  \
MOUNTPOINT/online, MOUNTPOINT/possible          (read-only nodelists)\n  \
MOUNTPOINT/nodeN/migration_path                 (rw, mode 0644, the RFC's semantics)\n  \
MOUNTPOINT/nodeN/distance                       (read-only, online nodes)\n\n\
`echo 2 > node0/migration_path` stores 2 or fails with `Invalid argument`; each write(2) is \
one store. Writes by non-root users get `Permission denied`. Changes are saved to the state \
file at once and show in `tierd path show`, which talks to this process over its control \
socket while it runs. Runs in the foreground; SIGINT, SIGTERM or SIGQUIT unmounts cleanly \
and SIGHUP is ignored (nothing to reload). The mountpoint must be an empty directory; a dead \
mount left by a crash is reported with the command that clears it.")]
    Mount {
        /// An empty directory.
        mountpoint: PathBuf,
    },
    /// Compare linux-swap, linux-demote and tierd on a simulated tiered-memory machine
    /// (with no arguments: the embedded default scenario).
    Simulate(simulate::SimulateArgs),
    /// Run the tiering daemon: keep each node's headroom by demoting its coldest pages one
    /// step down the migration path, and promote pages that turn hot.
    #[command(long_about = "Run the tiering daemon in the foreground (systemd: Type=notify).\n\n\
Every interval it lists the processes in scope, reads the access tracker (DAMON, idle page \
tracking or soft-dirty), and for every node short of its headroom moves that node's coldest \
pages to next_migration_node (fallback nodes when the target is full). tierd never swaps or \
drops a page: when every target is full it leaves pages where they are and reports it. Hot \
pages of lower tiers come back up within the promotion rate limit, never a page that moved \
within its minimum residence time.\n\n\
While it runs, the kernel's own demotion is switched on as the backstop ([daemon] backstop): \
when tierd's loop falls behind (a busy or slow host), reclaim demotes instead of swapping; \
pages it puts on a node no migration path reaches are moved on. tierd gives itself nice -10, \
locks its own memory and lowers its OOM score ([daemon] nice, lock_memory, oom_score_adj).\n\n\
SIGHUP reloads the config (an invalid one keeps the old; changes that need a restart are \
named); SIGTERM, SIGINT or SIGQUIT stops cleanly (kernel settings put back, socket removed). `tierd \
status` and `tierd path ...` talk to it over its control socket; metrics are served in \
OpenMetrics format (default http://127.0.0.1:9877/metrics). See tierd.example.toml.")]
    Run {
        /// The config file; see tierd.example.toml for every field and its default.
        #[arg(long, value_name = "FILE", default_value = tierd::config::DEFAULT_CONFIG)]
        config: PathBuf,
        /// Switch the kernel's tiering promotion (numa_balancing=2) off while running, and its
        /// demotion too when [daemon] backstop = "off"; restored on exit.
        #[arg(long)]
        take_over: bool,
        /// Run the same policy, control socket and metrics on the simulated machine of a
        /// scenario (`default` for the embedded one): a live demo without tiered memory.
        /// The config file is optional here.
        #[arg(long, value_name = "SCENARIO")]
        sim: Option<PathBuf>,
    },
    /// Show what the running daemon is doing: tracker, nodes, moves, failures, warnings.
    Status {
        /// Print JSON (stable field names).
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum PathCommand {
    /// Show the table: stored target, effective next node, fallbacks. With NODE, print what
    /// `cat nodeN/migration_path` would.
    Show {
        /// One node.
        node: Option<NodeId>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Store VALUE as NODE's migration path, exactly as `echo VALUE > nodeN/migration_path`:
    /// kstrtol base 0 (2, 0x2, 02, +2), one trailing newline allowed, negative = terminal;
    /// an offline or out-of-range target, or a cycle, is rejected with Invalid argument.
    Set {
        /// The node to change.
        node: NodeId,
        /// The new target (raw text; allow_hyphen_values lets -1 through).
        #[arg(allow_hyphen_values = true)]
        value: std::ffi::OsString,
    },
    /// Replace the whole table with a graph file (TOML; `-` reads stdin), atomically: all of
    /// it or nothing. Nodes the file leaves out become terminal.
    #[command(
        after_help = "File format:\n  [node.0]\n  target = 1\n  fallback = \"2\"   # optional: tried when node 1 is full\n\n  [node.1]\n  target = 2\n"
    )]
    Apply {
        /// The graph file.
        file: PathBuf,
        /// Validate and explain, change nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Check a graph file against this machine and list every problem (cycles, offline
    /// nodes, syntax). Exit status 1 when it is not valid.
    Check {
        /// The graph file.
        file: PathBuf,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Derive the default the kernel would use (memory tiers from HMAT, the kernel's tier
    /// files, or CPU-less nodes below CPU nodes; nearest node of the next lower tier).
    Auto {
        /// Apply it as the table in force.
        #[arg(long)]
        apply: bool,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let long_running = matches!(cli.command, Command::Mount { .. } | Command::Run { .. });
    let filter = tracing_subscriber::EnvFilter::try_from_env("TIERD_LOG").unwrap_or_else(|_| {
        // fuser logs every operation a filesystem leaves to the kernel's default at warn.
        tracing_subscriber::EnvFilter::new(if long_running { "info,fuser=error" } else { "warn" })
    });
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let g = cli.global;
    let procfs = g.procfs_root.unwrap_or_else(|| {
        let beside = g.sysfs_root.join("../proc");
        if g.sysfs_root != std::path::Path::new("/sys") && beside.is_dir() {
            beside
        } else {
            PathBuf::from("/proc")
        }
    });
    let env = Env {
        root: tierd_linux::SysRoot { sys: g.sysfs_root, proc: procfs },
        state: g.state.clone().unwrap_or_else(|| PathBuf::from(tierd::state::DEFAULT_STATE)),
        socket: g.socket.clone(),
    };
    let result = match cli.command {
        Command::Topology { json } => commands::topology(&env, json).map(|s| (s, true)),
        Command::Path(PathCommand::Show { node, json }) => {
            commands::path_show(&env, node, json).map(|s| (s, true))
        }
        Command::Path(PathCommand::Set { node, value }) => {
            commands::path_set(&env, node, value.as_encoded_bytes()).map(|s| (s, true))
        }
        Command::Path(PathCommand::Apply { file, dry_run }) => {
            commands::path_apply(&env, &file, dry_run).map(|s| (s, true))
        }
        Command::Path(PathCommand::Check { file, json }) => commands::path_check(&env, &file, json),
        Command::Path(PathCommand::Auto { apply, json }) => {
            commands::path_auto(&env, apply, json).map(|s| (s, true))
        }
        Command::Simulate(args) => simulate::run(args).map(|()| (String::new(), true)),
        Command::Mount { mountpoint } => {
            commands::mount(&env, &mountpoint).map(|()| (String::new(), true))
        }
        Command::Run { config, take_over, sim } => {
            let opts = tierd::daemon::RunOptions {
                config,
                take_over,
                root: env.root.clone(),
                state: g.state,
                socket: g.socket,
            };
            match sim {
                Some(s) if s.as_os_str() == "default" => tierd::daemon::run_sim(&opts, None),
                Some(s) => tierd::daemon::run_sim(&opts, Some(&s)),
                None => tierd::daemon::run(&opts),
            }
            .map(|()| (String::new(), true))
        }
        Command::Status { json } => {
            let socket = env.socket.clone().unwrap_or_else(|| {
                tierd::state::StateFile::new(&env.state)
                    .owner_socket(std::time::Duration::ZERO)
                    .unwrap_or_else(|| PathBuf::from("/run/tierd/control.sock"))
            });
            tierd::daemon::status(&socket, json).map(|s| (s, true))
        }
    };
    match result {
        Ok((out, ok)) => {
            print!("{out}");
            if ok { ExitCode::SUCCESS } else { ExitCode::FAILURE }
        }
        Err(e) => {
            eprintln!("tierd: {e:#}");
            ExitCode::FAILURE
        }
    }
}
