"""The CPU check that runs before the compiled kernels load (python/threadx/_isa.py)."""

from __future__ import annotations

import os
import platform
import re
import subprocess
import sys
from pathlib import Path

import pytest
from threadx import _isa

ROOT = Path(__file__).resolve().parent.parent


def test_the_check_requires_exactly_what_the_build_enables():
    """``.cargo/config.toml``'s x86-64 target features and the import check's list are the same
    set: a feature added to the build without the check would fault on older CPUs."""
    config = (ROOT / ".cargo" / "config.toml").read_text()
    section = config.split("[target.'cfg(target_arch = \"x86_64\")']", 1)[1]
    features = re.search(r"target-feature=([^\"]+)", section).group(1).split(",")
    assert all(f.startswith("+") for f in features), features
    assert sorted(f[1:] for f in features) == sorted(_isa.REQUIRED_X86)


@pytest.mark.parametrize(
    ("flags", "machine", "missing"),
    [
        ({"sse2", "avx", "fma"}, "x86_64", ["avx2"]),
        ({"sse2", "avx", "avx2"}, "x86_64", []),
        ({"sse2"}, "AMD64", ["avx2"]),
        (None, "x86_64", []),
        ({"neon"}, "aarch64", []),
        (set(), "arm64", []),
    ],
)
def test_missing_features(flags, machine, missing):
    assert _isa.missing_features(flags, machine) == missing


def test_a_cpu_without_avx2_is_refused_with_what_is_missing_and_what_to_do(monkeypatch):
    monkeypatch.setattr(_isa, "cpu_flags", lambda: {"sse2", "sse4_2", "avx"})
    monkeypatch.setattr(_isa.platform, "machine", lambda: "x86_64")
    monkeypatch.delenv(_isa.SKIP_ENV, raising=False)
    with pytest.raises(ImportError, match=r"lacks avx2.*target-cpu=native.*THREADX_SKIP_CPU_CHECK"):
        _isa.check_cpu()
    monkeypatch.setenv(_isa.SKIP_ENV, "1")
    _isa.check_cpu()  # a build for this CPU skips the check


def test_other_architectures_do_not_read_the_cpu(monkeypatch):
    """Off x86-64 the import reads nothing (on macOS that would be a subprocess per import)."""

    def unexpected():
        raise AssertionError("cpu_flags read off x86-64")

    monkeypatch.setattr(_isa, "cpu_flags", unexpected)
    monkeypatch.setattr(_isa.platform, "machine", lambda: "arm64")
    monkeypatch.delenv(_isa.SKIP_ENV, raising=False)
    _isa.check_cpu()


def test_this_machine_reports_its_features():
    """The real reader on this machine: Linux always lists flags, and x86-64 always has SSE2."""
    flags = _isa.cpu_flags()
    if sys.platform.startswith("linux") and platform.machine() == "x86_64":
        assert flags is not None and "sse2" in flags
        # The suite imports threadx, so this CPU passed the check: it must list what is required.
        assert _isa.missing_features(flags, platform.machine()) == []
    else:
        assert flags is None or isinstance(flags, set)


def test_import_fails_cleanly_on_a_cpu_without_avx2():
    """The whole import, in a fresh interpreter, on a CPU that reports no AVX2: an ImportError
    before the extension loads, not an illegal-instruction crash. The check module is loaded on
    its own first, with a CPU reader that reports SSE2 only, so the package's import uses it."""
    code = f"""
import importlib.util, platform, sys
spec = importlib.util.spec_from_file_location("threadx._isa", {str(ROOT / "python" / "threadx" / "_isa.py")!r})
isa = importlib.util.module_from_spec(spec)
spec.loader.exec_module(isa)
isa.cpu_flags = lambda: {{"sse2"}}
platform.machine = lambda: "x86_64"
sys.modules["threadx._isa"] = isa
try:
    import threadx
except ImportError as e:
    print("refused:", e)
print("loaded" if "threadx._internal" in sys.modules else "not loaded")
"""
    env = {k: v for k, v in os.environ.items() if k != _isa.SKIP_ENV}
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    assert "refused: threadx: this CPU lacks avx2" in out.stdout
    assert out.stdout.strip().endswith("not loaded")
