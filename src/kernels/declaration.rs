//! What an indicator declaration holds, and the validation every front end shares.
//!
//! A [`Declaration`] describes one indicator for every other layer: its name and TA-Lib twin and
//! group, inputs in TA-Lib order, outputs, parameters (kind, TA-Lib 0.8.1 default, bounds,
//! TA-Lib name), lookback, composition and devices, and `build`, which turns checked parameter
//! values into the call the kernels run. The declarations themselves are in
//! [`super::registry`]; this module has no indicator in it, so it depends on nothing.

use std::fmt;

use serde::Serialize;

/// TA-Lib's upper bound for every period parameter.
pub const MAX_PERIOD: i64 = 100_000;

/// A rejected parameter: names the indicator, the parameter, what was expected and what came.
#[derive(Debug, Clone, PartialEq)]
pub struct ParamError {
    pub indicator: &'static str,
    pub param: &'static str,
    pub expected: String,
    pub got: String,
}

impl fmt::Display for ParamError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "threadx.{}: {} must be {}, got {}",
            self.indicator, self.param, self.expected, self.got
        )
    }
}

impl std::error::Error for ParamError {}

/// A parameter's kind: how it is validated and how it crosses to Python.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// An integer (a period, a count).
    Int,
    /// A finite real number.
    Float,
    /// A moving-average type: TA-Lib's `MA_Type` code (an integer in `[0, 13]`, see
    /// [`MA_TYPES`]); MAMA (code 7) is rejected until it exists. Python also takes the names.
    #[serde(rename = "matype")]
    MaType,
}

/// TA-Lib's moving-average type names, indexed by their `MA_Type` code (`talib.MA_Type`):
/// `disabled` (10) is the identity, `default` (11) the function's own default type.
pub const MA_TYPES: [&str; 14] = [
    "sma", "ema", "wma", "dema", "tema", "trima", "kama", "mama", "t3", "hma", "disabled",
    "default", "zlema", "rma",
];

/// The one moving-average type that is declared but not built yet.
pub const MA_TYPE_MAMA: i64 = 7;

/// The accepted moving-average types, for error messages.
pub fn ma_type_choices() -> String {
    let names: Vec<String> = MA_TYPES
        .iter()
        .enumerate()
        .filter(|&(code, _)| code as i64 != MA_TYPE_MAMA)
        .map(|(code, name)| format!("'{name}' ({code})"))
        .collect();
    format!("a moving-average type: one of {}", names.join(", "))
}

/// One parameter of an indicator.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Param {
    pub name: &'static str,
    pub kind: Kind,
    /// TA-Lib 0.8.1's default where the indicator has a twin. NaN: the default is derived from
    /// the other parameters by the declaration's `build` (which receives NaN when the value is
    /// not given); a value given explicitly is checked as usual.
    pub default: f64,
    /// Inclusive bounds.
    pub min: f64,
    pub max: f64,
    /// TA-Lib's name of this parameter (`timeperiod`, `nbdevup`, …), if it has one.
    pub talib: Option<&'static str>,
    /// The value must also be below this earlier parameter's value (`ddof` below `period`).
    pub below: Option<&'static str>,
    pub doc: &'static str,
}

impl Param {
    /// A moving-average type with TA-Lib's default `default` (a code of [`MA_TYPES`]).
    pub const fn ma_type(name: &'static str, default: i64, doc: &'static str) -> Param {
        Param {
            name,
            kind: Kind::MaType,
            default: default as f64,
            min: 0.0,
            max: (MA_TYPES.len() - 1) as f64,
            talib: Some("matype"),
            below: None,
            doc,
        }
    }

    /// A period: an integer in `[min, MAX_PERIOD]`.
    pub const fn period(
        name: &'static str,
        default: i64,
        min: i64,
        talib: &'static str,
        doc: &'static str,
    ) -> Param {
        Param {
            name,
            kind: Kind::Int,
            default: default as f64,
            min: min as f64,
            max: MAX_PERIOD as f64,
            talib: Some(talib),
            below: None,
            doc,
        }
    }
}

/// One output column (a Struct field when there are several).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Output {
    /// The field name in threadx's Struct (TA-Lib's name, shortened where that reads better).
    pub name: &'static str,
    /// TA-Lib's name of this output (`real`, `upperband`, …).
    pub talib: &'static str,
    /// The Polars dtype: `Float64`, or `Int32` for a row number ([`i32_out`]).
    pub dtype: &'static str,
    /// The values are row numbers of the input (TA-Lib's MAXINDEX): the kernel writes rows of the
    /// non-null rows it sees (as `f64`), and the plugin maps them to rows of the input column.
    pub row: bool,
}

/// A Float64 output.
pub const fn f64_out(name: &'static str, talib: &'static str) -> Output {
    Output {
        name,
        talib,
        dtype: "Float64",
        row: false,
    }
}

/// An Int32 output holding a row of the input column (MAXINDEX, MININDEX, MINMAXINDEX).
pub const fn i32_out(name: &'static str, talib: &'static str) -> Output {
    Output {
        name,
        talib,
        dtype: "Int32",
        row: true,
    }
}

/// Where an indicator can run, and why not elsewhere.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Devices {
    pub cpu: bool,
    pub cuda: bool,
    /// Why it cannot run on a GPU (`None` when it can).
    pub no_cuda_reason: Option<&'static str>,
}

/// An indicator that runs on the CPU only, for `reason` (shown in the catalog and in the error a
/// forced GPU placement gets).
pub const fn cpu_only(reason: &'static str) -> Devices {
    Devices {
        cpu: true,
        cuda: false,
        no_cuda_reason: Some(reason),
    }
}

/// One indicator: everything the other layers need to know about it. `C` is the validated call
/// `build` makes ([`super::registry::Spec`]).
#[derive(Debug, Serialize)]
#[serde(bound = "")]
pub struct Declaration<C> {
    /// threadx's name (`pl.Expr.threadx.<name>`, `threadx.<name>`).
    pub name: &'static str,
    /// The TA-Lib twin (upper case, as TA-Lib spells it), if any. Its lowercase is an alias.
    pub talib: Option<&'static str>,
    /// TA-Lib's function group (`Overlap Studies`, `Momentum Indicators`, …).
    pub group: &'static str,
    /// One line for docs and docstrings.
    pub summary: &'static str,
    /// Input columns in TA-Lib's order (`high`, `low`, `close`, `volume`, or `real`).
    pub inputs: &'static [&'static str],
    /// The input the namespace method is called on (`pl.col("close").threadx.atr(high=, low=)`);
    /// the output is named after it. The kernels take it first, then the others in TA-Lib order.
    pub receiver: &'static str,
    pub outputs: &'static [Output],
    pub params: &'static [Param],
    /// The lookback (warm-up rows) in words, for docs; [`Spec::lookback`] computes it.
    pub lookback: &'static str,
    /// Which kernel families it is composed from (its [`Spec::run`] arm calls them).
    pub composition: &'static str,
    pub devices: Devices,
    /// Builds the validated call from parameter values already checked against [`Self::params`]
    /// (in declaration order), checking the rules between parameters.
    #[serde(skip)]
    pub build: fn(&[f64]) -> Result<C, ParamError>,
}

impl<C> Declaration<C> {
    /// Input names in the order the kernels (and the plugin's arguments) take them: the receiver
    /// first, then the others in TA-Lib order.
    pub fn call_inputs(&self) -> impl Iterator<Item = &'static str> + '_ {
        std::iter::once(self.receiver).chain(
            self.inputs
                .iter()
                .copied()
                .filter(move |n| *n != self.receiver),
        )
    }

    /// The lowercase TA-Lib name, when it differs from [`Self::name`] (`bbands` for `bollinger`).
    pub fn alias(&self) -> Option<String> {
        self.talib
            .map(str::to_ascii_lowercase)
            .filter(|a| a != self.name)
    }
}

/// `v` checked against `p`'s kind and bounds; `earlier` holds the parameters checked before it.
fn check_value<C>(
    ind: &Declaration<C>,
    p: &Param,
    v: f64,
    earlier: &[f64],
) -> Result<f64, ParamError> {
    // A `below` bound is the earlier parameter's value minus one (integers only).
    let bound = p.below.and_then(|other| {
        let i = ind.params.iter().position(|q| q.name == other)?;
        earlier.get(i).map(|ov| (other, ov - 1.0))
    });
    let max = bound.map_or(p.max, |(_, b)| p.max.min(b));
    let ok = match p.kind {
        Kind::Int => v.fract() == 0.0 && v >= p.min && v <= max,
        Kind::Float => v.is_finite() && v >= p.min && v <= max,
        Kind::MaType => v.fract() == 0.0 && v >= p.min && v <= max && v != MA_TYPE_MAMA as f64,
    };
    if ok {
        return Ok(v);
    }
    if p.kind == Kind::MaType && v == MA_TYPE_MAMA as f64 {
        return Err(ParamError {
            indicator: ind.name,
            param: p.name,
            expected: format!(
                "other than MAMA (code 7), which comes with a later wave; {}",
                ma_type_choices()
            ),
            got: "7 (mama)".into(),
        });
    }
    let expected = match (p.kind, bound) {
        (Kind::MaType, _) => ma_type_choices(),
        (Kind::Int, Some((other, _))) => {
            format!("an integer in [{}, {max}] (below {other})", p.min)
        }
        (Kind::Int, None) => format!("an integer in [{}, {}]", p.min, p.max),
        (Kind::Float, _) if max == f64::MAX => format!("a finite number >= {}", p.min),
        (Kind::Float, _) => format!("a finite number in [{}, {max}]", p.min),
    };
    Err(ParamError {
        indicator: ind.name,
        param: p.name,
        expected,
        got: if p.kind != Kind::Float && v.fract() == 0.0 && v.abs() < 1e18 {
            format!("{}", v as i64)
        } else {
            v.to_string()
        },
    })
}

/// Validates `values` (in declaration order; `None` takes the default) and builds the call.
pub fn build<C>(ind: &Declaration<C>, values: &[Option<f64>]) -> Result<C, ParamError> {
    let mut checked = Vec::with_capacity(ind.params.len());
    for (i, p) in ind.params.iter().enumerate() {
        let given = values.get(i).copied().flatten();
        if given.is_none() && p.default.is_nan() {
            // A derived default: `build` computes it from the other parameters.
            checked.push(f64::NAN);
            continue;
        }
        let v = check_value(ind, p, given.unwrap_or(p.default), &checked)?;
        checked.push(v);
    }
    (ind.build)(&checked)
}
