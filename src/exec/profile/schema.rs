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
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::{Map, Value};

use super::fingerprint::Fingerprint;
pub use super::fingerprint::SCHEMA_VERSION;

/// Weight of a new sample in the exponentially weighted moving average.
pub const EWMA_ALPHA: f64 = 0.25;
/// A sample counts at most this many times the current average.
pub const OUTLIER_CLIP: f64 = 3.0;

/// One entry's JSON text, shared: cloning the file (each write starts from the one in memory)
/// copies pointers, not the text of thousands of other machines' entries.
#[derive(Debug, Clone)]
pub struct RawEntry(Arc<RawValue>);

impl std::ops::Deref for RawEntry {
    type Target = RawValue;
    fn deref(&self) -> &RawValue {
        &self.0
    }
}

impl From<Box<RawValue>> for RawEntry {
    fn from(raw: Box<RawValue>) -> Self {
        RawEntry(Arc::from(raw))
    }
}

impl Serialize for RawEntry {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        (*self.0).serialize(s)
    }
}

impl<'de> Deserialize<'de> for RawEntry {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Box::<RawValue>::deserialize(d).map(RawEntry::from)
    }
}

/// The whole file. Entries are kept as raw JSON text and only this machine's is parsed: entries of
/// other machines or builds (possibly written by a newer threadx with fields we do not know) go
/// back to disk byte for byte, never parsed into a tree (a shared profile can hold thousands).
#[derive(Debug, Clone)]
pub struct ProfileFile {
    pub schema_version: u32,
    pub machines: BTreeMap<String, RawEntry>,
    /// Top-level fields of a newer writer, preserved.
    pub extra: BTreeMap<String, RawEntry>,
}

impl PartialEq for ProfileFile {
    fn eq(&self, other: &Self) -> bool {
        fn same(a: &BTreeMap<String, RawEntry>, b: &BTreeMap<String, RawEntry>) -> bool {
            a.len() == b.len()
                && a.iter()
                    .zip(b)
                    .all(|((ka, va), (kb, vb))| ka == kb && va.get() == vb.get())
        }
        self.schema_version == other.schema_version
            && same(&self.machines, &other.machines)
            && same(&self.extra, &other.extra)
    }
}

impl Serialize for ProfileFile {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut m = s.serialize_map(Some(2 + self.extra.len()))?;
        m.serialize_entry("schema_version", &self.schema_version)?;
        m.serialize_entry("machines", &self.machines)?;
        for (k, v) in &self.extra {
            m.serialize_entry(k, v)?;
        }
        m.end()
    }
}

impl<'de> Deserialize<'de> for ProfileFile {
    /// One pass over the text: `machines`' values are only delimited (kept as raw text).
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = ProfileFile;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a threadx profile object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut a: A,
            ) -> Result<ProfileFile, A::Error> {
                let mut version = None;
                let mut machines = None;
                let mut extra = BTreeMap::new();
                while let Some(key) = a.next_key::<String>()? {
                    match key.as_str() {
                        "schema_version" => version = Some(a.next_value::<u32>()?),
                        "machines" => machines = Some(a.next_value()?),
                        _ => {
                            extra.insert(key, a.next_value::<RawEntry>()?);
                        }
                    }
                }
                Ok(ProfileFile {
                    schema_version: version
                        .ok_or_else(|| serde::de::Error::missing_field("schema_version"))?,
                    machines: machines.unwrap_or_default(),
                    extra,
                })
            }
        }
        d.deserialize_map(V)
    }
}

impl Default for ProfileFile {
    fn default() -> Self {
        ProfileFile {
            schema_version: SCHEMA_VERSION,
            machines: BTreeMap::new(),
            extra: BTreeMap::new(),
        }
    }
}

impl ProfileFile {
    /// The entry under `id`, parsed leniently (`None` if absent or not an object): statistics
    /// that do not validate are dropped and named in the returned list of problems.
    pub fn machine_checked(&self, id: &str) -> Option<(MachineProfile, Vec<String>)> {
        self.machines
            .get(id)
            .and_then(|v| MachineProfile::from_json(v.get()))
    }

    /// The entry under `id`, parsed leniently (see [`ProfileFile::machine_checked`]).
    pub fn machine(&self, id: &str) -> Option<MachineProfile> {
        self.machine_checked(id).map(|(m, _)| m)
    }

    pub fn set_machine(&mut self, id: &str, entry: &MachineProfile) {
        if let Ok(v) = serde_json::value::to_raw_value(entry) {
            self.machines.insert(id.to_string(), v.into());
        }
    }

    /// Removes the entries (other than `keep`) whose `updated_unix` is known (non-zero) and older
    /// than `cutoff`; returns their ids. Reads only that field of each entry: a byte scan finds
    /// it among the entry's top-level members (skipping the fingerprint before it, not parsing
    /// the timings after it); an entry the scan cannot read is parsed as JSON instead.
    pub fn expire(&mut self, cutoff: u64, keep: &str) -> Vec<String> {
        #[derive(Deserialize)]
        struct Stamp {
            #[serde(default)]
            updated_unix: Option<u64>,
        }
        let stamp = |raw: &str| match top_level_u64(raw, "updated_unix") {
            Scan::Found(t) => Some(t),
            Scan::Absent => None,
            Scan::Unsure => serde_json::from_str::<Stamp>(raw)
                .ok()
                .and_then(|s| s.updated_unix),
        };
        let old: Vec<String> = self
            .machines
            .iter()
            .filter(|(k, _)| k.as_str() != keep)
            .filter(|(_, v)| stamp(v.get()).is_some_and(|t| t != 0 && t < cutoff))
            .map(|(k, _)| k.clone())
            .collect();
        for k in &old {
            self.machines.remove(k);
        }
        old
    }
}

/// What a scan for one top-level member found.
#[derive(Debug, PartialEq)]
enum Scan {
    /// The member, an unsigned integer.
    Found(u64),
    /// The object has no such member.
    Absent,
    /// Something the scan does not decide: not an object, escapes in a key, another value type.
    Unsure,
}

/// The unsigned integer under `key` among the top-level members of the JSON object `raw`, found
/// by skipping values without parsing them (strings and nesting only are tracked). Valid JSON
/// is assumed (the file was parsed); anything unusual is `Unsure`, for the caller to parse.
fn top_level_u64(raw: &str, key: &str) -> Scan {
    let b = raw.as_bytes();
    let ws = |mut i: usize| {
        while b.get(i).is_some_and(|c| c.is_ascii_whitespace()) {
            i += 1;
        }
        i
    };
    // The index just past the string starting at `i` (a `"`), and whether it had escapes.
    let string_end = |i: usize| -> Option<(usize, bool)> {
        let mut j = i + 1;
        let mut escaped = false;
        loop {
            match *b.get(j)? {
                b'"' => return Some((j + 1, escaped)),
                b'\\' => {
                    escaped = true;
                    j += 2;
                }
                _ => j += 1,
            }
        }
    };
    // The index just past the value starting at `i`.
    let value_end = |i: usize| -> Option<usize> {
        match *b.get(i)? {
            b'"' => string_end(i).map(|(e, _)| e),
            b'{' | b'[' => {
                let (mut depth, mut j) = (0usize, i);
                loop {
                    match *b.get(j)? {
                        b'"' => {
                            j = string_end(j)?.0;
                            continue;
                        }
                        b'{' | b'[' => depth += 1,
                        b'}' | b']' => {
                            depth -= 1;
                            if depth == 0 {
                                return Some(j + 1);
                            }
                        }
                        _ => {}
                    }
                    j += 1;
                }
            }
            _ => Some(
                i + b[i..]
                    .iter()
                    .position(|c| matches!(c, b',' | b'}' | b']') || c.is_ascii_whitespace())?,
            ),
        }
    };
    let mut i = ws(0);
    if b.get(i) != Some(&b'{') {
        return Scan::Unsure;
    }
    i = ws(i + 1);
    if b.get(i) == Some(&b'}') {
        return Scan::Absent;
    }
    loop {
        if b.get(i) != Some(&b'"') {
            return Scan::Unsure;
        }
        let Some((key_end, escaped)) = string_end(i) else {
            return Scan::Unsure;
        };
        if escaped {
            return Scan::Unsure;
        }
        let name = &raw[i + 1..key_end - 1];
        i = ws(key_end);
        if b.get(i) != Some(&b':') {
            return Scan::Unsure;
        }
        i = ws(i + 1);
        let Some(end) = value_end(i) else {
            return Scan::Unsure;
        };
        if name == key {
            return raw[i..end].parse().map_or(Scan::Unsure, Scan::Found);
        }
        i = ws(end);
        match b.get(i) {
            Some(b',') => i = ws(i + 1),
            Some(b'}') => return Scan::Absent,
            _ => return Scan::Unsure,
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
    /// Fields this build does not know (a hand edit, a newer writer), kept as they are.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl MachineProfile {
    pub fn new(fingerprint: Fingerprint) -> Self {
        MachineProfile {
            fingerprint,
            updated_unix: 0,
            timings: BTreeMap::new(),
            links: BTreeMap::new(),
            balance: BTreeMap::new(),
            extra: Map::new(),
        }
    }

    /// Parses an entry field by field: a statistic, link or ratio that does not validate is
    /// dropped alone (and named in the returned problems), the rest is kept. `None` when the text
    /// is not a JSON object at all.
    pub fn from_json(text: &str) -> Option<(MachineProfile, Vec<String>)> {
        let Value::Object(mut obj) = serde_json::from_str::<Value>(text).ok()? else {
            return None;
        };
        let mut problems = Vec::new();
        let fingerprint = match obj.remove("fingerprint").map(serde_json::from_value) {
            Some(Ok(fp)) => fp,
            other => {
                if other.is_some() {
                    problems.push("fingerprint (not a fingerprint: replaced)".to_string());
                }
                super::fingerprint::Fingerprint::current()
            }
        };
        let mut m = MachineProfile::new(fingerprint);
        match obj.remove("updated_unix") {
            None => {}
            Some(v) => match v.as_u64() {
                Some(t) => m.updated_unix = t,
                None => problems.push(format!("updated_unix ({v} is not a unix time)")),
            },
        }
        let mut section = |name: &str, problems: &mut Vec<String>| -> Map<String, Value> {
            match obj.remove(name) {
                None => Map::new(),
                Some(Value::Object(o)) => o,
                Some(v) => {
                    problems.push(format!("{name} ({} is not an object)", short(&v)));
                    Map::new()
                }
            }
        };
        for (ind, by_bucket) in section("timings", &mut problems) {
            let Value::Object(by_bucket) = by_bucket else {
                problems.push(format!("timings.{ind} (not an object)"));
                continue;
            };
            for (bucket, by_backend) in by_bucket {
                let Value::Object(by_backend) = by_backend else {
                    problems.push(format!("timings.{ind}.{bucket} (not an object)"));
                    continue;
                };
                for (backend, stat) in by_backend {
                    match Stat::validate(stat) {
                        Ok(s) => {
                            m.timings
                                .entry(ind.clone())
                                .or_default()
                                .entry(bucket.clone())
                                .or_default()
                                .insert(backend, s);
                        }
                        Err(why) => {
                            problems.push(format!("timings.{ind}.{bucket}.{backend} ({why})"))
                        }
                    }
                }
            }
        }
        for (backend, link) in section("links", &mut problems) {
            match serde_json::from_value::<LinkModel>(link.clone()) {
                Ok(l) if l.is_valid() => {
                    m.links.insert(backend, l);
                }
                _ => problems.push(format!("links.{backend} ({})", short(&link))),
            }
        }
        for (tag, ratios) in section("balance", &mut problems) {
            let Value::Object(ratios) = ratios else {
                problems.push(format!("balance.{tag} (not an object)"));
                continue;
            };
            let mut good = BTreeMap::new();
            for (member, r) in ratios {
                match r
                    .as_f64()
                    .filter(|x| x.is_finite() && (0.0..=1.0).contains(x))
                {
                    Some(x) => {
                        good.insert(member, x);
                    }
                    None => problems.push(format!(
                        "balance.{tag}.{member} ({} is not a ratio in [0, 1])",
                        short(&r)
                    )),
                }
            }
            if !good.is_empty() {
                m.balance.insert(tag, good);
            }
        }
        m.extra = obj;
        Some((m, problems))
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

fn short(v: &Value) -> String {
    let t = v.to_string();
    if t.chars().count() > 40 {
        format!("{}…", t.chars().take(40).collect::<String>())
    } else {
        t
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
    /// A statistic as stored, checked: `samples` a positive integer, both times finite
    /// non-negative numbers, `last_unix` (optional) a non-negative integer.
    pub fn validate(v: Value) -> Result<Stat, String> {
        let Value::Object(o) = &v else {
            return Err(format!("{} is not an object", short(&v)));
        };
        let field = |k: &str| o.get(k);
        let samples = match field("samples") {
            None => return Err("samples missing".into()),
            Some(x) => x
                .as_u64()
                .filter(|n| *n > 0)
                .ok_or_else(|| format!("samples: {} is not a positive integer", short(x)))?,
        };
        let time = |k: &str| -> Result<f64, String> {
            match field(k) {
                None => Err(format!("{k} missing")),
                Some(x) => x
                    .as_f64()
                    .filter(|t| t.is_finite() && *t >= 0.0)
                    .ok_or_else(|| format!("{k}: {} is not a time", short(x))),
            }
        };
        let ewma_ns_per_row = time("ewma_ns_per_row")?;
        let best_ns_per_row = time("best_ns_per_row")?;
        let last_unix = match field("last_unix") {
            None => 0,
            Some(x) => x
                .as_u64()
                .ok_or_else(|| format!("last_unix: {} is not a unix time", short(x)))?,
        };
        Ok(Stat {
            samples,
            ewma_ns_per_row,
            best_ns_per_row,
            last_unix,
        })
    }

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
    /// How many measurements the figures come from; optional, so a link written by hand as the
    /// docs show it (the three figures) is accepted.
    #[serde(default)]
    pub samples: u64,
}

impl LinkModel {
    fn is_valid(&self) -> bool {
        [self.h2d_gb_per_s, self.d2h_gb_per_s, self.latency_us]
            .iter()
            .all(|x| x.is_finite() && *x >= 0.0)
    }
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

    /// The scan agrees with a full parse on every entry it decides, and decides the usual ones.
    #[test]
    fn the_stamp_scan_agrees_with_a_json_parse() {
        let cases = [
            (
                r#"{"fingerprint":{"a":"}{\"x"},"updated_unix":1700000000,"timings":{}}"#,
                true,
            ),
            (r#" { "updated_unix" : 5 } "#, true),
            (r#"{"timings":{"updated_unix":9},"updated_unix":7}"#, true),
            (r#"{"links":[{"updated_unix":1},"]"],"balance":{}}"#, true),
            (r#"{}"#, true),
            (r#"{"a":[1,{"b":[]}],"c":"d\"e","updated_unix":0}"#, true),
            (r#"{"updated_unix":-5}"#, false),
            (r#"{"updated_unix":1.5}"#, false),
            (r#"{"updated_unix":null}"#, false),
            (r#"{"updated_unix":"12"}"#, false),
            (r#"{"updated\u005funix":3}"#, false),
            (r#"[1,2]"#, false),
        ];
        for (raw, decided) in cases {
            let parsed: Option<u64> = serde_json::from_str::<Value>(raw)
                .ok()
                .and_then(|v| v.get("updated_unix").cloned())
                .and_then(|v| v.as_u64());
            match top_level_u64(raw, "updated_unix") {
                Scan::Found(t) => assert_eq!(Some(t), parsed, "{raw}"),
                Scan::Absent => assert_eq!(parsed, None, "{raw}"),
                Scan::Unsure => assert!(!decided, "{raw}: the scan should decide this one"),
            }
        }
    }

    #[test]
    fn expiry_drops_old_entries_of_other_machines_only() {
        let text = r#"{"schema_version":1,"machines":{
            "old":{"fingerprint":{},"updated_unix":100},
            "new":{"fingerprint":{},"updated_unix":900},
            "never":{"fingerprint":{},"updated_unix":0},
            "odd":{"updated_unix":1.0e2},
            "me":{"updated_unix":1}}}"#;
        let mut file: ProfileFile = serde_json::from_str(text).unwrap();
        let copy = file.clone();
        assert_eq!(file.expire(500, "me"), vec!["old".to_string()]);
        let left: Vec<&str> = file.machines.keys().map(String::as_str).collect();
        assert_eq!(left, ["me", "never", "new", "odd"]);
        // Clones share the entries' text and are unaffected.
        assert_eq!(copy.machines.len(), 5);
        assert_eq!(copy.machines["new"].get(), file.machines["new"].get());
    }

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

    #[test]
    fn a_link_written_as_documented_is_kept() {
        let fp = serde_json::to_string(&super::super::fingerprint::Fingerprint::current()).unwrap();
        let text = format!(
            r#"{{"fingerprint": {fp}, "links": {{"gpu:x":
                {{"h2d_gb_per_s": 20.0, "d2h_gb_per_s": 25.0, "latency_us": 8.0}}}}}}"#
        );
        let (m, problems) = MachineProfile::from_json(&text).unwrap();
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(m.links["gpu:x"].h2d_gb_per_s, 20.0);
        assert_eq!(m.links["gpu:x"].samples, 0);
    }

    #[test]
    fn a_bad_statistic_drops_only_itself() {
        let fp = serde_json::to_string(&super::super::fingerprint::Fingerprint::current()).unwrap();
        let text = format!(
            r#"{{"fingerprint": {fp}, "updated_unix": 5, "note": [1],
               "timings": {{"sma": {{"2^9": {{
                  "cpu:1": {{"samples": 2, "ewma_ns_per_row": 1.5, "best_ns_per_row": 1.0}},
                  "cpu:2": {{"samples": -2, "ewma_ns_per_row": 1.5, "best_ns_per_row": 1.0}},
                  "cpu:3": {{"samples": 2, "ewma_ns_per_row": "x", "best_ns_per_row": 1.0}},
                  "cpu:4": {{"samples": 2.5, "ewma_ns_per_row": 1.5, "best_ns_per_row": 1.0}},
                  "cpu:5": {{"samples": 2, "ewma_ns_per_row": 1.5}}}}}}}},
               "balance": {{"t": {{"a": 0.5, "b": "no"}}}}}}"#
        );
        let (m, problems) = MachineProfile::from_json(&text).unwrap();
        assert_eq!(m.timings["sma"]["2^9"].len(), 1);
        assert_eq!(m.stat("sma", "2^9", "cpu:1").unwrap().samples, 2);
        assert_eq!(m.balance["t"].len(), 1);
        assert_eq!(m.extra["note"], serde_json::json!([1]));
        assert_eq!(problems.len(), 5, "{problems:?}");
        assert!(
            problems[0].starts_with("timings.sma.2^9.cpu:2"),
            "{problems:?}"
        );
    }
}
