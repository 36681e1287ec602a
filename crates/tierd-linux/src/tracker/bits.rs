//! What the page-bit trackers share: soft-dirty and idle page tracking both answer one bit per
//! page per window, so both keep the processes in scope, the window's start and every page's
//! age the same way ([`BitTracker`]); each says only how a process's window starts and how its
//! bits are read ([`PageBits`]).

use std::fmt;
use std::time::Instant;

pub use super::ages::Ages;
use super::{Error, Pid, Sample, Tracker, unique};

/// What differs between the page-bit trackers.
pub trait PageBits: Send + fmt::Debug {
    /// The config's name of the tracker (`idle`, `softdirty`).
    const NAME: &'static str;

    /// Starts the first window of `pid`, new to the scope (its pages' bits reset). A process
    /// that is gone is not an error: the next sample drops it.
    fn start(&mut self, pid: Pid) -> Result<(), Error>;

    /// Ends the window of `pids`: appends their pages to `s` (regions with accesses 0 or 1
    /// and the age `ages` keeps, absent pages counted, processes gone in `s.dropped` with no
    /// regions), and starts their next window.
    fn read(&mut self, pids: &[Pid], ages: &mut Ages, s: &mut Sample) -> Result<(), Error>;
}

/// A tracker over page bits `B`: the scope, the window and the ages.
#[derive(Debug)]
pub struct BitTracker<B> {
    pub(super) bits: B,
    why: String,
    pids: Vec<Pid>,
    ages: Ages,
    window_start: Option<Instant>,
}

impl<B> BitTracker<B> {
    /// A tracker with no process in scope yet; `why` is its [`Tracker::why`].
    pub(super) fn new(bits: B, why: String) -> BitTracker<B> {
        BitTracker { bits, why, pids: Vec::new(), ages: Ages::default(), window_start: None }
    }
}

impl<B: PageBits> Tracker for BitTracker<B> {
    fn name(&self) -> &'static str {
        B::NAME
    }

    fn why(&self) -> &str {
        &self.why
    }

    fn set_pids(&mut self, pids: &[Pid]) -> Result<(), Error> {
        let pids = unique(pids);
        for &p in &pids {
            if self.pids.binary_search(&p).is_err() {
                self.bits.start(p)?;
            }
        }
        self.pids = pids;
        self.window_start.get_or_insert_with(Instant::now);
        Ok(())
    }

    fn sample(&mut self) -> Result<Sample, Error> {
        let t0 = Instant::now();
        let mut s = Sample { max_accesses: 1, ..Sample::default() };
        s.window = self.window_start.map(|w| t0 - w).unwrap_or_default();
        self.bits.read(&self.pids, &mut self.ages, &mut s)?;
        self.pids.retain(|p| !s.dropped.contains(p));
        self.ages.finish();
        self.window_start = Some(Instant::now());
        s.covered_bytes = s.regions.iter().map(super::Region::len).sum();
        s.took = t0.elapsed();
        Ok(s)
    }

    fn stop(&mut self) -> Result<(), Error> {
        // Nothing was created in the kernel; bits left behind are harmless (the kernel
        // resets them on the next access or write).
        self.pids.clear();
        Ok(())
    }
}
