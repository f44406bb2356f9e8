//! The profile file's format (schema version 1) and its arithmetic.
//!
//! ```json
//! {"schema_version": 1,
//!  "machines": {"<fingerprint id>": {
//!     "fingerprint": {...},
//!     "updated_unix": 1763780000,
//!     "timings": {"sma": {"2^20": {"cpu:1": {"samples": 12, "ewma_ns_per_row": 1.9, ...}}}},
//!     "links": {},      // per GPU: host<->device bandwidth and latency (GPU backend)
//!     "balance": {}}}}  // per workload tag: each device's share of the rows (multi-device)
//! ```
//! Backends are named `cpu:<workers>` now; `gpu:<uuid>` and device sets (`gpus:<a>+<b>`,
//! `all:...`) fit the same map without a new version. Unknown fields are ignored on read, so an
//! older threadx can read a newer file of the same schema version.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::fingerprint::Fingerprint;
pub use super::fingerprint::SCHEMA_VERSION;

/// Weight of a new sample in the exponentially weighted moving average.
pub const EWMA_ALPHA: f64 = 0.25;
/// A sample counts at most this many times the current average.
pub const OUTLIER_CLIP: f64 = 3.0;

/// The whole file. Entries are kept as raw JSON and only this machine's is parsed: entries of
/// other machines or builds (possibly written by a newer threadx with fields we do not know) go
/// back to disk exactly as they came (numbers round-trip exactly: serde_json `float_roundtrip`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProfileFile {
    pub schema_version: u32,
    #[serde(default)]
    pub machines: BTreeMap<String, serde_json::Value>,
    /// Top-level fields of a newer writer, preserved.
    #[serde(flatten)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

impl Default for ProfileFile {
    fn default() -> Self {
        ProfileFile {
            schema_version: SCHEMA_VERSION,
            machines: BTreeMap::new(),
            extra: Default::default(),
        }
    }
}

impl ProfileFile {
    /// The entry under `id`, parsed (`None` if absent or not of our layout).
    pub fn machine(&self, id: &str) -> Option<MachineProfile> {
        self.machines
            .get(id)
            .and_then(|v| serde_json::from_value(v.clone()).ok())
    }

    pub fn set_machine(&mut self, id: &str, entry: &MachineProfile) {
        if let Ok(v) = serde_json::to_value(entry) {
            self.machines.insert(id.to_string(), v);
        }
    }
}

/// indicator -> size bucket -> backend -> statistics.
pub type Timings = BTreeMap<String, BTreeMap<String, BTreeMap<String, Stat>>>;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MachineProfile {
    pub fingerprint: Fingerprint,
    #[serde(default)]
    pub updated_unix: u64,
    #[serde(default)]
    pub timings: Timings,
    #[serde(default)]
    pub links: BTreeMap<String, LinkModel>,
    #[serde(default)]
    pub balance: BTreeMap<String, BTreeMap<String, f64>>,
}

impl MachineProfile {
    pub fn new(fingerprint: Fingerprint) -> Self {
        MachineProfile {
            fingerprint,
            updated_unix: 0,
            timings: BTreeMap::new(),
            links: BTreeMap::new(),
            balance: BTreeMap::new(),
        }
    }

    pub fn stat(&self, indicator: &str, bucket: &str, backend: &str) -> Option<&Stat> {
        self.timings.get(indicator)?.get(bucket)?.get(backend)
    }

    /// Adds one measured sample.
    pub fn push(&mut self, s: &Sample) {
        self.timings
            .entry(s.indicator.clone())
            .or_default()
            .entry(size_bucket(s.rows))
            .or_default()
            .entry(s.backend.clone())
            .or_default()
            .push(s.ns_per_row(), s.unix);
        self.updated_unix = self.updated_unix.max(s.unix);
    }
}

/// Timing statistics of one (indicator, size bucket, backend).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Stat {
    pub samples: u64,
    /// EWMA of wall time per row, in nanoseconds.
    pub ewma_ns_per_row: f64,
    /// Best time per row seen, in nanoseconds.
    pub best_ns_per_row: f64,
    #[serde(default)]
    pub last_unix: u64,
}

impl Stat {
    /// `ewma += α·(min(x, OUTLIER_CLIP·ewma) − ewma)`; the first sample seeds the average. The
    /// clip keeps one cold call (page faults on fresh memory, a busy machine) from dominating.
    pub fn push(&mut self, ns_per_row: f64, unix: u64) {
        if !ns_per_row.is_finite() || ns_per_row < 0.0 {
            return;
        }
        if self.samples == 0 {
            self.ewma_ns_per_row = ns_per_row;
            self.best_ns_per_row = ns_per_row;
        } else {
            let x = ns_per_row.min(OUTLIER_CLIP * self.ewma_ns_per_row);
            self.ewma_ns_per_row += EWMA_ALPHA * (x - self.ewma_ns_per_row);
            self.best_ns_per_row = self.best_ns_per_row.min(ns_per_row);
        }
        self.samples += 1;
        self.last_unix = self.last_unix.max(unix);
    }
}

/// Host<->device link of one GPU (filled by the GPU backend).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LinkModel {
    pub h2d_gb_per_s: f64,
    pub d2h_gb_per_s: f64,
    pub latency_us: f64,
    pub samples: u64,
}

/// One measured call, kept until it is merged into the file.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub indicator: String,
    pub rows: usize,
    pub backend: String,
    pub seconds: f64,
    pub unix: u64,
}

impl Sample {
    pub fn ns_per_row(&self) -> f64 {
        self.seconds * 1e9 / self.rows.max(1) as f64
    }
}

/// Power-of-two size bucket: rows in `[2^k, 2^(k+1))` fall in `"2^k"`.
pub fn size_bucket(rows: usize) -> String {
    format!("2^{}", bucket_exponent(rows))
}

pub fn bucket_exponent(rows: usize) -> u32 {
    usize::BITS - 1 - rows.max(1).leading_zeros()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ewma_follows_the_formula() {
        let mut s = Stat::default();
        s.push(10.0, 1);
        assert_eq!(
            (s.samples, s.ewma_ns_per_row, s.best_ns_per_row),
            (1, 10.0, 10.0)
        );
        s.push(20.0, 2);
        assert_eq!(s.ewma_ns_per_row, 10.0 + EWMA_ALPHA * 10.0);
        s.push(2.0, 3);
        let want = (10.0 + EWMA_ALPHA * 10.0) + EWMA_ALPHA * (2.0 - (10.0 + EWMA_ALPHA * 10.0));
        assert_eq!(s.ewma_ns_per_row, want);
        assert_eq!((s.samples, s.best_ns_per_row, s.last_unix), (3, 2.0, 3));
        s.push(1000.0, 4); // an outlier counts as OUTLIER_CLIP x the average
        assert_eq!(
            s.ewma_ns_per_row,
            want + EWMA_ALPHA * (OUTLIER_CLIP * want - want)
        );
        s.push(f64::NAN, 5);
        assert_eq!(s.samples, 4);
    }

    #[test]
    fn buckets_are_powers_of_two() {
        assert_eq!(size_bucket(0), "2^0");
        assert_eq!(size_bucket(1), "2^0");
        assert_eq!(size_bucket(1023), "2^9");
        assert_eq!(size_bucket(1024), "2^10");
        assert_eq!(size_bucket(1_000_000), "2^19");
    }
}
