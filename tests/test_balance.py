"""Multi-device auto-balance and deterministic fusion, on simulated GPUs (any machine).

``THREADX_SIMULATED_GPUS="1.0,0.5"`` adds one simulated GPU per listed speed (relative to one CPU
thread); it is re-read on every call, so the tests set it with ``monkeypatch`` and change it to
slow a device down. Covered: ``threadx.gpu.profile_auto_balance`` finds ratios close to the
simulated speeds and stores them (in memory, in the profile file, under each workload tag);
calls and plans split rows in the stored ratios (the tag's, else the indicator's, else
``default``'s); every multi-device call refines the ratios toward the measured throughputs; the
fused output of any device set with any ratios is bit-identical to ``device="cpu"``; and the
errors (no GPU, bad tags, bad profiling arguments).

Every test profiles into its own empty file (the autouse ``fresh`` fixture), so ratios stored by
one test never steer another. The tests name the simulated GPUs ``gpu:0``, ``gpu:1``, ...: they
come after the real GPUs, so the module is skipped where a real GPU is usable (``tests/test_gpu.py``
covers real devices).

The two profiling-accuracy tests time devices one after another. A simulated GPU lasts a nominal
100 ns per row over its speed and mostly sleeps, so other load on the machine barely moves the
measured ratios.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import threadx
from helpers import (
    CPU_ONLY_NAMES,
    GPU_NAMES,
    NS_INPUTS,
    PARAMS,
    RECEIVER,
    assert_bits_equal,
    indicator_expr,
    nan_at,
    null_where,
    ohlcv,
    profile_at,
    run,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from polars.exceptions import ComputeError
from threadx import gpu

SIM = "THREADX_SIMULATED_GPUS"

if os.environ.get(SIM) is None and gpu.is_available():
    pytest.skip(
        "a real GPU is usable: these tests number the simulated GPUs from gpu:0",
        allow_module_level=True,
    )


# --------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def fresh(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """No simulated GPUs, and an empty profile file of the test's own (the suite's profile is
    restored afterwards)."""
    monkeypatch.delenv(SIM, raising=False)
    with profile_at(tmp_path / "profile.json") as path:
        yield path


def simulate(monkeypatch: pytest.MonkeyPatch, speeds: list[float]) -> list[str]:
    """Simulated GPUs at `speeds`; returns their labels (``gpu:0``, ...)."""
    monkeypatch.setenv(SIM, ",".join(str(s) for s in speeds))
    devs = gpu.devices()
    assert [(d["index"], d["uuid"], d.get("simulated")) for d in devs] == [
        (i, f"sim-{i}", True) for i in range(len(speeds))
    ]
    return [f"gpu:{i}" for i in range(len(speeds))]


def profile_key(label: str) -> str:
    """A member's name in the profile: ``cpu`` or ``gpu:sim-<slot>``."""
    return label if label == "cpu" else f"gpu:sim-{label.split(':')[1]}"


def store_ratios(tag: str, ratios: dict[str, float]) -> None:
    """Stores exact `ratios` (labels -> share) under `tag` through the hook that
    ``profile_auto_balance`` itself uses (a measurement cannot give zero or arbitrary shares)."""
    threadx._internal.balance_set(tag, json.dumps({profile_key(k): v for k, v in ratios.items()}))
    assert gpu.balance(tag) == ratios


def set_members(device: str, n_gpus: int) -> list[str]:
    """The members of a device set string, in order."""
    gpus = [f"gpu:{i}" for i in range(n_gpus)]
    if device == "gpus":
        return gpus
    if device == "all":
        return [*gpus, "cpu"]
    return [f"gpu:{i}" for i in device.split(":", 1)[1].split(",")]


def speed_shares(speeds: list[float]) -> list[float]:
    return [s / sum(speeds) for s in speeds]


def assert_measured(got: dict[str, float], want: dict[str, float], runs: list) -> None:
    """Each measured share is nearer its device's true share than to an equal split, by at least
    half the gap. The timing of a call includes Polars' own work around the kernels, which a
    simulated GPU does not slow down, so measured shares lean toward equal (0.24 for a true 0.2
    on a loaded CI machine); a profiler that ignored the devices' speeds would give equal shares
    and fail here."""
    equal = 1.0 / len(want)
    for label, share in want.items():
        assert abs(got[label] - share) < abs(equal - share) / 2, (label, got, runs)


def split_of(plan: threadx.Explanation) -> dict[str, float]:
    return {m["device"]: m["share"] for m in plan.split}


def frame(n: int, seed: int, null_rate: float = 0.05, nan_row: int | None = None) -> pl.DataFrame:
    """OHLCV rows with nulls in close, high and volume (and a NaN close at `nan_row`)."""
    rng = np.random.default_rng(seed)
    df = ohlcv(n, seed)
    for col in ("close", "high", "volume"):
        df = null_where(df, col, rng.random(n) < null_rate)
    return df if nan_row is None else nan_at(df, "close", nan_row)


def call(name: str, form: str = "function", **kw) -> pl.Expr:
    """`name` with the helpers' parameters, as a function or as a namespace method."""
    if form == "function":
        return indicator_expr(name, PARAMS[name], **kw)
    method = getattr(pl.col(RECEIVER[name]).threadx, name)
    return method(**NS_INPUTS[name], **PARAMS[name], **kw)


def assert_like_cpu(
    df: pl.DataFrame, name: str, device: str, tag: str | None, what: str, form: str = "function"
) -> None:
    """`name` on `df` with `device` (and `tag`) has the bits of ``device="cpu"``."""
    want = run(df, call(name, device="cpu"))
    got = run(df, call(name, form, device=device, workload_tag=tag))
    assert_bits_equal(got, want, f"{what} {form} {name} device={device} tag={tag}")


FORMS = ["function", "namespace"]


def name_form_params(names: list[str] = GPU_NAMES) -> list:
    return [pytest.param(name, form) for name in names for form in FORMS]


# --------------------------------------------------------------------------------------------
# 1, 2: profiling finds the speeds and stores them
# --------------------------------------------------------------------------------------------


def test_simulated_gpus_are_listed_and_reread_on_every_call(monkeypatch):
    assert gpu.devices() == [] and gpu.is_available() is False
    simulate(monkeypatch, [1.0, 0.5])
    assert gpu.is_available() is True
    assert [d["name"] for d in gpu.devices()] == [
        "simulated GPU (speed 1)",
        "simulated GPU (speed 0.5)",
    ]
    simulate(monkeypatch, [0.25, 1.0, 1.0])
    monkeypatch.delenv(SIM)
    assert gpu.devices() == [] and gpu.is_available() is False


@pytest.mark.parametrize("speeds", [[1.0, 0.5], [1.0, 1.0, 0.5]], ids=str)
def test_profiling_finds_ratios_close_to_the_speeds(monkeypatch, speeds):
    labels = simulate(monkeypatch, speeds)
    runs = []
    for _ in range(3):  # the median of three: a cold process now and then times one run slow
        got = gpu.profile_auto_balance(
            sample_size=300_000, runs=5, workload_tag="p", devices="gpus"
        )
        assert list(got) == labels
        assert sum(got.values()) == pytest.approx(1.0, abs=1e-12)
        assert gpu.balance("p") == got
        runs.append(got)
    median = {label: float(np.median([r[label] for r in runs])) for label in labels}
    assert_measured(median, dict(zip(labels, speed_shares(speeds))), runs)


def test_profiling_a_device_list_measures_those_devices(monkeypatch):
    simulate(monkeypatch, [1.0, 0.25, 1.0])
    runs = []
    # The median of three, as above: one run timed on a busy core is slow.
    for _ in range(3):
        got = gpu.profile_auto_balance(
            sample_size=200_000, runs=3, workload_tag="pair", devices=["GPU:1", " gpu:0 "]
        )
        assert list(got) == ["gpu:1", "gpu:0"]
        runs.append(got)
    median = {k: float(np.median([r[k] for r in runs])) for k in ("gpu:1", "gpu:0")}
    assert_measured(median, {"gpu:1": 0.2, "gpu:0": 0.8}, runs)
    every = gpu.profile_auto_balance(sample_size=20_000, runs=1, workload_tag="every")
    assert list(every) == ["gpu:0", "gpu:1", "gpu:2", "cpu"]
    assert sum(every.values()) == pytest.approx(1.0, abs=1e-12)
    assert all(0.0 < r < 1.0 for r in every.values()), every


def test_ratios_are_stored_in_memory_and_in_the_profile_file(monkeypatch, fresh):
    simulate(monkeypatch, [1.0, 0.5])
    tagged = {
        tag: gpu.profile_auto_balance(sample_size=20_000, runs=1, workload_tag=tag, devices=dev)
        for tag, dev in [("alpha", "gpus"), ("ema", "all"), ("default", ["gpu:1", "cpu"])]
    }
    assert gpu.balance() == tagged
    for tag, ratios in tagged.items():
        assert gpu.balance(tag) == ratios
        assert gpu.balance(f"  {tag} ") == ratios
    assert gpu.balance("never-profiled") == {}
    on_disk = {tag: {profile_key(k): v for k, v in r.items()} for tag, r in tagged.items()}
    assert threadx.profile.flush() is True
    assert threadx.profile.path() == str(fresh)
    entry = json.loads(fresh.read_text())["machines"][threadx.profile.fingerprint()["id"]]
    assert entry["balance"] == on_disk
    assert threadx.profile.machine()["balance"] == on_disk
    # Re-profiling a tag replaces its ratios (no stale members); a reload reads them back.
    again = gpu.profile_auto_balance(sample_size=20_000, runs=1, workload_tag="ema", devices="gpus")
    assert list(again) == ["gpu:0", "gpu:1"] and gpu.balance("ema") == again
    threadx.profile.reload()
    assert gpu.balance() == {**tagged, "ema": again}


# --------------------------------------------------------------------------------------------
# 3: plans and calls use the stored ratios
# --------------------------------------------------------------------------------------------


def test_explain_with_a_workload_tag_uses_that_tags_ratios(monkeypatch):
    simulate(monkeypatch, [1.0, 0.5])
    ratios = {"gpu:0": 0.9, "gpu:1": 0.1}
    store_ratios("tag-a", ratios)
    plan = threadx.explain("bollinger", 100_000, device="gpus", workload_tag="tag-a")
    assert split_of(plan) == pytest.approx(ratios, abs=1e-12)
    assert "stored balance ratios" in plan.reason


def test_untagged_plans_use_the_indicator_tag_else_default(monkeypatch):
    labels = simulate(monkeypatch, [1.0, 0.5])
    plan = threadx.explain("sma", 100_000, device="gpus")
    assert plan.backend == "gpus"
    assert split_of(plan) == {"gpu:0": 0.5, "gpu:1": 0.5}
    assert "equal shares" in plan.reason
    assert [m["key"] for m in plan.split] == ["gpu:sim-0", "gpu:sim-1"]

    default = gpu.profile_auto_balance(sample_size=20_000, runs=1, devices="gpus")
    assert gpu.balance("default") == default
    for name in ("sma", "ema", "obv"):
        plan = threadx.explain(name, 100_000, device="gpus")
        assert split_of(plan) == pytest.approx(default, abs=1e-12), name
        assert "stored balance ratios" in plan.reason

    own = {"gpu:0": 0.3, "gpu:1": 0.7}
    store_ratios("sma", own)
    plan = threadx.explain("sma", 100_000, device="gpus")
    assert split_of(plan) == pytest.approx(own, abs=1e-12)
    assert "stored balance ratios" in plan.reason
    assert split_of(threadx.explain("ema", 100_000, device="gpus")) == pytest.approx(default)

    # A set in another order and one with the CPU: members in the set's order; ratios that do not
    # cover every member are not used.
    plan = threadx.explain("sma", 100_000, device="gpu:1,0")
    assert plan.backend == "gpu:1,0"
    assert [m["device"] for m in plan.split] == ["gpu:1", "gpu:0"]
    assert split_of(plan) == pytest.approx(own, abs=1e-12)
    plan = threadx.explain("sma", 100_000, device="all")
    assert plan.backend == "all" and [m["device"] for m in plan.split] == [*labels, "cpu"]
    assert "stored balance ratios" not in plan.reason


@pytest.mark.parametrize(("name", "form"), name_form_params(GPU_NAMES))
def test_the_workload_tag_reaches_the_call(monkeypatch, name, form):
    """A multi-device call refines the ratios of its own tag (``workload_tag=``, or the
    indicator's name), and only those: the tag got through to the plugin."""
    simulate(monkeypatch, [1.0, 0.5])
    df = frame(1 << 16, seed=9, null_rate=0.0)  # refinement needs >= 2^16 rows
    run(df, call(name, form, device="gpus", workload_tag=f" job-{name} "))
    assert set(gpu.balance()) == {f"job-{name}"}
    ratios = gpu.balance(f"job-{name}")
    assert list(ratios) == ["gpu:0", "gpu:1"] and sum(ratios.values()) == pytest.approx(1.0)
    run(df, call(name, form, device="gpu:1,0"))
    assert set(gpu.balance()) == {f"job-{name}", name}


CALLS_CHILD = """
    import json
    import polars as pl, threadx

    for tag, first in [("fast-first", 0.8), ("default", 0.15), ("bollinger", 0.6)]:
        ratios = {"gpu:sim-0": first, "gpu:sim-1": 1.0 - first}
        threadx._internal.balance_set(tag, json.dumps(ratios))
    df = pl.DataFrame({"close": [100.0 + (i % 7) for i in range(100_000)]})
    for name, tag in [("bollinger", "fast-first"), ("bollinger", None), ("sma", None)]:
        df.select(getattr(threadx, name)("close", device="gpus", workload_tag=tag))
"""


def test_calls_split_rows_in_the_stored_ratios(tmp_path):
    """A real call's plan (``THREADX_LOG`` lines, read once per process: a child process):
    tagged call -> the tag's ratios; untagged -> the indicator's, else ``default``'s."""
    env = {
        **os.environ,
        "THREADX_PROFILE": str(tmp_path / "child.json"),
        "THREADX_LOG": "1",
        SIM: "1.0,1.0",
    }
    out = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(CALLS_CHILD)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    lines = [ln for ln in out.stderr.splitlines() if "plan=gpus" in ln]
    assert len(lines) == 3, out.stderr
    # fast-first's ratios, bollinger's (the indicator's tag), default's (sma has none)
    for line, name, first in zip(lines, ["bollinger", "bollinger", "sma"], [80.0, 60.0, 15.0]):
        assert line.startswith(f"threadx: {name} rows=100000 plan=gpus"), line
        assert f"split gpu:0 {first:.1f}%, gpu:1 {100 - first:.1f}% (stored balance ratios)" in line


# --------------------------------------------------------------------------------------------
# 4: refinement
# --------------------------------------------------------------------------------------------


def test_refinement_follows_a_device_that_slows_down(monkeypatch):
    simulate(monkeypatch, [1.0, 1.0])
    tag = "slowing"
    start = {"gpu:0": 0.5, "gpu:1": 0.5}  # what profiling finds at equal speeds
    store_ratios(tag, start)
    simulate(monkeypatch, [1.0, 0.25])  # gpu:1 now takes 4x as long: its fair share is 0.2
    df = ohlcv(400_000, seed=3)
    expr = threadx.bollinger("close", device="gpus", workload_tag=tag)
    slow = [start["gpu:1"]]
    for _ in range(10):
        df.select(expr)
        ratios = gpu.balance(tag)
        assert set(ratios) == {"gpu:0", "gpu:1"}
        assert sum(ratios.values()) == pytest.approx(1.0, abs=1e-12)
        slow.append(ratios["gpu:1"])
    # One call moves the ratio a quarter of the way (alpha 0.25) toward the measured share.
    assert slow[1] == pytest.approx(slow[0] + 0.25 * (0.2 - slow[0]), abs=0.04), slow
    # Ten calls: 0.2 + 0.75**10 * (start - 0.2), about 0.22 from 0.5.
    assert slow[-1] < 0.3, slow
    assert abs(slow[-1] - 0.2) < 0.3 * abs(slow[0] - 0.2), slow
    assert gpu.balance(tag)["gpu:0"] > start["gpu:0"] + 0.15
    # Only the call's tag is refined.
    assert set(gpu.balance()) == {tag}


def test_refinement_keeps_other_members_and_skips_small_calls(monkeypatch):
    """A call on a subset of a tag's devices moves only their ratios and keeps their total, so
    the tag still sums to 1; calls below 2**16 rows refine nothing; an untagged call that fell
    back to ``default``'s ratios refines ``default``, not a new tag."""
    simulate(monkeypatch, [1.0, 0.25])
    store_ratios("mixed", {"gpu:0": 0.3, "gpu:1": 0.3, "cpu": 0.4})
    # 2^20 rows: each member's share takes milliseconds, so its measured throughput reflects its
    # speed rather than the fixed cost of starting a member (at 2^17 rows that cost once made the
    # two simulated GPUs look equally fast).
    df = ohlcv(1 << 20, seed=5)
    df.select(threadx.sma("close", device="gpus", workload_tag="mixed"))
    after = gpu.balance("mixed")
    assert after["cpu"] == pytest.approx(0.4, abs=1e-12)
    assert after["gpu:0"] + after["gpu:1"] == pytest.approx(0.6, abs=1e-12)
    assert after["gpu:1"] < 0.3 - 0.02, after  # the slower device lost rows
    before = gpu.balance("mixed")
    ohlcv_small = ohlcv((1 << 16) - 1, seed=6)
    ohlcv_small.select(threadx.sma("close", device="gpus", workload_tag="mixed"))
    assert gpu.balance("mixed") == before
    store_ratios("default", {"gpu:0": 0.5, "gpu:1": 0.5})
    df.select(threadx.ema("close", device="gpus"))
    assert "ema" not in gpu.balance()
    assert gpu.balance("default")["gpu:1"] < 0.5 - 0.02


@pytest.mark.parametrize("form", ["by", "sweep"])
def test_batches_go_whole_to_members_and_refine_the_balance(monkeypatch, form):
    """A ``by=`` or sweep batch on a set gives each member whole series in its share, with the
    CPU's bits, and the members' measured throughputs refine the tag's ratios as a split call's
    do (a batch of 2,048-row series split row by row would refine nothing: each series is below
    the refinement's 2**16 rows)."""
    simulate(monkeypatch, [1.0, 0.25])
    tag = f"batch-{form}"
    store_ratios(tag, {"gpu:0": 0.5, "gpu:1": 0.5})
    symbols, rows = 512, 2048
    df = ohlcv(symbols * rows, seed=9).with_columns(
        symbol=pl.Series(np.repeat(np.arange(symbols), rows))
    )
    if form == "by":
        expr = threadx.sma("close", 20, by="symbol", device="gpus", workload_tag=tag)
        want = df.select(threadx.sma("close", 20, by="symbol", device="cpu"))
    else:
        df = df.head(1 << 16)
        periods = list(range(5, 85, 5))
        expr = threadx.sma("close", periods, device="gpus", workload_tag=tag)
        want = df.select(threadx.sma("close", periods, device="cpu"))
    slow = [0.5]
    for _ in range(4):
        got = df.select(expr)
        assert_bits_equal(got.to_series(), want.to_series(), f"{form} on a set")
        slow.append(gpu.balance(tag)["gpu:1"])
    # gpu:1 takes 4x as long per row: its fair share is 0.2, approached by a quarter per call.
    assert slow[1] == pytest.approx(0.5 + 0.25 * (0.2 - 0.5), abs=0.04), slow
    assert slow[-1] < 0.4, slow


# --------------------------------------------------------------------------------------------
# 5: fusion is bit-identical
# --------------------------------------------------------------------------------------------

FUSION_DEVICES = {"gpus": "gpus", "all": "all", "gpu:1,0": ["gpu:1", "gpu:0"]}


@pytest.fixture(scope="module")
def fusion_data() -> pl.DataFrame:
    return frame(9_000, seed=77, null_rate=0.05, nan_row=6_000)


@pytest.mark.parametrize("device", list(FUSION_DEVICES))
@pytest.mark.parametrize("name", GPU_NAMES)
def test_fusion_is_bit_identical_to_the_cpu(monkeypatch, fusion_data, name, device):
    simulate(monkeypatch, [1.0, 0.5])
    tag = f"fuse-{name}"
    ratios = gpu.profile_auto_balance(
        sample_size=1_000, runs=1, workload_tag=tag, devices=FUSION_DEVICES[device]
    )
    assert list(ratios) == set_members(device, 2)
    assert_like_cpu(fusion_data, name, device, tag, "profiled ratios")
    assert_like_cpu(fusion_data, name, device, tag, "profiled ratios", form="namespace")
    # Untagged: the indicator's tag is unset, so measured throughputs or equal shares.
    assert_like_cpu(fusion_data, name, device, None, "untagged")


@st.composite
def balance_cases(draw):
    speeds = draw(st.lists(st.sampled_from([0.25, 0.5, 1.0]), min_size=1, max_size=3))
    k = len(speeds)
    kind = draw(st.sampled_from(["gpus", "all", "list"]))
    if kind == "list":
        ids = draw(st.permutations(range(k)))[: draw(st.integers(1, k))]
        device = "gpu:" + ",".join(str(i) for i in ids)
    else:
        device = kind
    members = set_members(device, k)
    shares = draw(
        st.lists(
            st.one_of(st.just(0.0), st.floats(1e-3, 1.0)),
            min_size=len(members),
            max_size=len(members),
        )
    )
    near_block = st.builds(lambda b, d: b * 1024 + d, st.integers(1, 16), st.integers(-2, 2))
    n = draw(st.one_of(st.integers(0, 20_000), near_block, st.integers(0, 40)))
    tag = draw(st.one_of(st.none(), st.text("abcxyz-_.", min_size=1, max_size=6)))
    return {
        "speeds": speeds,
        "device": device,
        "ratios": dict(zip(members, shares)),
        "n": n,
        "seed": draw(st.integers(0, 2**32 - 1)),
        "null_rate": draw(st.sampled_from([0.0, 0.01, 0.3])),
        "tag": tag,
    }


@settings(
    max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(case=balance_cases())
def test_fusion_is_bit_identical_for_any_set_ratios_and_length(monkeypatch, case):
    simulate(monkeypatch, case["speeds"])
    threadx.profile.reset()  # no ratios left (or refined) by the previous example
    # Tagged: the tag's ratios; untagged: the "default" fallback (the indicators' tags are unset).
    store_ratios(case["tag"] or "default", case["ratios"])
    n = case["n"]
    df = frame(n, case["seed"], case["null_rate"], nan_row=n // 2 if n > 100 else None)
    for name in GPU_NAMES:
        assert_like_cpu(df, name, case["device"], case["tag"], str(case))


@pytest.mark.parametrize(
    "device",
    [
        "gpus",
        "all",
        "gpu:1,0",
    ],
)
def test_fusion_inside_polars_parallel_contexts(monkeypatch, device):
    simulate(monkeypatch, [1.0, 0.5])
    df = frame(6_000, seed=5).with_columns(sym=pl.int_range(pl.len()) % 3)
    exprs = {
        name: indicator_expr(name, PARAMS[name], device=device).over("sym")
        for name in ("sma", "macd", "atr")
    }
    want = {
        name: indicator_expr(name, PARAMS[name], device="cpu").over("sym")
        for name in ("sma", "macd", "atr")
    }
    got = df.select(**exprs)  # several expressions in one select, each over groups
    ref = df.select(**want)
    for name in exprs:
        assert_bits_equal(got[name], ref[name], f"{name} {device} over + multi-select")


# --------------------------------------------------------------------------------------------
# 6: errors
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("device", ["gpus", "all", "gpu:0,1", "GPU:1,0"])
@pytest.mark.parametrize("name", GPU_NAMES)
def test_device_sets_without_a_gpu_raise(name, device):
    df = ohlcv(50, seed=1)
    expr = indicator_expr(name, PARAMS[name], device=device)
    # A CPU-only indicator is refused before any GPU is looked for, with its reason.
    why = "no usable GPU" if name in GPU_NAMES else "cannot run on a GPU"
    with pytest.raises(ComputeError, match=rf"threadx\.{name}\b.*{why}"):
        run(df, expr)


@pytest.mark.parametrize("device", ["gpus", "all", "gpu:0,1", "GPU:1,0"])
@pytest.mark.parametrize("name", CPU_ONLY_NAMES)
def test_device_sets_with_a_cpu_only_indicator_raise(monkeypatch, name, device):
    """A CPU-only indicator on a device set is an error quoting its reason, GPUs or not."""
    df = ohlcv(50, seed=1)
    expr = indicator_expr(name, PARAMS[name], device=device)
    with pytest.raises(ComputeError, match=rf"threadx\.{name}\b.*cannot run on a GPU"):
        run(df, expr)
    simulate(monkeypatch, [1.0, 0.5])
    with pytest.raises(ComputeError, match=rf"threadx\.{name}\b.*cannot run on a GPU"):
        run(df, expr)


def test_a_set_naming_a_missing_gpu_raises(monkeypatch):
    simulate(monkeypatch, [1.0])
    with pytest.raises(ComputeError, match=r"threadx\.ema\b.*no usable GPU 1"):
        run(ohlcv(50, seed=1), threadx.ema("close", 10, device="gpu:0,1"))


@pytest.mark.parametrize(("name", "form"), name_form_params())
def test_bad_workload_tags_raise(name, form):
    for tag in ["", "   ", 3, b"tag", ["t"]]:
        with pytest.raises(ValueError, match=rf"threadx\.{name}: workload_tag"):
            call(name, form, device="gpus", workload_tag=tag)
    if form == "function":
        with pytest.raises(ValueError, match=rf"threadx\.{name}: workload_tag"):
            threadx.explain(name, 10, device="cpu", workload_tag="")


def test_balance_rejects_a_non_string_tag():
    with pytest.raises(TypeError, match="workload_tag"):
        gpu.balance(3)  # type: ignore[arg-type]
    assert gpu.balance() == {} and gpu.balance("x") == {}


@pytest.mark.parametrize(
    ("kwargs", "pattern"),
    [
        ({"sample_size": 999}, "sample_size"),
        ({"sample_size": 1000.0}, "sample_size"),
        ({"sample_size": True}, "sample_size"),
        ({"runs": 0}, "runs"),
        ({"runs": 1.5}, "runs"),
        ({"workload_tag": ""}, "workload_tag"),
        ({"workload_tag": "  "}, "workload_tag"),
        ({"workload_tag": None}, "workload_tag"),
        ({"devices": "gpu"}, "devices must be"),
        ({"devices": ["gpu:0", 1]}, "devices must be"),
        ({"devices": ["gpu:0", "gpu:5"]}, r"unknown devices \['gpu:5'\]"),
        ({"devices": ["gpu:0", "tpu"]}, r"unknown devices \['tpu'\]"),
    ],
    ids=repr,
)
def test_profile_auto_balance_rejects_bad_arguments(monkeypatch, kwargs, pattern):
    simulate(monkeypatch, [1.0, 0.5])
    with pytest.raises(ValueError, match=rf"profile_auto_balance: .*{pattern}"):
        gpu.profile_auto_balance(**{"sample_size": 1_000, "runs": 1, **kwargs})
    assert gpu.balance() == {}


@pytest.mark.parametrize(
    ("speeds", "devices"),
    [
        ([1.0, 0.5], ["gpu:1"]),
        ([1.0, 0.5], ["cpu"]),
        ([1.0], "gpus"),
        ([], "all"),
        ([], "gpus"),
        ([1.0, 0.5], ["cpu", "cpu"]),
        ([1.0, 0.5], ["gpu:0", "GPU:0"]),
    ],
    ids=str,
)
def test_profile_auto_balance_needs_two_devices(monkeypatch, speeds, devices):
    if speeds:
        simulate(monkeypatch, speeds)
    with pytest.raises(ValueError, match="at least two devices"):
        gpu.profile_auto_balance(sample_size=1_000, runs=1, devices=devices)
    assert gpu.balance() == {}


def test_autotune_profiles_simulated_gpus_which_have_no_link(monkeypatch):
    """autotune times every (simulated) GPU like the CPU but measures no link for them, and
    measure_link refuses a simulated device instead of starting CUDA on it."""
    simulate(monkeypatch, [1.0, 0.5])
    summary = threadx.autotune(sizes=[3_000], runs=1, indicators=["sma"], progress=False)
    assert {"gpu:0", "gpu:1"} <= set(summary.timings_ms["sma"][3_000])
    assert summary.links == {}
    with pytest.raises(RuntimeError, match="real"):
        gpu.measure_link(0)
