//! tierd-core: the pure logic of tierd.
//!
//! Everything here is free of I/O so that the same code drives the simulator
//! (`tierd-sim`) and a real host (`tierd-linux`): node ids and masks, the machine
//! topology, the per-node migration path table with the exact semantics of the
//! 2019 kernel RFC "node: Define and export memory migration path", whole-graph
//! validation, the automatic default derived from memory tiers, and the policy
//! that decides what to demote and promote.

pub mod auto;
pub mod backend;
pub mod backstop;
pub mod graph;
pub mod kstrtol;
pub mod node;
pub mod path;
pub mod policy;
pub mod quote;
pub mod topology;

pub use graph::{GraphError, PathGraph};
pub use node::{MAX_NUMNODES, NodeId, NodeMask, NodeMaskError};
pub use path::{PathTable, StoreError, TERMINAL};
pub use topology::{NodeInfo, Topology};
