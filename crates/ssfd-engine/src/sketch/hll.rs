//! HyperLogLog with precision 14 in the binary form of the library Veneur vendors
//! (axiomhq/hyperloglog, 2017): members hashed with 64-bit MetroHash (seed 1337), a
//! sparse mode (25-bit encoded hashes in a buffer plus a delta-varint compressed list)
//! that turns dense once the list takes more than m bytes, and dense 4-bit "tail-cut" registers over a base
//! `b`. Sets exchanged with Veneur merge without inflating counts because both sides
//! hash and encode members the same way.
//!
//! One deliberate difference: Veneur's dense estimate counts the zero registers of the
//! even slots twice (a bug in that revision); this one counts every zero register.

/// Precision: 2^14 registers.
pub const PRECISION: u8 = 14;
const SPARSE_PRECISION: u8 = 25;
const M: u32 = 1 << PRECISION;
const MP: u32 = 1 << SPARSE_PRECISION;
/// Register values are 4 bits above the base.
const CAPACITY: u8 = 16;
const VERSION: u8 = 1;
const SEED: u64 = 1337;

/// 64-bit MetroHash of `bytes` with `seed`.
pub fn metro_hash64(bytes: &[u8], seed: u64) -> u64 {
    const K0: u64 = 0xD6D0_18F5;
    const K1: u64 = 0xA2AA_033B;
    const K2: u64 = 0x6299_2FC1;
    const K3: u64 = 0x30BC_5B29;
    let read64 = |b: &[u8]| u64::from_le_bytes(b[..8].try_into().expect("8 bytes"));
    let mut rest = bytes;
    let mut hash = seed.wrapping_add(K2).wrapping_mul(K0);
    if rest.len() >= 32 {
        let mut v = [hash; 4];
        while rest.len() >= 32 {
            v[0] = v[0].wrapping_add(read64(rest).wrapping_mul(K0));
            v[0] = v[0].rotate_right(29).wrapping_add(v[2]);
            v[1] = v[1].wrapping_add(read64(&rest[8..]).wrapping_mul(K1));
            v[1] = v[1].rotate_right(29).wrapping_add(v[3]);
            v[2] = v[2].wrapping_add(read64(&rest[16..]).wrapping_mul(K2));
            v[2] = v[2].rotate_right(29).wrapping_add(v[0]);
            v[3] = v[3].wrapping_add(read64(&rest[24..]).wrapping_mul(K3));
            v[3] = v[3].rotate_right(29).wrapping_add(v[1]);
            rest = &rest[32..];
        }
        v[2] ^= v[0]
            .wrapping_add(v[3])
            .wrapping_mul(K0)
            .wrapping_add(v[1])
            .rotate_right(37)
            .wrapping_mul(K1);
        v[3] ^= v[1]
            .wrapping_add(v[2])
            .wrapping_mul(K1)
            .wrapping_add(v[0])
            .rotate_right(37)
            .wrapping_mul(K0);
        v[0] ^= v[0]
            .wrapping_add(v[2])
            .wrapping_mul(K0)
            .wrapping_add(v[3])
            .rotate_right(37)
            .wrapping_mul(K1);
        v[1] ^= v[1]
            .wrapping_add(v[3])
            .wrapping_mul(K1)
            .wrapping_add(v[2])
            .rotate_right(37)
            .wrapping_mul(K0);
        hash = hash.wrapping_add(v[0] ^ v[1]);
    }
    if rest.len() >= 16 {
        let mut v0 = hash.wrapping_add(read64(rest).wrapping_mul(K2));
        v0 = v0.rotate_right(29).wrapping_mul(K3);
        let mut v1 = hash.wrapping_add(read64(&rest[8..]).wrapping_mul(K2));
        v1 = v1.rotate_right(29).wrapping_mul(K3);
        v0 ^= v0.wrapping_mul(K0).rotate_right(21).wrapping_add(v1);
        v1 ^= v1.wrapping_mul(K3).rotate_right(21).wrapping_add(v0);
        hash = hash.wrapping_add(v1);
        rest = &rest[16..];
    }
    if rest.len() >= 8 {
        hash = hash.wrapping_add(read64(rest).wrapping_mul(K3));
        hash ^= hash.rotate_right(55).wrapping_mul(K1);
        rest = &rest[8..];
    }
    if rest.len() >= 4 {
        let word = u32::from_le_bytes(rest[..4].try_into().expect("4 bytes"));
        hash = hash.wrapping_add(u64::from(word).wrapping_mul(K3));
        hash ^= hash.rotate_right(26).wrapping_mul(K1);
        rest = &rest[4..];
    }
    if rest.len() >= 2 {
        let half = u16::from_le_bytes([rest[0], rest[1]]);
        hash = hash.wrapping_add(u64::from(half).wrapping_mul(K3));
        hash ^= hash.rotate_right(48).wrapping_mul(K1);
        rest = &rest[2..];
    }
    if let Some(&byte) = rest.first() {
        hash = hash.wrapping_add(u64::from(byte).wrapping_mul(K3));
        hash ^= hash.rotate_right(37).wrapping_mul(K1);
    }
    hash ^= hash.rotate_right(28);
    hash = hash.wrapping_mul(K0);
    hash ^= hash.rotate_right(29);
    hash
}

/// Bytes of `delta` as a varint (7 bits per byte).
fn varint(delta: u32) -> usize {
    (32 - delta.leading_zeros()).max(1).div_ceil(7) as usize
}

/// `length` bits of `value` starting at bit `start`.
fn bits(value: u64, start: u8, length: u8) -> u64 {
    (value >> start) & ((1u64 << length) - 1)
}

/// A hash as the sparse mode stores it: the top 25 bits, plus the run of zeros when
/// the bits below the 14-bit index are all zero.
fn encode_hash(x: u64) -> u32 {
    let index = bits(x, 64 - SPARSE_PRECISION, SPARSE_PRECISION) as u32;
    if bits(x, 64 - SPARSE_PRECISION, SPARSE_PRECISION - PRECISION) == 0 {
        let rest = (bits(x, 0, 64 - SPARSE_PRECISION) << SPARSE_PRECISION)
            | ((1u64 << SPARSE_PRECISION) - 1);
        let zeros = rest.leading_zeros() + 1;
        return (index << 7) | (zeros << 1) | 1;
    }
    index << 1
}

/// (register index, rank) of an encoded sparse hash.
fn decode_hash(k: u32) -> (u32, u8) {
    if k & 1 == 1 {
        let index = (k >> (32 - PRECISION)) & (M - 1);
        let rank = ((k >> 1) & 0x3f) as u8 + (SPARSE_PRECISION - PRECISION);
        (index, rank)
    } else {
        let index = (k >> (SPARSE_PRECISION - PRECISION + 1)) & (M - 1);
        let shifted = k.wrapping_shl(u32::from(32 - SPARSE_PRECISION + PRECISION - 1));
        (index, shifted.leading_zeros() as u8 + 1)
    }
}

/// (register index, rank) of a hash in dense mode.
fn position(x: u64) -> (u32, u8) {
    let index = bits(x, 64 - PRECISION, PRECISION) as u32;
    let w = (x << PRECISION) | (1u64 << (PRECISION - 1));
    (index, w.leading_zeros() as u8 + 1)
}

fn beta14(ez: f64) -> f64 {
    let zl = (ez + 1.0).ln();
    -0.370393911 * ez + 0.070471823 * zl + 0.17393686 * zl.powi(2) + 0.16339839 * zl.powi(3)
        - 0.09237745 * zl.powi(4)
        + 0.03738027 * zl.powi(5)
        - 0.005384159 * zl.powi(6)
        + 0.00042419 * zl.powi(7)
}

/// Why set bytes were refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum HllError {
    #[error("hyperloglog bytes are truncated")]
    Truncated,
    #[error("hyperloglog precision {0} is not 14")]
    Precision(u8),
    #[error("hyperloglog bytes are malformed")]
    Malformed,
}

/// A HyperLogLog sketch of precision 14.
#[derive(Clone, Debug, PartialEq)]
pub struct HyperLogLog {
    /// Sparse mode: `buffer` (unsorted, may repeat) and `list` (sorted, distinct).
    sparse: bool,
    buffer: Vec<u32>,
    list: Vec<u32>,
    /// Bytes of the list's delta-varint encoding, kept as the list changes.
    encoded: usize,
    /// Dense mode: the base and 2^14 4-bit registers, two per byte, even index high.
    base: u8,
    registers: Vec<u8>,
}

impl Default for HyperLogLog {
    fn default() -> Self {
        HyperLogLog {
            sparse: true,
            buffer: Vec::new(),
            list: Vec::new(),
            encoded: 0,
            base: 0,
            registers: Vec::new(),
        }
    }
}

impl HyperLogLog {
    /// Adds a member (its bytes as sent).
    pub fn insert(&mut self, member: &[u8]) {
        self.insert_hash(metro_hash64(member, SEED));
    }

    pub fn insert_hash(&mut self, x: u64) {
        if self.sparse {
            self.buffer.push(encode_hash(x));
            self.maybe_densify();
        } else {
            let (index, rank) = position(x);
            self.insert_rank(index, rank);
        }
    }

    /// Veneur's library keeps the pending entries in a set and merges them once more
    /// than m/100 are distinct; the buffer may repeat, so it is de-duplicated first,
    /// and a set that sees the same members again merges (and may turn dense) exactly
    /// when Veneur's would.
    fn maybe_densify(&mut self) {
        if self.buffer.len() as u64 * 100 > u64::from(M) {
            self.buffer.sort_unstable();
            self.buffer.dedup();
            if self.buffer.len() as u64 * 100 > u64::from(M) {
                let encoded = self.merge_sorted_buffer();
                self.densify_if_over(encoded);
            }
        }
    }

    /// Veneur's rule: dense once the compressed list takes more than m bytes.
    fn densify_if_over(&mut self, encoded: usize) {
        if encoded > M as usize {
            self.make_dense();
        }
    }

    /// Merges the buffer into the sorted list and returns the bytes of the list's
    /// delta-varint encoding (Veneur's dense switch asks for them at every merge).
    /// Entries the list holds already are dropped first (a set sees the same members
    /// again and again). A few new entries are put in place one run of the list at a
    /// time, the count corrected from the gaps they fall in; many are merged in one
    /// pass over the list from the back, counting as it goes. (A new list built and
    /// then walked again to count it had made merging the costliest part of a set's
    /// insert.)
    fn merge_buffer(&mut self) -> usize {
        self.buffer.sort_unstable();
        self.buffer.dedup();
        self.merge_sorted_buffer()
    }

    /// [`HyperLogLog::merge_buffer`] of a buffer already sorted and de-duplicated.
    fn merge_sorted_buffer(&mut self) -> usize {
        if self.buffer.is_empty() {
            return self.encoded;
        }
        // past a short list, eight entries tell whether most are repeats, worth
        // finding one by one
        let list = &self.list;
        let step = self.buffer.len().div_ceil(8);
        let few_new = self.buffer.len() * 4 < list.len()
            && self
                .buffer
                .iter()
                .step_by(step)
                .filter(|k| list.binary_search(k).is_err())
                .count()
                <= 1;
        if few_new {
            self.buffer.retain(|k| list.binary_search(k).is_err());
        }
        if few_new && self.buffer.len() * 32 < self.list.len() {
            self.merge_few();
        } else if !self.buffer.is_empty() {
            self.merge_many();
        }
        self.buffer.clear();
        debug_assert_eq!(self.encoded, self.recount(), "the kept encoded size");
        self.encoded
    }

    /// The encoded size counted afresh (debug builds check the kept one against it).
    fn recount(&self) -> usize {
        let mut last = 0u32;
        self.list
            .iter()
            .map(|&k| {
                let delta = k.wrapping_sub(last);
                last = k;
                varint(delta)
            })
            .sum()
    }

    /// Puts the (new, sorted) buffer entries in place, moving each run of the list
    /// above them up once.
    fn merge_few(&mut self) {
        let (list, new) = (&self.list, &self.buffer);
        // a run of new entries between a (0 before the first) and c replaces the delta
        // c - a with a - k1, k1 - k2, ..., kj - c
        let (mut added, mut removed) = (0, 0);
        let mut i = 0;
        while i < new.len() {
            let at = list.partition_point(|&x| x < new[i]);
            let a = if at == 0 { 0 } else { list[at - 1] };
            let c = list.get(at).copied();
            let mut previous = a;
            while i < new.len() && c.is_none_or(|c| new[i] < c) {
                added += varint(new[i].wrapping_sub(previous));
                previous = new[i];
                i += 1;
            }
            if let Some(c) = c {
                added += varint(c - previous);
                removed += varint(c.wrapping_sub(a));
            }
        }
        self.encoded = self.encoded + added - removed;
        let old = self.list.len();
        self.list.resize(old + new.len(), 0);
        let (mut end, mut source_end) = (self.list.len(), old);
        for &k in self.buffer.iter().rev() {
            let at = self.list[..source_end].partition_point(|&x| x < k);
            let run = source_end - at;
            self.list.copy_within(at..source_end, end - run);
            end -= run + 1;
            self.list[end] = k;
            source_end = at;
        }
        debug_assert_eq!(end, source_end);
    }

    /// Merges the sorted buffer in one pass from the back (an entry the list holds
    /// already is kept once) and counts the encoding of what moved and of the head
    /// before it.
    fn merge_many(&mut self) {
        let (old, extra) = (self.list.len(), self.buffer.len());
        self.list.resize(old + extra, 0);
        let list = &mut self.list;
        // `write` is the next slot to fill, counting down; it never drops below `left`
        let (mut left, mut right, mut write) = (old, extra, old + extra);
        let mut tail_bytes = 0;
        let mut next: Option<u32> = None;
        while right > 0 {
            let b = self.buffer[right - 1];
            write -= 1;
            let value = if left > 0 && list[left - 1] >= b {
                left -= 1;
                if list[left] == b {
                    right -= 1;
                }
                list[left]
            } else {
                right -= 1;
                b
            };
            list[write] = value;
            if let Some(next) = next {
                tail_bytes += varint(next - value);
            }
            next = Some(value);
        }
        // the head [0, left) did not move; the moved part follows it after a gap the
        // repeats left
        let mut last = 0u32;
        let mut bytes = 0;
        for &k in &list[..left] {
            bytes += varint(k.wrapping_sub(last));
            last = k;
        }
        if let Some(first_moved) = next {
            bytes += varint(first_moved.wrapping_sub(last)) + tail_bytes;
        }
        let gap = write - left;
        if gap > 0 {
            list.copy_within(write.., left);
            list.truncate(old + extra - gap);
        }
        self.encoded = bytes;
    }

    fn make_dense(&mut self) {
        self.merge_buffer();
        self.registers = vec![0; (M / 2) as usize];
        self.base = 0;
        self.sparse = false;
        self.encoded = 0;
        for k in std::mem::take(&mut self.list) {
            let (index, rank) = decode_hash(k);
            self.insert_rank(index, rank);
        }
    }

    fn get(&self, index: u32) -> u8 {
        let byte = self.registers[(index / 2) as usize];
        if index.is_multiple_of(2) {
            byte >> 4
        } else {
            byte & 0x0f
        }
    }

    fn set(&mut self, index: u32, value: u8) {
        let byte = &mut self.registers[(index / 2) as usize];
        *byte = if index.is_multiple_of(2) {
            (*byte & 0x0f) | (value << 4)
        } else {
            (*byte & 0xf0) | (value & 0x0f)
        };
    }

    fn min_register(&self) -> u8 {
        self.registers
            .iter()
            .map(|b| (b >> 4).min(b & 0x0f))
            .min()
            .unwrap_or(0)
    }

    /// Lowers every register of at least `delta` by `delta` (the base rises by it).
    fn rebase(&mut self, delta: u8) {
        for index in 0..M {
            let value = self.get(index);
            if value >= delta {
                self.set(index, value - delta);
            }
        }
    }

    fn insert_rank(&mut self, index: u32, rank: u8) {
        if rank.wrapping_sub(self.base) >= CAPACITY {
            let delta = self.min_register();
            if delta > 0 {
                self.base += delta;
                self.rebase(delta);
            }
        }
        if rank > self.base {
            let value = (rank - self.base).min(CAPACITY - 1);
            if value > self.get(index) {
                self.set(index, value);
            }
        }
    }

    /// The estimated number of distinct members.
    pub fn estimate(&mut self) -> u64 {
        if self.sparse {
            self.merge_buffer();
            let (mp, count) = (f64::from(MP), self.list.len() as f64);
            return (mp * (mp / (mp - count)).ln()) as u64;
        }
        let mut sum = 0.0;
        let mut zeros = 0.0;
        for index in 0..M {
            let rank = self.base + self.get(index);
            if rank == 0 {
                zeros += 1.0;
            }
            sum += (-f64::from(rank)).exp2();
        }
        let m = f64::from(M);
        let alpha = 0.7213 / (1.0 + 1.079 / m);
        let estimate = if self.base == 0 {
            alpha * m * (m - zeros) / (sum + beta14(zeros)) + 0.5
        } else {
            alpha * m * m / sum + 0.5
        };
        (estimate + 0.5) as u64
    }

    /// Adds every member of `other`.
    pub fn merge(&mut self, other: &HyperLogLog) {
        if self.sparse && other.sparse {
            self.buffer.extend_from_slice(&other.buffer);
            self.buffer.extend_from_slice(&other.list);
            let encoded = self.merge_buffer();
            self.densify_if_over(encoded);
            return;
        }
        if self.sparse {
            self.make_dense();
        }
        if other.sparse {
            for &k in other.buffer.iter().chain(&other.list) {
                let (index, rank) = decode_hash(k);
                self.insert_rank(index, rank);
            }
            return;
        }
        let mut other = other.clone();
        if self.base < other.base {
            self.rebase(other.base - self.base);
            self.base = other.base;
        } else if other.base < self.base {
            other.rebase(self.base - other.base);
            other.base = self.base;
        }
        for index in 0..M {
            let value = other.get(index);
            if value > self.get(index) {
                self.set(index, value);
            }
        }
    }

    /// Veneur's binary form (version 1, precision 14, base, sparse flag, then the
    /// sparse buffer and compressed list, or the dense registers).
    pub fn to_bytes(&mut self) -> Vec<u8> {
        let mut out = vec![VERSION, PRECISION, self.base, u8::from(self.sparse)];
        if self.sparse {
            self.merge_buffer();
            out.extend_from_slice(&0u32.to_be_bytes());
            let mut deltas = Vec::with_capacity(self.list.len() * 2);
            let mut last = 0u32;
            for &k in &self.list {
                let mut delta = k.wrapping_sub(last);
                while delta & 0xffff_ff80 != 0 {
                    deltas.push((delta & 0x7f) as u8 | 0x80);
                    delta >>= 7;
                }
                deltas.push(delta as u8);
                last = k;
            }
            out.extend_from_slice(&(self.list.len() as u32).to_be_bytes());
            out.extend_from_slice(&last.to_be_bytes());
            out.extend_from_slice(&(deltas.len() as u32).to_be_bytes());
            out.extend_from_slice(&deltas);
        } else {
            out.extend_from_slice(&(self.registers.len() as u32).to_be_bytes());
            out.extend_from_slice(&self.registers);
        }
        out
    }

    /// Reads Veneur's binary form, checking every length (the bytes are untrusted).
    pub fn from_bytes(data: &[u8]) -> Result<HyperLogLog, HllError> {
        let word = |at: usize| -> Result<u32, HllError> {
            let bytes = data.get(at..at + 4).ok_or(HllError::Truncated)?;
            Ok(u32::from_be_bytes(bytes.try_into().expect("4 bytes")))
        };
        if data.len() < 4 {
            return Err(HllError::Truncated);
        }
        if data[1] != PRECISION {
            return Err(HllError::Precision(data[1]));
        }
        let base = data[2];
        if data[3] == 1 {
            let buffered = word(4)? as usize;
            let list_at = buffered
                .checked_mul(4)
                .and_then(|n| n.checked_add(8))
                .ok_or(HllError::Malformed)?;
            if list_at > data.len() {
                return Err(HllError::Truncated);
            }
            let buffer: Vec<u32> = data[8..list_at]
                .chunks_exact(4)
                .map(|c| u32::from_be_bytes(c.try_into().expect("4 bytes")))
                .collect();
            let count = word(list_at)? as usize;
            let _last = word(list_at + 4)?;
            let size = word(list_at + 8)? as usize;
            let start = list_at + 12;
            let bytes = data
                .get(start..start.checked_add(size).ok_or(HllError::Malformed)?)
                .ok_or(HllError::Truncated)?;
            let mut list = Vec::with_capacity(count.min(M as usize + 1));
            let (mut position, mut last) = (0usize, 0u32);
            while position < bytes.len() {
                let mut delta: u32 = 0;
                let mut shift = 0u32;
                loop {
                    let byte = *bytes.get(position).ok_or(HllError::Malformed)?;
                    position += 1;
                    if shift > 28 {
                        return Err(HllError::Malformed);
                    }
                    delta |= u32::from(byte & 0x7f) << shift;
                    shift += 7;
                    if byte & 0x80 == 0 {
                        break;
                    }
                }
                last = last.wrapping_add(delta);
                list.push(last);
            }
            if list.len() != count {
                return Err(HllError::Malformed);
            }
            let mut sketch = HyperLogLog {
                sparse: true,
                buffer,
                list,
                encoded: 0,
                base,
                registers: Vec::new(),
            };
            // a list from another writer may be unsorted or repeat; normalise it
            if sketch.list.windows(2).all(|w| w[0] < w[1]) {
                let mut last = 0u32;
                for &k in &sketch.list {
                    sketch.encoded += varint(k.wrapping_sub(last));
                    last = k;
                }
            } else {
                let list = std::mem::take(&mut sketch.list);
                sketch.buffer.extend(list);
            }
            // as Veneur: a sketch stays in the mode it was sent in until it next grows
            sketch.merge_buffer();
            return Ok(sketch);
        }
        if data[3] != 0 {
            return Err(HllError::Malformed);
        }
        let size = word(4)? as usize;
        if size != (M / 2) as usize {
            return Err(HllError::Malformed);
        }
        let registers = data.get(8..8 + size).ok_or(HllError::Truncated)?.to_vec();
        if data.len() != 8 + size {
            return Err(HllError::Malformed);
        }
        Ok(HyperLogLog {
            sparse: false,
            buffer: Vec::new(),
            list: Vec::new(),
            encoded: 0,
            base,
            registers,
        })
    }

    pub fn is_sparse(&self) -> bool {
        self.sparse
    }

    /// The sparse entries (buffer and list), sorted and distinct.
    pub fn sparse_entries(&mut self) -> &[u32] {
        self.merge_buffer();
        &self.list
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_sets_are_exact() {
        let mut sketch = HyperLogLog::default();
        for n in 0..100u32 {
            assert_eq!(sketch.clone().estimate(), u64::from(n));
            sketch.insert(format!("member-{n}").as_bytes());
            sketch.insert(format!("member-{n}").as_bytes());
        }
    }

    #[test]
    fn bytes_round_trip_in_both_modes() {
        let mut sketch = HyperLogLog::default();
        for n in 0..50 {
            sketch.insert(format!("m{n}").as_bytes());
        }
        let bytes = sketch.to_bytes();
        assert_eq!(&bytes[..4], &[1, 14, 0, 1]);
        let mut back = HyperLogLog::from_bytes(&bytes).unwrap();
        assert_eq!(back.estimate(), sketch.estimate());
        for n in 50..100_000 {
            sketch.insert(format!("m{n}").as_bytes());
        }
        assert!(!sketch.is_sparse());
        let bytes = sketch.to_bytes();
        assert_eq!(bytes.len(), 8200);
        let mut back = HyperLogLog::from_bytes(&bytes).unwrap();
        assert_eq!(back.estimate(), sketch.estimate());
    }

    #[test]
    fn a_merge_keeps_the_list_sorted_and_distinct_and_counts_its_bytes() {
        let mut sketch = HyperLogLog::default();
        let mut want = std::collections::BTreeSet::new();
        let mut state = 0x9E37_79B9_7F4A_7C15u64;
        let mut next = || {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1);
            state
        };
        let count = |want: &std::collections::BTreeSet<u32>| -> usize {
            let mut last = 0u32;
            want.iter()
                .map(|&k| {
                    let mut delta = k - last;
                    last = k;
                    let mut n = 1;
                    while delta >= 0x80 {
                        delta >>= 7;
                        n += 1;
                    }
                    n
                })
                .sum()
        };
        // rounds of mostly new entries (one pass over the list), then rounds of
        // repeats with a few new ones (put in place one by one), with entries below,
        // between and above the listed ones
        for round in 0..120u64 {
            let size = if round < 60 { round * 7 % 200 } else { 164 };
            for n in 0..size {
                let random = next();
                let repeat = if round < 60 { n % 4 == 0 } else { n % 80 != 0 };
                let k = if repeat && !want.is_empty() {
                    *want
                        .iter()
                        .nth((random % want.len() as u64) as usize)
                        .unwrap()
                } else {
                    match random % 5 {
                        0 => (random >> 60) as u32 + 1,
                        1 => u32::MAX - (random >> 60) as u32,
                        _ => (random >> 33) as u32 | 1,
                    }
                };
                sketch.buffer.push(k);
                sketch.buffer.push(k);
                want.insert(k);
            }
            let bytes = sketch.merge_buffer();
            assert_eq!(
                sketch.list,
                want.iter().copied().collect::<Vec<_>>(),
                "{round}"
            );
            assert_eq!(bytes, count(&want), "{round}");
        }
    }

    #[test]
    fn pending_entries_merge_once_164_are_distinct_as_in_veneur() {
        let mut sketch = HyperLogLog::default();
        let member = |n: u32| format!("member-{n}");
        for round in 0..50 {
            for n in 0..163 {
                sketch.insert(member(n).as_bytes());
            }
            assert!(
                sketch.list.is_empty(),
                "163 distinct pending never merge ({round})"
            );
        }
        sketch.insert(member(163).as_bytes());
        assert_eq!(
            sketch.list.len(),
            164,
            "the 164th distinct entry merges them"
        );
        assert!(sketch.buffer.is_empty());
        assert_eq!(sketch.estimate(), 164);
    }

    #[test]
    fn hostile_bytes_are_errors() {
        for bytes in [
            &[][..],
            &[1, 14, 0],
            &[1, 12, 0, 1, 0, 0, 0, 0],
            &[1, 14, 0, 1, 255, 255, 255, 255],
            &[
                1, 14, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1, 0x80,
            ],
            &[1, 14, 0, 0, 0, 0, 0, 4, 1, 2, 3, 4],
            &[1, 14, 0, 7],
        ] {
            assert!(HyperLogLog::from_bytes(bytes).is_err(), "{bytes:?}");
        }
    }
}
