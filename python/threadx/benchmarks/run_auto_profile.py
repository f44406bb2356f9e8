"""How close ``device="auto"`` comes to the best forced backend, per indicator and size.

    python -m threadx.benchmarks.run_auto_profile --sizes 1000 10000 100000 --runs 5

For every indicator (``--indicators``; default: sma ema rsi bollinger macd atr stoch) and every
size (``--sizes``, rows of deterministic OHLCV data, ``threadx._workloads.frame``), it times one
``DataFrame.select`` of the indicator at its default parameters with:

- ``auto``: ``device="auto"``, what the planner picks from the profile (``threadx.explain``
  tells the pick, recorded before every timed auto run);
- ``cpu:<w>``: each CPU worker count the planner considers for that size
  (``threadx.explain(name, rows, device="cpu").candidates``), forced with
  ``threadx.set_threads(w)`` on ``device="cpu"`` (the previous setting is restored after each
  call);
- ``gpu:<i>``: each GPU (``threadx.gpu.devices()``) with ``device="gpu:<i>"``, for indicators
  with a GPU kernel; simulated GPUs (``THREADX_SIMULATED_GPUS``) are labelled
  ``gpu:<i> (simulated)``; ``all`` (``device="all"``) where auto considers a CPU+GPU split;
- ``talib``: TA-Lib's twin on NumPy views of the same columns (extracting them is not timed);
  left out, with a note, when TA-Lib is not installed;
- ``polars``: Polars' native equivalent where there is one (sma: ``rolling_mean``, rolling_std:
  ``rolling_std(ddof=...)``, ema: ``ewm_mean(span=n, adjust=False)``, labelled "polars
  (native, different seeding)": it is not seeded with an SMA as TA-Lib's EMA is).

Timing: one warm-up run, then ``--runs`` runs; each run times every backend once (in an order
rotated from run to run) before the next run starts, so machine noise hits them alike. Reported:
the best time and the spread (max - min over the runs).

The printed table (one row per indicator and size) has the rows, auto's best time and spread,
the backend auto picked, every forced backend's best time, the best forced backend, the headline
``auto/best`` (auto's time over the fastest forced backend: the profiling system exists to make
it close to 1.0; below 1.0 is noise), TA-Lib's and Polars' times and auto's speedup over them
(their time / auto's: above 1 means threadx is faster).

Outputs, in ``--out DIR`` (default: a new ``threadx_auto_profile_<timestamp>/`` under the current
directory), whose paths are printed at the end:

- ``results.csv``: one row per indicator x size x backend (``indicator, rows, backend, label,
  kind, best_s, spread_s, median_s, ns_per_row, runs``, and for ``auto`` the ``pick``);
- ``summary.csv``: one row per indicator x size (``auto_s, auto_spread_s, auto_backend,
  best_forced_backend, best_forced_s, auto_over_best_forced, talib_s, polars_s, polars_label,
  speedup_vs_talib, speedup_vs_polars``, and one ``<backend>_s`` column per forced backend);
- ``results.json``: the same two tables plus the machine, versions, profile path and notes;
- ``plot.png``: time per row against size, log-log, one line per backend, one panel per
  indicator. It needs matplotlib (``pip install 'threadx[plot]'``); without it the other files
  are still written and the command says how to get the chart.

The profile is the user's own (that is what "auto" means for them): the timed calls also feed it,
as any call does. ``--profile PATH`` profiles into another file instead (``THREADX_PROFILE``).
"""

from __future__ import annotations

import argparse
import csv
import datetime as _dt
import json
import math
import os
import platform
import sys
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import polars as pl

import threadx
from threadx import _registry, _workloads

DEFAULT_INDICATORS = ("sma", "ema", "rsi", "bollinger", "macd", "atr", "stoch")

#: Polars' native equivalents: indicator -> (label, expression from the default parameters).
POLARS_NATIVE: dict[str, tuple[str, Callable[[dict[str, Any]], pl.Expr]]] = {
    "sma": ("polars", lambda p: pl.col("close").rolling_mean(p["period"])),
    "rolling_std": (
        "polars",
        lambda p: pl.col("close").rolling_std(p["period"], ddof=p["ddof"]),
    ),
    "ema": (
        "polars (native, different seeding)",
        lambda p: pl.col("close").ewm_mean(span=p["period"], adjust=False),
    ),
}

PLOT_HINT = "pip install 'threadx[plot]'"
RESULT_FIELDS = (
    "indicator", "rows", "backend", "label", "kind", "best_s", "spread_s", "median_s",
    "ns_per_row", "runs", "pick", "error",
)  # fmt: skip
SUMMARY_FIELDS = (
    "indicator", "rows", "auto_s", "auto_spread_s", "auto_backend", "auto_picks",
    "best_forced_backend", "best_forced_s", "auto_over_best_forced", "talib_s", "polars_s",
    "polars_label", "speedup_vs_talib", "speedup_vs_polars",
)  # fmt: skip


# ------------------------------------------------------------------------------------------------
# Arguments
# ------------------------------------------------------------------------------------------------


def _positive_int(what: str) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{what} must be an integer >= 1, got {text!r}")
        if value < 1:
            raise argparse.ArgumentTypeError(f"{what} must be an integer >= 1, got {text!r}")
        return value

    return parse


def _indicator(text: str) -> str:
    ind = _registry.BY_NAME.get(text.strip().lower())
    if ind is None:
        raise argparse.ArgumentTypeError(
            f"unknown indicator {text!r} (known: {', '.join(_registry.NAMES)})"
        )
    return ind.name


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="python -m threadx.benchmarks.run_auto_profile",
        description=(
            'Times device="auto" against every forced CPU worker count, the GPUs, TA-Lib and '
            "Polars, per indicator and size; prints a table (headline: auto / best forced) and "
            "writes results.csv, summary.csv, results.json and plot.png."
        ),
        epilog=__doc__.split("\n\n", 2)[2] if __doc__ else None,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ap.add_argument(
        "--sizes",
        nargs="+",
        type=_positive_int("each size"),
        default=[1_000, 10_000, 100_000],
        metavar="ROWS",
        help="row counts to time (default: 1000 10000 100000)",
    )
    ap.add_argument(
        "--runs",
        type=_positive_int("--runs"),
        default=5,
        help="timed runs per backend after one warm-up; the best is reported (default: 5)",
    )
    ap.add_argument(
        "--indicators",
        nargs="+",
        type=_indicator,
        default=list(DEFAULT_INDICATORS),
        metavar="NAME",
        help=f"indicators from threadx.catalog() (default: {' '.join(DEFAULT_INDICATORS)})",
    )
    ap.add_argument(
        "--out",
        type=Path,
        default=None,
        metavar="DIR",
        help="output folder (default: ./threadx_auto_profile_<timestamp>/)",
    )
    ap.add_argument(
        "--profile",
        default=None,
        metavar="PATH",
        help="profile file to plan from and record into (default: the user's profile)",
    )
    ap.add_argument("--no-progress", action="store_true", help="no progress bar")
    return ap


# ------------------------------------------------------------------------------------------------
# Backends and timing
# ------------------------------------------------------------------------------------------------


@dataclass
class Backend:
    key: str  # "auto", "cpu:<w>", "gpu:<i>", "all", "talib", "polars"
    label: str
    kind: str  # auto | cpu | gpu | multi | talib | polars
    call: Callable[[], object]
    threads: int | None = None  # forced worker count around the call
    times: list[float] = field(default_factory=list)
    picks: list[str] = field(default_factory=list)
    error: str | None = None


@dataclass
class Case:
    indicator: str
    rows: int
    backends: list[Backend]


def _talib_call(ind: _registry.Indicator, df: pl.DataFrame, talib: Any) -> Callable[[], object]:
    fn = getattr(talib, ind.talib)
    arrays = [df[_workloads.COLUMN[i]].to_numpy() for i in ind.inputs]
    params = ind.defaults()
    kwargs = {p.talib: params[p.name] for p in ind.params if p.talib}
    if ind.name == "bollinger":
        kwargs["nbdevdn"] = params["std_dev"]
    return lambda: fn(*arrays, **kwargs)


def gpu_devices() -> list[dict[str, Any]]:
    try:
        return list(threadx.gpu.devices())
    except Exception:  # noqa: BLE001  (no CUDA, a broken driver...: the CPU comparison still runs)
        return []


def gpu_label(dev: dict[str, Any]) -> str:
    return f"gpu:{dev['index']}" + (" (simulated)" if dev.get("simulated") else "")


def build_case(
    name: str, rows: int, df: pl.DataFrame, gpus: list[dict[str, Any]], talib: Any
) -> Case:
    ind = _registry.BY_NAME[name]
    select = df.select
    backends = [Backend("auto", "auto", "auto", _bind(select, _workloads.expr(name, "auto")))]
    cpu_expr = _workloads.expr(name, "cpu")
    for c in threadx.explain(name, rows, device="cpu").candidates:
        backends.append(
            Backend(c.backend, c.backend, "cpu", _bind(select, cpu_expr), threads=c.workers)
        )
    if "cuda" in ind.devices and gpus:
        for dev in gpus:
            key = f"gpu:{dev['index']}"
            backends.append(
                Backend(key, gpu_label(dev), "gpu", _bind(select, _workloads.expr(name, key)))
            )
        auto_keys = {c.backend for c in threadx.explain(name, rows).candidates}
        if "all" in auto_keys:
            backends.append(
                Backend(
                    "all", "all (cpu+gpus)", "multi", _bind(select, _workloads.expr(name, "all"))
                )
            )
    if talib is not None and ind.talib:
        backends.append(Backend("talib", "TA-Lib", "talib", _talib_call(ind, df, talib)))
    if name in POLARS_NATIVE:
        label, native = POLARS_NATIVE[name]
        backends.append(Backend("polars", label, "polars", _bind(select, native(ind.defaults()))))
    return Case(name, rows, backends)


def _bind(select: Callable[[pl.Expr], pl.DataFrame], e: pl.Expr) -> Callable[[], object]:
    return lambda: select(e)


def time_once(b: Backend, case: Case) -> float | None:
    """One timed call; ``None`` (and ``b.error`` set) when it failed. For ``auto``, the plan is
    asked for after the call: asked right before, its work (planning, JSON, Python objects) ran
    only ahead of auto's timed calls and cost them 10-20 us of cold caches at small sizes."""
    before = threadx.get_threads()
    try:
        if b.threads is not None:
            threadx.set_threads(b.threads)
        t0 = time.perf_counter()
        b.call()
        return time.perf_counter() - t0
    except Exception as exc:  # noqa: BLE001  (a failing backend is reported, the others go on)
        b.error = f"{type(exc).__name__}: {exc}".splitlines()[0][:300]
        return None
    finally:
        if b.threads is not None:
            threadx.set_threads(before)
        if b.kind == "auto":
            try:
                b.picks.append(threadx.explain(case.indicator, case.rows).backend)
            except Exception as exc:  # noqa: BLE001  (reported in the table, never fatal)
                b.picks.append(f"? ({exc})")


def measure(cases: list[Case], runs: int, progress: bool) -> None:
    from tqdm import tqdm

    total = sum(len(c.backends) for c in cases) * (runs + 1)
    with tqdm(total=total, disable=not progress, unit="call", file=sys.stderr, leave=False) as bar:
        for case in cases:
            bar.set_description(f"{case.indicator} {case.rows:,} rows")
            n = len(case.backends)
            for r in range(runs + 1):  # run 0 is the warm-up
                order = case.backends[r % n :] + case.backends[: r % n]
                for b in order:
                    if b.error is None:
                        t = time_once(b, case)
                        if r > 0 and t is not None:
                            b.times.append(t)
                    bar.update()
                if r == 0:  # the warm-up's plan is not one of the timed runs'
                    for b in case.backends:
                        b.picks.clear()


# ------------------------------------------------------------------------------------------------
# Results
# ------------------------------------------------------------------------------------------------


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def tabulate(cases: list[Case]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    results, summary = [], []
    for case in cases:
        best: dict[str, float | None] = {}
        for b in case.backends:
            ts = sorted(b.times)
            best[b.key] = ts[0] if ts else None
            pick = Counter(b.picks).most_common(1)[0][0] if b.picks else None
            results.append(
                {
                    "indicator": case.indicator,
                    "rows": case.rows,
                    "backend": b.key,
                    "label": b.label,
                    "kind": b.kind,
                    "best_s": ts[0] if ts else None,
                    "spread_s": ts[-1] - ts[0] if ts else None,
                    "median_s": ts[len(ts) // 2] if ts else None,
                    "ns_per_row": ts[0] / case.rows * 1e9 if ts else None,
                    "runs": len(ts),
                    "pick": pick,
                    "error": b.error,
                }
            )
        auto = next(r for r in results[-len(case.backends) :] if r["backend"] == "auto")
        forced = {
            b.key: best[b.key]
            for b in case.backends
            if b.kind in ("cpu", "gpu", "multi") and best[b.key] is not None
        }
        best_key = min(forced, key=forced.__getitem__) if forced else None
        best_forced = forced[best_key] if best_key else None
        talib_s = best.get("talib")
        polars_s = best.get("polars")
        polars_label = next((b.label for b in case.backends if b.kind == "polars"), None)
        row = {
            "indicator": case.indicator,
            "rows": case.rows,
            "auto_s": auto["best_s"],
            "auto_spread_s": auto["spread_s"],
            "auto_backend": auto["pick"],
            "auto_picks": " ".join(
                f"{k}x{n}" for k, n in Counter(case.backends[0].picks).most_common()
            ),
            "best_forced_backend": best_key,
            "best_forced_s": best_forced,
            "auto_over_best_forced": _ratio(auto["best_s"], best_forced),
            "talib_s": talib_s,
            "polars_s": polars_s,
            "polars_label": polars_label,
            "speedup_vs_talib": _ratio(talib_s, auto["best_s"]),
            "speedup_vs_polars": _ratio(polars_s, auto["best_s"]),
        }
        row.update({f"{k}_s": v for k, v in forced.items()})
        summary.append(row)
    return results, summary


def fmt_time(s: float | None) -> str:
    if s is None:
        return "-"
    if s < 1e-3:
        return f"{s * 1e6:.1f} us"
    if s < 1.0:
        return f"{s * 1e3:.3g} ms"
    return f"{s:.3g} s"


def fmt_x(x: float | None) -> str:
    return "-" if x is None else f"{x:.2f}x"


def render_table(cases: list[Case], summary: list[dict[str, Any]]) -> str:
    labels: dict[str, str] = {}
    for case in cases:
        for b in case.backends:
            if b.kind in ("cpu", "gpu", "multi"):
                labels.setdefault(b.key, b.label)
    forced_keys = sorted(labels, key=_backend_order)
    head = ["indicator", "rows", "auto", "spread", "auto pick"]
    head += [labels[k] for k in forced_keys]
    head += ["best forced", "auto/best", "TA-Lib", "vs TA-Lib", "polars", "vs polars"]
    lines = []
    for s in summary:
        spread = (
            f"+{s['auto_spread_s'] / s['auto_s']:.0%}"
            if s["auto_s"] and s["auto_spread_s"] is not None
            else "-"
        )
        ratio = s["auto_over_best_forced"]
        lines.append(
            [s["indicator"], f"{s['rows']:,}", fmt_time(s["auto_s"]), spread,
             s["auto_backend"] or "-"]
            + [fmt_time(s.get(f"{k}_s")) for k in forced_keys]
            + [s["best_forced_backend"] or "-", "-" if ratio is None else f"{ratio:.2f}",
               fmt_time(s["talib_s"]), fmt_x(s["speedup_vs_talib"]), fmt_time(s["polars_s"]),
               fmt_x(s["speedup_vs_polars"])]
        )  # fmt: skip
    widths = [max(len(str(r[i])) for r in [head, *lines]) for i in range(len(head))]
    out = [
        "  ".join(h.rjust(w) if i > 0 else h.ljust(w) for i, (h, w) in enumerate(zip(head, widths)))
    ]
    out.append("  ".join("-" * w for w in widths))
    for r in lines:
        out.append(
            "  ".join(
                str(c).rjust(w) if i > 0 else str(c).ljust(w)
                for i, (c, w) in enumerate(zip(r, widths))
            )
        )
    return "\n".join(out)


def _backend_order(key: str) -> tuple[int, int, str]:
    kind, _, num = key.partition(":")
    rank = {"auto": 0, "cpu": 1, "gpu": 2, "all": 3, "talib": 4, "polars": 5}.get(kind, 6)
    return rank, int(num) if num.isdigit() else 0, key


def write_csv(path: Path, rows: list[dict[str, Any]], fields: Sequence[str]) -> None:
    extra = sorted(
        {k for r in rows for k in r if k not in fields}, key=lambda k: _backend_order(k[:-2])
    )
    with path.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=[*fields, *extra], restval="")
        w.writeheader()
        for r in rows:
            w.writerow({k: "" if v is None else v for k, v in r.items()})


def _pyplot() -> Any:
    """matplotlib's pyplot on the Agg backend, or ``None`` when matplotlib cannot be imported."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except Exception:  # noqa: BLE001  (missing or broken: the CSV / JSON are still written)
        return None
    return plt


def write_plot(path: Path, results: list[dict[str, Any]], indicators: Sequence[str]) -> str | None:
    """Writes the chart; returns why not (``None`` when written)."""
    plt = _pyplot()
    if plt is None:
        return f"matplotlib is not installed: {PLOT_HINT} to get the chart"
    try:
        cols = min(3, len(indicators))
        nrows = math.ceil(len(indicators) / cols)
        fig = plt.figure(figsize=(5.0 * cols, 3.8 * nrows))
        for i, name in enumerate(indicators):
            ax = fig.add_subplot(nrows, cols, i + 1)
            mine = [r for r in results if r["indicator"] == name and r["ns_per_row"] is not None]
            for key in sorted({r["backend"] for r in mine}, key=_backend_order):
                pts = sorted(
                    (r["rows"], r["ns_per_row"], r["label"]) for r in mine if r["backend"] == key
                )
                style = {"linewidth": 2.5, "color": "black"} if key == "auto" else {}
                ax.plot(
                    [p[0] for p in pts], [p[1] for p in pts], marker="o", label=pts[0][2], **style
                )
            ax.set_xscale("log")
            ax.set_yscale("log")
            ax.set_title(name)
            ax.set_xlabel("rows")
            ax.set_ylabel("ns per row (best)")
            ax.grid(True, which="both", alpha=0.3)
            ax.legend(fontsize=7)
        fig.suptitle("threadx: device='auto' against forced backends, TA-Lib and Polars")
        fig.tight_layout()
        fig.savefig(path, dpi=110)
        plt.close(fig)
    except Exception as exc:  # noqa: BLE001  (a broken matplotlib must not lose the results)
        return f"the chart could not be drawn ({type(exc).__name__}: {exc})"
    return None


# ------------------------------------------------------------------------------------------------
# Entry point
# ------------------------------------------------------------------------------------------------


def _default_out() -> Path:
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    out = Path.cwd() / f"threadx_auto_profile_{stamp}"
    i = 1
    while out.exists():
        i += 1
        out = Path.cwd() / f"threadx_auto_profile_{stamp}-{i}"
    return out


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    sizes = sorted(set(args.sizes))
    indicators = list(dict.fromkeys(args.indicators))
    out = args.out if args.out is not None else _default_out()
    out.mkdir(parents=True, exist_ok=True)

    old_profile = os.environ.get("THREADX_PROFILE")
    if args.profile is not None:
        os.environ["THREADX_PROFILE"] = str(Path(args.profile).expanduser())
        threadx.profile.reload()
    try:
        return _run(args, list(sys.argv[1:] if argv is None else argv), sizes, indicators, out)
    finally:
        if args.profile is not None:
            threadx.profile.flush()
            if old_profile is None:
                os.environ.pop("THREADX_PROFILE", None)
            else:
                os.environ["THREADX_PROFILE"] = old_profile
            threadx.profile.reload()


def _run(
    args: argparse.Namespace, argv: list[str], sizes: list[int], indicators: list[str], out: Path
) -> int:
    notes: list[str] = []
    try:
        import talib
    except ImportError:
        talib = None
        notes.append("TA-Lib is not installed: no TA-Lib column (pip install 'threadx[bench]').")
    if threadx.get_threads() is not None or os.environ.get("THREADX_NUM_THREADS"):
        notes.append(
            "a worker count is forced (set_threads / THREADX_NUM_THREADS): 'auto' does not choose "
            "its own worker count here."
        )
    gpus = gpu_devices()
    if any(d.get("simulated") for d in gpus):
        notes.append(
            "simulated GPUs (THREADX_SIMULATED_GPUS): their times are a model, not a real device."
        )
    for name in indicators:
        if name in POLARS_NATIVE and POLARS_NATIVE[name][0] != "polars":
            notes.append(f"{name}: Polars' column is {POLARS_NATIVE[name][0]}.")
    no_polars = [n for n in indicators if n not in POLARS_NATIVE]
    if no_polars:
        notes.append(f"no native Polars equivalent for: {', '.join(no_polars)}.")

    frames = {n: _workloads.frame(n) for n in sizes}
    cases = [build_case(name, n, frames[n], gpus, talib) for name in indicators for n in sizes]
    measure(cases, args.runs, progress=not args.no_progress)
    results, summary = tabulate(cases)
    for r in results:
        if r["error"]:
            notes.append(
                f"{r['indicator']} {r['rows']:,} rows, {r['label']}: failed ({r['error']})."
            )

    paths = {
        "results.csv": out / "results.csv",
        "summary.csv": out / "summary.csv",
        "results.json": out / "results.json",
    }
    write_csv(paths["results.csv"], results, RESULT_FIELDS)
    write_csv(paths["summary.csv"], summary, SUMMARY_FIELDS)
    plot_path = out / "plot.png"
    plot_problem = write_plot(plot_path, results, indicators)
    meta = {
        "command": "python -m threadx.benchmarks.run_auto_profile",
        "argv": argv,
        "when": _dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        "sizes": sizes,
        "runs": args.runs,
        "indicators": indicators,
        "threadx": threadx.__version__,
        "polars": pl.__version__,
        "talib": getattr(talib, "__version__", None) if talib is not None else None,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu": vars(threadx.cpu_info()),
        "gpus": gpus,
        "profile": threadx.profile.path(),
        "plot": None if plot_problem else str(plot_path),
        "notes": notes + ([f"no chart: {plot_problem}"] if plot_problem else []),
    }
    paths["results.json"].write_text(
        json.dumps({"meta": meta, "summary": summary, "results": results}, indent=2, default=str)
    )

    print(
        f"threadx {threadx.__version__} auto profile: best of {args.runs} run(s) after a warm-up; "
        f"profile {threadx.profile.path() or '(in memory)'}"
    )
    print(render_table(cases, summary))
    print(
        "auto/best: auto's time over the fastest forced backend (1.00 = the planner picked the "
        "best; < 1 is noise). vs X: X's time / auto's (> 1: threadx is faster)."
    )
    for note in notes:
        print(f"note: {note}")
    for label, p in paths.items():
        print(f"{label + ':':<14}{p}")
    if plot_problem:
        print(f"plot.png:     not written: {plot_problem}")
    else:
        print(f"{'plot.png:':<14}{plot_path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
