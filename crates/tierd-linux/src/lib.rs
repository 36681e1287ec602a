//! tierd-linux: tierd's seam to a real Linux host.
//!
//! Every reader here takes a [`SysRoot`], the pair of directories that stand for `/sys` and
//! `/proc`, so that the same code reads the running kernel and a fixture tree written by the
//! [`fixture`](crate#features) builders (feature `fixture`) or committed under `fixtures/` at
//! the repository root. The readers follow one rule for absent data: a file the running
//! kernel may lack (HMAT, `memory_tiering`, `demotion_enabled`) or that vanishes while it is
//! read (a node went offline: `ENOENT`/`ENODEV`) is `None`, never zero and never an error; a
//! file that is present but says something tierd cannot parse is an [`Error`] naming the file
//! and the bad text.
//!
//! # Features
//!
//! - `fixture`: the `fixture` module, builders that write whole sysfs/procfs trees for a
//!   described machine, and the named machines behind the committed fixture trees.

pub mod backend;
pub mod error;
#[cfg(any(test, feature = "fixture"))]
pub mod fixture;
pub mod folio;
pub mod kernel;
pub mod meminfo;
pub mod mover;
mod read;
pub mod root;
pub mod scope;
pub mod sys;
pub mod topology;
pub mod tracker;
pub mod vmstat;
pub mod zoneinfo;

pub use error::Error;
pub use meminfo::{NodeMeminfo, mem_available_bytes, read_node_meminfo};
pub use root::SysRoot;
pub use topology::read_topology;
pub use vmstat::{read_node_vmstat, read_vmstat};
pub use zoneinfo::{Watermarks, read_zoneinfo};
