//! The `datadog` sink (SPEC 9), sending what Veneur's Datadog sink sends: series to
//! `/api/v1/series` (zlib, `Content-Encoding: deflate`; counters as `rate` per second
//! of the interval, gauges as `gauge`, each with `interval`; a `host:` tag sets the
//! host and a `device:` tag the device, both removed from the tags), statuses as
//! service checks to `/api/v1/check_run` (uncompressed, as Veneur: that endpoint takes
//! no deflate) and DogStatsD events to `/intake` (`{"events": {"api": [...]}}`, zlib).
//! The API key is the `api_key` query parameter. Bodies hold at most
//! `flush_max_per_body` items (default 25,000).

use crate::delivery::{Deliver, Payload, SendError, http_agent, http_post};
use serde_json::{Value, json};
use ssfd_engine::{Flush, FlushedType};
use std::io::Write;

const SERIES: usize = 0;
const CHECKS: usize = 1;
const EVENTS: usize = 2;

pub struct DatadogSink {
    urls: [String; 3],
    hostname: String,
    interval_seconds: f64,
    max_per_body: usize,
    agent: ureq::Agent,
}

impl DatadogSink {
    pub fn new(
        api_key: &str,
        api_hostname: &str,
        hostname: &str,
        interval: std::time::Duration,
        max_per_body: usize,
    ) -> DatadogSink {
        let base = api_hostname.trim_end_matches('/');
        let key: String = form_urlencoded::byte_serialize(api_key.as_bytes()).collect();
        DatadogSink {
            urls: [
                format!("{base}/api/v1/series?api_key={key}"),
                format!("{base}/api/v1/check_run?api_key={key}"),
                format!("{base}/intake?api_key={key}"),
            ],
            hostname: hostname.to_string(),
            interval_seconds: interval.as_secs_f64().max(1e-3),
            max_per_body: max_per_body.max(1),
            agent: http_agent(),
        }
    }

    /// (host, device, the other tags) of a tag list.
    fn split_tags(&self, tags: &ssfd_engine::Tags) -> (String, Option<String>, Vec<String>) {
        let mut host = self.hostname.clone();
        let mut device = None;
        let mut rest = Vec::new();
        for tag in tags.iter() {
            if let Some(value) = tag.strip_prefix("host:") {
                host = value.to_string();
            } else if let Some(value) = tag.strip_prefix("device:") {
                device = Some(value.to_string());
            } else {
                rest.push(tag.to_string());
            }
        }
        (host, device, rest)
    }
}

fn deflate(body: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
    let _ = encoder.write_all(body);
    encoder.finish().unwrap_or_default()
}

fn chunks(items: Vec<Value>, max: usize) -> Vec<Vec<Value>> {
    if items.is_empty() {
        return Vec::new();
    }
    // as Veneur: as few bodies as the cap allows, evenly filled
    let bodies = (items.len() - 1) / max + 1;
    let size = (items.len() - 1) / bodies + 1;
    let mut out = Vec::with_capacity(bodies);
    let mut items = items.into_iter().peekable();
    while items.peek().is_some() {
        out.push(items.by_ref().take(size).collect());
    }
    out
}

impl Deliver for DatadogSink {
    fn kind(&self) -> &'static str {
        "datadog"
    }

    fn encode(&mut self, flush: &Flush) -> Vec<Payload> {
        let mut series = Vec::new();
        let mut checks = Vec::new();
        for metric in flush.metrics.iter().filter(|m| m.value.is_finite()) {
            let (host, device, tags) = self.split_tags(&metric.tags);
            match metric.kind {
                FlushedType::Counter | FlushedType::Gauge => {
                    let (kind, value) = if metric.kind == FlushedType::Counter {
                        ("rate", metric.value / self.interval_seconds)
                    } else {
                        ("gauge", metric.value)
                    };
                    let mut point = json!({
                        "metric": metric.name,
                        "points": [[flush.timestamp as f64, value]],
                        "tags": tags,
                        "type": kind,
                        "host": host,
                        "interval": self.interval_seconds.round() as i64,
                    });
                    if let Some(device) = device {
                        point["device_name"] = device.into();
                    }
                    series.push(point);
                }
                FlushedType::Status => {
                    let mut check = json!({
                        "check": metric.name,
                        "status": metric.value as i64,
                        "host_name": host,
                        "timestamp": flush.timestamp,
                        "tags": tags,
                    });
                    if let Some(message) = metric.message.as_deref().filter(|m| !m.is_empty()) {
                        check["message"] = message.into();
                    }
                    checks.push(check);
                }
            }
        }
        let events: Vec<Value> = flush
            .events
            .iter()
            .map(|event| {
                let mut fields = serde_json::Map::new();
                let mut tags = Vec::new();
                let mut host = self.hostname.clone();
                for tag in &event.tags {
                    let (key, value) = tag.split_once(':').unwrap_or((tag.as_str(), ""));
                    match key {
                        "hostname" => host = value.to_string(),
                        "aggregation_key" | "priority" | "source_type_name" | "alert_type" => {
                            fields.insert(key.to_string(), value.into());
                        }
                        _ => tags.push(tag.clone()),
                    }
                }
                fields.insert("msg_title".into(), event.name.clone().into());
                fields.insert("msg_text".into(), event.message.clone().into());
                fields.insert(
                    "timestamp".into(),
                    (event.timestamp_ns / 1_000_000_000).into(),
                );
                fields.insert("host".into(), host.into());
                fields.entry("priority").or_insert_with(|| "normal".into());
                fields.entry("alert_type").or_insert_with(|| "info".into());
                fields.insert("tags".into(), tags.into());
                Value::Object(fields)
            })
            .collect();
        let mut payloads = Vec::new();
        for body in chunks(series, self.max_per_body) {
            payloads.push(Payload {
                endpoint: SERIES,
                items: body.len() as u64,
                body: deflate(json!({ "series": body }).to_string().as_bytes()),
            });
        }
        for body in chunks(checks, self.max_per_body) {
            payloads.push(Payload {
                endpoint: CHECKS,
                items: body.len() as u64,
                body: Value::Array(body).to_string().into_bytes(),
            });
        }
        for body in chunks(events, self.max_per_body) {
            payloads.push(Payload {
                endpoint: EVENTS,
                items: body.len() as u64,
                body: deflate(json!({ "events": { "api": body } }).to_string().as_bytes()),
            });
        }
        payloads
    }

    fn send(&mut self, payload: &Payload) -> Result<(), SendError> {
        let url = &self.urls[payload.endpoint];
        let mut headers = vec![("Content-Type", "application/json")];
        if payload.endpoint != CHECKS {
            headers.push(("Content-Encoding", "deflate"));
        }
        http_post(&self.agent, url, &headers, &payload.body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_are_split_evenly_as_veneur() {
        let items: Vec<Value> = (0..10).map(Value::from).collect();
        let sizes: Vec<usize> = chunks(items.clone(), 4).iter().map(Vec::len).collect();
        assert_eq!(sizes, [4, 4, 2]);
        let sizes: Vec<usize> = chunks(items, 10).iter().map(Vec::len).collect();
        assert_eq!(sizes, [10]);
        assert!(chunks(Vec::new(), 3).is_empty());
    }
}
