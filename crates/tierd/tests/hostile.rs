//! Hostile and careless input against the built binary, one test per thing that broke: files
//! replaced or destroyed, unbounded reads, simulator panics and hangs, signals, one slow
//! client stalling everyone, a FUSE write that was not one store, errors that did not say.
//!
//! `TIERD_UNDER_TEST=/path/to/tierd` runs the same cases against another build (that is how
//! each was seen failing on the code before the fix). Cases that need root and `/dev/fuse`
//! say why they skip; with `CI=true` a missing prerequisite is a failure.

use std::fs;
use std::io::{Read, Write};
use std::os::unix::fs::FileTypeExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

fn bin() -> PathBuf {
    std::env::var_os("TIERD_UNDER_TEST")
        .map_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_tierd")), PathBuf::from)
}

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/dram-cxl-pmem/sys")
}

fn tierd(state: &Path) -> Command {
    let mut c = Command::new(bin());
    c.arg("--sysfs-root").arg(fixture()).arg("--state").arg(state);
    c
}

/// Runs `cmd` with its address space capped (so that an unbounded read fails in seconds
/// instead of taking the machine's memory) and a wall-clock limit.
fn run_bounded(cmd: &mut Command, limit: Duration) -> (Output, Duration) {
    let prog = cmd.get_program().to_owned();
    let args: Vec<_> = cmd.get_args().map(ToOwned::to_owned).collect();
    let mut sh = Command::new("sh");
    sh.arg("-c").arg("ulimit -v 2097152; exec \"$0\" \"$@\"").arg(prog).args(args);
    sh.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let started = Instant::now();
    let mut child = sh.spawn().unwrap();
    loop {
        if child.try_wait().unwrap().is_some() {
            return (child.wait_with_output().unwrap(), started.elapsed());
        }
        if started.elapsed() > limit {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!(
                "still running after {limit:?}: stderr {}",
                String::from_utf8_lossy(&out.stderr).chars().take(2000).collect::<String>()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Asserts a clean failure (exit status 1, no crash) whose output (`path check` reports on
/// stdout, the rest on stderr) contains `want`; returns that output.
fn fails_with(o: &Output, want: &str) -> String {
    let err = String::from_utf8_lossy(&o.stdout).into_owned() + &stderr(o);
    assert!(!o.status.success(), "succeeded: {err}");
    assert!(o.status.code() == Some(1), "exit status {:?} (a crash?): {err}", o.status);
    assert!(
        err.contains(want),
        "wanted {want:?} in: {}",
        err.chars().take(2000).collect::<String>()
    );
    err
}

/// Whether root and `/dev/fuse` are there; panics in CI when they are not.
fn need(what: &str, ok: bool) -> bool {
    if ok {
        return true;
    }
    let why = format!("this case needs {what}");
    assert!(std::env::var("CI").as_deref() != Ok("true"), "{why}; CI=true makes this a failure");
    eprintln!("skipping: {why}");
    false
}

fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

// ---- Files replaced or destroyed -------------------------------------------------------

#[test]
fn state_dev_null_is_refused_not_replaced() {
    if !need("root (to make a device node)", is_root()) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    // A private copy of /dev/null (char 1:3): the real one must not be risked.
    let null = dir.path().join("null");
    nix::sys::stat::mknod(
        &null,
        nix::sys::stat::SFlag::S_IFCHR,
        nix::sys::stat::Mode::from_bits_truncate(0o666),
        nix::sys::stat::makedev(1, 3),
    )
    .unwrap();
    let o = tierd(&null).args(["path", "set", "0", "1"]).output().unwrap();
    fails_with(&o, "is a character device, not a regular file");
    assert!(fs::symlink_metadata(&null).unwrap().file_type().is_char_device(), "replaced");
    let o = tierd(&null).args(["path", "show"]).output().unwrap();
    fails_with(&o, "is a character device");
}

#[test]
fn state_symlink_is_refused_and_its_target_kept() {
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("real.toml");
    let o = tierd(&target).args(["path", "set", "0", "1"]).output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let before = fs::read_to_string(&target).unwrap();
    let link = dir.path().join("paths.toml");
    std::os::unix::fs::symlink(&target, &link).unwrap();
    let o = tierd(&link).args(["path", "set", "0", "2"]).output().unwrap();
    fails_with(&o, "is a symbolic link");
    assert!(fs::symlink_metadata(&link).unwrap().file_type().is_symlink(), "link replaced");
    assert_eq!(fs::read_to_string(&target).unwrap(), before);
}

#[test]
fn import_trace_onto_itself_is_refused_and_the_input_kept() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("trace.txt");
    fs::write(&f, "0x1000\n0x2000\n7\n").unwrap();
    let o = Command::new(bin())
        .args(["simulate", "--import-trace"])
        .arg(&f)
        .arg("--output")
        .arg(&f)
        .output()
        .unwrap();
    fails_with(&o, "is the --import-trace input itself");
    assert_eq!(fs::read_to_string(&f).unwrap(), "0x1000\n0x2000\n7\n");
    // A failed import leaves an existing output whole.
    let out = dir.path().join("out.trace");
    fs::write(&out, "old").unwrap();
    fs::write(&f, "1\nnot-a-page\n").unwrap();
    let o = Command::new(bin())
        .args(["simulate", "--import-trace"])
        .arg(&f)
        .arg("--output")
        .arg(&out)
        .output()
        .unwrap();
    fails_with(&o, "line 2");
    assert_eq!(fs::read_to_string(&out).unwrap(), "old");
}

// ---- Unbounded reads --------------------------------------------------------------------

#[test]
fn dev_zero_is_refused_not_read_until_memory_runs_out() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("paths.toml");
    let limit = Duration::from_secs(30);
    for (args, want) in [
        (vec!["path", "check", "/dev/zero"], "/dev/zero is a character device"),
        (vec!["path", "apply", "/dev/zero"], "/dev/zero is a character device"),
        (vec!["simulate", "/dev/zero"], "/dev/zero is a character device"),
        (
            vec!["run", "--sim", "default", "--config", "/dev/zero"],
            "config /dev/zero is a character",
        ),
        (
            vec!["simulate", "--import-trace", "/dev/zero", "--output", "/dev/null"],
            "character device",
        ),
    ] {
        let (o, took) = run_bounded(tierd(&state).args(&args), limit);
        fails_with(&o, want);
        assert!(took < Duration::from_secs(10), "{args:?} took {took:?}");
    }
    let (o, _) = run_bounded(
        Command::new(bin()).args(["--sysfs-root"]).arg(fixture()).args([
            "--state",
            "/dev/zero",
            "path",
            "show",
        ]),
        limit,
    );
    fails_with(&o, "/dev/zero is a character device");
}

#[test]
fn oversized_graph_file_is_refused_with_the_limit() {
    let dir = tempfile::tempdir().unwrap();
    let big = dir.path().join("big.toml");
    fs::write(&big, format!("# {}\n", "x".repeat(2 << 20))).unwrap();
    let o =
        tierd(&dir.path().join("paths.toml")).args(["path", "check"]).arg(&big).output().unwrap();
    fails_with(&o, "is larger than 1024 KiB, the limit for a path graph");
}

// ---- Panics, aborts and hangs in the simulator ---------------------------------------------

fn scenario(dir: &Path, text: &str) -> PathBuf {
    let f = dir.join("s.toml");
    fs::write(&f, text).unwrap();
    f
}

const SMALL: &str = "accesses = 200000\npolicies = [\"linux-swap\"]\n\
[[node]]\nid = 0\ncapacity_mib = 64\ncpu = true\nlatency_ns = 80\n\
[[process]]\nname = \"p\"\n[process.workload]\nkind = \"zipf\"\nfootprint_mib = 32\n";

#[test]
fn zipf_exponent_zero_negative_or_nan_is_an_error_not_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    for e in ["0", "-1", "nan"] {
        let f = scenario(dir.path(), &format!("{SMALL}exponent = {e}\n"));
        let o = Command::new(bin()).arg("simulate").arg(&f).output().unwrap();
        fails_with(&o, "exponent = ");
        assert!(stderr(&o).contains("allowed above 0 to 20"), "{}", stderr(&o));
    }
}

#[test]
fn u64_max_costs_are_refused_not_wrapped() {
    let dir = tempfile::tempdir().unwrap();
    let f = scenario(
        dir.path(),
        &SMALL.replace("latency_ns = 80", "latency_ns = 18446744073709551615"),
    );
    let o = Command::new(bin()).arg("simulate").arg(&f).output().unwrap();
    fails_with(&o, "latency_ns = 18446744073709551615: allowed 1 to 1000000000");
    let f = scenario(
        dir.path(),
        &SMALL
            .replace("[[process]]", "[costs]\nfirst_touch_ns = 18446744073709551615\n[[process]]"),
    );
    let o = Command::new(bin()).arg("simulate").arg(&f).output().unwrap();
    fails_with(&o, "costs.first_touch_ns = 18446744073709551615");
}

#[test]
fn huge_accesses_is_refused_pointing_at_stream_not_an_allocator_abort() {
    let dir = tempfile::tempdir().unwrap();
    let f = scenario(dir.path(), SMALL);
    let (o, _) = run_bounded(
        Command::new(bin()).arg("simulate").arg(&f).args([
            "--accesses",
            "100000000000",
            "--no-bounds",
        ]),
        Duration::from_secs(30),
    );
    fails_with(&o, "--stream");
}

#[test]
fn swap_too_small_for_the_overflow_oom_kills_instead_of_hanging() {
    let dir = tempfile::tempdir().unwrap();
    let f = scenario(
        dir.path(),
        "accesses = 2000000\npolicies = [\"linux-swap\", \"linux-demote\"]\n\
         [[node]]\nid = 0\ncapacity_mib = 16\ncpu = true\nlatency_ns = 80\n\
         [swap]\nsize_mib = 4\n\
         [[process]]\nname = \"big\"\n[process.workload]\nkind = \"scan\"\nfootprint_mib = 64\n",
    );
    let (o, _) = run_bounded(
        Command::new(bin()).arg("simulate").arg(&f).arg("--no-bounds"),
        Duration::from_secs(60),
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("linux-swap     OOM-killed big after"), "{out}");
    assert!(out.contains("linux-demote   OOM-killed big after"), "{out}");
}

#[test]
fn plot_to_an_unwritable_path_fails_before_the_run() {
    let dir = tempfile::tempdir().unwrap();
    let f = scenario(dir.path(), &SMALL.replace("200000", "3000000"));
    let started = Instant::now();
    let o = Command::new(bin())
        .arg("simulate")
        .arg(&f)
        .args(["--no-bounds", "--plot"])
        .arg(dir.path().join("no/such/dir/run.svg"))
        .output()
        .unwrap();
    fails_with(&o, "cannot write --plot");
    assert!(o.stdout.is_empty(), "the report was printed before the failure");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "checked after the run: {:?}",
        started.elapsed()
    );
}

// ---- Errors that don't say -----------------------------------------------------------------

#[test]
fn path_check_says_directory_or_non_utf8_and_names_the_file_once() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("paths.toml");
    let sub = dir.path().join("graphs");
    fs::create_dir(&sub).unwrap();
    let o = tierd(&state).args(["path", "check"]).arg(&sub).output().unwrap();
    let err = String::from_utf8_lossy(&o.stdout).into_owned() + &stderr(&o);
    assert!(err.contains("is a directory"), "{err}");
    assert_eq!(err.matches(sub.to_str().unwrap()).count(), 1, "{err}");
    let bin_file = dir.path().join("g.toml");
    fs::write(&bin_file, b"[node.0]\ntarget = 1\n\xff\xfe").unwrap();
    let o = tierd(&state).args(["path", "check"]).arg(&bin_file).output().unwrap();
    let err = String::from_utf8_lossy(&o.stdout).into_owned() + &stderr(&o);
    assert!(err.contains("is not UTF-8 text (invalid byte at offset 20)"), "{err}");
    assert_eq!(err.matches(bin_file.to_str().unwrap()).count(), 1, "{err}");
}

#[test]
fn an_unreadable_graph_file_says_permission_denied() {
    if !need("root (to drop to another user with setpriv)", is_root()) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let g = dir.path().join("g.toml");
    fs::write(&g, "[node.0]\ntarget = 1\n").unwrap();
    fs::set_permissions(&g, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    fs::set_permissions(dir.path(), std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let o = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(bin())
        .arg("--sysfs-root")
        .arg(fixture())
        .args(["--state", "/nonexistent/paths.toml", "path", "check"])
        .arg(&g)
        .output()
        .expect("setpriv (util-linux)");
    fails_with(&o, "permission denied (tierd runs as uid 65534)");
}

#[test]
fn a_short_binary_trace_counts_the_accesses_it_holds() {
    let dir = tempfile::tempdir().unwrap();
    let trace = dir.path().join("short.trace");
    // Header: 4 pages, 1000 accesses announced; only 100 records follow.
    let mut bytes = b"TIERDTRC".to_vec();
    bytes.extend_from_slice(&1u32.to_le_bytes());
    bytes.extend_from_slice(&4096u32.to_le_bytes());
    bytes.extend_from_slice(&4u64.to_le_bytes());
    bytes.extend_from_slice(&1000u64.to_le_bytes());
    for i in 0..100u32 {
        bytes.extend_from_slice(&(i % 4).to_le_bytes());
    }
    fs::write(&trace, bytes).unwrap();
    let f = scenario(
        dir.path(),
        &SMALL.replace(
            "kind = \"zipf\"\nfootprint_mib = 32",
            "kind = \"trace\"\npath = \"short.trace\"",
        ),
    );
    let o = Command::new(bin()).arg("simulate").arg(&f).output().unwrap();
    fails_with(&o, "the trace ends after 100 of 1000 accesses");
}

#[test]
fn a_state_path_that_cannot_exist_does_not_ask_are_you_root() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("file");
    fs::write(&file, "").unwrap();
    let o = tierd(&file.join("paths.toml")).args(["path", "set", "0", "1"]).output().unwrap();
    let err = fails_with(&o, "Not a directory");
    assert!(!err.contains("are you root"), "{err}");
}

#[test]
fn error_lines_quote_a_bounded_prefix_of_bad_input() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("paths.toml");
    let value = "9".repeat(100_000) + "x";
    let o = tierd(&state).args(["path", "set", "0", &value]).output().unwrap();
    let err = fails_with(&o, "Invalid argument");
    assert!(err.len() < 500, "{} bytes of error", err.len());
    let g = dir.path().join("g.toml");
    fs::write(&g, format!("[node.0]\ntarget = {}\n", "1".repeat(300_000))).unwrap();
    let o = tierd(&state).args(["path", "check"]).arg(&g).output().unwrap();
    let out = String::from_utf8_lossy(&o.stdout).into_owned() + &stderr(&o);
    assert!(!o.status.success() && out.len() < 2000, "{} bytes of error", out.len());
}

// ---- One slow client stalls everyone -------------------------------------------------------

struct Daemon {
    child: Child,
    socket: PathBuf,
    state: PathBuf,
    port: u16,
    config: PathBuf,
    log: PathBuf,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

const TWO_NODES: &str = "accesses = 1000000\npolicies = [\"tierd\"]\npaths = \"0 -> 1\"\n\
[[node]]\nid = 0\ncapacity_mib = 64\ncpu = true\nlatency_ns = 80\n\
[[node]]\nid = 1\ncapacity_mib = 64\nlatency_ns = 200\n\
[[process]]\nname = \"p\"\n[process.workload]\nkind = \"zipf\"\nfootprint_mib = 96\n";

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn config_text(state: &Path, socket: &Path, port: u16) -> String {
    format!(
        "[paths]\nstate = \"{}\"\n[daemon]\ninterval_ms = 50\nsocket = \"{}\"\nmetrics_addr = \"127.0.0.1:{port}\"\n",
        state.display(),
        socket.display()
    )
}

fn daemon(dir: &Path) -> Daemon {
    let socket = dir.join("ctl.sock");
    let state = dir.join("paths.toml");
    let port = free_port();
    let config = dir.join("tierd.toml");
    fs::write(&config, config_text(&state, &socket, port)).unwrap();
    let scenario = scenario(dir, TWO_NODES);
    let log = dir.join("daemon.log");
    let child = Command::new(bin())
        .args(["run", "--sim"])
        .arg(&scenario)
        .arg("--config")
        .arg(&config)
        .stderr(fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let d = Daemon { child, socket, state, port, config, log };
    let deadline = Instant::now() + Duration::from_secs(60);
    while !fs::read_to_string(&d.log).unwrap_or_default().contains("tierd running") {
        assert!(Instant::now() < deadline, "tierd run --sim did not come up");
        std::thread::sleep(Duration::from_millis(50));
    }
    d
}

fn cli(d: &Daemon, args: &[&str]) -> (Output, Duration) {
    let started = Instant::now();
    let o = Command::new(bin())
        .args(["--sysfs-root", "/nonexistent", "--state"])
        .arg(&d.state)
        .args(args)
        .output()
        .unwrap();
    (o, started.elapsed())
}

/// A client that sends one byte a second and never finishes its request.
fn trickle(mut s: impl Write + Send + 'static) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        for _ in 0..30 {
            if s.write_all(b" ").is_err() {
                return;
            }
            std::thread::sleep(Duration::from_secs(1));
        }
    })
}

#[test]
fn a_control_client_sending_a_byte_a_second_does_not_stall_path_set() {
    let dir = tempfile::tempdir().unwrap();
    let d = daemon(dir.path());
    let _slow = trickle(UnixStream::connect(&d.socket).unwrap());
    std::thread::sleep(Duration::from_millis(300));
    let (o, took) = cli(&d, &["path", "set", "0", "-1"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(took < Duration::from_secs(5), "path set took {took:?}");
}

#[test]
fn a_metrics_client_sending_a_byte_a_second_does_not_block_metrics() {
    let dir = tempfile::tempdir().unwrap();
    let d = daemon(dir.path());
    let _slow = trickle(std::net::TcpStream::connect(("127.0.0.1", d.port)).unwrap());
    std::thread::sleep(Duration::from_millis(300));
    let started = Instant::now();
    let mut s = std::net::TcpStream::connect(("127.0.0.1", d.port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let mut body = String::new();
    let _ = s.read_to_string(&mut body);
    assert!(body.starts_with("HTTP/1.1 200 OK"), "no answer in {:?}: {body}", started.elapsed());
    assert!(started.elapsed() < Duration::from_secs(4), "{:?}", started.elapsed());
}

#[test]
fn a_1_gib_control_request_line_is_refused_early() {
    let dir = tempfile::tempdir().unwrap();
    let d = daemon(dir.path());
    let mut s = UnixStream::connect(&d.socket).unwrap();
    s.set_write_timeout(Some(Duration::from_secs(10))).unwrap();
    let chunk = vec![b' '; 1 << 20];
    let mut sent = 0usize;
    // Stop at 64 MiB: enough to show whether the server keeps reading.
    while sent < 64 << 20 && s.write_all(&chunk).is_ok() {
        sent += chunk.len();
    }
    assert!(sent < 16 << 20, "the server read {} MiB of one request line", sent >> 20);
}

#[test]
fn a_path_set_reported_as_failed_is_never_applied_later() {
    let dir = tempfile::tempdir().unwrap();
    let d = daemon(dir.path());
    let (o, _) = cli(&d, &["path", "show", "0"]);
    assert_eq!(String::from_utf8_lossy(&o.stdout), "1\n", "{}", stderr(&o));
    // Idle clients hold every slot the server has (or, before the fix, its one loop).
    let idle: Vec<UnixStream> = (0..40).map(|_| UnixStream::connect(&d.socket).unwrap()).collect();
    std::thread::sleep(Duration::from_millis(300));
    let (o, took) = cli(&d, &["path", "set", "0", "-1"]);
    let failed = !o.status.success();
    drop(idle);
    std::thread::sleep(Duration::from_secs(7));
    let (show, _) = cli(&d, &["path", "show", "0"]);
    let now = String::from_utf8_lossy(&show.stdout).into_owned();
    if failed {
        assert_eq!(now, "1\n", "path set reported failure ({}) but took effect", stderr(&o));
        assert!(took < Duration::from_secs(5), "a busy server should say so at once: {took:?}");
        assert!(stderr(&o).contains("nothing was changed"), "{}", stderr(&o));
    } else {
        assert_eq!(now, "-1\n");
    }
}

#[test]
fn idle_control_clients_log_one_warning_not_one_each() {
    let dir = tempfile::tempdir().unwrap();
    let d = daemon(dir.path());
    let idle: Vec<UnixStream> = (0..4).map(|_| UnixStream::connect(&d.socket).unwrap()).collect();
    // Before, each idle client was served in turn and warned about after its 5 s timeout.
    std::thread::sleep(Duration::from_secs(22));
    drop(idle);
    let log = fs::read_to_string(&d.log).unwrap();
    let warnings =
        log.lines().filter(|l| l.contains("WARN") && l.contains("control socket")).count();
    assert_eq!(warnings, 1, "{log}");
}

// ---- Signals ---------------------------------------------------------------------------------

fn signal(child: &Child, sig: nix::sys::signal::Signal) {
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(i32::try_from(child.id()).unwrap()), sig)
        .unwrap();
}

fn wait_exit(child: &mut Child, within: Duration) -> Option<std::process::ExitStatus> {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if let Some(s) = child.try_wait().unwrap() {
            return Some(s);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    None
}

#[test]
fn sighup_does_not_kill_run_sim_and_a_reload_says_what_needs_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let mut d = daemon(dir.path());
    let other = dir.path().join("other.sock");
    fs::write(
        &d.config,
        config_text(&d.state, &other, d.port)
            + "[headroom]\ndefault_pct = 7\n[scope]\ncomm = \"^db$\"\n",
    )
    .unwrap();
    signal(&d.child, nix::sys::signal::Signal::SIGHUP);
    assert_eq!(wait_exit(&mut d.child, Duration::from_secs(2)), None, "SIGHUP killed it");
    let log = fs::read_to_string(&d.log).unwrap();
    assert!(log.contains("daemon.socket changed but only take effect after a restart"), "{log}");
    assert!(log.contains("scope.comm changed but mean nothing on the simulated machine"), "{log}");
    assert!(!log.contains("headroom.default_pct changed"), "the headroom is applied: {log}");
    assert!(d.socket.exists() && !other.exists());
    // The reloaded headroom runs: tierd status shows it for node 0.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (o, _) = cli(&d, &["status", "--json", "--socket", d.socket.to_str().unwrap()]);
        let s: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap_or_default();
        if s["nodes"][0]["headroom_pct"].as_f64().is_some_and(|p| (p - 7.0).abs() < 1e-9) {
            break;
        }
        assert!(Instant::now() < deadline, "the reloaded 7% headroom never showed: {s}");
        std::thread::sleep(Duration::from_millis(100));
    }
    signal(&d.child, nix::sys::signal::Signal::SIGTERM);
    let status = wait_exit(&mut d.child, Duration::from_secs(10)).expect("SIGTERM stops it");
    assert!(status.success(), "{status:?}");
    assert!(!d.socket.exists(), "the socket was left behind");
}

#[test]
fn sigquit_stops_run_sim_cleanly_and_removes_its_socket() {
    let dir = tempfile::tempdir().unwrap();
    let mut d = daemon(dir.path());
    signal(&d.child, nix::sys::signal::Signal::SIGQUIT);
    let status = wait_exit(&mut d.child, Duration::from_secs(10)).expect("SIGQUIT stops it");
    assert!(status.success(), "{status:?}");
    assert!(!d.socket.exists(), "the socket was left behind");
}

fn fuse_ok() -> bool {
    need("root and /dev/fuse", is_root() && Path::new("/dev/fuse").exists())
}

struct Mount {
    child: Child,
    mnt: PathBuf,
}

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = Command::new("umount").arg("-l").arg(&self.mnt).status();
    }
}

fn mount(dir: &Path) -> Mount {
    let mnt = dir.join("mnt");
    fs::create_dir_all(&mnt).unwrap();
    let child = tierd(&dir.join("paths.toml"))
        .arg("mount")
        .arg(&mnt)
        .stderr(fs::File::create(dir.join("mount.log")).unwrap())
        .spawn()
        .unwrap();
    let mut m = Mount { child, mnt };
    let deadline = Instant::now() + Duration::from_secs(20);
    while !m.mnt.join("online").exists() {
        assert!(m.child.try_wait().unwrap().is_none(), "tierd mount exited early");
        assert!(Instant::now() < deadline, "tierd mount did not come up");
        std::thread::sleep(Duration::from_millis(50));
    }
    m
}

#[test]
fn sighup_does_not_kill_tierd_mount() {
    if !fuse_ok() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut m = mount(dir.path());
    signal(&m.child, nix::sys::signal::Signal::SIGHUP);
    assert_eq!(wait_exit(&mut m.child, Duration::from_secs(2)), None, "SIGHUP killed it");
    assert_eq!(fs::read_to_string(m.mnt.join("online")).unwrap(), "0-2\n");
    signal(&m.child, nix::sys::signal::Signal::SIGTERM);
    let status = wait_exit(&mut m.child, Duration::from_secs(10)).expect("SIGTERM stops it");
    assert!(status.success(), "{status:?}");
    assert!(!dir.path().join("paths.toml.sock").exists(), "the socket was left behind");
}

#[test]
fn a_dead_mount_left_by_a_crash_is_named_with_its_fix() {
    if !fuse_ok() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut m = mount(dir.path());
    signal(&m.child, nix::sys::signal::Signal::SIGKILL);
    let _ = m.child.wait();
    let o = tierd(&dir.path().join("paths.toml")).arg("mount").arg(&m.mnt).output().unwrap();
    let err = fails_with(&o, "is a dead FUSE mount");
    assert!(err.contains("fusermount -u") && err.contains("umount -l"), "{err}");
}

// ---- One write is one store; unsupported operations ----------------------------------------

#[test]
fn a_fuse_write_longer_than_a_page_is_rejected_whole() {
    if !fuse_ok() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let m = mount(dir.path());
    let node0 = m.mnt.join("node0/migration_path");
    // "1" then NULs: kstrtol stops at the NUL, so storing any piece would set node 0 to 1.
    for len in [4097usize, 200 << 10] {
        let mut buf = vec![0u8; len];
        buf[0] = b'1';
        let mut f = fs::OpenOptions::new().write(true).open(&node0).unwrap();
        let err = f.write(&buf).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::EINVAL), "{len} bytes");
        assert_eq!(fs::read_to_string(&node0).unwrap(), "-1\n", "{len} bytes: part stored");
    }
    let mut buf = vec![0u8; 4096];
    buf[0] = b'1';
    let mut f = fs::OpenOptions::new().write(true).open(&node0).unwrap();
    assert_eq!(f.write(&buf).unwrap(), 4096, "a page is one store");
    assert_eq!(fs::read_to_string(&node0).unwrap(), "1\n");
}

#[test]
fn unsupported_fuse_operations_say_eperm_or_eacces_not_enosys() {
    if !fuse_ok() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let m = mount(dir.path());
    let errno = |r: std::io::Result<()>| r.unwrap_err().raw_os_error();
    let node0 = m.mnt.join("node0");
    assert_eq!(errno(fs::rename(node0.join("migration_path"), node0.join("x"))), Some(libc::EPERM));
    assert_eq!(errno(fs::remove_file(node0.join("migration_path"))), Some(libc::EPERM));
    assert_eq!(errno(fs::create_dir(m.mnt.join("node9"))), Some(libc::EPERM));
    assert_eq!(errno(fs::remove_dir(&node0)), Some(libc::EPERM));
    assert_eq!(errno(std::os::unix::fs::symlink("x", m.mnt.join("link"))), Some(libc::EPERM));
    assert_eq!(errno(fs::write(m.mnt.join("new-file"), "1").map(drop)), Some(libc::EACCES));
}

// ---- Logs quote a bounded prefix -------------------------------------------------------------

#[test]
fn info_logs_of_fuse_stores_quote_a_bounded_prefix_of_the_input() {
    if !fuse_ok() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let m = mount(dir.path());
    let node0 = m.mnt.join("node0/migration_path");
    let store = |buf: &[u8]| fs::OpenOptions::new().write(true).open(&node0).unwrap().write(buf);
    // A page of garbage is rejected; a page that kstrtol reads as "1" is stored. Both are
    // logged at INFO, and neither log line may carry the page.
    let err = store(&[b'x'; 4096]).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EINVAL));
    let mut one = vec![b'7'; 4096];
    one[0] = b'1';
    one[1] = 0;
    assert_eq!(store(&one).unwrap(), 4096);
    assert_eq!(fs::read_to_string(&node0).unwrap(), "1\n");
    let log = fs::read_to_string(dir.path().join("mount.log")).unwrap();
    assert!(log.contains("store rejected") && log.contains("migration_path stored"), "{log}");
    let longest = log.lines().map(str::len).max().unwrap_or(0);
    assert!(longest < 400, "a log line of {longest} bytes:\n{log}");
    assert!(!log.contains(&"x".repeat(200)) && !log.contains(&"7".repeat(200)), "{log}");
}
