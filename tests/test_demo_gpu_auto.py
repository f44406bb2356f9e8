"""``python -m threadx.demo_gpu_auto``: the auto-profiling walk-through runs end to end (``--quick``)
in a subprocess, with its own profile and chart directory, with and without matplotlib."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import threadx

HEADINGS = [
    "[1/7] The machine",
    "[2/7] A fresh profile and a short autotune",
    "[3/7] The planner's decisions",
    "[4/7] Calls move the profile's EWMA entries",
    "[5/7] Multi-GPU balance",
    "[6/7] Deterministic fusion, checked live",
    "[7/7] Charts",
]
HINT = "charts: pip install threadx[plot] (matplotlib) to get them"
PNGS = ("price_bollinger_rsi.png", "decision_map.png")


def demo(tmp: Path, *, pythonpath: str | None = None) -> tuple[subprocess.CompletedProcess, Path]:
    profile = tmp / "p.json"
    env = dict(os.environ)
    env.pop("THREADX_SIMULATED_GPUS", None)
    env.pop("THREADX_NUM_THREADS", None)
    # The suite's conftest points THREADX_PROFILE at its own file; the demo must ignore it.
    user_profile = tmp / "user-profile.json"
    env["THREADX_PROFILE"] = str(user_profile)
    if pythonpath is not None:
        env["PYTHONPATH"] = os.pathsep.join(p for p in (pythonpath, env.get("PYTHONPATH")) if p)
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "threadx.demo_gpu_auto",
            "--quick",
            "--no-progress",
            "--out",
            str(tmp / "charts"),
            "--profile",
            str(profile),
        ],
        check=False,
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert not user_profile.exists(), "the demo touched the profile of THREADX_PROFILE"
    return proc, profile


def sections(out: str) -> list[str]:
    """The output between consecutive headings (asserting that all appear, in order)."""
    at = [out.find(h) for h in HEADINGS]
    assert all(i >= 0 for i in at), [h for h, i in zip(HEADINGS, at) if i < 0]
    assert at == sorted(at), at
    return [out[a:b] for a, b in zip(at, [*at[1:], len(out)])]


def fusion_marks(section: str) -> list[str]:
    """Every cell of the fusion table (the rows under its ``indicator`` header)."""
    lines = section.splitlines()
    start = next(i for i, line in enumerate(lines) if line.split()[:1] == ["indicator"])
    rows = []
    for line in lines[start + 1 :]:
        if not line.strip():
            break
        rows.append(line)
    assert [r.split()[0] for r in rows][:2] == ["sma", "bollinger"], section
    n_variants = 7
    assert all(len(r.split()) == 1 + n_variants for r in rows), rows
    return [c for line in rows for c in line.split()[1:]]


def real_gpu() -> bool:
    return any(not d.get("simulated") for d in threadx.gpu.devices())


def test_demo_runs_all_sections_with_its_own_profile(tmp_path):
    proc, profile = demo(tmp_path)
    out = proc.stdout
    parts = sections(out)
    # 2: the demo's profile was used and written, with this machine's entry.
    assert f"profile      {profile}" in parts[1]
    assert profile.exists()
    machines = json.loads(profile.read_text())["machines"]
    entry = machines[threadx.profile.fingerprint()["id"]]
    assert {"sma", "bollinger"} <= set(entry["timings"])
    # 3: decisions for every size from 1k to 10M, with reasons.
    for n in ("1,000", "10,000,000"):
        assert n in parts[2]
    assert "reasons:" in parts[2]
    # 4: at least one EWMA entry moved.
    assert "->" in parts[3]
    # 5 and 6: GPUs labelled simulated where no real one is usable (the variable is unset).
    if not real_gpu():
        assert "SIMULATED" in parts[0].upper() or "simulated" in parts[0]
        assert "SIMULATED GPUs" in parts[4] and "[SIMULATED" in parts[4]
        assert "(simulated)" in parts[5]
    assert "gpu.balance()" in parts[4] and "split:" in parts[4]
    assert "THREADX_SIMULATED_GPUS restored: unset" in parts[4]
    # 6: the fusion table has only ticks.
    marks = fusion_marks(parts[5])
    assert marks and set(marks) == {"✓"}, parts[5]
    assert "✗" not in out
    # 7: charts when matplotlib is importable, else the hint.
    charts = tmp_path / "charts"
    if importlib.util.find_spec("matplotlib") is not None:
        for name in PNGS:
            png = charts / name
            assert png.exists() and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", png
            assert str(png) in parts[6]
    else:
        assert HINT in parts[6]
        assert not charts.exists()


def test_demo_without_matplotlib_prints_the_hint(tmp_path):
    fake = tmp_path / "fake"
    (fake / "matplotlib").mkdir(parents=True)
    (fake / "matplotlib" / "__init__.py").write_text(
        "raise ImportError('matplotlib hidden by the test')\n"
    )
    proc, profile = demo(tmp_path, pythonpath=str(fake))
    parts = sections(proc.stdout)
    assert HINT in parts[6]
    assert not (tmp_path / "charts").exists()
    assert set(fusion_marks(parts[5])) == {"✓"}
    assert profile.exists()
