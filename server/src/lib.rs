//! # agnes-server
//!
//! The Agnes server: it will merge every published extract into one catalog and serve it
//! over REST with authentication and group-based access (see `docs/` and the server
//! issue). Today it only re-exports what it builds on, so the workspace layout is final.

pub use agnes_runtime as runtime;
