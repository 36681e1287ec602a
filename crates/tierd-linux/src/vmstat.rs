//! `proc/vmstat` and per-node `nodeN/vmstat`: the kernel's event and page counters.
//!
//! Both files print one `name value` pair per line. tierd reads the demotion, promotion,
//! migration and swap counters (`pgdemote_kswapd`, `pgdemote_direct`, `pgpromote_success`,
//! `pgmigrate_success`, `pgmigrate_fail`, `pswpin`, `pswpout`) to show what the kernel did
//! behind its back. Which counters exist depends on the kernel version and configuration, so
//! the readers return every pair as found and a counter the kernel lacks is simply not in the
//! map (absent, not zero).

use std::collections::BTreeMap;

use tierd_core::NodeId;

use crate::read::{self, Bad};
use crate::{Error, SysRoot};

/// Reads `proc/vmstat`. Its absence is an error: every Linux procfs has it.
pub fn read_vmstat(root: &SysRoot) -> Result<BTreeMap<String, u64>, Error> {
    let path = root.vmstat_file();
    let text = read::required(
        &path,
        "is procfs mounted there? tierd needs /proc (or the proc/ directory of the tree it was \
         pointed at)",
    )?;
    parse_vmstat(&text).map_err(|bad| bad.at(&path))
}

/// Reads `nodeN/vmstat`; `None` when the file does not exist or vanished (the node is not
/// online).
pub fn read_node_vmstat(
    root: &SysRoot,
    node: NodeId,
) -> Result<Option<BTreeMap<String, u64>>, Error> {
    let path = root.node_dir(node).join("vmstat");
    match read::optional(&path)? {
        None => Ok(None),
        Some(text) => parse_vmstat(&text).map(Some).map_err(|bad| bad.at(&path)),
    }
}

/// Parses `name value` lines. A line with another shape, a value that is not an unsigned
/// decimal, or a name seen twice is an error quoting the line.
pub(crate) fn parse_vmstat(text: &str) -> Result<BTreeMap<String, u64>, Bad> {
    let mut map = BTreeMap::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let mut words = line.split_ascii_whitespace();
        let (Some(name), Some(value), None) = (words.next(), words.next(), words.next()) else {
            return Err(Bad::new(line, "expected `name value`"));
        };
        let value = read::parse_u64(value)
            .map_err(|b| Bad::new(line, format!("value `{}`: {}", b.text, b.reason)))?;
        if map.insert(name.to_string(), value).is_some() {
            return Err(Bad::new(line, format!("counter `{name}` appears twice")));
        }
    }
    Ok(map)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixture::{FixtureMachine, FixtureNode};

    #[test]
    fn parses_counters_and_leaves_absent_ones_out() {
        let map = parse_vmstat("nr_free_pages 123\npgdemote_kswapd 0\npswpout 42\n").unwrap();
        assert_eq!(map["nr_free_pages"], 123);
        assert_eq!(map["pgdemote_kswapd"], 0);
        assert_eq!(map.get("pgpromote_success"), None);
        assert_eq!(parse_vmstat("").unwrap().len(), 0);
    }

    #[test]
    fn rejects_bad_lines_quoting_them() {
        for (line, want) in [
            ("pswpin", "expected `name value`"),
            ("pswpin 1 2", "expected `name value`"),
            ("pswpin -1", "value `-1`"),
            ("pswpin 0x10", "value `0x10`"),
            ("pswpin 99999999999999999999", "does not fit"),
        ] {
            let bad = parse_vmstat(&format!("nr_free_pages 1\n{line}\n")).unwrap_err();
            assert_eq!(bad.text, line);
            assert!(bad.reason.contains(want), "{line:?}: {:?}", bad.reason);
        }
        let bad = parse_vmstat("pswpin 1\npswpin 2\n").unwrap_err();
        assert!(bad.reason.contains("twice"), "{:?}", bad.reason);
    }

    #[test]
    fn reads_system_and_node_vmstat() {
        let fx = FixtureMachine::new()
            .node(
                FixtureNode::new(0).cpu().memory(1 << 30, 1 << 29).vmstat(&[("nr_free_pages", 7)]),
            )
            .node(FixtureNode::new(1).memory(1 << 30, 1 << 30))
            .vmstat(&[("pgdemote_kswapd", 5), ("pswpout", 9)])
            .build()
            .unwrap();
        let all = read_vmstat(fx.root()).unwrap();
        assert_eq!(all["pgdemote_kswapd"], 5);
        assert_eq!(all["pswpout"], 9);
        let n0 = NodeId::new(0).unwrap();
        let n1 = NodeId::new(1).unwrap();
        assert_eq!(read_node_vmstat(fx.root(), n0).unwrap().unwrap()["nr_free_pages"], 7);
        assert_eq!(read_node_vmstat(fx.root(), n1).unwrap(), None);
    }

    #[test]
    fn missing_proc_vmstat_is_an_error_that_says_what_to_check() {
        let fx = FixtureMachine::new().node(FixtureNode::new(0).cpu()).build().unwrap();
        let err = read_vmstat(fx.root()).unwrap_err();
        assert!(matches!(err, Error::Missing { .. }));
        assert!(err.to_string().contains("procfs"), "{err}");
    }

    #[test]
    fn a_malformed_vmstat_names_the_file_and_line() {
        let fx = FixtureMachine::new().node(FixtureNode::new(0).cpu()).build().unwrap();
        fx.write("proc/vmstat", "pswpin 1\npswpout many\n").unwrap();
        let msg = read_vmstat(fx.root()).unwrap_err().to_string();
        assert!(msg.contains("proc/vmstat") && msg.contains("pswpout many"), "{msg}");
    }
}
