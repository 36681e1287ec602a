//! `/proc/PID/maps` and `/proc/PID/pagemap`: the mappings a page-bit tracker scans and the
//! per-page bits it reads.
//!
//! Only anonymous private writable mappings are scanned ([`Vma::is_anon_private_writable`]):
//! they are what a workload allocates, what reclaim would swap, and what `move_pages(2)` moves
//! without touching a file's page cache. `pagemap` has one 64-bit little-endian entry per
//! virtual page at offset `vpn * 8` (`Documentation/admin-guide/mm/pagemap.rst`); it is read
//! in chunks of [`CHUNK_ENTRIES`] entries with positioned reads, so one mapping of a GiB costs
//! a handful of system calls.
//!
//! A process that exits while it is read makes these files vanish (`ENOENT`) or fail with
//! `ESRCH`; both are "gone", reported as `None`, never as an error.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt as _;
use std::path::{Path, PathBuf};

use super::{Error, Pid, Vpn, io_error};
use crate::SysRoot;
use crate::read::malformed;

/// Entries read per `pread(2)`: 512 KiB, 256 MiB of address space with 4 KiB pages.
pub const CHUNK_ENTRIES: usize = 64 * 1024;

/// Bit 63: the page is present in RAM.
pub const PM_PRESENT: u64 = 1 << 63;
/// Bit 62: the page is swapped out.
pub const PM_SWAPPED: u64 = 1 << 62;
/// Bit 61: the page is file-backed or shared anonymous.
pub const PM_FILE: u64 = 1 << 61;
/// Bit 56: the page is mapped exclusively by this process.
pub const PM_EXCLUSIVE: u64 = 1 << 56;
/// Bit 55: the PTE is soft-dirty (written since the last `clear_refs` = 4).
pub const PM_SOFT_DIRTY: u64 = 1 << 55;
/// Bits 0-54: the page frame number when present (zero unless the reader has
/// `CAP_SYS_ADMIN`).
pub const PM_PFN_MASK: u64 = (1 << 55) - 1;

/// One `pagemap` entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Entry(pub u64);

impl Entry {
    /// Bit 63.
    pub fn present(self) -> bool {
        self.0 & PM_PRESENT != 0
    }

    /// Bit 62.
    pub fn swapped(self) -> bool {
        self.0 & PM_SWAPPED != 0
    }

    /// Bit 55.
    pub fn soft_dirty(self) -> bool {
        self.0 & PM_SOFT_DIRTY != 0
    }

    /// The PFN of a present page, `None` when the page is not present. Zero means the
    /// reader lacks `CAP_SYS_ADMIN` (the kernel hides PFNs) and is returned as `Some(0)`.
    pub fn pfn(self) -> Option<super::Pfn> {
        self.present().then_some(super::Pfn(self.0 & PM_PFN_MASK))
    }
}

/// One line of `/proc/PID/maps`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Vma {
    /// First byte.
    pub start: u64,
    /// One past the last byte.
    pub end: u64,
    /// The permission field, e.g. `rw-p`.
    pub perms: String,
    /// The inode number (0 for anonymous memory).
    pub inode: u64,
    /// The path or pseudo-name (`[heap]`, `[stack]`, `[anon:NAME]`), empty for plain
    /// anonymous memory.
    pub name: String,
}

impl Vma {
    /// Anonymous (no inode; no name, `[heap]`, `[stack]` or `[anon:...]`), private and
    /// writable: the memory tierd tracks and moves.
    pub fn is_anon_private_writable(&self) -> bool {
        let p = self.perms.as_bytes();
        let anon = self.inode == 0
            && (self.name.is_empty()
                || self.name == "[heap]"
                || self.name == "[stack]"
                || self.name.starts_with("[anon:"));
        anon && p.len() == 4 && p[0] == b'r' && p[1] == b'w' && p[3] == b'p'
    }

    /// The virtual pages of the mapping.
    pub fn vpns(&self, page_size: u64) -> std::ops::Range<u64> {
        self.start / page_size..self.end.div_ceil(page_size)
    }
}

/// `proc/PID/maps`.
pub fn maps_path(root: &SysRoot, pid: Pid) -> PathBuf {
    root.proc.join(pid.0.to_string()).join("maps")
}

/// `proc/PID/pagemap`.
pub fn pagemap_path(root: &SysRoot, pid: Pid) -> PathBuf {
    root.proc.join(pid.0.to_string()).join("pagemap")
}

/// Whether an error on a process's file means the process is gone.
pub(crate) fn process_gone(e: &io::Error) -> bool {
    crate::read::is_gone(e) || e.raw_os_error() == Some(libc::ESRCH)
}

/// The anonymous private writable mappings of `pid`, or `None` when the process is gone.
pub fn read_anon_vmas(root: &SysRoot, pid: Pid) -> Result<Option<Vec<Vma>>, Error> {
    let path = maps_path(root, pid);
    let text = match std::fs::read(&path) {
        Ok(b) => String::from_utf8_lossy(&b).into_owned(),
        Err(e) if process_gone(&e) => return Ok(None),
        Err(e) => return Err(io_error(&path, e)),
    };
    let mut out = Vec::new();
    for line in text.lines().filter(|l| !l.is_empty()) {
        let vma = parse_maps_line(line).ok_or_else(|| {
            Error::Read(malformed(
                &path,
                line,
                "expected `start-end perms offset dev inode [name]`",
            ))
        })?;
        if vma.is_anon_private_writable() && vma.end > vma.start {
            out.push(vma);
        }
    }
    Ok(Some(out))
}

/// Parses one `maps` line as `show_map_vma()` prints it.
pub fn parse_maps_line(line: &str) -> Option<Vma> {
    let mut it = line.splitn(6, ' ');
    let range = it.next()?;
    let perms = it.next()?;
    let _offset = it.next()?;
    let _dev = it.next()?;
    let inode = it.next()?.parse().ok()?;
    let name = it.next().unwrap_or("").trim_start().to_string();
    let (s, e) = range.split_once('-')?;
    let start = u64::from_str_radix(s, 16).ok()?;
    let end = u64::from_str_radix(e, 16).ok()?;
    if perms.len() != 4 || end < start {
        return None;
    }
    Some(Vma { start, end, perms: perms.to_string(), inode, name })
}

/// An open `pagemap`.
#[derive(Debug)]
pub struct Pagemap {
    file: File,
    path: PathBuf,
    buf: Vec<u8>,
}

impl Pagemap {
    /// Opens `proc/PID/pagemap`; `None` when the process is gone.
    pub fn open(root: &SysRoot, pid: Pid) -> Result<Option<Pagemap>, Error> {
        let path = pagemap_path(root, pid);
        match File::open(&path) {
            Ok(file) => Ok(Some(Pagemap { file, path, buf: Vec::new() })),
            Err(e) if process_gone(&e) => Ok(None),
            Err(e) if super::is_permission(&e) => Err(Error::Permission {
                tracker: "pagemap",
                path,
                source: e,
                hint: "reading another process's pagemap needs the right to ptrace it: run \
                       tierd as root (or with CAP_SYS_PTRACE)",
            }),
            Err(e) => Err(io_error(&path, e)),
        }
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Calls `f(vpn, entry)` for every page in `vpns`, in order, reading [`CHUNK_ENTRIES`]
    /// entries at a time. `Ok(false)` when the process went away mid-read.
    pub fn for_each(
        &mut self,
        vpns: std::ops::Range<u64>,
        mut f: impl FnMut(Vpn, Entry),
    ) -> Result<bool, Error> {
        let mut vpn = vpns.start;
        while vpn < vpns.end {
            let n = usize::try_from(vpns.end - vpn).unwrap_or(usize::MAX).min(CHUNK_ENTRIES);
            self.buf.resize(n * 8, 0);
            match self.file.read_exact_at(&mut self.buf, vpn * 8) {
                Ok(()) => {}
                Err(e) if process_gone(&e) => return Ok(false),
                // A mapping that ends beyond the file (a hand-built fixture, or a process
                // that unmapped the range while we read) reads as not present.
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
                    let got = self.read_partial(vpn)?;
                    self.buf[got..].fill(0);
                }
                Err(e) => return Err(io_error(&self.path, e)),
            }
            for (i, b) in self.buf.chunks_exact(8).enumerate() {
                let raw = u64::from_le_bytes(b.try_into().expect("8-byte chunk"));
                f(Vpn(vpn + i as u64), Entry(raw));
            }
            vpn += n as u64;
        }
        Ok(true)
    }

    fn read_partial(&mut self, vpn: u64) -> Result<usize, Error> {
        let mut got = 0;
        while got < self.buf.len() {
            match self.file.read_at(&mut self.buf[got..], vpn * 8 + got as u64) {
                Ok(0) => break,
                Ok(k) => got += k,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(io_error(&self.path, e)),
            }
        }
        Ok(got - got % 8)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_lines_parse_and_only_anon_private_writable_are_kept() {
        let cases = [
            (
                "55d4a5e00000-55d4a5e21000 rw-p 00000000 00:00 0                          [heap]",
                true,
            ),
            ("7f0000000000-7f0000100000 rw-p 00000000 00:00 0 ", true),
            ("7f0000000000-7f0000100000 rw-p 00000000 00:00 0", true),
            ("7f0000100000-7f0000200000 rw-p 00000000 00:00 0    [anon:tierd]", true),
            (
                "7ffd1c000000-7ffd1c021000 rw-p 00000000 00:00 0                          [stack]",
                true,
            ),
            ("7f0000200000-7f0000300000 rw-s 00000000 00:05 1234 /dev/zero (deleted)", false),
            ("7f0000300000-7f0000400000 r--p 00000000 00:00 0 ", false),
            ("7f0000400000-7f0000500000 rw-p 00001000 08:01 42 /usr/lib/libc.so.6", false),
            (
                "7ffd1c1f0000-7ffd1c1f4000 r--p 00000000 00:00 0                          [vvar]",
                false,
            ),
        ];
        for (line, keep) in cases {
            let vma = parse_maps_line(line).unwrap_or_else(|| panic!("{line}"));
            assert_eq!(vma.is_anon_private_writable(), keep, "{line}");
        }
        let v = parse_maps_line("1000-3000 rw-p 00000000 00:00 0 ").unwrap();
        assert_eq!(v.vpns(4096), 1..3);
        assert!(parse_maps_line("zz-3000 rw-p 0 00:00 0").is_none());
        assert!(parse_maps_line("3000-1000 rw-p 0 00:00 0").is_none());
    }

    /// Runs on the machine's own kernel: this process's maps parse, and a page it touched
    /// reads back present from its own pagemap (no privilege needed for bit 63).
    #[test]
    fn this_process_reads_its_own_maps_and_pagemap() {
        let root = SysRoot::default();
        let me = Pid(std::process::id());
        let buf = std::hint::black_box(vec![7u8; 1 << 20]);
        let addr = buf.as_ptr() as u64 + 4096;
        let vmas = read_anon_vmas(&root, me).unwrap().expect("we exist");
        let vma = vmas.iter().find(|v| v.start <= addr && addr < v.end).expect("heap is anon rw-p");
        assert!(vma.is_anon_private_writable());
        let mut pm = Pagemap::open(&root, me).unwrap().expect("we exist");
        let mut seen = None;
        pm.for_each(addr / 4096..addr / 4096 + 1, |_, e| seen = Some(e)).unwrap();
        assert!(seen.expect("one entry").present());
        std::hint::black_box(&buf);
    }

    #[test]
    fn entry_bits() {
        let e = Entry(PM_PRESENT | PM_SOFT_DIRTY | 0x1234);
        assert!(e.present() && e.soft_dirty() && !e.swapped());
        assert_eq!(e.pfn(), Some(super::super::Pfn(0x1234)));
        assert_eq!(Entry(PM_SWAPPED).pfn(), None);
    }
}
