//! Reads the machine's [`Topology`] from sysfs and procfs.
//!
//! Sources, all under a [`SysRoot`]:
//!
//! | fact | file | when absent |
//! |---|---|---|
//! | node masks | `sys/devices/system/node/{possible,online,has_cpu,has_memory}` | error (no NUMA support); `has_memory` falls back to `has_normal_memory` |
//! | SLIT row | `nodeN/distance` | empty row (node went offline) |
//! | memory size | `nodeN/meminfo` (`MemTotal`, `MemFree`) | `None` |
//! | HMAT | `nodeN/access1/initiators/*`, else `nodeN/access0/initiators/*` | `None` |
//! | kernel tiers | `sys/devices/virtual/memory_tiering/memory_tierN/nodelist` | `None` (before 6.1) |
//! | kernel demotion | `sys/kernel/mm/numa/demotion_enabled` | `None` (before 5.15) |
//! | NUMA balancing | `proc/sys/kernel/numa_balancing` | `None` |
//! | the kernel's last zonelist build | `dev/kmsg` (beside `sys`), its `Fallback order for Node N` and `Built M zonelists` lines | `None` (no permission: `/dev/kmsg` needs root where `dmesg_restrict` is set, as on Debian; or no whole build left in the log) |
//!
//! **HMAT access class.** The kernel exports two classes per memory node: `access0`, the
//! figures from the best initiator of any kind (a GPU or other accelerator may be that
//! initiator), and `access1`, the figures from the best CPU initiator. The kernel's tiering
//! uses the CPU class: `hmat_calculate_adistance()` in `drivers/acpi/numa/hmat.c` feeds
//! `target->coord[ACCESS_COORDINATE_CPU]` (class 1) to `mt_perf_to_adistance()`, and
//! `hmat_set_default_dram_perf()` takes the DRAM reference from the same class. tierd moves
//! pages for CPU workloads too, so it reads `access1` and falls back to `access0` only on
//! kernels that predate `access1` (where, with CPU-only initiators, the two coincide). The
//! figures are kept as the kernel prints them: a `0` is the kernel's "unknown", and the
//! consumer decides, as `mt_perf_to_adistance()` does, whether a zero sum disqualifies them.
//!
//! **Races.** A node can go offline while the files are read. Files of a vanished node read
//! as absent (`ENOENT`, or `ENODEV` for a file that was already open): its `meminfo` and HMAT
//! become `None` and its distance row empty. A distance row whose length no longer matches
//! the `online` mask read at the start is reported as an error that says to read again.

use std::collections::BTreeMap;
use std::io::{self, Read};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use tierd_core::topology::{Hmat, KernelTier, KernelZonelists};
use tierd_core::{NodeId, NodeInfo, NodeMask, Topology};

use crate::meminfo::{NodeMeminfo, read_node_meminfo};
use crate::read::{self, Bad};
use crate::{Error, SysRoot};

const NUMA_HINT: &str = "this kernel exposes no NUMA node files: was it built without \
                         CONFIG_NUMA, or is sysfs not mounted at the root tierd was given?";

/// The HMAT access classes tierd reads, in order of preference: the CPU class first (the one
/// the kernel's tiering uses), then the any-initiator class.
pub const HMAT_ACCESS_CLASSES: [u8; 2] = [1, 0];

/// Reads the whole topology: every field of [`Topology`] and of each online node's
/// [`NodeInfo`]. Absent optional files are `None`; see the module documentation for each
/// source and for races with node hotplug.
pub fn read_topology(root: &SysRoot) -> Result<Topology, Error> {
    let possible = read_mask(root, "possible")?;
    let online = read_online(root)?;
    let has_cpu = read_mask(root, "has_cpu")?;
    let has_memory = read_has_memory(root)?;

    let mut nodes = Vec::with_capacity(online.len());
    for id in online.iter() {
        let distance = read_distance(root, id)?.unwrap_or_default();
        if !distance.is_empty() && distance.len() != online.len() {
            let path = root.node_dir(id).join("distance");
            let text = distance.iter().map(u32::to_string).collect::<Vec<_>>().join(" ");
            return Err(read::malformed(
                &path,
                &text,
                format!(
                    "{} distances but {} nodes are online ({online}); if a node went on- or \
                     offline while tierd read the topology, read it again",
                    distance.len(),
                    online.len()
                ),
            ));
        }
        let meminfo = read_node_meminfo(root, id)?;
        nodes.push(NodeInfo {
            id,
            online: true,
            has_cpu: has_cpu.contains(id),
            has_memory: has_memory.contains(id),
            distance,
            mem_total_bytes: meminfo.as_ref().and_then(NodeMeminfo::mem_total_bytes),
            mem_free_bytes: meminfo.as_ref().and_then(NodeMeminfo::mem_free_bytes),
            hmat: read_hmat(root, id)?,
        });
    }

    Ok(Topology {
        possible,
        online,
        nodes,
        kernel_tiers: read_kernel_tiers(root)?,
        demotion_enabled: read_demotion_enabled(root)?,
        numa_balancing: read_numa_balancing(root)?,
        kernel_zonelists: read_kernel_zonelists(root)?,
    })
}

/// Reads `sys/devices/system/node/online`.
pub fn read_online(root: &SysRoot) -> Result<NodeMask, Error> {
    read_mask(root, "online")
}

/// Reads a node mask file of `sys/devices/system/node` that every NUMA kernel has.
fn read_mask(root: &SysRoot, name: &str) -> Result<NodeMask, Error> {
    let path = root.node_root().join(name);
    let text = read::required(&path, NUMA_HINT)?;
    parse_mask(&path, &text)
}

fn parse_mask(path: &Path, text: &str) -> Result<NodeMask, Error> {
    text.parse().map_err(|e| read::malformed(path, read::value(text), format!("{e}")))
}

/// `has_memory`, or `has_normal_memory` on kernels without the former.
fn read_has_memory(root: &SysRoot) -> Result<NodeMask, Error> {
    let path = root.node_root().join("has_memory");
    if let Some(text) = read::optional(&path)? {
        return parse_mask(&path, &text);
    }
    let fallback = root.node_root().join("has_normal_memory");
    if let Some(text) = read::optional(&fallback)? {
        return parse_mask(&fallback, &text);
    }
    Err(Error::Missing { path, hint: NUMA_HINT })
}

/// Reads `nodeN/distance`, the node's SLIT row: one distance per online node, ascending by
/// node id. `None` when the file does not exist or vanished.
pub fn read_distance(root: &SysRoot, node: NodeId) -> Result<Option<Vec<u32>>, Error> {
    let path = root.node_dir(node).join("distance");
    match read::optional(&path)? {
        None => Ok(None),
        Some(text) => parse_distance(&text).map(Some).map_err(|bad| bad.at(&path)),
    }
}

/// Parses a distance row as the kernel prints it (`"10 21\n"`).
pub(crate) fn parse_distance(text: &str) -> Result<Vec<u32>, Bad> {
    let row = read::value(text);
    let distances = row
        .split_ascii_whitespace()
        .map(|word| {
            read::parse_u64(word)
                .ok()
                .and_then(|d| u32::try_from(d).ok())
                .ok_or_else(|| Bad::new(row, format!("`{word}` is not a distance")))
        })
        .collect::<Result<Vec<u32>, Bad>>()?;
    if distances.is_empty() {
        return Err(Bad::new(row, "no distances"));
    }
    Ok(distances)
}

/// Reads the node's HMAT figures from the first access class in [`HMAT_ACCESS_CLASSES`] that
/// has any (see the module documentation for why the CPU class comes first). `None` when the
/// node has no HMAT data or it vanished.
pub fn read_hmat(root: &SysRoot, node: NodeId) -> Result<Option<Hmat>, Error> {
    for class in HMAT_ACCESS_CLASSES {
        let dir = root.hmat_dir(node, class);
        let figure = |name: &str| -> Result<Option<u64>, Error> {
            let path = dir.join(name);
            match read::optional(&path)? {
                None => Ok(None),
                Some(text) => {
                    read::parse_u64(read::value(&text)).map(Some).map_err(|b| b.at(&path))
                }
            }
        };
        let hmat = Hmat {
            read_latency_ns: figure("read_latency")?,
            write_latency_ns: figure("write_latency")?,
            read_bandwidth_mbps: figure("read_bandwidth")?,
            write_bandwidth_mbps: figure("write_bandwidth")?,
        };
        if hmat != Hmat::default() {
            return Ok(Some(hmat));
        }
    }
    Ok(None)
}

/// Reads the kernel's memory tiers, sorted by tier id (fastest first, since the id is the
/// abstract distance divided by the chunk size). `None` when `memory_tiering` does not exist
/// (kernels before 6.1, or `CONFIG_NUMA` without tiering). A tier whose `nodelist` vanished
/// while being read (the kernel frees a tier when its last node goes) is left out; entries
/// that are not `memory_tierN` directories are ignored.
pub fn read_kernel_tiers(root: &SysRoot) -> Result<Option<Vec<KernelTier>>, Error> {
    let dir = root.memory_tiering_dir();
    let entries = match std::fs::read_dir(&dir) {
        Ok(entries) => entries,
        Err(e) if read::is_gone(&e) => return Ok(None),
        Err(source) => return Err(Error::Io { path: dir, source }),
    };
    let mut tiers = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|source| Error::Io { path: dir.clone(), source })?;
        let name = entry.file_name();
        let Some(digits) = name.to_str().and_then(|n| n.strip_prefix("memory_tier")) else {
            continue;
        };
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        let tier_dir = entry.path();
        let id = digits
            .parse::<u32>()
            .map_err(|_| read::malformed(&tier_dir, digits, "tier id does not fit in 32 bits"))?;
        let path = tier_dir.join("nodelist");
        if let Some(text) = read::optional(&path)? {
            tiers.push(KernelTier { id, nodes: parse_mask(&path, &text)? });
        }
    }
    tiers.sort_by_key(|t| t.id);
    Ok(Some(tiers))
}

/// Reads `sys/kernel/mm/numa/demotion_enabled`: whether the kernel itself demotes during
/// reclaim. The kernel prints `true`/`false`; `1`/`0` are accepted too. `None` when the file
/// does not exist (kernels before 5.15).
pub fn read_demotion_enabled(root: &SysRoot) -> Result<Option<bool>, Error> {
    let path = root.demotion_enabled_file();
    let Some(text) = read::optional(&path)? else {
        return Ok(None);
    };
    match read::value(&text) {
        "true" | "1" => Ok(Some(true)),
        "false" | "0" => Ok(Some(false)),
        other => Err(read::malformed(&path, other, "expected `true`, `false`, `1` or `0`")),
    }
}

/// Reads `proc/sys/kernel/numa_balancing` (0 off, 1 NUMA balancing, 2 memory-tiering
/// promotion, 3 both). `None` when the file does not exist (kernel without
/// `CONFIG_NUMA_BALANCING`).
pub fn read_numa_balancing(root: &SysRoot) -> Result<Option<u32>, Error> {
    let path = root.numa_balancing_file();
    let Some(text) = read::optional(&path)? else {
        return Ok(None);
    };
    let value = read::value(&text);
    read::parse_u64(value)
        .ok()
        .and_then(|v| u32::try_from(v).ok())
        .map(Some)
        .ok_or_else(|| read::malformed(&path, value, "expected a small unsigned number"))
}

/// Reads the kernel's last zonelist build from its log (see [`parse_zonelist_log`]). `None`
/// when the log is absent or tierd may not read it (`EACCES`/`EPERM`: `/dev/kmsg` takes root
/// where `dmesg_restrict` is set), or when it holds no whole build any more.
pub fn read_kernel_zonelists(root: &SysRoot) -> Result<Option<KernelZonelists>, Error> {
    let path = root.kmsg_file();
    let opened = std::fs::OpenOptions::new().read(true).custom_flags(libc::O_NONBLOCK).open(&path);
    let mut file = match opened {
        Ok(file) => file,
        Err(e) if read::is_gone(&e) || e.kind() == io::ErrorKind::PermissionDenied => {
            return Ok(None);
        }
        Err(source) => return Err(Error::Io { path, source }),
    };
    // /dev/kmsg returns one record per read and EAGAIN after the last one; EPIPE says records
    // were overwritten while we read (the next read goes on with the oldest one left). A
    // fixture's plain file just ends.
    let mut text = Vec::new();
    let mut buf = vec![0u8; 16 << 10];
    loop {
        match file.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => text.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e)
                if e.kind() == io::ErrorKind::Interrupted
                    || e.raw_os_error() == Some(libc::EPIPE) => {}
            Err(source) => return Err(Error::Io { path, source }),
        }
    }
    Ok(parse_zonelist_log(&String::from_utf8_lossy(&text)))
}

/// The last whole zonelist build in a kernel log, as `/dev/kmsg` records
/// (`6,1234,5678,-;Fallback order for Node 0: 0 1 2 `) or plain `dmesg` lines: every
/// `__build_all_zonelists` prints one `Fallback order for Node N: ...` line per node it
/// builds (`build_zonelists`), then `Built M zonelists, ...` (`build_all_zonelists`). Lines
/// before the first `Built` line of a log that wrapped may be a build's tail: they count
/// only when a `Built` line follows them, like any other. `None` without a whole build.
pub fn parse_zonelist_log(text: &str) -> Option<KernelZonelists> {
    let mut builds = 0;
    let mut last = BTreeMap::new();
    let mut current: BTreeMap<NodeId, Vec<NodeId>> = BTreeMap::new();
    for line in text.lines() {
        if line.starts_with(' ') {
            continue; // a /dev/kmsg record's dictionary line (` SUBSYSTEM=...`)
        }
        let msg = match line.split_once(';') {
            Some((head, msg)) if head.bytes().next().is_some_and(|b| b.is_ascii_digit()) => msg,
            _ => line,
        };
        if let Some(rest) = msg.strip_prefix("Fallback order for Node ") {
            let parsed = rest.split_once(':').and_then(|(node, order)| {
                let node = node.trim().parse::<usize>().ok().and_then(NodeId::new)?;
                let order = order
                    .split_ascii_whitespace()
                    .map(|w| w.parse::<usize>().ok().and_then(NodeId::new))
                    .collect::<Option<Vec<NodeId>>>()?;
                Some((node, order))
            });
            if let Some((node, order)) = parsed {
                current.insert(node, order);
            }
        } else if msg.starts_with("Built ") && msg.contains(" zonelists") {
            builds += 1;
            last = std::mem::take(&mut current);
        }
    }
    (builds > 0 && !last.is_empty()).then_some(KernelZonelists { builds, last })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixture::{self, FixtureMachine, FixtureNode, symmetric_hmat};

    fn n(i: usize) -> NodeId {
        NodeId::new(i).unwrap()
    }

    fn two_nodes() -> FixtureMachine {
        FixtureMachine::new()
            .node(FixtureNode::new(0).cpu().memory(1 << 30, 1 << 29))
            .node(FixtureNode::new(1).memory(2 << 30, 2 << 30))
            .distance(0, 1, 21)
    }

    /// The committed tree `fixtures/<name>`, read as tierd reads a real machine.
    fn committed(name: &str) -> Topology {
        read_topology(&SysRoot::under(fixture::committed_fixtures_dir().join(name)))
            .unwrap_or_else(|e| panic!("fixtures/{name}: {e}"))
    }

    fn tier_lists(t: &Topology) -> Option<Vec<(u32, String)>> {
        t.kernel_tiers.as_ref().map(|ts| ts.iter().map(|t| (t.id, t.nodes.to_string())).collect())
    }

    // --- one test per committed fixture: the facts the rest of tierd relies on ---

    #[test]
    fn fixture_laptop() {
        let t = committed("laptop");
        assert_eq!(t.possible.to_string(), "0");
        assert_eq!(t.online.to_string(), "0");
        assert_eq!(t.nodes.len(), 1);
        assert_eq!(t.distance(n(0), n(0)), Some(10));
        assert_eq!(t.node(n(0)).unwrap().mem_total_bytes, Some(16 << 30));
        assert_eq!(t.node(n(0)).unwrap().hmat, None);
        assert_eq!(tier_lists(&t), Some(vec![(4, "0".into())]));
        assert_eq!(t.demotion_enabled, Some(false));
        assert_eq!(t.numa_balancing, Some(0));
    }

    #[test]
    fn fixture_two_socket() {
        let t = committed("two-socket");
        assert_eq!(t.cpu_nodes().to_string(), "0-1");
        assert_eq!(t.memory_nodes().to_string(), "0-1");
        assert_eq!(t.distance(n(0), n(1)), Some(21));
        assert_eq!(t.distance(n(1), n(0)), Some(21));
        assert_eq!(t.distance(n(1), n(1)), Some(10));
        assert_eq!(tier_lists(&t), Some(vec![(4, "0-1".into())]));
        assert!(t.nodes.iter().all(|i| i.hmat.is_none()));
    }

    #[test]
    fn fixture_dram_cxl_pmem() {
        let t = committed("dram-cxl-pmem");
        assert_eq!(t.online.to_string(), "0-2");
        assert_eq!(t.cpu_nodes().to_string(), "0");
        assert_eq!(t.memory_nodes().to_string(), "0-2");
        for (a, b, d) in [(0, 1, 20), (0, 2, 30), (1, 2, 20), (2, 0, 30), (2, 2, 10)] {
            assert_eq!(t.distance(n(a), n(b)), Some(d), "{a}->{b}");
        }
        for (i, lat, bw) in [(0, 80, 20000), (1, 180, 8000), (2, 350, 4000)] {
            let node = t.node(n(i)).unwrap();
            assert_eq!(node.mem_total_bytes, Some(512 << 20));
            let h = node.hmat.unwrap();
            assert!(h.is_complete());
            assert_eq!(h, symmetric_hmat(lat, bw), "node {i}");
        }
        assert_eq!(tier_lists(&t), Some(vec![(4, "0".into()), (25, "1".into()), (98, "2".into())]));
        assert_eq!(t.demotion_enabled, Some(false));
    }

    #[test]
    fn fixture_two_socket_cxl() {
        let t = committed("two-socket-cxl");
        assert_eq!(t.cpu_nodes().to_string(), "0-1");
        assert_eq!(t.memory_nodes().to_string(), "0-3");
        // Each CXL node is nearer its own socket.
        assert!(t.distance(n(0), n(2)) < t.distance(n(0), n(3)));
        assert!(t.distance(n(1), n(3)) < t.distance(n(1), n(2)));
        assert!(t.nodes.iter().all(|i| i.hmat.is_none()));
        assert_eq!(tier_lists(&t), Some(vec![(4, "0-1".into()), (22, "2-3".into())]));
    }

    #[test]
    fn fixture_offline_node() {
        let t = committed("offline-node");
        assert_eq!(t.possible.to_string(), "0-3");
        assert_eq!(t.online.to_string(), "0-1,3");
        assert_eq!(t.nodes.iter().map(|i| i.id.index()).collect::<Vec<_>>(), [0, 1, 3]);
        assert!(t.node(n(2)).is_none());
        // Rows have one column per online node: node 3 is the third column.
        assert_eq!(t.node(n(0)).unwrap().distance, [10, 21, 24]);
        assert_eq!(t.distance(n(0), n(3)), Some(24));
        assert_eq!(t.distance(n(0), n(2)), None);
        assert_eq!(t.numa_balancing, Some(2));
        assert_eq!(t.demotion_enabled, Some(true));
    }

    #[test]
    fn fixture_old_kernel() {
        let t = committed("old-kernel");
        assert_eq!(t.cpu_nodes().to_string(), "0");
        assert_eq!(t.memory_nodes().to_string(), "0-1");
        assert_eq!(t.kernel_tiers, None);
        assert_eq!(t.demotion_enabled, None);
        assert!(t.nodes.iter().all(|i| i.hmat.is_none()));
        assert_eq!(t.distance(n(0), n(1)), Some(17));
    }

    // --- sources, fallbacks and races ---

    #[test]
    fn has_normal_memory_stands_in_for_a_missing_has_memory() {
        let fx = two_nodes().legacy_has_normal_memory().build().unwrap();
        assert!(!fx.path().join("sys/devices/system/node/has_memory").exists());
        assert_eq!(read_topology(fx.root()).unwrap().memory_nodes().to_string(), "0-1");
        fx.remove("sys/devices/system/node/has_normal_memory").unwrap();
        let err = read_topology(fx.root()).unwrap_err();
        assert!(matches!(&err, Error::Missing { path, .. } if path.ends_with("has_memory")));
    }

    #[test]
    fn required_masks_are_errors_when_missing_and_say_why() {
        for name in ["possible", "online", "has_cpu"] {
            let fx = two_nodes().build().unwrap();
            fx.remove(format!("sys/devices/system/node/{name}")).unwrap();
            let err = read_topology(fx.root()).unwrap_err();
            assert!(err.path().ends_with(name), "{err}");
            assert!(err.to_string().contains("CONFIG_NUMA"), "{err}");
        }
    }

    #[test]
    fn a_malformed_mask_names_the_file_and_the_text() {
        let fx = two_nodes().build().unwrap();
        fx.write("sys/devices/system/node/online", "0-1,,3\n").unwrap();
        let err = read_topology(fx.root()).unwrap_err();
        let msg = err.to_string();
        assert!(matches!(&err, Error::Malformed { text, .. } if text == "0-1,,3"), "{msg}");
        assert!(msg.contains("node/online"), "{msg}");
    }

    #[test]
    fn parse_distance_good_and_bad() {
        assert_eq!(parse_distance("10 21\n"), Ok(vec![10, 21]));
        assert_eq!(parse_distance("10"), Ok(vec![10]));
        for (text, bad) in [("", "no distances"), ("\n", "no distances"), ("10 x", "`x`")] {
            let e = parse_distance(text).unwrap_err();
            assert!(e.reason.contains(bad), "{text:?}: {e:?}");
        }
        assert!(parse_distance("10 -1").is_err());
        assert!(parse_distance("10 4294967296").is_err());
    }

    #[test]
    fn a_distance_row_of_the_wrong_length_says_to_read_again() {
        let fx = two_nodes().build().unwrap();
        fx.write("sys/devices/system/node/node1/distance", "21 10 30\n").unwrap();
        let msg = read_topology(fx.root()).unwrap_err().to_string();
        assert!(msg.contains("node1/distance") && msg.contains("read it again"), "{msg}");
    }

    #[test]
    fn files_of_a_node_that_went_offline_read_as_absent() {
        let fx = two_nodes().build().unwrap();
        let before = read_topology(fx.root()).unwrap();
        assert_eq!(before.node(n(1)).unwrap().mem_total_bytes, Some(2 << 30));
        // The node's directory goes between reading `online` and reading its files.
        fx.remove("sys/devices/system/node/node1").unwrap();
        let after = read_topology(fx.root()).unwrap();
        let node1 = after.node(n(1)).unwrap();
        assert_eq!(node1.mem_total_bytes, None);
        assert_eq!(node1.mem_free_bytes, None);
        assert!(node1.distance.is_empty());
        assert_eq!(after.distance(n(1), n(0)), None);
        assert_eq!(after.distance(n(0), n(1)), Some(21));
    }

    #[test]
    fn a_single_vanished_meminfo_is_none_not_zero() {
        let fx = two_nodes().build().unwrap();
        fx.remove("sys/devices/system/node/node0/meminfo").unwrap();
        let t = read_topology(fx.root()).unwrap();
        assert_eq!(t.node(n(0)).unwrap().mem_total_bytes, None);
        assert_eq!(t.node(n(1)).unwrap().mem_total_bytes, Some(2 << 30));
    }

    #[test]
    fn hmat_prefers_the_cpu_access_class() {
        let any = symmetric_hmat(50, 30000); // say, a GPU initiator sees it faster
        let cpu = symmetric_hmat(180, 8000);
        let fx = two_nodes()
            .node(
                FixtureNode::new(1)
                    .memory(2 << 30, 2 << 30)
                    .hmat_access(0, any)
                    .hmat_access(1, cpu),
            )
            .build()
            .unwrap();
        assert_eq!(read_hmat(fx.root(), n(1)).unwrap(), Some(cpu));
        // A kernel without access1 (or a race that removed it): fall back to access0.
        fx.remove("sys/devices/system/node/node1/access1").unwrap();
        assert_eq!(read_hmat(fx.root(), n(1)).unwrap(), Some(any));
        fx.remove("sys/devices/system/node/node1/access0").unwrap();
        assert_eq!(read_hmat(fx.root(), n(1)).unwrap(), None);
    }

    #[test]
    fn partial_hmat_keeps_absent_figures_absent() {
        let h = Hmat { read_latency_ns: Some(100), ..Hmat::default() };
        let fx =
            two_nodes().node(FixtureNode::new(1).memory(2 << 30, 2 << 30).hmat(h)).build().unwrap();
        let got = read_hmat(fx.root(), n(1)).unwrap().unwrap();
        assert_eq!(got, h);
        assert!(!got.is_complete());
        fx.write("sys/devices/system/node/node1/access1/initiators/read_latency", "fast\n")
            .unwrap();
        let msg = read_hmat(fx.root(), n(1)).unwrap_err().to_string();
        assert!(msg.contains("access1/initiators/read_latency") && msg.contains("fast"), "{msg}");
    }

    #[test]
    fn kernel_tiers_sort_by_id_and_skip_strays_and_vanished_tiers() {
        let fx = two_nodes().kernel_tier(22, "1").kernel_tier(4, "0").build().unwrap();
        // Numeric order, not directory-name order ("memory_tier22" < "memory_tier4").
        let tiers = read_kernel_tiers(fx.root()).unwrap().unwrap();
        assert_eq!(tiers.iter().map(|t| t.id).collect::<Vec<_>>(), [4, 22]);
        fx.write("sys/devices/virtual/memory_tiering/uevent", "").unwrap();
        fx.write("sys/devices/virtual/memory_tiering/memory_tierX/nodelist", "1\n").unwrap();
        fx.remove("sys/devices/virtual/memory_tiering/memory_tier22/nodelist").unwrap();
        let tiers = read_kernel_tiers(fx.root()).unwrap().unwrap();
        assert_eq!(tiers.iter().map(|t| t.id).collect::<Vec<_>>(), [4]);
        fx.write("sys/devices/virtual/memory_tiering/memory_tier4/nodelist", "0-\n").unwrap();
        let msg = read_kernel_tiers(fx.root()).unwrap_err().to_string();
        assert!(msg.contains("memory_tier4/nodelist") && msg.contains("0-"), "{msg}");
        fx.remove("sys/devices/virtual/memory_tiering").unwrap();
        assert_eq!(read_kernel_tiers(fx.root()).unwrap(), None);
    }

    #[test]
    fn demotion_enabled_accepts_words_and_digits() {
        let fx = two_nodes().build().unwrap();
        let file = "sys/kernel/mm/numa/demotion_enabled";
        assert_eq!(read_demotion_enabled(fx.root()).unwrap(), None);
        for (text, want) in [("true\n", true), ("false\n", false), ("1\n", true), ("0", false)] {
            fx.write(file, text).unwrap();
            assert_eq!(read_demotion_enabled(fx.root()).unwrap(), Some(want), "{text:?}");
        }
        for text in ["yes\n", "", "true \n", "2\n"] {
            fx.write(file, text).unwrap();
            let err = read_demotion_enabled(fx.root()).unwrap_err();
            assert!(matches!(&err, Error::Malformed { .. }), "{text:?}: {err}");
            assert!(err.to_string().contains("demotion_enabled"), "{err}");
        }
    }

    #[test]
    fn numa_balancing_good_bad_and_absent() {
        let fx = two_nodes().build().unwrap();
        let file = "proc/sys/kernel/numa_balancing";
        assert_eq!(read_numa_balancing(fx.root()).unwrap(), None);
        fx.write(file, "2\n").unwrap();
        assert_eq!(read_numa_balancing(fx.root()).unwrap(), Some(2));
        for text in ["-1\n", "two\n", "\n", "4294967296\n"] {
            fx.write(file, text).unwrap();
            let msg = read_numa_balancing(fx.root()).unwrap_err().to_string();
            assert!(msg.contains("numa_balancing"), "{text:?}: {msg}");
        }
    }

    #[test]
    fn zonelist_log_keeps_the_last_whole_build() {
        // The topo-hotplug boot: the boot build, a build of node 3 alone while it had no
        // memory, and the rebuild when its memory came online (kmsg records, a dmesg line).
        let log = "6,1,0,-;Fallback order for Node 0: 0 1 2 \n\
                   6,2,0,-;Fallback order for Node 3: 0 1 2 \n\
                   6,3,0,-;Built 3 zonelists, mobility grouping on.  Total pages: 130942\n\
                   \x20SUBSYSTEM=memory\n\
                   6,4,0,-;Fallback order for Node 3: 0 1 2 \n\
                   6,5,0,-;Built 3 zonelists, mobility grouping on.  Total pages: 93243\n\
                   Fallback order for Node 0: 0 1 2 3 \n\
                   6,7,0,-;Fallback order for Node 3: 3 2 0 1 \n\
                   6,8,0,-;Built 4 zonelists, mobility grouping on.  Total pages: 126011\n\
                   6,9,0,-;Fallback order for Node 1: 1 0 \n";
        let z = parse_zonelist_log(log).unwrap();
        assert_eq!(z.builds, 3);
        let lists: Vec<(usize, Vec<usize>)> = z
            .last
            .iter()
            .map(|(n, o)| (n.index(), o.iter().map(|m| m.index()).collect()))
            .collect();
        assert_eq!(lists, [(0, vec![0, 1, 2, 3]), (3, vec![3, 2, 0, 1])]);
        // No `Built` line after the lists: no whole build.
        assert_eq!(parse_zonelist_log("6,9,0,-;Fallback order for Node 1: 1 0 \n"), None);
        assert_eq!(parse_zonelist_log(""), None);
        // A garbled list is left out, not read as a shorter one.
        let z = parse_zonelist_log(
            "Fallback order for Node 0: 0 x\nFallback order for Node 1: 1\nBuilt 2 zonelists\n",
        )
        .unwrap();
        assert_eq!(z.last.keys().map(|n| n.index()).collect::<Vec<_>>(), [1]);
    }

    #[test]
    fn the_kernel_log_is_read_from_dev_beside_sys_and_absent_is_none() {
        let fx = two_nodes().build().unwrap();
        assert_eq!(read_topology(fx.root()).unwrap().kernel_zonelists, None);
        fx.write(
            "dev/kmsg",
            "6,1,0,-;Fallback order for Node 0: 0 1 \n6,2,0,-;Fallback order for Node 1: 1 0 \n\
             6,3,0,-;Built 2 zonelists, mobility grouping on.  Total pages: 1\n",
        )
        .unwrap();
        let z = read_topology(fx.root()).unwrap().kernel_zonelists.unwrap();
        assert_eq!(z.builds, 1);
        assert_eq!(z.last[&n(1)], [n(1), n(0)]);
    }

    #[test]
    fn possible_larger_than_online_is_kept() {
        let fx = two_nodes().possible("0-7").build().unwrap();
        let t = read_topology(fx.root()).unwrap();
        assert_eq!(t.possible.to_string(), "0-7");
        assert_eq!(t.online.to_string(), "0-1");
        assert_eq!(t.nodes.len(), 2);
    }

    /// The readers against the kernel this test runs on: its formats are the ground truth the
    /// fixtures imitate. Skips, saying why, where `/sys` has no NUMA node files (a container
    /// without sysfs, a kernel without `CONFIG_NUMA`); under `CI=true` that is a failure.
    #[test]
    fn the_running_kernel_reads_cleanly() {
        let Some(root) = crate::root::running_kernel() else { return };
        let t = read_topology(&root).unwrap();
        assert!(!t.online.is_empty());
        assert_eq!(t.nodes.len(), t.online.len());
        for node in &t.nodes {
            assert_eq!(node.distance.len(), t.online.len(), "node {}", node.id);
            assert_eq!(t.distance(node.id, node.id), Some(10), "node {}", node.id);
            if node.has_memory {
                assert!(node.mem_total_bytes.is_some_and(|b| b > 0), "node {}", node.id);
            }
            let meminfo = read_node_meminfo(&root, node.id).unwrap().unwrap();
            assert!(meminfo.bytes.len() > 2, "node {}: {meminfo:?}", node.id);
            crate::read_node_vmstat(&root, node.id).unwrap();
        }
        assert!(crate::read_vmstat(&root).unwrap().contains_key("nr_free_pages"));
    }

    #[test]
    fn an_empty_root_is_a_missing_error_not_a_panic() {
        let dir = tempfile::tempdir().unwrap();
        let err = read_topology(&SysRoot::under(dir.path())).unwrap_err();
        assert!(matches!(err, Error::Missing { .. }), "{err}");
    }
}
