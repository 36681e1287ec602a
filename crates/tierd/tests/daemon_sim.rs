//! `tierd run --sim`: the daemon loop, its control socket and its metrics, live over the
//! simulated machine; `tierd status` and `tierd path` talk to it; SIGTERM stops it cleanly.

use std::io::{Read, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const TIERD: &str = env!("CARGO_BIN_EXE_tierd");

fn status(socket: &Path) -> serde_json::Value {
    let out = Command::new(TIERD)
        .arg("status")
        .arg("--json")
        .arg("--socket")
        .arg(socket)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

fn metrics(port: u16) -> String {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(s, "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let mut body = String::new();
    s.read_to_string(&mut body).unwrap();
    body
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

#[test]
fn the_daemon_loop_runs_live_on_the_simulated_machine() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("ctl.sock");
    let state = dir.path().join("paths.toml");
    let port = free_port();
    let config = dir.path().join("tierd.toml");
    std::fs::write(
        &config,
        format!(
            "[paths]\nstate = {state:?}\n[daemon]\ninterval_ms = 50\nsocket = {socket:?}\nmetrics_addr = \"127.0.0.1:{port}\"\n"
        ),
    )
    .unwrap();
    let mut child = Command::new(TIERD)
        .args(["run", "--sim", "default", "--config"])
        .arg(&config)
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    // The embedded default is the bound case: node 0 fills, tierd demotes to node 1.
    let moved = loop {
        assert!(child.try_wait().unwrap().is_none(), "tierd run --sim exited early");
        if socket.exists() {
            let s = status(&socket);
            if let Some(m) = s["moved_pages"]["0->1"].as_u64().filter(|m| *m > 0) {
                assert_eq!(s["tracker"], "simulator");
                break m;
            }
        }
        assert!(Instant::now() < deadline, "no demotion within 60 s");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(moved > 0);
    let body = metrics(port);
    assert!(body.contains("tierd_demoted_pages_total{from=\"0\",to=\"1\"}"), "{body}");

    // Paths changed through the socket re-plan the policy. The CLI asks the owner, so it
    // needs no sysfs of its own (this simulated machine has none).
    let cli = |args: &[&str]| {
        Command::new(TIERD)
            .args(["--sysfs-root", "/nonexistent", "--state"])
            .arg(&state)
            .args(args)
            .output()
            .unwrap()
    };
    let out = cli(&["path", "set", "0", "-1"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&cli(&["path", "show", "0"]).stdout), "-1\n");
    std::thread::sleep(Duration::from_millis(500));
    let before = status(&socket)["moved_pages"]["0->1"].as_u64().unwrap();
    std::thread::sleep(Duration::from_secs(1));
    let after = status(&socket)["moved_pages"]["0->1"].as_u64().unwrap();
    assert_eq!(before, after, "node 0 is terminal now: nothing more moves 0 -> 1");
    let out = cli(&["path", "set", "0", "2"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let deadline = Instant::now() + Duration::from_secs(30);
    while status(&socket)["moved_pages"]["0->2"].as_u64().unwrap_or(0) == 0 {
        assert!(Instant::now() < deadline, "no demotion along the new path 0 -> 2");
        std::thread::sleep(Duration::from_millis(100));
    }

    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(i32::try_from(child.id()).unwrap()),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let exit = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "tierd run --sim ignored SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(exit.success(), "{exit}");
    assert!(!socket.exists(), "the control socket is removed on exit");
}
