"""Hardening of the profile store (issue 10, items 1-7): one reproducer per item.

Every case runs in a subprocess with its own ``THREADX_PROFILE`` (first load, warnings, exit).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import stat
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import pytest
import threadx

WARNING = "threadx: warning"
CHILD_TIMEOUT = 60

# Records one sma call of 1,000 rows, flushes, prints the profile's state as JSON.
SMA_CHILD = """
    import json
    import numpy as np, polars as pl, threadx
    close = 100.0 + np.cumsum(np.random.default_rng(5).normal(0.0, 1.0, 1000))
    out = pl.DataFrame({"close": close}).select(threadx.sma("close", period=10)).to_series()
    assert out.len() == 1000 and abs(out[9] - close[:10].mean()) < 1e-9
    flushed = threadx.profile.flush()
    print(json.dumps({
        "flushed": flushed,
        "path": threadx.profile.path(),
        "memory_only": threadx.profile.memory_only_reason(),
        "timings": threadx.profile.machine()["timings"],
    }))
"""


def child_env(profile: Path | str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("THREADX_LOG", "THREADX_NUM_THREADS")}
    env["THREADX_PROFILE"] = str(profile)
    env.update(extra)
    return env


def run_child(code: str, profile: Path | str, *args: str, **extra: str):
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code), *args],
        env=child_env(profile, **extra),
        capture_output=True,
        text=True,
        timeout=CHILD_TIMEOUT,
        check=False,
    )


def warnings_of(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if WARNING in line]


def own() -> tuple[str, dict]:
    fp = dict(threadx.profile.fingerprint())
    return fp.pop("id"), fp


def stat_entry(samples, ewma=2.0, best=1.0, last=1_700_000_000) -> dict:
    return {"samples": samples, "ewma_ns_per_row": ewma, "best_ns_per_row": best, "last_unix": last}


def sma_samples(state: dict) -> int:
    return state["timings"]["sma"]["2^9"]["cpu:1"]["samples"]


# --------------------------------------------------------------------------------------------
# 1: a non-regular file at THREADX_PROFILE
# --------------------------------------------------------------------------------------------


def _short_dir() -> Path:
    # AF_UNIX socket paths are limited to ~100 bytes: pytest's tmp_path can be longer.
    return Path(tempfile.mkdtemp(prefix="tx-"))


@pytest.mark.parametrize("kind", ["fifo", "socket", "directory", "chardev", "link-to-dev-null"])
def test_item1_non_regular_profile_is_left_alone(kind: str):
    d = _short_dir()
    try:
        profile = d / "p.json"
        sock = None
        if kind == "fifo":
            os.mkfifo(profile)
        elif kind == "socket":
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.bind(str(profile))
        elif kind == "directory":
            profile.mkdir()
        elif kind == "chardev":
            try:
                os.mknod(profile, 0o666 | stat.S_IFCHR, os.makedev(1, 3))  # a null device
            except PermissionError:
                pytest.skip("creating a device node needs root")
        else:
            profile.symlink_to("/dev/null")
        before = os.lstat(profile)
        # A FIFO used to block the first call forever: the timeout catches that.
        proc = run_child(SMA_CHILD, profile)
        assert proc.returncode == 0, proc.stderr
        state = json.loads(proc.stdout)
        after = os.lstat(profile)
        assert (after.st_mode, after.st_ino) == (before.st_mode, before.st_ino), "replaced"
        assert sorted(os.listdir(d)) == ["p.json"], os.listdir(d)  # no .corrupt, .lock, .tmp
        assert state["path"] is None and sma_samples(state) == 1  # profiling goes on in memory
        null = kind in ("chardev", "link-to-dev-null")
        if null:  # "don't persist": no warning, nothing to report
            assert warnings_of(proc.stderr) == [], proc.stderr
            assert state["flushed"] is True
            assert "null device" in state["memory_only"]
        else:
            (w,) = warnings_of(proc.stderr)
            assert str(profile) in w and "not a regular file" in w, w
            assert state["flushed"] is False
        if sock is not None:
            sock.close()
    finally:
        shutil.rmtree(d, ignore_errors=True)
    if kind == "link-to-dev-null":
        # Only after the link case held: the real /dev/null, as the issue reports it.
        proc = run_child(SMA_CHILD, "/dev/null")
        assert proc.returncode == 0, proc.stderr
        assert stat.S_ISCHR(os.stat("/dev/null").st_mode)
        assert not os.path.exists("/dev/null.lock")
        assert warnings_of(proc.stderr) == [], proc.stderr


# --------------------------------------------------------------------------------------------
# 2: symbolic links are written through
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("dangling", [False, True])
def test_item2_symlinked_profile_is_written_through(tmp_path: Path, dangling: bool):
    store = tmp_path / "store"
    store.mkdir()
    target = store / "real.json"
    if not dangling:
        target.write_text(json.dumps({"schema_version": 1, "machines": {}}))
    links = tmp_path / "links"
    links.mkdir()
    link = links / "profile.json"
    link.symlink_to(os.path.relpath(target, links))
    for expected in (1, 2):
        proc = run_child(SMA_CHILD, link)
        assert proc.returncode == 0, proc.stderr
        assert WARNING not in proc.stderr, proc.stderr
        assert link.is_symlink(), "the link was replaced by a regular file"
        assert os.readlink(link) == os.path.relpath(target, links)
        data = json.loads(target.read_text())
        fid, _ = own()
        assert data["machines"][fid]["timings"]["sma"]["2^9"]["cpu:1"]["samples"] == expected
    assert sorted(os.listdir(links)) == ["profile.json"], os.listdir(links)
    assert sorted(os.listdir(store)) in (["real.json"], ["real.json", "real.json.lock"])


# --------------------------------------------------------------------------------------------
# 3: one malformed field
# --------------------------------------------------------------------------------------------

MUTATIONS = {
    "negative samples": ("samples", -3),
    "fractional samples": ("samples", 2.5),
    "string ewma": ("ewma_ns_per_row", "fast"),
    "missing best": ("best_ns_per_row", None),
    "infinite-ish best": ("best_ns_per_row", "inf"),
}


def test_item3_malformed_statistic_drops_only_itself(tmp_path: Path):
    fid, fp = own()
    backends = [f"cpu:{k}" for k in range(1, 13)]
    mine = {
        "fingerprint": fp,
        "updated_unix": int(time.time()),
        "timings": {"ema": {"2^12": {b: stat_entry(4) for b in backends}}},
        "links": {},
        "balance": {"default": {"cpu": 0.25, "gpu:x": "half"}},
        "my_note": {"kept": True},
    }
    bad = {}
    for (what, (field, value)), backend in zip(MUTATIONS.items(), backends):
        s = mine["timings"]["ema"]["2^12"][backend]
        if value is None:
            del s[field]
        else:
            s[field] = value
        bad[backend] = what
    profile = tmp_path / "profile.json"
    original = json.dumps({"schema_version": 1, "machines": {fid: mine}}, indent=1).encode()
    profile.write_bytes(original)

    proc = run_child(SMA_CHILD, profile)
    assert proc.returncode == 0, proc.stderr
    data = json.loads(profile.read_text())
    entry = data["machines"][fid]
    kept = entry["timings"]["ema"]["2^12"]
    assert sorted(kept) == sorted(set(backends) - set(bad)), kept
    assert all(s["samples"] == 4 for s in kept.values())
    total = (
        sum(s["samples"] for s in kept.values())
        + entry["timings"]["sma"]["2^9"]["cpu:1"]["samples"]
    )
    assert total == 4 * (12 - len(bad)) + 1
    assert entry["balance"] == {"default": {"cpu": 0.25}}
    assert entry["my_note"] == {"kept": True}  # unknown fields of this machine's entry stay

    (w,) = warnings_of(proc.stderr)
    for backend in bad:
        assert f"timings.ema.2^12.{backend}" in w, w
    assert "balance.default.gpu:x" in w, w
    backups = list(tmp_path.glob("profile.json.backup-*"))
    assert len(backups) == 1 and backups[0].name in w, (backups, w)
    assert backups[0].read_bytes() == original

    # The repaired file is clean: the next process neither warns nor backs up again.
    proc = run_child(SMA_CHILD, profile)
    assert proc.returncode == 0 and WARNING not in proc.stderr, proc.stderr
    assert len(list(tmp_path.glob("profile.json.backup-*"))) == 1


# --------------------------------------------------------------------------------------------
# 4: two corruptions in the same second
# --------------------------------------------------------------------------------------------


def test_item4_each_corruption_keeps_its_backup_and_warns(tmp_path: Path):
    profile = tmp_path / "profile.json"
    code = """
        import sys, threadx
        for garbage in (b"\\x00first{", b"{second", b"[third"):
            threadx.profile.record("sma", 1000, "cpu:1", 1e-5)
            assert threadx.profile.flush()
            open(sys.argv[1], "wb").write(garbage)
        threadx.profile.record("sma", 1000, "cpu:1", 1e-5)
        assert threadx.profile.flush()
    """
    proc = run_child(code, profile, str(profile))
    assert proc.returncode == 0, proc.stderr
    aside = sorted(tmp_path.glob("profile.json.corrupt-*"))
    assert sorted(a.read_bytes() for a in aside) == sorted([b"\x00first{", b"{second", b"[third"])
    assert all(re.fullmatch(r"profile\.json\.corrupt-\d+-\d+", a.name) for a in aside), aside
    warnings = warnings_of(proc.stderr)
    assert len(warnings) == 3, proc.stderr
    assert all(any(a.name in w for w in warnings) for a in aside), warnings


# --------------------------------------------------------------------------------------------
# 5: a failed write
# --------------------------------------------------------------------------------------------


def test_item5_failed_write_is_retried_and_reported(tmp_path: Path):
    d = tmp_path / "prof"
    d.mkdir()
    profile = d / "profile.json"
    blocker = d / "profile.json.lock"
    blocker.mkdir()  # the lock cannot be opened, even as root
    code = """
        import json, os, sys, threadx
        for _ in range(3):
            threadx.profile.record("sma", 1000, "cpu:1", 1e-5)
        first = threadx.profile.flush()
        failing = (threadx.profile.path(), threadx.profile.memory_only_reason())
        again = threadx.profile.flush()
        os.rmdir(sys.argv[1])  # the location becomes writable
        threadx.profile.record("sma", 1000, "cpu:1", 1e-5)
        healed = threadx.profile.flush()
        print(json.dumps({"first": first, "again": again, "healed": healed,
                          "failing": failing, "path": threadx.profile.path(),
                          "memory_only": threadx.profile.memory_only_reason()}))
    """
    proc = run_child(code, profile, str(blocker))
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["first"] is False and out["again"] is False
    assert out["failing"][0] is None and "cannot write" in out["failing"][1]
    assert out["healed"] is True
    assert out["path"] == str(profile) and out["memory_only"] is None
    fid, _ = own()
    data = json.loads(profile.read_text())
    # the samples recorded while writes failed were kept and written
    assert data["machines"][fid]["timings"]["sma"]["2^9"]["cpu:1"]["samples"] == 4
    mentions = [w for w in warnings_of(proc.stderr) if "cannot write" in w]
    assert len(mentions) == 1, proc.stderr  # one warning per run of failures


# --------------------------------------------------------------------------------------------
# 6: temporary files of killed writers
# --------------------------------------------------------------------------------------------


def test_item6_stale_tmp_files_of_dead_pids_are_removed(tmp_path: Path):
    profile = tmp_path / "profile.json"
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = tmp_path / f"profile.json.tmp-{dead.pid}-1764000000000000000"
    stale.write_text('{"schema_version": 1, "machi')
    live = tmp_path / f"profile.json.tmp-{os.getpid()}-1764000000000000001"
    live.write_text("{")
    other = tmp_path / "profile.json.tmp-notapid"
    other.write_text("{")
    proc = run_child(SMA_CHILD, profile)
    assert proc.returncode == 0, proc.stderr
    assert not stale.exists(), os.listdir(tmp_path)
    assert live.exists() and other.exists()  # a live writer's file, a name not ours

    # And for real: writers killed with SIGKILL in the middle of their writes.
    code = """
        import threadx
        while True:
            threadx.profile.record("sma", 1000, "cpu:1", 1e-5)
            threadx.profile.flush()
    """
    for _ in range(5):
        p = subprocess.Popen([sys.executable, "-c", textwrap.dedent(code)], env=child_env(profile))
        time.sleep(0.6)
        p.kill()
        p.wait()
    proc = run_child(SMA_CHILD, profile)
    assert proc.returncode == 0, proc.stderr
    left = [n for n in os.listdir(tmp_path) if ".tmp-" in n]
    assert sorted(left) == sorted([live.name, other.name]), left


# --------------------------------------------------------------------------------------------
# 7: a large shared profile
# --------------------------------------------------------------------------------------------


def foreign_entry(i: int, updated: int) -> dict:
    _, fp = own()
    return {
        "fingerprint": dict(fp, cpu_model=f"Machine {i}"),
        "updated_unix": updated,
        "timings": {
            ind: {f"2^{k}": {"cpu:1": stat_entry(3 + i % 5, 1.0 + i / 7, 0.5)} for k in (10, 14)}
            for ind in ("sma", "ema")
        },
        "links": {},
        "balance": {},
        "future": [i, {"x": None}],
    }


def test_item7_foreign_entries_are_moved_as_bytes_written_compact_and_expired(tmp_path: Path):
    now = int(time.time())
    fid, fp = own()
    profile = tmp_path / "profile.json"
    n = 2000
    # Foreign entries in a formatting of their own (spaces, key order): they must come back
    # byte for byte, never re-serialised.
    texts = {
        f"{i:016x}": json.dumps(foreign_entry(i, now - 86_400), indent=None, sort_keys=(i % 2 == 0))
        for i in range(n)
    }
    old = {"f" * 16: json.dumps(foreign_entry(-1, now - 100 * 86_400))}
    body = ", ".join(f'"{k}": {v}' for k, v in {**texts, **old}.items())
    profile.write_text('{"schema_version": 1, "top_level_future": 5, "machines": {' + body + "}}")
    proc = run_child(SMA_CHILD, profile, THREADX_PROFILE_EXPIRY_DAYS="90")
    assert proc.returncode == 0, proc.stderr
    assert WARNING not in proc.stderr, proc.stderr
    raw = profile.read_text()
    assert "\n" not in raw  # compact
    for k, v in texts.items():
        assert f'"{k}":{v}' in raw  # the same bytes
    data = json.loads(raw)
    assert set(data["machines"]) == set(texts) | {fid}  # the 100-day-old entry expired
    assert data["top_level_future"] == 5
    mine = data["machines"][fid]
    assert mine["fingerprint"] == fp and mine["updated_unix"] >= now
    assert f'"{fid}":{{"fingerprint":{{' in raw


def test_item7_cli_profile_prune(tmp_path: Path):
    now = int(time.time())
    fid, fp = own()
    machines = {
        "00000000000000a1": foreign_entry(1, now - 10 * 86_400),
        "00000000000000a2": foreign_entry(2, now - 40 * 86_400),
        "00000000000000a3": foreign_entry(3, now - 400 * 86_400),
        fid: {
            "fingerprint": fp,
            "updated_unix": 5,  # this machine's entry is never pruned
            "timings": {"sma": {"2^12": {"cpu:1": stat_entry(2)}}},
            "links": {},
            "balance": {},
        },
    }
    profile = tmp_path / "profile.json"
    profile.write_text(json.dumps({"schema_version": 1, "machines": machines}))

    def cli(*args: str, **extra: str) -> subprocess.CompletedProcess:
        env = child_env(profile, **extra)
        if not extra:
            env.pop("THREADX_PROFILE_EXPIRY_DAYS", None)  # the default
        return subprocess.run(
            [sys.executable, "-m", "threadx", *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=CHILD_TIMEOUT,
            check=False,
        )

    proc = cli("profile", "prune", THREADX_PROFILE_EXPIRY_DAYS="0")
    assert proc.returncode == 0, proc.stderr
    assert "removed 0 entries" in proc.stdout  # 0 days: never expire
    proc = cli("profile", "prune")  # the configured default: 90 days
    assert proc.returncode == 0, proc.stderr
    assert "removed 1 entries" in proc.stdout and "00000000000000a3" in proc.stdout
    assert set(json.loads(profile.read_text())["machines"]) == {
        "00000000000000a1",
        "00000000000000a2",
        fid,
    }
    proc = cli("profile", "prune", "--days", "30")
    assert proc.returncode == 0, proc.stderr
    assert "00000000000000a2" in proc.stdout
    data = json.loads(profile.read_text())
    assert set(data["machines"]) == {"00000000000000a1", fid}
    assert data["machines"][fid]["timings"]["sma"]["2^12"]["cpu:1"]["samples"] == 2
    for bad in (["--days", "-1"], ["--days", "x"]):
        proc = cli("profile", "prune", *bad)
        assert proc.returncode == 2 and "--days" in proc.stderr, proc.stderr
    proc = cli("profile", "show", "--days", "3")
    assert proc.returncode == 2 and "prune" in proc.stderr
    with pytest.raises(ValueError, match="days"):
        threadx.profile.prune(-1)


# A large profile's first call takes this machine's entry from a fast search and parses the
# rest in the background: the entry must be the real one, and the parse must still catch a
# corrupt file (moved aside, this machine's entry kept).
MACHINE_CHILD = """
    import json, threadx
    first = threadx.profile.machine()  # before anything waits for the full parse
    threadx.profile.record("sma", 1000, "cpu:1", 1e-5)
    print(json.dumps({"first": first, "flushed": threadx.profile.flush(),
                      "after": threadx.profile.machine()}))
"""


def _large_profile(mine: dict, decoy: dict | None = None, tail: str = "}}") -> str:
    now = int(time.time())
    fid, _ = own()
    entries = [f'"{i:016x}":{json.dumps(foreign_entry(i, now))}' for i in range(6000)]  # ~5 MB
    if decoy is not None:  # the machine's key inside another entry, before the real one
        entries.insert(
            3, f'"{"e" * 16}":{json.dumps({**foreign_entry(0, now), "x": {fid: decoy}})}'
        )
    entries.insert(len(entries) // 2, f'"{fid}":{json.dumps(mine)}')
    text = '{"schema_version":1,"machines":{' + ",".join(entries) + tail
    assert len(text) > 4 << 20
    return text


@pytest.mark.parametrize("decoy", [False, True])
def test_item7_large_profile_first_call_reads_this_machines_entry(tmp_path: Path, decoy: bool):
    fid, fp = own()
    mine = {"fingerprint": fp, "updated_unix": 5, "timings": {"rsi": {"2^12": {"cpu:1": stat_entry(7)}}},
            "links": {}, "balance": {}}  # fmt: skip
    fake = {**mine, "timings": {"wma": {"2^12": {"cpu:1": stat_entry(9)}}}}
    profile = tmp_path / "profile.json"
    profile.write_text(_large_profile(mine, fake if decoy else None))
    proc = run_child(MACHINE_CHILD, profile)
    assert proc.returncode == 0 and WARNING not in proc.stderr, proc.stderr
    out = json.loads(proc.stdout)
    assert out["flushed"] is True
    assert out["after"]["timings"]["rsi"]["2^12"]["cpu:1"]["samples"] == 7, out["after"]
    assert "wma" not in out["after"]["timings"]
    if not decoy:
        assert out["first"]["timings"]["rsi"] == out["after"]["timings"]["rsi"]
    data = json.loads(profile.read_text())
    assert data["machines"][fid]["timings"]["rsi"]["2^12"]["cpu:1"]["samples"] == 7


def test_item7_large_corrupt_profile_is_moved_aside_by_the_background_parse(tmp_path: Path):
    """As at load (item 3's rule): the whole file is kept as the backup, byte for byte, and the
    new profile starts from this process's samples."""
    fid, fp = own()
    mine = {"fingerprint": fp, "updated_unix": 5, "timings": {"rsi": {"2^12": {"cpu:1": stat_entry(7)}}},
            "links": {}, "balance": {}}  # fmt: skip
    profile = tmp_path / "profile.json"
    text = _large_profile(mine, tail="},GARBAGE")
    profile.write_text(text)
    proc = run_child(MACHINE_CHILD, profile)
    assert proc.returncode == 0, proc.stderr
    assert "moved it to" in proc.stderr, proc.stderr
    assert json.loads(proc.stdout)["flushed"] is True
    (aside,) = tmp_path.glob("profile.json.corrupt-*")
    assert aside.read_text() == text
    data = json.loads(profile.read_text())
    assert data["machines"][fid]["timings"]["sma"]["2^9"]["cpu:1"]["samples"] == 1
