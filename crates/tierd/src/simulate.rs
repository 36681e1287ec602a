//! `tierd simulate`: compare policies on a simulated tiered-memory machine.

use std::path::PathBuf;

use anyhow::Context;
use tierd_sim::{RunOptions, Scenario, report, scenario::DEFAULT_SCENARIO};

/// Compare linux-swap, linux-demote and tierd on a simulated machine (the embedded default
/// scenario when no file is given).
#[derive(clap::Args, Debug)]
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
}

/// Runs `tierd simulate`.
#[allow(clippy::needless_pass_by_value)] // the CLI hands its parsed arguments over
pub fn run(args: SimulateArgs) -> anyhow::Result<()> {
    if args.print_default {
        print!("{DEFAULT_SCENARIO}");
        return Ok(());
    }
    let mut scenario = match &args.scenario {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading scenario {}", path.display()))?;
            Scenario::from_toml(&text).with_context(|| format!("in {}", path.display()))?
        }
        None => Scenario::default_scenario(),
    };
    if let Some(seed) = args.seed {
        scenario.seed = seed;
    }
    let opts =
        RunOptions { no_bounds: args.no_bounds, accesses: args.accesses, ..RunOptions::default() };
    let report = tierd_sim::simulate(&scenario, &opts, &mut |_, _| {})?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(());
    }
    print!("{}", report::table(&report));
    println!();
    for p in &report.policies {
        #[allow(clippy::cast_precision_loss)]
        let rate = report.accesses as f64 / p.wall_s.max(1e-9) / 1e6;
        println!("simulator speed, {:<13} {rate:>7.1} M accesses/s ({:.2} s)", p.policy, p.wall_s);
    }
    println!("trace drawn in {:.2} s, bounds in {:.2} s", report.draw_wall_s, report.bounds_wall_s);
    Ok(())
}
