//! Fuzzes the DogStatsD grammar: every line of a packet is parsed and every accessor
//! of what it parses to is walked.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ssfd_wire::dogstatsd_text::{Line, Value, lines, parse_line, unescape_event_text};

fuzz_target!(|packet: &[u8]| {
    for line in lines(packet) {
        match parse_line(line) {
            Ok(Line::Metric(metric)) => {
                let mut count = 0;
                for value in metric.values() {
                    count += 1;
                    if let Value::Number(number) = value {
                        assert!(number.is_finite(), "validated values are finite");
                    }
                }
                assert_eq!(count, metric.value_count());
                assert!(metric.sample_rate > 0.0 && metric.sample_rate <= 1.0);
                for tag in metric.tags.without_magic() {
                    assert!(!tag.is_empty());
                }
            }
            Ok(Line::Event(event)) => {
                let _ = unescape_event_text(event.text);
                let _ = event.tags.iter().count();
            }
            Ok(Line::ServiceCheck(check)) => assert!(check.status <= 3),
            Err(error) => {
                let _ = error.reason();
            }
        }
    }
});
