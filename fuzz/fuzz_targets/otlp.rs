//! OTLP ingest (issue 7): arbitrary bytes as an OTLP export request (the first byte picks
//! traces, logs or metrics, as protobuf or as OTLP/JSON), and whatever decodes goes
//! through ssfd's conversions: spans to SSF (encoded and decoded again), log records,
//! metric points to samples (twice, so cumulative streams take their increase path).
//! None may panic.

#![no_main]

use libfuzzer_sys::fuzz_target;
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use prost::Message;
use ssfd_ingest::otlp::{
    Streams, log_record, metric_samples, resource_attributes, service_of, ssf_span,
};

fn decode<T: Message + Default + serde::de::DeserializeOwned>(json: bool, data: &[u8]) -> Option<T> {
    if json {
        serde_json::from_slice(data).ok()
    } else {
        T::decode(data).ok()
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&selector, data)) = data.split_first() else {
        return;
    };
    let json = selector & 0x80 != 0;
    match selector % 3 {
        0 => {
            let Some(request) = decode::<ExportTraceServiceRequest>(json, data) else {
                return;
            };
            for resource in &request.resource_spans {
                let service = service_of(&resource.resource);
                let mut bad = 0;
                let attributes = resource_attributes(&resource.resource, &mut bad);
                for scope in &resource.scope_spans {
                    for span in &scope.spans {
                        if let Ok(ssf) = ssf_span(span, &service, &attributes, &mut bad) {
                            // the extension fields encode and read back, by prost and by
                            // the zero-copy reader alike
                            let bytes = ssf.encode_to_vec();
                            let decoded = ssfd_wire::ssf::SsfSpan::decode(&bytes[..]).unwrap();
                            assert_eq!(decoded.trace_id_high, ssf.trace_id_high);
                            let view = ssfd_wire::ssf_view::SpanView::parse(&bytes).unwrap();
                            assert!(!view.full_trace_id().is_zero());
                            assert_eq!(view.resource().count(), ssf.resource.len());
                            assert_eq!(view.attributes().count(), ssf.attributes.len());
                        }
                    }
                }
            }
        }
        1 => {
            let Some(request) = decode::<ExportLogsServiceRequest>(json, data) else {
                return;
            };
            for resource in &request.resource_logs {
                let service = service_of(&resource.resource);
                for scope in &resource.scope_logs {
                    for record in &scope.log_records {
                        let _ = log_record(record, &service, "scope");
                    }
                }
            }
        }
        _ => {
            let Some(request) = decode::<ExportMetricsServiceRequest>(json, data) else {
                return;
            };
            let mut streams = Streams::default();
            let first = metric_samples(&request, &mut streams);
            let second = metric_samples(&request, &mut streams);
            assert!(first.items == second.items);
        }
    }
});
