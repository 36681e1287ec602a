//! The `tierd` program's library half: everything the binary wires together.
//!
//! - [`state`]: the state file and the owner lock;
//! - [`input`]: checked, bounded reads of the files a user names;
//! - [`paths`]: the live path table tied to its state file;
//! - [`control`]: the Unix control socket between the CLI and a long-running owner;
//! - [`mount`]: the sysfs-compatible FUSE tree;
//! - [`commands`]: the subcommands, returning text for the binary to print.

pub mod commands;
pub mod config;
pub mod control;
pub mod daemon;
pub mod input;
pub mod limits;
pub mod listener;
pub mod metrics;
pub mod mount;
pub mod paths;
pub mod report;
pub mod state;
