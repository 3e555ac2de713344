//! A global's forward import (issue 7): arbitrary bytes as a forwarded `metricpb.Metric`
//! (Veneur's forward format), and whatever decodes goes through the import's
//! conversions and merges: digests from `MergingDigestData`, sets from HyperLogLog
//! bytes. The same bytes as a forwarded log record (`ssfd.v1.Logs/SendLogs`, and the
//! write-ahead log's `ForwardedLogs`) go through the global's conversion and back.
//! None may panic.

#![no_main]

use libfuzzer_sys::fuzz_target;
use prost::Message;
use ssfd_engine::sketch::hll::HyperLogLog;
use ssfd_engine::sketch::tdigest::TDigest;
use ssfd_wire::metricpb::{Metric, metric::Value};

fuzz_target!(|data: &[u8]| {
    if let Ok(record) = ssfd_wire::ssfd::v1::LogRecord::decode(data) {
        let record = ssfd_engine::LogRecord::from_wire(record);
        let _ = record.to_wire();
    }
    let Ok(metric) = Metric::decode(data) else {
        return;
    };
    match &metric.value {
        Some(Value::Histogram(histogram)) => {
            if let Some(wire) = &histogram.t_digest {
                let mut imported = TDigest::from_wire(wire);
                let mut merged = TDigest::default();
                merged.add(1.0, 1.0);
                merged.merge(&imported);
                let _ = merged.quantile(0.99);
                let _ = imported.quantile(0.5);
                let _ = imported.to_wire();
            }
        }
        Some(Value::Set(set)) => {
            if let Ok(mut hll) = HyperLogLog::from_bytes(&set.hyper_log_log) {
                let mut merged = HyperLogLog::default();
                merged.insert(b"member");
                merged.merge(&hll);
                let _ = merged.estimate();
                let _ = hll.to_bytes();
            }
        }
        _ => {}
    }
});
