//! One module per command group.

pub mod connector;
pub mod extract;
pub mod serve;
