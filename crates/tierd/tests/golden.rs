//! `tierd topology` and `tierd path auto` on every committed fixture machine match the
//! expected outputs kept beside the fixture (`fixtures/<name>/expected/`), and on the trees
//! captured from the test bed they print the kernel's own lines of the same boot.
//!
//! After an intended change of output, rewrite them with
//! `TIERD_BLESS=1 cargo test -p tierd --test golden` and review the diff.

use std::path::{Path, PathBuf};
use std::process::Command;

fn fixtures() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures");
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(&root)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("sys").is_dir())
        .collect();
    dirs.sort();
    assert!(dirs.len() >= 6, "expected the six fixture machines under {}", root.display());
    dirs
}

fn run(fixture: &Path, args: &[&str]) -> String {
    let state = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_tierd"))
        .arg("--sysfs-root")
        .arg(fixture.join("sys"))
        .arg("--state")
        .arg(state.path().join("paths.toml"))
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "tierd {args:?} on {} failed: {}",
        fixture.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn outputs_match_the_expected_files() {
    let bless = std::env::var_os("TIERD_BLESS").is_some();
    let mut mismatches = Vec::new();
    for fixture in fixtures() {
        for (file, args) in [
            ("topology.txt", &["topology"][..]),
            ("topology.json", &["topology", "--json"][..]),
            ("path-auto.txt", &["path", "auto"][..]),
        ] {
            let got = run(&fixture, args);
            let path = fixture.join("expected").join(file);
            if bless {
                std::fs::create_dir_all(path.parent().unwrap()).unwrap();
                std::fs::write(&path, &got).unwrap();
                continue;
            }
            let want = std::fs::read_to_string(&path).unwrap_or_else(|e| {
                panic!("{}: {e} (create it with TIERD_BLESS=1)", path.display())
            });
            if got != want {
                mismatches.push(format!("{}:\n--- want\n{want}--- got\n{got}", path.display()));
            }
        }
    }
    assert!(mismatches.is_empty(), "{}", mismatches.join("\n"));
}

/// The trees captured from Linux 6.12 in the test bed keep the kernel's `Demotion targets`
/// and `Fallback order` lines of that boot in `expected/kernel-log.txt`: `tierd path auto`
/// on the tree prints the same ones.
#[test]
fn captured_trees_give_the_kernels_own_lines() {
    let mut checked = 0;
    for fixture in fixtures() {
        let Ok(log) = std::fs::read_to_string(fixture.join("expected/kernel-log.txt")) else {
            continue;
        };
        let out = run(&fixture, &["path", "auto"]);
        for prefix in ["Demotion targets", "Fallback order"] {
            let mine: Vec<&str> =
                out.lines().map(str::trim_start).filter(|l| l.starts_with(prefix)).collect();
            let kernel: Vec<&str> = log.lines().filter(|l| l.starts_with(prefix)).collect();
            assert!(!mine.is_empty(), "{}: no {prefix} lines", fixture.display());
            assert_eq!(
                mine,
                kernel[kernel.len().saturating_sub(mine.len())..],
                "{}: {prefix}",
                fixture.display()
            );
        }
        checked += 1;
    }
    assert!(checked >= 8, "expected the eight captured trees, found {checked}");
}

/// On `vm-hotplug` the kernel rebuilt its zonelists when node 3's memory came online, with
/// the CPUs counted. Without its log (`dev/kmsg`), tierd can only replay the boot build and
/// gets the tie from node 1 wrong; with it, tierd prints the kernel's line.
#[test]
fn a_rebuild_after_boot_needs_the_kernel_log() {
    let captured = fixtures().into_iter().find(|f| f.ends_with("vm-hotplug")).unwrap();
    let line = |out: &str| {
        out.lines().find(|l| l.starts_with("Demotion targets for Node 1")).unwrap().to_string()
    };
    assert_eq!(
        line(&run(&captured, &["path", "auto"])),
        "Demotion targets for Node 1: preferred: 0, fallback: 0,2-3"
    );
    let without_log = tempfile::tempdir().unwrap();
    for sub in ["sys", "proc"] {
        let status = Command::new("cp")
            .arg("-r")
            .arg(captured.join(sub))
            .arg(without_log.path())
            .status()
            .unwrap();
        assert!(status.success());
    }
    assert_eq!(
        line(&run(without_log.path(), &["path", "auto"])),
        "Demotion targets for Node 1: preferred: 2-3, fallback: 0,2-3"
    );
}

#[test]
fn test_bed_auto_equals_the_kernel_dmesg_lines() {
    let out = run(
        &fixtures().into_iter().find(|f| f.ends_with("dram-cxl-pmem")).unwrap(),
        &["path", "auto"],
    );
    let lines: Vec<&str> = out.lines().take(3).collect();
    assert_eq!(
        lines,
        [
            "Demotion targets for Node 0: preferred: 1, fallback: 1-2",
            "Demotion targets for Node 1: preferred: 2, fallback: 2",
            "Demotion targets for Node 2: null",
        ]
    );
}
