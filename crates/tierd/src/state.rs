//! The state file that keeps the path table across restarts, and the lock that makes one
//! process its owner.
//!
//! The state is the TOML text form of [`PathGraph`] (see `tierd_core::graph`). It is written
//! atomically: a temporary file in the same directory, `fsync`, `rename` over the old one,
//! `fsync` of the directory, so a crash leaves the old table or the new one, never half of
//! either. A state file that can't be read or parsed is an error naming the file and the
//! problem; tierd never silently starts over from an empty table.
//!
//! What the state path may be: a regular file, owned by root or the running user and not
//! writable by group or others, or nothing yet. Anything else is refused before it is read
//! or replaced: the atomic rename would otherwise turn `--state /dev/null` into a regular
//! file, and a symbolic link into a file of its own while the link's target kept the old
//! table. Links are refused rather than followed: a link in a state directory is either a
//! mistake or a way to make root write somewhere else, and the fix (pass the real path) is
//! easy. Reads are bounded at [`crate::input::MAX_TEXT_BYTES`].
//!
//! Ownership: a process that keeps the table in memory for a long time (`tierd mount`,
//! `tierd run`) holds an exclusive lock on `<state>.lock` and writes its pid and control
//! socket path into it. A short-lived CLI call takes the same lock for its
//! read-modify-write; when the lock is busy it reads the socket path from the lock file and
//! asks the owner instead of writing the file behind its back.

use std::fmt::Write as _;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::FileExt;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use tierd_core::PathGraph;

use crate::input::{self, InputError, Links};

/// The default state file.
pub const DEFAULT_STATE: &str = "/var/lib/tierd/paths.toml";

/// A state-file problem, always with the path it concerns.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// The path is not a state file tierd may read or replace (a device, a directory, a
    /// link, someone else's file, too large, unreadable); it is left alone.
    #[error("state file {0}")]
    Unusable(InputError),
    /// The file is not a valid path graph.
    #[error(
        "state file {path} is corrupt: {reason}\n  (fix or remove it; tierd does not reset it for you)"
    )]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// Writing failed; the old file is untouched.
    #[error("cannot write state file {path}: {cause}")]
    Write {
        /// The file.
        path: PathBuf,
        /// The cause.
        cause: io::Error,
    },
    /// The lock file could not be opened or locked.
    #[error("cannot lock {path}: {cause}")]
    Lock {
        /// The lock file.
        path: PathBuf,
        /// The cause.
        cause: io::Error,
    },
}

/// A state file path.
#[derive(Clone, Debug)]
pub struct StateFile {
    path: PathBuf,
}

impl StateFile {
    /// The state file at `path`.
    pub fn new(path: impl Into<PathBuf>) -> StateFile {
        StateFile { path: path.into() }
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The lock file beside it.
    pub fn lock_path(&self) -> PathBuf {
        let mut p = self.path.clone().into_os_string();
        p.push(".lock");
        PathBuf::from(p)
    }

    /// Refuses a state path that tierd must neither read nor replace: anything but a
    /// regular file (or nothing yet). See the module documentation.
    pub fn check(&self) -> Result<(), StateError> {
        match fs::symlink_metadata(&self.path) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(StateError::Unusable(InputError::from_io(&self.path, e))),
            Ok(meta) if meta.is_dir() => {
                Err(StateError::Unusable(InputError::Directory { path: self.path.clone() }))
            }
            Ok(meta) => match input::kind_of(&meta) {
                None => Ok(()),
                Some(kind) => Err(self.not_regular(kind)),
            },
        }
    }

    fn not_regular(&self, kind: &'static str) -> StateError {
        let why = if kind == "a symbolic link" {
            "; tierd replaces the state file by renaming a new one over it, which would \
             replace the link and leave its target stale: give --state the real path"
        } else {
            "; tierd would replace it with a regular file: give --state a file path"
        };
        StateError::Unusable(InputError::NotRegular {
            path: self.path.clone(),
            kind,
            why: why.to_string(),
        })
    }

    /// The saved graph, or `None` when there is no state file yet.
    pub fn load(&self) -> Result<Option<PathGraph>, StateError> {
        self.check()?;
        let (file, meta) = match input::open_regular(&self.path, Links::Refuse) {
            Ok(f) => f,
            Err(e) if e.is_not_found() => return Ok(None),
            Err(InputError::NotRegular { kind, .. }) => return Err(self.not_regular(kind)),
            Err(e) => return Err(StateError::Unusable(e)),
        };
        input::check_private(&self.path, &meta).map_err(StateError::Unusable)?;
        let bytes = input::read_limited(file, &self.path, input::MAX_TEXT_BYTES, "a state file")
            .map_err(StateError::Unusable)?;
        let Ok(text) = String::from_utf8(bytes) else {
            return Err(StateError::Corrupt {
                path: self.path.clone(),
                reason: "not UTF-8 text".into(),
            });
        };
        PathGraph::from_toml(&text).map(Some).map_err(|e| StateError::Corrupt {
            path: self.path.clone(),
            reason: tierd_core::quote::bound_lines(e.to_string().trim_end()),
        })
    }

    /// Writes `graph` atomically (temp file, fsync, rename, fsync of the directory),
    /// creating the directory when needed.
    pub fn save(&self, graph: &PathGraph) -> Result<(), StateError> {
        self.check()?;
        let err = |cause| StateError::Write { path: self.path.clone(), cause };
        let dir = match self.path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
            _ => PathBuf::from("."),
        };
        fs::create_dir_all(&dir).map_err(err)?;
        let mut tmp = tempfile::Builder::new()
            .prefix(".paths-")
            .suffix(".tmp")
            .tempfile_in(&dir)
            .map_err(err)?;
        let text = format!(
            "# tierd migration paths; written by tierd, read with `tierd path show`.\n{}",
            graph.to_toml()
        );
        tmp.write_all(text.as_bytes()).map_err(err)?;
        // Readable by everyone, like the sysfs files it stands for; tempfile creates 0600.
        tmp.as_file().set_permissions(fs::Permissions::from_mode(0o644)).map_err(err)?;
        tmp.as_file().sync_all().map_err(err)?;
        // Again just before the rename: what is at the path now is what gets replaced.
        self.check()?;
        tmp.persist(&self.path).map_err(|e| err(e.error))?;
        File::open(&dir).and_then(|d| d.sync_all()).map_err(err)?;
        Ok(())
    }

    /// Tries to become the owner. `Ok(None)` when another process holds the lock.
    pub fn try_lock(&self) -> Result<Option<OwnerLock>, StateError> {
        // The lock file sits beside the state: refuse a bad state path before creating it.
        self.check()?;
        let path = self.lock_path();
        let lock_err = |cause| StateError::Lock { path: path.clone(), cause };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            fs::create_dir_all(dir).map_err(lock_err)?;
        }
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o644)
            .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
            .open(&path)
            .map_err(lock_err)?;
        if !file.metadata().map_err(lock_err)?.is_file() {
            return Err(lock_err(io::Error::other("not a regular file")));
        }
        match file.try_lock() {
            Ok(()) => {}
            Err(fs::TryLockError::WouldBlock) => return Ok(None),
            Err(fs::TryLockError::Error(e)) => return Err(lock_err(e)),
        }
        let mut owner = OwnerLock { file, path: path.clone() };
        owner.write_record(None).map_err(lock_err)?;
        Ok(Some(owner))
    }

    /// Becomes the owner, waiting up to `wait` for a short-lived holder (another CLI call)
    /// to finish. `Ok(None)` when the lock is still held then, or when its holder is a
    /// long-running owner that serves a control socket (ask it instead).
    pub fn lock_within(&self, wait: Duration) -> Result<Option<OwnerLock>, StateError> {
        let deadline = Instant::now() + wait;
        loop {
            if let Some(lock) = self.try_lock()? {
                return Ok(Some(lock));
            }
            if self.owner_socket(Duration::ZERO).is_some() || Instant::now() >= deadline {
                return Ok(None);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// The owner's pid as its lock file records it.
    pub fn owner_pid(&self) -> Option<u32> {
        let text = self.lock_record()?;
        text.lines().find_map(|l| l.strip_prefix("pid=")?.parse().ok())
    }

    /// The control socket of the process that owns the state, waiting up to `wait` for a
    /// new owner to publish it. `None` when the owner serves no socket.
    pub fn owner_socket(&self, wait: Duration) -> Option<PathBuf> {
        let deadline = Instant::now() + wait;
        loop {
            let text = self.lock_record().unwrap_or_default();
            if let Some(s) = text.lines().find_map(|l| l.strip_prefix("socket=")) {
                return Some(PathBuf::from(s));
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl StateFile {
    /// The owner record in the lock file (a few lines; at most 4 KiB are read).
    fn lock_record(&self) -> Option<String> {
        let (file, _) = input::open_regular(&self.lock_path(), Links::Refuse).ok()?;
        let bytes = input::read_limited(file, &self.lock_path(), 4096, "a lock file").ok()?;
        String::from_utf8(bytes).ok()
    }
}

/// Proof of ownership; the lock is released (and the lock file emptied) on drop.
#[derive(Debug)]
pub struct OwnerLock {
    file: File,
    path: PathBuf,
}

impl OwnerLock {
    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Tells CLI calls where to reach this owner. Call it once the socket is listening, so
    /// that nobody connects before it answers.
    pub fn publish_socket(&mut self, socket: &Path) -> Result<(), StateError> {
        self.write_record(Some(socket))
            .map_err(|cause| StateError::Lock { path: self.path.clone(), cause })
    }

    fn write_record(&mut self, socket: Option<&Path>) -> io::Result<()> {
        let mut info = format!("pid={}\n", std::process::id());
        if let Some(s) = socket {
            let _ = writeln!(info, "socket={}", s.display());
        }
        self.file.set_len(0)?;
        self.file.write_all_at(info.as_bytes(), 0)?;
        self.file.sync_all()
    }
}

impl Drop for OwnerLock {
    fn drop(&mut self) {
        // Empty the owner record before the kernel drops the lock with the file.
        let _ = self.file.set_len(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_file_is_none_and_round_trip_is_exact() {
        let dir = tempfile::tempdir().unwrap();
        let state = StateFile::new(dir.path().join("sub/paths.toml"));
        assert!(state.load().unwrap().is_none());
        let g =
            PathGraph::from_toml("[node.0]\ntarget = 1\nfallback = \"2\"\n[node.1]\ntarget = 2\n")
                .unwrap();
        state.save(&g).unwrap();
        assert_eq!(state.load().unwrap(), Some(g));
        let mode = fs::metadata(state.path()).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o644, "readable by everyone, like the sysfs files");
        let leftovers: Vec<_> = fs::read_dir(dir.path().join("sub"))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(leftovers, ["paths.toml"], "no temporary file is left behind");
    }

    #[test]
    fn corrupt_file_names_the_file_and_the_problem() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("paths.toml");
        fs::write(&path, "[node.0]\ntarget = \"one\"\n").unwrap();
        let err = StateFile::new(&path).load().unwrap_err().to_string();
        assert!(err.contains(&path.display().to_string()), "{err}");
        assert!(err.contains("corrupt") && err.contains("target"), "{err}");
        fs::write(&path, [0xff, 0xfe]).unwrap();
        let err = StateFile::new(&path).load().unwrap_err().to_string();
        assert!(err.contains("not UTF-8"), "{err}");
        // Nothing was reset.
        assert_eq!(fs::read(&path).unwrap(), [0xff, 0xfe]);
    }

    #[test]
    fn unreadable_file_is_an_error_not_a_reset() {
        let dir = tempfile::tempdir().unwrap();
        // A directory where the file should be: reading fails with EISDIR.
        let path = dir.path().join("paths.toml");
        fs::create_dir(&path).unwrap();
        let err = StateFile::new(&path).load().unwrap_err();
        assert!(matches!(err, StateError::Unusable(InputError::Directory { .. })), "{err}");
    }

    #[test]
    fn one_owner_at_a_time_and_the_socket_is_published() {
        let dir = tempfile::tempdir().unwrap();
        let state = StateFile::new(dir.path().join("paths.toml"));
        let sock = dir.path().join("ctl.sock");
        let mut owner = state.try_lock().unwrap().expect("first lock");
        assert!(state.try_lock().unwrap().is_none(), "second owner refused");
        assert_eq!(state.owner_socket(Duration::ZERO), None, "not published before listening");
        owner.publish_socket(&sock).unwrap();
        assert_eq!(state.owner_socket(Duration::ZERO), Some(sock));
        assert_eq!(state.owner_pid(), Some(std::process::id()));
        assert!(
            state.lock_within(Duration::from_secs(5)).unwrap().is_none(),
            "no wait for a long-running owner"
        );
        drop(owner);
        assert_eq!(state.owner_socket(Duration::ZERO), None);
        assert!(state.try_lock().unwrap().is_some(), "lock released on drop");
    }

    #[test]
    fn non_regular_state_paths_are_neither_read_nor_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let g = PathGraph::from_toml("[node.0]\ntarget = 1\n").unwrap();
        let err = StateFile::new("/dev/null").load().unwrap_err().to_string();
        assert!(err.contains("/dev/null is a character device, not a regular file"), "{err}");
        assert!(StateFile::new("/dev/null").try_lock().is_err(), "no /dev/null.lock either");
        let target = dir.path().join("real.toml");
        StateFile::new(&target).save(&g).unwrap();
        let link = dir.path().join("paths.toml");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        let state = StateFile::new(&link);
        let err = state.load().unwrap_err().to_string();
        assert!(err.contains("is a symbolic link") && err.contains("the real path"), "{err}");
        assert!(state.save(&PathGraph::default()).is_err());
        assert!(fs::symlink_metadata(&link).unwrap().file_type().is_symlink());
        assert_eq!(StateFile::new(&target).load().unwrap(), Some(g));
    }

    #[test]
    fn a_state_file_others_can_write_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("paths.toml");
        fs::write(&path, "").unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o666)).unwrap();
        let err = StateFile::new(&path).load().unwrap_err().to_string();
        assert!(err.contains("writable by group or others"), "{err}");
    }
}
