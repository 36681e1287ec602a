//! The CLI in direct mode (no long-running owner), over the test-bed fixture.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/dram-cxl-pmem/sys")
}

fn tierd(state: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tierd"))
        .arg("--sysfs-root")
        .arg(fixture())
        .arg("--state")
        .arg(state)
        .args(args)
        .output()
        .unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn path_set_behaves_like_a_sysfs_store() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("paths.toml");
    for (value, shown) in [("2\n", "2"), ("-1", "-1"), ("0x1", "1"), ("-9", "-1"), ("02", "2")] {
        let o = tierd(&state, &["path", "set", "0", value]);
        assert!(o.status.success(), "{value:?}: {}", stderr(&o));
        assert_eq!(stdout(&tierd(&state, &["path", "show", "0"])), format!("{shown}\n"));
    }
    for (value, why) in [
        ("3", "node 3 is not online"),
        ("1024", "out of range"),
        ("2 ", "kstrtol"),
        ("", "kstrtol"),
        ("0", "cycle: 0 -> 0"),
    ] {
        let o = tierd(&state, &["path", "set", "0", value]);
        assert!(!o.status.success(), "{value:?} was accepted");
        let err = stderr(&o);
        assert!(err.contains("Invalid argument") && err.contains(why), "{value:?}: {err}");
        assert_eq!(stdout(&tierd(&state, &["path", "show", "0"])), "2\n", "{value:?} changed it");
    }
}

#[test]
fn check_exits_non_zero_and_lists_every_problem() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("paths.toml");
    let file = dir.path().join("g.toml");
    std::fs::write(&file, "[node.0]\ntarget = 1\n[node.1]\ntarget = 0\n[node.2]\ntarget = 7\n")
        .unwrap();
    let o = tierd(&state, &["path", "check", file.to_str().unwrap(), "--json"]);
    assert!(!o.status.success());
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["ok"], false);
    assert_eq!(
        v["errors"],
        serde_json::json!(["node 7 is not online (named by node 2)", "cycle: 0 -> 1 -> 0"])
    );
    // apply refuses it whole, dry run or not, and the state file is never created.
    for extra in [&["--dry-run"][..], &[][..]] {
        let mut args = vec!["path", "apply", file.to_str().unwrap()];
        args.extend_from_slice(extra);
        let o = tierd(&state, &args);
        assert!(!o.status.success());
        assert!(stderr(&o).contains("cycle: 0 -> 1 -> 0"), "{}", stderr(&o));
    }
    assert!(!state.exists());
}

#[test]
fn dry_run_changes_nothing_and_apply_replaces_the_table() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("paths.toml");
    assert!(tierd(&state, &["path", "auto", "--apply"]).status.success());
    let file = dir.path().join("user.toml");
    std::fs::write(&file, "[node.0]\ntarget = 2\n").unwrap();
    let o = tierd(&state, &["path", "apply", file.to_str().unwrap(), "--dry-run"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&tierd(&state, &["path", "show", "1"])), "2\n");
    assert!(tierd(&state, &["path", "apply", file.to_str().unwrap()]).status.success());
    assert_eq!(stdout(&tierd(&state, &["path", "show", "0"])), "2\n");
    assert_eq!(stdout(&tierd(&state, &["path", "show", "1"])), "-1\n");
}

#[test]
fn a_corrupt_state_file_is_reported_not_reset() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("paths.toml");
    std::fs::write(&state, "[node.0\ntarget = 1\n").unwrap();
    for args in [&["path", "show"][..], &["path", "set", "0", "1"][..]] {
        let o = tierd(&state, args);
        assert!(!o.status.success());
        let err = stderr(&o);
        assert!(err.contains(state.to_str().unwrap()) && err.contains("corrupt"), "{err}");
    }
    assert_eq!(std::fs::read_to_string(&state).unwrap(), "[node.0\ntarget = 1\n");
}

#[test]
fn help_explains_the_store_rules() {
    let o =
        Command::new(env!("CARGO_BIN_EXE_tierd")).args(["path", "set", "--help"]).output().unwrap();
    let help = stdout(&o);
    assert!(help.contains("kstrtol") && help.contains("Invalid argument"), "{help}");
}
