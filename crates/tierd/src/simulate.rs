//! `tierd simulate`: compare policies on a simulated tiered-memory machine.

use std::fmt::Write as _;
use std::io::IsTerminal;
use std::path::PathBuf;

use anyhow::Context;
use tierd_sim::{RunOptions, Scenario, report, scenario::DEFAULT_SCENARIO};

/// Compare linux-swap, linux-demote and tierd on a simulated machine (the embedded default
/// scenario when no file is given).
#[derive(clap::Args, Debug)]
#[allow(clippy::struct_excessive_bools)] // command-line flags
pub struct SimulateArgs {
    /// Scenario file (TOML); see `scenarios/` and `--print-default`.
    pub scenario: Option<PathBuf>,
    /// Print the report as JSON (stable field names, deterministic for a scenario and seed).
    #[arg(long)]
    pub json: bool,
    /// Override the scenario's number of accesses.
    #[arg(long)]
    pub accesses: Option<u64>,
    /// Override the scenario's seed.
    #[arg(long)]
    pub seed: Option<u64>,
    /// Skip the static and Belady bounds (they cost time and 4 bytes per access).
    #[arg(long)]
    pub no_bounds: bool,
    /// Print the embedded default scenario and exit.
    #[arg(long)]
    pub print_default: bool,
    /// Measure the simulator: accesses/s per policy next to a bare loop that only draws the
    /// workload and touches a flat page array, the bounds' time, the whole run as it runs
    /// without --bench (accesses x policies per wall-clock second), bytes of state per page,
    /// and peak memory for 16 GiB of simulated 4 KiB pages.
    #[arg(long)]
    pub bench: bool,
    /// Write an SVG of per-node occupancy and fast-tier hit ratio over time, one line per
    /// policy.
    #[arg(long, value_name = "FILE.svg")]
    pub plot: Option<PathBuf>,
    /// Do not hold the trace in memory: draw or read it again for each policy (always on for
    /// `kind = "trace"` workloads; skips the Belady bound).
    #[arg(long)]
    pub stream: bool,
    /// Also write the drawn trace to FILE in the binary trace format, for `kind = "trace"`.
    #[arg(long, value_name = "FILE")]
    pub record: Option<PathBuf>,
    /// Convert a text trace (one page number or 0x byte address per line) to the binary
    /// format and exit; needs --output.
    #[arg(long, value_name = "TEXT", requires = "output")]
    pub import_trace: Option<PathBuf>,
    /// Where --import-trace writes the binary trace.
    #[arg(long, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Take the machine from a sysfs tree instead of the scenario's `[[node]]` tables: a
    /// fixture (`fixtures/dram-cxl-pmem`) or `/` for this host. Sizes from `MemTotal`,
    /// latency and bandwidth from HMAT (else latency scaled by SLIT distance from 80 ns),
    /// paths `auto`.
    #[arg(long, value_name = "DIR")]
    pub machine: Option<PathBuf>,
    /// Page size for --import-trace byte addresses.
    #[arg(long, default_value_t = 4096)]
    pub page_size: u32,
}

/// Writes `text` to stdout; a closed pipe (`| head`) is not an error.
fn emit(text: &str) -> anyhow::Result<()> {
    use std::io::Write;
    match std::io::stdout().lock().write_all(text.as_bytes()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => Ok(other?),
    }
}

/// `VmHWM` of this process, bytes (Linux only; `None` elsewhere).
fn peak_rss() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// 16 GiB of 4 KiB pages, every page touched once: the memory target of issue 4.
const BIG: &str = r#"
name = "16 GiB of pages"
accesses = 4194304
paths = "0"
policies = ["linux-swap"]
[[node]]
id = 0
capacity_mib = 16384
cpu = true
latency_ns = 80
[[process]]
[process.workload]
kind = "gups"
footprint_mib = 16384
prefault = true
"#;

fn bench(scenario: &Scenario) -> anyhow::Result<()> {
    let before = peak_rss();
    let big = Scenario::from_toml(BIG)?;
    let opts = RunOptions { no_bounds: true, ..RunOptions::default() };
    tierd_sim::simulate(&big, &opts, &mut |_, _| {})?;
    let after = peak_rss();
    let b = tierd_sim::bench::bench(scenario)?;
    let m = |x: f64| x / 1e6;
    println!("benchmark: {} ({} accesses, {} pages)", scenario.name, b.accesses, b.pages);
    println!("  bare loop (draw + touch a flat byte array) {:>8.1} M accesses/s", m(b.bare_per_s));
    println!("  drawing the trace buffer                   {:>8.1} M accesses/s", m(b.draw_per_s));
    for p in &b.policies {
        println!(
            "  {:<13} replay {:>8.1} M/s, draw+replay {:>8.1} M/s ({:.2}x the bare loop's time)",
            p.policy,
            m(p.replay_per_s),
            m(p.draw_and_replay_per_s),
            b.bare_per_s / p.draw_and_replay_per_s
        );
    }
    println!("  bounds (static top-k, belady+bypass)        {:>8.2} s", b.bounds_s);
    println!(
        "  whole run ({} policies and the bounds, {} threads, as `tierd simulate` runs it): \
         {:.2} s, {:.1} M accesses/s per policy ({:.2}x the bare loop's time per policy)",
        b.policies.len(),
        b.threads,
        b.whole_s,
        m(b.whole_per_policy_per_s),
        b.bare_per_s / b.whole_per_policy_per_s
    );
    println!(
        "  state: {} bytes per simulated page (+ {} bytes of trace per access)",
        b.state_bytes_per_page, b.trace_bytes_per_access
    );
    if let (Some(a), Some(z)) = (before, after) {
        println!(
            "  16 GiB of 4 KiB pages (4194304 pages, all touched): peak RSS {} MiB (before: {} MiB)",
            z >> 20,
            a >> 20
        );
    }
    Ok(())
}

/// The scenario's nodes from a sysfs tree (`--machine`).
fn nodes_from_sysfs(dir: &std::path::Path) -> anyhow::Result<Vec<tierd_sim::scenario::NodeSpec>> {
    let root = if dir == std::path::Path::new("/") {
        tierd_linux::SysRoot::default()
    } else {
        tierd_linux::SysRoot::under(dir)
    };
    let topo = tierd_linux::read_topology(&root)
        .with_context(|| format!("reading the machine under {}", dir.display()))?;
    let ids: Vec<usize> = topo.nodes.iter().map(|n| n.id.index()).collect();
    if ids.iter().enumerate().any(|(i, id)| i != *id) || topo.nodes.iter().any(|n| !n.has_memory) {
        anyhow::bail!(
            "the simulator needs online nodes 0, 1, 2, ... all with memory; {} has {}",
            dir.display(),
            topo.online
        );
    }
    let cpus = topo.cpu_nodes();
    let mut nodes = Vec::new();
    for n in &topo.nodes {
        let hmat = n.hmat.unwrap_or_default();
        let slit = cpus.iter().filter_map(|c| topo.distance(c, n.id)).min().unwrap_or(10);
        nodes.push(tierd_sim::scenario::NodeSpec {
            id: u32::try_from(n.id.index()).context("node id")?,
            capacity_mib: n
                .mem_total_bytes
                .with_context(|| format!("node {}: no MemTotal", n.id))?
                >> 20,
            cpu: n.has_cpu,
            latency_ns: hmat.read_latency_ns.unwrap_or(80 * u64::from(slit) / 10),
            bandwidth_mbps: hmat.read_bandwidth_mbps.unwrap_or(10_000),
            distance: Some(
                topo.nodes.iter().map(|m| topo.distance(n.id, m.id).unwrap_or(10)).collect(),
            ),
            watermarks_pages: None,
        });
    }
    Ok(nodes)
}

/// A file written at the end of a run, checked before the run starts: a long simulation
/// must not end in "cannot write" and lose its report. A new or regular file is written to a
/// temporary file beside it and renamed over it once complete (so an interrupted write, or
/// a failed import, leaves the old file whole); anything else (`/dev/null`, a pipe) is
/// opened now and written in place.
#[derive(Debug)]
enum Output {
    Replace { path: PathBuf, tmp: tempfile::NamedTempFile },
    InPlace { file: std::fs::File },
}

impl Output {
    fn prepare(path: &std::path::Path, what: &str) -> anyhow::Result<Output> {
        match std::fs::metadata(path) {
            Ok(meta) if meta.is_dir() => {
                anyhow::bail!("{what} {} is a directory; give a file name", path.display())
            }
            Ok(meta) if !meta.is_file() => {
                let file = std::fs::OpenOptions::new()
                    .write(true)
                    .open(path)
                    .with_context(|| format!("cannot write {what} {}", path.display()))?;
                return Ok(Output::InPlace { file });
            }
            _ => {}
        }
        let dir = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d,
            _ => std::path::Path::new("."),
        };
        let tmp =
            tempfile::Builder::new().prefix(".tierd-").tempfile_in(dir).with_context(|| {
                format!(
                    "cannot write {what} {}: cannot create a file in {}",
                    path.display(),
                    dir.display()
                )
            })?;
        Ok(Output::Replace { path: path.to_path_buf(), tmp })
    }

    fn writer(&mut self) -> &mut std::fs::File {
        match self {
            Output::Replace { tmp, .. } => tmp.as_file_mut(),
            Output::InPlace { file } => file,
        }
    }

    /// Puts the written file in place.
    fn commit(self) -> anyhow::Result<()> {
        use std::os::unix::fs::PermissionsExt;
        if let Output::Replace { path, tmp } = self {
            // tempfile creates 0600; an output is an ordinary file for its owner to share.
            tmp.as_file().set_permissions(std::fs::Permissions::from_mode(0o644))?;
            tmp.persist(&path)
                .map_err(|e| e.error)
                .with_context(|| format!("writing {}", path.display()))?;
        }
        Ok(())
    }
}

/// Whether two paths name the same file (same device and inode).
fn same_file(a: &std::fs::Metadata, b: &std::path::Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(b).is_ok_and(|m| m.dev() == a.dev() && m.ino() == a.ino())
}

/// `--import-trace`: text to binary. The input is opened and checked first; the output is
/// never opened before that, is refused when it is the input, and replaces the old file only
/// once the whole input converted.
fn import(input: &std::path::Path, output: &std::path::Path, page_size: u32) -> anyhow::Result<()> {
    let file =
        std::fs::File::open(input).map_err(|e| tierd::input::InputError::from_io(input, e))?;
    let meta = file.metadata().with_context(|| input.display().to_string())?;
    // A pipe is a fine source (`<(zcat trace.gz)`); a device or a directory is not.
    if !meta.is_file() && !std::os::unix::fs::FileTypeExt::is_fifo(&meta.file_type()) {
        let kind = tierd::input::kind_of(&meta).unwrap_or("not a regular file");
        anyhow::bail!("{} is {kind}, not a text trace", input.display());
    }
    if same_file(&meta, output) {
        anyhow::bail!(
            "--output {} is the --import-trace input itself: writing it would destroy the \
             trace; give another file",
            output.display()
        );
    }
    let mut out = Output::prepare(output, "--output")?;
    let reader = std::io::BufReader::new(file);
    let h = {
        let writer = std::io::BufWriter::new(out.writer());
        tierd_sim::tracefile::import_text(reader, writer, page_size)
            .with_context(|| format!("importing {}", input.display()))?
    };
    out.commit()?;
    emit(&format!("{}: {} accesses to {} pages\n", output.display(), h.accesses, h.pages))
}

/// `--record`: the drawn trace to a binary file.
fn record(scenario: &Scenario, accesses: u64, mut out: Output) -> anyhow::Result<()> {
    let mut s = scenario.clone();
    s.accesses = accesses;
    let trace = tierd_sim::workload::draw_within(&s, tierd::limits::memory_budget())?;
    let page_size = u32::try_from(s.page_size).context("page size")?;
    let mut w = std::io::BufWriter::new(out.writer());
    tierd_sim::tracefile::write_trace(&mut w, page_size, u64::from(trace.pages()), &trace.accesses)
        .and_then(|()| std::io::Write::flush(&mut w))
        .context("writing the --record trace")?;
    drop(w);
    out.commit()
}

/// Runs `tierd simulate`.
#[allow(clippy::needless_pass_by_value)] // the CLI hands its parsed arguments over
#[allow(clippy::too_many_lines)] // one linear sequence: check outputs, run, report, write
pub fn run(args: SimulateArgs) -> anyhow::Result<()> {
    if args.print_default {
        return emit(DEFAULT_SCENARIO);
    }
    if let (Some(input), Some(output)) = (&args.import_trace, &args.output) {
        return import(input, output, args.page_size);
    }
    let mut scenario = match &args.scenario {
        Some(path) => {
            let text = tierd::input::read_text(
                path,
                tierd::input::Links::Follow,
                tierd::input::MAX_TEXT_BYTES,
                "a scenario",
            )?;
            let mut s =
                Scenario::from_toml(&text).with_context(|| format!("in {}", path.display()))?;
            s.open_traces(path.parent()).with_context(|| format!("in {}", path.display()))?;
            s
        }
        None => Scenario::default_scenario(),
    };
    if let Some(seed) = args.seed {
        scenario.seed = seed;
    }
    let from_file = scenario.machine.take().map(|m| {
        let base = args.scenario.as_deref().and_then(std::path::Path::parent);
        base.map_or(m.clone(), |b| b.join(&m))
    });
    if let Some(dir) = args.machine.as_ref().or(from_file.as_ref()) {
        scenario.node = nodes_from_sysfs(dir)?;
        if args.machine.is_some() {
            scenario.paths = tierd_sim::scenario::Paths::Text("auto".into());
        }
        scenario
            .check()
            .map_err(|e| anyhow::anyhow!("with the machine of {}: {e}", dir.display()))?;
    }
    if args.bench {
        if let Some(a) = args.accesses {
            scenario.accesses = a;
        }
        return bench(&scenario);
    }
    let accesses = args.accesses.unwrap_or(scenario.accesses);
    let opts = RunOptions {
        no_bounds: args.no_bounds,
        accesses: args.accesses,
        sample_every: if args.plot.is_some() { (accesses / 400).max(1) } else { 0 },
        stream: args.stream,
        memory_budget: tierd::limits::memory_budget(),
        ..RunOptions::default()
    };
    // Outputs are checked before the run, which may take minutes.
    let plot = args.plot.as_deref().map(|p| Output::prepare(p, "--plot")).transpose()?;
    if let Some(path) = &args.record {
        record(&scenario, accesses, Output::prepare(path, "--record")?)?;
    }
    let show_progress = std::io::stderr().is_terminal();
    let mut progress = |policy: tierd_sim::PolicyName, done: u64| {
        if show_progress {
            #[allow(clippy::cast_precision_loss)]
            let pct = 100.0 * done as f64 / accesses.max(1) as f64;
            eprint!("\r{:<13} {pct:>5.1}% of {accesses} accesses", policy.as_str());
        }
    };
    let report = tierd_sim::simulate(&scenario, &opts, &mut progress)?;
    if show_progress {
        eprint!("\r{:<60}\r", "");
    }
    if let Some(mut out) = plot {
        std::io::Write::write_all(
            out.writer(),
            tierd_sim::plot::svg(&report, &report.node_pages).as_bytes(),
        )
        .context("writing the --plot SVG")?;
        out.commit()?;
    }
    if args.json {
        return emit(&format!("{}\n", serde_json::to_string_pretty(&report)?));
    }
    let mut out = report::table(&report);
    out.push('\n');
    for p in &report.policies {
        #[allow(clippy::cast_precision_loss)]
        let rate = report.accesses as f64 / p.wall_s.max(1e-9) / 1e6;
        let _ = writeln!(
            out,
            "simulator speed, {:<13} {rate:>7.1} M accesses/s ({:.2} s)",
            p.policy, p.wall_s
        );
    }
    let _ = writeln!(
        out,
        "trace drawn in {:.2} s, bounds in {:.2} s",
        report.draw_wall_s, report.bounds_wall_s
    );
    #[allow(clippy::cast_precision_loss)]
    let whole =
        (report.accesses * report.policies.len() as u64) as f64 / report.wall_s.max(1e-9) / 1e6;
    let _ = writeln!(
        out,
        "whole run {:.2} s on {} threads: {whole:.1} M accesses/s per policy",
        report.wall_s, report.threads
    );
    emit(&out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> PathBuf {
        PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../fixtures")).join(name)
    }

    #[test]
    fn the_test_bed_fixture_becomes_three_nodes() {
        let nodes = nodes_from_sysfs(&fixture("dram-cxl-pmem")).unwrap();
        let summary: Vec<(u32, u64, bool, u64, u64)> = nodes
            .iter()
            .map(|n| (n.id, n.capacity_mib, n.cpu, n.latency_ns, n.bandwidth_mbps))
            .collect();
        assert_eq!(
            summary,
            [(0, 512, true, 80, 20_000), (1, 512, false, 180, 8_000), (2, 512, false, 350, 4_000)]
        );
        assert_eq!(nodes[0].distance.as_deref(), Some(&[10, 20, 30][..]));
    }

    #[test]
    fn machines_the_simulator_cannot_number_are_refused() {
        let err = nodes_from_sysfs(&fixture("offline-node")).unwrap_err().to_string();
        assert!(err.contains("0-1,3"), "{err}");
    }

    #[test]
    fn every_example_scenario_loads_its_machine() {
        let path = PathBuf::from(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../scenarios/fixture-machine.toml"
        ));
        let mut s = Scenario::from_toml(&std::fs::read_to_string(&path).unwrap()).unwrap();
        let dir = path.parent().unwrap().join(s.machine.take().unwrap());
        s.node = nodes_from_sysfs(&dir).unwrap();
        s.check().unwrap();
        let opts = RunOptions { accesses: Some(20_000), no_bounds: true, ..RunOptions::default() };
        let r = tierd_sim::simulate(&s, &opts, &mut |_, _| {}).unwrap();
        assert_eq!(r.paths, "0 -> 1 [2], 1 -> 2");
    }
}
