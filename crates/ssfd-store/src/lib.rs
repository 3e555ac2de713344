//! Placeholder: the durable span store and log index under data_dir (issue 4): spans in blocks in redb, logs in tantivy, retention and size eviction.
//!
//! Nothing lives here yet; the crate exists so the workspace shows the whole data path.
