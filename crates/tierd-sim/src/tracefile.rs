//! Trace files: a compact binary format the simulator streams, and a text format with an
//! importer.
//!
//! # Binary format, version 1 (`.trace`)
//! Little-endian throughout:
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 8 | magic `TIERDTRC` |
//! | 8 | 4 | version, 1 |
//! | 12 | 4 | page size, bytes (informative: the pages are already numbered) |
//! | 16 | 8 | pages: every page index is below this |
//! | 24 | 8 | accesses: the number of records that follow |
//! | 32 | 4 × accesses | one `u32` page index per access, in order |
//!
//! Four bytes an access, read in blocks: a trace of 100 M accesses is 400 MB on disk and a
//! few hundred KiB in memory while it replays.
//!
//! # Text format
//! One access per line: a page number in decimal, or a byte address in hex with `0x` (divided
//! by the page size). Anything after the first blank on a line is ignored (an `R`/`W` column,
//! a timestamp), as are blank lines and lines starting with `#`. The importer numbers pages
//! densely in order of first appearance, so sparse addresses make a compact footprint.

use std::collections::HashMap;
use std::io::{self, BufRead, Read, Seek, SeekFrom, Write};

/// The magic at the start of a binary trace.
pub const MAGIC: &[u8; 8] = b"TIERDTRC";
const HEADER_LEN: usize = 32;
/// The longest text-trace line: an address, a column or two, a timestamp.
pub const MAX_LINE: usize = 4096;

/// A binary trace's header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TraceHeader {
    /// Page size the trace was recorded with, bytes.
    pub page_size: u32,
    /// Every page index is below this.
    pub pages: u64,
    /// Number of accesses.
    pub accesses: u64,
}

/// A trace file problem.
#[derive(Debug, thiserror::Error)]
pub enum TraceFileError {
    /// Reading or writing failed.
    #[error("{0}")]
    Io(#[from] io::Error),
    /// Not a tierd trace.
    #[error("not a tierd binary trace (bad magic); import text traces with --import-trace")]
    Magic,
    /// A version this build does not read.
    #[error("unsupported trace version {0} (this tierd reads version 1)")]
    Version(u32),
    /// A record names a page beyond the header's page count.
    #[error("access {index} names page {page}, beyond the header's {pages} pages")]
    PageRange {
        /// Position of the record.
        index: u64,
        /// The page.
        page: u32,
        /// The header's page count.
        pages: u64,
    },
    /// The file ends before the header's access count.
    #[error("the trace ends after {got} of {want} accesses")]
    Short {
        /// Records read.
        got: u64,
        /// Records announced.
        want: u64,
    },
    /// A text line that is not an access.
    #[error(
        "line {line}: {} is not a page number or a 0x byte address",
        tierd_core::quote::quote(.text)
    )]
    Text {
        /// 1-based line number.
        line: u64,
        /// The line (the message quotes a bounded prefix).
        text: String,
    },
    /// A text line longer than any access line could be (`/dev/zero`, a binary file).
    #[error("line {line} is longer than {max} bytes: not a text trace")]
    LongLine {
        /// 1-based line number.
        line: u64,
        /// The limit.
        max: usize,
    },
    /// More distinct pages than a `u32` names.
    #[error("the trace touches more than 2^32 - 1 distinct pages")]
    TooManyPages,
}

/// Writes a header.
pub fn write_header<W: Write>(w: &mut W, h: &TraceHeader) -> io::Result<()> {
    let mut buf = [0u8; HEADER_LEN];
    buf[..8].copy_from_slice(MAGIC);
    buf[8..12].copy_from_slice(&1u32.to_le_bytes());
    buf[12..16].copy_from_slice(&h.page_size.to_le_bytes());
    buf[16..24].copy_from_slice(&h.pages.to_le_bytes());
    buf[24..32].copy_from_slice(&h.accesses.to_le_bytes());
    w.write_all(&buf)
}

/// Writes a whole trace held in memory.
pub fn write_trace<W: Write>(
    w: &mut W,
    page_size: u32,
    pages: u64,
    accesses: &[u32],
) -> io::Result<()> {
    write_header(w, &TraceHeader { page_size, pages, accesses: accesses.len() as u64 })?;
    for block in accesses.chunks(1 << 14) {
        let bytes: Vec<u8> = block.iter().flat_map(|p| p.to_le_bytes()).collect();
        w.write_all(&bytes)?;
    }
    Ok(())
}

/// Streams a binary trace in blocks.
#[derive(Debug)]
pub struct TraceReader<R> {
    inner: R,
    header: TraceHeader,
    read: u64,
    bytes: Vec<u8>,
}

impl<R: Read> TraceReader<R> {
    /// Reads and checks the header.
    pub fn new(mut inner: R) -> Result<TraceReader<R>, TraceFileError> {
        let mut buf = [0u8; HEADER_LEN];
        inner.read_exact(&mut buf).map_err(|e| {
            if e.kind() == io::ErrorKind::UnexpectedEof { TraceFileError::Magic } else { e.into() }
        })?;
        if &buf[..8] != MAGIC {
            return Err(TraceFileError::Magic);
        }
        let word = |a: usize| u32::from_le_bytes(buf[a..a + 4].try_into().expect("4 bytes"));
        let dword = |a: usize| u64::from_le_bytes(buf[a..a + 8].try_into().expect("8 bytes"));
        let version = word(8);
        if version != 1 {
            return Err(TraceFileError::Version(version));
        }
        let header = TraceHeader { page_size: word(12), pages: dword(16), accesses: dword(24) };
        Ok(TraceReader { inner, header, read: 0, bytes: Vec::new() })
    }

    /// The header.
    pub fn header(&self) -> TraceHeader {
        self.header
    }

    /// Replaces `out` with up to `max` next accesses; an empty `out` means the end.
    pub fn read_block(&mut self, out: &mut Vec<u32>, max: usize) -> Result<(), TraceFileError> {
        out.clear();
        let left = self.header.accesses - self.read;
        let n = usize::try_from(left).unwrap_or(usize::MAX).min(max);
        if n == 0 {
            return Ok(());
        }
        self.bytes.resize(n * 4, 0);
        let mut filled = 0;
        while filled < self.bytes.len() {
            match self.inner.read(&mut self.bytes[filled..]) {
                Ok(0) => {
                    // Count the whole records this block did hold, not only earlier blocks.
                    let got = self.read + (filled / 4) as u64;
                    return Err(TraceFileError::Short { got, want: self.header.accesses });
                }
                Ok(k) => filled += k,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e.into()),
            }
        }
        for (i, c) in self.bytes.chunks_exact(4).enumerate() {
            let page = u32::from_le_bytes(c.try_into().expect("4 bytes"));
            if u64::from(page) >= self.header.pages {
                return Err(TraceFileError::PageRange {
                    index: self.read + i as u64,
                    page,
                    pages: self.header.pages,
                });
            }
            out.push(page);
        }
        self.read += n as u64;
        Ok(())
    }
}

/// Opens a binary trace file for streaming (the simulator's only file access).
pub fn open(
    path: &std::path::Path,
) -> Result<TraceReader<io::BufReader<std::fs::File>>, TraceFileError> {
    TraceReader::new(io::BufReader::with_capacity(1 << 16, std::fs::File::open(path)?))
}

/// Converts a text trace to the binary format, streaming; returns the header written.
pub fn import_text<R: BufRead, W: Write + Seek>(
    input: R,
    mut output: W,
    page_size: u32,
) -> Result<TraceHeader, TraceFileError> {
    let mut header = TraceHeader { page_size, pages: 0, accesses: 0 };
    write_header(&mut output, &header)?;
    let mut ids: HashMap<u64, u32> = HashMap::new();
    let mut block: Vec<u8> = Vec::with_capacity(1 << 16);
    let mut input = input;
    let mut raw = Vec::new();
    let mut n = 0usize;
    loop {
        raw.clear();
        // Each line is read with a bound: an endless line (`/dev/zero`) is an error, not
        // a buffer that grows until memory runs out.
        let got = (&mut input).take(MAX_LINE as u64 + 1).read_until(b'\n', &mut raw)?;
        if got == 0 {
            break;
        }
        n += 1;
        if raw.len() > MAX_LINE && raw.last() != Some(&b'\n') {
            return Err(TraceFileError::LongLine { line: n as u64, max: MAX_LINE });
        }
        let Ok(line) = std::str::from_utf8(&raw) else {
            let text = String::from_utf8_lossy(&raw).trim_end().to_string();
            return Err(TraceFileError::Text { line: n as u64, text });
        };
        let line = line.trim_end_matches(['\n', '\r']).to_string();
        let text = line.trim();
        if text.is_empty() || text.starts_with('#') {
            continue;
        }
        let field = text.split_whitespace().next().unwrap_or_default();
        let bad = || TraceFileError::Text { line: n as u64, text: line.clone() };
        let key = if let Some(hex) = field.strip_prefix("0x").or_else(|| field.strip_prefix("0X")) {
            u64::from_str_radix(hex, 16).map_err(|_| bad())? / u64::from(page_size.max(1))
        } else {
            field.parse::<u64>().map_err(|_| bad())?
        };
        let next = u32::try_from(ids.len()).map_err(|_| TraceFileError::TooManyPages)?;
        let id = *ids.entry(key).or_insert(next);
        block.extend_from_slice(&id.to_le_bytes());
        header.accesses += 1;
        if block.len() >= 1 << 16 {
            output.write_all(&block)?;
            block.clear();
        }
    }
    output.write_all(&block)?;
    header.pages = ids.len() as u64;
    output.seek(SeekFrom::Start(0))?;
    write_header(&mut output, &header)?;
    output.flush()?;
    Ok(header)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    #[test]
    fn text_imports_and_streams_back() {
        let text = "# a comment\n0x1000 R\n0x1fff W\n\n7\n0x3000\n7\n";
        let mut out = Cursor::new(Vec::new());
        let h = import_text(text.as_bytes(), &mut out, 4096).unwrap();
        assert_eq!(h, TraceHeader { page_size: 4096, pages: 3, accesses: 5 });
        let mut r = TraceReader::new(Cursor::new(out.into_inner())).unwrap();
        assert_eq!(r.header(), h);
        let mut block = Vec::new();
        r.read_block(&mut block, 2).unwrap();
        assert_eq!(block, [0, 0]);
        r.read_block(&mut block, 10).unwrap();
        assert_eq!(block, [1, 2, 1]);
        r.read_block(&mut block, 10).unwrap();
        assert!(block.is_empty());
    }

    #[test]
    fn bad_files_say_what_is_wrong() {
        let err = import_text("12\nzz\n".as_bytes(), Cursor::new(Vec::new()), 4096).unwrap_err();
        assert_eq!(err.to_string(), "line 2: \"zz\" is not a page number or a 0x byte address");
        assert!(matches!(TraceReader::new(&b"nope"[..]), Err(TraceFileError::Magic)));
        let mut file = Vec::new();
        write_trace(&mut file, 4096, 2, &[0, 1, 5]).unwrap();
        let mut r = TraceReader::new(&file[..]).unwrap();
        let err = r.read_block(&mut Vec::new(), 10).unwrap_err();
        assert!(matches!(err, TraceFileError::PageRange { index: 2, page: 5, pages: 2 }), "{err}");
        file.truncate(file.len() - 4);
        let mut r = TraceReader::new(&file[..]).unwrap();
        let err = r.read_block(&mut Vec::new(), 10).unwrap_err();
        assert_eq!(err.to_string(), "the trace ends after 2 of 3 accesses", "counts what is there");
    }

    #[test]
    fn endless_or_huge_text_lines_are_refused_and_quoted_short() {
        let zeros = std::io::BufReader::new(std::io::repeat(0));
        let err = import_text(zeros, Cursor::new(Vec::new()), 4096).unwrap_err();
        assert_eq!(err.to_string(), "line 1 is longer than 4096 bytes: not a text trace");
        let long = format!("1\n{}\n", "z".repeat(3000));
        let err = import_text(long.as_bytes(), Cursor::new(Vec::new()), 4096).unwrap_err();
        let msg = err.to_string();
        assert!(msg.starts_with("line 2: \"zzz") && msg.len() < 200, "{msg}");
    }
}
