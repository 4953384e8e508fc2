//! One module per command group.

pub mod admin;
pub mod analyst;
pub mod connector;
pub mod extract;
pub mod pull;
pub mod push;
pub mod scaffold;
pub mod serve;
pub mod snapshot;
