//! Per-node `meminfo`: `sys/devices/system/node/nodeN/meminfo`.
//!
//! The kernel's `node_read_meminfo()` prints one line per field, each prefixed with the node:
//!
//! ```text
//! Node 0 MemTotal:       16318132 kB
//! Node 0 MemFree:        10524280 kB
//! Node 0 HugePages_Total:     0
//! ```
//!
//! The `procfs` crate only parses `/proc/meminfo`, whose lines lack the `Node N ` prefix, so
//! this module has its own parser. Fields printed in `kB` are kept in bytes; the few printed
//! without a unit (`HugePages_*`) are counts and are kept apart so that nobody adds pages to
//! bytes.

use std::collections::BTreeMap;

use tierd_core::NodeId;

use crate::read::{self, Bad};
use crate::{Error, SysRoot};

/// One node's `meminfo`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NodeMeminfo {
    /// Fields printed in `kB`, converted to bytes, by field name (`MemTotal`, `MemFree`, ...).
    pub bytes: BTreeMap<String, u64>,
    /// Fields printed without a unit (`HugePages_Total`, `HugePages_Free`, `HugePages_Surp`),
    /// by field name.
    pub counts: BTreeMap<String, u64>,
}

impl NodeMeminfo {
    /// `MemTotal`, bytes.
    pub fn mem_total_bytes(&self) -> Option<u64> {
        self.bytes.get("MemTotal").copied()
    }

    /// `MemFree`, bytes.
    pub fn mem_free_bytes(&self) -> Option<u64> {
        self.bytes.get("MemFree").copied()
    }
}

/// Reads `nodeN/meminfo`; `None` when the file does not exist or vanished (the node is not
/// online).
pub fn read_node_meminfo(root: &SysRoot, node: NodeId) -> Result<Option<NodeMeminfo>, Error> {
    let path = root.node_dir(node).join("meminfo");
    match read::optional(&path)? {
        None => Ok(None),
        Some(text) => parse_node_meminfo(node, &text).map(Some).map_err(|bad| bad.at(&path)),
    }
}

/// `MemAvailable` of `/proc/meminfo`, bytes: what the whole machine can give a new
/// allocation without swapping. `None` when it cannot be read (not Linux, an old kernel).
pub fn mem_available_bytes(root: &SysRoot) -> Option<u64> {
    let text = read::optional(&root.proc.join("meminfo")).ok()??;
    let line = text.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    kib.checked_mul(1024)
}

/// Parses the text of `nodeN/meminfo` for node `node`. Every line must be
/// `Node <node> <Field>: <value>[ kB]`; a line for another node, a unit other than `kB`, a
/// value that is not a decimal number, or a `kB` figure whose byte count overflows is an
/// error quoting the line.
pub(crate) fn parse_node_meminfo(node: NodeId, text: &str) -> Result<NodeMeminfo, Bad> {
    let mut info = NodeMeminfo::default();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let bad = |reason: String| Bad::new(line, reason);
        let mut words = line.split_ascii_whitespace();
        if words.next() != Some("Node") {
            return Err(bad("a per-node meminfo line starts with `Node N `".into()));
        }
        let n = words.next().unwrap_or_default();
        if n != node.to_string() {
            return Err(bad(format!("line is for node `{n}`, the file is node {node}'s")));
        }
        let key = match words.next().and_then(|k| k.strip_suffix(':')) {
            Some(k) if !k.is_empty() => k,
            _ => return Err(bad("expected `Field:` after the node number".into())),
        };
        let value = read::parse_u64(words.next().unwrap_or_default())
            .map_err(|b| bad(format!("value `{}`: {}", b.text, b.reason)))?;
        match (words.next(), words.next()) {
            (None, _) => {
                info.counts.insert(key.to_string(), value);
            }
            (Some("kB"), None) => {
                let bytes = value
                    .checked_mul(1024)
                    .ok_or_else(|| bad(format!("{value} kB does not fit in 64 bits of bytes")))?;
                info.bytes.insert(key.to_string(), bytes);
            }
            (Some(unit), None) => return Err(bad(format!("unknown unit `{unit}`"))),
            (Some(_), Some(extra)) => return Err(bad(format!("unexpected `{extra}`"))),
        }
    }
    Ok(info)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixture::{FixtureMachine, FixtureNode};

    fn n(i: usize) -> NodeId {
        NodeId::new(i).unwrap()
    }

    const REAL: &str = "\
Node 0 MemTotal:       16318132 kB
Node 0 MemFree:        10524280 kB
Node 0 MemUsed:         5793852 kB
Node 0 SwapCached:            0 kB
Node 0 Active(anon):     123456 kB
Node 0 HugePages_Total:     0
Node 0 HugePages_Free:      0
Node 0 HugePages_Surp:      0
";

    #[test]
    fn parses_the_kernels_format_into_bytes_and_counts() {
        let info = parse_node_meminfo(n(0), REAL).unwrap();
        assert_eq!(info.mem_total_bytes(), Some(16_318_132 * 1024));
        assert_eq!(info.mem_free_bytes(), Some(10_524_280 * 1024));
        assert_eq!(info.bytes["Active(anon)"], 123_456 * 1024);
        assert_eq!(info.counts["HugePages_Total"], 0);
        assert!(!info.bytes.contains_key("HugePages_Total"));
    }

    #[test]
    fn empty_text_has_no_fields_rather_than_zeros() {
        let info = parse_node_meminfo(n(3), "").unwrap();
        assert_eq!(info.mem_total_bytes(), None);
    }

    #[test]
    fn rejects_bad_lines_quoting_them() {
        let cases = [
            ("MemTotal:       16318132 kB", "starts with `Node N `"),
            ("Node 1 MemTotal:       16318132 kB", "node `1`"),
            ("Node 0 MemTotal       16318132 kB", "Field:"),
            ("Node 0 MemTotal:       lots kB", "value `lots`"),
            ("Node 0 MemTotal:       -5 kB", "value `-5`"),
            ("Node 0 MemTotal:       16 MB", "unknown unit `MB`"),
            ("Node 0 MemTotal:       16 kB extra", "unexpected `extra`"),
            ("Node 0 MemTotal:", "value ``"),
            ("Node 0 MemTotal: 18446744073709551615 kB", "does not fit"),
        ];
        for (line, want) in cases {
            let text = format!("Node 0 MemFree: 1 kB\n{line}\n");
            let bad = parse_node_meminfo(n(0), &text).unwrap_err();
            assert_eq!(bad.text, line);
            assert!(bad.reason.contains(want), "{line:?}: {:?} lacks {want:?}", bad.reason);
        }
    }

    #[test]
    fn read_is_none_for_an_absent_node_and_an_error_names_the_file() {
        let fx = FixtureMachine::new()
            .node(FixtureNode::new(0).cpu().memory(1 << 30, 1 << 29))
            .build()
            .unwrap();
        let info = read_node_meminfo(fx.root(), n(0)).unwrap().unwrap();
        assert_eq!(info.mem_total_bytes(), Some(1 << 30));
        assert_eq!(read_node_meminfo(fx.root(), n(1)).unwrap(), None);

        fx.write("sys/devices/system/node/node0/meminfo", "Node 0 MemTotal: x kB\n").unwrap();
        let err = read_node_meminfo(fx.root(), n(0)).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("node0/meminfo"), "{msg}");
        assert!(msg.contains("Node 0 MemTotal: x kB"), "{msg}");
    }

    #[test]
    fn a_meminfo_deleted_between_reads_is_none() {
        let fx = FixtureMachine::new()
            .node(FixtureNode::new(0).cpu().memory(1 << 30, 1 << 29))
            .node(FixtureNode::new(1).memory(1 << 30, 1 << 30))
            .build()
            .unwrap();
        assert!(read_node_meminfo(fx.root(), n(1)).unwrap().is_some());
        fx.remove("sys/devices/system/node/node1").unwrap();
        assert_eq!(read_node_meminfo(fx.root(), n(1)).unwrap(), None);
    }
}
