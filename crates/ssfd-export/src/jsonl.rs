//! The `jsonl` sink (SPEC 9): one JSON object per flushed metric per line, appended to
//! a file: `{"name","type","value","tags","timestamp","hostname"}` plus `message` for
//! a status.

use ssfd_engine::{Flush, FlushedType, MetricSink};
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::Path;

pub struct JsonlSink {
    name: String,
    hostname: String,
    file: File,
    /// The write error of the last flush.
    error: Option<String>,
    /// The interval's lines, written with one `write_all`.
    buffer: Vec<u8>,
}

impl JsonlSink {
    pub fn open(name: &str, path: &Path, hostname: &str) -> std::io::Result<JsonlSink> {
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        Ok(JsonlSink {
            name: name.to_string(),
            hostname: hostname.to_string(),
            file,
            error: None,
            buffer: Vec::new(),
        })
    }
}

impl MetricSink for JsonlSink {
    fn name(&self) -> &str {
        &self.name
    }

    /// Writes the interval's lines in chunks of whole lines; when a write fails the file
    /// is cut back to where the interval started, so an interval counted as failed
    /// leaves no part of itself (and no half line) for the next one to append to.
    fn flush(&mut self, flush: &Flush) {
        const CHUNK: usize = 1 << 20;
        let before = self.file.metadata().map(|m| m.len());
        self.buffer.clear();
        let mut result = Ok(());
        for metric in &flush.metrics {
            let mut object = serde_json::json!({
                "name": metric.name,
                "type": metric.kind.label(),
                "value": metric.value,
                "tags": metric.tags.iter().collect::<Vec<&str>>(),
                "timestamp": flush.timestamp,
                "hostname": self.hostname,
            });
            if metric.kind == FlushedType::Status {
                object["message"] =
                    serde_json::Value::from(metric.message.clone().unwrap_or_default());
            }
            let _ = writeln!(self.buffer, "{object}");
            if self.buffer.len() >= CHUNK {
                result = self.file.write_all(&self.buffer);
                self.buffer.clear();
                if result.is_err() {
                    break;
                }
            }
        }
        if result.is_ok() && !self.buffer.is_empty() {
            result = self.file.write_all(&self.buffer);
        }
        self.buffer.clear();
        self.buffer.shrink_to(CHUNK + 4096);
        if let Err(error) = result {
            if let Ok(length) = before {
                let _ = self.file.set_len(length);
            }
            self.error = Some(format!("jsonl write: {error}"));
        }
    }

    fn take_error(&mut self) -> Option<String> {
        self.error.take()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::delivery::{Deliver, Local, SendError};
    use ssfd_engine::FlushedMetric;

    fn flush() -> Flush {
        Flush {
            timestamp: 7,
            metrics: vec![FlushedMetric {
                name: "a".into(),
                kind: FlushedType::Counter,
                value: 1.0,
                tags: ["x:y"].iter().collect(),
                message: None,
            }],
            ..Flush::default()
        }
    }

    #[test]
    fn a_failed_write_fails_the_delivery() {
        let full = JsonlSink::open("file", Path::new("/dev/full"), "h").unwrap();
        let mut local = Local::new("jsonl", Box::new(full));
        let payloads = local.encode(&flush());
        assert!(matches!(
            local.send(&payloads[0]),
            Err(SendError::Permanent(error)) if error.contains("jsonl write")
        ));
        // a file that takes the lines delivers
        let file = tempfile::NamedTempFile::new().unwrap();
        let sink = JsonlSink::open("file", file.path(), "h").unwrap();
        let mut local = Local::new("jsonl", Box::new(sink));
        let payloads = local.encode(&flush());
        assert!(local.send(&payloads[0]).is_ok());
        let text = std::fs::read_to_string(file.path()).unwrap();
        assert_eq!(text.lines().count(), 1, "{text}");
        assert!(text.contains("\"name\":\"a\""), "{text}");
    }
}
