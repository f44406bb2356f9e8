//! `by=` keys read at the Arrow level, like the inputs (`inputs.rs`), and grouped by
//! `exec::grouping` (rows with equal keys in every key column are one series; a null key is a
//! value of its own, as in `.over()`).
//!
//! Keys are read at the Arrow level, like the inputs (`inputs.rs`): integers, floats (grouped as
//! Polars groups them: `-0.0` with `0.0`, every NaN together), booleans, temporal types (their
//! integer values), strings, binary, categoricals and enums (by their category), and Null.

use std::collections::HashMap;

use polars_arrow::array::{
    Array, BinaryViewArray, BooleanArray, DictionaryArray, DictionaryKey, PrimitiveArray,
    Utf8ViewArray,
};
use polars_arrow::bitmap::Bitmap;
use polars_arrow::datatypes::{IntegerType, PhysicalType, PrimitiveType};
use polars_arrow::types::NativeType;

use crate::exec::grouping::{self, group_words, mix, Grouping};

/// The values of one key column, one comparable token per row.
enum Values {
    /// Integers, booleans, categories and floats (canonical bits), one word each.
    Words(Vec<u64>),
    /// 128-bit integers and decimals.
    Wide(Vec<u128>),
    Bytes(BinaryViewArray),
}

struct KeyColumn {
    values: Values,
    validity: Option<Bitmap>,
}

impl KeyColumn {
    fn valid(&self, i: usize) -> bool {
        self.validity.as_ref().is_none_or(|v| v.get_bit(i))
    }

    fn eq(&self, i: usize, j: usize) -> bool {
        let (vi, vj) = (self.valid(i), self.valid(j));
        if !vi || !vj {
            return vi == vj;
        }
        match &self.values {
            Values::Words(w) => w[i] == w[j],
            Values::Wide(w) => w[i] == w[j],
            Values::Bytes(b) => b.value(i) == b.value(j),
        }
    }

    /// Sets `changed[t]` where this column's row `t` differs from row `t - 1` (`t >= 1`), leaving
    /// the other rows as they are (one call per key column). Without nulls this is one pass the
    /// compiler can vectorise, instead of `eq` on every pair of neighbours (the sorted `by=` case
    /// compares every row with the one before it).
    fn mark_changes(&self, changed: &mut [bool]) {
        let n = changed.len();
        if n < 2 {
            return;
        }
        match (&self.values, &self.validity) {
            (Values::Words(w), None) => {
                for (c, p) in changed[1..].iter_mut().zip(w.windows(2)) {
                    *c |= p[0] != p[1];
                }
            }
            (Values::Wide(w), None) => {
                for (c, p) in changed[1..].iter_mut().zip(w.windows(2)) {
                    *c |= p[0] != p[1];
                }
            }
            _ => {
                for (t, c) in changed.iter_mut().enumerate().skip(1) {
                    *c |= !self.eq(t - 1, t);
                }
            }
        }
    }

    fn hash(&self, i: usize) -> u64 {
        if !self.valid(i) {
            return 0x6e75_6c6c;
        }
        match &self.values {
            Values::Words(w) => mix(w[i]),
            Values::Wide(w) => mix(mix(w[i] as u64) ^ (w[i] >> 64) as u64),
            Values::Bytes(b) => hash_bytes(b.value(i)),
        }
    }
}

fn hash_bytes(b: &[u8]) -> u64 {
    let mut h = mix(b.len() as u64);
    let mut chunks = b.chunks_exact(8);
    for c in chunks.by_ref() {
        let mut word = [0u8; 8];
        word.copy_from_slice(c);
        h = mix(h ^ u64::from_le_bytes(word));
    }
    let mut last = [0u8; 8];
    last[..chunks.remainder().len()].copy_from_slice(chunks.remainder());
    mix(h ^ u64::from_le_bytes(last))
}

/// Floats as Polars groups them: `-0.0` is `0.0`, and every NaN is one value.
fn canonical_f64(v: f64) -> u64 {
    if v.is_nan() {
        f64::NAN.to_bits()
    } else {
        (v + 0.0).to_bits()
    }
}

/// What to do with the values of a word-sized primitive key column and their word (`word`):
/// collect the words, or group on them in place.
trait OnWords {
    type Out;
    fn on<T: NativeType>(self, values: &[T], word: impl Fn(T) -> u64 + Copy) -> Self::Out;
}

/// `with` applied to a primitive column of integers or floats, or `None` for other types. A
/// word is an integer's value, or a float's bits as Polars groups them ([`canonical_f64`]).
fn on_words<W: OnWords>(arr: &dyn Array, p: PrimitiveType, with: W) -> Option<W::Out> {
    use PrimitiveType as P;
    fn values<T: NativeType>(arr: &dyn Array) -> Option<&[T]> {
        Some(arr.as_any().downcast_ref::<PrimitiveArray<T>>()?.values())
    }
    Some(match p {
        P::Int8 => with.on(values(arr)?, |v: i8| v as i64 as u64),
        P::Int16 => with.on(values(arr)?, |v: i16| v as i64 as u64),
        P::Int32 => with.on(values(arr)?, |v: i32| v as i64 as u64),
        P::Int64 => with.on(values(arr)?, |v: i64| v as u64),
        P::UInt8 => with.on(values(arr)?, |v: u8| v as u64),
        P::UInt16 => with.on(values(arr)?, |v: u16| v as u64),
        P::UInt32 => with.on(values(arr)?, |v: u32| v as u64),
        P::UInt64 => with.on(values(arr)?, |v: u64| v),
        P::Float32 => with.on(values(arr)?, |v: f32| canonical_f64(v as f64)),
        P::Float64 => with.on(values(arr)?, canonical_f64),
        _ => return None,
    })
}

struct CollectWords;

impl OnWords for CollectWords {
    type Out = Values;
    fn on<T: NativeType>(self, values: &[T], word: impl Fn(T) -> u64 + Copy) -> Values {
        Values::Words(values.iter().map(|&v| word(v)).collect())
    }
}

struct GroupInPlace;

impl OnWords for GroupInPlace {
    type Out = Grouping;
    fn on<T: NativeType>(self, values: &[T], word: impl Fn(T) -> u64 + Copy) -> Grouping {
        group_words(values, word)
    }
}

fn primitive(arr: &dyn Array, p: PrimitiveType) -> Option<Values> {
    use PrimitiveType as P;
    if let Some(words) = on_words(arr, p, CollectWords) {
        return Some(words);
    }
    match p {
        P::Int128 => {
            let a = arr.as_any().downcast_ref::<PrimitiveArray<i128>>()?;
            Some(Values::Wide(
                a.values().iter().map(|&v| v as u128).collect(),
            ))
        }
        P::UInt128 => {
            let a = arr.as_any().downcast_ref::<PrimitiveArray<u128>>()?;
            Some(Values::Wide(a.values().iter().copied().collect()))
        }
        _ => None,
    }
}

/// A categorical or enum: each row's token is the first dictionary slot holding its category
/// (a dictionary may repeat a value; equal categories must be one group).
fn dictionary<K: DictionaryKey>(arr: &dyn Array) -> Option<Values> {
    let d = arr.as_any().downcast_ref::<DictionaryArray<K>>()?;
    let values = d.values();
    let bytes: BinaryViewArray = match values.as_any().downcast_ref::<Utf8ViewArray>() {
        Some(s) => s.to_binview(),
        None => values.as_any().downcast_ref::<BinaryViewArray>()?.clone(),
    };
    let mut first: HashMap<&[u8], u64> = HashMap::with_capacity(bytes.len());
    let slot: Vec<u64> = (0..bytes.len())
        .map(|i| *first.entry(bytes.value(i)).or_insert(i as u64))
        .collect();
    let tokens = d
        .keys()
        .values()
        .iter()
        .map(|&k| {
            let at: Option<usize> = k.try_into().ok();
            at.and_then(|i| slot.get(i).copied()).unwrap_or(u64::MAX)
        })
        .collect();
    Some(Values::Words(tokens))
}

/// One key column from its chunks (already one array), or why it cannot be a key.
fn key_column(arr: &dyn Array) -> Result<KeyColumn, String> {
    let validity = arr.validity().cloned();
    let values = match arr.dtype().to_physical_type() {
        PhysicalType::Null => Some(Values::Words(vec![0; arr.len()])),
        PhysicalType::Boolean => arr
            .as_any()
            .downcast_ref::<BooleanArray>()
            .map(|b| Values::Words(b.values().iter().map(u64::from).collect())),
        PhysicalType::Primitive(p) => primitive(arr, p),
        PhysicalType::Utf8View => arr
            .as_any()
            .downcast_ref::<Utf8ViewArray>()
            .map(|s| Values::Bytes(s.to_binview())),
        PhysicalType::BinaryView => arr
            .as_any()
            .downcast_ref::<BinaryViewArray>()
            .map(|b| Values::Bytes(b.clone())),
        PhysicalType::Dictionary(k) => match k {
            IntegerType::UInt8 => dictionary::<u8>(arr),
            IntegerType::UInt16 => dictionary::<u16>(arr),
            IntegerType::UInt32 => dictionary::<u32>(arr),
            IntegerType::UInt64 => dictionary::<u64>(arr),
            IntegerType::Int8 => dictionary::<i8>(arr),
            IntegerType::Int16 => dictionary::<i16>(arr),
            IntegerType::Int32 => dictionary::<i32>(arr),
            IntegerType::Int64 => dictionary::<i64>(arr),
            _ => None,
        },
        _ => None,
    };
    let values = values.ok_or_else(|| format!("{:?}", arr.dtype()))?;
    Ok(KeyColumn {
        values,
        validity: validity.filter(|v| v.unset_bits() > 0),
    })
}

/// Groups `n` rows by the key columns `keys` (one array each, `n` rows long). An error names the
/// Arrow type of a key that cannot be grouped on.
pub fn group(keys: &[Box<dyn Array>], n: usize) -> Result<Grouping, String> {
    // One key column without nulls (integer, categorical or date symbols: the usual key):
    // compared and hashed on its words directly.
    if let [key] = keys {
        let key = key.as_ref();
        if key.null_count() == 0 {
            if let PhysicalType::Primitive(p) = key.dtype().to_physical_type() {
                if let Some(g) = on_words(key, p, GroupInPlace) {
                    return Ok(g);
                }
            }
            if let Values::Words(w) = key_column(key)?.values {
                return Ok(group_words(&w, |x| x));
            }
        }
    }
    let cols = keys
        .iter()
        .map(|k| key_column(k.as_ref()))
        .collect::<Result<Vec<_>, _>>()?;
    let mut changed = vec![false; n];
    for c in &cols {
        c.mark_changes(&mut changed);
    }
    let run_starts: Vec<usize> = (0..n).filter(|&t| t == 0 || changed[t]).collect();
    Ok(grouping::group_runs(
        n,
        run_starts,
        |i, j| cols.iter().all(|c| c.eq(i, j)),
        |i| {
            cols.iter()
                .fold(0x0074_6872_6561_6478_u64, |h, c| mix(h ^ c.hash(i)))
        },
    ))
}
