//! The statsd / DogStatsD text grammar of SPEC 3.2: metric lines, events and service
//! checks, parsed without allocating into views that borrow the packet bytes.
//!
//! A packet is split with [`lines`]; each line goes through [`parse_line`] alone, so a
//! bad line never costs the others. Errors are a small `Copy` enum whose
//! [`ParseError::reason`] is the `reason` label of `ssfd_rejected_total`.

use memchr::memchr;

/// What a metric line declares after its values.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MetricType {
    Counter,
    Gauge,
    Histogram,
    /// `d`: a DogStatsD distribution, aggregated as a histogram.
    Distribution,
    Timer,
    Set,
}

/// Scope set by a magic tag (SPEC 3.2, 4.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum MagicScope {
    #[default]
    Default,
    Local,
    Global,
}

/// Why a line was rejected. Each variant maps to one `reason` label.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("line is empty")]
    EmptyLine,
    #[error("metric name is empty")]
    EmptyName,
    #[error("no ':' between name and value")]
    MissingValue,
    #[error("no '|' before the type")]
    MissingType,
    #[error("value list is empty")]
    EmptyValue,
    #[error("value is not a finite number")]
    BadValue,
    #[error("unknown metric type")]
    UnknownType,
    #[error("sample rate is not in (0, 1]")]
    BadRate,
    #[error("empty section")]
    EmptySection,
    #[error("section appears twice")]
    DuplicateSection,
    #[error("unknown section")]
    UnknownSection,
    #[error("timestamp is not an integer")]
    BadTimestamp,
    #[error("container id is empty")]
    EmptyContainer,
    #[error("event header is not _e{{title,text}}")]
    BadEventHeader,
    #[error("event title or text length does not match")]
    EventLength,
    #[error("event title is empty")]
    EmptyEventTitle,
    #[error("event priority is not normal or low")]
    BadPriority,
    #[error("event alert type is not error, warning, info or success")]
    BadAlertType,
    #[error("service check is not _sc|name|status")]
    BadServiceCheck,
    #[error("service check status is not 0, 1, 2 or 3")]
    BadStatus,
    #[error("line is not valid UTF-8")]
    NotUtf8,
    #[error("line is longer than metric_max_length")]
    TooLong,
}

impl ParseError {
    /// The `reason` label this error is counted under (SPEC 10).
    pub fn reason(self) -> &'static str {
        match self {
            ParseError::BadValue | ParseError::BadTimestamp | ParseError::BadStatus => "bad_value",
            ParseError::BadRate => "bad_rate",
            ParseError::TooLong => "too_long",
            _ => "parse",
        }
    }
}

/// A parsed metric line. Values are validated; [`MetricLine::values`] yields them.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct MetricLine<'a> {
    pub name: &'a [u8],
    pub kind: MetricType,
    /// The raw value list (`v1:v2:...`), already validated.
    pub raw_values: &'a [u8],
    first_value: f64,
    /// One numeric value (not a set, no `:v2`).
    single_number: bool,
    /// Sample rate in (0, 1]; 1 when absent.
    pub sample_rate: f64,
    /// The raw tag list after `#` (comma separated; magic tags still in it).
    pub tags: Tags<'a>,
    pub container_id: Option<&'a [u8]>,
    pub timestamp: Option<i64>,
    /// `|x:...` sections that were ignored (SPEC 3.2), to be counted.
    pub unknown_sections: u32,
}

/// One value of a metric line.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Value<'a> {
    Number(f64),
    /// A set member: the raw value text.
    Member(&'a [u8]),
}

impl<'a> MetricLine<'a> {
    /// The scope the line's magic tags set (the last one wins, as in Veneur). Not
    /// computed while parsing: a caller that walks the tags anyway (ingest) finds the
    /// magic tags on its way.
    pub fn scope(&self) -> MagicScope {
        scope_of(self.tags)
    }

    /// The line's values in order (several for `name:1:2:3|h`).
    pub fn values(&self) -> impl Iterator<Item = Value<'a>> + 'a {
        let set = self.kind == MetricType::Set;
        let first = self.first_value;
        self.raw_values
            .split(|&b| b == b':')
            .enumerate()
            .map(move |(index, raw)| {
                if set {
                    Value::Member(raw)
                } else if index == 0 {
                    Value::Number(first)
                } else {
                    Value::Number(parse_finite(raw).unwrap_or(f64::NAN))
                }
            })
    }

    /// The value of a line that carries exactly one number (not a set's member).
    pub fn single_number(&self) -> Option<f64> {
        self.single_number.then_some(self.first_value)
    }

    /// How many values the line carries.
    pub fn value_count(&self) -> usize {
        memchr::memchr_iter(b':', self.raw_values).count() + 1
    }
}

/// A comma-separated tag list as it came off the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Tags<'a>(pub &'a [u8]);

impl<'a> Tags<'a> {
    /// Non-empty tags in wire order.
    pub fn iter(&self) -> impl Iterator<Item = &'a [u8]> + 'a {
        self.0.split(|&b| b == b',').filter(|t| !t.is_empty())
    }

    /// Tags without the magic scope tags.
    pub fn without_magic(&self) -> impl Iterator<Item = &'a [u8]> + 'a {
        self.iter().filter(|t| magic_scope(t).is_none())
    }

    pub fn is_empty(&self) -> bool {
        self.iter().next().is_none()
    }
}

/// The scope a magic tag sets, if the tag is one (prefix match, as Veneur).
pub fn magic_scope(tag: &[u8]) -> Option<MagicScope> {
    if tag.starts_with(b"veneurlocalonly") {
        Some(MagicScope::Local)
    } else if tag.starts_with(b"veneurglobalonly") {
        Some(MagicScope::Global)
    } else {
        None
    }
}

fn scope_of(tags: Tags<'_>) -> MagicScope {
    let mut scope = MagicScope::Default;
    for tag in tags.iter() {
        if let Some(s) = magic_scope(tag) {
            scope = s;
        }
    }
    scope
}

/// `_e{...}`: a DogStatsD event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EventLine<'a> {
    pub title: &'a [u8],
    /// The text as sent: `\n` still escaped as backslash-n.
    pub text: &'a [u8],
    pub timestamp: Option<i64>,
    pub hostname: Option<&'a [u8]>,
    pub aggregation_key: Option<&'a [u8]>,
    pub priority: Option<&'a [u8]>,
    pub source_type: Option<&'a [u8]>,
    pub alert_type: Option<&'a [u8]>,
    pub tags: Tags<'a>,
    pub unknown_sections: u32,
}

/// `_sc|...`: a DogStatsD service check.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ServiceCheckLine<'a> {
    pub name: &'a [u8],
    /// 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN.
    pub status: u8,
    pub timestamp: Option<i64>,
    pub hostname: Option<&'a [u8]>,
    pub tags: Tags<'a>,
    pub message: Option<&'a [u8]>,
    pub unknown_sections: u32,
}

/// One parsed line.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Line<'a> {
    Metric(MetricLine<'a>),
    Event(EventLine<'a>),
    ServiceCheck(ServiceCheckLine<'a>),
}

/// The non-empty lines of a packet (`\n` separated; a trailing `\r` is dropped).
pub fn lines(packet: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut rest = packet;
    std::iter::from_fn(move || {
        loop {
            if rest.is_empty() {
                return None;
            }
            let (line, next) = match memchr(b'\n', rest) {
                Some(end) => (&rest[..end], &rest[end + 1..]),
                None => (rest, &[][..]),
            };
            rest = next;
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            if !line.is_empty() {
                return Some(line);
            }
        }
    })
}

/// Parses one line (without its newline).
pub fn parse_line(line: &[u8]) -> Result<Line<'_>, ParseError> {
    if line.is_empty() {
        return Err(ParseError::EmptyLine);
    }
    if line.starts_with(b"_e{") {
        return parse_event(line).map(Line::Event);
    }
    if line.starts_with(b"_sc|") || line == b"_sc" {
        return parse_service_check(line).map(Line::ServiceCheck);
    }
    parse_metric(line).map(Line::Metric)
}

/// Parses a metric line (`name:value[:value...]|type[|sections]`).
pub fn parse_metric(line: &[u8]) -> Result<MetricLine<'_>, ParseError> {
    // the first ':' ends the name; a '|' before it (or no ':' at all) means no value
    let colon = match memchr::memchr2(b':', b'|', line) {
        Some(at) if line[at] == b':' => at,
        _ => return Err(ParseError::MissingValue),
    };
    let name = &line[..colon];
    if name.is_empty() {
        return Err(ParseError::EmptyName);
    }
    let rest = &line[colon + 1..];
    let pipe = find_near(b'|', rest).ok_or(ParseError::MissingType)?;
    let raw_values = &rest[..pipe];
    if raw_values.is_empty() {
        return Err(ParseError::EmptyValue);
    }
    let rest = &rest[pipe + 1..];
    let (type_text, mut sections) = match find_near(b'|', rest) {
        Some(p) => (&rest[..p], Some(&rest[p + 1..])),
        None => (rest, None),
    };
    let kind = match *type_text {
        [b'c'] => MetricType::Counter,
        [b'g'] => MetricType::Gauge,
        [b'h'] => MetricType::Histogram,
        [b'd'] => MetricType::Distribution,
        [b'm', b's'] => MetricType::Timer,
        [b's'] => MetricType::Set,
        [] => return Err(ParseError::MissingType),
        _ => return Err(ParseError::UnknownType),
    };
    let (first_value, single_number) = if kind == MetricType::Set {
        if raw_values.split(|&b| b == b':').any(<[u8]>::is_empty) {
            return Err(ParseError::EmptyValue);
        }
        (0.0, false)
    } else {
        let mut values = raw_values.split(|&b| b == b':');
        let first = parse_finite(values.next().unwrap_or_default()).ok_or(ParseError::BadValue)?;
        let mut single = true;
        for more in values {
            parse_finite(more).ok_or(ParseError::BadValue)?;
            single = false;
        }
        (first, single)
    };

    let mut parsed = MetricLine {
        name,
        kind,
        raw_values,
        first_value,
        single_number,
        sample_rate: 1.0,
        tags: Tags::default(),
        container_id: None,
        timestamp: None,
        unknown_sections: 0,
    };
    let (mut seen_rate, mut seen_tags, mut seen_container, mut seen_time) =
        (false, false, false, false);
    while let Some(text) = sections {
        let (section, next) = match memchr(b'|', text) {
            Some(p) => (&text[..p], Some(&text[p + 1..])),
            None => (text, None),
        };
        sections = next;
        match section.first() {
            None => return Err(ParseError::EmptySection),
            Some(b'@') => {
                once(&mut seen_rate)?;
                let rate = parse_finite(&section[1..]).ok_or(ParseError::BadRate)?;
                // a rate below f32's smallest normal is refused: its weight 1 / rate
                // overflows once the rate is a sample's f32 (an infinite counter, for good)
                if !(rate >= f64::from(f32::MIN_POSITIVE) && rate <= 1.0) {
                    return Err(ParseError::BadRate);
                }
                parsed.sample_rate = rate;
            }
            Some(b'#') => {
                once(&mut seen_tags)?;
                parsed.tags = Tags(&section[1..]);
            }
            Some(b'c') if section.get(1) == Some(&b':') => {
                once(&mut seen_container)?;
                let id = &section[2..];
                if id.is_empty() {
                    return Err(ParseError::EmptyContainer);
                }
                parsed.container_id = Some(id);
            }
            Some(b'T') => {
                once(&mut seen_time)?;
                parsed.timestamp = Some(parse_int(&section[1..]).ok_or(ParseError::BadTimestamp)?);
            }
            Some(_) if is_extension_section(section) => parsed.unknown_sections += 1,
            Some(_) => return Err(ParseError::UnknownSection),
        }
    }
    Ok(parsed)
}

/// The first `needle` in `haystack`, for a needle usually within a few bytes (a value,
/// a type): a plain loop over the first 16 bytes, where a `memchr` call costs more
/// than the search, then `memchr`.
#[inline]
fn find_near(needle: u8, haystack: &[u8]) -> Option<usize> {
    let near = haystack.len().min(16);
    match haystack[..near].iter().position(|&b| b == needle) {
        Some(at) => Some(at),
        None => memchr(needle, &haystack[near..]).map(|at| at + near),
    }
}

/// A newer DogStatsD field: letters, then `:` (`|e:...`, `|card:...`).
fn is_extension_section(section: &[u8]) -> bool {
    match memchr(b':', section) {
        Some(colon) => colon > 0 && section[..colon].iter().all(u8::is_ascii_alphabetic),
        None => false,
    }
}

fn once(seen: &mut bool) -> Result<(), ParseError> {
    if std::mem::replace(seen, true) {
        Err(ParseError::DuplicateSection)
    } else {
        Ok(())
    }
}

/// A finite decimal float (exponents allowed; no `nan`, `inf`, hex or spaces).
pub fn parse_finite(text: &[u8]) -> Option<f64> {
    // most statsd values are small integers: read them without the float parser
    if text.len() <= 15 && !text.is_empty() {
        let mut whole: u64 = 0;
        let mut digits = 0;
        for &byte in text {
            let digit = byte.wrapping_sub(b'0');
            if digit > 9 {
                break;
            }
            whole = whole * 10 + u64::from(digit);
            digits += 1;
        }
        if digits == text.len() {
            // at most 15 digits: exact as an f64
            return Some(whole as f64);
        }
    }
    let first = *text.first()?;
    // fast-float accepts "nan"/"inf" spellings; a number starts with a digit, a sign or '.'
    if !(first.is_ascii_digit() || first == b'-' || first == b'+' || first == b'.') {
        return None;
    }
    let value: f64 = fast_float2::parse(text).ok()?;
    value.is_finite().then_some(value)
}

fn parse_int(text: &[u8]) -> Option<i64> {
    std::str::from_utf8(text).ok()?.parse().ok()
}

fn parse_len(text: &[u8]) -> Option<usize> {
    if text.is_empty() || text.len() > 9 || !text.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(text).ok()?.parse().ok()
}

/// Parses `_e{<title len>,<text len>}:<title>|<text>[|sections]`.
pub fn parse_event(line: &[u8]) -> Result<EventLine<'_>, ParseError> {
    let body = line
        .strip_prefix(b"_e{")
        .ok_or(ParseError::BadEventHeader)?;
    let close = memchr(b'}', body).ok_or(ParseError::BadEventHeader)?;
    let lengths = &body[..close];
    let comma = memchr(b',', lengths).ok_or(ParseError::BadEventHeader)?;
    let title_len = parse_len(&lengths[..comma]).ok_or(ParseError::BadEventHeader)?;
    let text_len = parse_len(&lengths[comma + 1..]).ok_or(ParseError::BadEventHeader)?;
    let rest = body[close + 1..]
        .strip_prefix(b":")
        .ok_or(ParseError::BadEventHeader)?;
    if title_len == 0 {
        return Err(ParseError::EmptyEventTitle);
    }
    if rest.len() < title_len + 1 + text_len {
        return Err(ParseError::EventLength);
    }
    let title = &rest[..title_len];
    if rest[title_len] != b'|' {
        return Err(ParseError::EventLength);
    }
    let text = &rest[title_len + 1..title_len + 1 + text_len];
    let after = &rest[title_len + 1 + text_len..];
    let mut event = EventLine {
        title,
        text,
        timestamp: None,
        hostname: None,
        aggregation_key: None,
        priority: None,
        source_type: None,
        alert_type: None,
        tags: Tags::default(),
        unknown_sections: 0,
    };
    if after.is_empty() {
        return Ok(event);
    }
    let sections = after.strip_prefix(b"|").ok_or(ParseError::EventLength)?;
    let mut seen = [false; 7];
    for section in sections.split(|&b| b == b'|') {
        let Some(&first) = section.first() else {
            return Err(ParseError::EmptySection);
        };
        if first == b'#' {
            once(&mut seen[6])?;
            event.tags = Tags(&section[1..]);
            continue;
        }
        if section.get(1) != Some(&b':') {
            return Err(ParseError::UnknownSection);
        }
        let value = &section[2..];
        match first {
            b'd' => {
                once(&mut seen[0])?;
                event.timestamp = Some(parse_int(value).ok_or(ParseError::BadTimestamp)?);
            }
            b'h' => {
                once(&mut seen[1])?;
                event.hostname = Some(value);
            }
            b'k' => {
                once(&mut seen[2])?;
                event.aggregation_key = Some(value);
            }
            b'p' => {
                once(&mut seen[3])?;
                if value != b"normal" && value != b"low" {
                    return Err(ParseError::BadPriority);
                }
                event.priority = Some(value);
            }
            b's' => {
                once(&mut seen[4])?;
                event.source_type = Some(value);
            }
            b't' => {
                once(&mut seen[5])?;
                if !matches!(value, b"error" | b"warning" | b"info" | b"success") {
                    return Err(ParseError::BadAlertType);
                }
                event.alert_type = Some(value);
            }
            letter if letter.is_ascii_alphabetic() => event.unknown_sections += 1,
            _ => return Err(ParseError::UnknownSection),
        }
    }
    Ok(event)
}

/// Parses `_sc|<name>|<status>[|d:ts][|h:host][|#tags][|m:message]`; `m:` takes the
/// rest of the line, pipes included, as DogStatsD requires it last.
pub fn parse_service_check(line: &[u8]) -> Result<ServiceCheckLine<'_>, ParseError> {
    let body = line
        .strip_prefix(b"_sc|")
        .ok_or(ParseError::BadServiceCheck)?;
    let pipe = memchr(b'|', body).ok_or(ParseError::BadServiceCheck)?;
    let name = &body[..pipe];
    if name.is_empty() {
        return Err(ParseError::BadServiceCheck);
    }
    let rest = &body[pipe + 1..];
    let (status_text, mut sections) = match memchr(b'|', rest) {
        Some(p) => (&rest[..p], Some(&rest[p + 1..])),
        None => (rest, None),
    };
    let status = match status_text {
        b"0" => 0,
        b"1" => 1,
        b"2" => 2,
        b"3" => 3,
        _ => return Err(ParseError::BadStatus),
    };
    let mut check = ServiceCheckLine {
        name,
        status,
        timestamp: None,
        hostname: None,
        tags: Tags::default(),
        message: None,
        unknown_sections: 0,
    };
    let mut seen = [false; 3];
    while let Some(text) = sections {
        if let Some(message) = text.strip_prefix(b"m:") {
            check.message = Some(message);
            break;
        }
        let (section, next) = match memchr(b'|', text) {
            Some(p) => (&text[..p], Some(&text[p + 1..])),
            None => (text, None),
        };
        sections = next;
        let Some(&first) = section.first() else {
            return Err(ParseError::EmptySection);
        };
        if first == b'#' {
            once(&mut seen[2])?;
            check.tags = Tags(&section[1..]);
            continue;
        }
        if section.get(1) != Some(&b':') {
            return Err(ParseError::UnknownSection);
        }
        let value = &section[2..];
        match first {
            b'd' => {
                once(&mut seen[0])?;
                check.timestamp = Some(parse_int(value).ok_or(ParseError::BadTimestamp)?);
            }
            b'h' => {
                once(&mut seen[1])?;
                check.hostname = Some(value);
            }
            letter if letter.is_ascii_alphabetic() => check.unknown_sections += 1,
            _ => return Err(ParseError::UnknownSection),
        }
    }
    Ok(check)
}

/// Turns an event text's escaped `\n` into newlines.
pub fn unescape_event_text(text: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len());
    let mut index = 0;
    while index < text.len() {
        if text[index] == b'\\' && text.get(index + 1) == Some(&b'n') {
            out.push(b'\n');
            index += 2;
        } else {
            out.push(text[index]);
            index += 1;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::find_near;

    #[test]
    fn find_near_is_the_first_position() {
        // haystacks shorter and longer than the plain-loop window, the needle at every
        // position (twice, to require the first), or absent
        for len in 0..48 {
            let base: Vec<u8> = (0..len).map(|i| b'a' + (i % 26) as u8).collect();
            assert_eq!(find_near(b'|', &base), None, "{len}");
            for at in 0..len {
                let mut hay = base.clone();
                hay[at] = b'|';
                if at + 3 < len {
                    hay[at + 3] = b'|';
                }
                assert_eq!(find_near(b'|', &hay), Some(at), "{len} {at}");
            }
        }
    }
}
