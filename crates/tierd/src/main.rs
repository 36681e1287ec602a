//! The `tierd` command line (being written).
fn main() {}
