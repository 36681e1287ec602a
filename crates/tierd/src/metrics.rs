//! The metrics endpoint: OpenMetrics text over HTTP on a loopback address (default
//! `127.0.0.1:9877`), and the metric families the daemon updates.
//!
//! tierd's own counters sit beside the kernel's (`pgdemote_*`, `pgpromote_*`, `pgmigrate_*`,
//! `pswpin`, `pswpout`, copied from `/proc/vmstat` at each loop), so a dashboard shows what
//! tierd moved next to what the kernel did. The HTTP server is deliberately tiny: `GET
//! /metrics` only, loopback by default, one request per connection; it is not an HTTP
//! framework. Any local user can connect, so clients are served concurrently, each within
//! [`DEADLINE`] and with at most [`MAX_REQUEST_BYTES`] of request and headers
//! ([`crate::listener`]): a client sending a byte a second delays no scrape.

use std::io;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use crate::listener::{Client, ClientError, Limits, Listener, Warnings};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::metrics::{MetricType, TypedMetric};
use prometheus_client::registry::{Metric, Registry};

/// The default listen address.
pub const DEFAULT_ADDR: &str = "127.0.0.1:9877";
/// How long one HTTP client may take for its request and the answer.
pub const DEADLINE: Duration = Duration::from_secs(5);
/// The longest request line and headers, bytes.
pub const MAX_REQUEST_BYTES: usize = 8192;
/// Clients served at once.
pub const MAX_CLIENTS: usize = 32;

/// A migration edge.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Edge {
    /// Source node.
    pub from: u32,
    /// Destination node.
    pub to: u32,
}

/// A node.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct NodeLabel {
    /// The node.
    pub node: u32,
}

/// A per-page failure.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrnoLabel {
    /// The errno's name (`EBUSY`).
    pub errno: String,
}

/// The backstop in force (`tierd_backstop{mechanism="kernel-demotion",repair="yes"} 1`).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BackstopLabel {
    /// `kernel-demotion` or `none`.
    pub mechanism: String,
    /// `yes` when pages the kernel may put off the migration paths are moved on.
    pub repair: String,
}

/// What moved pages (`tierd_moved_bytes_total{mover="move_pages"}`).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct MoverLabel {
    /// [`MOVER_MOVE_PAGES`] or [`MOVER_KERNEL_DEMOTION`].
    pub mover: String,
}

/// tierd's own mover: `move_pages(2)` calls on the host, the simulated machine's
/// `move_pages` under `run --sim`.
pub const MOVER_MOVE_PAGES: &str = "move_pages";
/// The kernel's own demotion, tierd's backstop: `pgdemote_kswapd`, `pgdemote_direct` and
/// `pgdemote_khugepaged` since tierd started (zero while the backstop is off).
pub const MOVER_KERNEL_DEMOTION: &str = "kernel-demotion";

/// The `/proc/vmstat` counters of the kernel's demotion (base pages).
const KERNEL_DEMOTIONS: [&str; 3] = ["pgdemote_kswapd", "pgdemote_direct", "pgdemote_khugepaged"];

/// Which way a move went, for the per-edge counters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MoveKind {
    /// Down a migration path (target or fallback).
    Demotion,
    /// Up, towards a CPU node.
    Promotion,
    /// Off a node that no path reaches but the kernel's backstop can fill, onto the paths.
    Repair,
}

/// A kernel vmstat counter.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct VmstatLabel {
    /// The `/proc/vmstat` key.
    pub counter: String,
}

/// Every family tierd exports.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    /// The series names the families export (see [`Metrics::series`]).
    series: Vec<String>,
    /// Pages demoted per edge.
    pub demoted_pages: Family<Edge, Counter>,
    /// Bytes demoted per edge.
    pub demoted_bytes: Family<Edge, Counter>,
    /// Pages promoted per edge.
    pub promoted_pages: Family<Edge, Counter>,
    /// Bytes promoted per edge.
    pub promoted_bytes: Family<Edge, Counter>,
    /// Pages moved off stranded nodes onto the paths, per edge.
    pub repaired_pages: Family<Edge, Counter>,
    /// Bytes moved off stranded nodes onto the paths, per edge.
    pub repaired_bytes: Family<Edge, Counter>,
    /// The backstop in force: one series at 1.
    pub backstop: Family<BackstopLabel, Gauge>,
    /// Per-page move failures by errno.
    pub move_failures: Family<ErrnoLabel, Counter>,
    /// Free bytes per node.
    pub node_free_bytes: Family<NodeLabel, Gauge>,
    /// Total bytes per node.
    pub node_total_bytes: Family<NodeLabel, Gauge>,
    /// Time one tracker sample took.
    pub tracker_scan_seconds: Histogram,
    /// Bytes of the processes in scope that the last tracker sample covered.
    pub tracked_bytes: Gauge<u64, AtomicU64>,
    /// Time one daemon loop took.
    pub loop_seconds: Histogram,
    /// tierd's CPU time per GiB of tracked memory per minute, in microseconds.
    pub cpu_us_per_gib_minute: Gauge<u64, AtomicU64>,
    /// Demotion the last loop left for later (its time was spent), in pages.
    pub housekeeping_backlog_pages: Gauge<u64, AtomicU64>,
    /// The kernel's own counters, copied from `/proc/vmstat`.
    pub kernel_vmstat: Family<VmstatLabel, Gauge>,
    /// Bytes moved per mover: tierd's `move_pages` and the kernel's demotion (the
    /// backstop), so a dashboard shows who moved how much.
    pub moved_bytes: Family<MoverLabel, Counter>,
    /// The kernel's demotion counters as last seen (`None` before the first loop): what
    /// the kernel demoted before tierd started is not the backstop's work.
    kernel_demoted_seen: std::sync::Mutex<Option<u64>>,
}

/// The `/proc/vmstat` counters mirrored as `tierd_kernel_vmstat{counter=...}`.
pub const KERNEL_COUNTERS: &[&str] = &[
    "pgdemote_kswapd",
    "pgdemote_direct",
    "pgdemote_khugepaged",
    "pgpromote_success",
    "pgpromote_candidate",
    "pgmigrate_success",
    "pgmigrate_fail",
    "pswpin",
    "pswpout",
];

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

/// Each family's help text, by its name (the field's).
const HELP: &[(&str, &str)] = &[
    ("demoted_pages", "Pages tierd demoted, per edge"),
    ("demoted_bytes", "Bytes tierd demoted, per edge"),
    ("promoted_pages", "Pages tierd promoted, per edge"),
    ("promoted_bytes", "Bytes tierd promoted, per edge"),
    (
        "repaired_pages",
        "Pages tierd moved off nodes no migration path reaches (the backstop's), per edge",
    ),
    (
        "repaired_bytes",
        "Bytes tierd moved off nodes no migration path reaches (the backstop's), per edge",
    ),
    ("backstop", "What keeps reclaim from swapping while tierd falls behind (the series at 1)"),
    ("move_failures", "Per-page move failures by errno"),
    ("node_free_bytes", "Free memory per node"),
    ("node_total_bytes", "Memory per node"),
    ("tracker_scan_seconds", "Time one access-tracker sample took"),
    ("tracked_bytes", "Memory of the processes in scope that the last tracker sample covered"),
    ("loop_seconds", "Time one daemon loop took"),
    ("cpu_us_per_gib_minute", "tierd CPU time per GiB of tracked memory per minute, microseconds"),
    (
        "housekeeping_backlog_pages",
        "Demotion the last loop left for later, its time spent (housekeeping, repair, past the tick limit), pages",
    ),
    ("kernel_vmstat", "The kernel's own migration and swap counters from /proc/vmstat"),
    (
        "moved_bytes",
        "Bytes moved per mover: tierd's move_pages, the kernel's demotion (the backstop) since tierd started",
    ),
];

/// The help text of family `name` (a family without one is a bug the tests catch: every
/// test that builds [`Metrics`] registers them all).
fn help(name: &str) -> &'static str {
    HELP.iter()
        .find(|(n, _)| *n == name)
        .map_or_else(|| panic!("no help text for {name}"), |(_, h)| h)
}

/// The prefix of every family.
const PREFIX: &str = "tierd";

/// The registry being filled, with the series names each family will export: an empty
/// family (no label set yet) encodes to nothing, so the names cannot be read back from an
/// encoding of a new registry.
struct Registering {
    registry: Registry,
    series: Vec<String>,
}

impl Registering {
    fn register<M: Metric + TypedMetric>(&mut self, name: &str, help: &str, metric: M) {
        // The sample names OpenMetrics gives each type (prometheus-client's text encoder).
        let suffixes: &[&str] = match M::TYPE {
            MetricType::Counter => &["_total"],
            MetricType::Histogram => &["_bucket", "_sum", "_count"],
            _ => &[""],
        };
        self.series.extend(suffixes.iter().map(|s| format!("{PREFIX}_{name}{s}")));
        self.registry.register(name, help, metric);
    }
}

impl Metrics {
    /// All families, registered under the `tierd_` prefix.
    pub fn new() -> Metrics {
        let mut registry =
            Registering { registry: Registry::with_prefix(PREFIX), series: Vec::new() };
        let buckets = || prometheus_client::metrics::histogram::exponential_buckets(1e-4, 2.0, 16);
        let m = Metrics {
            registry: Registry::default(),
            series: Vec::new(),
            demoted_pages: Family::default(),
            demoted_bytes: Family::default(),
            promoted_pages: Family::default(),
            promoted_bytes: Family::default(),
            repaired_pages: Family::default(),
            repaired_bytes: Family::default(),
            backstop: Family::default(),
            move_failures: Family::default(),
            node_free_bytes: Family::default(),
            node_total_bytes: Family::default(),
            tracker_scan_seconds: Histogram::new(buckets()),
            tracked_bytes: Gauge::default(),
            loop_seconds: Histogram::new(buckets()),
            cpu_us_per_gib_minute: Gauge::default(),
            housekeeping_backlog_pages: Gauge::default(),
            kernel_vmstat: Family::default(),
            moved_bytes: Family::default(),
            kernel_demoted_seen: std::sync::Mutex::new(None),
        };
        // Every family under its field's name, with its help from `HELP`.
        macro_rules! register {
            ($($field:ident),+ $(,)?) => {
                $( registry.register(stringify!($field), help(stringify!($field)), m.$field.clone()); )+
            };
        }
        register!(
            demoted_pages,
            demoted_bytes,
            promoted_pages,
            promoted_bytes,
            repaired_pages,
            repaired_bytes,
            backstop,
            move_failures,
            node_free_bytes,
            node_total_bytes,
            tracker_scan_seconds,
            tracked_bytes,
            loop_seconds,
            cpu_us_per_gib_minute,
            housekeeping_backlog_pages,
            kernel_vmstat,
            moved_bytes,
        );
        Metrics { registry: registry.registry, series: registry.series, ..m }
    }

    /// Every series name a scrape can hold (`tierd_demoted_pages_total`,
    /// `tierd_loop_seconds_bucket`, ...), whether or not its family has a sample yet: what
    /// a dashboard or an alert may query.
    pub fn series(&self) -> &[String] {
        &self.series
    }

    /// Records moved pages on an edge.
    pub fn record_move(&self, kind: MoveKind, from: u32, to: u32, pages: u64, page_size: u64) {
        let edge = Edge { from, to };
        let (p, b) = match kind {
            MoveKind::Demotion => (&self.demoted_pages, &self.demoted_bytes),
            MoveKind::Promotion => (&self.promoted_pages, &self.promoted_bytes),
            MoveKind::Repair => (&self.repaired_pages, &self.repaired_bytes),
        };
        p.get_or_create(&edge).inc_by(pages);
        b.get_or_create(&edge).inc_by(pages.saturating_mul(page_size));
        self.moved_bytes
            .get_or_create(&MoverLabel { mover: MOVER_MOVE_PAGES.into() })
            .inc_by(pages.saturating_mul(page_size));
    }

    /// Sets the backstop series: `label` at 1, any other at 0.
    pub fn set_backstop(&self, label: &BackstopLabel) {
        for mechanism in ["kernel-demotion", "none"] {
            for repair in ["yes", "no"] {
                let l = BackstopLabel { mechanism: mechanism.into(), repair: repair.into() };
                if l != *label && self.backstop.get(&l).is_some() {
                    self.backstop.get_or_create(&l).set(0);
                }
            }
        }
        self.backstop.get_or_create(label).set(1);
    }

    /// Copies the kernel counters tierd mirrors out of a `/proc/vmstat` map, and adds what
    /// the kernel demoted since the last call to the kernel-demotion mover's bytes
    /// (`page_size`: the kernel's base page, the unit of its counters). The first call only
    /// takes the counters as they stand.
    pub fn record_vmstat(&self, vmstat: &std::collections::BTreeMap<String, u64>, page_size: u64) {
        for key in KERNEL_COUNTERS {
            if let Some(v) = vmstat.get(*key) {
                let label = VmstatLabel { counter: (*key).to_string() };
                self.kernel_vmstat.get_or_create(&label).set(i64::try_from(*v).unwrap_or(i64::MAX));
            }
        }
        let demoted: u64 = KERNEL_DEMOTIONS.iter().filter_map(|k| vmstat.get(*k)).sum();
        let mut seen =
            self.kernel_demoted_seen.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let mover =
            self.moved_bytes.get_or_create(&MoverLabel { mover: MOVER_KERNEL_DEMOTION.into() });
        if let Some(last) = *seen {
            // A counter that went back (it cannot, short of a reboot) restarts the count.
            mover.inc_by(demoted.saturating_sub(last).saturating_mul(page_size));
        }
        *seen = Some(demoted);
    }

    /// The OpenMetrics text.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("writing to a String cannot fail");
        out
    }
}

/// The HTTP endpoint; stops when dropped.
#[derive(Debug)]
pub struct Endpoint {
    addr: SocketAddr,
    listener: Listener,
}

impl Endpoint {
    /// Listens on `addr` and serves `metrics`. A non-loopback address is allowed but logged:
    /// the endpoint has no authentication.
    pub fn start(addr: &str, metrics: Arc<Metrics>) -> io::Result<Endpoint> {
        let listener = TcpListener::bind(addr).map_err(|e| {
            io::Error::new(e.kind(), format!("cannot listen for metrics on {addr}: {e}"))
        })?;
        let addr = listener.local_addr()?;
        if !addr.ip().is_loopback() {
            tracing::warn!(%addr, "metrics endpoint is reachable beyond this host and has no authentication");
        }
        let limits =
            Limits { max_clients: MAX_CLIENTS, deadline: DEADLINE, max_request: MAX_REQUEST_BYTES };
        let listener = Listener::spawn(
            "tierd-metrics",
            listener,
            limits,
            Arc::new(Warnings::new("metrics endpoint")),
            move |client: &mut Client<TcpStream>| serve(client, &metrics),
            |client: &mut Client<TcpStream>| {
                let _ = respond(client, "503 Service Unavailable", "text/plain", "busy\n");
            },
        )?;
        Ok(Endpoint { addr, listener })
    }

    /// The bound address (useful with port 0).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Clients being served now.
    pub fn active_clients(&self) -> usize {
        self.listener.active()
    }
}

fn respond(
    client: &mut Client<TcpStream>,
    status: &str,
    ctype: &str,
    body: &str,
) -> io::Result<()> {
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    client.write_all(head.as_bytes())?;
    client.write_all(body.as_bytes())
}

fn serve(client: &mut Client<TcpStream>, metrics: &Metrics) -> Result<(), ClientError> {
    let request = client.read_until(b"\n")?;
    // Drain the headers, within the same deadline and size limit; none are needed.
    let mut header_bytes = request.len();
    loop {
        let line = client.read_until(b"\n")?;
        header_bytes += line.len() + 1;
        if header_bytes > MAX_REQUEST_BYTES {
            let _ = respond(client, "431 Request Header Fields Too Large", "text/plain", "\n");
            return Err(ClientError::TooLarge(MAX_REQUEST_BYTES));
        }
        if line.is_empty() || line == b"\r" {
            break;
        }
    }
    let request = String::from_utf8_lossy(&request);
    let mut parts = request.split_whitespace();
    let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let (status, ctype, body) = match (method, path) {
        ("GET", "/metrics") => (
            "200 OK",
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
            metrics.encode(),
        ),
        ("GET", _) => ("404 Not Found", "text/plain", "try /metrics\n".to_string()),
        _ => ("405 Method Not Allowed", "text/plain", "GET only\n".to_string()),
    };
    Ok(respond(client, status, ctype, &body)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};

    fn get(addr: SocketAddr, path: &str) -> String {
        let mut s = TcpStream::connect(addr).unwrap();
        write!(s, "GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        out
    }

    #[test]
    fn serves_openmetrics_with_tierd_and_kernel_counters() {
        let metrics = Arc::new(Metrics::new());
        metrics.record_move(MoveKind::Demotion, 0, 1, 10, 4096);
        metrics.record_move(MoveKind::Promotion, 1, 0, 2, 4096);
        metrics.record_move(MoveKind::Repair, 1, 2, 5, 4096);
        let none = BackstopLabel { mechanism: "none".into(), repair: "no".into() };
        metrics.set_backstop(&none);
        metrics.set_backstop(&BackstopLabel {
            mechanism: "kernel-demotion".into(),
            repair: "yes".into(),
        });
        metrics.move_failures.get_or_create(&ErrnoLabel { errno: "EBUSY".into() }).inc();
        let vmstat = [("pgdemote_kswapd".to_string(), 7u64), ("nr_free_pages".into(), 1)].into();
        metrics.record_vmstat(&vmstat, 4096);
        // The kernel demoted 3 more pages (1 direct) since the first look: 12 KiB are the
        // backstop's; the 7 from before tierd's first loop are not.
        let later =
            [("pgdemote_kswapd".to_string(), 9u64), ("pgdemote_direct".to_string(), 1)].into();
        metrics.record_vmstat(&later, 4096);
        metrics.housekeeping_backlog_pages.set(3);
        let ep = Endpoint::start("127.0.0.1:0", Arc::clone(&metrics)).unwrap();
        let body = get(ep.addr(), "/metrics");
        assert!(body.starts_with("HTTP/1.1 200 OK"), "{body}");
        for want in [
            "tierd_demoted_pages_total{from=\"0\",to=\"1\"} 10",
            "tierd_demoted_bytes_total{from=\"0\",to=\"1\"} 40960",
            "tierd_promoted_pages_total{from=\"1\",to=\"0\"} 2",
            "tierd_repaired_pages_total{from=\"1\",to=\"2\"} 5",
            "tierd_backstop{mechanism=\"kernel-demotion\",repair=\"yes\"} 1",
            "tierd_backstop{mechanism=\"none\",repair=\"no\"} 0",
            "tierd_move_failures_total{errno=\"EBUSY\"} 1",
            "tierd_kernel_vmstat{counter=\"pgdemote_kswapd\"} 9",
            // 10 + 2 + 5 pages moved by tierd, 3 by the kernel's demotion.
            "tierd_moved_bytes_total{mover=\"move_pages\"} 69632",
            "tierd_moved_bytes_total{mover=\"kernel-demotion\"} 12288",
            "tierd_housekeeping_backlog_pages 3",
            "# EOF",
        ] {
            assert!(body.contains(want), "missing {want:?} in\n{body}");
        }
        assert!(
            !body.contains("nr_free_pages"),
            "only the migration and swap counters are mirrored"
        );
        assert!(get(ep.addr(), "/").starts_with("HTTP/1.1 404"));
    }

    /// `series` names what the encoder writes: with a sample in every family, each sample
    /// line's name is one of them, and each of them is written.
    #[test]
    fn series_are_the_encoded_sample_names() {
        let m = Metrics::new();
        m.record_move(MoveKind::Demotion, 0, 1, 1, 4096);
        m.record_move(MoveKind::Promotion, 1, 0, 1, 4096);
        m.record_move(MoveKind::Repair, 1, 2, 1, 4096);
        m.set_backstop(&BackstopLabel { mechanism: "kernel-demotion".into(), repair: "no".into() });
        m.move_failures.get_or_create(&ErrnoLabel { errno: "EBUSY".into() }).inc();
        m.node_free_bytes.get_or_create(&NodeLabel { node: 0 }).set(1);
        m.node_total_bytes.get_or_create(&NodeLabel { node: 0 }).set(2);
        m.tracker_scan_seconds.observe(0.01);
        m.tracked_bytes.set(5);
        m.loop_seconds.observe(0.02);
        m.cpu_us_per_gib_minute.set(6);
        m.housekeeping_backlog_pages.set(7);
        m.record_vmstat(&[("pswpin".to_string(), 8u64)].into(), 4096);
        let text = m.encode();
        let written: std::collections::BTreeSet<&str> = text
            .lines()
            .filter(|l| !l.starts_with('#'))
            .map(|l| l.split(['{', ' ']).next().unwrap())
            .collect();
        let series: std::collections::BTreeSet<&str> =
            m.series().iter().map(String::as_str).collect();
        assert_eq!(written, series, "{text}");
    }

    #[test]
    fn a_client_sending_a_byte_a_second_delays_no_scrape() {
        let ep = Endpoint::start("127.0.0.1:0", Arc::new(Metrics::new())).unwrap();
        let mut slow = TcpStream::connect(ep.addr()).unwrap();
        slow.write_all(b"G").unwrap();
        std::thread::sleep(Duration::from_millis(100));
        let t0 = std::time::Instant::now();
        assert!(get(ep.addr(), "/metrics").starts_with("HTTP/1.1 200 OK"));
        assert!(t0.elapsed() < Duration::from_secs(1), "{:?}", t0.elapsed());
        drop(slow);
        let mut huge = TcpStream::connect(ep.addr()).unwrap();
        let line = format!("GET /{} HTTP/1.1\r\n\r\n", "x".repeat(100_000));
        let _ = huge.write_all(line.as_bytes());
        let mut out = String::new();
        let _ = huge.read_to_string(&mut out);
        assert!(!out.contains("200 OK"), "{out}");
    }
}
