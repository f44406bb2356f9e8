//! Golden bits: a fingerprint of every output of every indicator, recorded before the registry
//! refactor, that every later refactor must reproduce exactly, on one thread, on rayon workers,
//! on arbitrary cuts and on device sets of the CPU with simulated GPUs.
//!
//! The fingerprints live in `golden_bits.txt` beside this file, one line per
//! `indicator(params) dataset out<k>` with the FNV-1a hash of the output's bits from the lookback
//! on. They are data recorded from the build before the refactor, not expectations derived from
//! the current code: a change of one bit in one row fails the test. `THREADX_BLESS_GOLDEN=1`
//! rewrites the file, for a deliberate change of the spec (say why in the commit).

use std::collections::BTreeMap;
use std::fmt::Write as _;

use crate::exec::cpu::RayonSplit;
use crate::exec::devset::{DeviceSetSplit, Member};
use crate::kernels::split::{CutAt, Sequential, Splitter};
use crate::kernels::Spec;

const GOLDEN: &str = include_str!("golden_bits.txt");
const ROWS: usize = 5_000;

/// Self-contained LCG, so that changes to other test helpers never move this data.
struct Rng(u64);

impl Rng {
    fn unit(&mut self) -> f64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((self.0 >> 11) as f64) / ((1u64 << 53) as f64)
    }
    fn normal(&mut self) -> f64 {
        (0..12).map(|_| self.unit()).sum::<f64>() - 6.0
    }
}

/// OHLCV columns (close, high, low, volume) scaled to `level`, with optional specials.
fn dataset(name: &str) -> [Vec<f64>; 4] {
    let mut rng = Rng(0x5eed ^ name.len() as u64);
    let level = match name {
        "near_1e6" => 1e6,
        "near_1e-7" => 1e-7,
        _ => 100.0,
    };
    let step = if name == "near_1e6" { 1e-8 } else { 0.01 };
    let mut close = Vec::with_capacity(ROWS);
    let mut p = 1.0f64;
    for _ in 0..ROWS {
        p *= 1.0 + step * rng.normal();
        close.push(level * p);
    }
    let high: Vec<f64> = close
        .iter()
        .map(|c| c * (1.0 + 0.004 * rng.unit()))
        .collect();
    let low: Vec<f64> = close
        .iter()
        .map(|c| c * (1.0 - 0.004 * rng.unit()))
        .collect();
    let volume: Vec<f64> = (0..ROWS).map(|_| (rng.unit() * 1e6).floor()).collect();
    let mut cols = [close, high, low, volume];
    if name == "specials" {
        // NaN, ±inf and zeros at scattered rows of every column (nulls are compacted away by the
        // plugin before the kernels run: tests/test_null_policy.py checks that a column with nulls
        // gives exactly the bits of its null-free rows, which this file pins).
        for (k, col) in cols.iter_mut().enumerate() {
            for (j, row) in [97usize, 1500, 1501, 3333, 4090].iter().enumerate() {
                col[(row + 17 * k) % ROWS] =
                    [f64::NAN, f64::INFINITY, f64::NEG_INFINITY, 0.0][(j + k) % 4];
            }
        }
        // A flat run (zero variance, zero true range) to exercise the exact-zero branches.
        for col in cols.iter_mut().take(3) {
            for v in &mut col[2000..2300] {
                *v = 42.0;
            }
        }
    }
    cols
}

const DATASETS: &[&str] = &["walk", "near_1e6", "near_1e-7", "specials"];

/// Every indicator at several parameter sets: (name, integer params, float params).
fn cases() -> Vec<(String, Spec)> {
    let mut out = Vec::new();
    let mut add = |label: String, spec: Spec| out.push((label, spec));
    for p in [2, 3, 14, 30, 200] {
        add(format!("sma({p})"), Spec::sma(p).unwrap());
        add(format!("ema({p})"), Spec::ema(p).unwrap());
        add(format!("wma({p})"), Spec::wma(p).unwrap());
        add(format!("zscore({p})"), Spec::zscore(p).unwrap());
        add(format!("rsi({p})"), Spec::rsi(p).unwrap());
    }
    for (p, d) in [(2, 0), (5, 0), (5, 1), (30, 1), (200, 0)] {
        add(
            format!("rolling_std({p},{d})"),
            Spec::rolling_std(p, d).unwrap(),
        );
    }
    for (p, k) in [(2, 2.0), (20, 2.0), (20, 1.5), (50, 0.0)] {
        add(
            format!("bollinger({p},{k})"),
            Spec::bollinger(p, k).unwrap(),
        );
    }
    for p in [1, 10, 100] {
        add(format!("roc({p})"), Spec::roc(p).unwrap());
        add(format!("atr({p})"), Spec::atr(p).unwrap());
        add(format!("natr({p})"), Spec::natr(p).unwrap());
    }
    for (f, s, g) in [(12, 26, 9), (2, 3, 1), (5, 35, 5), (50, 200, 30)] {
        add(format!("macd({f},{s},{g})"), Spec::macd(f, s, g).unwrap());
    }
    for (a, b, c) in [(5, 3, 3), (14, 1, 1), (1, 1, 1), (21, 5, 8)] {
        add(format!("stoch({a},{b},{c})"), Spec::stoch(a, b, c).unwrap());
    }
    add("obv".into(), Spec::Obv);
    for name in [
        "avgprice", "medprice", "typprice", "wclprice", "trange", "add", "sub", "mult", "div",
    ] {
        add(
            name.into(),
            crate::kernels::registry::build_named(name, []).unwrap(),
        );
    }
    out
}

fn fnv(values: &[f64]) -> u64 {
    let mut h: u64 = 0xcbf29ce484222325;
    for v in values {
        // Every NaN hashes alike: IEEE leaves NaN payloads (and signs) unspecified, and they
        // differ between optimisation levels and between the CPU and GPUs.
        let bits = if v.is_nan() {
            f64::NAN.to_bits()
        } else {
            v.to_bits()
        };
        for b in bits.to_le_bytes() {
            h ^= b as u64;
            h = h.wrapping_mul(0x100000001b3);
        }
    }
    h
}

/// The kernel's inputs for `spec` from the dataset's columns, in the order it takes them.
fn inputs<'a>(spec: &Spec, cols: &'a [Vec<f64>; 4]) -> Vec<&'a [f64]> {
    spec.inputs()
        .iter()
        .map(|name| match *name {
            "high" => cols[1].as_slice(),
            "low" => cols[2].as_slice(),
            "volume" => cols[3].as_slice(),
            // No open column: avgprice's open reads the low (a legal bar), and the math
            // operators' second operand the volume, so no case sees one column twice.
            "open" => cols[2].as_slice(),
            "real1" => cols[3].as_slice(),
            _ => cols[0].as_slice(),
        })
        .collect()
}

fn fingerprints<S: Splitter>(split: &S) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for ds in DATASETS {
        let cols = dataset(ds);
        for (label, spec) in cases() {
            let xs = inputs(&spec, &cols);
            let mut bufs: Vec<Vec<f64>> = spec.outputs().iter().map(|_| vec![0.0; ROWS]).collect();
            let mut views: Vec<&mut [f64]> = bufs.iter_mut().map(|b| b.as_mut_slice()).collect();
            spec.run(split, &xs, &mut views);
            let lb = spec.lookback().min(ROWS);
            for (k, buf) in bufs.iter().enumerate() {
                out.insert(
                    format!("{label} {ds} out{k}"),
                    format!("{:016x}", fnv(&buf[lb..])),
                );
            }
        }
    }
    out
}

fn recorded() -> BTreeMap<String, String> {
    GOLDEN
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .filter_map(|l| l.rsplit_once(' '))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn check<S: Splitter>(split: &S, what: &str) {
    let got = fingerprints(split);
    let want = recorded();
    if crate::exec::config::bless_golden() && what == "sequential" {
        let mut text = String::from(
            "# Golden output fingerprints (see golden_tests.rs): `case dataset output fnv1a64`.\n",
        );
        for (k, v) in &got {
            let _ = writeln!(text, "{k} {v}");
        }
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/src/exec/golden_bits.txt");
        std::fs::write(path, text).expect("write golden_bits.txt");
        return;
    }
    assert!(!want.is_empty(), "golden_bits.txt is empty");
    let keys_got: Vec<&String> = got.keys().collect();
    let keys_want: Vec<&String> = want.keys().collect();
    assert_eq!(
        keys_got, keys_want,
        "{what}: the set of golden cases changed"
    );
    let bad: Vec<String> = got
        .iter()
        .filter(|(k, v)| want.get(*k) != Some(v))
        .map(|(k, v)| format!("{k}: got {v}, recorded {}", want[k]))
        .collect();
    assert!(
        bad.is_empty(),
        "{what}: {} outputs moved:\n{}",
        bad.len(),
        bad.join("\n")
    );
}

#[test]
fn golden_bits_sequential() {
    check(&Sequential, "sequential");
}

#[test]
fn golden_bits_rayon() {
    check(&RayonSplit::new(3), "rayon(3)");
}

#[test]
fn golden_bits_cuts() {
    check(&CutAt(vec![1, 1023, 1024, 2500, 4097]), "cut");
}

#[test]
fn golden_bits_device_set() {
    let set = DeviceSetSplit::new(
        vec![
            Member::Cpu { workers: 2 },
            Member::Simulated { speed: 1.0 },
            Member::Simulated { speed: 1.0 },
        ],
        &[0.5, 0.3, 0.2],
    );
    check(&set, "device set cpu+sim+sim");
}
