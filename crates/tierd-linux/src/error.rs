//! The crate's one error type.
//!
//! Every variant carries the path that failed, and its message says what to do next: the
//! daemon and the CLI print it as it is. Absent optional files and files that vanish while
//! being read are not errors (they are `None` in the readers' results), so an [`Error`] always
//! means that tierd cannot go on with what it was given.

use std::io;
use std::path::PathBuf;

/// Why reading the system failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A file every kernel with the needed support has does not exist.
    #[error("{} does not exist: {hint}", path.display())]
    Missing {
        /// The file that should be there.
        path: PathBuf,
        /// What its absence most likely means and what to check.
        hint: &'static str,
    },
    /// The file exists but could not be read (permissions, I/O error).
    #[error(
        "cannot read {}: {source}; run tierd as a user who may read it, or point it at \
         another sysfs/procfs root",
        path.display()
    )]
    Io {
        /// The file that could not be read.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: io::Error,
    },
    /// The file says something tierd does not understand.
    #[error(
        "{}: cannot parse {}: {reason}; if this tree comes from a real kernel, report \
         it to tierd with the file's contents and `uname -r`",
        path.display(),
        tierd_core::quote::quote(text)
    )]
    Malformed {
        /// The file.
        path: PathBuf,
        /// The offending text (the whole value, or the one bad line of a multi-line file).
        text: String,
        /// What is wrong with it.
        reason: String,
    },
}

impl Error {
    /// The path that failed.
    pub fn path(&self) -> &std::path::Path {
        match self {
            Error::Missing { path, .. }
            | Error::Io { path, .. }
            | Error::Malformed { path, .. } => path,
        }
    }
}
