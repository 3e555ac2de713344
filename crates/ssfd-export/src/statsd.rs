//! The `statsd` sink (SPEC 9): repeats each interval's flushed metrics as DogStatsD
//! lines to `address` (`udp://host:port`, packed into datagrams of at most 1432 bytes,
//! or `tcp://host:port`, one line each): counters `|c`, gauges `|g`, statuses as `_sc`
//! service checks with their message. Veneur's `prometheus` repeater maps here.

use crate::delivery::{Deliver, Payload, SendError};
use ssfd_engine::{Flush, FlushedType};
use std::io::Write;
use std::net::{TcpStream, UdpSocket};

/// A datagram that stays under a typical MTU.
const MAX_DATAGRAM: usize = 1432;

enum Transport {
    Udp(UdpSocket),
    Tcp {
        address: String,
        stream: Option<TcpStream>,
    },
}

pub struct StatsdSink {
    name: String,
    transport: Transport,
}

impl StatsdSink {
    /// `address` is `udp://host:port` or `tcp://host:port`.
    pub fn new(name: &str, address: &str) -> std::io::Result<StatsdSink> {
        let invalid = || {
            std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!("statsd sink address `{address}` is not udp:// or tcp://"),
            )
        };
        let (scheme, host_port) = address.split_once("://").ok_or_else(invalid)?;
        let transport = match scheme {
            "udp" => {
                let socket = UdpSocket::bind(if host_port.starts_with('[') {
                    "[::]:0"
                } else {
                    "0.0.0.0:0"
                })?;
                socket.connect(host_port)?;
                Transport::Udp(socket)
            }
            "tcp" => Transport::Tcp {
                address: host_port.to_string(),
                stream: None,
            },
            _ => return Err(invalid()),
        };
        Ok(StatsdSink {
            name: name.to_string(),
            transport,
        })
    }
}

/// One flushed metric as a DogStatsD line (no newline).
pub fn line(metric: &ssfd_engine::FlushedMetric) -> String {
    let tags = if metric.tags.is_empty() {
        String::new()
    } else {
        format!("|#{}", metric.tags.joined())
    };
    match metric.kind {
        FlushedType::Counter => format!("{}:{}|c{tags}", metric.name, metric.value),
        FlushedType::Gauge => format!("{}:{}|g{tags}", metric.name, metric.value),
        FlushedType::Status => {
            let message = metric.message.as_deref().filter(|m| !m.is_empty());
            let message = message
                .map(|m| format!("|m:{}", m.replace('\n', "\\n")))
                .unwrap_or_default();
            format!("_sc|{}|{}{tags}{message}", metric.name, metric.value as u8)
        }
    }
}

impl Deliver for StatsdSink {
    fn kind(&self) -> &'static str {
        "statsd"
    }

    /// Over UDP one payload per datagram of packed lines; over TCP one payload.
    fn encode(&mut self, flush: &Flush) -> Vec<Payload> {
        let lines: Vec<String> = flush
            .metrics
            .iter()
            .filter(|m| m.value.is_finite())
            .map(line)
            .collect();
        let mut payloads = Vec::new();
        match self.transport {
            Transport::Udp(_) => {
                let mut datagram = String::with_capacity(MAX_DATAGRAM);
                let mut items = 0;
                for line in &lines {
                    if !datagram.is_empty() && datagram.len() + 1 + line.len() > MAX_DATAGRAM {
                        payloads.push(Payload {
                            endpoint: 0,
                            body: std::mem::take(&mut datagram).into_bytes(),
                            items,
                        });
                        items = 0;
                    }
                    if !datagram.is_empty() {
                        datagram.push('\n');
                    }
                    datagram.push_str(line);
                    items += 1;
                }
                if !datagram.is_empty() {
                    payloads.push(Payload {
                        endpoint: 0,
                        body: datagram.into_bytes(),
                        items,
                    });
                }
            }
            Transport::Tcp { .. } if !lines.is_empty() => {
                let mut body = lines.join("\n");
                body.push('\n');
                payloads.push(Payload {
                    endpoint: 0,
                    body: body.into_bytes(),
                    items: lines.len() as u64,
                });
            }
            Transport::Tcp { .. } => {}
        }
        payloads
    }

    fn send(&mut self, payload: &Payload) -> Result<(), SendError> {
        let result = match &mut self.transport {
            Transport::Udp(socket) => socket.send(&payload.body).map(drop),
            Transport::Tcp { address, stream } => {
                let attempt = |stream: &mut Option<TcpStream>| -> std::io::Result<()> {
                    if stream.is_none() {
                        *stream = Some(TcpStream::connect(address.as_str())?);
                    }
                    stream.as_mut().expect("connected").write_all(&payload.body)
                };
                let result = attempt(stream);
                if result.is_err() {
                    *stream = None;
                }
                result
            }
        };
        result.map_err(|error| SendError::Retry(format!("statsd sink `{}`: {error}", self.name)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ssfd_engine::FlushedMetric;

    fn metric(
        name: &str,
        kind: FlushedType,
        value: f64,
        tags: &[&str],
        message: Option<&str>,
    ) -> FlushedMetric {
        FlushedMetric {
            name: name.into(),
            kind,
            value,
            tags: tags.iter().map(|t| t.to_string()).collect(),
            message: message.map(String::from),
        }
    }

    #[test]
    fn lines_and_packing_over_udp() {
        let receiver = UdpSocket::bind("127.0.0.1:0").unwrap();
        let mut sink = StatsdSink::new(
            "repeat",
            &format!("udp://{}", receiver.local_addr().unwrap()),
        )
        .unwrap();
        let mut metrics = vec![
            metric("req", FlushedType::Counter, 5.0, &["a:1", "b"], None),
            metric("temp", FlushedType::Gauge, 21.5, &[], None),
            metric(
                "db.up",
                FlushedType::Status,
                2.0,
                &["db:main"],
                Some("refused\nhard"),
            ),
            metric("nan", FlushedType::Gauge, f64::NAN, &[], None),
        ];
        for index in 0..100 {
            metrics.push(metric(
                &format!("bulk.{index:03}"),
                FlushedType::Counter,
                1.0,
                &["env:prod"],
                None,
            ));
        }
        for payload in sink.encode(&Flush {
            timestamp: 1,
            metrics,
            ..Flush::default()
        }) {
            sink.send(&payload).unwrap();
        }
        receiver
            .set_read_timeout(Some(std::time::Duration::from_secs(5)))
            .unwrap();
        let mut lines = Vec::new();
        let mut buffer = [0u8; 2048];
        while lines.len() < 103 {
            let n = receiver.recv(&mut buffer).unwrap();
            assert!(n <= MAX_DATAGRAM);
            lines.extend(
                String::from_utf8_lossy(&buffer[..n])
                    .lines()
                    .map(String::from),
            );
        }
        assert_eq!(
            &lines[..3],
            [
                "req:5|c|#a:1,b",
                "temp:21.5|g",
                "_sc|db.up|2|#db:main|m:refused\\nhard"
            ]
        );
        assert_eq!(lines[3], "bulk.000:1|c|#env:prod");
        assert_eq!(lines.len(), 103, "NaN is not repeated");
        assert!(StatsdSink::new("x", "http://nope").is_err());
    }
}
