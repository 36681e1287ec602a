//! Where the kernel's files are: [`SysRoot`].
//!
//! Every reader in this crate takes a `SysRoot` instead of hard-coding `/sys` and `/proc`, the
//! way below's `ProcReader::new_with_custom_procfs` does, so the readers run unchanged over a
//! fixture tree in a test, a copy of a customer's sysfs, or a chroot. The path helpers here are
//! the one place that spells out the kernel's layout; the readers and the fixture builders
//! both use them, so the two cannot disagree on where a file lives.

use std::path::{Path, PathBuf};

use tierd_core::NodeId;

/// The roots of sysfs and procfs.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct SysRoot {
    /// What stands for `/sys`.
    pub sys: PathBuf,
    /// What stands for `/proc`.
    pub proc: PathBuf,
}

impl Default for SysRoot {
    /// The running system: `/sys` and `/proc`.
    fn default() -> SysRoot {
        SysRoot::new("/sys", "/proc")
    }
}

impl SysRoot {
    /// A root with sysfs at `sys` and procfs at `proc`.
    pub fn new(sys: impl Into<PathBuf>, proc: impl Into<PathBuf>) -> SysRoot {
        SysRoot { sys: sys.into(), proc: proc.into() }
    }

    /// The tree under `dir`, which holds `sys/` and `proc/` side by side: a fixture directory
    /// (see `fixtures/` at the repository root) or the root of a chroot.
    pub fn under(dir: impl AsRef<Path>) -> SysRoot {
        let dir = dir.as_ref();
        SysRoot::new(dir.join("sys"), dir.join("proc"))
    }

    /// `sys/devices/system/node`: the node masks (`possible`, `online`, `has_cpu`, ...) and
    /// one `nodeN` directory per online node.
    pub fn node_root(&self) -> PathBuf {
        self.sys.join("devices/system/node")
    }

    /// `sys/devices/system/node/nodeN`.
    pub fn node_dir(&self, node: NodeId) -> PathBuf {
        self.node_root().join(format!("node{node}"))
    }

    /// `sys/devices/system/node/nodeN/accessC/initiators`: HMAT figures of access class `C`
    /// (0: best initiator of any kind, 1: best CPU initiator).
    pub fn hmat_dir(&self, node: NodeId, access_class: u8) -> PathBuf {
        self.node_dir(node).join(format!("access{access_class}/initiators"))
    }

    /// `sys/devices/virtual/memory_tiering`: one `memory_tierN` directory per kernel memory
    /// tier (Linux 6.1+).
    pub fn memory_tiering_dir(&self) -> PathBuf {
        self.sys.join("devices/virtual/memory_tiering")
    }

    /// `sys/kernel/mm/numa/demotion_enabled` (Linux 5.15+).
    pub fn demotion_enabled_file(&self) -> PathBuf {
        self.sys.join("kernel/mm/numa/demotion_enabled")
    }

    /// `proc/sys/kernel/numa_balancing`.
    pub fn numa_balancing_file(&self) -> PathBuf {
        self.proc.join("sys/kernel/numa_balancing")
    }

    /// `proc/self/oom_score_adj`: the calling process's OOM-killer adjustment.
    pub fn oom_score_adj_file(&self) -> PathBuf {
        self.proc.join("self/oom_score_adj")
    }

    /// `proc/vmstat`.
    pub fn vmstat_file(&self) -> PathBuf {
        self.proc.join("vmstat")
    }

    /// The kernel log, `/dev/kmsg`: the `dev` directory beside `sys` (so `/dev/kmsg` for the
    /// running system, `DIR/dev/kmsg` for a fixture tree under `DIR`).
    pub fn kmsg_file(&self) -> PathBuf {
        self.sys.join("../dev/kmsg")
    }
}

/// The running kernel's root, for the tests that read it; `None`, saying why, where `/sys` has
/// no NUMA node files (a container without sysfs, a kernel without `CONFIG_NUMA`). Under
/// `CI=true` that is a failure: CI's machine has them.
#[cfg(test)]
pub(crate) fn running_kernel() -> Option<SysRoot> {
    let root = SysRoot::default();
    if root.node_root().join("online").exists() {
        return Some(root);
    }
    let why = "skipped: /sys/devices/system/node/online is absent (no sysfs, or no NUMA)";
    assert!(std::env::var("CI").as_deref() != Ok("true"), "{why}, and CI=true");
    eprintln!("{why}");
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_is_the_running_system() {
        let r = SysRoot::default();
        assert_eq!(r.sys, Path::new("/sys"));
        assert_eq!(r.proc, Path::new("/proc"));
        assert_eq!(r.node_root(), Path::new("/sys/devices/system/node"));
        assert_eq!(r.kmsg_file(), Path::new("/sys/../dev/kmsg"));
    }

    #[test]
    fn under_puts_sys_and_proc_side_by_side() {
        let r = SysRoot::under("/tmp/fx");
        let n2 = NodeId::new(2).unwrap();
        assert_eq!(r.node_dir(n2), Path::new("/tmp/fx/sys/devices/system/node/node2"));
        assert_eq!(
            r.hmat_dir(n2, 1),
            Path::new("/tmp/fx/sys/devices/system/node/node2/access1/initiators")
        );
        assert_eq!(r.numa_balancing_file(), Path::new("/tmp/fx/proc/sys/kernel/numa_balancing"));
        assert_eq!(r.vmstat_file(), Path::new("/tmp/fx/proc/vmstat"));
    }
}
