"""``python -m threadx.demo_gpu_auto``: the auto-profiling system, shown in seven sections.

1. the machine (CPU topology, GPUs or why there are none);
2. a fresh profile in a temporary location (or ``--profile PATH``) and a short autotune;
3. the planner's decision per indicator and size, with its reason;
4. a few calls, and the profile's EWMA entries they move;
5. multi-GPU balance ratios (on simulated GPUs of unequal speed when there is no real GPU);
6. deterministic fusion checked live: the same bits for every thread count, chunking and device
   set (exit status 1 when any differs);
7. charts as PNG files (with matplotlib, ``pip install threadx[plot]``).

The user's own profile is never read or written: ``THREADX_PROFILE`` is pointed at the demo's
file before threadx is imported. ``python -m threadx demo`` is the separate indicator tour.
"""

from __future__ import annotations

import argparse
import copy
import os
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

SIM = "THREADX_SIMULATED_GPUS"
#: The speeds (relative to a nominal device of 100 ns per row) of the simulated GPUs used when no
#: real GPU is usable.
SIM_SPEEDS = "1.0,0.5"

SECTIONS = (
    "The machine",
    "A fresh profile and a short autotune",
    "The planner's decisions",
    "Calls move the profile's EWMA entries",
    "Multi-GPU balance",
    "Deterministic fusion, checked live",
    "Charts",
)

#: Row counts whose plans section 3 shows (and the decision map charts).
DECISION_SIZES = (1_000, 10_000, 100_000, 1_000_000, 10_000_000)

OK, BAD = "✓", "✗"


@dataclass(frozen=True)
class Plan:
    """How big each section's work is (``--quick`` shrinks everything, for tests)."""

    tune_sizes: tuple[int, ...]
    tune_indicators: tuple[str, ...]
    tune_runs: int
    call_rows: tuple[int, ...]
    calls: int
    balance_rows: int
    balance_runs: int
    fusion_rows: int
    fusion_indicators: tuple[str, ...]


FULL = Plan(
    tune_sizes=DECISION_SIZES,
    tune_indicators=("sma", "ema", "bollinger", "rsi", "macd"),
    tune_runs=2,
    call_rows=(10_000, 1_000_000),
    calls=5,
    balance_rows=200_000,
    balance_runs=3,
    fusion_rows=300_000,
    fusion_indicators=("sma", "ema", "bollinger", "rsi", "macd", "atr", "stoch"),
)
QUICK = Plan(
    tune_sizes=(1_000, 100_000),
    tune_indicators=("sma", "bollinger"),
    tune_runs=1,
    call_rows=(10_000,),
    calls=3,
    balance_rows=20_000,
    balance_runs=1,
    fusion_rows=20_000,
    fusion_indicators=("sma", "bollinger", "macd", "stoch"),
)


def heading(i: int) -> None:
    title = f"[{i}/{len(SECTIONS)}] {SECTIONS[i - 1]}"
    print(f"\n{title}\n{'=' * len(title)}", flush=True)


def say(text: str) -> None:
    """A short explanatory sentence (indented, wrapped)."""
    import textwrap

    print(textwrap.fill(text, width=96, initial_indent="  ", subsequent_indent="  "))


def _gpu_line(d: dict[str, Any]) -> str:
    if d.get("simulated"):
        return f"gpu:{d['index']}  {d['name']}  [SIMULATED: a CPU thread paced to that speed]"
    mem = d.get("memory_bytes") or 0
    return f"gpu:{d['index']}  {d['name']} ({d.get('arch')}, {mem / 2**30:.0f} GiB)"


def real_gpus() -> list[dict[str, Any]]:
    import threadx

    return [d for d in threadx.gpu.devices() if not d.get("simulated")]


# ------------------------------------------------------------------------------------------------
# 1. the machine
# ------------------------------------------------------------------------------------------------


def section_machine() -> None:
    import threadx

    heading(1)
    say(
        "threadx plans every call for the machine it runs on: how many CPU workers, and "
        "whether a GPU (or several) should take part. This is what it found."
    )
    cpu = threadx.cpu_info()
    print(f"  threadx   {threadx.__version__}")
    print(f"  CPU       {cpu.model}")
    print(
        f"  cores     {cpu.physical_cores} physical / {cpu.logical_cores} logical, "
        f"hyperthreading {'on' if cpu.hyperthreading else 'off'}; "
        f"planner's worker cap {threadx.optimal_workers()}"
    )
    st = threadx.gpu.status()
    devs = threadx.gpu.devices()
    if devs:
        print(f"  GPUs      {len(devs)} usable (driver {st.get('driver_version')})")
        for d in devs:
            print(f"            {_gpu_line(d)}")
    else:
        print(f"  GPUs      none usable: {st['reason']}")
        print(f"            sections 5 and 6 use simulated GPUs ({SIM}={SIM_SPEEDS})")
    if st.get("nvrtc_version"):
        print(f"  NVRTC     {st['nvrtc_version']} ({st.get('nvrtc_library')})")


# ------------------------------------------------------------------------------------------------
# 2. a fresh profile and a short autotune
# ------------------------------------------------------------------------------------------------


def section_autotune(plan: Plan, profile_path: str, progress: bool):
    import threadx

    heading(2)
    say(
        "Decisions come from measurements, not from a fixed rule: autotune times every "
        "candidate backend (cpu:<workers>, each GPU) at a few sizes and writes the timings to a "
        "profile keyed by this machine's fingerprint. The demo uses its own profile file, so "
        "yours is left untouched."
    )
    threadx.profile.reload()
    where = threadx.profile.path()
    print(f"  profile      {where or 'in memory: ' + str(threadx.profile.memory_only_reason())}")
    if where != profile_path:
        print(f"  (asked for {profile_path})")
    fp = threadx.profile.fingerprint()
    print(f"  fingerprint  {fp['id']} (build {fp['build_hash']}, {fp['cpu_model']})")
    print(
        f"  autotune     {', '.join(plan.tune_indicators)} at "
        f"{', '.join(f'{s:,}' for s in plan.tune_sizes)} rows,\n"
        f"               {plan.tune_runs} run(s) each after a warm-up (each run repeats the call "
        "for at least 20 ms)\n",
        flush=True,
    )
    t0 = time.perf_counter()
    summary = threadx.autotune(
        sizes=list(plan.tune_sizes),
        runs=plan.tune_runs,
        indicators=list(plan.tune_indicators),
        progress=progress,
    )
    print(f"\n  measured in {time.perf_counter() - t0:.1f} s; median ms per call:")
    backends = sorted({b for by in summary.timings_ms.values() for t in by.values() for b in t})
    print(
        f"    {'indicator':<11}{'rows':>11}  " + "".join(f"{b:>10}" for b in backends) + "  fastest"
    )
    for ind, by_size in summary.timings_ms.items():
        for n, times in by_size.items():
            cells = "".join(f"{times[b]:>10.3f}" if b in times else f"{'-':>10}" for b in backends)
            print(f"    {ind:<11}{n:>11,}  {cells}  {summary.best(ind, n)}")
    for ind, changes in summary.crossovers.items():
        for n, old, new in changes:
            print(f"    crossover: {ind} switches from {old} to {new} at {n:,} rows")
    return summary


# ------------------------------------------------------------------------------------------------
# 3. the planner's decisions
# ------------------------------------------------------------------------------------------------


def section_decisions(indicators: Sequence[str]) -> dict[str, dict[int, Any]]:
    import threadx

    heading(3)
    say(
        "threadx.explain(indicator, rows) shows the plan a call would get right now, and why. "
        "Sizes the profile has measured are decided by predicted time (marked *); the others "
        "fall back to conservative defaults until calls or autotune measure them."
    )
    plans: dict[str, dict[int, Any]] = {}
    print(f"    {'indicator':<11}" + "".join(f"{n:>12,}" for n in DECISION_SIZES))
    for ind in indicators:
        plans[ind] = {n: threadx.explain(ind, n) for n in DECISION_SIZES}
        cells = "".join(
            f"{p.backend + ('*' if 'fastest' in p.reason else ' '):>12}"
            for p in plans[ind].values()
        )
        print(f"    {ind:<11}{cells}")
    print("\n  reasons:")
    for ind in indicators:
        for n, p in plans[ind].items():
            print(f"    {ind:<11}{n:>11,}  {p.backend:<7} {p.reason}")
    return plans


# ------------------------------------------------------------------------------------------------
# 4. calls move the EWMA entries
# ------------------------------------------------------------------------------------------------


def section_ewma(plan: Plan) -> None:
    import threadx
    from threadx import _workloads

    heading(4)
    say(
        "Every call is also a measurement: its time per row updates an exponentially weighted "
        "moving average (EWMA) per indicator, size bucket and backend, so the plans follow the "
        "machine as it is today (other load, thermal limits, a new driver) without a re-tune."
    )
    threadx.profile.flush()
    before = copy.deepcopy(threadx.profile.machine()["timings"])
    indicators = plan.tune_indicators[:2]
    for n in plan.call_rows:
        df = _workloads.frame(n)
        for ind in indicators:
            for _ in range(plan.calls):
                df.select(_workloads.expr(ind))
    threadx.profile.flush()
    after = threadx.profile.machine()["timings"]
    say(
        f"{plan.calls} calls each of {', '.join(indicators)} on "
        f"{', '.join(f'{n:,}' for n in plan.call_rows)} rows (device='auto'), then "
        "profile.flush(). The entries that moved (samples, and the EWMA the planner predicts "
        "from):"
    )
    print()
    print(
        f"    {'indicator':<11}{'bucket':>7} {'backend':<8}{'samples':>17}"
        f"{'ewma ns/row':>24}{'best ns/row':>13}"
    )
    moved = 0
    for ind, buckets in after.items():
        for bucket, backends in buckets.items():
            for backend, new in backends.items():
                old = before.get(ind, {}).get(bucket, {}).get(backend)
                if old is not None and old["samples"] == new["samples"]:
                    continue
                moved += 1
                s0 = old["samples"] if old else 0
                e0 = f"{old['ewma_ns_per_row']:.3f}" if old else "new"
                print(
                    f"    {ind:<11}{bucket:>7} {backend:<8}{s0:>8} -> {new['samples']:<6}"
                    f"{e0:>10} -> {new['ewma_ns_per_row']:<10.3f}{new['best_ns_per_row']:>12.3f}"
                )
    if not moved:
        print("    (none moved: the profile is in memory only or persistence is off)")


# ------------------------------------------------------------------------------------------------
# 5. multi-GPU balance
# ------------------------------------------------------------------------------------------------


class SimulatedGpus:
    """Simulated GPUs (``THREADX_SIMULATED_GPUS``) while no real GPU is usable; the variable is
    restored on exit. With real GPUs it changes nothing."""

    def __enter__(self) -> bool:
        self.old = os.environ.get(SIM)
        self.simulated = not real_gpus()
        if self.simulated:
            os.environ[SIM] = SIM_SPEEDS
        return self.simulated

    def __exit__(self, *exc: object) -> None:
        if self.old is None:
            os.environ.pop(SIM, None)
        else:
            os.environ[SIM] = self.old


def _ratios(r: dict[str, float]) -> str:
    return ", ".join(f"{k} {v:6.1%}" for k, v in r.items())


def section_balance(plan: Plan) -> None:
    import threadx
    from threadx import _workloads

    heading(5)
    say(
        "Several devices can share one call: threadx splits the rows in measured proportions "
        "and fuses the parts. gpu.profile_auto_balance times each device alone on the workload "
        "and stores the ratios per workload tag; split calls then use them and refine them."
    )
    with SimulatedGpus() as simulated:
        devs = threadx.gpu.devices()
        if simulated:
            print(
                f"  no real GPU here: using SIMULATED GPUs ({SIM}={SIM_SPEEDS}, speeds relative "
                "to a nominal device of 100 ns per row)"
            )
        for d in devs:
            print(f"    {_gpu_line(d)}")
        if len(devs) >= 2:
            jobs = [("bollinger", "gpus"), ("ema", "all")]
        else:
            jobs = [("bollinger", "all")]
        print(
            f"\n  profile_auto_balance(sample_size={plan.balance_rows:,}, "
            f"runs={plan.balance_runs}, ...):"
        )
        for tag, device in jobs:
            r = threadx.gpu.profile_auto_balance(
                sample_size=plan.balance_rows,
                runs=plan.balance_runs,
                workload_tag=tag,
                devices=device,
            )
            print(f"    tag {tag!r:<12} devices={device!r:<7} {_ratios(r)}")
        print("\n  gpu.balance(), the stored ratios per workload tag:")
        for tag, ratios in threadx.gpu.balance().items():
            print(f"    {tag:<12} {_ratios(ratios)}")
        tag, device = jobs[0]
        n = plan.balance_rows
        df = _workloads.frame(n)
        print(f"\n  threadx.explain({tag!r}, {n:,}, device={device!r}, workload_tag={tag!r}):")
        shown = threadx.explain(tag, n, device=device, workload_tag=tag)
        print("\n".join("    " + line for line in repr(shown).splitlines()))
        t0 = time.perf_counter()
        out = df.select(threadx.bollinger("close", device=device, workload_tag=tag))
        ms = (time.perf_counter() - t0) * 1e3
        print(
            f"\n  the split call: {out.height:,} rows of bollinger on {device!r} in {ms:.1f} ms; "
            f"ratios refined by it: {_ratios(threadx.gpu.balance(tag))}"
        )
    print(f"  ({SIM} restored: {os.environ.get(SIM, 'unset')})")


# ------------------------------------------------------------------------------------------------
# 6. deterministic fusion
# ------------------------------------------------------------------------------------------------


def _fields(s) -> dict[str, Any]:
    import polars as pl

    if s.dtype == pl.Struct:
        return {f: s.struct.field(f) for f in s.struct.fields}
    return {"value": s}


def same_bits(a, b) -> bool:
    """Same dtype, fields, null masks and the same 64 bits in every value of every field."""
    import numpy as np

    if a.dtype != b.dtype or len(a) != len(b):
        return False
    fa, fb = _fields(a), _fields(b)
    if list(fa) != list(fb):
        return False
    for k in fa:
        x, y = fa[k], fb[k]
        if not np.array_equal(x.is_null().to_numpy(), y.is_null().to_numpy()):
            return False
        xb = x.fill_null(0.0).to_numpy().view(np.uint64)
        yb = y.fill_null(0.0).to_numpy().view(np.uint64)
        if not np.array_equal(xb, yb):
            return False
    return True


def _fusion_frame(rows: int):
    import polars as pl

    from threadx import _workloads

    df = _workloads.frame(rows)
    # Some nulls, so the masks are compared too.
    i = pl.int_range(pl.len())
    return df.with_columns(
        pl.when(i % 997 == 13).then(None).otherwise(pl.col("close")).alias("close")
    )


def _call(ind: str, device: str):
    import threadx

    f = getattr(threadx, ind)
    if ind in ("atr", "natr", "stoch"):
        return f("high", "low", "close", device=device).alias("out")
    if ind == "obv":
        return f("close", "volume", device=device).alias("out")
    return f("close", device=device).alias("out")


def section_fusion(plan: Plan) -> bool:
    import polars as pl

    import threadx

    heading(6)
    say(
        "The bits of a result do not depend on how the work was cut: the worker count, the "
        "frame's chunks, or which devices (and in what ratios) computed which rows. Checked "
        "here against 1 worker on one chunk on the CPU, comparing every value's 64 bits "
        "(numpy .view(np.uint64)) and the null masks of every output field."
    )
    cpu = threadx.cpu_info()
    n_threads = max(4, cpu.logical_cores)
    df = _fusion_frame(plan.fusion_rows)
    cuts = [0, 1, plan.fusion_rows // 7, plan.fusion_rows // 3, plan.fusion_rows // 2]
    cuts = sorted(set(cuts)) + [plan.fusion_rows]
    chunked = pl.concat([df[a:b] for a, b in zip(cuts, cuts[1:])], rechunk=False)
    n_chunks = chunked["close"].n_chunks()
    all_ok = True
    with SimulatedGpus() as simulated:
        sim = " (simulated)" if simulated else ""
        variants = [
            ("1 thread", df, 1, "cpu"),
            ("2 threads", df, 2, "cpu"),
            (f"{n_threads} threads", df, n_threads, "cpu"),
            (f"{n_chunks} chunks", chunked, None, "cpu"),
            ("gpus" + sim, df, None, "gpus"),
            ("all" + sim, df, None, "all"),
            (f"all, {n_chunks} chunks", chunked, None, "all"),
        ]
        gpus = ", ".join(f"gpu:{d['index']}" for d in threadx.gpu.devices())
        print(
            f"  {plan.fusion_rows:,} rows with nulls; reference: device='cpu', 1 thread, 1 chunk; "
            f"gpus = {gpus}{sim}; all = gpus + cpu\n"
        )
        widths = [len(v[0]) + 2 for v in variants]
        print(f"    {'indicator':<11}" + "".join(f"{v[0]:>{w}}" for v, w in zip(variants, widths)))
        try:
            for ind in plan.fusion_indicators:
                threadx.set_threads(1)
                want = df.select(_call(ind, "cpu")).to_series()
                cells = []
                for _, frame, threads, device in variants:
                    threadx.set_threads(threads)
                    got = frame.select(_call(ind, device)).to_series()
                    ok = same_bits(got, want)
                    all_ok &= ok
                    cells.append(OK if ok else BAD)
                print(f"    {ind:<11}" + "".join(f"{c:>{w}}" for c, w in zip(cells, widths)))
        finally:
            threadx.set_threads(None)
    if all_ok:
        print(f"\n  {OK} every variant produced identical bits")
    else:
        print(f"\n  {BAD} some variants differ: threadx's determinism guarantee is broken here")
    return all_ok


# ------------------------------------------------------------------------------------------------
# 7. charts
# ------------------------------------------------------------------------------------------------


def _speedup(ind: str, p: Any, timings: dict[str, Any]) -> float:
    """Measured speedup of the chosen backend over one worker in the plan's size bucket, from
    the profile's EWMAs (NaN when either was not measured)."""
    entry = timings.get(ind, {}).get(p.size_bucket, {})
    one, chosen = entry.get("cpu:1"), entry.get(p.backend)
    if not one or not chosen or chosen["ewma_ns_per_row"] <= 0:
        return float("nan")
    return one["ewma_ns_per_row"] / chosen["ewma_ns_per_row"]


def section_charts(out_dir: str | None, plans: dict[str, dict[int, Any]]) -> list[str]:
    import threadx

    heading(7)
    try:
        import matplotlib
    except ImportError:
        print("  charts: pip install threadx[plot] (matplotlib) to get them")
        return []
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    from threadx.demo import ohlcv

    say(
        "A price chart with Bollinger bands and RSI for one symbol (synthetic data), and the "
        "decision map: the backend the planner picks per indicator and size, coloured by the "
        "measured speedup over one worker (grey: not measured yet)."
    )
    if out_dir is None:
        out_dir = tempfile.mkdtemp(prefix="threadx-demo-charts-")
    os.makedirs(out_dir, exist_ok=True)
    paths = []

    df = ohlcv(symbols=("ACME",), rows=250).with_columns(
        threadx.bollinger("close", 20, 2.0).alias("bb"), threadx.rsi("close", 14).alias("rsi")
    )
    df = df.unnest("bb")
    fig, (ax1, ax2) = plt.subplots(
        2, 1, figsize=(10, 6), sharex=True, gridspec_kw={"height_ratios": [3, 1]}
    )
    x = df["date"].to_list()
    ax1.plot(x, df["close"].to_numpy(), color="black", lw=1, label="close")
    ax1.plot(x, df["middle"].to_numpy(), color="tab:blue", lw=1, label="middle (SMA 20)")
    ax1.fill_between(
        x,
        df["lower"].fill_null(np.nan).to_numpy(),
        df["upper"].fill_null(np.nan).to_numpy(),
        color="tab:blue",
        alpha=0.15,
        label="Bollinger bands (20, 2)",
    )
    ax1.set_title("ACME (synthetic): Bollinger bands and RSI computed by threadx")
    ax1.legend(loc="upper left")
    ax2.plot(x, df["rsi"].fill_null(np.nan).to_numpy(), color="tab:purple", lw=1)
    ax2.axhline(70, color="grey", ls="--", lw=0.8)
    ax2.axhline(30, color="grey", ls="--", lw=0.8)
    ax2.set_ylim(0, 100)
    ax2.set_ylabel("RSI 14")
    fig.tight_layout()
    price = os.path.join(out_dir, "price_bollinger_rsi.png")
    fig.savefig(price, dpi=100)
    plt.close(fig)
    paths.append(price)

    timings = threadx.profile.machine()["timings"]
    inds = list(plans)
    grid = np.array([[_speedup(i, plans[i][n], timings) for n in DECISION_SIZES] for i in inds])
    fig, ax = plt.subplots(figsize=(10, 1.2 + 0.6 * len(inds)))
    cmap = matplotlib.colormaps["viridis"].copy()
    cmap.set_bad("lightgrey")
    finite = grid[np.isfinite(grid)]
    hi = max(1.5, float(finite.max())) if finite.size else 2.0
    im = ax.imshow(np.ma.masked_invalid(grid), cmap=cmap, vmin=0.5, vmax=hi, aspect="auto")
    for r, ind in enumerate(inds):
        for c, n in enumerate(DECISION_SIZES):
            s = grid[r, c]
            label = plans[ind][n].backend + (f"\n{s:.2f}x" if np.isfinite(s) else "")
            ax.text(c, r, label, ha="center", va="center", fontsize=8)
    ax.set_xticks(range(len(DECISION_SIZES)), [f"{n:,}" for n in DECISION_SIZES])
    ax.set_yticks(range(len(inds)), inds)
    ax.set_xlabel("rows")
    ax.set_title("threadx decision map: chosen backend, measured speedup vs one worker")
    fig.colorbar(im, ax=ax, label="speedup vs cpu:1")
    fig.tight_layout()
    decision = os.path.join(out_dir, "decision_map.png")
    fig.savefig(decision, dpi=100)
    plt.close(fig)
    paths.append(decision)
    print(f"  charts in {out_dir}:")
    for p in paths:
        print(f"    {p}")
    return paths


# ------------------------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m threadx.demo_gpu_auto",
        description="threadx's auto-profiling system, shown: measured decisions, multi-GPU "
        "balance and bit-identical fusion",
    )
    parser.add_argument(
        "--profile", help="profile file to use (default: a new temporary file; yours is untouched)"
    )
    parser.add_argument("--out", help="directory for the charts (default: a new temporary one)")
    parser.add_argument("--quick", action="store_true", help="even smaller workloads (tests)")
    parser.add_argument("--no-progress", action="store_true", help="no autotune progress bar")
    args = parser.parse_args(argv)

    profile_path = os.path.abspath(
        args.profile
        or os.path.join(tempfile.mkdtemp(prefix="threadx-demo-profile-"), "profile.json")
    )
    # Before threadx is imported: the user's own profile is never even read.
    os.environ["THREADX_PROFILE"] = profile_path
    plan = QUICK if args.quick else FULL
    t0 = time.perf_counter()
    import threadx

    print(
        f"threadx {threadx.__version__}: the auto-profiling system, shown"
        f"{' (--quick)' if args.quick else ''}"
    )
    section_machine()
    section_autotune(plan, profile_path, progress=not args.no_progress)
    plans = section_decisions(plan.tune_indicators)
    section_ewma(plan)
    section_balance(plan)
    fused = section_fusion(plan)
    section_charts(args.out, plans)
    threadx.profile.flush()
    print(f"\ndone in {time.perf_counter() - t0:.1f} s; profile: {threadx.profile.path()}")
    return 0 if fused else 1


if __name__ == "__main__":
    sys.exit(main())
