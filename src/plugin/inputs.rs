//! Inputs read at the Arrow level and turned into Float64 columns.
//!
//! Accepted: every integer width (8 to 128 bits, signed or not), Float32 and Float64, Decimal
//! (as Polars casts it to Float64: the integer over 10^scale), and Null (an all-null column gives
//! an all-null result, as Polars' rolling functions do). Values convert with `as f64`, exactly as
//! `cast(pl.Float64)`. Float64 chunks are taken as they are, without a copy.
//!
//! Anything else (bool, str, binary, temporal, categorical, enum, float16, nested) is an error
//! naming the function, the input and the dtype. The check reads Arrow types only, so no Polars
//! dtype feature needs to be compiled in for a dtype we reject (see `ffi`).

use polars_arrow::array::{Array, PrimitiveArray};
use polars_arrow::datatypes::{ArrowDataType, Field as ArrowField};
use polars_arrow::ffi::{import_array_from_c, ArrowArray};
use polars_arrow::types::NativeType;
use polars_core::prelude::*;

use super::groups;
use crate::exec::grouping::Grouping;
use crate::kernels::Spec;

/// One input as Polars exported it: its field and its chunks' arrays, owned.
pub struct RawInput {
    pub field: ArrowField,
    pub arrays: Vec<ArrowArray>,
}

/// The dtype name a Polars user knows, for errors.
fn polars_name(dtype: &ArrowDataType) -> String {
    use ArrowDataType as A;
    match dtype {
        A::Boolean => "bool".into(),
        A::Utf8 | A::LargeUtf8 | A::Utf8View => "str".into(),
        A::Binary | A::LargeBinary | A::BinaryView | A::FixedSizeBinary(_) => "binary".into(),
        A::Date32 => "date".into(),
        A::Date64 | A::Timestamp(..) => "datetime".into(),
        A::Duration(_) => "duration".into(),
        A::Time32(_) | A::Time64(_) => "time".into(),
        A::Dictionary(..) => "cat (categorical or enum)".into(),
        A::Float16 => "f16".into(),
        A::List(_) | A::LargeList(_) => "list".into(),
        A::FixedSizeList(..) => "array".into(),
        A::Struct(_) => "struct".into(),
        A::Extension(ext) => format!("extension type {}", ext.name),
        other => format!("{other:?}"),
    }
}

/// `as f64` for every primitive we accept.
trait ToF64: NativeType {
    fn to_f64(self) -> f64;
}

macro_rules! to_f64 {
    ($($t:ty),*) => {$(impl ToF64 for $t {
        #[inline]
        fn to_f64(self) -> f64 {
            self as f64
        }
    })*};
}
to_f64!(i8, i16, i32, i64, i128, u8, u16, u32, u64, u128, f32);

fn converted<T: ToF64>(arr: &dyn Array, f: impl Fn(T) -> f64) -> Option<PrimitiveArray<f64>> {
    let a = arr.as_any().downcast_ref::<PrimitiveArray<T>>()?;
    let values: Vec<f64> = a.values().iter().map(|&v| f(v)).collect();
    Some(PrimitiveArray::new(
        ArrowDataType::Float64,
        values.into(),
        a.validity().cloned(),
    ))
}

/// 10^s for a Decimal scale `s` (at most 38), each the correctly rounded literal.
const POW10: [f64; 39] = [
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16,
    1e17, 1e18, 1e19, 1e20, 1e21, 1e22, 1e23, 1e24, 1e25, 1e26, 1e27, 1e28, 1e29, 1e30, 1e31, 1e32,
    1e33, 1e34, 1e35, 1e36, 1e37, 1e38,
];

/// Whether values of `dtype` are computed on (converted to f64).
fn accepted(dtype: &ArrowDataType) -> bool {
    use ArrowDataType as A;
    match dtype {
        A::Decimal(_, scale) => *scale < POW10.len(),
        _ => matches!(
            dtype,
            A::Null
                | A::Int8
                | A::Int16
                | A::Int32
                | A::Int64
                | A::Int128
                | A::UInt8
                | A::UInt16
                | A::UInt32
                | A::UInt64
                | A::UInt128
                | A::Float32
                | A::Float64
        ),
    }
}

/// One chunk as Float64 (`None` if the array does not have the type its field says).
fn chunk_to_f64(arr: &dyn Array, dtype: &ArrowDataType) -> Option<PrimitiveArray<f64>> {
    use ArrowDataType as A;
    match dtype {
        A::Float64 => arr.as_any().downcast_ref::<PrimitiveArray<f64>>().cloned(),
        A::Null => Some(PrimitiveArray::new_null(A::Float64, arr.len())),
        A::Float32 => converted(arr, f32::to_f64),
        A::Int8 => converted(arr, i8::to_f64),
        A::Int16 => converted(arr, i16::to_f64),
        A::Int32 => converted(arr, i32::to_f64),
        A::Int64 => converted(arr, i64::to_f64),
        A::Int128 => converted(arr, i128::to_f64),
        A::UInt8 => converted(arr, u8::to_f64),
        A::UInt16 => converted(arr, u16::to_f64),
        A::UInt32 => converted(arr, u32::to_f64),
        A::UInt64 => converted(arr, u64::to_f64),
        A::UInt128 => converted(arr, u128::to_f64),
        A::Decimal(_, scale) => {
            let div = POW10[*scale];
            converted(arr, |v: i128| v as f64 / div)
        }
        _ => None,
    }
}

/// The receiver's name and every input as a Float64 column, after checking there are as many
/// inputs as `spec` takes, each numeric (or Null) and as long as the first.
pub fn float_columns(
    spec: &Spec,
    raw: Vec<RawInput>,
) -> PolarsResult<(PlSmallStr, Vec<Float64Chunked>)> {
    let names = spec.inputs();
    polars_ensure!(
        raw.len() == names.len() && !raw.is_empty(),
        ComputeError: "threadx.{}: expected {} input column(s) ({}), got {}",
        spec.name(), names.len(), names.join(", "), raw.len()
    );
    let receiver = raw[0].field.name.clone();
    let mut cols = Vec::with_capacity(raw.len());
    for (input, arg) in raw.into_iter().zip(names.iter()) {
        let RawInput { field, arrays } = input;
        let dtype = field.dtype.clone();
        polars_ensure!(
            accepted(&dtype),
            ComputeError: "threadx.{}: expected a numeric column for `{}`, got {} (column '{}')",
            spec.name(), arg, polars_name(&dtype), field.name
        );
        let mut chunks = Vec::with_capacity(arrays.len());
        for array in arrays {
            // SAFETY: Polars exported this array with this field's type.
            let arr = unsafe { import_array_from_c(array, dtype.clone()) }?;
            let chunk = chunk_to_f64(arr.as_ref(), &dtype).ok_or_else(|| {
                polars_err!(ComputeError: "threadx.{}: column '{}' of dtype {} holds an array of type {:?}",
                    spec.name(), field.name, polars_name(&dtype), arr.dtype())
            })?;
            chunks.push(chunk);
        }
        let col = if chunks.is_empty() {
            Float64Chunked::full_null(field.name.clone(), 0)
        } else {
            Float64Chunked::from_chunk_iter(field.name.clone(), chunks)
        };
        if let Some(first) = cols.first().map(|c: &Float64Chunked| c.len()) {
            polars_ensure!(
                col.len() == first,
                ComputeError: "threadx.{}: expected all inputs to have the same length, got {} for `{}` and {} for `{}`",
                spec.name(), first, names[0], col.len(), arg
            );
        }
        cols.push(col);
    }
    Ok((receiver, cols))
}

/// The `by=` groups of `n` rows from the key columns `keys`: every key as one array, each `n`
/// rows long, grouped by `groups::group`. Errors name the function and the key.
pub fn by_groups(indicator: &str, keys: Vec<RawInput>, n: usize) -> PolarsResult<Grouping> {
    let mut arrays: Vec<Box<dyn Array>> = Vec::with_capacity(keys.len());
    for RawInput {
        field,
        arrays: chunks,
    } in keys
    {
        let chunks = chunks
            .into_iter()
            // SAFETY: Polars exported this array with this field's type.
            .map(|a| unsafe { import_array_from_c(a, field.dtype.clone()) })
            .collect::<PolarsResult<Vec<_>>>()?;
        let refs: Vec<&dyn Array> = chunks.iter().map(|c| c.as_ref()).collect();
        let one = match refs.as_slice() {
            [] => polars_arrow::array::new_empty_array(field.dtype.clone()),
            [one] => one.to_boxed(),
            more => polars_arrow::compute::concatenate::concatenate(more)?,
        };
        polars_ensure!(
            one.len() == n,
            ComputeError: "threadx.{}: the by= key '{}' has {} rows, the input {}; keys must be columns of the same frame",
            indicator, field.name, one.len(), n
        );
        arrays.push(one);
    }
    groups::group(&arrays, n).map_err(|dtype| {
        polars_err!(ComputeError: "threadx.{}: by= cannot group on a key of Arrow type {} (keys may be integers, floats, booleans, strings, binary, categoricals, enums and temporal types)", indicator, dtype)
    })
}
