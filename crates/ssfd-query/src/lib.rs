//! Placeholder: the read side (issue 4): the /api/v1 trace, log and SLO queries, the Jaeger-compatible API and the web UI; it never writes.
//!
//! Nothing lives here yet; the crate exists so the workspace shows the whole data path.
