//! Trace and span ids as SPEC 5 and 6 define them: a trace id has 128 bits (an SSF
//! span's `trace_id` is the low half, ssfd's extension `trace_id_high` the high half), a
//! span id 64. Ids print in the W3C trace-context form OpenTelemetry, Jaeger and Zipkin
//! use (32 and 16 lowercase hex digits), and every id ssfd reads takes each form SPEC 6
//! lists: 32 hex digits; 1 to 16 hex digits; a signed or unsigned decimal 64-bit SSF id;
//! each with an optional `0x`.

use std::fmt;

/// A 128-bit trace id.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TraceId(pub u128);

impl TraceId {
    /// From SSF's halves: `high` (extension field 1001) and the signed `trace_id`.
    pub const fn from_parts(high: u64, low: i64) -> TraceId {
        TraceId(((high as u128) << 64) | (low as u64 as u128))
    }

    /// From OpenTelemetry's 16 big-endian bytes.
    pub fn from_bytes(bytes: [u8; 16]) -> TraceId {
        TraceId(u128::from_be_bytes(bytes))
    }

    /// SSF's `trace_id`: the low 64 bits, signed.
    pub const fn low(self) -> i64 {
        self.0 as u64 as i64
    }

    /// `trace_id_high`: the high 64 bits.
    pub const fn high(self) -> u64 {
        (self.0 >> 64) as u64
    }

    pub fn to_bytes(self) -> [u8; 16] {
        self.0.to_be_bytes()
    }

    pub const fn is_zero(self) -> bool {
        self.0 == 0
    }

    /// A 64-bit hash for placement (span workers, the proxy ring). An SSF id (high half
    /// 0) hashes as its `trace_id` always did, so SSF traces keep their places.
    pub fn hash64(self) -> u64 {
        if self.high() == 0 {
            xxhash_rust::xxh3::xxh3_64(&self.low().to_le_bytes())
        } else {
            xxhash_rust::xxh3::xxh3_64(&self.0.to_le_bytes())
        }
    }

    /// Every trace id `text` may name, in the order SPEC 6 looks them up: as hex first,
    /// then as decimal when it reads both ways.
    pub fn candidates(text: &str) -> Result<Vec<TraceId>, BadId> {
        let (digits, prefixed) = strip_0x(text.trim());
        let mut out = Vec::with_capacity(2);
        if digits.len() == 32 && is_hex(digits) {
            out.push(TraceId(
                u128::from_str_radix(digits, 16).map_err(|_| BadId::of(text))?,
            ));
        } else if (1..=16).contains(&digits.len()) && is_hex(digits) {
            out.push(TraceId(
                u64::from_str_radix(digits, 16).map_err(|_| BadId::of(text))? as u128,
            ));
        }
        if !prefixed && let Some(low) = decimal(digits) {
            let id = TraceId::from_parts(0, low);
            if !out.contains(&id) {
                out.push(id);
            }
        }
        out.retain(|id| !id.is_zero());
        if out.is_empty() {
            return Err(BadId::of(text));
        }
        Ok(out)
    }

    /// The one id `text` names, hex first (SPEC 6); for lookups that cannot try two.
    pub fn parse(text: &str) -> Result<TraceId, BadId> {
        Self::candidates(text).map(|ids| ids[0])
    }
}

impl fmt::Display for TraceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:032x}", self.0)
    }
}

/// A span id in its printed form: 16 lowercase hex digits of the unsigned 64 bits.
pub fn span_hex(id: i64) -> String {
    format!("{:016x}", id as u64)
}

/// Every span id `text` may name (SPEC 6's forms), hex first.
pub fn span_candidates(text: &str) -> Result<Vec<i64>, BadId> {
    let (digits, prefixed) = strip_0x(text.trim());
    let mut out = Vec::with_capacity(2);
    if (1..=16).contains(&digits.len()) && is_hex(digits) {
        out.push(u64::from_str_radix(digits, 16).map_err(|_| BadId::of(text))? as i64);
    }
    if !prefixed
        && let Some(id) = decimal(digits)
        && !out.contains(&id)
    {
        out.push(id);
    }
    out.retain(|id| *id != 0);
    if out.is_empty() {
        return Err(BadId::of(text));
    }
    Ok(out)
}

fn strip_0x(text: &str) -> (&str, bool) {
    match text.strip_prefix("0x").or_else(|| text.strip_prefix("0X")) {
        Some(rest) => (rest, true),
        None => (text, false),
    }
}

fn is_hex(text: &str) -> bool {
    text.bytes().all(|b| b.is_ascii_hexdigit())
}

/// A signed or unsigned 64-bit decimal SSF id, as the signed value SSF carries. A
/// decimal id is written without leading zeros, so a string with them (the printed hex
/// forms, `0000000000001234`) is never also read as decimal.
fn decimal(text: &str) -> Option<i64> {
    let digits = text.strip_prefix(['-', '+']).unwrap_or(text);
    if digits.is_empty() || (digits.len() > 1 && digits.starts_with('0')) {
        return None;
    }
    if let Ok(signed) = text.parse::<i64>() {
        return Some(signed);
    }
    if !text.starts_with(['-', '+']) {
        return text.parse::<u64>().ok().map(|u| u as i64);
    }
    None
}

/// An id that is none of SPEC 6's forms, or zero.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BadId(pub String);

impl BadId {
    fn of(text: &str) -> BadId {
        let shown: String = text.chars().take(64).collect();
        BadId(shown)
    }
}

impl fmt::Display for BadId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "bad id {:?}: want 32 hex digits, 1 to 16 hex digits or a decimal 64-bit id (optionally 0x-prefixed hex), not zero",
            self.0
        )
    }
}

impl std::error::Error for BadId {}

#[cfg(test)]
mod tests {
    use super::*;

    const OTEL: &str = "94568bc249d55603975fbd3ef288210b";

    #[test]
    fn prints_in_w3c_form() {
        let id = TraceId::parse(OTEL).unwrap();
        assert_eq!(id.to_string(), OTEL);
        assert_eq!(id.high(), 0x94568bc249d55603);
        assert_eq!(id.low(), 0x975fbd3ef288210bu64 as i64);
        assert_eq!(id.low(), -7539099173140291317);
        assert_eq!(
            TraceId::from_parts(0, 1234).to_string(),
            "000000000000000000000000000004d2"
        );
        assert_eq!(span_hex(-1), "ffffffffffffffff");
        assert_eq!(span_hex(1234), "00000000000004d2");
    }

    #[test]
    fn every_input_form_round_trips() {
        let ssf = TraceId::from_parts(0, -7539099173140291317);
        for form in [
            "-7539099173140291317",             // signed decimal, as Veneur's apps log it
            "10907644900569260299",             // unsigned decimal
            "975fbd3ef288210b",                 // 16 hex digits
            "0x975fbd3ef288210b",               // with 0x
            "0000000000000000975fbd3ef288210b", // the printed form
        ] {
            assert_eq!(TraceId::parse(form), Ok(ssf), "{form}");
        }
        let otel = TraceId::parse(OTEL).unwrap();
        assert_eq!(TraceId::parse(&format!("0x{OTEL}")), Ok(otel));
        assert_eq!(TraceId::parse(&OTEL.to_uppercase()), Ok(otel));
        assert_eq!(TraceId::parse(&otel.to_string()), Ok(otel));
        // short hex with letters (Jaeger trims leading zeros)
        assert_eq!(TraceId::parse("4d2"), Ok(TraceId(0x4d2)));
        // digits only: hex first, then decimal
        assert_eq!(
            TraceId::candidates("1234").unwrap(),
            vec![TraceId(0x1234), TraceId(1234)]
        );
        assert_eq!(span_candidates("10").unwrap(), vec![16, 10]);
        assert_eq!(span_candidates("00000000000004d2").unwrap(), vec![1234]);
        // a printed id (leading zeros) is hex only (found by review)
        assert_eq!(span_candidates("0000000000001234").unwrap(), vec![0x1234]);
        assert_eq!(
            TraceId::candidates("00000000000000000000000000001234").unwrap(),
            vec![TraceId(0x1234)]
        );
    }

    #[test]
    fn bad_ids_are_refused() {
        for bad in [
            "",
            "0",
            "0x",
            "00000000000000000000000000000000",
            "xyz",
            "12x",
            &"1".repeat(33),
            &"a".repeat(17),
            "0x-5",
            "99999999999999999999999",
        ] {
            assert!(TraceId::candidates(bad).is_err(), "{bad:?}");
        }
        assert!(span_candidates(OTEL).is_err());
        let error = TraceId::parse("k=v").unwrap_err().to_string();
        assert!(
            error.contains("\"k=v\"") && error.contains("32 hex digits"),
            "{error}"
        );
    }
}
