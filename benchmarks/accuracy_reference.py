"""Which reference should the moments spec shift each window by? Measures the error of the spec's
sma against the exact window mean (Fractions) for two choices: the block's first value (the spec,
src/kernels/moments.rs) and zero (no shift, as TA-Lib sums), on data where the mean is near zero
(alternating or random ±1e6 plus noise) and on offset prices (1e6 + noise).

Errors are in units of ε·1e6 (ε = 2^-52), the scale of the inputs. Pure Python: the spec's
operations are emulated one IEEE double at a time, so this runs without the extension.

    python benchmarks/accuracy_reference.py
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np

EPS = 2.0**-52


def spec_sma(x: list[float], w: int, reference) -> np.ndarray:
    """The moments spec's sma, row by row, with `reference(x, block_start)` as the shift."""
    n, iw = len(x), 1.0 / w
    out = np.full(n, np.nan)
    for t in range(w - 1, n):
        b, o = t // w, t % w
        r = reference(x, b * w)
        if o == w - 1:
            s = 0.0
            for v in x[b * w : b * w + w]:
                s = s + (v - r)
        else:
            a = 0.0  # right to left over the suffix of block b - 1
            for i in range(b * w - 1, (b - 1) * w + o, -1):
                a = (x[i] - r) + a
            p = 0.0  # left to right over the prefix of block b
            for i in range(b * w, t + 1):
                p = p + (x[i] - r)
            s = a + p
        out[t] = r + s * iw
    return out


def exact_mean(x: list[float], w: int) -> np.ndarray:
    fx = [Fraction(v) for v in x]
    out = np.full(len(x), np.nan)
    for t in range(w - 1, len(x)):
        out[t] = float(sum(fx[t - w + 1 : t + 1]) / w)
    return out


REFERENCES = {
    "block start (spec)": lambda x, s: x[s] if np.isfinite(x[s]) else 0.0,
    "zero (no shift)": lambda x, s: 0.0,
}

DATA = {
    "alternating ±1e6 + noise": lambda rng, n: (
        np.where(np.arange(n) % 2 == 0, 1e6, -1e6) + 0.01 * rng.standard_normal(n)
    ),
    "random signs ±1e6 + noise": lambda rng, n: (
        np.where(rng.random(n) < 0.5, 1e6, -1e6) + 0.01 * rng.standard_normal(n)
    ),
    "offset 1e6 + 0.01 noise": lambda rng, n: 1e6 + 0.01 * rng.standard_normal(n),
}


def main() -> None:
    print(f"{'data':<28}{'w':>5}  {'reference':<20}{'max':>8}{'mean':>8}   (units of ε·1e6)")
    for label, make in DATA.items():
        for w in (7, 20, 101):
            x = list(make(np.random.default_rng(w), 3000))
            exact = exact_mean(x, w)[w - 1 :]
            for name, ref in REFERENCES.items():
                err = np.abs(spec_sma(x, w, ref)[w - 1 :] - exact) / (1e6 * EPS)
                print(f"{label:<28}{w:>5}  {name:<20}{err.max():8.2f}{err.mean():8.2f}")


if __name__ == "__main__":
    main()
