//! The automatic default path graph, derived from the topology as the kernel derives its
//! demotion targets (being written).
