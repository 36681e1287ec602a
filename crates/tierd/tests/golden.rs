//! `tierd topology` and `tierd path auto` on every committed fixture machine match the
//! expected outputs kept beside the fixture (`fixtures/<name>/expected/`).
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
