"""Writes src/kernels/testdata/correl_talib.txt: two correlated random walks near 100 and TA-Lib's
CORREL of them at a few periods, every value as the hex bit pattern of its f64 (read by the
`correl_matches_talib` test in src/kernels/comoments.rs). Needs TA-Lib's Python wheel and numpy:

    python scripts/correl_talib_fixture.py
"""

from pathlib import Path

import numpy as np
import talib

PERIODS = [2, 5, 14, 30]
N = 400


def main() -> None:
    rng = np.random.default_rng(20240611)
    a = rng.standard_normal(N)
    b = 0.6 * a + 0.8 * rng.standard_normal(N)
    x = 100.0 + np.cumsum(a)
    y = 50.0 + np.cumsum(b) * 0.5
    # A flat stretch in y: constant windows (CORREL 0.0 on both sides).
    y[200:240] = y[200]
    cols = [x, y] + [talib.CORREL(x, y, timeperiod=p) for p in PERIODS]
    hexed = lambda v: format(np.float64(v).view(np.uint64), "016x")
    out = Path(__file__).resolve().parent.parent / "src/kernels/testdata/correl_talib.txt"
    with out.open("w") as f:
        f.write(
            f"# TA-Lib {talib.__version__} CORREL; columns: x, y, CORREL at each period below\n"
        )
        f.write(" ".join(str(p) for p in PERIODS) + "\n")
        for row in zip(*cols):
            f.write(" ".join(hexed(v) for v in row) + "\n")


if __name__ == "__main__":
    main()
