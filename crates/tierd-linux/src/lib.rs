//! tierd-linux (being written).
