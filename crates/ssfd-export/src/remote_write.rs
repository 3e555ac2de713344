//! The `prometheus_remote_write` sink (SPEC 9; Veneur's `cortex` maps here): the same
//! series, names, labels and cumulative semantics as `/metrics` (it keeps its own
//! [`Exposition`] of what is routed to it), plus `host` unless `add_host_label:
//! false` and any `external_labels`, sent as Prometheus remote-write 1.0: a protobuf
//! `WriteRequest`, snappy block-compressed, POSTed with `Content-Encoding: snappy`,
//! `Content-Type: application/x-protobuf` and `X-Prometheus-Remote-Write-Version:
//! 0.1.0`, at most 5,000 series per request. Samples carry the flush time.

use crate::delivery::{Deliver, Payload, SendError, http_agent, http_post};
use crate::prometheus::Exposition;
use prost::Message;
use ssfd_engine::Flush;

/// `prometheus.WriteRequest` (remote-write 1.0).
#[derive(Clone, PartialEq, Message)]
pub struct WriteRequest {
    #[prost(message, repeated, tag = "1")]
    pub timeseries: Vec<TimeSeries>,
}

#[derive(Clone, PartialEq, Message)]
pub struct TimeSeries {
    #[prost(message, repeated, tag = "1")]
    pub labels: Vec<Label>,
    #[prost(message, repeated, tag = "2")]
    pub samples: Vec<Sample>,
}

#[derive(Clone, PartialEq, Message)]
pub struct Label {
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(string, tag = "2")]
    pub value: String,
}

#[derive(Clone, PartialEq, Message)]
pub struct Sample {
    #[prost(double, tag = "1")]
    pub value: f64,
    /// Milliseconds since the epoch.
    #[prost(int64, tag = "2")]
    pub timestamp: i64,
}

/// Series per request.
const SERIES_PER_REQUEST: usize = 5_000;

pub struct RemoteWriteSink {
    url: String,
    headers: Vec<(String, String)>,
    /// `host` (unless turned off) and `external_labels`, added to every series
    /// where the series has no label of that name.
    extra_labels: Vec<(String, String)>,
    exposition: Exposition,
    agent: ureq::Agent,
}

impl RemoteWriteSink {
    pub fn new(
        url: &str,
        headers: Vec<(String, String)>,
        host: Option<&str>,
        external_labels: Vec<(String, String)>,
        expiry: std::time::Duration,
    ) -> RemoteWriteSink {
        let mut extra_labels = external_labels;
        if let Some(host) = host {
            extra_labels.push(("host".into(), host.into()));
        }
        RemoteWriteSink {
            url: url.to_string(),
            headers,
            extra_labels,
            exposition: Exposition::new(expiry),
            agent: http_agent(),
        }
    }

    /// The write requests for the exposition's current state at `timestamp_ms`.
    pub fn requests(&mut self, timestamp_ms: i64) -> Vec<WriteRequest> {
        let mut series: Vec<TimeSeries> = self
            .exposition
            .samples()
            .into_iter()
            .filter(|(_, _, value)| value.is_finite())
            .map(|(name, labels, value)| {
                let mut all: Vec<Label> = Vec::with_capacity(labels.len() + 3);
                all.push(Label {
                    name: "__name__".into(),
                    value: name,
                });
                for (name, value) in labels {
                    all.push(Label { name, value });
                }
                for (name, value) in &self.extra_labels {
                    if !all.iter().any(|l| &l.name == name) {
                        all.push(Label {
                            name: name.clone(),
                            value: value.clone(),
                        });
                    }
                }
                all.sort_by(|a, b| a.name.cmp(&b.name));
                TimeSeries {
                    labels: all,
                    samples: vec![Sample {
                        value,
                        timestamp: timestamp_ms,
                    }],
                }
            })
            .collect();
        series.sort_by(|a, b| {
            a.labels
                .iter()
                .map(|l| (&l.name, &l.value))
                .cmp(b.labels.iter().map(|l| (&l.name, &l.value)))
        });
        series
            .chunks(SERIES_PER_REQUEST)
            .map(|chunk| WriteRequest {
                timeseries: chunk.to_vec(),
            })
            .collect()
    }
}

impl Deliver for RemoteWriteSink {
    fn kind(&self) -> &'static str {
        "prometheus_remote_write"
    }

    fn encode(&mut self, flush: &Flush) -> Vec<Payload> {
        self.exposition.apply(flush);
        self.requests(flush.timestamp.saturating_mul(1000))
            .into_iter()
            .map(|request| Payload {
                endpoint: 0,
                items: request.timeseries.len() as u64,
                body: snap::raw::Encoder::new()
                    .compress_vec(&request.encode_to_vec())
                    .unwrap_or_default(),
            })
            .collect()
    }

    fn send(&mut self, payload: &Payload) -> Result<(), SendError> {
        let mut headers: Vec<(&str, &str)> = vec![
            ("Content-Encoding", "snappy"),
            ("Content-Type", "application/x-protobuf"),
            ("X-Prometheus-Remote-Write-Version", "0.1.0"),
            ("User-Agent", "ssfd"),
        ];
        headers.extend(self.headers.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        http_post(&self.agent, &self.url, &headers, &payload.body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ssfd_engine::{FlushedMetric, FlushedType};

    #[test]
    fn series_have_sorted_labels_a_name_and_the_host() {
        let mut sink = RemoteWriteSink::new(
            "http://x",
            Vec::new(),
            Some("box-1"),
            vec![("region".into(), "eu".into())],
            std::time::Duration::from_secs(300),
        );
        let flush = Flush {
            timestamp: 100,
            metrics: vec![FlushedMetric {
                name: "api.hits".into(),
                kind: FlushedType::Counter,
                value: 2.0,
                tags: ["env:prod", "host:other"].iter().collect(),
                message: None,
            }],
            ..Flush::default()
        };
        let payloads = sink.encode(&flush);
        sink.encode(&flush);
        let requests = sink.requests(200_000);
        let series = &requests[0].timeseries[0];
        let labels: Vec<(&str, &str)> = series
            .labels
            .iter()
            .map(|l| (l.name.as_str(), l.value.as_str()))
            .collect();
        assert_eq!(
            labels,
            [
                ("__name__", "api_hits_total"),
                ("env", "prod"),
                ("host", "other"),
                ("region", "eu")
            ],
            "a series' own host label wins"
        );
        assert_eq!(
            series.samples,
            [Sample {
                value: 4.0,
                timestamp: 200_000
            }],
            "cumulative"
        );
        let decoded = WriteRequest::decode(
            &snap::raw::Decoder::new()
                .decompress_vec(&payloads[0].body)
                .unwrap()[..],
        )
        .unwrap();
        assert_eq!(
            decoded.timeseries[0].samples[0],
            Sample {
                value: 2.0,
                timestamp: 100_000
            }
        );
    }
}
