//! A weighted, mergeable t-digest (Dunning's merging digest) whose centroids export to
//! and import from Veneur's `tdigest.MergingDigestData`.
//!
//! It uses the `k_2` scale function, k(q) = ln(q / (1 − q)) · δ / Z(n) with
//! Z(n) = 4 ln(n / δ) + 24, which keeps centroids near both tails small, so p99 and
//! p99.9 stay within SPEC 4.1's bounds on heavy-tailed data; Veneur's own digest uses
//! the arcsine scale with δ = 100, whose tail centroids are too wide for that. Samples
//! carry weights (1 / sample rate). Why not the `tdigest` crate: it takes no weights
//! and exposes no centroids to import or export (BENCHMARKS.md records the choice).

use ssfd_wire::tdigest::{Centroid as WireCentroid, MergingDigestData};

/// Samples buffered before they are merged into the centroids.
const BUFFER_CAPACITY: usize = 512;

/// Compression δ of the `k_2` scale (≈ 300 centroids for 10^6 samples).
pub const DEFAULT_COMPRESSION: f64 = 500.0;

#[derive(Clone, Copy, Debug, PartialEq)]
struct Centroid {
    mean: f64,
    weight: f64,
}

/// A merging t-digest with exact min, max, total weight, weighted sum and reciprocal sum.
#[derive(Clone, Debug)]
pub struct TDigest {
    compression: f64,
    main: Vec<Centroid>,
    main_weight: f64,
    buffer: Vec<Centroid>,
    buffer_weight: f64,
    min: f64,
    max: f64,
    sum: f64,
    reciprocal_sum: f64,
}

impl Default for TDigest {
    fn default() -> Self {
        TDigest::new(DEFAULT_COMPRESSION)
    }
}

impl TDigest {
    pub fn new(compression: f64) -> Self {
        TDigest {
            compression: compression.clamp(10.0, 10_000.0),
            main: Vec::new(),
            main_weight: 0.0,
            buffer: Vec::new(),
            buffer_weight: 0.0,
            min: f64::INFINITY,
            max: f64::NEG_INFINITY,
            sum: 0.0,
            reciprocal_sum: 0.0,
        }
    }

    fn buffer_capacity(&self) -> usize {
        BUFFER_CAPACITY
    }

    /// Adds `value` with `weight` (> 0, finite; others are ignored).
    pub fn add(&mut self, value: f64, weight: f64) {
        if !(value.is_finite() && weight > 0.0 && weight.is_finite()) {
            return;
        }
        if self.buffer.len() >= self.buffer_capacity() {
            self.compress();
        }
        self.min = self.min.min(value);
        self.max = self.max.max(value);
        self.sum += value * weight;
        self.reciprocal_sum += weight / value;
        self.buffer.push(Centroid {
            mean: value,
            weight,
        });
        self.buffer_weight += weight;
    }

    /// Total weight (the weighted count).
    pub fn count(&self) -> f64 {
        self.main_weight + self.buffer_weight
    }

    pub fn is_empty(&self) -> bool {
        self.count() == 0.0
    }

    pub fn min(&self) -> f64 {
        if self.is_empty() { f64::NAN } else { self.min }
    }

    pub fn max(&self) -> f64 {
        if self.is_empty() { f64::NAN } else { self.max }
    }

    /// The weighted sum of values.
    pub fn sum(&self) -> f64 {
        self.sum
    }

    /// The weighted sum of 1 / value (for the harmonic mean).
    pub fn reciprocal_sum(&self) -> f64 {
        self.reciprocal_sum
    }

    fn normalizer(&self, total: f64) -> f64 {
        let z = 4.0 * (total / self.compression).max(1.0).ln() + 24.0;
        self.compression / z
    }

    /// Folds the buffer into the main centroids.
    fn compress(&mut self) {
        if self.buffer.is_empty() {
            return;
        }
        // the main centroids are sorted already: sort the buffer alone, then merge
        let mut buffer = std::mem::take(&mut self.buffer);
        buffer.sort_unstable_by(|a, b| a.mean.total_cmp(&b.mean));
        let mut all = Vec::with_capacity(buffer.len() + self.main.len());
        let (mut i, mut j) = (0, 0);
        while i < buffer.len() && j < self.main.len() {
            if self.main[j].mean.total_cmp(&buffer[i].mean).is_le() {
                all.push(self.main[j]);
                j += 1;
            } else {
                all.push(buffer[i]);
                i += 1;
            }
        }
        all.extend_from_slice(&buffer[i..]);
        all.extend_from_slice(&self.main[j..]);
        let total = self.main_weight + self.buffer_weight;
        let normalizer = self.normalizer(total);
        let k = |q: f64| (q / (1.0 - q)).ln() * normalizer;
        let q_of = |k: f64| 1.0 / (1.0 + (-k / normalizer).exp());
        let limit = |so_far: f64| {
            if so_far <= 0.0 {
                0.0
            } else if so_far >= total {
                total
            } else {
                total * q_of(k(so_far / total) + 1.0)
            }
        };
        let mut merged: Vec<Centroid> = Vec::with_capacity(self.main.len() + 16);
        let mut so_far = 0.0;
        let mut current = all[0];
        let mut weight_limit = limit(so_far);
        for next in &all[1..] {
            let candidate = current.weight + next.weight;
            if so_far + candidate <= weight_limit {
                current.mean += (next.mean - current.mean) * next.weight / candidate;
                current.weight = candidate;
            } else {
                so_far += current.weight;
                merged.push(current);
                current = *next;
                weight_limit = limit(so_far);
            }
        }
        merged.push(current);
        self.main = merged;
        self.main_weight = total;
        buffer.clear();
        self.buffer = buffer;
        self.buffer_weight = 0.0;
    }

    /// The value at quantile `q` in [0, 1], aiming at the nearest-rank definition: the
    /// value of rank ⌈q·n⌉. A centroid of one sample is exact at its rank; larger
    /// centroids interpolate between neighbouring centres (min and max at the ends).
    /// NaN when empty.
    pub fn quantile(&mut self, q: f64) -> f64 {
        self.compress();
        let n = self.main.len();
        if n == 0 || q.is_nan() {
            return f64::NAN;
        }
        if q <= 0.0 {
            return self.min;
        }
        if q >= 1.0 {
            return self.max;
        }
        let total = self.main_weight;
        let index = q * total;
        let mut start = 0.0;
        for (i, centroid) in self.main.iter().enumerate() {
            let end = start + centroid.weight;
            if index > end && i + 1 < n {
                start = end;
                continue;
            }
            if centroid.weight <= 1.0 {
                return centroid.mean;
            }
            let centre = start + centroid.weight / 2.0;
            // the neighbour on the side of `index`, as (rank, value)
            let (rank, value) = if index < centre {
                match i.checked_sub(1).map(|j| self.main[j]) {
                    None => (0.0, self.min),
                    Some(previous) if previous.weight <= 1.0 => (start, previous.mean),
                    Some(previous) => (start - previous.weight / 2.0, previous.mean),
                }
            } else {
                match self.main.get(i + 1) {
                    None => (total, self.max),
                    Some(next) if next.weight <= 1.0 => (end + 1.0, next.mean),
                    Some(next) => (end + next.weight / 2.0, next.mean),
                }
            };
            if rank == centre {
                return centroid.mean;
            }
            let fraction = ((index - centre) / (rank - centre)).clamp(0.0, 1.0);
            return centroid.mean + fraction * (value - centroid.mean);
        }
        self.max
    }

    /// Adds every centroid and the exact statistics of `other`.
    pub fn merge(&mut self, other: &TDigest) {
        if other.is_empty() {
            return;
        }
        for centroid in other.main.iter().chain(&other.buffer) {
            if self.buffer.len() >= self.buffer_capacity() {
                self.compress();
            }
            self.buffer.push(*centroid);
            self.buffer_weight += centroid.weight;
        }
        self.min = self.min.min(other.min);
        self.max = self.max.max(other.max);
        self.sum += other.sum;
        self.reciprocal_sum += other.reciprocal_sum;
    }

    /// Veneur's wire form.
    pub fn to_wire(&mut self) -> MergingDigestData {
        self.compress();
        MergingDigestData {
            main_centroids: self
                .main
                .iter()
                .map(|c| WireCentroid {
                    mean: c.mean,
                    weight: c.weight,
                    samples: Vec::new(),
                })
                .collect(),
            compression: self.compression,
            min: self.min(),
            max: self.max(),
            reciprocal_sum: self.reciprocal_sum,
        }
    }

    /// Reads Veneur's wire form; centroids with a non-finite mean or a weight that is
    /// not positive are skipped. The weighted sum is rebuilt from the centroids.
    pub fn from_wire(data: &MergingDigestData) -> TDigest {
        let compression = if data.compression.is_finite() && data.compression > 0.0 {
            data.compression
        } else {
            DEFAULT_COMPRESSION
        };
        let mut digest = TDigest::new(compression.max(DEFAULT_COMPRESSION));
        for centroid in &data.main_centroids {
            if centroid.mean.is_finite() && centroid.weight > 0.0 && centroid.weight.is_finite() {
                digest.buffer.push(Centroid {
                    mean: centroid.mean,
                    weight: centroid.weight,
                });
                digest.buffer_weight += centroid.weight;
                digest.sum += centroid.mean * centroid.weight;
                digest.min = digest.min.min(centroid.mean);
                digest.max = digest.max.max(centroid.mean);
            }
        }
        if data.min.is_finite() && data.min <= digest.min {
            digest.min = data.min;
        }
        if data.max.is_finite() && data.max >= digest.max {
            digest.max = data.max;
        }
        if data.reciprocal_sum.is_finite() {
            digest.reciprocal_sum = data.reciprocal_sum;
        }
        digest.compress();
        digest
    }

    /// Centroids kept (for memory accounting and tests).
    pub fn centroid_count(&mut self) -> usize {
        self.compress();
        self.main.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_exact_cases() {
        let mut digest = TDigest::default();
        assert!(digest.quantile(0.5).is_nan());
        digest.add(5.0, 1.0);
        assert_eq!(digest.quantile(0.5), 5.0);
        for value in 1..=100 {
            digest.add(value as f64, 1.0);
        }
        assert_eq!(digest.min(), 1.0);
        assert_eq!(digest.max(), 100.0);
        assert_eq!(digest.count(), 101.0);
        let median = digest.quantile(0.5);
        assert!((median - 50.0).abs() <= 1.0, "{median}");
        let mut four = TDigest::default();
        for value in [1.0, 2.0, 3.0, 4.0] {
            four.add(value, 1.0);
        }
        let nearest_rank: Vec<f64> = [0.25, 0.5, 0.75, 0.99]
            .iter()
            .map(|&q| four.quantile(q))
            .collect();
        assert_eq!(nearest_rank, [1.0, 2.0, 3.0, 4.0]);
    }

    #[test]
    fn weights_count_like_repeats() {
        let mut weighted = TDigest::default();
        let mut repeated = TDigest::default();
        for value in 1..=1000 {
            weighted.add(value as f64, 4.0);
            for _ in 0..4 {
                repeated.add(value as f64, 1.0);
            }
        }
        assert_eq!(weighted.count(), repeated.count());
        for q in [0.1, 0.5, 0.9, 0.99] {
            let (a, b) = (weighted.quantile(q), repeated.quantile(q));
            assert!((a - b).abs() / b < 0.01, "q {q}: {a} vs {b}");
        }
    }

    #[test]
    fn wire_round_trip_keeps_centroids_and_stats() {
        let mut digest = TDigest::default();
        for value in 1..=1000 {
            digest.add(value as f64, 1.0);
        }
        let wire = digest.to_wire();
        let total: f64 = wire.main_centroids.iter().map(|c| c.weight).sum();
        assert_eq!(total, 1000.0);
        let mut back = TDigest::from_wire(&wire);
        assert_eq!(
            (back.min(), back.max(), back.count()),
            (1.0, 1000.0, 1000.0)
        );
        assert!((back.sum() - 500_500.0).abs() < 1e-6);
        assert!((back.quantile(0.99) - digest.quantile(0.99)).abs() < 1e-9);
    }
}
