//! Which processes tierd manages: all of them, a cgroup v2 subtree, a list of pids, or the
//! processes whose name matches a pattern. Kernel threads, zombies and tierd itself are never
//! in scope, whatever the selection says: kernel threads have no user pages to move, and
//! tierd must not stall itself with its own `move_pages` calls.
//!
//! Processes come and go between a listing and a use of it; one that vanished is simply left
//! out (absent is not an error).

use std::path::{Path, PathBuf};

use crate::read::{Bad, optional};
use crate::{Error, SysRoot};

/// `PF_KTHREAD` in `/proc/PID/stat`'s flags field (`include/linux/sched.h`).
const PF_KTHREAD: u64 = 0x0020_0000;

/// What the user selected.
#[derive(Clone, Debug)]
pub enum Selection {
    /// Every user process.
    All,
    /// The processes in a cgroup v2 directory or below it; the path is as `/proc/PID/cgroup`
    /// prints it, relative to the cgroup2 mount (`/system.slice/redis.service`).
    Cgroup(PathBuf),
    /// These pids (those that exist).
    Pids(Vec<u32>),
    /// Processes whose `comm` (the name `ps -o comm` shows) matches this regular expression.
    Comm(regex::Regex),
}

/// One process in scope.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Process {
    /// Its pid.
    pub pid: u32,
    /// Its `comm`.
    pub comm: String,
}

/// The parts of `/proc/PID/stat` scope needs.
#[derive(Debug, PartialEq, Eq)]
struct Stat {
    comm: String,
    state: char,
    flags: u64,
}

/// Parses `/proc/PID/stat`. The name sits in parentheses and may itself contain spaces and
/// parentheses, so the fields are counted from the last `)`.
fn parse_stat(text: &str) -> Result<Stat, Bad> {
    let open = text.find('(').ok_or_else(|| Bad::new(text, "no `(` before the process name"))?;
    let close = text.rfind(')').ok_or_else(|| Bad::new(text, "no `)` after the process name"))?;
    let comm = text.get(open + 1..close).unwrap_or_default().to_string();
    let rest: Vec<&str> = text[close + 1..].split_whitespace().collect();
    let state = rest
        .first()
        .and_then(|s| s.chars().next())
        .ok_or_else(|| Bad::new(text, "no state field"))?;
    let flags = rest
        .get(6)
        .and_then(|f| f.parse().ok())
        .ok_or_else(|| Bad::new(text, "no numeric flags field (the 9th)"))?;
    Ok(Stat { comm, state, flags })
}

/// The cgroup v2 path of a process (`0::/path` in `/proc/PID/cgroup`).
fn cgroup_v2(text: &str) -> Option<&str> {
    text.lines().find_map(|l| l.strip_prefix("0::"))
}

fn in_cgroup(process: &str, wanted: &Path) -> bool {
    Path::new(process).starts_with(wanted)
}

/// The processes in scope, ascending by pid.
pub fn processes(root: &SysRoot, selection: &Selection) -> Result<Vec<Process>, Error> {
    let me = std::process::id();
    let pids: Vec<u32> = if let Selection::Pids(p) = selection {
        p.clone()
    } else {
        let entries = std::fs::read_dir(&root.proc)
            .map_err(|source| Error::Io { path: root.proc.clone(), source })?;
        entries.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok()).collect()
    };
    let mut out = Vec::new();
    for pid in pids {
        if pid == me {
            continue;
        }
        let dir = root.proc.join(pid.to_string());
        let Some(text) = optional(&dir.join("stat"))? else { continue };
        let stat = parse_stat(&text).map_err(|b| b.at(&dir.join("stat")))?;
        if stat.flags & PF_KTHREAD != 0 || matches!(stat.state, 'Z' | 'X') {
            continue;
        }
        let wanted = match selection {
            Selection::All | Selection::Pids(_) => true,
            Selection::Comm(re) => re.is_match(&stat.comm),
            Selection::Cgroup(path) => optional(&dir.join("cgroup"))?
                .as_deref()
                .and_then(cgroup_v2)
                .is_some_and(|cg| in_cgroup(cg, path)),
        };
        if wanted {
            out.push(Process { pid, comm: stat.comm });
        }
    }
    out.sort_by_key(|p| p.pid);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stat(pid: u32, comm: &str, state: char, flags: u64) -> String {
        format!("{pid} ({comm}) {state} 1 {pid} {pid} 0 -1 {flags} 100 0 0 0 5 3 0 0 20 0 1 0 42\n")
    }

    fn proc_tree() -> (tempfile::TempDir, SysRoot) {
        let dir = tempfile::tempdir().unwrap();
        let proc = dir.path().join("proc");
        let add = |pid: u32, comm: &str, state: char, flags: u64, cgroup: &str| {
            let d = proc.join(pid.to_string());
            std::fs::create_dir_all(&d).unwrap();
            std::fs::write(d.join("stat"), stat(pid, comm, state, flags)).unwrap();
            std::fs::write(d.join("cgroup"), format!("0::{cgroup}\n")).unwrap();
        };
        add(1, "systemd", 'S', 0x0040_0100, "/init.scope");
        add(2, "kthreadd", 'S', 0x0020_8040, "/");
        add(40, "kworker/0:1-events", 'I', 0x0420_8060, "/");
        add(100, "redis-server", 'S', 0x0040_0100, "/system.slice/redis.service");
        add(101, "worker (a) b", 'R', 0x0040_0000, "/system.slice/redis.service/sub");
        add(102, "defunct", 'Z', 0x0040_0100, "/system.slice/redis.service");
        add(200, "postgres", 'S', 0x0040_0100, "/system.slice/postgresql.service");
        std::fs::create_dir_all(proc.join("self")).unwrap();
        std::fs::write(proc.join("meminfo"), "").unwrap();
        let root = SysRoot::new(dir.path().join("sys"), proc);
        (dir, root)
    }

    fn pids(root: &SysRoot, sel: &Selection) -> Vec<u32> {
        processes(root, sel).unwrap().into_iter().map(|p| p.pid).collect()
    }

    #[test]
    fn kernel_threads_zombies_and_tierd_are_never_in_scope() {
        let (_d, root) = proc_tree();
        assert_eq!(pids(&root, &Selection::All), [1, 100, 101, 200]);
        let me = std::process::id();
        assert_eq!(pids(&root, &Selection::Pids(vec![me, 2, 100, 999])), [100]);
    }

    #[test]
    fn cgroup_selects_the_subtree_only() {
        let (_d, root) = proc_tree();
        let sel = Selection::Cgroup("/system.slice/redis.service".into());
        assert_eq!(pids(&root, &sel), [100, 101]);
        let sel = Selection::Cgroup("/system.slice/redis".into());
        assert!(pids(&root, &sel).is_empty(), "a path prefix is not a parent cgroup");
    }

    #[test]
    fn comm_pattern_sees_names_with_spaces_and_parentheses() {
        let (_d, root) = proc_tree();
        let sel = Selection::Comm(regex::Regex::new(r"^worker \(a\)").unwrap());
        let found = processes(&root, &sel).unwrap();
        assert_eq!(found, [Process { pid: 101, comm: "worker (a) b".into() }]);
    }

    #[test]
    fn a_process_that_vanished_is_left_out_and_garbage_is_an_error() {
        let (d, root) = proc_tree();
        std::fs::remove_file(d.path().join("proc/200/stat")).unwrap();
        assert_eq!(pids(&root, &Selection::All), [1, 100, 101]);
        std::fs::write(d.path().join("proc/100/stat"), "100 redis S").unwrap();
        let err = processes(&root, &Selection::All).unwrap_err().to_string();
        assert!(err.contains("proc/100/stat") && err.contains("no `(`"), "{err}");
    }

    #[test]
    fn reads_this_machine() {
        let found = processes(&SysRoot::default(), &Selection::All).unwrap();
        assert!(found.iter().all(|p| p.pid != std::process::id()));
        assert!(!found.is_empty(), "some user process besides the test runs here");
    }
}
