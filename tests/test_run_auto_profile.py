"""``python -m threadx.benchmarks.run_auto_profile``: the comparative benchmark of device="auto"
against the forced backends, TA-Lib and Polars. Small sizes and one run keep it fast; the checks
are on the written CSV / JSON (their shape and that the derived columns follow from the recorded
times), the chart with and without matplotlib, argument errors and simulated GPUs."""

from __future__ import annotations

import csv
import importlib.util
import json
import os
import subprocess
import sys
import types
from pathlib import Path
from unittest import mock

import pytest
import threadx
from threadx.benchmarks import run_auto_profile as rap

ARGS = ["--sizes", "300", "2000", "--runs", "1", "--indicators", "sma", "ema", "--no-progress"]
HAS_MATPLOTLIB = importlib.util.find_spec("matplotlib") is not None


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def run_main(out: Path, *extra: str) -> None:
    assert rap.main([*ARGS, "--out", str(out), *extra]) == 0


def forced_cpu(name: str, rows: int) -> set[str]:
    return {c.backend for c in threadx.explain(name, rows, device="cpu").candidates}


def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "threadx.benchmarks.run_auto_profile", *args],
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_results_csv_json_and_table(tmp_path, capsys):
    profile = tmp_path / "other_profile.json"
    before = (os.environ.get("THREADX_PROFILE"), threadx.profile.path())
    run_main(tmp_path / "out", "--profile", str(profile))
    printed = capsys.readouterr().out
    out = tmp_path / "out"

    # --profile used that file, then gave the process its own profile back.
    assert profile.exists()
    assert (os.environ.get("THREADX_PROFILE"), threadx.profile.path()) == before
    meta = json.loads((out / "results.json").read_text())["meta"]
    assert meta["profile"] == str(profile)

    results = read_csv(out / "results.csv")
    summary = read_csv(out / "summary.csv")
    data = json.loads((out / "results.json").read_text())
    assert len(data["results"]) == len(results)
    assert [(s["indicator"], s["rows"]) for s in data["summary"]] == [
        (s["indicator"], int(s["rows"])) for s in summary
    ]
    assert [(s["indicator"], s["rows"]) for s in summary] == [
        ("sma", "300"), ("sma", "2000"), ("ema", "300"), ("ema", "2000")
    ]  # fmt: skip

    for s in summary:
        name, rows = s["indicator"], int(s["rows"])
        mine = [r for r in results if r["indicator"] == name and int(r["rows"]) == rows]
        by = {r["backend"]: r for r in mine}
        assert len(by) == len(mine)  # one row per indicator x size x backend
        forced = forced_cpu(name, rows)
        assert set(by) == {"auto", "talib", "polars", *forced}
        for r in mine:
            assert r["runs"] == "1" and float(r["best_s"]) > 0 and not r["error"]
            assert float(r["spread_s"]) == 0.0  # one run: no spread
            assert float(r["ns_per_row"]) == pytest.approx(float(r["best_s"]) / rows * 1e9)
        # auto's pick is one of the forced backends (no GPU in this process).
        assert by["auto"]["pick"] == s["auto_backend"]
        assert s["auto_backend"] in forced
        # The headline ratio follows from the recorded times.
        best_key = min(forced, key=lambda k: float(by[k]["best_s"]))
        assert s["best_forced_backend"] == best_key
        assert float(s["best_forced_s"]) == float(by[best_key]["best_s"])
        ratio = float(by["auto"]["best_s"]) / float(by[best_key]["best_s"])
        assert float(s["auto_over_best_forced"]) == pytest.approx(ratio, rel=1e-12)
        assert float(s["auto_s"]) == float(by["auto"]["best_s"])
        for k in forced:
            assert float(s[f"{k}_s"]) == float(by[k]["best_s"])
        # TA-Lib and Polars columns, and the speedups from them.
        assert float(s["talib_s"]) == float(by["talib"]["best_s"])
        assert float(s["speedup_vs_talib"]) == pytest.approx(
            float(s["talib_s"]) / float(s["auto_s"]), rel=1e-12
        )
        assert float(s["speedup_vs_polars"]) == pytest.approx(
            float(s["polars_s"]) / float(s["auto_s"]), rel=1e-12
        )
        assert by["talib"]["label"] == "TA-Lib"
        expected = "polars (native, different seeding)" if name == "ema" else "polars"
        assert by["polars"]["label"] == s["polars_label"] == expected

    header = next(line for line in printed.splitlines() if line.startswith("indicator"))
    for col in ("auto", "auto pick", "auto/best", "TA-Lib", "vs TA-Lib", "polars", "vs polars"):
        assert col in header
    for name in ("results.csv", "summary.csv", "results.json"):
        assert str(out / name) in printed

    # The chart: whichever case holds on this machine.
    if HAS_MATPLOTLIB:
        assert (out / "plot.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert meta["plot"] == str(out / "plot.png")
    else:
        assert not (out / "plot.png").exists()
        assert "pip install 'threadx[plot]'" in printed
        assert meta["plot"] is None


def test_without_matplotlib_writes_the_rest_and_says_how(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    monkeypatch.setitem(sys.modules, "matplotlib.pyplot", None)
    run_main(tmp_path)
    printed = capsys.readouterr().out
    assert not (tmp_path / "plot.png").exists()
    assert "plot.png:     not written: matplotlib is not installed" in printed
    assert "pip install 'threadx[plot]'" in printed
    assert len(read_csv(tmp_path / "summary.csv")) == 4
    meta = json.loads((tmp_path / "results.json").read_text())["meta"]
    assert meta["plot"] is None
    assert any("threadx[plot]" in n for n in meta["notes"])


def test_with_matplotlib_draws_one_panel_per_indicator(tmp_path, monkeypatch, capsys):
    plt = mock.MagicMock(name="pyplot")
    fig = plt.figure.return_value
    ax = fig.add_subplot.return_value
    fig.savefig.side_effect = lambda path, **kw: Path(path).write_bytes(b"\x89PNG fake")
    mpl = types.ModuleType("matplotlib")
    mpl.use = mock.MagicMock(name="use")
    mpl.pyplot = plt
    monkeypatch.setitem(sys.modules, "matplotlib", mpl)
    monkeypatch.setitem(sys.modules, "matplotlib.pyplot", plt)
    run_main(tmp_path)
    printed = capsys.readouterr().out

    mpl.use.assert_called_once_with("Agg")
    assert fig.add_subplot.call_count == 2  # sma, ema
    fig.savefig.assert_called_once()
    assert fig.savefig.call_args.args[0] == tmp_path / "plot.png"
    assert (tmp_path / "plot.png").read_bytes() == b"\x89PNG fake"
    assert f"plot.png:     {tmp_path / 'plot.png'}" in printed
    # One line per backend and panel, each through both sizes, on log-log axes.
    results = read_csv(tmp_path / "results.csv")
    lines = {(r["indicator"], r["backend"]) for r in results}
    assert ax.plot.call_count == len(lines)
    for call in ax.plot.call_args_list:
        assert list(call.args[0]) == [300, 2000]
        assert all(y > 0 for y in call.args[1])
    ax.set_xscale.assert_called_with("log")
    ax.set_yscale.assert_called_with("log")
    labels = [c.kwargs["label"] for c in ax.plot.call_args_list]
    assert "auto" in labels and "TA-Lib" in labels


def test_without_talib_the_column_is_left_out_with_a_note(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "talib", None)
    run_main(tmp_path)
    printed = capsys.readouterr().out
    assert "note: TA-Lib is not installed" in printed
    assert not [r for r in read_csv(tmp_path / "results.csv") if r["backend"] == "talib"]
    assert all(s["talib_s"] == "" for s in read_csv(tmp_path / "summary.csv"))


def test_simulated_gpu_column(tmp_path):
    out = tmp_path / "out"
    p = cli(*ARGS, "--out", str(out), env={"THREADX_SIMULATED_GPUS": "1.0"})
    assert p.returncode == 0, p.stderr
    header = next(line for line in p.stdout.splitlines() if line.startswith("indicator"))
    assert "gpu:0 (simulated)" in header
    assert "note: simulated GPUs" in p.stdout
    gpu_rows = [r for r in read_csv(out / "results.csv") if r["backend"] == "gpu:0"]
    assert {(r["indicator"], r["rows"]) for r in gpu_rows} == {
        ("sma", "300"), ("sma", "2000"), ("ema", "300"), ("ema", "2000")
    }  # fmt: skip
    assert {r["label"] for r in gpu_rows} == {"gpu:0 (simulated)"}
    assert all(float(r["best_s"]) > 0 for r in gpu_rows)
    for s in read_csv(out / "summary.csv"):
        assert float(s["gpu:0_s"]) > 0
        assert s["auto_backend"].startswith(("cpu:", "gpu:", "all"))
    meta = json.loads((out / "results.json").read_text())["meta"]
    assert [g["simulated"] for g in meta["gpus"]] == [True]


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (["--sizes", "0"], "--sizes"),
        (["--sizes", "1000", "ten"], "--sizes"),
        (["--runs", "0"], "--runs"),
        (["--runs", "1.5"], "--runs"),
        (["--indicators", "sma", "nope"], "--indicators"),
    ],
)
def test_bad_arguments_exit_2_naming_the_argument(args, named, tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        rap.main([*args, "--out", str(tmp_path / "never")])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert f"argument {named}" in err
    assert args[-1] in err
    assert not (tmp_path / "never").exists()


def test_command_line_errors_and_help():
    p = cli("--runs", "0")
    assert p.returncode == 2
    assert "argument --runs: --runs must be an integer >= 1, got '0'" in p.stderr
    p = cli("--help")
    assert p.returncode == 0
    for word in ("--sizes", "--runs", "--indicators", "--out", "--profile", "--no-progress",
                 "auto/best", "results.csv", "plot.png", "threadx[plot]"):  # fmt: skip
        assert word in p.stdout


def test_default_out_is_a_new_folder_in_the_current_directory(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    for _ in range(2):
        rap.main(["--sizes", "300", "--runs", "1", "--indicators", "sma", "--no-progress"])
    printed = capsys.readouterr().out
    folders = sorted(tmp_path.glob("threadx_auto_profile_*"))
    assert len(folders) == 2  # a second run in the same second does not overwrite the first
    for folder in folders:
        assert (folder / "results.json").exists()
        assert f"results.csv:  {folder / 'results.csv'}" in printed


def test_runs_are_interleaved_and_best_and_spread_reported():
    log: list[str] = []
    backends = [
        rap.Backend(k, k, "cpu", (lambda k=k: log.append(k)), threads=None)
        for k in ("cpu:1", "cpu:2", "cpu:4")
    ]
    case = rap.Case("sma", 100, backends)
    rap.measure([case], runs=3, progress=False)
    assert len(log) == 4 * 3  # a warm-up, then three runs
    for r in range(4):
        assert sorted(log[3 * r : 3 * r + 3]) == ["cpu:1", "cpu:2", "cpu:4"]
    assert log[:3] != log[3:6]  # the order rotates from run to run
    assert all(len(b.times) == 3 for b in backends)

    auto = rap.Backend("auto", "auto", "auto", lambda: None, times=[3.0, 2.0, 2.5])
    auto.picks = ["cpu:2", "cpu:2", "cpu:1"]
    for b, times in zip(backends, ([4.0, 5.0, 6.0], [1.5, 1.0, 3.0], [9.0, 8.0, 8.5])):
        b.times = times
    results, summary = rap.tabulate([rap.Case("sma", 100, [auto, *backends])])
    by = {r["backend"]: r for r in results}
    assert by["auto"]["best_s"] == 2.0 and by["auto"]["spread_s"] == 1.0
    assert by["cpu:2"]["best_s"] == 1.0 and by["cpu:2"]["spread_s"] == 2.0
    (s,) = summary
    assert s["auto_backend"] == "cpu:2" and s["best_forced_backend"] == "cpu:2"
    assert s["auto_over_best_forced"] == 2.0
    assert s["talib_s"] is None and s["speedup_vs_talib"] is None
