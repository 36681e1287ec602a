//! `tierd mount`: the path table served as a sysfs-compatible FUSE tree.
//!
//! ```text
//! MOUNTPOINT/online                  r--  online nodes, nodelist
//! MOUNTPOINT/possible                r--  possible nodes, nodelist
//! MOUNTPOINT/nodeN/migration_path    rw-  the seed ABI, one per possible node
//! MOUNTPOINT/nodeN/distance          r--  the SLIT row, online nodes only
//! ```
//!
//! Each `write(2)` to `migration_path` is one [`Paths::store`], exactly as a sysfs write is one
//! `store()` call: its byte count on success, `EINVAL` on rejection, `EACCES` for a writer
//! that is not root; the file offset is ignored, as sysfs ignores it. Files are opened in
//! direct-I/O mode so every `read`/`write` reaches tierd and nothing is cached.
//!
//! A write longer than a page is rejected whole with `EINVAL`, as sysfs caps a store at
//! `PAGE_SIZE`: the kernel hands FUSE a long write in several requests, and storing each
//! would let the first part of an invalid write take effect. Operations the tree does not
//! support fail with the errno the VFS gives for sysfs: `EPERM` for unlink, rmdir, rename,
//! mkdir, mknod, symlink and link, `EACCES` for creating a file; never `ENOSYS`.

use std::ffi::OsStr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use fuser::{
    Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags, Generation, INodeNo, LockOwner,
    OpenFlags, ReplyAttr, ReplyData, ReplyDirectory, ReplyEntry, ReplyOpen, ReplyWrite, Request,
    WriteFlags,
};
use std::sync::Arc;
use tierd_core::{NodeId, Topology};

use crate::paths::Paths;

const ROOT: u64 = 1;
const ONLINE: u64 = 2;
const POSSIBLE: u64 = 3;
/// Node `n` has inodes `NODE_BASE + 4n` (directory), `+1` (migration_path), `+2` (distance).
const NODE_BASE: u64 = 16;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Inode {
    Root,
    Online,
    Possible,
    NodeDir(NodeId),
    MigrationPath(NodeId),
    Distance(NodeId),
}

impl Inode {
    fn from_ino(ino: u64) -> Option<Inode> {
        match ino {
            ROOT => Some(Inode::Root),
            ONLINE => Some(Inode::Online),
            POSSIBLE => Some(Inode::Possible),
            i if i >= NODE_BASE => {
                let node = NodeId::new(usize::try_from((i - NODE_BASE) / 4).ok()?)?;
                match (i - NODE_BASE) % 4 {
                    0 => Some(Inode::NodeDir(node)),
                    1 => Some(Inode::MigrationPath(node)),
                    2 => Some(Inode::Distance(node)),
                    _ => None,
                }
            }
            _ => None,
        }
    }

    fn ino(self) -> u64 {
        let node = |n: NodeId, k: u64| NODE_BASE + 4 * u64::from(u32::from(n)) + k;
        match self {
            Inode::Root => ROOT,
            Inode::Online => ONLINE,
            Inode::Possible => POSSIBLE,
            Inode::NodeDir(n) => node(n, 0),
            Inode::MigrationPath(n) => node(n, 1),
            Inode::Distance(n) => node(n, 2),
        }
    }
}

/// The FUSE filesystem over a shared [`Paths`].
#[derive(Debug)]
pub struct PathFs {
    paths: Arc<Paths>,
    topology: Topology,
    uid: u32,
    gid: u32,
    mounted_at: SystemTime,
}

impl PathFs {
    /// A filesystem serving `paths`, with distances from `topology`.
    pub fn new(paths: Arc<Paths>, topology: Topology) -> PathFs {
        PathFs {
            paths,
            topology,
            uid: nix::unistd::geteuid().as_raw(),
            gid: nix::unistd::getegid().as_raw(),
            mounted_at: SystemTime::now(),
        }
    }

    fn exists(&self, inode: Inode) -> bool {
        match inode {
            Inode::Root | Inode::Online | Inode::Possible => true,
            Inode::NodeDir(n) | Inode::MigrationPath(n) => self.paths.possible().contains(n),
            Inode::Distance(n) => self.topology.node(n).is_some(),
        }
    }

    fn content(&self, inode: Inode) -> Option<String> {
        match inode {
            Inode::Online => {
                self.paths.refresh_online();
                Some(format!("{}\n", self.paths.table().online()))
            }
            Inode::Possible => Some(format!("{}\n", self.paths.possible())),
            Inode::MigrationPath(n) => self.paths.table().show_text(n),
            Inode::Distance(n) => self.topology.node(n).map(|i| {
                let row: Vec<String> = i.distance.iter().map(ToString::to_string).collect();
                format!("{}\n", row.join(" "))
            }),
            Inode::Root | Inode::NodeDir(_) => None,
        }
    }

    fn attr(&self, inode: Inode) -> FileAttr {
        let subdirs = u32::try_from(self.paths.possible().len()).unwrap_or(u32::MAX);
        let (kind, perm, nlink) = match inode {
            Inode::Root => (FileType::Directory, 0o755, 2 + subdirs),
            Inode::NodeDir(_) => (FileType::Directory, 0o755, 2),
            Inode::MigrationPath(_) => (FileType::RegularFile, 0o644, 1),
            _ => (FileType::RegularFile, 0o444, 1),
        };
        FileAttr {
            ino: INodeNo(inode.ino()),
            // sysfs reports a page for every attribute; readers read until EOF.
            size: if kind == FileType::RegularFile { 4096 } else { 0 },
            blocks: 0,
            atime: self.mounted_at,
            mtime: self.mounted_at,
            ctime: self.mounted_at,
            crtime: UNIX_EPOCH,
            kind,
            perm,
            nlink,
            uid: self.uid,
            gid: self.gid,
            rdev: 0,
            flags: 0,
            blksize: 4096,
        }
    }

    fn children(&self, dir: Inode) -> Vec<(Inode, String)> {
        match dir {
            Inode::Root => {
                let mut v =
                    vec![(Inode::Online, "online".into()), (Inode::Possible, "possible".into())];
                v.extend(
                    self.paths.possible().iter().map(|n| (Inode::NodeDir(n), format!("node{n}"))),
                );
                v
            }
            Inode::NodeDir(n) => {
                let mut v = vec![(Inode::MigrationPath(n), "migration_path".into())];
                if self.exists(Inode::Distance(n)) {
                    v.push((Inode::Distance(n), "distance".into()));
                }
                v
            }
            _ => Vec::new(),
        }
    }
}

const TTL: Duration = Duration::from_secs(1);

/// The longest store: sysfs passes at most `PAGE_SIZE` bytes to `store()`.
pub const MAX_STORE: usize = 4096;

/// `Filesystem` methods that answer `errno` and nothing else: `refuse! { EPERM: name(argument
/// types) -> reply type; ... }`.
macro_rules! refuse {
    ($errno:ident: $($name:ident($($arg:ty),*) -> $reply:ty;)*) => {
        $(
            fn $name(&self, _req: &Request, $(_: $arg,)* reply: $reply) {
                reply.error(Errno::$errno);
            }
        )*
    };
}

impl Filesystem for PathFs {
    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        let Some(dir) = Inode::from_ino(parent.into()) else {
            return reply.error(Errno::ENOENT);
        };
        match self.children(dir).into_iter().find(|(_, n)| OsStr::new(n) == name) {
            Some((inode, _)) => reply.entry(&TTL, &self.attr(inode), Generation(0)),
            None => reply.error(Errno::ENOENT),
        }
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        match Inode::from_ino(ino.into()).filter(|i| self.exists(*i)) {
            Some(inode) => reply.attr(&TTL, &self.attr(inode)),
            None => reply.error(Errno::ENOENT),
        }
    }

    fn setattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        _size: Option<u64>,
        _atime: Option<fuser::TimeOrNow>,
        _mtime: Option<fuser::TimeOrNow>,
        _ctime: Option<SystemTime>,
        _fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        let Some(inode) = Inode::from_ino(ino.into()).filter(|i| self.exists(*i)) else {
            return reply.error(Errno::ENOENT);
        };
        // `echo 2 > file` opens with O_TRUNC, which arrives as a truncate: sysfs ignores it,
        // and so do we. Modes and owners are fixed, as in sysfs.
        if mode.is_some() || uid.is_some() || gid.is_some() {
            return reply.error(Errno::EPERM);
        }
        reply.attr(&TTL, &self.attr(inode));
    }

    fn open(&self, req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        let Some(inode) = Inode::from_ino(ino.into()).filter(|i| self.exists(*i)) else {
            return reply.error(Errno::ENOENT);
        };
        let writing = flags.0 & libc::O_ACCMODE != libc::O_RDONLY;
        if writing && !matches!(inode, Inode::MigrationPath(_)) {
            return reply.error(Errno::EACCES);
        }
        if writing && req.uid() != 0 {
            return reply.error(Errno::EACCES);
        }
        reply.opened(FileHandle(0), FopenFlags::FOPEN_DIRECT_IO);
    }

    fn read(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        let Some(text) = Inode::from_ino(ino.into()).and_then(|i| self.content(i)) else {
            return reply.error(Errno::ENOENT);
        };
        let bytes = text.as_bytes();
        let start = usize::try_from(offset).unwrap_or(usize::MAX).min(bytes.len());
        let end =
            start.saturating_add(usize::try_from(size).unwrap_or(usize::MAX)).min(bytes.len());
        reply.data(&bytes[start..end]);
    }

    fn write(
        &self,
        req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        _offset: u64,
        data: &[u8],
        _write_flags: WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        let Some(Inode::MigrationPath(node)) = Inode::from_ino(ino.into()) else {
            return reply.error(Errno::EACCES);
        };
        if req.uid() != 0 {
            return reply.error(Errno::EACCES);
        }
        // sysfs_kf_write: an empty write never reaches store().
        if data.is_empty() {
            return reply.written(0);
        }
        // A longer write arrives in pieces (and sysfs would refuse it): reject it whole.
        if data.len() > MAX_STORE {
            tracing::info!(node = %node, bytes = data.len(), "migration_path store rejected: longer than a page");
            return reply.error(Errno::EINVAL);
        }
        match self.paths.store(node, data) {
            Ok(n) => {
                tracing::info!(node = %node, value = %tierd_core::quote::quote_bytes(data), "migration_path stored");
                reply.written(u32::try_from(n).unwrap_or(u32::MAX));
            }
            Err(e) => {
                tracing::info!(node = %node, "migration_path store rejected: {e}");
                reply.error(Errno::from_i32(e.errno()));
            }
        }
    }

    // The tree's shape is the kernel's: nothing is removed, renamed or created in it.
    refuse! {
        EPERM:
        unlink(INodeNo, &OsStr) -> fuser::ReplyEmpty;
        rmdir(INodeNo, &OsStr) -> fuser::ReplyEmpty;
        rename(INodeNo, &OsStr, INodeNo, &OsStr, fuser::RenameFlags) -> fuser::ReplyEmpty;
        mkdir(INodeNo, &OsStr, u32, u32) -> ReplyEntry;
        mknod(INodeNo, &OsStr, u32, u32, u32) -> ReplyEntry;
        symlink(INodeNo, &OsStr, &std::path::Path) -> ReplyEntry;
        link(INodeNo, INodeNo, &OsStr) -> ReplyEntry;
    }

    fn create(
        &self,
        _req: &Request,
        _parent: INodeNo,
        _name: &OsStr,
        _mode: u32,
        _umask: u32,
        _flags: i32,
        reply: fuser::ReplyCreate,
    ) {
        // The VFS answers EACCES when a directory cannot create files (`lookup_open`).
        reply.error(Errno::EACCES);
    }

    fn flush(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _lock_owner: LockOwner,
        reply: fuser::ReplyEmpty,
    ) {
        // Every write was stored when it was made; there is nothing to flush.
        reply.ok();
    }

    fn readdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        let Some(dir) =
            Inode::from_ino(ino.into()).filter(|i| matches!(i, Inode::Root | Inode::NodeDir(_)))
        else {
            return reply.error(Errno::ENOTDIR);
        };
        let parent = match dir {
            Inode::NodeDir(_) => Inode::Root,
            _ => dir,
        };
        let mut entries = vec![
            (dir, FileType::Directory, ".".to_string()),
            (parent, FileType::Directory, "..".to_string()),
        ];
        for (inode, name) in self.children(dir) {
            let kind = if matches!(inode, Inode::NodeDir(_)) {
                FileType::Directory
            } else {
                FileType::RegularFile
            };
            entries.push((inode, kind, name));
        }
        let skip = usize::try_from(offset).unwrap_or(usize::MAX);
        for (i, (inode, kind, name)) in entries.into_iter().enumerate().skip(skip) {
            let next = u64::try_from(i + 1).unwrap_or(u64::MAX);
            if reply.add(INodeNo(inode.ino()), next, kind, name) {
                break;
            }
        }
        reply.ok();
    }
}

/// The signals a long-running command catches: SIGHUP (reload or ignored, never fatal) and
/// every other one whose default action ends the process and that a terminal or a service
/// manager sends, which stop it cleanly (unmount, socket removed).
pub const SIGNALS: [i32; 4] = [
    signal_hook::consts::SIGHUP,
    signal_hook::consts::SIGINT,
    signal_hook::consts::SIGTERM,
    signal_hook::consts::SIGQUIT,
];

/// Why a mountpoint is refused. A dead FUSE mount (its server was killed: every access
/// fails with `ENOTCONN`) is named as such, with the command that clears it.
pub fn check_mountpoint(path: &std::path::Path) -> Result<(), String> {
    let why = |e: std::io::Error| {
        if e.raw_os_error() == Some(libc::ENOTCONN) {
            format!(
                "mountpoint {p} is a dead FUSE mount (its server exited without unmounting, \
                 e.g. killed); clear it with `fusermount -u {p}` (or `umount -l {p}`) and retry",
                p = path.display()
            )
        } else {
            format!("mountpoint {}: {e}", path.display())
        }
    };
    let meta = std::fs::metadata(path).map_err(why)?;
    if !meta.is_dir() {
        return Err(format!("mountpoint {} is not a directory", path.display()));
    }
    let mut entries = std::fs::read_dir(path).map_err(why)?;
    match entries.next() {
        None => Ok(()),
        Some(Err(e)) => Err(why(e)),
        Some(Ok(_)) => Err(format!(
            "mountpoint {} is not empty: refusing to hide its contents (use an empty directory)",
            path.display()
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inode_numbers_round_trip() {
        for inode in [
            Inode::Root,
            Inode::Online,
            Inode::Possible,
            Inode::NodeDir(NodeId::new(0).unwrap()),
            Inode::MigrationPath(NodeId::new(1023).unwrap()),
            Inode::Distance(NodeId::new(7).unwrap()),
        ] {
            assert_eq!(Inode::from_ino(inode.ino()), Some(inode));
        }
        assert_eq!(Inode::from_ino(NODE_BASE + 3), None);
        assert_eq!(Inode::from_ino(NODE_BASE + 4 * 1024), None);
    }

    #[test]
    fn mountpoint_must_be_an_empty_directory() {
        let dir = tempfile::tempdir().unwrap();
        assert!(check_mountpoint(dir.path()).is_ok());
        std::fs::write(dir.path().join("x"), "").unwrap();
        assert!(check_mountpoint(dir.path()).unwrap_err().contains("not empty"));
        assert!(check_mountpoint(&dir.path().join("x")).unwrap_err().contains("not a directory"));
        assert!(check_mountpoint(&dir.path().join("nope")).is_err());
    }
}
