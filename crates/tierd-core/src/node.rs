//! Node ids and node masks.
//!
//! A [`NodeId`] is a NUMA node number as the kernel numbers them (`0..MAX_NUMNODES`); it is
//! never a tier index or a CPU. A [`NodeMask`] is a set of node ids with the kernel's
//! "nodelist" text form (`0-2,4`), the one found in `/sys/devices/system/node/online` and
//! accepted by `numactl`. The empty string is the empty mask, as the kernel prints it.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// The number of node ids tierd accepts, the kernel's `MAX_NUMNODES` with
/// `CONFIG_NODES_SHIFT=10` (Debian's and most distributions' x86-64 kernels).
pub const MAX_NUMNODES: usize = 1024;

const WORDS: usize = MAX_NUMNODES / 64;

/// A NUMA node number, always below [`MAX_NUMNODES`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "u32", into = "u32")]
pub struct NodeId(u16);

impl NodeId {
    /// The node with number `n`, or `None` when `n >= MAX_NUMNODES`.
    pub const fn new(n: usize) -> Option<NodeId> {
        if n < MAX_NUMNODES {
            #[allow(clippy::cast_possible_truncation)] // n < 1024 fits in u16
            Some(NodeId(n as u16))
        } else {
            None
        }
    }

    /// The node number as an index.
    pub const fn index(self) -> usize {
        self.0 as usize
    }

    /// The node number as the kernel's signed `int` node id.
    pub const fn as_i32(self) -> i32 {
        self.0 as i32
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl TryFrom<u32> for NodeId {
    type Error = String;
    fn try_from(n: u32) -> Result<Self, String> {
        usize::try_from(n)
            .ok()
            .and_then(NodeId::new)
            .ok_or_else(|| format!("node {n} is out of range (0..{MAX_NUMNODES})"))
    }
}

impl From<NodeId> for u32 {
    fn from(n: NodeId) -> u32 {
        u32::from(n.0)
    }
}

impl FromStr for NodeId {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let n: u32 = s.trim().parse().map_err(|_| format!("`{s}` is not a node number"))?;
        NodeId::try_from(n)
    }
}

/// A map keyed by node id in TOML, where keys are strings (`[headroom.node]` with
/// `1 = 20.0`): use with `#[serde(with = "tierd_core::node::keys")]`. A key must be the id as
/// sysfs writes it: `"+1"`, `" 1"` or `"01"` is refused, saying how to write it, rather than
/// read as some node or silently ignored.
pub mod keys {
    use std::collections::BTreeMap;

    use serde::de::Error as _;
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    use super::NodeId;

    /// Writes the keys as decimal strings.
    pub fn serialize<S: Serializer, V: Serialize>(
        map: &BTreeMap<NodeId, V>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        s.collect_map(map.iter().map(|(k, v)| (k.to_string(), v)))
    }

    /// Reads string keys, each exactly a node id as sysfs writes it.
    pub fn deserialize<'de, D: Deserializer<'de>, V: Deserialize<'de>>(
        d: D,
    ) -> Result<BTreeMap<NodeId, V>, D::Error> {
        BTreeMap::<String, V>::deserialize(d)?
            .into_iter()
            .map(|(k, v)| parse(&k).map(|id| (id, v)).map_err(D::Error::custom))
            .collect()
    }

    /// A key: the node id as sysfs writes it, nothing around it.
    pub fn parse(key: &str) -> Result<NodeId, String> {
        let id = key.parse::<NodeId>().map_err(|e| format!("node key {key:?}: {e}"))?;
        if id.to_string() == key {
            Ok(id)
        } else {
            Err(format!(
                "node key {key:?}: write the node id as {:?}, as sysfs names it",
                id.to_string()
            ))
        }
    }
}

/// A set of nodes: a fixed 1024-bit bitmap, cheap to copy and compare.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct NodeMask([u64; WORDS]);

/// Why a nodelist did not parse. Each variant quotes the offending part.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NodeMaskError {
    /// A piece between commas is empty, as in `1,,2` or a trailing comma.
    #[error("empty element in nodelist `{list}`")]
    Empty {
        /// The whole list.
        list: String,
    },
    /// A piece is not a number or a range of numbers.
    #[error("`{part}` is not a node number or range in nodelist `{list}`")]
    NotANumber {
        /// The bad piece.
        part: String,
        /// The whole list.
        list: String,
    },
    /// A range whose end is below its start, as in `3-1`.
    #[error("range `{part}` goes backwards in nodelist `{list}`")]
    Backwards {
        /// The bad piece.
        part: String,
        /// The whole list.
        list: String,
    },
    /// A node id at or above [`MAX_NUMNODES`].
    #[error("node `{part}` is out of range (0..{max}) in nodelist `{list}`", max = MAX_NUMNODES)]
    OutOfRange {
        /// The bad piece.
        part: String,
        /// The whole list.
        list: String,
    },
}

impl NodeMask {
    /// The empty mask.
    pub const EMPTY: NodeMask = NodeMask([0; WORDS]);

    /// A mask holding nodes `0..n` (all of them when `n >= MAX_NUMNODES`).
    pub fn first(n: usize) -> NodeMask {
        let mut m = NodeMask::EMPTY;
        for i in 0..n.min(MAX_NUMNODES) {
            m.0[i / 64] |= 1 << (i % 64);
        }
        m
    }

    /// Adds `n`; returns whether it was absent.
    pub fn insert(&mut self, n: NodeId) -> bool {
        let (w, b) = (n.index() / 64, n.index() % 64);
        let was = self.0[w] & (1 << b) != 0;
        self.0[w] |= 1 << b;
        !was
    }

    /// Removes `n`.
    pub fn remove(&mut self, n: NodeId) {
        self.0[n.index() / 64] &= !(1 << (n.index() % 64));
    }

    /// Whether `n` is in the mask.
    pub fn contains(&self, n: NodeId) -> bool {
        self.0[n.index() / 64] & (1 << (n.index() % 64)) != 0
    }

    /// Whether the mask is empty.
    pub fn is_empty(&self) -> bool {
        self.0.iter().all(|w| *w == 0)
    }

    /// The number of nodes in the mask.
    pub fn len(&self) -> usize {
        self.0.iter().map(|w| w.count_ones() as usize).sum()
    }

    /// The lowest node in the mask.
    pub fn first_node(&self) -> Option<NodeId> {
        self.iter().next()
    }

    /// The nodes in ascending order.
    pub fn iter(&self) -> impl Iterator<Item = NodeId> + '_ {
        self.0.iter().enumerate().flat_map(|(w, &word)| {
            let mut bits = word;
            std::iter::from_fn(move || {
                if bits == 0 {
                    return None;
                }
                let b = bits.trailing_zeros() as usize;
                bits &= bits - 1;
                NodeId::new(w * 64 + b)
            })
        })
    }

    /// Nodes in both masks.
    #[must_use]
    pub fn and(&self, other: &NodeMask) -> NodeMask {
        let mut m = *self;
        for (a, b) in m.0.iter_mut().zip(other.0) {
            *a &= b;
        }
        m
    }

    /// Nodes in either mask.
    #[must_use]
    pub fn or(&self, other: &NodeMask) -> NodeMask {
        let mut m = *self;
        for (a, b) in m.0.iter_mut().zip(other.0) {
            *a |= b;
        }
        m
    }

    /// Nodes in `self` but not in `other`.
    #[must_use]
    pub fn minus(&self, other: &NodeMask) -> NodeMask {
        let mut m = *self;
        for (a, b) in m.0.iter_mut().zip(other.0) {
            *a &= !b;
        }
        m
    }

    /// The raw 64-bit words, lowest nodes first.
    pub fn words(&self) -> &[u64; WORDS] {
        &self.0
    }

    /// A mask from raw words, as returned by [`NodeMask::words`].
    pub fn from_words(words: [u64; WORDS]) -> NodeMask {
        NodeMask(words)
    }
}

impl Default for NodeMask {
    fn default() -> Self {
        NodeMask::EMPTY
    }
}

impl FromIterator<NodeId> for NodeMask {
    fn from_iter<I: IntoIterator<Item = NodeId>>(iter: I) -> Self {
        let mut m = NodeMask::EMPTY;
        for n in iter {
            m.insert(n);
        }
        m
    }
}

impl FromStr for NodeMask {
    type Err = NodeMaskError;

    /// Parses the kernel's nodelist syntax (`bitmap_parselist` without the `:used/group`
    /// extension, which no node file prints). One trailing newline is accepted because
    /// sysfs files end with one.
    fn from_str(s: &str) -> Result<Self, NodeMaskError> {
        let list = s.strip_suffix('\n').unwrap_or(s);
        let mut mask = NodeMask::EMPTY;
        if list.is_empty() {
            return Ok(mask);
        }
        let whole = || list.to_string();
        let number = |part: &str, text: &str| -> Result<NodeId, NodeMaskError> {
            if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
                return Err(NodeMaskError::NotANumber { part: part.into(), list: whole() });
            }
            text.parse::<usize>()
                .ok()
                .and_then(NodeId::new)
                .ok_or_else(|| NodeMaskError::OutOfRange { part: part.into(), list: whole() })
        };
        for part in list.split(',') {
            if part.is_empty() {
                return Err(NodeMaskError::Empty { list: whole() });
            }
            let (lo, hi) = if let Some((a, b)) = part.split_once('-') {
                (number(part, a)?, number(part, b)?)
            } else {
                let n = number(part, part)?;
                (n, n)
            };
            if hi < lo {
                return Err(NodeMaskError::Backwards { part: part.into(), list: whole() });
            }
            for i in lo.index()..=hi.index() {
                mask.insert(NodeId::new(i).expect("range is within bounds"));
            }
        }
        Ok(mask)
    }
}

impl fmt::Display for NodeMask {
    /// Prints the nodelist the way the kernel's `%*pbl` does: ascending, ranges of two or
    /// more consecutive nodes collapsed to `a-b`, no trailing newline.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        let mut iter = self.iter().peekable();
        while let Some(start) = iter.next() {
            let mut end = start;
            while let Some(&next) = iter.peek() {
                if next.index() == end.index() + 1 {
                    end = next;
                    iter.next();
                } else {
                    break;
                }
            }
            if !first {
                f.write_str(",")?;
            }
            first = false;
            if start == end {
                write!(f, "{start}")?;
            } else {
                write!(f, "{start}-{end}")?;
            }
        }
        Ok(())
    }
}

impl fmt::Debug for NodeMask {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "NodeMask({self})")
    }
}

impl Serialize for NodeMask {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for NodeMask {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn mask(s: &str) -> NodeMask {
        s.parse().unwrap()
    }

    #[test]
    fn parses_kernel_lists() {
        assert!(mask("").is_empty());
        assert!(mask("\n").is_empty());
        assert_eq!(mask("0-2,4").iter().map(NodeId::index).collect::<Vec<_>>(), [0, 1, 2, 4]);
        assert_eq!(mask("3").len(), 1);
        assert_eq!(mask("0-1023").len(), MAX_NUMNODES);
        assert_eq!(mask("1-1").to_string(), "1");
    }

    #[test]
    fn rejects_bad_lists_quoting_the_bad_part() {
        let err = "3-1".parse::<NodeMask>().unwrap_err();
        assert!(matches!(err, NodeMaskError::Backwards { ref part, .. } if part == "3-1"), "{err}");
        let err = "a".parse::<NodeMask>().unwrap_err();
        assert!(err.to_string().contains("`a`"), "{err}");
        let err = "1,,2".parse::<NodeMask>().unwrap_err();
        assert!(matches!(err, NodeMaskError::Empty { .. }), "{err}");
        assert!(err.to_string().contains("1,,2"));
        for bad in ["1,", ",1", "1-", "-1", "1-2-3", " 1", "1 ", "0x1", "1024", "+1"] {
            assert!(bad.parse::<NodeMask>().is_err(), "{bad:?} should not parse");
        }
        let err = "0,1024".parse::<NodeMask>().unwrap_err();
        assert!(matches!(err, NodeMaskError::OutOfRange { ref part, .. } if part == "1024"));
    }

    #[test]
    fn prints_like_the_kernel() {
        assert_eq!(mask("0,1,2,4,6,7").to_string(), "0-2,4,6-7");
        assert_eq!(NodeMask::EMPTY.to_string(), "");
        assert_eq!(mask("1023").to_string(), "1023");
    }

    proptest! {
        #[test]
        fn text_round_trips(nodes in proptest::collection::btree_set(0usize..MAX_NUMNODES, 0..64)) {
            let m: NodeMask = nodes.iter().map(|&n| NodeId::new(n).unwrap()).collect();
            let text = m.to_string();
            prop_assert_eq!(text.parse::<NodeMask>().unwrap(), m);
            prop_assert_eq!(m.len(), nodes.len());
            prop_assert!(m.iter().map(NodeId::index).eq(nodes.iter().copied()));
        }
    }
}
