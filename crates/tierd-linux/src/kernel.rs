//! The kernel's own tiering: demotion in reclaim (`/sys/kernel/mm/numa/demotion_enabled`,
//! 5.15+) and memory-tiering promotion by NUMA balancing (`numa_balancing` bit 2, 6.0+).
//!
//! The two play different parts for tierd. The kernel's demotion is its **backstop**: it runs
//! inside reclaim, synchronously, so while tierd runs it is switched on ([`Wanted::demotion`])
//! and a page that reclaim takes from a fast node goes down a tier instead of to swap even
//! when tierd's loop is starved of CPU. Tiering promotion, on the other hand, moves pages up
//! behind tierd's back and can ping-pong with its promotion and demotion: tierd warns about it
//! and `--take-over` switches it off. [`apply`] changes what is asked and its [`Guard`] puts
//! back exactly what it changed.

use std::path::Path;

use crate::topology::{read_demotion_enabled, read_numa_balancing};
use crate::{Error, SysRoot};

/// `NUMA_BALANCING_MEMORY_TIERING` (`include/linux/sched/sysctl.h`).
const MEMORY_TIERING: u32 = 2;

/// What the kernel's own tiering is set to; `None` where the kernel has no such file.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KernelTiering {
    /// `demotion_enabled`.
    pub demotion_enabled: Option<bool>,
    /// `numa_balancing`.
    pub numa_balancing: Option<u32>,
}

impl KernelTiering {
    /// Reads both files.
    pub fn read(root: &SysRoot) -> Result<KernelTiering, Error> {
        Ok(KernelTiering {
            demotion_enabled: read_demotion_enabled(root)?,
            numa_balancing: read_numa_balancing(root)?,
        })
    }

    /// One sentence per setting that makes the kernel move pages behind tierd's back. The
    /// kernel's demotion is one only when tierd does not use it as its backstop
    /// (`backstop` false).
    pub fn conflicts(&self, backstop: bool) -> Vec<String> {
        let mut out = Vec::new();
        if self.demotion_enabled == Some(true) && !backstop {
            out.push(
                "the kernel demotes pages in reclaim itself (demotion_enabled=true) along its \
                 own tiers, not the migration paths, and tierd's backstop is off: run with \
                 --take-over, set [daemon] backstop = \"kernel-demotion\", or echo false > \
                 /sys/kernel/mm/numa/demotion_enabled"
                    .to_string(),
            );
        }
        if let Some(b) = self.numa_balancing.filter(|b| b & MEMORY_TIERING != 0) {
            out.push(format!(
                "NUMA balancing promotes pages itself (numa_balancing={b}): promotions may \
                 ping-pong with tierd's; run with --take-over or write {} to \
                 /proc/sys/kernel/numa_balancing",
                b & !MEMORY_TIERING
            ));
        }
        out
    }
}

/// What tierd asks of the kernel's tiering while it runs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Wanted {
    /// `demotion_enabled`: `Some(true)` for the backstop, `Some(false)` to take it over,
    /// `None` to leave it as it is.
    pub demotion: Option<bool>,
    /// Clear the memory-tiering bit of `numa_balancing`.
    pub no_tiering_promotion: bool,
}

/// The settings tierd changed, put back by [`Guard::restore`] or on drop.
#[derive(Debug)]
pub struct Guard {
    root: SysRoot,
    saved: KernelTiering,
    /// What tierd wrote: demotion, numa_balancing.
    wrote_demotion: bool,
    wrote_balancing: bool,
    restored: bool,
}

fn write(path: &Path, text: &str) -> Result<(), Error> {
    std::fs::write(path, text).map_err(|source| Error::Io { path: path.to_path_buf(), source })
}

fn bool_text(v: bool) -> &'static str {
    if v { "true\n" } else { "false\n" }
}

/// Sets what `wanted` asks, where the kernel has the file and it differs, remembering what
/// was there. A setting the kernel lacks is left alone (see [`Guard::demotion`]).
pub fn apply(root: &SysRoot, wanted: Wanted) -> Result<Guard, Error> {
    let saved = KernelTiering::read(root)?;
    let mut guard = Guard {
        root: root.clone(),
        saved,
        wrote_demotion: false,
        wrote_balancing: false,
        restored: false,
    };
    if let (Some(want), Some(now)) = (wanted.demotion, saved.demotion_enabled)
        && want != now
    {
        write(&root.demotion_enabled_file(), bool_text(want))?;
        guard.wrote_demotion = true;
    }
    if wanted.no_tiering_promotion
        && let Some(b) = saved.numa_balancing.filter(|b| b & MEMORY_TIERING != 0)
    {
        write(&root.numa_balancing_file(), &format!("{}\n", b & !MEMORY_TIERING))?;
        guard.wrote_balancing = true;
    }
    Ok(guard)
}

impl Guard {
    /// What the kernel had before.
    pub fn saved(&self) -> KernelTiering {
        self.saved
    }

    /// `demotion_enabled` while tierd runs; `None` where the kernel has no such file.
    pub fn demotion(&self) -> Option<bool> {
        self.saved.demotion_enabled.map(|was| was != self.wrote_demotion)
    }

    /// Whether tierd changed `demotion_enabled` (and puts it back on exit).
    pub fn changed_demotion(&self) -> bool {
        self.wrote_demotion
    }

    /// Whether tierd cleared the tiering bit of `numa_balancing`.
    pub fn changed_balancing(&self) -> bool {
        self.wrote_balancing
    }

    /// Puts the saved settings back.
    pub fn restore(mut self) -> Result<(), Error> {
        self.put_back()
    }

    fn put_back(&mut self) -> Result<(), Error> {
        if self.restored {
            return Ok(());
        }
        self.restored = true;
        if let (true, Some(was)) = (self.wrote_demotion, self.saved.demotion_enabled) {
            write(&self.root.demotion_enabled_file(), bool_text(was))?;
        }
        if let (true, Some(b)) = (self.wrote_balancing, self.saved.numa_balancing) {
            write(&self.root.numa_balancing_file(), &format!("{b}\n"))?;
        }
        Ok(())
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        if let Err(e) = self.put_back() {
            tracing::error!("could not restore the kernel's tiering settings: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree(demotion: &str, balancing: &str) -> (tempfile::TempDir, SysRoot) {
        let dir = tempfile::tempdir().unwrap();
        let root = SysRoot::under(dir.path());
        std::fs::create_dir_all(root.demotion_enabled_file().parent().unwrap()).unwrap();
        std::fs::create_dir_all(root.numa_balancing_file().parent().unwrap()).unwrap();
        std::fs::write(root.demotion_enabled_file(), demotion).unwrap();
        std::fs::write(root.numa_balancing_file(), balancing).unwrap();
        (dir, root)
    }

    #[test]
    fn take_over_switches_off_and_restores_on_drop() {
        let (_d, root) = tree("true\n", "3\n");
        let k = KernelTiering::read(&root).unwrap();
        assert_eq!(k.conflicts(false).len(), 2);
        assert_eq!(k.conflicts(true).len(), 1, "demotion is the backstop, not a conflict");
        let wanted = Wanted { demotion: Some(false), no_tiering_promotion: true };
        let guard = apply(&root, wanted).unwrap();
        assert_eq!(guard.demotion(), Some(false));
        let now = KernelTiering::read(&root).unwrap();
        assert_eq!(now, KernelTiering { demotion_enabled: Some(false), numa_balancing: Some(1) });
        assert!(now.conflicts(false).is_empty());
        drop(guard);
        assert_eq!(KernelTiering::read(&root).unwrap(), k);
    }

    #[test]
    fn the_backstop_switches_demotion_on_and_puts_back_what_was_there() {
        let (_d, root) = tree("false\n", "3\n");
        let guard =
            apply(&root, Wanted { demotion: Some(true), no_tiering_promotion: false }).unwrap();
        assert!(guard.changed_demotion() && !guard.changed_balancing());
        assert_eq!(guard.demotion(), Some(true));
        assert_eq!(std::fs::read_to_string(root.demotion_enabled_file()).unwrap(), "true\n");
        assert_eq!(std::fs::read_to_string(root.numa_balancing_file()).unwrap(), "3\n");
        guard.restore().unwrap();
        assert_eq!(std::fs::read_to_string(root.demotion_enabled_file()).unwrap(), "false\n");
    }

    #[test]
    fn demotion_already_on_is_left_on_at_exit() {
        let (_d, root) = tree("true\n", "0\n");
        let guard =
            apply(&root, Wanted { demotion: Some(true), no_tiering_promotion: true }).unwrap();
        assert!(!guard.changed_demotion() && !guard.changed_balancing());
        assert_eq!(guard.demotion(), Some(true));
        drop(guard);
        assert_eq!(std::fs::read_to_string(root.demotion_enabled_file()).unwrap(), "true\n");
    }

    #[test]
    fn nothing_to_take_over_writes_nothing() {
        let (_d, root) = tree("false\n", "1\n");
        let guard =
            apply(&root, Wanted { demotion: Some(false), no_tiering_promotion: true }).unwrap();
        // A setting changed meanwhile by the admin is not overwritten on restore.
        std::fs::write(root.numa_balancing_file(), "0\n").unwrap();
        guard.restore().unwrap();
        assert_eq!(std::fs::read_to_string(root.numa_balancing_file()).unwrap(), "0\n");
        assert_eq!(std::fs::read_to_string(root.demotion_enabled_file()).unwrap(), "false\n");
    }

    #[test]
    fn absent_files_are_no_conflict() {
        let dir = tempfile::tempdir().unwrap();
        let root = SysRoot::under(dir.path());
        let k = KernelTiering::read(&root).unwrap();
        assert_eq!(k, KernelTiering::default());
        assert!(k.conflicts(false).is_empty());
        let guard =
            apply(&root, Wanted { demotion: Some(true), no_tiering_promotion: true }).unwrap();
        assert_eq!(guard.demotion(), None, "no demotion_enabled: no backstop");
        guard.restore().unwrap();
    }
}
