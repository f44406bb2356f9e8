//! One indicator call with validated parameters, its TA-Lib lookback, and its composition from the
//! kernel families ([`Spec::run`]). Everything else about an indicator (names, inputs, outputs,
//! parameter declarations, devices) is in its declaration in [`super::registry`]; a [`Spec`] is
//! only ever built through that declaration's validation, so no kernel sees an out-of-range
//! parameter.

use std::fmt;

use super::registry::{self, Indicator};
use super::split::Splitter;
use super::{ema, extrema, flow, moments, wilder, wma};

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

/// One indicator call's parameters, validated.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Spec {
    Sma {
        period: usize,
    },
    Ema {
        period: usize,
    },
    Wma {
        period: usize,
    },
    RollingStd {
        period: usize,
        ddof: usize,
    },
    Zscore {
        period: usize,
    },
    Bollinger {
        period: usize,
        std_dev: f64,
    },
    Rsi {
        period: usize,
    },
    Roc {
        period: usize,
    },
    Macd {
        fast: usize,
        slow: usize,
        signal: usize,
    },
    Atr {
        period: usize,
    },
    Natr {
        period: usize,
    },
    Stoch {
        fastk: usize,
        slowk: usize,
        slowd: usize,
    },
    Obv,
}

impl Spec {
    pub fn sma(p: i64) -> Result<Self, ParamError> {
        registry::build_ints("sma", &[p])
    }
    pub fn ema(p: i64) -> Result<Self, ParamError> {
        registry::build_ints("ema", &[p])
    }
    pub fn wma(p: i64) -> Result<Self, ParamError> {
        registry::build_ints("wma", &[p])
    }
    pub fn rolling_std(p: i64, ddof: i64) -> Result<Self, ParamError> {
        registry::build_ints("rolling_std", &[p, ddof])
    }
    pub fn zscore(p: i64) -> Result<Self, ParamError> {
        registry::build_ints("zscore", &[p])
    }
    pub fn bollinger(p: i64, std_dev: f64) -> Result<Self, ParamError> {
        let ind = registry::find("bollinger").expect("registered");
        registry::build(ind, &[Some(p as f64), Some(std_dev)])
    }
    pub fn rsi(p: i64) -> Result<Self, ParamError> {
        registry::build_ints("rsi", &[p])
    }
    pub fn roc(p: i64) -> Result<Self, ParamError> {
        registry::build_ints("roc", &[p])
    }
    pub fn macd(fast: i64, slow: i64, signal: i64) -> Result<Self, ParamError> {
        registry::build_ints("macd", &[fast, slow, signal])
    }
    pub fn atr(p: i64) -> Result<Self, ParamError> {
        registry::build_ints("atr", &[p])
    }
    pub fn natr(p: i64) -> Result<Self, ParamError> {
        registry::build_ints("natr", &[p])
    }
    pub fn stoch(fastk: i64, slowk: i64, slowd: i64) -> Result<Self, ParamError> {
        registry::build_ints("stoch", &[fastk, slowk, slowd])
    }

    /// This call's declaration in the registry.
    pub fn def(&self) -> &'static Indicator {
        registry::find(self.name()).expect("every Spec variant has a declaration")
    }

    pub fn name(&self) -> &'static str {
        match self {
            Spec::Sma { .. } => "sma",
            Spec::Ema { .. } => "ema",
            Spec::Wma { .. } => "wma",
            Spec::RollingStd { .. } => "rolling_std",
            Spec::Zscore { .. } => "zscore",
            Spec::Bollinger { .. } => "bollinger",
            Spec::Rsi { .. } => "rsi",
            Spec::Roc { .. } => "roc",
            Spec::Macd { .. } => "macd",
            Spec::Atr { .. } => "atr",
            Spec::Natr { .. } => "natr",
            Spec::Stoch { .. } => "stoch",
            Spec::Obv => "obv",
        }
    }

    /// Rows at the start that have no value (TA-Lib's lookback).
    pub fn lookback(&self) -> usize {
        match *self {
            Spec::Sma { period }
            | Spec::Ema { period }
            | Spec::Wma { period }
            | Spec::RollingStd { period, .. }
            | Spec::Zscore { period }
            | Spec::Bollinger { period, .. } => period - 1,
            Spec::Rsi { period }
            | Spec::Roc { period }
            | Spec::Atr { period }
            | Spec::Natr { period } => period,
            Spec::Macd { slow, signal, .. } => slow + signal - 2,
            Spec::Stoch {
                fastk,
                slowk,
                slowd,
            } => fastk + slowk + slowd - 3,
            Spec::Obv => 0,
        }
    }

    /// Names of the input columns in the order the kernel takes them: the receiver first (Polars
    /// names the output after it, never after `high`), then the others in TA-Lib order.
    pub fn inputs(&self) -> Vec<&'static str> {
        self.def().call_inputs().collect()
    }

    /// Names of the outputs (struct fields when there are several).
    pub fn outputs(&self) -> Vec<&'static str> {
        self.def().outputs.iter().map(|o| o.name).collect()
    }

    /// Computes every row from the lookback on. `inputs` and `outs` match [`Self::inputs`] and
    /// [`Self::outputs`] and all have the same length; rows before the lookback are unspecified.
    pub fn run<S: Splitter>(&self, split: &S, inputs: &[&[f64]], outs: &mut [&mut [f64]]) {
        let x = inputs[0];
        match (*self, outs) {
            (Spec::Sma { period }, [o]) => moments::sma(split, x, period, o),
            (Spec::Ema { period }, [o]) => ema::ema(split, x, period, o),
            (Spec::Wma { period }, [o]) => wma::wma(split, x, period, o),
            (Spec::RollingStd { period, ddof }, [o]) => {
                moments::rolling_std(split, x, period, ddof, o)
            }
            (Spec::Zscore { period }, [o]) => moments::zscore(split, x, period, o),
            (Spec::Bollinger { period, std_dev }, [m, u, l]) => {
                moments::bollinger(split, x, period, std_dev, m, u, l)
            }
            (Spec::Rsi { period }, [o]) => wilder::rsi(split, x, period, o),
            (Spec::Roc { period }, [o]) => flow::roc(split, x, period, o),
            (Spec::Macd { fast, slow, signal }, [m, s, h]) => {
                ema::macd(split, x, (fast, slow, signal), m, s, h)
            }
            (Spec::Atr { period }, [o]) => {
                wilder::atr(split, inputs[1], inputs[2], inputs[0], period, o)
            }
            (Spec::Natr { period }, [o]) => {
                wilder::natr(split, inputs[1], inputs[2], inputs[0], period, o)
            }
            (
                Spec::Stoch {
                    fastk,
                    slowk,
                    slowd,
                },
                [k, d],
            ) => extrema::stoch(
                split,
                inputs[1],
                inputs[2],
                inputs[0],
                (fastk, slowk, slowd),
                k,
                d,
            ),
            (Spec::Obv, [o]) => flow::obv(split, inputs[0], inputs[1], o),
            (spec, outs) => unreachable!(
                "{} takes {} outputs, got {}",
                spec.name(),
                spec.outputs().len(),
                outs.len()
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_name_indicator_parameter_and_range() {
        let e = Spec::sma(1).unwrap_err();
        assert_eq!(
            e.to_string(),
            "threadx.sma: period must be an integer in [2, 100000], got 1"
        );
        let e = Spec::rolling_std(5, 5).unwrap_err();
        assert!(e.to_string().contains("ddof"), "{e}");
        let e = Spec::macd(26, 12, 9).unwrap_err();
        assert!(e.to_string().contains("less than slow"), "{e}");
        assert!(Spec::bollinger(20, f64::NAN).is_err());
        assert!(Spec::stoch(5, 0, 3)
            .unwrap_err()
            .to_string()
            .contains("slowk_period"));
    }

    #[test]
    fn lookbacks_follow_talib() {
        assert_eq!(Spec::sma(30).unwrap().lookback(), 29);
        assert_eq!(Spec::rsi(14).unwrap().lookback(), 14);
        assert_eq!(Spec::macd(12, 26, 9).unwrap().lookback(), 33);
        assert_eq!(Spec::stoch(5, 3, 3).unwrap().lookback(), 8);
        assert_eq!(Spec::atr(14).unwrap().lookback(), 14);
        assert_eq!(Spec::Obv.lookback(), 0);
    }
}
