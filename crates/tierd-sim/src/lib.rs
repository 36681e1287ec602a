//! tierd-sim: a fast simulated tiered-memory machine, a model of Linux reclaim for the
//! baselines, and the `tierd` policy running on it through the same
//! [`tierd_core::backend::Backend`] trait the daemon uses.
//!
//! A run draws the scenario's workload once into a compact trace ([`workload`]), replays it
//! under each policy on a fresh [`machine::Machine`], and computes two bounds from the same
//! trace ([`bounds`]). Nothing here touches the operating system.

pub mod bench;
pub mod bounds;
pub mod machine;
pub mod plot;
pub mod report;
pub mod run;
pub mod scenario;
pub mod tracefile;
pub mod workload;
pub mod zipf;

pub use run::{PolicyResult, Report, RunOptions, SimError, simulate};
pub use scenario::{PolicyName, Scenario};
