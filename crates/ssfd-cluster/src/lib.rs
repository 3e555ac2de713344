//! The distributed tier's pieces that are not a wire format or a sink (issue 6). The
//! forwarding client lives in `ssfd-export` (`forward.rs`) and the global's import in
//! `ssfd-ingest`; here is the consistent-hash ring the proxy role will route by:
//! each destination owns many points (virtual nodes) on a 64-bit circle, and a key
//! belongs to the first point at or after its hash. Removing a destination moves only
//! its keys; adding it back returns them. The proxy role that routes by it (health
//! checks, DNS re-resolution, fail-over) is `ssfd_export::proxy`.

/// Points per destination: enough for an even spread (SPEC: at most 1.1× the mean).
pub const POINTS_PER_DESTINATION: usize = 1024;

/// A consistent-hash ring of destinations.
#[derive(Clone, Debug, Default)]
pub struct Ring {
    destinations: Vec<String>,
    /// (point, index into `destinations`), sorted by point.
    points: Vec<(u64, usize)>,
}

fn point(destination: &str, replica: usize) -> u64 {
    let mut hasher = xxhash_rust::xxh3::Xxh3Default::new();
    hasher.update(destination.as_bytes());
    hasher.update(&(replica as u64).to_le_bytes());
    hasher.digest()
}

impl Ring {
    /// A ring of `destinations` (duplicates count once).
    pub fn new<S: AsRef<str>>(destinations: &[S]) -> Ring {
        let mut ring = Ring::default();
        for destination in destinations {
            ring.add(destination.as_ref());
        }
        ring
    }

    /// Adds a destination (no-op when present).
    pub fn add(&mut self, destination: &str) {
        if self.destinations.iter().any(|d| d == destination) {
            return;
        }
        self.destinations.push(destination.to_string());
        self.rebuild();
    }

    /// Removes a destination (its keys move to the next points).
    pub fn remove(&mut self, destination: &str) {
        let before = self.destinations.len();
        self.destinations.retain(|d| d != destination);
        if self.destinations.len() != before {
            self.rebuild();
        }
    }

    fn rebuild(&mut self) {
        self.points = self
            .destinations
            .iter()
            .enumerate()
            .flat_map(|(index, destination)| {
                (0..POINTS_PER_DESTINATION).map(move |replica| (point(destination, replica), index))
            })
            .collect();
        self.points.sort_unstable();
    }

    pub fn destinations(&self) -> &[String] {
        &self.destinations
    }

    /// The destination owning `hash`; `None` on an empty ring.
    pub fn owner(&self, hash: u64) -> Option<&str> {
        if self.points.is_empty() {
            return None;
        }
        let at = self.points.partition_point(|(point, _)| *point < hash);
        let (_, index) = self.points[at % self.points.len()];
        Some(&self.destinations[index])
    }

    /// The destination owning `hash` when the destinations in `excluded` are taken
    /// out: the first point at or after `hash` whose destination is not excluded,
    /// which is where [`Ring::remove`] would move the key. `None` when every
    /// destination is excluded.
    pub fn owner_excluding<S: AsRef<str>>(&self, hash: u64, excluded: &[S]) -> Option<&str> {
        if excluded.is_empty() {
            return self.owner(hash);
        }
        let out = |index: usize| {
            excluded
                .iter()
                .any(|e| e.as_ref() == self.destinations[index])
        };
        if self.destinations.iter().enumerate().all(|(i, _)| out(i)) {
            return None;
        }
        let at = self.points.partition_point(|(point, _)| *point < hash);
        (0..self.points.len())
            .map(|step| self.points[(at + step) % self.points.len()].1)
            .find(|&index| !out(index))
            .map(|index| self.destinations[index].as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn key(i: u64) -> u64 {
        xxhash_rust::xxh3::xxh3_64(format!("series.{i}\0c\0env:prod,host:h{}", i % 97).as_bytes())
    }

    fn spread(ring: &Ring, keys: u64) -> HashMap<String, u64> {
        let mut counts = HashMap::new();
        for i in 0..keys {
            *counts
                .entry(ring.owner(key(i)).unwrap().to_string())
                .or_default() += 1;
        }
        counts
    }

    #[test]
    fn a_hundred_thousand_keys_spread_evenly_over_three() {
        let ring = Ring::new(&["global-a:8128", "global-b:8128", "global-c:8128"]);
        let counts = spread(&ring, 100_000);
        let mean = 100_000.0 / 3.0;
        let most = *counts.values().max().unwrap() as f64;
        assert_eq!(counts.len(), 3);
        assert!(
            most <= 1.1 * mean,
            "{counts:?}: max {:.3}× the mean",
            most / mean
        );
    }

    #[test]
    fn removing_moves_only_the_removed_keys_and_adding_back_restores() {
        let full = Ring::new(&["a", "b", "c"]);
        let mut ring = full.clone();
        ring.remove("b");
        for i in 0..20_000 {
            let (before, after) = (full.owner(key(i)).unwrap(), ring.owner(key(i)).unwrap());
            if before != "b" {
                assert_eq!(before, after, "key {i} moved though its owner stayed");
            } else {
                assert_ne!(after, "b");
            }
        }
        // excluding a destination for one call routes exactly as removing it
        for i in 0..20_000 {
            assert_eq!(full.owner_excluding(key(i), &["b"]), ring.owner(key(i)));
        }
        assert_eq!(full.owner_excluding(key(1), &["a", "b", "c"]), None);
        assert_eq!(
            full.owner_excluding(key(1), &[] as &[&str]),
            full.owner(key(1))
        );
        ring.add("b");
        for i in 0..20_000 {
            assert_eq!(full.owner(key(i)), ring.owner(key(i)), "back where it was");
        }
        assert_eq!(Ring::default().owner(1), None);
        assert_eq!(Ring::default().owner_excluding(1, &["a"]), None);
    }
}
