//! Workloads, drawn once into a compact trace (one `u32` page index per access) that every
//! policy replays: drawing costs as much as simulating, so it is done once per run, and all
//! policies see exactly the same accesses.
//!
//! Processes own consecutive page ranges in the order the scenario lists them. When there are
//! several, each access picks a process in proportion to its `share`.

use rand_xoshiro::Xoshiro256PlusPlus;
use rand_xoshiro::rand_core::SeedableRng;

use crate::scenario::{Scenario, WorkloadSpec};
use crate::tracefile::{self, TraceReader};
use crate::zipf::{Uniform, Zipf};

/// A drawn trace.
#[derive(Clone, Debug)]
pub struct Trace {
    /// One page index per access.
    pub accesses: Vec<u32>,
    /// Per process, its page range `first..end`.
    pub ranges: Vec<(u32, u32)>,
    /// Not held in memory: each replay draws (or reads) the accesses again, in order.
    pub streamed: bool,
}

impl Trace {
    /// Total pages of all processes.
    pub fn pages(&self) -> u32 {
        self.ranges.last().map_or(0, |r| r.1)
    }
}

fn pages_of(mib: u64, page_size: u64) -> u64 {
    (mib << 20).div_ceil(page_size).max(1)
}

/// Pages a workload touches.
pub fn footprint_pages(w: &WorkloadSpec, page_size: u64) -> u64 {
    match w {
        WorkloadSpec::Zipf(z) => pages_of(z.footprint_mib, page_size),
        WorkloadSpec::HotsetShift(h) => pages_of(h.footprint_mib, page_size),
        WorkloadSpec::Scan(s) => pages_of(s.footprint_mib, page_size),
        WorkloadSpec::Gups(g) => pages_of(g.footprint_mib, page_size),
        WorkloadSpec::Phases(p) => {
            p.phase.iter().map(|ph| footprint_pages(&ph.workload, page_size)).max().unwrap_or(1)
        }
        // Known once `Scenario::open_traces` has read the header.
        WorkloadSpec::Trace(t) => t.pages.unwrap_or(1),
    }
}

fn gcd(a: u64, b: u64) -> u64 {
    if b == 0 { a } else { gcd(b, a % b) }
}

/// A fixed permutation of `0..n`: `i -> (i * mul + add) mod n`, so that a workload's hot
/// ranks are scattered over its pages.
#[derive(Clone, Debug)]
struct Scatter {
    n: u64,
    mul: u64,
    add: u64,
    /// `floor((2^64 - 1) / n)`, for the remainder by multiplication (Barrett reduction).
    inv: u64,
}

impl Scatter {
    fn new(n: u64) -> Scatter {
        // Near the golden ratio of n, coprime with it.
        let mut mul = (n / 1_000 * 618 + n % 1_000 * 618 / 1_000).max(1);
        while gcd(mul, n) != 1 {
            mul += 1;
        }
        Scatter { n, mul, add: n / 3, inv: u64::MAX / n }
    }

    /// `i < n < 2^32` and `mul, add < n`, so the arithmetic fits in 64 bits (a 128-bit
    /// remainder would cost as much as the Zipf draw itself). The remainder is taken by
    /// Barrett reduction: the quotient estimate `x * inv / 2^64` is at most two below
    /// `x / n`, so at most two subtractions make it exact, without a 64-bit division.
    #[inline]
    fn map(&self, i: u64) -> u64 {
        let x = i * self.mul + self.add;
        #[allow(clippy::cast_possible_truncation)] // the high half of a 64 x 64 product
        let q = ((u128::from(x) * u128::from(self.inv)) >> 64) as u64;
        let mut r = x - q * self.n;
        while r >= self.n {
            r -= self.n;
        }
        r
    }
}

/// One workload's generator.
#[derive(Debug)]
enum Gen {
    Zipf { zipf: Zipf, scatter: Scatter },
    Hotset { n: u64, hot: u64, frac: f64, every: u64, count: u64, offset: u64 },
    Scan { n: u64, pos: u64 },
    Gups { n: u64 },
    Phases { phases: Vec<(u64, Source)>, interleave: bool, total: u64, cur: usize, left: u64 },
    File { path: std::path::PathBuf, reader: FileReader, block: Vec<u32>, pos: usize },
}

type FileReader = TraceReader<std::io::BufReader<std::fs::File>>;

/// A generator with its prefault pass.
#[derive(Debug)]
struct Source {
    kind: Gen,
    prefault_left: u64,
    prefault_pos: u64,
}

impl Source {
    fn new(w: &WorkloadSpec, page_size: u64) -> Result<Source, TraceError> {
        let n = footprint_pages(w, page_size);
        let (kind, prefault) = match w {
            WorkloadSpec::Zipf(z) => {
                (Gen::Zipf { zipf: Zipf::new(n, z.exponent), scatter: Scatter::new(n) }, z.prefault)
            }
            WorkloadSpec::HotsetShift(h) => (
                Gen::Hotset {
                    n,
                    hot: pages_of(h.hot_mib, page_size).min(n),
                    frac: h.hot_fraction.clamp(0.0, 1.0),
                    every: h.shift_every.max(1),
                    count: 0,
                    offset: 0,
                },
                h.prefault,
            ),
            WorkloadSpec::Scan(_) => (Gen::Scan { n, pos: 0 }, false),
            WorkloadSpec::Gups(g) => (Gen::Gups { n }, g.prefault),
            WorkloadSpec::Trace(t) => {
                let reader = tracefile::open(&t.path)
                    .map_err(|err| TraceError::File { path: t.path.clone(), err })?;
                (Gen::File { path: t.path.clone(), reader, block: Vec::new(), pos: 0 }, false)
            }
            WorkloadSpec::Phases(p) => {
                let phases: Vec<(u64, Source)> = p
                    .phase
                    .iter()
                    .map(|ph| Ok((ph.accesses.max(1), Source::new(&ph.workload, page_size)?)))
                    .collect::<Result<_, TraceError>>()?;
                let total = phases.iter().map(|p| p.0).sum();
                let left = phases[0].0;
                (Gen::Phases { phases, interleave: p.interleave, total, cur: 0, left }, false)
            }
        };
        Ok(Source { kind, prefault_left: if prefault { n } else { 0 }, prefault_pos: 0 })
    }

    /// The next page of a trace file, reopening it at its end.
    fn next_from_file(
        path: &std::path::Path,
        reader: &mut FileReader,
        block: &mut Vec<u32>,
        pos: &mut usize,
    ) -> Result<u64, TraceError> {
        if *pos == block.len() {
            let file = |err| TraceError::File { path: path.to_path_buf(), err };
            reader.read_block(block, 1 << 14).map_err(file)?;
            if block.is_empty() {
                *reader = tracefile::open(path).map_err(file)?;
                reader.read_block(block, 1 << 14).map_err(file)?;
                if block.is_empty() {
                    return Err(file(tracefile::TraceFileError::Short { got: 0, want: 1 }));
                }
            }
            *pos = 0;
        }
        *pos += 1;
        Ok(u64::from(block[*pos - 1]))
    }

    #[inline]
    fn next<R: Uniform>(&mut self, rng: &mut R) -> Result<u64, TraceError> {
        if self.prefault_left > 0 {
            self.prefault_left -= 1;
            self.prefault_pos += 1;
            return Ok(self.prefault_pos - 1);
        }
        Ok(match &mut self.kind {
            Gen::Zipf { zipf, scatter } => scatter.map(zipf.sample(rng) - 1),
            Gen::File { path, reader, block, pos } => {
                return Source::next_from_file(path, reader, block, pos);
            }
            Gen::Hotset { n, hot, frac, every, count, offset } => {
                *count += 1;
                if *count >= *every {
                    *count = 0;
                    *offset = (*offset + *hot) % *n;
                }
                if rng.next_f64() < *frac {
                    (*offset + rng.below(*hot)) % *n
                } else {
                    rng.below(*n)
                }
            }
            Gen::Scan { n, pos } => {
                let p = *pos;
                *pos = (*pos + 1) % *n;
                p
            }
            Gen::Gups { n } => rng.below(*n),
            Gen::Phases { phases, interleave, total, cur, left } => {
                if *interleave {
                    let mut x = rng.below(*total);
                    let mut i = 0;
                    while x >= phases[i].0 {
                        x -= phases[i].0;
                        i += 1;
                    }
                    phases[i].1.next(rng)?
                } else {
                    if *left == 0 {
                        *cur = (*cur + 1) % phases.len();
                        *left = phases[*cur].0;
                    }
                    *left -= 1;
                    phases[*cur].1.next(rng)?
                }
            }
        })
    }
}

/// Why a trace could not be drawn.
#[derive(Debug, thiserror::Error)]
pub enum TraceError {
    /// More pages than a `u32` page index can name.
    #[error("the processes' footprints add up to {0} pages, more than 2^32 - 1")]
    TooManyPages(u64),
    /// The drawn trace does not fit in memory.
    #[error(
        "{accesses} accesses need {mib} MiB held in memory, more than this machine can give; \
         use --stream (each policy draws the trace again) or fewer accesses"
    )]
    TooBig {
        /// Accesses asked for.
        accesses: u64,
        /// The trace's size, MiB.
        mib: u64,
    },
    /// A trace file could not be read.
    #[error("trace {path}: {err}")]
    File {
        /// The file.
        path: std::path::PathBuf,
        /// Why.
        err: tracefile::TraceFileError,
    },
}

/// The page ranges of the scenario's processes, in order.
pub fn ranges(s: &Scenario) -> Result<Vec<(u32, u32)>, TraceError> {
    let mut ranges = Vec::new();
    let mut first = 0u64;
    for p in &s.process {
        let n = footprint_pages(&p.workload, s.page_size);
        let end = first + n;
        if end >= u64::from(u32::MAX) {
            return Err(TraceError::TooManyPages(end));
        }
        #[allow(clippy::cast_possible_truncation)] // checked above
        ranges.push((first as u32, end as u32));
        first = end;
    }
    Ok(ranges)
}

/// Generates the scenario's accesses in order, handing each page to `sink`. [`draw`] stores
/// them; the benchmark's bare loop only touches a page array with them.
pub fn generate(s: &Scenario, mut sink: impl FnMut(u32)) -> Result<Vec<(u32, u32)>, TraceError> {
    let ranges = ranges(s)?;
    let mut sources: Vec<Source> = s
        .process
        .iter()
        .map(|p| Source::new(&p.workload, s.page_size))
        .collect::<Result<_, _>>()?;
    let shares: Vec<u64> = s.process.iter().map(|p| u64::from(p.share)).collect();
    let total_share: u64 = shares.iter().sum();
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(s.seed);
    if sources.len() == 1 {
        let base = u64::from(ranges[0].0);
        let src = &mut sources[0];
        for _ in 0..s.accesses {
            #[allow(clippy::cast_possible_truncation)] // below `end`, checked
            sink((base + src.next(&mut rng)?) as u32);
        }
    } else {
        for _ in 0..s.accesses {
            let mut x = rng.below(total_share);
            let mut i = 0;
            while x >= shares[i] {
                x -= shares[i];
                i += 1;
            }
            #[allow(clippy::cast_possible_truncation)]
            sink((u64::from(ranges[i].0) + sources[i].next(&mut rng)?) as u32);
        }
    }
    Ok(ranges)
}

/// Draws the scenario's trace. The buffer is reserved first: an access count the machine
/// cannot hold is an error pointing at streaming, not an abort in the allocator.
pub fn draw(s: &Scenario) -> Result<Trace, TraceError> {
    draw_within(s, None)
}

/// [`draw`], refusing a trace larger than `budget` bytes (4 bytes an access).
pub fn draw_within(s: &Scenario, budget: Option<u64>) -> Result<Trace, TraceError> {
    let bytes = s.accesses.saturating_mul(4);
    let too_big = || TraceError::TooBig { accesses: s.accesses, mib: bytes >> 20 };
    if budget.is_some_and(|b| bytes > b) {
        return Err(too_big());
    }
    let mut accesses = Vec::new();
    accesses
        .try_reserve_exact(usize::try_from(s.accesses).map_err(|_| too_big())?)
        .map_err(|_| too_big())?;
    let ranges = generate(s, |p| accesses.push(p))?;
    Ok(Trace { accesses, ranges, streamed: false })
}

/// A trace that is not held in memory: every replay generates the accesses again (reading
/// trace files block by block).
pub fn streamed(s: &Scenario) -> Result<Trace, TraceError> {
    Ok(Trace { accesses: Vec::new(), ranges: ranges(s)?, streamed: true })
}

#[cfg(test)]
#[allow(clippy::cast_possible_truncation, clippy::cast_precision_loss, clippy::cast_lossless)]
mod tests {
    use super::*;

    /// Barrett reduction against `%` where the products are largest: footprints up to the
    /// largest page index, powers of two (where `inv` is one below `2^64 / n`), the last
    /// indices.
    #[test]
    fn the_scatter_remainder_is_exact() {
        for n in [3u64, 1 << 20, 786_432, (1 << 32) - 1, (1 << 31) + 1, 4_000_000_007] {
            let s = Scatter::new(n);
            let step = (n / 4099).max(1);
            for i in (0..n).step_by(step as usize).chain(n.saturating_sub(64)..n) {
                assert_eq!(s.map(i), (i * s.mul + s.add) % n, "n={n} i={i}");
            }
        }
    }

    #[test]
    fn scatter_is_a_permutation() {
        for n in [1u64, 2, 10, 97, 1000, 4096] {
            let s = Scatter::new(n);
            let mut seen = vec![false; n as usize];
            for i in 0..n {
                let j = s.map(i) as usize;
                assert_eq!(j as u64, (i * s.mul + s.add) % n, "the remainder by multiplication");
                assert!(!seen[j]);
                seen[j] = true;
            }
        }
    }
}
