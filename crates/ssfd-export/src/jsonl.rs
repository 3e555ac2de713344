//! The `jsonl` sink (SPEC 9): one JSON object per flushed metric per line, appended to
//! a file: `{"name","type","value","tags","timestamp","hostname"}` plus `message` for
//! a status.

use ssfd_engine::{Flush, FlushedType, MetricSink};
use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::Path;

pub struct JsonlSink {
    name: String,
    hostname: String,
    file: BufWriter<File>,
    /// The first write error of the last flush.
    error: Option<String>,
}

impl JsonlSink {
    pub fn open(name: &str, path: &Path, hostname: &str) -> std::io::Result<JsonlSink> {
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        Ok(JsonlSink {
            name: name.to_string(),
            hostname: hostname.to_string(),
            file: BufWriter::new(file),
            error: None,
        })
    }
}

impl MetricSink for JsonlSink {
    fn name(&self) -> &str {
        &self.name
    }

    fn flush(&mut self, flush: &Flush) {
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
            if let Err(error) = writeln!(self.file, "{object}") {
                self.error = Some(format!("jsonl write: {error}"));
                break;
            }
        }
        if let Err(error) = self.file.flush() {
            self.error.get_or_insert(format!("jsonl write: {error}"));
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
