//! tierd-sim (being written).
