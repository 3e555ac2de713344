//! Fuzzes SSF decode plus normalisation and classification of the span and its samples.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ssfd_wire::normalize;

fuzz_target!(|bytes: &[u8]| {
    let Ok(mut span) = normalize::decode_span(bytes) else { return };
    normalize::normalize(&mut span);
    if let Ok(normalize::PacketClass::TraceSpan) = normalize::classify(&span) {
        assert!(normalize::is_trace_span(&span));
    }
    for sample in &span.metrics {
        assert!(sample.sample_rate != 0.0, "normalised rates are never 0");
        if let Ok(normalize::SampleClass::Metric) = normalize::classify_sample(sample) {
            assert!(sample.value.is_finite());
        }
    }
});
