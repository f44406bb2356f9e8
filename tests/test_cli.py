"""The command line (``python -m threadx ...``): info, version, profile path/show/reset, autotune,
and the errors for bad subcommands and arguments. Every command runs in a subprocess with its
own ``THREADX_PROFILE``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import threadx
from threadx.planning import INDICATORS

FOREIGN_ID = "fedcba9876543210"


def cli(profile: Path | str, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("THREADX_LOG", "THREADX_NUM_THREADS")}
    env["THREADX_PROFILE"] = str(profile)
    return subprocess.run(
        [sys.executable, "-m", "threadx", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def own() -> tuple[str, dict]:
    fp = dict(threadx.profile.fingerprint())
    return fp.pop("id"), fp


def candidates() -> list[str]:
    return [c.backend for c in threadx.explain("sma", 1 << 20).candidates]


def stat(samples: int, ewma: float) -> dict:
    return {
        "samples": samples,
        "ewma_ns_per_row": ewma,
        "best_ns_per_row": ewma / 2,
        "last_unix": 7,
    }


def populated(tmp_path: Path) -> tuple[Path, dict]:
    """A profile file with this machine's entry and another machine's (values that are exact in
    binary, so that only the command under test can change them)."""
    fid, fp = own()
    mine = {
        "fingerprint": fp,
        "updated_unix": 7,
        "timings": {"sma": {"2^20": {c: stat(4, 1.5) for c in candidates()}}},
        "links": {},
        "balance": {},
    }
    foreign = {
        "fingerprint": dict(fp, cpu_model="Some Other CPU", physical_cores=64, logical_cores=128),
        "updated_unix": 9,
        "timings": {"rsi": {"2^12": {"cpu:63": stat(12, 0.75)}}},
        "links": {},
        "balance": {},
    }
    data = {"schema_version": 1, "machines": {fid: mine, FOREIGN_ID: foreign}}
    path = tmp_path / "profile.json"
    path.write_text(json.dumps(data))
    return path, data


def test_version(tmp_path: Path):
    proc = cli(tmp_path / "profile.json", "version")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == threadx.__version__


def test_info_lists_cpu_profile_and_every_indicator(tmp_path: Path):
    profile = tmp_path / "profile.json"
    proc = cli(profile, "info")
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    cpu = threadx.cpu_info()
    assert threadx.__version__ in out
    assert cpu.model in out
    assert f"{cpu.physical_cores} physical" in out and f"{cpu.logical_cores} logical" in out
    assert f"Profile: {profile}" in out
    assert threadx.profile.fingerprint()["id"] in out
    rows = {line.split()[0]: line.split()[1:] for line in out.splitlines() if line.startswith("  ")}
    for ind in INDICATORS:
        assert ind in rows, out
        assert len(rows[ind]) == 5 and all(cell.startswith("cpu:") for cell in rows[ind]), out
        assert rows[ind][0] == "cpu:1"  # 1,000 rows: small input
    assert not profile.exists()  # info only reads


def test_info_marks_measured_decisions(tmp_path: Path):
    profile, _ = populated(tmp_path)  # sma at 2^20 fully measured: 1,000,000 rows uses it
    proc = cli(profile, "info")
    assert proc.returncode == 0, proc.stderr
    (sma,) = [line.split() for line in proc.stdout.splitlines() if line.startswith("  sma ")]
    if len(candidates()) > 1:
        assert sma[4].endswith("*"), sma
    assert not any(cell.endswith("*") for cell in sma[1:4] + sma[5:]), sma


def test_info_with_unusable_location(tmp_path: Path):
    afile = tmp_path / "afile"
    afile.write_text("x")
    proc = cli(afile / "profile.json", "info")
    assert proc.returncode == 0, proc.stderr
    assert "in memory only" in proc.stdout
    assert proc.stderr.count("threadx: warning") == 1


def test_profile_path(tmp_path: Path):
    profile = tmp_path / "sub" / "profile.json"
    proc = cli(profile, "profile", "path")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == str(profile)
    afile = tmp_path / "afile"
    afile.write_text("x")
    proc = cli(afile / "profile.json", "profile", "path")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("(in memory")


def test_profile_show_fresh(tmp_path: Path):
    profile = tmp_path / "profile.json"
    proc = cli(profile, "profile", "show")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == {"timings": {}, "links": {}, "balance": {}}
    proc = cli(profile, "profile", "show", "--all")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == {"schema_version": 1, "machines": {}}


def test_profile_show_and_show_all(tmp_path: Path):
    profile, data = populated(tmp_path)
    fid, _ = own()
    proc = cli(profile, "profile", "show")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == data["machines"][fid]
    proc = cli(profile, "profile", "show", "--all")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == data
    assert json.loads(profile.read_text()) == data  # show does not modify the file


def test_profile_reset_forgets_only_this_machine(tmp_path: Path):
    profile, data = populated(tmp_path)
    fid, _ = own()
    proc = cli(profile, "profile", "reset")
    assert proc.returncode == 0, proc.stderr
    assert str(profile) in proc.stdout
    after = json.loads(profile.read_text())
    assert after["schema_version"] == 1
    assert not after["machines"].get(fid, {}).get("timings")
    assert after["machines"][FOREIGN_ID] == data["machines"][FOREIGN_ID]
    shown = json.loads(cli(profile, "profile", "show").stdout)
    assert shown["timings"] == {}
    shown_all = json.loads(cli(profile, "profile", "show", "--all").stdout)
    assert shown_all["machines"][FOREIGN_ID] == data["machines"][FOREIGN_ID]


def test_autotune_writes_the_profile(tmp_path: Path):
    profile = tmp_path / "profile.json"
    args = ["autotune", "--sizes", "300", "--runs", "1", "--indicators", "sma", "--no-progress"]
    proc = cli(profile, *args)
    assert proc.returncode == 0, proc.stderr
    assert "sma" in proc.stdout and str(profile) in proc.stdout
    assert "call/s" not in proc.stderr and "%|" not in proc.stderr  # no progress bar
    fid, _ = own()
    timings = json.loads(profile.read_text())["machines"][fid]["timings"]
    assert set(timings) == {"sma"}
    # Every candidate, and every call of each measurement (repeated to 20 ms) is a sample.
    samples = {c: s["samples"] for c, s in timings["sma"]["2^8"].items()}
    assert set(samples) == set(candidates()) and min(samples.values()) >= 2, samples


@pytest.mark.parametrize(
    "args",
    [
        [],
        ["nope"],
        ["profile"],
        ["profile", "nope"],
        ["profile", "show", "--bogus"],
        ["autotune", "--runs", "0", "--no-progress"],
        ["autotune", "--sizes", "abc", "--no-progress"],
        ["autotune", "--sizes", "0", "--no-progress"],
        ["autotune", "--indicators", "nope", "--no-progress"],
        ["version", "extra"],
    ],
    ids=lambda a: " ".join(a) or "no-args",
)
def test_bad_commands_exit_nonzero(tmp_path: Path, args: list[str]):
    profile = tmp_path / "profile.json"
    proc = cli(profile, *args)
    assert proc.returncode != 0, proc.stdout
    assert "usage" in proc.stderr.lower() or "error" in proc.stderr.lower(), proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    assert not profile.exists()
