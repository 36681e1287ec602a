//! The kernel's own tiering, which fights tierd when both run: demotion in reclaim
//! (`/sys/kernel/mm/numa/demotion_enabled`, 5.15+) and memory-tiering promotion by NUMA
//! balancing (`numa_balancing` bit 2, 6.0+). tierd warns about them at start and in
//! `tierd status`; with `--take-over` it turns them off and restores them on exit.

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

    /// One sentence per setting that makes the kernel move pages behind tierd's back.
    pub fn conflicts(&self) -> Vec<String> {
        let mut out = Vec::new();
        if self.demotion_enabled == Some(true) {
            out.push(
                "the kernel demotes pages in reclaim itself (demotion_enabled=true): it and tierd \
                 will fight; run with --take-over or echo false > \
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

/// The kernel's tiering switched off by tierd; restored by [`TakeOver::restore`] or on drop.
#[derive(Debug)]
pub struct TakeOver {
    root: SysRoot,
    saved: KernelTiering,
    restored: bool,
}

fn write(path: &Path, text: &str) -> Result<(), Error> {
    std::fs::write(path, text).map_err(|source| Error::Io { path: path.to_path_buf(), source })
}

/// Turns the kernel's demotion and tiering promotion off, remembering what they were.
pub fn take_over(root: &SysRoot) -> Result<TakeOver, Error> {
    let saved = KernelTiering::read(root)?;
    let guard = TakeOver { root: root.clone(), saved, restored: false };
    if saved.demotion_enabled == Some(true) {
        write(&root.demotion_enabled_file(), "false\n")?;
    }
    if let Some(b) = saved.numa_balancing.filter(|b| b & MEMORY_TIERING != 0) {
        write(&root.numa_balancing_file(), &format!("{}\n", b & !MEMORY_TIERING))?;
    }
    Ok(guard)
}

impl TakeOver {
    /// What the kernel had before.
    pub fn saved(&self) -> KernelTiering {
        self.saved
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
        if self.saved.demotion_enabled == Some(true) {
            write(&self.root.demotion_enabled_file(), "true\n")?;
        }
        if let Some(b) = self.saved.numa_balancing.filter(|b| b & MEMORY_TIERING != 0) {
            write(&self.root.numa_balancing_file(), &format!("{b}\n"))?;
        }
        Ok(())
    }
}

impl Drop for TakeOver {
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
        assert_eq!(k.conflicts().len(), 2);
        let guard = take_over(&root).unwrap();
        let now = KernelTiering::read(&root).unwrap();
        assert_eq!(now, KernelTiering { demotion_enabled: Some(false), numa_balancing: Some(1) });
        assert!(now.conflicts().is_empty());
        drop(guard);
        assert_eq!(KernelTiering::read(&root).unwrap(), k);
    }

    #[test]
    fn nothing_to_take_over_writes_nothing() {
        let (_d, root) = tree("false\n", "1\n");
        let guard = take_over(&root).unwrap();
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
        assert!(k.conflicts().is_empty());
        take_over(&root).unwrap().restore().unwrap();
    }
}
