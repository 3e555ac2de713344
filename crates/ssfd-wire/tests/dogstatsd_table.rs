//! Table-driven tests of the DogStatsD grammar (SPEC 3.2): every case is a line and the
//! exact description of what it parses to, or the error and counter reason it gets.

use ssfd_wire::dogstatsd_text::{Line, MagicScope, MetricType, Value, lines, parse_line};

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn describe(line: &[u8]) -> String {
    match parse_line(line) {
        Err(error) => format!("err:{error:?}/{}", error.reason()),
        Ok(Line::Metric(m)) => {
            let kind = match m.kind {
                MetricType::Counter => "c",
                MetricType::Gauge => "g",
                MetricType::Histogram => "h",
                MetricType::Distribution => "d",
                MetricType::Timer => "ms",
                MetricType::Set => "s",
            };
            let values: Vec<String> = m
                .values()
                .map(|v| match v {
                    Value::Number(n) => format!("{n}"),
                    Value::Member(b) => format!("'{}'", text(b)),
                })
                .collect();
            assert_eq!(values.len(), m.value_count());
            let mut out = format!("{kind} {} {}", text(m.name), values.join(" "));
            if m.sample_rate != 1.0 {
                out += &format!(" @{}", m.sample_rate);
            }
            if !m.tags.is_empty() {
                let tags: Vec<String> = m.tags.iter().map(text).collect();
                out += &format!(" #{}", tags.join(","));
            }
            if let Some(c) = m.container_id {
                out += &format!(" c={}", text(c));
            }
            if let Some(t) = m.timestamp {
                out += &format!(" T={t}");
            }
            match m.scope() {
                MagicScope::Default => {}
                MagicScope::Local => out += " local",
                MagicScope::Global => out += " global",
            }
            if m.unknown_sections > 0 {
                out += &format!(" unknown={}", m.unknown_sections);
            }
            out
        }
        Ok(Line::Event(e)) => {
            let mut out = format!("event title={:?} text={:?}", text(e.title), text(e.text));
            for (key, value) in [
                ("h", e.hostname),
                ("k", e.aggregation_key),
                ("p", e.priority),
                ("s", e.source_type),
                ("t", e.alert_type),
            ] {
                if let Some(value) = value {
                    out += &format!(" {key}={}", text(value));
                }
            }
            if let Some(d) = e.timestamp {
                out += &format!(" d={d}");
            }
            if !e.tags.is_empty() {
                let tags: Vec<String> = e.tags.iter().map(text).collect();
                out += &format!(" #{}", tags.join(","));
            }
            if e.unknown_sections > 0 {
                out += &format!(" unknown={}", e.unknown_sections);
            }
            out
        }
        Ok(Line::ServiceCheck(c)) => {
            let mut out = format!("sc {} status={}", text(c.name), c.status);
            if let Some(d) = c.timestamp {
                out += &format!(" d={d}");
            }
            if let Some(h) = c.hostname {
                out += &format!(" h={}", text(h));
            }
            if !c.tags.is_empty() {
                let tags: Vec<String> = c.tags.iter().map(text).collect();
                out += &format!(" #{}", tags.join(","));
            }
            if let Some(m) = c.message {
                out += &format!(" m={:?}", text(m));
            }
            if c.unknown_sections > 0 {
                out += &format!(" unknown={}", c.unknown_sections);
            }
            out
        }
    }
}

const CASES: &[(&str, &str)] = &[
    // ---- counters
    ("a:1|c", "c a 1"),
    ("page.views:1|c", "c page.views 1"),
    ("page.views:10|c|@0.5", "c page.views 10 @0.5"),
    ("page.views:-3|c", "c page.views -3"),
    ("page.views:+3|c", "c page.views 3"),
    ("x:1.5|c", "c x 1.5"),
    ("x:1e3|c", "c x 1000"),
    ("x:1E-2|c", "c x 0.01"),
    ("x:.5|c", "c x 0.5"),
    ("x:0|c", "c x 0"),
    ("x:5.|c", "c x 5"),
    ("x:1|c|@1", "c x 1"),
    ("x:1|c|@1.0", "c x 1"),
    ("x:1|c|@0.001", "c x 1 @0.001"),
    ("x:1|c|@1e-1", "c x 1 @0.1"),
    ("x:1|c|#env:prod", "c x 1 #env:prod"),
    ("x:1|c|#env:prod,region:us", "c x 1 #env:prod,region:us"),
    ("x:1|c|#bare", "c x 1 #bare"),
    ("x:1|c|#a,,b", "c x 1 #a,b"),
    ("x:1|c|#", "c x 1"),
    ("x:1|c|#a:b:c", "c x 1 #a:b:c"),
    ("x:1|c|@0.5|#a:b", "c x 1 @0.5 #a:b"),
    ("x:1|c|#a:b|@0.5", "c x 1 @0.5 #a:b"),
    ("x:1:2:3|c", "c x 1 2 3"),
    ("x:1:2|c|@0.25", "c x 1 2 @0.25"),
    (
        "my_app.requests:42|c|#service:web,env:prod",
        "c my_app.requests 42 #service:web,env:prod",
    ),
    ("name with spaces:1|c", "c name with spaces 1"),
    ("ünïcode.metric:1|c", "c ünïcode.metric 1"),
    ("a.b-c_d:1|c", "c a.b-c_d 1"),
    ("x:123456789012|c", "c x 123456789012"),
    ("x:1|c|T1656581400", "c x 1 T=1656581400"),
    ("x:1|c|c:abc123", "c x 1 c=abc123"),
    ("x:1|c|c:abc|T5|#a|@0.5", "c x 1 @0.5 #a c=abc T=5"),
    ("x:1|c|e:foo", "c x 1 unknown=1"),
    ("x:1|c|e:foo|card:high", "c x 1 unknown=2"),
    ("x:1|c|e:foo|f:bar", "c x 1 unknown=2"),
    ("x:1|c|#veneurlocalonly", "c x 1 #veneurlocalonly local"),
    ("x:1|c|#veneurglobalonly", "c x 1 #veneurglobalonly global"),
    (
        "x:1|c|#veneurglobalonly:true,env:t",
        "c x 1 #veneurglobalonly:true,env:t global",
    ),
    (
        "x:1|c|#env:t,veneurlocalonly",
        "c x 1 #env:t,veneurlocalonly local",
    ),
    (
        "x:1|c|#veneurlocalonly,veneurglobalonly",
        "c x 1 #veneurlocalonly,veneurglobalonly global",
    ),
    ("x:1|c|#veneur", "c x 1 #veneur"),
    ("x:1|c|#notveneurglobalonly", "c x 1 #notveneurglobalonly"),
    (
        "fwd.counter:5|c|#veneurglobalonly,env:test",
        "c fwd.counter 5 #veneurglobalonly,env:test global",
    ),
    ("x:1|c|#a:1,a:1", "c x 1 #a:1,a:1"),
    // ---- gauges
    ("temp:21.5|g", "g temp 21.5"),
    ("temp:-4|g", "g temp -4"),
    ("temp:+4|g", "g temp 4"),
    ("temp:0|g|#room:a", "g temp 0 #room:a"),
    ("temp:1|g|@0.5", "g temp 1 @0.5"),
    ("temp:1:2|g", "g temp 1 2"),
    (
        "fwd.gauge:42.5|g|#veneurglobalonly",
        "g fwd.gauge 42.5 #veneurglobalonly global",
    ),
    ("g:1e10|g", "g g 10000000000"),
    ("g:-2.5e-3|g", "g g -0.0025"),
    ("g:3.14159|g|T1700000000", "g g 3.14159 T=1700000000"),
    ("g:1|g|c:ctr|#k:v", "g g 1 #k:v c=ctr"),
    // ---- histograms, distributions, timers
    ("lat:12|h", "h lat 12"),
    ("lat:12|h|@0.1", "h lat 12 @0.1"),
    ("lat:1:2:3:4|h", "h lat 1 2 3 4"),
    ("lat:12|h|#route:/api", "h lat 12 #route:/api"),
    ("lat:0.001|h", "h lat 0.001"),
    ("lat:12|d", "d lat 12"),
    ("lat:12|d|#a:b|@0.5", "d lat 12 @0.5 #a:b"),
    ("lat:1:2|d", "d lat 1 2"),
    ("rt:320|ms", "ms rt 320"),
    ("rt:320|ms|@0.1", "ms rt 320 @0.1"),
    ("rt:320|ms|#a", "ms rt 320 #a"),
    ("rt:1.25|ms", "ms rt 1.25"),
    ("rt:1:2|ms|#x:y", "ms rt 1 2 #x:y"),
    ("fwd.timer:7|ms", "ms fwd.timer 7"),
    ("fwd.hist:1000|h|#env:test", "h fwd.hist 1000 #env:test"),
    ("h:5|h|#veneurglobalonly", "h h 5 #veneurglobalonly global"),
    ("h:5|h|#veneurlocalonly", "h h 5 #veneurlocalonly local"),
    ("rt:5|ms|T1|c:x", "ms rt 5 c=x T=1"),
    ("rt:5|ms|x:ignored", "ms rt 5 unknown=1"),
    // ---- sets
    ("users:alice|s", "s users 'alice'"),
    ("users:42|s", "s users '42'"),
    ("users:a:b|s", "s users 'a' 'b'"),
    ("users:alice|s|#env:prod", "s users 'alice' #env:prod"),
    ("users:alice|s|@0.5", "s users 'alice' @0.5"),
    ("users:nan|s", "s users 'nan'"),
    ("users:with space|s", "s users 'with space'"),
    ("fwd.set.small:a|s", "s fwd.set.small 'a'"),
    ("users:member-99999|s", "s users 'member-99999'"),
    (
        "users:x|s|#veneurlocalonly",
        "s users 'x' #veneurlocalonly local",
    ),
    // ---- events
    ("_e{5,4}:title|text", "event title=\"title\" text=\"text\""),
    ("_e{5,0}:title|", "event title=\"title\" text=\"\""),
    ("_e{2,3}:hi|a|b", "event title=\"hi\" text=\"a|b\""),
    (
        "_e{5,4}:title|text|d:1700000000",
        "event title=\"title\" text=\"text\" d=1700000000",
    ),
    (
        "_e{5,4}:title|text|h:web01",
        "event title=\"title\" text=\"text\" h=web01",
    ),
    (
        "_e{5,4}:title|text|k:agg",
        "event title=\"title\" text=\"text\" k=agg",
    ),
    (
        "_e{5,4}:title|text|p:low",
        "event title=\"title\" text=\"text\" p=low",
    ),
    (
        "_e{5,4}:title|text|p:normal",
        "event title=\"title\" text=\"text\" p=normal",
    ),
    (
        "_e{5,4}:title|text|s:jenkins",
        "event title=\"title\" text=\"text\" s=jenkins",
    ),
    (
        "_e{5,4}:title|text|t:error",
        "event title=\"title\" text=\"text\" t=error",
    ),
    (
        "_e{5,4}:title|text|t:warning",
        "event title=\"title\" text=\"text\" t=warning",
    ),
    (
        "_e{5,4}:title|text|t:info",
        "event title=\"title\" text=\"text\" t=info",
    ),
    (
        "_e{5,4}:title|text|t:success",
        "event title=\"title\" text=\"text\" t=success",
    ),
    (
        "_e{5,4}:title|text|#a:b,c",
        "event title=\"title\" text=\"text\" #a:b,c",
    ),
    (
        "_e{5,4}:title|text|d:1|h:h|k:k|p:low|s:s|t:info|#x",
        "event title=\"title\" text=\"text\" h=h k=k p=low s=s t=info d=1 #x",
    ),
    (
        "_e{5,4}:title|text|c:container",
        "event title=\"title\" text=\"text\" unknown=1",
    ),
    (
        "_e{5,10}:title|line\\nline",
        "event title=\"title\" text=\"line\\\\nline\"",
    ),
    ("_e{5,4}:ünï|text", "event title=\"ünï\" text=\"text\""),
    ("_e{3,3}:a:b|c:d", "event title=\"a:b\" text=\"c:d\""),
    // ---- service checks
    ("_sc|db.up|0", "sc db.up status=0"),
    ("_sc|db.up|1", "sc db.up status=1"),
    ("_sc|db.up|2", "sc db.up status=2"),
    ("_sc|db.up|3", "sc db.up status=3"),
    ("_sc|db.up|0|d:1700000000", "sc db.up status=0 d=1700000000"),
    ("_sc|db.up|0|h:db01", "sc db.up status=0 h=db01"),
    ("_sc|db.up|0|#env:prod", "sc db.up status=0 #env:prod"),
    (
        "_sc|db.up|2|m:connection refused",
        "sc db.up status=2 m=\"connection refused\"",
    ),
    ("_sc|db.up|2|m:a|b|c", "sc db.up status=2 m=\"a|b|c\""),
    ("_sc|db.up|2|m:", "sc db.up status=2 m=\"\""),
    (
        "_sc|db.up|1|d:5|h:h|#a,b|m:msg",
        "sc db.up status=1 d=5 h=h #a,b m=\"msg\"",
    ),
    ("_sc|db.up|0|c:ctr", "sc db.up status=0 unknown=1"),
    ("_sc|name with space|0", "sc name with space status=0"),
    (
        "_sc|db.up|0|#veneurglobalonly",
        "sc db.up status=0 #veneurglobalonly",
    ),
    // ---- malformed: structure
    ("", "err:EmptyLine/parse"),
    ("x", "err:MissingValue/parse"),
    ("x|c", "err:MissingValue/parse"),
    (":1|c", "err:EmptyName/parse"),
    ("x:1", "err:MissingType/parse"),
    ("x:1|", "err:MissingType/parse"),
    ("x:|c", "err:EmptyValue/parse"),
    ("x:1|q", "err:UnknownType/parse"),
    ("x:1|C", "err:UnknownType/parse"),
    ("x:1|cc", "err:UnknownType/parse"),
    ("x:1|m", "err:UnknownType/parse"),
    ("x:1|c||#a", "err:EmptySection/parse"),
    ("x:1|c|", "err:EmptySection/parse"),
    ("x:1|c|@0.5|@0.5", "err:DuplicateSection/parse"),
    ("x:1|c|#a|#b", "err:DuplicateSection/parse"),
    ("x:1|c|c:a|c:b", "err:DuplicateSection/parse"),
    ("x:1|c|T1|T2", "err:DuplicateSection/parse"),
    ("x:1|c|garbage", "err:UnknownSection/parse"),
    ("x:1|c|!x", "err:UnknownSection/parse"),
    ("x:1|c|1:x", "err:UnknownSection/parse"),
    ("x:1|c|c:", "err:EmptyContainer/parse"),
    ("users::a|s", "err:EmptyValue/parse"),
    ("users:a:|s", "err:EmptyValue/parse"),
    // ---- malformed: values
    ("x:abc|c", "err:BadValue/bad_value"),
    ("x:nan|c", "err:BadValue/bad_value"),
    ("x:NaN|g", "err:BadValue/bad_value"),
    ("x:inf|g", "err:BadValue/bad_value"),
    ("x:-inf|h", "err:BadValue/bad_value"),
    ("x:+Infinity|ms", "err:BadValue/bad_value"),
    ("x:1e999|c", "err:BadValue/bad_value"),
    ("x:1,5|c", "err:BadValue/bad_value"),
    ("x: 1|c", "err:BadValue/bad_value"),
    ("x:1 |c", "err:BadValue/bad_value"),
    ("x:0x10|c", "err:BadValue/bad_value"),
    ("x:1::2|h", "err:BadValue/bad_value"),
    ("x:1:abc|h", "err:BadValue/bad_value"),
    ("x:--1|c", "err:BadValue/bad_value"),
    ("x:1|c|Tabc", "err:BadTimestamp/bad_value"),
    ("x:1|c|T", "err:BadTimestamp/bad_value"),
    // ---- malformed: rates
    ("x:1|c|@0", "err:BadRate/bad_rate"),
    ("x:1|c|@-0.5", "err:BadRate/bad_rate"),
    // so small that 1 / rate overflows (it would make a counter infinite for good)
    ("x:1|c|@1e-320", "err:BadRate/bad_rate"),
    ("x:1|ms|@1e-39", "err:BadRate/bad_rate"),
    ("x:1|c|@1.5", "err:BadRate/bad_rate"),
    ("x:1|c|@2", "err:BadRate/bad_rate"),
    ("x:1|c|@", "err:BadRate/bad_rate"),
    ("x:1|c|@abc", "err:BadRate/bad_rate"),
    ("x:1|c|@nan", "err:BadRate/bad_rate"),
    ("x:1|c|@inf", "err:BadRate/bad_rate"),
    ("x:1|h|@1.0000001", "err:BadRate/bad_rate"),
    // ---- malformed: events
    ("_e{5,4}title|text", "err:BadEventHeader/parse"),
    ("_e{5}:title|text", "err:BadEventHeader/parse"),
    ("_e{a,4}:title|text", "err:BadEventHeader/parse"),
    ("_e{5,4:title|text", "err:BadEventHeader/parse"),
    ("_e{,4}:title|text", "err:BadEventHeader/parse"),
    ("_e{0,4}:|text", "err:EmptyEventTitle/parse"),
    ("_e{10,4}:title|text", "err:EventLength/parse"),
    ("_e{5,10}:title|text", "err:EventLength/parse"),
    ("_e{4,4}:title|text", "err:EventLength/parse"),
    ("_e{5,3}:title|text", "err:EventLength/parse"),
    ("_e{5,4}:title|text|p:urgent", "err:BadPriority/parse"),
    ("_e{5,4}:title|text|t:fatal", "err:BadAlertType/parse"),
    ("_e{5,4}:title|text|d:soon", "err:BadTimestamp/bad_value"),
    ("_e{5,4}:title|text|zzz", "err:UnknownSection/parse"),
    ("_e{5,4}:title|text||h:x", "err:EmptySection/parse"),
    ("_e{5,4}:title|text|h:a|h:b", "err:DuplicateSection/parse"),
    // ---- malformed: service checks
    ("_sc", "err:BadServiceCheck/parse"),
    ("_sc|", "err:BadServiceCheck/parse"),
    ("_sc|name", "err:BadServiceCheck/parse"),
    ("_sc||0", "err:BadServiceCheck/parse"),
    ("_sc|name|4", "err:BadStatus/bad_value"),
    ("_sc|name|ok", "err:BadStatus/bad_value"),
    ("_sc|name|", "err:BadStatus/bad_value"),
    ("_sc|name|-1", "err:BadStatus/bad_value"),
    ("_sc|name|0|d:x", "err:BadTimestamp/bad_value"),
    ("_sc|name|0|zz", "err:UnknownSection/parse"),
    ("_sc|name|0|h:a|h:b", "err:DuplicateSection/parse"),
    ("_sc|name|0||m:x", "err:EmptySection/parse"),
];

#[test]
fn grammar_table() {
    let malformed = CASES
        .iter()
        .filter(|(_, want)| want.starts_with("err:"))
        .count();
    assert!(CASES.len() >= 150, "{} cases", CASES.len());
    assert!(
        malformed * 3 >= CASES.len(),
        "{malformed} malformed of {}",
        CASES.len()
    );
    let mut failures = Vec::new();
    for (input, want) in CASES {
        let have = describe(input.as_bytes());
        if have != *want {
            failures.push(format!("{input:?}\n   want {want}\n   have {have}"));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases differ:\n{}",
        failures.len(),
        CASES.len(),
        failures.join("\n")
    );
}

#[test]
fn packets_split_into_lines_and_ignore_empty_ones() {
    let packet = b"a:1|c\n\nb:2|g\r\nbad\n_sc|x|0\n";
    let got: Vec<String> = lines(packet).map(describe).collect();
    assert_eq!(
        got,
        ["c a 1", "g b 2", "err:MissingValue/parse", "sc x status=0"]
    );
    assert_eq!(lines(b"\n\n").count(), 0);
    assert_eq!(lines(b"").count(), 0);
}

#[test]
fn numbers_read_as_the_standard_library_reads_them() {
    let mut texts: Vec<String> = vec![
        "0",
        "7",
        "007",
        "42",
        "-3",
        "+3",
        "1.5",
        ".5",
        "5.",
        "1e3",
        "1E-2",
        "999999999999999",
        "9999999999999999",
        "18446744073709551616",
        "123456789012345678901234",
        "12a",
        "1 ",
        "",
        "-",
        "+",
        ".",
        "e5",
        "nan",
        "inf",
        "-inf",
        "0x10",
        "1_000",
    ]
    .into_iter()
    .map(String::from)
    .collect();
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    for _ in 0..10_000 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        texts.push((x >> (x % 64)).to_string());
    }
    for text in texts {
        let std: Option<f64> = text.parse::<f64>().ok().filter(|v| v.is_finite());
        let std = std.filter(|_| !text.eq_ignore_ascii_case("nan") && !text.contains("inf"));
        assert_eq!(
            ssfd_wire::dogstatsd_text::parse_finite(text.as_bytes()),
            std,
            "{text:?}"
        );
    }
}
