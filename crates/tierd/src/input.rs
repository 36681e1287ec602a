//! Reading the files a user names: graph files, the config, scenarios, the state file.
//!
//! Every such read goes through [`read_text`], which first checks what the path is (a
//! directory, a device, a FIFO or a socket is refused before a byte is read: `/dev/zero` is
//! not a graph file, and opening a FIFO would wait for a writer forever), then reads at most
//! a size limit (a file that grows while it is read is cut off, not followed into memory
//! exhaustion), then checks that the text is UTF-8. Each error names the file once and says
//! what it is, so the caller never needs to add "cannot read FILE" around it.
//!
//! [`check_private`] is the extra check for files that steer a root process (the state file
//! and the daemon config): owned by root or by the user running tierd, and not writable by
//! group or others, or another local user could rewrite the migration paths.

use std::fs::{File, Metadata, OpenOptions};
use std::io::{self, Read};
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// The limit for the small text files tierd reads (graphs, the config, the state file,
/// scenarios): 1 MiB, far above any real one (a graph of all 1024 nodes is about 40 KiB).
pub const MAX_TEXT_BYTES: u64 = 1 << 20;

/// Why a file could not be used. Every variant names the file.
#[derive(Debug, thiserror::Error)]
pub enum InputError {
    /// Nothing at that path.
    #[error("{path}: no such file")]
    NotFound {
        /// The path.
        path: PathBuf,
    },
    /// A directory where a file was expected.
    #[error("{path} is a directory, not a file")]
    Directory {
        /// The path.
        path: PathBuf,
    },
    /// A device, FIFO, socket or (where links are refused) a symbolic link.
    #[error("{path} is {kind}, not a regular file{why}")]
    NotRegular {
        /// The path.
        path: PathBuf,
        /// "a character device", "a FIFO", ...
        kind: &'static str,
        /// Anything more to say (with a leading separator), or empty.
        why: String,
    },
    /// The process may not open it.
    #[error("{path}: permission denied (tierd runs as uid {uid})")]
    Denied {
        /// The path.
        path: PathBuf,
        /// Our effective uid.
        uid: u32,
    },
    /// Bigger than the limit.
    #[error("{path} is larger than {limit_kib} KiB, the limit for {what}")]
    TooLarge {
        /// The path.
        path: PathBuf,
        /// The limit, KiB.
        limit_kib: u64,
        /// What kind of file was expected.
        what: &'static str,
    },
    /// Not UTF-8.
    #[error("{path} is not UTF-8 text (invalid byte at offset {offset})")]
    NotUtf8 {
        /// The path.
        path: PathBuf,
        /// Offset of the first bad byte.
        offset: usize,
    },
    /// Owner or mode lets someone else change it.
    #[error("{path} {problem}; refusing to use it (fix with chown root and chmod go-w)")]
    Unsafe {
        /// The path.
        path: PathBuf,
        /// What is wrong.
        problem: String,
    },
    /// Any other I/O error.
    #[error("{path}: {source}")]
    Io {
        /// The path.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
}

impl InputError {
    /// The error for a failed `open`/`stat` of `path`.
    pub fn from_io(path: &Path, e: io::Error) -> InputError {
        let path = path.to_path_buf();
        match e.kind() {
            io::ErrorKind::NotFound => InputError::NotFound { path },
            io::ErrorKind::PermissionDenied => {
                InputError::Denied { path, uid: nix::unistd::geteuid().as_raw() }
            }
            io::ErrorKind::IsADirectory => InputError::Directory { path },
            _ if e.raw_os_error() == Some(libc::ELOOP) => {
                InputError::NotRegular { path, kind: "a symbolic link", why: String::new() }
            }
            _ => InputError::Io { path, source: e },
        }
    }

    /// Whether the file simply does not exist.
    pub fn is_not_found(&self) -> bool {
        matches!(self, InputError::NotFound { .. })
    }
}

/// What kind of non-regular file `meta` describes, or `None` for a regular file.
pub fn kind_of(meta: &Metadata) -> Option<&'static str> {
    let t = meta.file_type();
    Some(if t.is_file() {
        return None;
    } else if t.is_dir() {
        "a directory"
    } else if t.is_symlink() {
        "a symbolic link"
    } else if t.is_char_device() {
        "a character device"
    } else if t.is_block_device() {
        "a block device"
    } else if t.is_fifo() {
        "a FIFO"
    } else if t.is_socket() {
        "a socket"
    } else {
        "not a regular file"
    })
}

/// Whether symbolic links are followed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Links {
    /// Open what the link points at (user-named inputs: a graph file, a scenario).
    Follow,
    /// Refuse a link at the path itself (the state file: see `crate::state`).
    Refuse,
}

/// Opens `path` for reading and checks that it is a regular file, without blocking on a
/// FIFO. Returns the file and its metadata.
pub fn open_regular(path: &Path, links: Links) -> Result<(File, Metadata), InputError> {
    let mut flags = libc::O_NONBLOCK | libc::O_NOCTTY;
    if links == Links::Refuse {
        flags |= libc::O_NOFOLLOW;
    }
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(flags)
        .open(path)
        .map_err(|e| InputError::from_io(path, e))?;
    let meta = file.metadata().map_err(|e| InputError::from_io(path, e))?;
    if meta.is_dir() {
        return Err(InputError::Directory { path: path.to_path_buf() });
    }
    if let Some(kind) = kind_of(&meta) {
        return Err(InputError::NotRegular { path: path.to_path_buf(), kind, why: String::new() });
    }
    Ok((file, meta))
}

/// Reads at most `limit` bytes from `reader`; more is a [`InputError::TooLarge`].
pub fn read_limited(
    reader: impl Read,
    path: &Path,
    limit: u64,
    what: &'static str,
) -> Result<Vec<u8>, InputError> {
    let mut bytes = Vec::new();
    reader
        .take(limit.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(|e| InputError::from_io(path, e))?;
    if bytes.len() as u64 > limit {
        return Err(InputError::TooLarge {
            path: path.to_path_buf(),
            limit_kib: limit >> 10,
            what,
        });
    }
    Ok(bytes)
}

/// UTF-8 text from bytes read from `path`.
pub fn utf8(bytes: Vec<u8>, path: &Path) -> Result<String, InputError> {
    String::from_utf8(bytes).map_err(|e| InputError::NotUtf8 {
        path: path.to_path_buf(),
        offset: e.utf8_error().valid_up_to(),
    })
}

/// The text of the regular file at `path`, at most `limit` bytes. `what` names the kind of
/// file for the size error ("a path graph", "the config").
pub fn read_text(
    path: &Path,
    links: Links,
    limit: u64,
    what: &'static str,
) -> Result<String, InputError> {
    let (file, meta) = open_regular(path, links)?;
    read_opened(file, &meta, path, limit, what)
}

/// [`read_text`] of a file that decides what a root daemon does (the config, a graph file it
/// loads its paths from): links followed, and refused by [`check_private`] when someone
/// other than root or the running user could change it.
pub fn read_private_text(
    path: &Path,
    limit: u64,
    what: &'static str,
) -> Result<String, InputError> {
    let (file, meta) = open_regular(path, Links::Follow)?;
    check_private(path, &meta)?;
    read_opened(file, &meta, path, limit, what)
}

fn read_opened(
    file: File,
    meta: &Metadata,
    path: &Path,
    limit: u64,
    what: &'static str,
) -> Result<String, InputError> {
    if meta.len() > limit {
        return Err(InputError::TooLarge {
            path: path.to_path_buf(),
            limit_kib: limit >> 10,
            what,
        });
    }
    utf8(read_limited(file, path, limit, what)?, path)
}

/// Standard input as text, at most `limit` bytes (`tierd path apply -`).
pub fn read_stdin(limit: u64, what: &'static str) -> Result<String, InputError> {
    let path = Path::new("<stdin>");
    utf8(read_limited(io::stdin().lock(), path, limit, what)?, path)
}

/// Refuses a file that someone other than root or the running user could change: owned by
/// another user, or writable by group or others.
pub fn check_private(path: &Path, meta: &Metadata) -> Result<(), InputError> {
    let me = nix::unistd::geteuid().as_raw();
    let problem = if meta.uid() != 0 && meta.uid() != me {
        format!("is owned by uid {}, not by root or uid {me}", meta.uid())
    } else if meta.mode() & 0o022 != 0 {
        format!("is writable by group or others (mode {:04o})", meta.mode() & 0o7777)
    } else {
        return Ok(());
    };
    Err(InputError::Unsafe { path: path.to_path_buf(), problem })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn devices_directories_and_fifos_are_refused_before_reading() {
        let dir = tempfile::tempdir().unwrap();
        let err = read_text(Path::new("/dev/zero"), Links::Follow, 10, "x").unwrap_err();
        assert_eq!(err.to_string(), "/dev/zero is a character device, not a regular file");
        let err = read_text(dir.path(), Links::Follow, 10, "x").unwrap_err();
        assert!(err.to_string().ends_with("is a directory, not a file"), "{err}");
        let fifo = dir.path().join("fifo");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        // Opening a FIFO for reading would wait for a writer: it must not even block.
        let err = read_text(&fifo, Links::Follow, 10, "x").unwrap_err();
        assert!(err.to_string().contains("is a FIFO"), "{err}");
        let err = read_text(&dir.path().join("nope"), Links::Follow, 10, "x").unwrap_err();
        assert!(err.is_not_found() && err.to_string().ends_with("nope: no such file"), "{err}");
    }

    #[test]
    fn reads_are_bounded_and_text_is_utf8() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("big");
        std::fs::write(&f, vec![b'a'; 2048]).unwrap();
        let err = read_text(&f, Links::Follow, 1024, "a path graph").unwrap_err();
        assert!(err.to_string().ends_with("big is larger than 1 KiB, the limit for a path graph"));
        // A source that grows without end (a pipe, procfs) is cut at the limit.
        let err = read_limited(io::repeat(0), &f, 4096, "x").unwrap_err();
        assert!(matches!(err, InputError::TooLarge { limit_kib: 4, .. }), "{err}");
        std::fs::write(&f, b"ok\n\xff").unwrap();
        let err = read_text(&f, Links::Follow, 1024, "x").unwrap_err();
        assert!(err.to_string().ends_with("big is not UTF-8 text (invalid byte at offset 3)"));
    }

    #[test]
    fn links_are_refused_when_asked() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("target");
        std::fs::write(&target, "x").unwrap();
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        assert_eq!(read_text(&link, Links::Follow, 10, "x").unwrap(), "x");
        let err = read_text(&link, Links::Refuse, 10, "x").unwrap_err();
        assert!(err.to_string().contains("is a symbolic link"), "{err}");
    }

    #[test]
    fn group_writable_files_are_unsafe() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("conf");
        std::fs::write(&f, "").unwrap();
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(check_private(&f, &std::fs::metadata(&f).unwrap()).is_ok());
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o666)).unwrap();
        let err = check_private(&f, &std::fs::metadata(&f).unwrap()).unwrap_err();
        assert!(err.to_string().contains("writable by group or others (mode 0666)"), "{err}");
    }
}
