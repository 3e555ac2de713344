//! SSF normalisation and validity (SPEC 3.1) and stream framing, case by case.

use prost::Message;
use ssfd_wire::framing::{self, FramingError};
use ssfd_wire::normalize::{self, PacketClass, SampleClass, SsfError};
use ssfd_wire::ssf::{SsfSample, SsfSpan, ssf_sample::Metric};

fn valid_span() -> SsfSpan {
    SsfSpan {
        id: 2,
        trace_id: 1,
        start_timestamp: 10,
        end_timestamp: 20,
        name: "op".into(),
        ..Default::default()
    }
}

fn sample(metric: Metric, value: f32, rate: f32) -> SsfSample {
    SsfSample {
        metric: metric as i32,
        name: "m".into(),
        value,
        sample_rate: rate,
        ..Default::default()
    }
}

#[test]
fn validity_needs_ids_times_and_name() {
    assert_eq!(
        normalize::classify(&valid_span()),
        Ok(PacketClass::TraceSpan)
    );
    for broken in [
        SsfSpan {
            id: 0,
            ..valid_span()
        },
        SsfSpan {
            trace_id: 0,
            ..valid_span()
        },
        SsfSpan {
            start_timestamp: 0,
            ..valid_span()
        },
        SsfSpan {
            end_timestamp: 0,
            ..valid_span()
        },
        SsfSpan {
            name: String::new(),
            ..valid_span()
        },
    ] {
        assert_eq!(normalize::classify(&broken), Err(SsfError::InvalidSpan));
        let with_samples = SsfSpan {
            metrics: vec![sample(Metric::Counter, 1.0, 1.0)],
            ..broken
        };
        assert_eq!(
            normalize::classify(&with_samples),
            Ok(PacketClass::SamplesOnly)
        );
    }
    assert_eq!(
        normalize::classify(&SsfSpan::default()),
        Err(SsfError::Empty)
    );
}

#[test]
fn name_tag_only_fills_an_empty_name() {
    let mut span = valid_span();
    span.tags.insert("name".into(), "other".into());
    normalize::normalize(&mut span);
    assert_eq!(span.name, "op");
    assert!(
        span.tags.contains_key("name"),
        "a named span keeps its name tag"
    );
}

#[test]
fn sample_rates_and_values() {
    let mut span = SsfSpan {
        metrics: vec![sample(Metric::Counter, 1.0, 0.0)],
        ..Default::default()
    };
    normalize::normalize(&mut span);
    assert_eq!(span.metrics[0].sample_rate, 1.0, "rate 0 means 1");
    assert_eq!(
        normalize::classify_sample(&span.metrics[0]),
        Ok(SampleClass::Metric)
    );
    for (value, rate, want) in [
        (1.0, 0.5, Ok(SampleClass::Metric)),
        (1.0, 1.0, Ok(SampleClass::Metric)),
        (1.0, 1.5, Err(SsfError::BadRate)),
        (1.0, -0.5, Err(SsfError::BadRate)),
        (1.0, f32::NAN, Err(SsfError::BadRate)),
        (1.0, f32::INFINITY, Err(SsfError::BadRate)),
        (f32::NAN, 1.0, Err(SsfError::BadValue)),
        (f32::INFINITY, 1.0, Err(SsfError::BadValue)),
        (f32::NEG_INFINITY, 1.0, Err(SsfError::BadValue)),
    ] {
        assert_eq!(
            normalize::classify_sample(&sample(Metric::Gauge, value, rate)),
            want,
            "{value} @{rate}"
        );
    }
    let nameless = SsfSample {
        name: String::new(),
        ..sample(Metric::Gauge, 1.0, 1.0)
    };
    assert_eq!(normalize::classify_sample(&nameless), Err(SsfError::NoName));
}

#[test]
fn log_samples_are_not_metrics() {
    let log = SsfSample {
        message: "disk full".into(),
        ..sample(Metric::Counter, 0.0, 1.0)
    };
    assert_eq!(normalize::classify_sample(&log), Ok(SampleClass::Log));
    let counter_with_message = SsfSample {
        message: "x".into(),
        ..sample(Metric::Counter, 1.0, 1.0)
    };
    assert_eq!(
        normalize::classify_sample(&counter_with_message),
        Ok(SampleClass::Metric)
    );
}

#[test]
fn decode_errors_are_errors_not_panics() {
    assert_eq!(
        normalize::decode_span(&[0xff, 0xff, 0xff]),
        Err(SsfError::Decode)
    );
    assert_eq!(normalize::decode_span(&[0x12]), Err(SsfError::Decode));
    assert_eq!(normalize::decode_span(&[]), Ok(SsfSpan::default()));
}

#[test]
fn frames_round_trip_and_errors_are_typed() {
    let body = valid_span().encode_to_vec();
    let mut stream = Vec::new();
    framing::encode_frame(&body, &mut stream);
    framing::encode_frame(&body, &mut stream);
    let half = stream.len() - 3;
    let (bodies, used, error) = framing::split_frames(&stream[..half]);
    assert_eq!(bodies, vec![&body[..]]);
    assert_eq!(used, framing::HEADER_LEN + body.len());
    assert_eq!(error, None);
    let (bodies, used, _) = framing::split_frames(&stream);
    assert_eq!((bodies.len(), used), (2, stream.len()));
    assert_eq!(
        framing::body_len(&[1, 0, 0, 0, 0]),
        Err(FramingError::Version(1))
    );
    assert_eq!(
        framing::body_len(&[0, 1, 0, 0, 1]),
        Err(FramingError::TooLarge(16 * 1024 * 1024 + 1))
    );
    assert_eq!(
        framing::body_len(&[0, 1, 0, 0, 0]),
        Ok(Some(16 * 1024 * 1024))
    );
    assert_eq!(framing::body_len(&[0, 0]), Ok(None));
}
