//! Placeholder: the distributed tier (issue 6): forwarding to globals over forwardrpc, the consistent-hash proxy ring, health checks.
//!
//! Nothing lives here yet; the crate exists so the workspace shows the whole data path.
