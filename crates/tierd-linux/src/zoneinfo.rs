//! The kernel's zone watermarks: `/proc/zoneinfo`.
//!
//! The policy keeps headroom above each node's `high` watermark and fills a demotion target
//! only while it stays above its `low` one, so it needs the watermarks the kernel's page
//! allocator really uses. They exist per zone, not per node; the kernel's `zoneinfo_show()`
//! (`mm/vmstat.c`) prints one block per zone, unpopulated zones included:
//!
//! ```text
//! Node 0, zone   Normal
//!   pages free     81543
//!         boost    0
//!         min      5738
//!         low      7172
//!         high     8606
//!         promo    10040
//!         spanned  262144
//!         present  262144
//!         managed  250542
//!         cma      0
//!         protection: (0, 0, 0, 0, 0)
//!       nr_free_pages 81543
//!   pagesets
//!     cpu: 0
//!               count: 12
//!               high:  378
//! ```
//!
//! A node's figures are the sums over its zones, which is what `pgdat_balanced()` and
//! kswapd effectively aim for when they balance a node (an allocation may still be refused
//! by one zone of a node whose sum looks fine: the policy's headroom absorbs that).
//! Unpopulated zones print zeros and add nothing. Only the lines of the block's header part
//! are read (up to `pagesets`): the per-cpu `high:` lines further down are something else.

use std::collections::BTreeMap;
use std::path::PathBuf;

use tierd_core::NodeId;

use crate::read::{self, Bad};
use crate::{Error, SysRoot};

/// A node's zone figures, in pages, summed over the node's zones.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Watermarks {
    /// The `min` watermark: below it, allocations reclaim directly.
    pub min: u64,
    /// The `low` watermark: below it, the allocator wakes kswapd.
    pub low: u64,
    /// The `high` watermark: kswapd stops once free memory is back above it.
    pub high: u64,
    /// Pages the buddy allocator manages.
    pub managed: u64,
    /// Free pages (`pages free`).
    pub free: u64,
}

const HINT: &str = "procfs is not mounted at the root tierd was given, or this kernel has no \
                    /proc/zoneinfo (CONFIG_PROC_FS); tierd needs the zone watermarks to \
                    keep headroom";

/// `proc/zoneinfo` under `root`.
pub fn zoneinfo_path(root: &SysRoot) -> PathBuf {
    root.proc.join("zoneinfo")
}

/// Reads `proc/zoneinfo`: each node's figures summed over its zones. A missing file is an
/// [`Error::Missing`] (every kernel with procfs has it); a block tierd cannot read is an
/// [`Error::Malformed`] quoting the line.
pub fn read_zoneinfo(root: &SysRoot) -> Result<BTreeMap<NodeId, Watermarks>, Error> {
    let path = zoneinfo_path(root);
    let text = read::required(&path, HINT)?;
    parse_zoneinfo(&text).map_err(|bad| bad.at(&path))
}

/// The fields one zone block must have, in the order the kernel prints them.
#[derive(Default)]
struct Zone {
    header: String,
    free: Option<u64>,
    min: Option<u64>,
    low: Option<u64>,
    high: Option<u64>,
    managed: Option<u64>,
}

impl Zone {
    fn add_to(&self, w: &mut Watermarks) -> Result<(), Bad> {
        let need = |v: Option<u64>, name: &str| {
            v.ok_or_else(|| Bad::new(&self.header, format!("the zone has no `{name}` line")))
        };
        let sum = |a: u64, b: u64| {
            a.checked_add(b).ok_or_else(|| Bad::new(&self.header, "sum overflows 64 bits"))
        };
        w.free = sum(w.free, need(self.free, "pages free")?)?;
        w.min = sum(w.min, need(self.min, "min")?)?;
        w.low = sum(w.low, need(self.low, "low")?)?;
        w.high = sum(w.high, need(self.high, "high")?)?;
        w.managed = sum(w.managed, need(self.managed, "managed")?)?;
        Ok(())
    }
}

/// Parses the text of `/proc/zoneinfo`. See the module documentation for the format.
pub(crate) fn parse_zoneinfo(text: &str) -> Result<BTreeMap<NodeId, Watermarks>, Bad> {
    let mut out: BTreeMap<NodeId, Watermarks> = BTreeMap::new();
    // The zone being read, and whether its header part (before `pagesets`) is over.
    let mut current: Option<(NodeId, Zone, bool)> = None;
    for line in text.lines() {
        if line.trim().is_empty() {
            continue;
        }
        if let Some(rest) = line.strip_prefix("Node ") {
            if let Some((node, zone, _)) = current.take() {
                zone.add_to(out.entry(node).or_default())?;
            }
            let (n, name) = rest
                .split_once(", zone ")
                .ok_or_else(|| Bad::new(line, "expected `Node N, zone NAME`"))?;
            let node = read::parse_u64(n)
                .ok()
                .and_then(|n| usize::try_from(n).ok())
                .and_then(NodeId::new)
                .ok_or_else(|| Bad::new(line, format!("`{n}` is not a node id")))?;
            if name.trim().is_empty() {
                return Err(Bad::new(line, "the zone has no name"));
            }
            current = Some((node, Zone { header: line.to_string(), ..Zone::default() }, false));
            continue;
        }
        let Some((_, zone, done)) = current.as_mut() else {
            return Err(Bad::new(line, "expected a `Node N, zone NAME` line first"));
        };
        if *done {
            continue;
        }
        let words: Vec<&str> = line.split_ascii_whitespace().collect();
        let number = |w: &str| {
            read::parse_u64(w).map_err(|b| Bad::new(line, format!("`{}`: {}", b.text, b.reason)))
        };
        match words.as_slice() {
            ["pagesets"] => *done = true,
            ["pages", "free", v] => zone.free = Some(number(v)?),
            ["min", v] => zone.min = Some(number(v)?),
            ["low", v] => zone.low = Some(number(v)?),
            ["high", v] => zone.high = Some(number(v)?),
            ["managed", v] => zone.managed = Some(number(v)?),
            _ => {}
        }
    }
    if let Some((node, zone, _)) = current {
        zone.add_to(out.entry(node).or_default())?;
    }
    Ok(out)
}

/// `proc/zoneinfo` text in the kernel's layout for `nodes`: per node a populated `Normal`
/// zone with these figures and an unpopulated `Movable` zone, for fixture trees (the
/// [`fixture`](crate::fixture) builders do not write zoneinfo; write this with
/// `Fixture::write("proc/zoneinfo", ..)`).
#[cfg(any(test, feature = "fixture"))]
pub fn zoneinfo_text(nodes: &BTreeMap<NodeId, Watermarks>) -> String {
    use std::fmt::Write as _;
    let mut s = String::new();
    let block = |s: &mut String, node: NodeId, zone: &str, w: &Watermarks, populated: bool| {
        let _ = write!(
            s,
            "Node {node}, zone {zone:>8}\n  pages free     {}\n        boost    0\n        \
             min      {}\n        low      {}\n        high     {}\n        promo    {}\n        \
             spanned  {}\n        present  {}\n        managed  {}\n        cma      0\n        \
             protection: (0, 0, 0, 0, 0)",
            w.free, w.min, w.low, w.high, w.high, w.managed, w.managed, w.managed
        );
        if populated {
            let _ = write!(
                s,
                "\n      nr_free_pages {}\n  pagesets\n    cpu: 0\n              count: 0\n              \
                 high:  0\n              batch: 1\n  vm stats threshold: 4\n  \
                 node_unreclaimable:  0\n  start_pfn:           0",
                w.free
            );
        }
        s.push('\n');
    };
    for (&node, w) in nodes {
        block(&mut s, node, "Normal", w, true);
        block(&mut s, node, "Movable", &Watermarks::default(), false);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(i: usize) -> NodeId {
        NodeId::new(i).unwrap()
    }

    /// An excerpt of a 6.12 guest's `/proc/zoneinfo` (the test bed, tests/vm/README.md): node 0
    /// with DMA, DMA32, an unpopulated Normal and Movable zone; node 1 with a Normal zone
    /// only populated. Per-node and per-zone counters are cut short; the `high:` lines of
    /// the per-cpu pagesets must not be read as the watermark.
    const REAL: &str = include_str!("testdata/zoneinfo.txt");

    #[test]
    fn sums_each_nodes_zones_and_skips_the_pagesets() {
        let z = parse_zoneinfo(REAL).unwrap();
        assert_eq!(z.len(), 2);
        assert_eq!(
            z[&n(0)],
            Watermarks {
                min: 21 + 2623,
                low: 26 + 3278,
                high: 31 + 3933,
                managed: 3840 + 114_106,
                free: 3840 + 105_034,
            }
        );
        assert_eq!(
            z[&n(1)],
            Watermarks { min: 2865, low: 3581, high: 4297, managed: 128_524, free: 127_612 }
        );
    }

    #[test]
    fn a_node_with_only_unpopulated_zones_is_listed_with_zeros() {
        let text = "Node 3, zone  Movable\n  pages free     0\n        min      0\n        \
                    low      0\n        high     0\n        managed  0\n";
        assert_eq!(parse_zoneinfo(text).unwrap()[&n(3)], Watermarks::default());
        assert!(parse_zoneinfo("").unwrap().is_empty());
    }

    #[test]
    fn rejects_what_it_cannot_read_quoting_the_line() {
        let cases = [
            ("  pages free 1\n", "  pages free 1", "`Node N, zone NAME` line first"),
            ("Node x, zone Normal\n", "Node x, zone Normal", "not a node id"),
            ("Node 0 zone Normal\n", "Node 0 zone Normal", "expected `Node N, zone NAME`"),
            ("Node 0, zone Normal\n        min      lots\n", "        min      lots", "`lots`"),
            ("Node 0, zone Normal\n  pages free     1\n", "Node 0, zone Normal", "no `min`"),
        ];
        for (text, line, want) in cases {
            let bad = parse_zoneinfo(text).unwrap_err();
            assert_eq!(bad.text, line, "{text:?}");
            assert!(bad.reason.contains(want), "{text:?}: {:?} lacks {want:?}", bad.reason);
        }
    }

    #[test]
    fn the_fixture_text_reads_back() {
        let nodes: BTreeMap<NodeId, Watermarks> = [
            (n(0), Watermarks { min: 1, low: 2, high: 3, managed: 100, free: 40 }),
            (n(2), Watermarks { min: 4, low: 5, high: 6, managed: 200, free: 150 }),
        ]
        .into_iter()
        .collect();
        assert_eq!(parse_zoneinfo(&zoneinfo_text(&nodes)).unwrap(), nodes);
    }

    #[test]
    fn a_missing_file_is_an_error_with_a_hint_and_a_bad_one_names_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let root = SysRoot::under(dir.path());
        let err = read_zoneinfo(&root).unwrap_err();
        assert!(matches!(err, Error::Missing { .. }), "{err:?}");
        assert_eq!(err.path(), zoneinfo_path(&root));
        assert!(err.to_string().contains("procfs"), "{err}");

        std::fs::create_dir_all(&root.proc).unwrap();
        std::fs::write(zoneinfo_path(&root), "Node 0, zone Normal\n        high     -1\n").unwrap();
        let err = read_zoneinfo(&root).unwrap_err();
        assert!(matches!(err, Error::Malformed { .. }), "{err:?}");
        assert!(err.to_string().contains("zoneinfo"), "{err}");

        std::fs::write(zoneinfo_path(&root), REAL).unwrap();
        assert_eq!(read_zoneinfo(&root).unwrap().len(), 2);
    }
}
