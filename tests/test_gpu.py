"""The CUDA backend gives the CPU backend's results, bit for bit: every indicator with two or three
parameter sets on 1,000 to 50,000,000 rows, with nulls, NaN and ±inf, on short and empty series,
under `.over()`, on multi-chunk columns, in lazy and streaming queries, on Float32 and integer
inputs, with many GPU calls at once; forced (`gpu`, `gpu:0`, `gpu:99`) and automatic placement;
and the fallback to the CPU when a GPU step fails (`THREADX_GPU_INJECT_FAILURE`).

"The same" is `assert_same_values`: the same null rows, NaN on the same rows, and the same bits in
every other value (the sign of zero included). NaN payloads are not compared: a NaN that the
arithmetic makes (0/0, inf - inf) has the platform's default payload, which x86 and NVIDIA GPUs
choose differently.

Every test here needs a usable GPU; without one the module is skipped with the reason
(`tests/test_gpu_absent.py` covers that machine).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import threadx
from helpers import (
    GPU_NAMES,
    INPUTS,
    NS_INPUTS,
    PARAMS,
    RECEIVER,
    assert_bits_equal,
    fields,
    lookback,
    null_where,
    ohlcv,
    ohlcv_arrays,
)
from helpers import GPU_NAMES as NAMES  # the indicators a GPU runs (the others are CPU-only)
from polars.exceptions import ComputeError

pytestmark = pytest.mark.gpu


@pytest.fixture(autouse=True, scope="module")
def _needs_a_gpu() -> None:
    # A fixture, not an import-time skip: `pytest -m "not gpu"` then deselects this module
    # without reporting a skip, and `pytest -m gpu` on a machine without a GPU skips every test
    # with the reason.
    # Simulated GPUs (THREADX_SIMULATED_GPUS) run the CPU kernels: this suite needs a real one.
    if not any(not d["simulated"] for d in threadx.gpu.devices()):
        pytest.skip(f"no usable GPU: {threadx.gpu.status()['reason']}")


TESTS_DIR = Path(__file__).resolve().parent

# --------------------------------------------------------------------------------------------
# the case table: (indicator, parameters, input columns)
# --------------------------------------------------------------------------------------------

# Periods short (direct windows), near and across the 1024-row scan block, and long.
PARAM_SETS: dict[str, list[dict]] = {
    "sma": [{"period": 2}, {"period": 30}, {"period": 1500}],
    "ema": [{"period": 2}, {"period": 21}, {"period": 500}],
    "wma": [{"period": 2}, {"period": 17}, {"period": 1000}],
    "rolling_std": [
        {"period": 5, "ddof": 0},
        {"period": 64, "ddof": 1},
        {"period": 2000, "ddof": 1},
    ],
    "zscore": [{"period": 2}, {"period": 20}, {"period": 777}],
    "bollinger": [
        {"period": 20, "std_dev": 2.0},
        {"period": 9, "std_dev": 1.5},
        {"period": 300, "std_dev": 0.0},
    ],
    "rsi": [{"period": 2}, {"period": 14}, {"period": 250}],
    "roc": [{"period": 1}, {"period": 10}, {"period": 365}],
    "macd": [
        {"fast": 12, "slow": 26, "signal": 9},
        {"fast": 2, "slow": 3, "signal": 1},
        {"fast": 50, "slow": 200, "signal": 30},
    ],
    "atr": [{"period": 1}, {"period": 14}, {"period": 300}],
    "natr": [{"period": 1}, {"period": 14}, {"period": 100}],
    "stoch": [
        {"fastk_period": 5, "slowk_period": 3, "slowd_period": 3},
        {"fastk_period": 14, "slowk_period": 1, "slowd_period": 1},
        {"fastk_period": 100, "slowk_period": 20, "slowd_period": 30},
    ],
    "obv": [{}],
}
# An indicator without hand-picked sets runs at its small test parameters and its defaults.
for _name in NAMES:
    PARAM_SETS.setdefault(_name, [PARAMS[_name], {}])

# Forced-GPU cases: the indicators with a CUDA twin (CPU-only ones are kept off GPUs, see
# test_api.py and test_balance.py for their errors).
CASES: list[tuple[str, dict, tuple[str, ...]]] = [
    (name, params, INPUTS[name])
    for name, sets in PARAM_SETS.items()
    if name in GPU_NAMES
    for params in sets
]


def case_id(name: str, params: dict, inputs: tuple[str, ...] = ()) -> str:
    return f"{name}({','.join(f'{k}={v}' for k, v in params.items())})"


CASE_IDS = [case_id(*c) for c in CASES]
cases = pytest.mark.parametrize("name, params, inputs", CASES, ids=CASE_IDS)
# the first (TA-Lib default or common) parameter set of each indicator
FIRST = {name: sets[0] for name, sets in PARAM_SETS.items()}


def build(
    name: str, params: dict, device: str, inputs: tuple[str, ...] | None = None, form: str = "func"
) -> pl.Expr:
    """`threadx.<name>(*inputs, **params, device=device)`, or the namespace form on "close"."""
    if form == "func":
        return getattr(threadx, name)(*(inputs or INPUTS[name]), **params, device=device)
    method = getattr(pl.col(RECEIVER[name]).threadx, name)
    return method(**NS_INPUTS[name], **params, device=device)


def both(df: pl.DataFrame, name: str, params: dict, inputs=None) -> tuple[pl.Series, pl.Series]:
    """(GPU result, CPU result) of one eager `select` each."""
    gpu = df.select(build(name, params, "gpu", inputs).alias("out"))["out"]
    cpu = df.select(build(name, params, "cpu", inputs).alias("out"))["out"]
    return gpu, cpu


# --------------------------------------------------------------------------------------------
# comparison
# --------------------------------------------------------------------------------------------


def assert_same_values(got: pl.Series, want: pl.Series, what: str = "") -> None:
    """The module's notion of "the same" (see the module doc)."""
    assert_bits_equal(got, want, what, nan_payloads=False)


def assert_gpu_equals_cpu(df: pl.DataFrame, name: str, params: dict, what: str = "") -> None:
    got, want = both(df, name, params)
    assert len(got) == df.height
    assert_same_values(got, want, f"{case_id(name, params)} {what}")


# --------------------------------------------------------------------------------------------
# data
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def frame():
    """`frame(n)`: a clean OHLCV random walk of `n` rows, made once per module."""
    cache: dict[int, pl.DataFrame] = {}

    def get(n: int) -> pl.DataFrame:
        if n not in cache:
            cache[n] = ohlcv(n, seed=1_000 + n % 997)
        return cache[n]

    return get


def set_at(df: pl.DataFrame, col: str, row: int, value: float) -> pl.DataFrame:
    """`col` set to `value` at `row` (negative: from the end); every other row unchanged."""
    row = row % df.height
    return df.with_columns(
        pl.when(pl.int_range(pl.len()) == row)
        .then(pl.lit(value, dtype=pl.Float64))
        .otherwise(pl.col(col))
        .alias(col)
    )


N_EDGE = 100_003


@pytest.fixture(scope="module")
def with_nulls() -> pl.DataFrame:
    """Scattered nulls in every input, plus leading, trailing and a multi-block run of null
    closes."""
    df = ohlcv(N_EDGE, seed=11)
    rng = np.random.default_rng(12)
    for j, col in enumerate(("high", "low", "close", "volume")):
        mask = rng.random(N_EDGE) < 0.01 + 0.005 * j
        if col == "close":
            mask[:40] = True
            mask[50_000:53_000] = True
            mask[-25:] = True
        df = null_where(df, col, mask)
    return df


# --------------------------------------------------------------------------------------------
# devices
# --------------------------------------------------------------------------------------------


def test_status_and_devices() -> None:
    st = threadx.gpu.status()
    assert st["available"] is True
    devs = threadx.gpu.devices()
    assert devs and st["devices"] == devs
    assert isinstance(st["driver_version"], str) and st["driver_version"]
    assert isinstance(st["nvrtc_version"], str) and st["nvrtc_version"]
    for d in devs:
        major, minor = d["compute_capability"]
        assert d["arch"].startswith(f"sm_{major}{minor}"), d
        assert d["memory_bytes"] > 0 and d["name"] and d["uuid"], d
    # the kernels compile for the device's own architecture
    compiled = threadx.gpu.compile_kernels(devs[0]["arch"])
    assert compiled["arch"] == devs[0]["arch"] and compiled["cubin_bytes"] > 1000


# --------------------------------------------------------------------------------------------
# every indicator, every parameter set, every size
# --------------------------------------------------------------------------------------------

SIZES = [1_000, 100_000, 5_000_000]


@pytest.mark.parametrize("n", SIZES)
@cases
def test_gpu_equals_cpu(name, params, inputs, n, frame) -> None:
    df = frame(n)
    got, want = both(df, name, params, inputs)
    assert len(got) == n
    assert_same_values(got, want, f"{case_id(name, params)} n={n}")
    # not a vacuous comparison: values from the warm-up on
    first = next(iter(fields(want).values()))
    assert first.null_count() == min(n, lookback(name, params))


@pytest.fixture(scope="module")
def huge() -> pl.DataFrame:
    """50M rows: high, low, close only (1.2 GB)."""
    cols = ohlcv_arrays(50_000_000, np.random.default_rng(50))
    return pl.DataFrame({k: cols[k] for k in ("high", "low", "close")})


@pytest.mark.slow
@pytest.mark.parametrize(
    "name, params",
    [
        ("bollinger", {"period": 20, "std_dev": 2.0}),
        ("macd", {"fast": 12, "slow": 26, "signal": 9}),
        ("atr", {"period": 14}),
    ],
    ids=["bollinger", "macd", "atr"],
)
def test_gpu_equals_cpu_50m_rows(name, params, huge) -> None:
    assert_gpu_equals_cpu(huge, name, params, "n=50M")


# --------------------------------------------------------------------------------------------
# data regimes: cancellation, tiny values, flat runs, zeros and signs
# --------------------------------------------------------------------------------------------

PRICES = ("open", "high", "low", "close")
REGIMES = {
    # prices near 1e6 that move by about 0.01: the rolling moments cancel catastrophically
    "level_1e6": lambda c: 1e6 + (c - 100.0) * 1e-2,
    "tiny_1e-7": lambda c: c * 1e-9,
    # steps of 5: equal neighbours, zero ranges, zero std (zscore 0/0, rsi with no moves)
    "flat": lambda c: (c / 5.0).round(0) * 5.0,
    # around zero, many exact zeros: roc and natr divide by them
    "signed": lambda c: (c - 100.0).round(0),
}


@pytest.mark.parametrize("regime", list(REGIMES))
@cases
def test_gpu_equals_cpu_data_regimes(name, params, inputs, regime, frame) -> None:
    f = REGIMES[regime]
    df = frame(100_000).with_columns(f(pl.col(c)).alias(c) for c in PRICES)
    assert_gpu_equals_cpu(df, name, params, regime)


# --------------------------------------------------------------------------------------------
# nulls, NaN, ±inf
# --------------------------------------------------------------------------------------------


@cases
def test_gpu_equals_cpu_with_nulls(name, params, inputs, with_nulls) -> None:
    assert_gpu_equals_cpu(with_nulls, name, params, "nulls")


def test_all_null_and_all_nan_inputs(frame) -> None:
    base = frame(5_000)
    all_null = base.with_columns(pl.lit(None, dtype=pl.Float64).alias(c) for c in base.columns)
    all_nan = base.with_columns(pl.lit(float("nan")).alias(c) for c in base.columns)
    for label, df in (("all null", all_null), ("all NaN", all_nan)):
        for name, params, _ in CASES:
            assert_gpu_equals_cpu(df, name, params, label)


# (column, row, value) edits; negative rows count from the end
NAN = float("nan")
INF = float("inf")
SPECIALS: dict[str, list[tuple[str, int, float]]] = {
    "nan": [("close", 30_001, NAN)],
    "nan_first_row": [("close", 0, NAN)],
    "nan_last_row": [("close", -1, NAN)],
    "pinf": [("close", 20_000, INF)],
    "ninf": [("close", 60_000, -INF)],
    "mixed": [
        ("volume", 5_000, INF),
        ("high", 10_000, INF),
        ("low", 10_500, -INF),
        ("close", 40_000, -INF),
        ("close", 40_001, INF),
        ("low", 55_555, NAN),
        ("close", 70_000, NAN),
        ("volume", 80_000, NAN),
        ("high", -3, NAN),
    ],
}


@pytest.mark.parametrize("special", list(SPECIALS))
@cases
def test_gpu_equals_cpu_with_nan_and_inf(name, params, inputs, special, with_nulls) -> None:
    df = with_nulls
    for col, row, value in SPECIALS[special]:
        df = set_at(df, col, row, value)
    assert_gpu_equals_cpu(df, name, params, special)


# --------------------------------------------------------------------------------------------
# short and empty series
# --------------------------------------------------------------------------------------------


@cases
def test_short_series(name, params, inputs, frame) -> None:
    lb = lookback(name, params)
    base = frame(5_000)
    for n in sorted({0, 1, 2, 3, lb - 1, lb, lb + 1, lb + 2, lb + 1023, lb + 1025}):
        if 0 <= n <= base.height:
            df = base.head(n)
            got, want = both(df, name, params, inputs)
            assert len(got) == n
            assert_same_values(got, want, f"{case_id(name, params)} n={n}")


def test_empty_frame_keeps_dtype() -> None:
    df = pl.DataFrame(schema={c: pl.Float64 for c in ("open", "high", "low", "close", "volume")})
    for name, params, _ in CASES:
        got, want = both(df, name, params)
        assert len(got) == 0
        assert_same_values(got, want, f"{case_id(name, params)} empty")


# --------------------------------------------------------------------------------------------
# Polars contexts: .over(), chunks, lazy/streaming, dtypes, many calls at once
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def panel() -> pl.DataFrame:
    """Groups of 1 to 50,000 rows (block-sized ones included), interleaved, with nulls and a NaN."""
    rng = np.random.default_rng(2025)
    sizes = [50_000, 4_099, 1_025, 1_024, 1_023, 300, 100, 17, 5, 2, 1]
    sizes += [int(x) for x in rng.integers(1, 3_000, 30)]
    parts = [
        pl.DataFrame({"symbol": [f"S{i:02d}"] * n, **ohlcv_arrays(n, rng)})
        for i, n in enumerate(sizes)
    ]
    df = pl.concat(parts)
    for col in ("high", "close", "volume"):
        df = null_where(df, col, rng.random(df.height) < 0.01)
    df = set_at(df, "close", 20_000, NAN)
    return df[rng.permutation(df.height)]


@cases
def test_over_groups(name, params, inputs, panel) -> None:
    got = panel.select(build(name, params, "gpu", inputs).over("symbol").alias("out"))["out"]
    want = panel.select(build(name, params, "cpu", inputs).over("symbol").alias("out"))["out"]
    assert_same_values(got, want, f"{case_id(name, params)} over")


def _chunked(df: pl.DataFrame, sizes: list[int]) -> pl.DataFrame:
    parts, at = [], 0
    for s in [*sizes, df.height - sum(sizes)]:
        parts.append(df.slice(at, s))
        at += s
    out = pl.concat(parts, rechunk=False)
    assert out["close"].n_chunks() == len(sizes) + 1
    return out


@cases
def test_multi_chunk_input(name, params, inputs, with_nulls) -> None:
    want = with_nulls.select(build(name, params, "cpu", inputs).alias("out"))["out"]
    for sizes in ([1, 1023, 1025, 50_000, 3], [N_EDGE // 2]):
        df = _chunked(with_nulls, sizes)
        got = df.select(build(name, params, "gpu", inputs).alias("out"))["out"]
        assert_same_values(got, want, f"{case_id(name, params)} chunks {sizes}")


@cases
def test_lazy_and_streaming(name, params, inputs, with_nulls) -> None:
    gpu, cpu = (build(name, params, d, inputs).alias("out") for d in ("gpu", "cpu"))
    want = with_nulls.select(cpu)["out"]
    lazy = with_nulls.lazy()
    assert_same_values(lazy.with_columns(gpu).collect()["out"], want, "lazy")
    assert_same_values(lazy.select(gpu).collect(engine="streaming")["out"], want, "streaming")
    # a filter and a derived input before the indicator
    q = lazy.filter(pl.int_range(pl.len()) % 3 != 0).with_columns(pl.col("close") * 2)
    assert_same_values(q.select(gpu).collect()["out"], q.select(cpu).collect()["out"], "filtered")


DTYPES = [pl.Float32, pl.Int64, pl.Int32]


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@cases
def test_input_dtypes(name, params, inputs, dtype, with_nulls) -> None:
    if dtype == pl.Float32:
        df = with_nulls.with_columns(pl.all().cast(pl.Float32))
    else:  # prices in cents
        df = with_nulls.with_columns(
            *((pl.col(c) * 100).round(0).cast(dtype, strict=False) for c in PRICES),
            pl.col("volume").cast(dtype, strict=False),
        )
    got, want = both(df, name, params, inputs)
    assert_same_values(got, want, f"{case_id(name, params)} {dtype}")
    for f in fields(got).values():
        assert f.dtype == pl.Float64


def test_many_gpu_calls_in_one_select(frame) -> None:
    """Polars runs the expressions of one select on its thread pool: concurrent GPU calls."""
    df = frame(100_000)
    gpu = df.select(build(n, p, "gpu", i).alias(f"c{j}") for j, (n, p, i) in enumerate(CASES))
    cpu = df.select(build(n, p, "cpu", i).alias(f"c{j}") for j, (n, p, i) in enumerate(CASES))
    for j, case_ in enumerate(CASES):
        assert_same_values(gpu[f"c{j}"], cpu[f"c{j}"], case_id(*case_))


def test_small_device_pieces(monkeypatch, with_nulls) -> None:
    """Inputs bigger than one device piece are computed in pieces: still the same bits."""
    monkeypatch.setenv("THREADX_GPU_PIECE_ROWS", "4099")
    for name, params, inputs in CASES:
        want = with_nulls.select(build(name, params, "cpu", inputs).alias("o"))["o"]
        got = with_nulls.select(build(name, params, "gpu", inputs).alias("o"))["o"]
        assert_same_values(got, want, f"{case_id(name, params)} pieces of 4099 rows")


# --------------------------------------------------------------------------------------------
# placement
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", GPU_NAMES)
def test_forced_gpu_0_and_namespace_form(name, with_nulls) -> None:
    params = FIRST[name]
    want = with_nulls.select(build(name, params, "cpu").alias("out"))["out"]
    for device in ("gpu", "gpu:0", "GPU:0", " gpu "):
        for form in ("func", "ns"):
            got = with_nulls.select(build(name, params, device, form=form).alias("out"))["out"]
            assert_same_values(got, want, f"{name} {device!r} {form}")


@pytest.mark.parametrize("name", GPU_NAMES)
def test_missing_gpu_ordinal_is_a_compute_error(name, frame) -> None:
    df = frame(1_000)
    first_missing = max(d["index"] for d in threadx.gpu.devices()) + 1
    for ordinal in (99, first_missing):
        for form in ("func", "ns"):
            expr = build(name, FIRST[name], f"gpu:{ordinal}", form=form)  # building is fine
            for lazy in (False, True):
                with pytest.raises(ComputeError) as exc:
                    df.lazy().select(expr).collect() if lazy else df.select(expr)
                msg = str(exc.value)
                assert re.search(rf"\b{ordinal}\b", msg), msg


@pytest.mark.parametrize("n", [1_000, 5_000_000])
@pytest.mark.parametrize("name", NAMES)
def test_auto_placement_equals_cpu(name, n, frame) -> None:
    df = frame(n)
    params = FIRST[name]
    want = df.select(build(name, params, "cpu").alias("out"))["out"]
    for _ in range(3):  # the planner may explore another backend on a later call
        got = df.select(build(name, params, "auto").alias("out"))["out"]
        assert_same_values(got, want, f"{name} auto n={n}")


def test_explain_lists_gpu_candidates() -> None:
    backends = [c.backend for c in threadx.explain("sma", 10_000_000).candidates]
    assert "gpu:0" in backends, backends
    forced = threadx.explain("sma", 10_000_000, device="gpu:0")
    assert forced.backend.startswith("gpu"), forced


# --------------------------------------------------------------------------------------------
# recovery: a failing GPU step computes on the CPU, with one warning
# --------------------------------------------------------------------------------------------

FALLBACK = "falling back to the CPU"


def _fallback_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if FALLBACK in line]


@pytest.mark.parametrize("kind", ["launch", "alloc"])
def test_injected_failure_falls_back_to_cpu(kind, monkeypatch, capfd, frame) -> None:
    df = frame(100_000)
    want = {name: df.select(build(name, FIRST[name], "cpu").alias("o"))["o"] for name in GPU_NAMES}
    capfd.readouterr()
    monkeypatch.setenv("THREADX_GPU_INJECT_FAILURE", kind)
    for _ in range(3):
        for name in GPU_NAMES:
            got = df.select(build(name, FIRST[name], "gpu").alias("o"))["o"]
            assert_same_values(got, want[name], f"{name} injected {kind}")
    lines = _fallback_lines(capfd.readouterr().err)
    # once per process and kind: none here if an earlier test of this process printed it
    assert len(lines) <= 1, lines
    assert all("threadx" in line for line in lines), lines
    monkeypatch.delenv("THREADX_GPU_INJECT_FAILURE")
    for name in GPU_NAMES:  # the GPU works again
        got = df.select(build(name, FIRST[name], "gpu").alias("o"))["o"]
        assert_same_values(got, want[name], f"{name} after injected {kind}")


_CHILD = r"""
import os, sys
sys.path.insert(0, sys.argv[1])  # the tests folder, for helpers
import polars as pl, threadx
from helpers import GPU_NAMES as NAMES, PARAMS, digest, indicator_expr, ohlcv

def run(df, name, device):
    return digest(df.select(indicator_expr(name, PARAMS[name], device=device).alias("o"))["o"])

df = ohlcv(20_000, seed=5)
want = {name: run(df, name, "cpu") for name in NAMES}
for kind in sys.argv[2].split(","):
    os.environ["THREADX_GPU_INJECT_FAILURE"] = kind
    for _ in range(3):
        for name in NAMES:
            assert run(df, name, "gpu") == want[name], (kind, name)
del os.environ["THREADX_GPU_INJECT_FAILURE"]
for name in NAMES:
    assert run(df, name, "gpu") == want[name], ("after", name)
print("child ok")
"""


@pytest.mark.parametrize("kinds", ["launch", "alloc", "launch,alloc"])
def test_injected_failure_warns_once_per_process_and_kind(kinds) -> None:
    env = {k: v for k, v in os.environ.items() if k != "THREADX_GPU_INJECT_FAILURE"}
    proc = subprocess.run(
        [sys.executable, "-c", _CHILD, str(TESTS_DIR), kinds],
        env=env,
        check=False,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0 and "child ok" in proc.stdout, proc.stderr[-3000:]
    lines = _fallback_lines(proc.stderr)
    assert len(lines) == len(kinds.split(",")), proc.stderr[-3000:]
    assert all("threadx" in line for line in lines), lines


def test_a_multi_device_split_over_real_gpus_and_the_cpu_has_the_single_device_bits():
    """One GPU plus the CPU (and every GPU, when there are several): the rows split in the
    stored ratios, the bits of the single-device run, for windowed and recursive indicators."""
    real = [d for d in threadx.gpu.devices() if not d["simulated"]]
    df = ohlcv(3_000_000, seed=17)
    placements = ["all"] + (["gpus"] if len(real) > 1 else [])
    threadx.gpu.profile_auto_balance(sample_size=200_000, runs=1, workload_tag="bits")
    for name, params, cols in [
        ("bollinger", {"period": 20, "std_dev": 2.0}, ("close",)),
        ("ema", {"period": 30}, ("close",)),
        ("macd", {}, ("close",)),
        ("atr", {"period": 14}, ("high", "low", "close")),
        ("stoch", {}, ("high", "low", "close")),
    ]:
        fn = getattr(threadx, name)
        want = df.select(fn(*cols, **params, device="gpu:0")).to_series()
        for where in placements:
            plan = threadx.explain(name, df.height, device=where, workload_tag="bits")
            assert len(plan.split) >= 2, plan
            got = df.select(fn(*cols, **params, device=where, workload_tag="bits")).to_series()
            assert_same_values(got, want, f"{name} on {where}")


@pytest.mark.parametrize("where", ["gpus", "all"])
def test_concurrent_over_groups_on_a_device_set_finish_with_the_cpu_bits(
    where, panel, tmp_path
) -> None:
    """`.over()` runs one device-set call per group, many at once on Polars' pool: with several
    GPUs those calls hold overlapping GPU sets (`gpus`), or a GPU and the CPU (`all`). They must
    all finish (a child process with a timeout turns a deadlock into a failure) with the CPU's
    bits. `gpus` needs two GPUs; `all` runs with one."""
    real = [d for d in threadx.gpu.devices() if not d["simulated"]]
    if where == "gpus" and len(real) < 2:
        pytest.skip(f"needs two GPUs, this machine has {len(real)}")
    path = tmp_path / "panel.parquet"
    panel.write_parquet(path)
    script = f"""
import polars as pl, threadx
df = pl.read_parquet({str(path)!r})
exprs = [
    threadx.ema("close", 30, device={where!r}).over("symbol").alias("ema"),
    threadx.macd("close", device={where!r}).over("symbol").alias("macd"),
    threadx.rsi("close", 14, device={where!r}).over("symbol").alias("rsi"),
    threadx.bollinger("close", 20, device={where!r}).over("symbol").alias("bb"),
]
for _ in range(3):
    got = df.select(exprs)
cpu = df.select([
    threadx.ema("close", 30, device="cpu").over("symbol").alias("ema"),
    threadx.macd("close", device="cpu").over("symbol").alias("macd"),
    threadx.rsi("close", 14, device="cpu").over("symbol").alias("rsi"),
    threadx.bollinger("close", 20, device="cpu").over("symbol").alias("bb"),
])
got.write_parquet({str(path)!r} + ".got")
cpu.write_parquet({str(path)!r} + ".cpu")
print("DONE")
"""
    try:
        proc = subprocess.run(
            [sys.executable, "-c", script], check=False, capture_output=True, text=True, timeout=300
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"concurrent .over() calls on device={where!r} did not finish in 300 s")
    assert proc.returncode == 0 and "DONE" in proc.stdout, proc.stderr[-3000:]
    got = pl.read_parquet(str(path) + ".got")
    cpu = pl.read_parquet(str(path) + ".cpu")
    for col in cpu.columns:
        assert_same_values(got[col], cpu[col], f"{col} over on {where}")
