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
}

impl JsonlSink {
    pub fn open(name: &str, path: &Path, hostname: &str) -> std::io::Result<JsonlSink> {
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        Ok(JsonlSink {
            name: name.to_string(),
            hostname: hostname.to_string(),
            file: BufWriter::new(file),
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
                tracing::warn!(sink = %self.name, %error, "jsonl write failed");
            }
        }
        if let Err(error) = self.file.flush() {
            tracing::warn!(sink = %self.name, %error, "jsonl flush failed");
        }
    }
}
