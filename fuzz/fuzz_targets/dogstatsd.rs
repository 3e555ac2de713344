//! Fuzzes the DogStatsD grammar: the line splitter is held to its plain definition,
//! every line of a packet is parsed and every accessor
//! of what it parses to is walked.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ssfd_wire::dogstatsd_text::{Line, Value, lines, parse_line, unescape_event_text};

fuzz_target!(|packet: &[u8]| {
    // the memchr line splitter against the plain definition of a line
    let plain: Vec<&[u8]> = packet
        .split(|&b| b == b'\n')
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l))
        .filter(|l| !l.is_empty())
        .collect();
    assert_eq!(lines(packet).collect::<Vec<_>>(), plain);
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
                let numbers: Vec<f64> = metric
                    .values()
                    .filter_map(|v| match v {
                        Value::Number(n) => Some(n),
                        Value::Member(_) => None,
                    })
                    .collect();
                match metric.single_number() {
                    Some(n) => assert!(count == 1 && numbers == [n]),
                    None => assert!(count > 1 || numbers.is_empty()),
                }
                assert!(metric.sample_rate > 0.0 && metric.sample_rate <= 1.0);
                for tag in metric.tags.without_magic() {
                    assert!(!tag.is_empty());
                }
                let _ = metric.scope();
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
