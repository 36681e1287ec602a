//! Safe wrappers over the NUMA memory syscalls tierd uses, `move_pages(2)` and `mbind(2)`,
//! and `setpriority(2)` for the daemon's own priority (no crate in use wraps it).
//!
//! No crate wraps these (rustix lists them as not implemented), so this module calls
//! `libc::syscall` directly. It is the only module of the project allowed `unsafe`; every
//! block names the invariant that makes it sound.
//!
//! Why the signatures are safe: the memory syscalls only change *where* memory lives or which
//! policy future allocations follow, never what the memory contains, and the kernel
//! validates every address it is given (an unmapped address is a per-page `-EFAULT` or a
//! call-wide `EFAULT`, not undefined behaviour). Addresses are therefore plain `usize`
//! values, and the only memory the kernel writes is the caller's status slice, whose length
//! this module checks against the address slice.
//!
//! Per-page results ([`PageStatus`]) are stored exactly as the kernel writes them (a node
//! number or a negative errno in a C `int`), so a status slice goes to the kernel without a
//! copy; [`PageStatus::get`] turns one into a typed `Result<NodeId, PageError>`.
//!
//! Callers batch: thousands of pages per call, but each call bounded in time (tens of ms),
//! because one huge call stalls the target process (it holds the process's mmap lock).
//! With transparent huge pages, `move_pages` may report `-EBUSY` for an entry whose huge
//! page did move, so verify placement with [`query_pages`].
#![allow(unsafe_code)]

use std::fmt;
use std::io;

use libc::{c_int, c_long, c_ulong, c_void};
use tierd_core::{MAX_NUMNODES, NodeId, NodeMask};

// From <linux/mempolicy.h>; the libc crate has the MPOL_* modes but not these flags.
const MPOL_MF_STRICT: c_int = 1 << 0;
const MPOL_MF_MOVE: c_int = 1 << 1;
const MPOL_MF_MOVE_ALL: c_int = 1 << 2;

/// The process whose pages a call works on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    /// The calling process (pid 0 for the kernel).
    Current,
    /// Another process. Since Linux 4.13 `move_pages` needs ptrace read access to it (the
    /// same uid, or `CAP_SYS_PTRACE`), and [`MoveScope::All`] needs `CAP_SYS_NICE`.
    Pid(u32),
}

impl Target {
    fn raw(self) -> Result<libc::pid_t, SysError> {
        match self {
            Target::Current => Ok(0),
            Target::Pid(p) => libc::pid_t::try_from(p).map_err(|_| SysError::BadArgument {
                what: "pid",
                detail: format!("{p} does not fit in pid_t"),
            }),
        }
    }
}

/// Which pages `move_pages`/`mbind` may move.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MoveScope {
    /// `MPOL_MF_MOVE`: only pages mapped by this process alone.
    Exclusive,
    /// `MPOL_MF_MOVE_ALL`: shared pages too; needs `CAP_SYS_NICE`.
    All,
}

impl MoveScope {
    fn flag(self) -> c_int {
        match self {
            MoveScope::Exclusive => MPOL_MF_MOVE,
            MoveScope::All => MPOL_MF_MOVE_ALL,
        }
    }
}

/// Why one page could not be queried or moved: the negative errno in its status entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PageError {
    /// `EBUSY`: the page is busy (locked, under writeback, or the tail of a THP that did
    /// move); retry later.
    Busy,
    /// `ENOMEM`: the target node has no free memory; try a fallback target.
    NoMemory,
    /// `EFAULT`: the address is not mapped, or is the zero page.
    Fault,
    /// `ENOENT`: the page is not present (never touched, or swapped out).
    NotPresent,
    /// `EACCES`: the page is shared and the scope was [`MoveScope::Exclusive`].
    Shared,
    /// `EPERM`: the page is mlocked or otherwise may not move.
    NotPermitted,
    /// `EIO`: the page could not be written back before migration.
    Io,
    /// `EINVAL`: the page cannot be migrated (for example a special mapping).
    Invalid,
    /// `ENODEV`: the target node is not online.
    NoDevice,
    /// Any other errno.
    Other(i32),
}

impl PageError {
    /// The errno, positive.
    pub fn errno(self) -> i32 {
        match self {
            PageError::Busy => libc::EBUSY,
            PageError::NoMemory => libc::ENOMEM,
            PageError::Fault => libc::EFAULT,
            PageError::NotPresent => libc::ENOENT,
            PageError::Shared => libc::EACCES,
            PageError::NotPermitted => libc::EPERM,
            PageError::Io => libc::EIO,
            PageError::Invalid => libc::EINVAL,
            PageError::NoDevice => libc::ENODEV,
            PageError::Other(e) => e,
        }
    }

    /// The error for a positive errno.
    pub fn from_errno(e: i32) -> PageError {
        match e {
            libc::EBUSY => PageError::Busy,
            libc::ENOMEM => PageError::NoMemory,
            libc::EFAULT => PageError::Fault,
            libc::ENOENT => PageError::NotPresent,
            libc::EACCES => PageError::Shared,
            libc::EPERM => PageError::NotPermitted,
            libc::EIO => PageError::Io,
            libc::EINVAL => PageError::Invalid,
            libc::ENODEV => PageError::NoDevice,
            other => PageError::Other(other),
        }
    }

    /// The symbolic name, as in `errno.h` (`"EBUSY"`), for logs and metrics labels.
    pub fn name(self) -> &'static str {
        match self {
            PageError::Busy => "EBUSY",
            PageError::NoMemory => "ENOMEM",
            PageError::Fault => "EFAULT",
            PageError::NotPresent => "ENOENT",
            PageError::Shared => "EACCES",
            PageError::NotPermitted => "EPERM",
            PageError::Io => "EIO",
            PageError::Invalid => "EINVAL",
            PageError::NoDevice => "ENODEV",
            PageError::Other(_) => "EOTHER",
        }
    }
}

/// The name of an errno a [`crate::backend::MoveLog`] counts pages under: a per-page error
/// ([`PageError::name`]), or `ESRCH` for the pages of a process that exited mid-request.
pub fn failure_name(errno: i32) -> &'static str {
    if errno == libc::ESRCH { "ESRCH" } else { PageError::from_errno(errno).name() }
}

impl fmt::Display for PageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PageError::Other(e) => write!(f, "errno {e}"),
            named => f.write_str(named.name()),
        }
    }
}

/// One page's result, exactly as the kernel stores it: the node the page is on (or was
/// moved to), or a negative errno.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
#[repr(transparent)]
pub struct PageStatus(c_int);

impl PageStatus {
    /// A status that no kernel result produces; fill status slices with it before a call
    /// so that an entry the kernel left alone is visible.
    pub const UNSET: PageStatus = PageStatus(c_int::MIN);

    /// A status as the kernel writes it: a node number, or a negative errno. For fakes of
    /// the syscalls in tests.
    pub const fn from_raw(raw: i32) -> PageStatus {
        PageStatus(raw)
    }

    /// The raw value: a node number, or a negative errno.
    pub fn raw(self) -> i32 {
        self.0
    }

    /// The node the page is on, or why it is not known or did not move.
    pub fn get(self) -> Result<NodeId, PageError> {
        if self.0 >= 0 {
            usize::try_from(self.0).ok().and_then(NodeId::new).ok_or(PageError::Other(self.0))
        } else if self.0 == c_int::MIN {
            // UNSET: the kernel never wrote this entry.
            Err(PageError::Other(0))
        } else {
            Err(PageError::from_errno(-self.0))
        }
    }

    /// The node, when the page is on one.
    pub fn node(self) -> Option<NodeId> {
        self.get().ok()
    }
}

impl Default for PageStatus {
    fn default() -> Self {
        PageStatus::UNSET
    }
}

impl fmt::Debug for PageStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.get() {
            Ok(n) => write!(f, "node {n}"),
            Err(e) => write!(f, "-{e}"),
        }
    }
}

/// A whole call failed, or its arguments could not be expressed to the kernel.
#[derive(Debug, thiserror::Error)]
pub enum SysError {
    /// The syscall returned -1.
    #[error("{call}: {source}")]
    Syscall {
        /// The syscall's name.
        call: &'static str,
        /// The errno it set.
        #[source]
        source: io::Error,
    },
    /// An argument could not be passed (slices of different lengths, a value that does not
    /// fit the kernel's type).
    #[error("{what}: {detail}")]
    BadArgument {
        /// Which argument.
        what: &'static str,
        /// What is wrong with it.
        detail: String,
    },
}

impl SysError {
    /// The errno of a failed syscall, if that is what this is.
    pub fn errno(&self) -> Option<i32> {
        match self {
            SysError::Syscall { source, .. } => source.raw_os_error(),
            SysError::BadArgument { .. } => None,
        }
    }
}

fn same_len(what: &'static str, a: usize, b: usize) -> Result<(), SysError> {
    if a == b {
        Ok(())
    } else {
        Err(SysError::BadArgument { what, detail: format!("{b} entries for {a} pages") })
    }
}

fn last_error(call: &'static str) -> SysError {
    SysError::Syscall { call, source: io::Error::last_os_error() }
}

/// Sets the calling thread's nice value: `setpriority(PRIO_PROCESS, 0, nice)`. On Linux the
/// nice value is per thread, and threads created afterwards inherit it, so the daemon calls
/// this before it starts any thread. Below 0 needs `CAP_SYS_NICE`.
pub fn set_nice(nice: i32) -> Result<(), SysError> {
    // SAFETY: setpriority takes three integers and reads or writes no memory of ours; who = 0
    // is the calling thread.
    let rc = unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, nice) };
    if rc < 0 {
        return Err(last_error("setpriority"));
    }
    Ok(())
}

/// The base page size, from `sysconf(_SC_PAGESIZE)`.
pub fn page_size() -> usize {
    // SAFETY: sysconf takes an integer name and reads no memory of ours.
    let v = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    usize::try_from(v).unwrap_or(4096)
}

/// Which node each page is on: `move_pages(pid, n, pages, NULL, status, 0)`.
///
/// `status[i]` receives the node of the page at `pages[i]`, or `-ENOENT` (not present:
/// never touched, or swapped out), `-EFAULT` (not mapped or the zero page), and so on.
/// The slices must have the same length.
pub fn query_pages(
    target: Target,
    pages: &[usize],
    status: &mut [PageStatus],
) -> Result<(), SysError> {
    same_len("status", pages.len(), status.len())?;
    raw_move_pages(target, pages, None, status, 0).map(drop)
}

/// Moves each page `pages[i]` to `nodes[i]`: `move_pages(pid, n, pages, nodes, status, flags)`.
///
/// Returns how many pages the kernel reports as not migrated (its positive return value;
/// 0 when all moved). `status[i]` receives the node the page is now on, or its negative
/// errno ([`PageError`]). The three slices must have the same length. A call-wide failure
/// (`ESRCH`: no such process; `EPERM`: no permission for that process; `ENODEV`: a target
/// node is not online) is an `Err` and leaves `status` unspecified.
pub fn move_pages(
    target: Target,
    pages: &[usize],
    nodes: &[NodeId],
    status: &mut [PageStatus],
    scope: MoveScope,
) -> Result<usize, SysError> {
    same_len("nodes", pages.len(), nodes.len())?;
    same_len("status", pages.len(), status.len())?;
    let raw_nodes: Vec<c_int> = nodes.iter().map(|n| n.as_i32()).collect();
    raw_move_pages(target, pages, Some(&raw_nodes), status, scope.flag())
}

/// `move_pages(2)` on slices of one length (the callers check): with `nodes`, a move; without,
/// a query. Returns the kernel's count of pages not migrated.
fn raw_move_pages(
    target: Target,
    pages: &[usize],
    nodes: Option<&[c_int]>,
    status: &mut [PageStatus],
    flags: c_int,
) -> Result<usize, SysError> {
    debug_assert!(status.len() == pages.len() && nodes.is_none_or(|n| n.len() == pages.len()));
    if pages.is_empty() {
        return Ok(0);
    }
    let pid = target.raw()?;
    let count = c_ulong::try_from(pages.len()).map_err(|_| SysError::BadArgument {
        what: "pages",
        detail: "too many pages for one call".into(),
    })?;
    let nodes = nodes.map_or(std::ptr::null(), <[c_int]>::as_ptr);
    // SAFETY: `pages` holds `count` addresses (usize has the size and alignment of a
    // pointer) and `nodes`, when not NULL, `count` c_int node numbers, both read by the
    // kernel only; `status` holds `count` c_ints (PageStatus is repr(transparent) over
    // c_int) that the kernel writes while we borrow it mutably. A NULL `nodes` selects query
    // mode, which changes no mapping; a move keeps every page's contents, so no
    // Rust-visible memory changes either way.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_move_pages,
            c_long::from(pid),
            count,
            pages.as_ptr().cast::<*const c_void>(),
            nodes,
            status.as_mut_ptr().cast::<c_int>(),
            c_long::from(flags),
        )
    };
    if rc < 0 {
        return Err(last_error("move_pages"));
    }
    Ok(usize::try_from(rc).unwrap_or(usize::MAX))
}

/// A memory policy for [`mbind`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MemPolicy {
    /// `MPOL_DEFAULT`: fall back to the process (or system) policy.
    Default,
    /// `MPOL_BIND`: allocate only on these nodes; reclaim rather than spill elsewhere.
    Bind(NodeMask),
    /// `MPOL_PREFERRED`: try this node first.
    Preferred(NodeId),
    /// `MPOL_INTERLEAVE`: round-robin over these nodes.
    Interleave(NodeMask),
    /// `MPOL_LOCAL`: the node of the CPU that allocates.
    Local,
}

/// The kernel's bitmap form of a policy: (mode, words, maxnode).
fn policy_bitmap(policy: &MemPolicy) -> (c_int, Vec<c_ulong>, c_ulong) {
    let bits = c_ulong::BITS as usize;
    let mut words: Vec<c_ulong> = vec![0; MAX_NUMNODES.div_ceil(bits)];
    let mut set = |n: NodeId| words[n.index() / bits] |= 1 << (n.index() % bits);
    let mode = match policy {
        MemPolicy::Default => libc::MPOL_DEFAULT,
        MemPolicy::Bind(mask) => {
            mask.iter().for_each(&mut set);
            libc::MPOL_BIND
        }
        MemPolicy::Preferred(n) => {
            set(*n);
            libc::MPOL_PREFERRED
        }
        MemPolicy::Interleave(mask) => {
            mask.iter().for_each(&mut set);
            libc::MPOL_INTERLEAVE
        }
        MemPolicy::Local => libc::MPOL_LOCAL,
    };
    // The kernel's get_nodes() reads `maxnode - 1` bits (a historical off-by-one that
    // numactl also compensates for), so pass one more than the bitmap holds.
    let maxnode = c_ulong::try_from(words.len() * bits + 1).unwrap_or(c_ulong::MAX);
    (mode, words, maxnode)
}

/// Sets the policy of the range `[addr, addr + len)`: `mbind(2)`.
///
/// `addr` must be page-aligned. With `moves = Some(scope)` (`MPOL_MF_MOVE` or
/// `MPOL_MF_MOVE_ALL`, with `MPOL_MF_STRICT`) the pages already there are moved to comply,
/// and pages that cannot be are an `EIO` error.
pub fn mbind(
    addr: usize,
    len: usize,
    policy: &MemPolicy,
    moves: Option<MoveScope>,
) -> Result<(), SysError> {
    let (mode, words, maxnode) = policy_bitmap(policy);
    let flags = moves.map_or(0, |s| s.flag() | MPOL_MF_STRICT);
    let flags = c_ulong::try_from(flags)
        .map_err(|_| SysError::BadArgument { what: "flags", detail: format!("{flags:#x}") })?;
    let len = c_ulong::try_from(len)
        .map_err(|_| SysError::BadArgument { what: "len", detail: format!("{len}") })?;
    let mask_ptr = if matches!(policy, MemPolicy::Default | MemPolicy::Local) {
        std::ptr::null()
    } else {
        words.as_ptr()
    };
    let maxnode = if mask_ptr.is_null() { 0 } else { maxnode };
    // SAFETY: `words` outlives the call and holds the `maxnode - 1` bits the kernel reads
    // (or the pointer is NULL with maxnode 0). mbind changes only the NUMA policy of the
    // range and, with a move flag, where its pages live, never their contents; the kernel
    // checks that the range is mapped (EFAULT) and page-aligned (EINVAL).
    let rc = unsafe {
        libc::syscall(libc::SYS_mbind, addr, len, c_long::from(mode), mask_ptr, maxnode, flags)
    };
    if rc < 0 {
        return Err(last_error("mbind"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_are_named_with_esrch_for_an_exited_process() {
        assert_eq!(failure_name(libc::ESRCH), "ESRCH");
        assert_eq!(failure_name(libc::EBUSY), "EBUSY");
        assert_eq!(failure_name(libc::E2BIG), "EOTHER");
    }

    fn node(n: usize) -> NodeId {
        NodeId::new(n).unwrap()
    }

    #[test]
    fn status_decodes_nodes_and_errnos() {
        assert_eq!(PageStatus(2).get(), Ok(node(2)));
        assert_eq!(PageStatus(-libc::EBUSY).get(), Err(PageError::Busy));
        assert_eq!(PageStatus(-libc::ENOENT).get(), Err(PageError::NotPresent));
        assert_eq!(PageStatus(-libc::ENOMEM).get(), Err(PageError::NoMemory));
        assert_eq!(PageStatus(-libc::E2BIG).get(), Err(PageError::Other(libc::E2BIG)));
        assert_eq!(PageStatus::UNSET.get(), Err(PageError::Other(0)));
        assert_eq!(format!("{:?}", PageStatus(-libc::EFAULT)), "-EFAULT");
        for e in [libc::EBUSY, libc::EACCES, libc::EPERM, libc::EIO, 77] {
            assert_eq!(PageError::from_errno(e).errno(), e);
        }
    }

    #[test]
    fn slices_of_different_lengths_are_refused() {
        let mut st = [PageStatus::UNSET; 1];
        let err = query_pages(Target::Current, &[0, 4096], &mut st).unwrap_err();
        assert!(err.to_string().contains("1 entries for 2 pages"), "{err}");
        let err =
            move_pages(Target::Current, &[0], &[], &mut st, MoveScope::Exclusive).unwrap_err();
        assert!(matches!(err, SysError::BadArgument { what: "nodes", .. }));
    }

    #[test]
    fn policy_bitmap_sets_bits_and_pads_maxnode() {
        let mask: NodeMask = "0,2,65".parse().unwrap();
        let (mode, words, maxnode) = policy_bitmap(&MemPolicy::Bind(mask));
        assert_eq!(mode, libc::MPOL_BIND);
        assert_eq!(words[0], 0b101);
        assert_eq!(words[1], 0b10);
        assert_eq!(usize::try_from(maxnode).unwrap(), MAX_NUMNODES + 1);
    }

    #[test]
    fn query_sees_a_touched_page_on_some_node() {
        // Every Linux host has node 0 at least; a page we just wrote is present.
        let mut buf = vec![1u8; 2 * page_size()];
        buf[0] = 2;
        let addr = buf.as_ptr() as usize;
        let mut st = [PageStatus::UNSET];
        match query_pages(Target::Current, &[addr], &mut st) {
            Ok(()) => assert!(st[0].node().is_some(), "{:?}", st[0]),
            // Kernels built without NUMA have no move_pages.
            Err(e) if e.errno() == Some(libc::ENOSYS) => {
                eprintln!("skipped: move_pages is not implemented by this kernel");
            }
            Err(e) => panic!("{e}"),
        }
    }

    #[test]
    fn moving_to_the_node_a_page_is_on_keeps_it_there() {
        let buf = vec![7u8; page_size()];
        let addr = buf.as_ptr() as usize;
        let mut st = [PageStatus::UNSET];
        if query_pages(Target::Current, &[addr], &mut st).is_err() {
            eprintln!("skipped: move_pages is not available");
            return;
        }
        let Some(here) = st[0].node() else {
            panic!("page not present: {:?}", st[0]);
        };
        let left =
            move_pages(Target::Current, &[addr], &[here], &mut st, MoveScope::Exclusive).unwrap();
        assert_eq!(left, 0);
        assert_eq!(st[0].get(), Ok(here));
        assert!(buf.iter().all(|&b| b == 7));
    }

    /// A page-aligned, touched buffer of `pages` pages and its first page's address.
    fn aligned(pages: usize) -> (Vec<u8>, usize) {
        let ps = page_size();
        let mut buf = vec![1u8; (pages + 1) * ps];
        let addr = buf.as_ptr() as usize;
        let off = addr.next_multiple_of(ps) - addr;
        buf[off..].fill(3);
        (buf, addr + off)
    }

    fn numa_syscalls_work() -> bool {
        let mut st = [PageStatus::UNSET];
        let probe = [0u8; 8];
        let ok = query_pages(Target::Current, &[probe.as_ptr() as usize], &mut st).is_ok();
        if !ok {
            eprintln!("skipped: move_pages is not available on this kernel");
        }
        ok
    }

    #[test]
    fn query_of_an_unmapped_address_is_a_per_page_efault() {
        if !numa_syscalls_work() {
            return;
        }
        let mut st = [PageStatus::UNSET];
        query_pages(Target::Current, &[0], &mut st).unwrap();
        assert_eq!(st[0].get(), Err(PageError::Fault));
    }

    #[test]
    fn moving_to_a_node_without_memory_fails_the_whole_call() {
        if !numa_syscalls_work() {
            return;
        }
        let (_buf, addr) = aligned(1);
        let mut st = [PageStatus::UNSET];
        let far = NodeId::new(MAX_NUMNODES - 1).unwrap();
        let err = move_pages(Target::Current, &[addr], &[far], &mut st, MoveScope::Exclusive)
            .unwrap_err();
        assert_eq!(err.errno(), Some(libc::ENODEV), "{err}");
        assert!(err.to_string().starts_with("move_pages: "), "{err}");
    }

    #[test]
    fn mbind_accepts_node_zero() {
        if !numa_syscalls_work() {
            return;
        }
        let (buf, addr) = aligned(2);
        let zero: NodeMask = "0".parse().unwrap();
        mbind(addr, 2 * page_size(), &MemPolicy::Bind(zero), Some(MoveScope::Exclusive)).unwrap();
        let mut st = [PageStatus::UNSET; 2];
        query_pages(Target::Current, &[addr, addr + page_size()], &mut st).unwrap();
        assert_eq!(st.map(PageStatus::node), [NodeId::new(0); 2]);
        mbind(addr, 2 * page_size(), &MemPolicy::Default, None).unwrap();
        let err = mbind(addr + 1, page_size(), &MemPolicy::Default, None).unwrap_err();
        assert_eq!(err.errno(), Some(libc::EINVAL), "unaligned mbind: {err}");
        assert!(buf.iter().rev().take(page_size()).all(|&b| b == 3));
    }
}
