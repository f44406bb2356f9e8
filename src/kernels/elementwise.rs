//! Elementwise maps: `M` outputs of row `t` computed from the inputs at fixed rows (`t`, `t - 1`,
//! `t - n`): the true range, the typical price, ratios and differences of series.
//!
//! # Spec
//! Row `t`'s outputs are `f(t, inputs)`, a pure function of `t` and of input values at rows fixed
//! relative to `t`, spelled out in IEEE operations (no FMA). Nothing is carried between rows, so
//! [`map_rows`] is split-invariant whatever the splitter does.
//!
//! The op codes ([`Op`], shared with the CUDA kernel `tx_elementwise` in `family.cu`), with inputs
//! `a`, `b`, `c`, `d` and rows `t >= first_row(op)`:
//! * `Add`: `a_t + b_t`; `Sub`: `a_t - b_t`; `Mul`: `a_t * b_t`; `Div`: `a_t / b_t` (IEEE: a zero
//!   divisor gives ±inf or NaN, no guard);
//! * `TrueRange` (TA-Lib TRANGE; `a` = high, `b` = low, `c` = close; rows `t >= 1`):
//!   `nan_max(nan_max(h_t - l_t, |c_{t-1} - h_t|), |c_{t-1} - l_t|)`, the operations of
//!   `wilder::true_range` (`nan_max` propagates NaN and returns its second operand on ties);
//! * `TypicalPrice` (TA-Lib TYPPRICE; `a` = high, `b` = low, `c` = close):
//!   `((h_t + l_t) + c_t) / 3.0`;
//! * `AvgPrice` (TA-Lib AVGPRICE; `a` = open, `b` = high, `c` = low, `d` = close):
//!   `(((h_t + l_t) + c_t) + o_t) / 4.0`, TA-Lib's order (open is added last);
//! * `MedPrice` (TA-Lib MEDPRICE; `a` = high, `b` = low): `(h_t + l_t) / 2.0`;
//! * `WclPrice` (TA-Lib WCLPRICE; `a` = high, `b` = low, `c` = close):
//!   `((h_t + l_t) + c_t * 2.0) / 4.0`.
//! * The math transforms (TA-Lib ACOS, ASIN, ATAN, CEIL, COS, COSH, EXP, FLOOR, LN, LOG10, SIN,
//!   SINH, SQRT, TAN, TANH; one input `a`): `f(a_t)`, the C math library's function of that name
//!   (`acos`, …, `log` for LN). `Sqrt` is IEEE's correctly rounded square root and `Ceil`/`Floor`
//!   are exact, so they are the same bits on every device; the others are the host libm's bits
//!   (Rust's `f64` methods call the platform libm, as TA-Lib's C does), which CUDA's libdevice does
//!   not reproduce, so those ops have no CUDA twin ([`Op::has_cuda`]). Out-of-domain arguments
//!   give NaN (IEEE: `acos(2)`, `ln(-1)`), `ln(0)` gives `-inf`.

use super::canon;
use super::extrema::nan_max;
use super::split::Splitter;

/// Fills `outs[j][t]` with `canon(f(t, &inputs)[j])` (any NaN written as the canonical one,
/// [`canon`]) for rows `t` in `first_row .. n` (earlier rows are left untouched). `f` may read any input at any row fixed relative to `t` (`t - 1` for the true
/// range); it must not depend on anything else.
pub fn map_rows<S: Splitter, const K: usize, const M: usize>(
    split: &S,
    first_row: usize,
    inputs: [&[f64]; K],
    outs: [&mut [f64]; M],
    f: impl Fn(usize, &[&[f64]; K]) -> [f64; M] + Sync + Send,
) {
    let Some(n) = outs.first().map(|o| o.len()) else {
        return;
    };
    if first_row >= n {
        return;
    }
    let tail = outs.map(|o| &mut o[first_row..]);
    split.for_each_piece(first_row, tail, |lo, mut piece| {
        let len = piece[0].len();
        // Inputs cut to the piece's last row, so the row loop can drop most bounds checks.
        let hi = lo + len;
        let cut = inputs.map(|x| if x.len() >= hi { &x[..hi] } else { x });
        for i in 0..len {
            let y = f(lo + i, &cut);
            for (o, v) in piece.iter_mut().zip(y) {
                o[i] = canon(v);
            }
        }
    });
}

/// The op codes of [`apply`] and of the CUDA kernel `tx_elementwise` (same numbers as
/// `TX_OP_*` in `family.cu`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(i64)]
pub enum Op {
    Add = 0,
    Sub = 1,
    Mul = 2,
    Div = 3,
    TrueRange = 4,
    TypicalPrice = 5,
    AvgPrice = 6,
    MedPrice = 7,
    WclPrice = 8,
    Acos = 9,
    Asin = 10,
    Atan = 11,
    Ceil = 12,
    Cos = 13,
    Cosh = 14,
    Exp = 15,
    Floor = 16,
    Ln = 17,
    Log10 = 18,
    Sin = 19,
    Sinh = 20,
    Sqrt = 21,
    Tan = 22,
    Tanh = 23,
}

impl Op {
    pub const ALL: [Op; 24] = [
        Op::Add,
        Op::Sub,
        Op::Mul,
        Op::Div,
        Op::TrueRange,
        Op::TypicalPrice,
        Op::AvgPrice,
        Op::MedPrice,
        Op::WclPrice,
        Op::Acos,
        Op::Asin,
        Op::Atan,
        Op::Ceil,
        Op::Cos,
        Op::Cosh,
        Op::Exp,
        Op::Floor,
        Op::Ln,
        Op::Log10,
        Op::Sin,
        Op::Sinh,
        Op::Sqrt,
        Op::Tan,
        Op::Tanh,
    ];

    /// Whether `tx_elementwise` (`family.cu`) computes the op with the bits of [`Op::at`] on every
    /// device. The transcendental math transforms do not: CUDA's libdevice rounds them
    /// differently from the host's C math library.
    pub fn has_cuda(self) -> bool {
        !matches!(
            self,
            Op::Acos
                | Op::Asin
                | Op::Atan
                | Op::Cos
                | Op::Cosh
                | Op::Exp
                | Op::Ln
                | Op::Log10
                | Op::Sin
                | Op::Sinh
                | Op::Tan
                | Op::Tanh
        )
    }

    /// The first row the op defines (its lookback).
    pub fn first_row(self) -> usize {
        match self {
            Op::TrueRange => 1,
            _ => 0,
        }
    }

    /// How many inputs it reads (`a`, then `b`, `c`, `d`).
    pub fn inputs(self) -> usize {
        match self {
            Op::AvgPrice => 4,
            Op::TrueRange | Op::TypicalPrice | Op::WclPrice => 3,
            Op::Add | Op::Sub | Op::Mul | Op::Div | Op::MedPrice => 2,
            _ => 1,
        }
    }

    /// Row `t` of the op (see the module doc); unused inputs may be empty.
    #[inline(always)]
    pub fn at(self, t: usize, [a, b, c, d]: &[&[f64]; 4]) -> f64 {
        match self {
            Op::Add => a[t] + b[t],
            Op::Sub => a[t] - b[t],
            Op::Mul => a[t] * b[t],
            Op::Div => a[t] / b[t],
            Op::TrueRange => {
                let prev = c[t - 1];
                nan_max(
                    nan_max(a[t] - b[t], (prev - a[t]).abs()),
                    (prev - b[t]).abs(),
                )
            }
            Op::TypicalPrice => ((a[t] + b[t]) + c[t]) / 3.0,
            Op::AvgPrice => (((b[t] + c[t]) + d[t]) + a[t]) / 4.0,
            Op::MedPrice => (a[t] + b[t]) / 2.0,
            Op::WclPrice => ((a[t] + b[t]) + c[t] * 2.0) / 4.0,
            Op::Acos => a[t].acos(),
            Op::Asin => a[t].asin(),
            Op::Atan => a[t].atan(),
            Op::Ceil => a[t].ceil(),
            Op::Cos => a[t].cos(),
            Op::Cosh => a[t].cosh(),
            Op::Exp => a[t].exp(),
            Op::Floor => a[t].floor(),
            Op::Ln => a[t].ln(),
            Op::Log10 => a[t].log10(),
            Op::Sin => a[t].sin(),
            Op::Sinh => a[t].sinh(),
            Op::Sqrt => a[t].sqrt(),
            Op::Tan => a[t].tan(),
            Op::Tanh => a[t].tanh(),
        }
    }
}

/// `out[t] = op(t)` for rows `t >= op.first_row()`; `inputs` holds `op.inputs()` series as long as
/// `out`.
pub fn apply<S: Splitter>(split: &S, op: Op, inputs: &[&[f64]], out: &mut [f64]) {
    assert_eq!(
        inputs.len(),
        op.inputs(),
        "{op:?} takes {} inputs",
        op.inputs()
    );
    let get = |j: usize| inputs.get(j).copied().unwrap_or(&[]);
    let abcd = [get(0), get(1), get(2), get(3)];
    // One copy of the loop per op, so no row branches on the op.
    macro_rules! per_op {
        ($($op:ident),*) => {
            match op {
                $(Op::$op => map_rows(split, op.first_row(), abcd, [out], |t, abcd| {
                    [Op::$op.at(t, abcd)]
                }),)*
            }
        };
    }
    per_op!(
        Add,
        Sub,
        Mul,
        Div,
        TrueRange,
        TypicalPrice,
        AvgPrice,
        MedPrice,
        WclPrice,
        Acos,
        Asin,
        Atan,
        Ceil,
        Cos,
        Cosh,
        Exp,
        Floor,
        Ln,
        Log10,
        Sin,
        Sinh,
        Sqrt,
        Tan,
        Tanh
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::reference as naive;
    use crate::kernels::split::{CutAt, Sequential};
    use crate::kernels::testing::{assert_bits_eq, random_cuts, series_zoo, Lcg};
    use crate::kernels::wilder;

    /// High, low, close and open from a zoo series, with NaN, ±inf and zeros sprinkled in.
    fn hlc(n: usize, seed: u64) -> Vec<[Vec<f64>; 4]> {
        let mut rng = Lcg(seed);
        series_zoo(n, seed)
            .into_iter()
            .map(|c| {
                let spread: Vec<f64> = c.iter().map(|v| v.abs() * 1e-3 * rng.uniform()).collect();
                let h: Vec<f64> = c.iter().zip(&spread).map(|(c, s)| c + s).collect();
                let mut l: Vec<f64> = c.iter().zip(&spread).map(|(c, s)| c - 0.7 * s).collect();
                for _ in 0..(n / 100).max(1) {
                    l[rng.below(n)] =
                        [f64::NAN, f64::INFINITY, f64::NEG_INFINITY, 0.0][rng.below(4)];
                }
                let o: Vec<f64> = c.iter().zip(&spread).map(|(c, s)| c + 0.3 * s).collect();
                [h, l, c, o]
            })
            .collect()
    }

    fn run_op<S: Splitter>(s: &S, op: Op, [h, l, c, o]: &[Vec<f64>; 4]) -> Vec<f64> {
        let mut out = vec![-7.0; h.len()];
        // AvgPrice takes open first: (o, h, l, c); the others take (h, l, c).
        let all = if op == Op::AvgPrice {
            [o, h, l, c]
        } else {
            [h, l, c, o]
        };
        let ins: Vec<&[f64]> = all[..op.inputs()].iter().map(|v| v.as_slice()).collect();
        apply(s, op, &ins, &mut out);
        out
    }

    #[test]
    fn ops_match_their_definitions() {
        for s in hlc(500, 3) {
            let [h, l, c, o] = &s;
            let tr = run_op(&Sequential, Op::TrueRange, &s);
            assert_eq!(tr[0], -7.0, "row 0 is untouched");
            let want: Vec<f64> = (1..h.len())
                .map(|t| wilder::true_range(h, l, c, t))
                .collect();
            assert_bits_eq(&tr[1..], &want, "true range vs wilder");
            let naive_tr = naive::true_range(h, l, c);
            for t in 1..h.len() {
                if ![h[t], l[t], c[t - 1]].iter().any(|v| v.is_nan()) {
                    assert_eq!(tr[t], naive_tr[t], "row {t}");
                }
            }
            let tp = run_op(&Sequential, Op::TypicalPrice, &s);
            let want: Vec<f64> = (0..h.len()).map(|t| (h[t] + l[t] + c[t]) / 3.0).collect();
            assert_bits_eq(&tp, &want, "typical price");
            // TA-Lib's expressions, in its order of operations.
            let ap = run_op(&Sequential, Op::AvgPrice, &s);
            let want: Vec<f64> = (0..h.len())
                .map(|t| (h[t] + l[t] + c[t] + o[t]) / 4.0)
                .collect();
            assert_bits_eq(&ap, &want, "average price");
            let mp = run_op(&Sequential, Op::MedPrice, &s);
            let want: Vec<f64> = (0..h.len()).map(|t| (h[t] + l[t]) / 2.0).collect();
            assert_bits_eq(&mp, &want, "median price");
            let wp = run_op(&Sequential, Op::WclPrice, &s);
            let want: Vec<f64> = (0..h.len())
                .map(|t| (h[t] + l[t] + (c[t] * 2.0)) / 4.0)
                .collect();
            assert_bits_eq(&wp, &want, "weighted close price");
            for (op, f) in [
                (Op::Add, (|a, b| a + b) as fn(f64, f64) -> f64),
                (Op::Sub, |a, b| a - b),
                (Op::Mul, |a, b| a * b),
                (Op::Div, |a, b| a / b),
            ] {
                let got = run_op(&Sequential, op, &s);
                let want: Vec<f64> = h.iter().zip(l).map(|(a, b)| f(*a, *b)).collect();
                assert_bits_eq(&got, &want, "binary op");
            }
        }
    }

    /// The math transforms are the C math library's functions (through `f64`'s methods), with
    /// IEEE's NaN out of their domain.
    #[test]
    fn math_transforms_are_libm_functions_with_nan_out_of_domain() {
        type Unary = fn(f64) -> f64;
        let ops: [(Op, Unary); 15] = [
            (Op::Acos, f64::acos),
            (Op::Asin, f64::asin),
            (Op::Atan, f64::atan),
            (Op::Ceil, f64::ceil),
            (Op::Cos, f64::cos),
            (Op::Cosh, f64::cosh),
            (Op::Exp, f64::exp),
            (Op::Floor, f64::floor),
            (Op::Ln, f64::ln),
            (Op::Log10, f64::log10),
            (Op::Sin, f64::sin),
            (Op::Sinh, f64::sinh),
            (Op::Sqrt, f64::sqrt),
            (Op::Tan, f64::tan),
            (Op::Tanh, f64::tanh),
        ];
        let x = [
            0.5,
            -0.25,
            2.0,
            -1.0,
            0.0,
            1e6,
            -3.7,
            f64::NAN,
            f64::INFINITY,
        ];
        for (op, f) in ops {
            assert_eq!(op.inputs(), 1);
            let mut out = vec![0.0; x.len()];
            apply(&Sequential, op, &[&x], &mut out);
            // libm's NaN for an out-of-domain argument may be negative (`sin(inf)` on glibc):
            // written as the canonical one.
            let want: Vec<f64> = x.iter().map(|v| canon(f(*v))).collect();
            assert_bits_eq(&out, &want, "math transform");
        }
        let one = |op: Op, v: f64| {
            let mut out = [0.0];
            apply(&Sequential, op, &[&[v]], &mut out);
            out[0]
        };
        assert!(one(Op::Acos, 2.0).is_nan() && one(Op::Asin, -1.5).is_nan());
        assert!(one(Op::Ln, -1.0).is_nan() && one(Op::Log10, -1.0).is_nan());
        assert!(one(Op::Sqrt, -4.0).is_nan());
        assert_eq!(one(Op::Ln, 0.0), f64::NEG_INFINITY);
        assert_eq!(one(Op::Sqrt, 6.25), 2.5);
        assert_eq!((one(Op::Ceil, -0.5), one(Op::Floor, -0.5)), (0.0, -1.0));
        assert!(one(Op::Ceil, -0.5).is_sign_negative(), "ceil(-0.5) is -0");
    }

    #[test]
    fn every_split_gives_identical_bits() {
        let mut rng = Lcg(11);
        for s in hlc(3000, 5) {
            for op in Op::ALL {
                let whole = run_op(&Sequential, op, &s);
                for _ in 0..4 {
                    let got = run_op(&CutAt(random_cuts(&mut rng, 3000, 16)), op, &s);
                    assert_bits_eq(&got, &whole, "elementwise split");
                }
            }
            // Several outputs at once, with a lag.
            let [h, l, c, _] = &s;
            let two = |sp: &dyn Fn(&mut [f64], &mut [f64])| {
                let (mut x, mut y) = (vec![0.0; h.len()], vec![0.0; h.len()]);
                sp(&mut x, &mut y);
                [x, y]
            };
            let f = |t: usize, [h, l, c]: &[&[f64]; 3]| [h[t] - l[t], c[t] / c[t - 2]];
            let whole = two(&|x, y| map_rows(&Sequential, 2, [h, l, c], [x, y], f));
            let cuts = CutAt(random_cuts(&mut rng, 3000, 16));
            let got = two(&|x, y| map_rows(&cuts, 2, [h, l, c], [x, y], f));
            assert_bits_eq(&got[0], &whole[0], "map_rows out 0");
            assert_bits_eq(&got[1], &whole[1], "map_rows out 1");
        }
    }
}
