//! File reading shared by every reader: the one place that decides what "absent" means.
//!
//! sysfs files of a node that goes offline disappear (`ENOENT`) or, when the file was already
//! open, fail with `ENODEV`. Both mean "this fact no longer exists" and become `None`; every
//! other I/O error is an [`Error::Io`].

use std::io;
use std::path::Path;

use crate::Error;

/// Whether `e` says the file is gone rather than unreadable.
pub(crate) fn is_gone(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::NotFound || e.raw_os_error() == Some(libc::ENODEV)
}

/// The most tierd reads of one sysfs or procfs file: a sysfs attribute is at most a page,
/// and `/proc/zoneinfo` of a large machine a few hundred KiB. A `--sysfs-root` tree whose
/// file is `/dev/zero` (or a huge file) is refused at this size, not read into memory.
pub(crate) const MAX_FILE_BYTES: u64 = 4 << 20;

fn read_bounded(path: &Path) -> io::Result<Vec<u8>> {
    use std::io::Read;
    let mut bytes = Vec::new();
    std::fs::File::open(path)?.take(MAX_FILE_BYTES + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(io::Error::new(
            io::ErrorKind::FileTooLarge,
            format!("larger than {} MiB, far beyond any kernel's file", MAX_FILE_BYTES >> 20),
        ));
    }
    Ok(bytes)
}

/// The file's text, or `None` when it does not exist or vanished while being read.
/// A small one-value file (a sysfs attribute such as DAMON's `nr_accesses`) as an unsigned
/// decimal, `None` when it does not exist. The hot path of the DAMON tracker reads four of
/// these per region per window: this is open, one read into a stack buffer and close (three
/// syscalls, no allocation), where [`optional`] also asks for the size and reads to the end.
/// A sysfs attribute returns its whole value on the first read; a longer file falls back to
/// [`optional`].
pub(crate) fn small_u64(path: &Path) -> Result<Option<u64>, Error> {
    use std::io::Read as _;
    let mut f = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if is_gone(&e) => return Ok(None),
        Err(source) => return Err(Error::Io { path: path.to_path_buf(), source }),
    };
    let mut buf = [0u8; 32];
    let n = match f.read(&mut buf) {
        Ok(n) => n,
        Err(e) if is_gone(&e) => return Ok(None),
        Err(source) => return Err(Error::Io { path: path.to_path_buf(), source }),
    };
    let text = if n < buf.len() {
        std::str::from_utf8(&buf[..n])
            .map_err(|_| {
                malformed(path, &String::from_utf8_lossy(&buf[..n]), "the file is not UTF-8 text")
            })?
            .to_string()
    } else {
        match optional(path)? {
            Some(t) => t,
            None => return Ok(None),
        }
    };
    parse_u64(value(&text)).map(Some).map_err(|b| b.at(path))
}

pub(crate) fn optional(path: &Path) -> Result<Option<String>, Error> {
    match read_bounded(path) {
        Ok(bytes) => match String::from_utf8(bytes) {
            Ok(text) => Ok(Some(text)),
            Err(e) => Err(malformed(
                path,
                &String::from_utf8_lossy(e.as_bytes()),
                "the file is not UTF-8 text",
            )),
        },
        Err(e) if is_gone(&e) => Ok(None),
        Err(source) => Err(Error::Io { path: path.to_path_buf(), source }),
    }
}

/// The file's text; its absence is an [`Error::Missing`] carrying `hint`.
pub(crate) fn required(path: &Path, hint: &'static str) -> Result<String, Error> {
    optional(path)?.ok_or_else(|| Error::Missing { path: path.to_path_buf(), hint })
}

/// An [`Error::Malformed`] for `path`.
pub(crate) fn malformed(path: &Path, text: &str, reason: impl Into<String>) -> Error {
    Error::Malformed { path: path.to_path_buf(), text: text.to_string(), reason: reason.into() }
}

/// A parse failure before the path is known: the bad text and what is wrong with it.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Bad {
    pub(crate) text: String,
    pub(crate) reason: String,
}

impl Bad {
    pub(crate) fn new(text: &str, reason: impl Into<String>) -> Bad {
        Bad { text: text.to_string(), reason: reason.into() }
    }

    pub(crate) fn at(self, path: &Path) -> Error {
        Error::Malformed { path: path.to_path_buf(), text: self.text, reason: self.reason }
    }
}

/// The value of a one-value sysfs/procfs file: the text without its one trailing newline.
pub(crate) fn value(text: &str) -> &str {
    text.strip_suffix('\n').unwrap_or(text)
}

/// A decimal `u64` as the kernel prints one (`%u`, `%lu`): ASCII digits only, no sign, no
/// spaces.
pub(crate) fn parse_u64(text: &str) -> Result<u64, Bad> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(Bad::new(text, "expected an unsigned decimal number"));
    }
    text.parse().map_err(|_| Bad::new(text, "number does not fit in 64 bits"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enoent_and_enodev_are_gone_other_errors_are_not() {
        assert!(is_gone(&io::Error::from(io::ErrorKind::NotFound)));
        assert!(is_gone(&io::Error::from_raw_os_error(libc::ENOENT)));
        assert!(is_gone(&io::Error::from_raw_os_error(libc::ENODEV)));
        assert!(!is_gone(&io::Error::from_raw_os_error(libc::EACCES)));
        assert!(!is_gone(&io::Error::from_raw_os_error(libc::EIO)));
    }

    #[test]
    fn small_u64_reads_one_value_files_and_falls_back_for_long_ones() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("n");
        assert_eq!(small_u64(&f).unwrap(), None);
        std::fs::write(&f, "4096\n").unwrap();
        assert_eq!(small_u64(&f).unwrap(), Some(4096));
        std::fs::write(&f, format!("{}\n", u64::MAX)).unwrap();
        assert_eq!(small_u64(&f).unwrap(), Some(u64::MAX));
        // Longer than the stack buffer: read whole, and still one number or an error.
        std::fs::write(&f, format!("{}1\n", "0".repeat(40))).unwrap();
        assert_eq!(small_u64(&f).unwrap(), Some(1));
        std::fs::write(&f, "12 13\n").unwrap();
        assert!(small_u64(&f).is_err());
        assert!(small_u64(dir.path()).is_err(), "a directory is an error, not absent");
    }

    #[test]
    fn optional_maps_a_missing_file_to_none() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(optional(&dir.path().join("nope")).unwrap(), None);
        std::fs::write(dir.path().join("yes"), "1\n").unwrap();
        assert_eq!(optional(&dir.path().join("yes")).unwrap().as_deref(), Some("1\n"));
    }

    #[test]
    fn reading_a_directory_is_an_io_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let err = optional(dir.path()).unwrap_err();
        assert!(matches!(err, Error::Io { .. }), "{err:?}");
        assert_eq!(err.path(), dir.path());
    }

    #[test]
    fn required_names_the_missing_file_and_the_hint() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("online");
        let err = required(&path, "is sysfs mounted?").unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains(&path.display().to_string()), "{msg}");
        assert!(msg.contains("is sysfs mounted?"), "{msg}");
    }

    #[test]
    fn an_endless_file_is_cut_at_the_limit() {
        let err = optional(Path::new("/dev/zero")).unwrap_err();
        assert!(err.to_string().contains("larger than 4 MiB"), "{err}");
    }

    #[test]
    fn non_utf8_is_malformed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bin");
        std::fs::write(&path, [0xff, 0xfe, b'\n']).unwrap();
        assert!(matches!(optional(&path), Err(Error::Malformed { .. })));
    }

    #[test]
    fn parse_u64_takes_kernel_decimals_only() {
        assert_eq!(parse_u64("0"), Ok(0));
        assert_eq!(parse_u64("18446744073709551615"), Ok(u64::MAX));
        for bad in ["", "+1", "-1", " 1", "1 ", "0x10", "1.5", "abc", "18446744073709551616"] {
            let e = parse_u64(bad).unwrap_err();
            assert_eq!(e.text, bad);
        }
    }

    #[test]
    fn value_strips_one_newline() {
        assert_eq!(value("1\n"), "1");
        assert_eq!(value("1"), "1");
        assert_eq!(value("1\n\n"), "1\n");
    }
}
