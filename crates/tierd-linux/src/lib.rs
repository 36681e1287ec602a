//! tierd-linux (being written).

pub mod sys;
