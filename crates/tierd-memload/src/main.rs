//! tierd-memload: the workload that tierd's real-kernel test bed runs in the guest.
//!
//! It allocates anonymous memory (optionally bound to nodes with `mbind`), fills every page
//! with verifiable content, keeps touching a hot fraction at a given rate, and reports where
//! its pages are (a `move_pages` query), how many fail their check, its access rate, and the
//! kernel's reclaim and migration counters over its run. `migrate` moves its own pages along
//! a list of nodes with tierd's `move_pages` wrapper and checks every step.
//!
//! Every report is one line starting with `memload: ` followed by `key=value` pairs, so
//! scenario scripts can read it with `sed`. The exit status is 0 when every check held,
//! 1 when one failed, 2 on a usage or setup error.

mod region;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::ops::Range;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use clap::{Args, Parser, Subcommand};
use tierd_core::{NodeId, NodeMask};
use tierd_linux::mover::{Mover, MoverLimits, SysMover};
use tierd_linux::sys::{self, MoveScope, PageError, PageStatus, Target};

use crate::region::Region;

/// Allocate, fill, touch and migrate anonymous memory; report its NUMA placement.
///
/// Examples:
///
///   tierd-memload run --size-mib 600 --bind 0 --hot-pct 10 --rate 20000 --duration-s 30
///
///   tierd-memload migrate --size-mib 64 --bind 0 --path 1,2,0
///
/// Send SIGUSR1 to a running `run` for a report at once.
#[derive(Parser, Debug)]
#[command(version, verbatim_doc_comment)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Fill the buffer, touch its hot part for a while, report placement, checksums, rate.
    Run(RunArgs),
    /// Fill the buffer, then move all its pages to each node of --path in turn, checking
    /// per-page statuses, placement (by query) and content after every step.
    Migrate(MigrateArgs),
}

#[derive(Args, Debug)]
struct Common {
    /// Size of the buffer in MiB.
    #[arg(long)]
    size_mib: usize,
    /// Bind the buffer to these nodes (nodelist, e.g. `0` or `1-2`) before the first touch.
    #[arg(long)]
    bind: Option<NodeMask>,
    /// Pages per move_pages call (query and move).
    #[arg(long, default_value_t = 4096)]
    batch: usize,
    /// Seed of the page content pattern.
    #[arg(long, default_value_t = 0x7469_6572_6400)]
    seed: u64,
    /// Fill at most this many MiB per second (0: as fast as possible), the way a real
    /// program grows its heap; `run` also touches its hot part between chunks meanwhile.
    #[arg(long, default_value_t = 0)]
    fill_mib_per_s: u64,
}

#[derive(Args, Debug)]
struct RunArgs {
    #[command(flatten)]
    common: Common,
    /// Percentage of the pages (the first ones) that are hot and touched continuously.
    #[arg(long, default_value_t = 0)]
    hot_pct: u32,
    /// Hot-page touches per second; 0 means as fast as possible.
    #[arg(long, default_value_t = 0)]
    rate: u64,
    /// How long to keep touching the hot part, in seconds.
    #[arg(long, default_value_t = 0)]
    duration_s: u64,
    /// Print a placement report every this many seconds while touching (0: only at the end).
    /// With --hot-after-s, these periodic reports cover the hot part only.
    #[arg(long, default_value_t = 0)]
    report_every_s: u64,
    /// After touching for this many seconds, move the hot part (0: never): from then on the
    /// pages at --hot-offset-pct are hot and the first ones turn cold. Every report then
    /// also watches where the pages of both hot parts are, and the end reports how often a
    /// watched page was seen on another node than at the previous report, and the shortest
    /// time between two such changes of the same page (`memload: moves ...`).
    #[arg(long, default_value_t = 0)]
    hot_after_s: u64,
    /// Where the hot part starts after --hot-after-s, percent of the buffer.
    #[arg(long, default_value_t = 0)]
    hot_offset_pct: u32,
    /// Instead of --hot-offset-pct: after --hot-after-s, the hot part is the run of pages
    /// (as long as the first one) with the most pages on this node at that moment (for
    /// example the pages tierd demoted).
    #[arg(long)]
    hot_to_node: Option<NodeId>,
    /// After touching, wait until no page of the buffer is on this node (polling every
    /// 250 ms, at most --settle-max-s), then report: how long pages put there by the
    /// kernel's demotion take to move on (`memload: settle ...`).
    #[arg(long)]
    settle_off_node: Option<NodeId>,
    /// The longest wait of --settle-off-node, seconds.
    #[arg(long, default_value_t = 30)]
    settle_max_s: u64,
}

#[derive(Args, Debug)]
struct MigrateArgs {
    #[command(flatten)]
    common: Common,
    /// The nodes to move every page to, in order (comma-separated node ids).
    #[arg(long, value_delimiter = ',', required = true)]
    path: Vec<NodeId>,
    /// Fail when any page reports a status other than its target, even -EBUSY for a page
    /// that did move (use with transparent huge pages off).
    #[arg(long)]
    strict: bool,
    /// Move through tierd's mover (time-bounded batches, per-page status handling, placement
    /// verified by query) instead of a raw move_pages loop, to compare the two.
    #[arg(long)]
    mover: bool,
    /// With --mover: the longest one move_pages call may take, in ms, before the batch halves.
    #[arg(long, default_value_t = 20)]
    max_call_ms: u64,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.cmd {
        Cmd::Run(a) => run(&a),
        Cmd::Migrate(a) => migrate(&a),
    };
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => {
            println!("memload: result=FAIL");
            ExitCode::from(1)
        }
        Err(e) => {
            eprintln!("tierd-memload: {e}");
            ExitCode::from(2)
        }
    }
}

fn setup(c: &Common, hot_pct: u32) -> Result<Region, String> {
    if c.batch == 0 {
        return Err("--batch must be at least 1".into());
    }
    let pages = c.size_mib * (1 << 20) / sys::page_size();
    let mut r = Region::new(pages, c.bind, c.seed).map_err(|e| format!("allocate: {e}"))?;
    let t = Instant::now();
    if c.fill_mib_per_s == 0 {
        r.fill();
    } else {
        let hot = pages * usize::try_from(hot_pct.min(100)).unwrap_or(100) / 100;
        let chunk = (1 << 20) / sys::page_size();
        let per_chunk = Duration::from_secs_f64(
            1.0 / f64::from(u32::try_from(c.fill_mib_per_s).unwrap_or(u32::MAX)),
        );
        let mut p = 0;
        while p < pages {
            let started = Instant::now();
            let end = (p + chunk).min(pages);
            r.fill_range(p..end);
            p = end;
            // The hot part stays hot while the rest grows.
            for h in 0..hot.min(p) {
                r.touch(h, 0);
            }
            if let Some(rest) = per_chunk.checked_sub(started.elapsed()) {
                std::thread::sleep(rest);
            }
        }
    }
    println!(
        "memload: filled pages={pages} seconds={:.2} pid={}",
        t.elapsed().as_secs_f64(),
        std::process::id()
    );
    Ok(r)
}

/// Where the pages are: count per node, and per error for pages with none.
#[derive(Default)]
struct Placement {
    nodes: BTreeMap<NodeId, usize>,
    errors: BTreeMap<&'static str, usize>,
}

impl Placement {
    /// The placement of all pages.
    fn of(r: &Region, batch: usize) -> Result<Placement, String> {
        Placement::of_range(r, 0..r.pages(), batch)
    }

    /// The placement of pages `range`.
    fn of_range(r: &Region, range: Range<usize>, batch: usize) -> Result<Placement, String> {
        let mut p = Placement::default();
        query_range(r, range, batch, |s| match s.get() {
            Ok(n) => *p.nodes.entry(n).or_default() += 1,
            Err(e) => *p.errors.entry(e.name()).or_default() += 1,
        })?;
        Ok(p)
    }

    fn on(&self, n: NodeId) -> usize {
        self.nodes.get(&n).copied().unwrap_or(0)
    }

    fn line(&self, label: &str) -> String {
        self.line_of("placement", label)
    }

    fn line_of(&self, what: &str, label: &str) -> String {
        let mut s = format!("memload: {what} at={label}");
        for (n, c) in &self.nodes {
            let _ = write!(s, " node{n}={c}");
        }
        let _ = write!(s, " absent={}", self.errors.get("ENOENT").copied().unwrap_or(0));
        for (e, c) in &self.errors {
            if *e != "ENOENT" {
                let _ = write!(s, " {e}={c}");
            }
        }
        s
    }
}

/// The kernel counters a run is judged by.
const VMSTAT_KEYS: &[&str] = &[
    "pswpin",
    "pswpout",
    "pgdemote_kswapd",
    "pgdemote_direct",
    "pgdemote_khugepaged",
    "pgpromote_success",
    "pgmigrate_success",
    "pgmigrate_fail",
];

fn vmstat() -> BTreeMap<String, u64> {
    let text = std::fs::read_to_string("/proc/vmstat").unwrap_or_default();
    text.lines()
        .filter_map(|l| {
            let (k, v) = l.split_once(' ')?;
            Some((k.to_string(), v.trim().parse().ok()?))
        })
        .collect()
}

fn vmstat_delta_line(before: &BTreeMap<String, u64>, after: &BTreeMap<String, u64>) -> String {
    let mut s = String::from("memload: vmstat-delta");
    for k in VMSTAT_KEYS {
        if let (Some(a), Some(b)) = (after.get(*k), before.get(*k)) {
            let _ = write!(s, " {k}={}", a.saturating_sub(*b));
        }
    }
    s
}

/// The pages of a hot part of `hot` pages starting at `offset_pct` percent of `pages`,
/// moved back so that it fits.
fn hot_range(pages: usize, hot: usize, offset_pct: u32) -> Range<usize> {
    let hot = hot.min(pages);
    let start = usize::try_from(
        u64::try_from(pages).unwrap_or(u64::MAX) * u64::from(offset_pct.min(100)) / 100,
    )
    .unwrap_or(pages)
    .min(pages - hot);
    start..start + hot
}

/// The start of the run of `len` consecutive entries of `on` with the most `true` ones
/// (the first such run on a tie).
fn best_window(on: &[bool], len: usize) -> usize {
    let len = len.min(on.len());
    let mut count = on[..len].iter().filter(|b| **b).count();
    let (mut best, mut best_count) = (0, count);
    for start in 1..=on.len() - len {
        count = count + usize::from(on[start + len - 1]) - usize::from(on[start - 1]);
        if count > best_count {
            (best, best_count) = (start, count);
        }
    }
    best
}

/// Which pages are on `node`.
fn pages_on(r: &Region, node: NodeId, batch: usize) -> Result<Vec<bool>, String> {
    let mut on = Vec::with_capacity(r.pages());
    query_range(r, 0..r.pages(), batch, |s| on.push(s.get().ok() == Some(node)))?;
    Ok(on)
}

/// Where watched pages were at each report, and how often and how soon after each other
/// they changed node.
#[derive(Debug, Default)]
struct MoveWatch {
    /// Per watched page: the node it was last seen on, and when it was last seen changing.
    last: Vec<(Option<NodeId>, Option<Duration>)>,
    /// Changes seen (a page on another node than at the previous report).
    changes: u64,
    /// Changes of a page that had changed before.
    changed_again: u64,
    /// The shortest time between two changes of the same page.
    min_gap: Option<Duration>,
}

impl MoveWatch {
    fn new(pages: usize) -> MoveWatch {
        MoveWatch { last: vec![(None, None); pages], ..MoveWatch::default() }
    }

    /// Watches `pages` more, numbered after the others.
    fn grow(&mut self, pages: usize) {
        self.last.resize(self.last.len() + pages, (None, None));
    }

    /// Page `i` was seen on `node` (None: absent) at `now`.
    fn observe(&mut self, i: usize, node: Option<NodeId>, now: Duration) {
        let (seen, changed) = &mut self.last[i];
        if let (Some(before), Some(n)) = (*seen, node)
            && before != n
        {
            self.changes += 1;
            if let Some(prev) = *changed {
                self.changed_again += 1;
                let gap = now.saturating_sub(prev);
                self.min_gap = Some(self.min_gap.map_or(gap, |g| g.min(gap)));
            }
            *changed = Some(now);
        }
        if node.is_some() {
            *seen = node;
        }
    }

    fn line(&self) -> String {
        format!(
            "memload: moves watched={} changes={} changed_again={} min_gap_ms={}",
            self.last.len(),
            self.changes,
            self.changed_again,
            self.min_gap.map_or(-1, |g| i64::try_from(g.as_millis()).unwrap_or(i64::MAX))
        )
    }
}

/// Queries where pages `ranges` are and tells `watch`, numbering them in order.
fn watch_ranges(
    r: &Region,
    ranges: &[Range<usize>],
    batch: usize,
    watch: &mut MoveWatch,
    now: Duration,
) -> Result<(), String> {
    let mut i = 0;
    for range in ranges {
        query_range(r, range.clone(), batch, |s| {
            watch.observe(i, s.get().ok(), now);
            i += 1;
        })?;
    }
    Ok(())
}

/// Where each page of `range` is, in order, `batch` pages a query: `each` sees its status.
fn query_range(
    r: &Region,
    range: Range<usize>,
    batch: usize,
    mut each: impl FnMut(PageStatus),
) -> Result<(), String> {
    let mut from = range.start;
    while from < range.end {
        let to = (from + batch).min(range.end);
        let addrs = r.addrs(from..to);
        let mut st = vec![PageStatus::UNSET; addrs.len()];
        sys::query_pages(Target::Current, &addrs, &mut st).map_err(|e| e.to_string())?;
        st.into_iter().for_each(&mut each);
        from = to;
    }
    Ok(())
}

#[allow(clippy::too_many_lines)] // one linear run: fill, touch (and switch), report
fn run(a: &RunArgs) -> Result<bool, String> {
    let report = Arc::new(AtomicBool::new(false));
    signal_hook::flag::register(signal_hook::consts::SIGUSR1, Arc::clone(&report))
        .map_err(|e| format!("SIGUSR1 handler: {e}"))?;
    let before = vmstat();
    let mut r = setup(&a.common, a.hot_pct)?;
    let batch = a.common.batch;
    let hot = usize::try_from(
        u64::try_from(r.pages()).unwrap_or(u64::MAX) * u64::from(a.hot_pct.min(100)) / 100,
    )
    .unwrap_or(r.pages());
    // The hot part: the first `hot` pages, after --hot-after-s those at --hot-offset-pct
    // (or the run with the most pages on --hot-to-node).
    let mut hot_part = 0..hot;
    let switch = (a.hot_after_s > 0 && hot > 0).then(|| Duration::from_secs(a.hot_after_s));
    let mut switched = false;
    // The first hot part, and the second one once there is one (overlap is watched twice,
    // harmlessly).
    let mut watched: Vec<Range<usize>> = Vec::new();
    if switch.is_some() {
        watched.push(0..hot);
    }
    let mut watch = MoveWatch::new(watched.iter().map(ExactSizeIterator::len).sum());
    // The whole buffer (unless `hot_only`), and its hot part on a line of its own.
    let report_now = |r: &Region,
                      label: &str,
                      hot_part: &Range<usize>,
                      hot_only: bool,
                      watched: &[Range<usize>],
                      watch: &mut MoveWatch,
                      now: Duration|
     -> Result<(), String> {
        if !hot_only {
            println!("{}", Placement::of(r, batch)?.line(label));
        }
        if hot > 0 {
            println!(
                "{}",
                Placement::of_range(r, hot_part.clone(), batch)?.line_of("placement-hot", label)
            );
        }
        watch_ranges(r, watched, batch, watch, now)
    };
    report_now(&r, "filled", &hot_part, false, &watched, &mut watch, Duration::ZERO)?;
    let t = Instant::now();
    let end = Duration::from_secs(a.duration_s);
    let mut touches: u64 = 0;
    let mut next_report = Duration::from_secs(a.report_every_s);
    let tick = Duration::from_millis(10);
    let per_tick = if a.rate == 0 { 4096 } else { (a.rate / 100).max(1) };
    let mut i = 0usize;
    while hot > 0 && t.elapsed() < end {
        let tick_start = Instant::now();
        if let Some(at) = switch
            && !switched
            && t.elapsed() >= at
        {
            switched = true;
            hot_part = match a.hot_to_node {
                Some(node) => {
                    let start = best_window(&pages_on(&r, node, batch)?, hot);
                    start..start + hot
                }
                None => hot_range(r.pages(), hot, a.hot_offset_pct),
            };
            watched.push(hot_part.clone());
            watch.grow(hot);
            let now = t.elapsed();
            println!(
                "memload: hot-switch at={:.1}s pages={}..{}",
                now.as_secs_f64(),
                hot_part.start,
                hot_part.end
            );
            report_now(&r, "switch", &hot_part, true, &watched, &mut watch, now)?;
        }
        for _ in 0..per_tick {
            r.touch(hot_part.start + i % hot, i / hot);
            i = i.wrapping_add(1);
        }
        touches += per_tick;
        let due = a.report_every_s > 0 && t.elapsed() >= next_report;
        if due {
            next_report += Duration::from_secs(a.report_every_s);
        }
        if report.swap(false, Ordering::Relaxed) || due {
            let now = t.elapsed();
            let label = format!("{:.1}s", now.as_secs_f64());
            report_now(&r, &label, &hot_part, switch.is_some(), &watched, &mut watch, now)?;
        }
        if a.rate > 0
            && let Some(rest) = tick.checked_sub(tick_start.elapsed())
        {
            std::thread::sleep(rest);
        }
    }
    let secs = t.elapsed().as_secs_f64();
    #[allow(clippy::cast_precision_loss)] // a rate for people to read
    let rate = if secs > 0.0 { touches as f64 / secs } else { 0.0 };
    println!(
        "memload: access hot_pages={hot} touches={touches} seconds={secs:.2} rate_per_s={rate:.0}"
    );
    if let Some(node) = a.settle_off_node {
        let settle = Instant::now();
        let mut first = None;
        let left = loop {
            let left = Placement::of(&r, batch)?.on(node);
            first.get_or_insert(left);
            if left == 0 || settle.elapsed() >= Duration::from_secs(a.settle_max_s) {
                break left;
            }
            std::thread::sleep(Duration::from_millis(250));
        };
        println!(
            "memload: settle off-node={node} at_start={} seconds={:.1} left={left}",
            first.unwrap_or(0),
            settle.elapsed().as_secs_f64()
        );
    }
    report_now(&r, "end", &hot_part, false, &watched, &mut watch, t.elapsed())?;
    if switch.is_some() {
        println!("{}", watch.line());
    }
    // Before the check: reading swapped-out pages swaps them in.
    println!("{}", vmstat_delta_line(&before, &vmstat()));
    let bad = r.verify();
    println!("memload: checksum pages={} bad={bad}", r.pages());
    Ok(bad == 0)
}

fn migrate(a: &MigrateArgs) -> Result<bool, String> {
    let r = setup(&a.common, 0)?;
    let batch = a.common.batch;
    let start = Placement::of(&r, batch)?;
    println!("{}", start.line("filled"));
    let mut ok = true;
    if let Some(mask) = a.common.bind {
        let on_bound: usize = mask.iter().map(|n| start.on(n)).sum();
        if on_bound != r.pages() {
            println!(
                "memload: error=bind-ignored bound={mask} on_bound={on_bound} pages={}",
                r.pages()
            );
            ok = false;
        }
    }
    for &to in &a.path {
        let t = Instant::now();
        let mut moved = 0usize;
        let mut busy = 0usize;
        let mut failed: BTreeMap<String, usize> = BTreeMap::new();
        let mut not_migrated = 0usize;
        let mut from = 0;
        if a.mover {
            let limits = MoverLimits {
                pages_per_call: batch,
                max_call: Duration::from_millis(a.max_call_ms),
                bytes_per_sec: None,
                page_size: u64::try_from(sys::page_size()).unwrap_or(4096),
            };
            let mut m = Mover::new(SysMover::new(false), limits);
            let out = m.move_to(std::process::id(), &r.addrs(0..r.pages()), to);
            moved = usize::try_from(out.moved_total()).unwrap_or(usize::MAX);
            busy = out.busy.len();
            not_migrated = r.pages() - moved;
            for (e, c) in &out.failures {
                // EBUSY pages are counted as busy, not as failures.
                if *e != 16 {
                    *failed.entry(PageError::from_errno(*e).name().to_string()).or_default() +=
                        usize::try_from(*c).unwrap_or(usize::MAX);
                }
            }
            if let Some(stop) = &out.stopped {
                *failed.entry(format!("stopped-{stop:?}")).or_default() += 1;
            }
            println!("memload: mover calls={} final_batch={}", out.calls, m.batch());
            from = r.pages();
        }
        while from < r.pages() {
            let end = (from + batch).min(r.pages());
            let addrs = r.addrs(from..end);
            let nodes = vec![to; addrs.len()];
            let mut st = vec![PageStatus::UNSET; addrs.len()];
            not_migrated +=
                sys::move_pages(Target::Current, &addrs, &nodes, &mut st, MoveScope::Exclusive)
                    .map_err(|e| e.to_string())?;
            for s in st {
                match s.get() {
                    Ok(n) if n == to => moved += 1,
                    Ok(n) => *failed.entry(format!("on-node{n}")).or_default() += 1,
                    Err(PageError::Busy) => busy += 1,
                    Err(e) => *failed.entry(e.to_string()).or_default() += 1,
                }
            }
            from = end;
        }
        let secs = t.elapsed().as_secs_f64();
        #[allow(clippy::cast_precision_loss)] // a rate for people to read
        let rate = r.pages() as f64 / secs.max(1e-9);
        let mut line = format!(
            "memload: migrate to={to} via={} pages={} moved={moved} busy={busy} not_migrated={not_migrated} seconds={secs:.2} pages_per_s={rate:.0}",
            if a.mover { "mover" } else { "raw" },
            r.pages()
        );
        for (e, c) in &failed {
            let _ = write!(line, " {e}={c}");
        }
        println!("{line}");
        let placed = Placement::of(&r, batch)?;
        println!("{}", placed.line(&format!("after-move-to-{to}")));
        let bad = r.verify();
        println!("memload: checksum after=move-to-{to} pages={} bad={bad}", r.pages());
        let on_target = placed.on(to);
        if on_target != r.pages() || bad != 0 || !failed.is_empty() || (a.strict && busy > 0) {
            println!(
                "memload: error=step-failed to={to} on_target={on_target} pages={} bad={bad} busy={busy}",
                r.pages()
            );
            ok = false;
        }
    }
    Ok(ok)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[allow(clippy::unnecessary_wraps)] // reads as a placement
    fn id(n: usize) -> Option<NodeId> {
        Some(NodeId::new(n).unwrap())
    }

    #[test]
    fn the_later_hot_part_starts_at_its_offset_and_fits() {
        assert_eq!(hot_range(1000, 100, 50), 500..600);
        assert_eq!(hot_range(1000, 100, 0), 0..100);
        assert_eq!(hot_range(1000, 100, 95), 900..1000);
        assert_eq!(hot_range(1000, 100, 250), 900..1000);
        assert_eq!(hot_range(10, 20, 50), 0..10);
    }

    #[test]
    fn the_best_window_has_the_most_pages_on_the_node() {
        let on = |s: &str| s.chars().map(|c| c == '1').collect::<Vec<_>>();
        assert_eq!(best_window(&on("0011011100"), 3), 5);
        assert_eq!(best_window(&on("1100000011"), 2), 0);
        assert_eq!(best_window(&on("0000000011"), 2), 8);
        assert_eq!(best_window(&on("000"), 5), 0);
    }

    #[test]
    fn the_watch_counts_changes_and_the_shortest_gap_between_two_of_one_page() {
        let s = Duration::from_secs;
        let mut w = MoveWatch::new(2);
        w.grow(1);
        for i in 0..3 {
            w.observe(i, id(0), s(0));
        }
        // Page 0 moves down at 2 s and back at 9 s; page 1 moves once; page 2 is absent for
        // a while (not a move) and comes back where it was.
        w.observe(0, id(1), s(2));
        w.observe(1, id(2), s(2));
        w.observe(2, None, s(2));
        w.observe(2, id(0), s(5));
        w.observe(0, id(1), s(5));
        w.observe(0, id(0), s(9));
        assert_eq!(w.changes, 3);
        assert_eq!(w.changed_again, 1);
        assert_eq!(w.min_gap, Some(s(7)));
        assert_eq!(w.line(), "memload: moves watched=3 changes=3 changed_again=1 min_gap_ms=7000");
        assert_eq!(
            MoveWatch::new(2).line(),
            "memload: moves watched=2 changes=0 changed_again=0 min_gap_ms=-1"
        );
    }
}
