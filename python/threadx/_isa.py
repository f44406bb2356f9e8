"""Checks, before the compiled kernels load, that this CPU can run them.

On x86-64 the extension is compiled for AVX2 (``.cargo/config.toml``; docs/architecture.md,
"CPU features"). Loading it on a CPU without AVX2 would end the interpreter with an illegal
instruction the first time a kernel runs, so ``import threadx`` refuses such a CPU with an error
that says what is missing and how to build for it instead. Where the CPU's features cannot be
read, the import goes ahead.
"""

from __future__ import annotations

import os
import platform
import subprocess
import sys

#: What the x86-64 build enables beyond the baseline (``.cargo/config.toml``), as the kernel names
#: it in ``/proc/cpuinfo``.
REQUIRED_X86 = ("avx2",)

#: Set to ``1`` after building with ``RUSTFLAGS="-C target-cpu=native"`` (or any build without
#: AVX2) on an older CPU: the check is then skipped.
SKIP_ENV = "THREADX_SKIP_CPU_CHECK"


def is_x86_64(machine: str) -> bool:
    """Whether ``machine`` (``platform.machine()``) is x86-64, the one build with requirements."""
    return machine.lower() in ("x86_64", "amd64")


def missing_features(flags: set[str] | None, machine: str) -> list[str]:
    """The required features ``flags`` (lowercase CPU feature names, ``None`` when unknown) lack
    on ``machine`` (``platform.machine()``)."""
    if not is_x86_64(machine) or flags is None:
        return []
    return [f for f in REQUIRED_X86 if f not in flags]


def cpu_flags() -> set[str] | None:
    """This CPU's feature names, lowercase, where the platform says; ``None`` when it does not."""
    try:
        if sys.platform.startswith("linux"):
            with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
                for line in f:
                    if line.startswith("flags"):
                        return set(line.split(":", 1)[1].lower().split())
            return None
        if sys.platform == "darwin":
            out = subprocess.run(
                ["sysctl", "-n", "machdep.cpu.features", "machdep.cpu.leaf7_features"],
                capture_output=True,
                text=True,
                timeout=5,
                check=False,
            ).stdout
            return set(out.lower().replace(".", "_").split()) or None
        if sys.platform == "win32":
            import ctypes

            # PF_AVX2_INSTRUCTIONS_AVAILABLE
            has = ctypes.windll.kernel32.IsProcessorFeaturePresent(40)  # type: ignore[attr-defined]
            return {"avx2"} if has else set()
    except (OSError, subprocess.SubprocessError, AttributeError):
        return None
    return None


def check_cpu() -> None:
    """Raises ``ImportError`` naming the missing features when this CPU cannot run the build."""
    if os.environ.get(SKIP_ENV) == "1":
        return
    machine = platform.machine()
    if not is_x86_64(machine):
        return  # nothing to check: no file read or `sysctl` run on every import
    missing = missing_features(cpu_flags(), machine)
    if missing:
        raise ImportError(
            f"threadx: this CPU lacks {', '.join(missing)}, which the compiled kernels use "
            "(threadx is built for x86-64 with AVX2, like Polars' default runtime). Rebuild it "
            'for this CPU with RUSTFLAGS="-C target-cpu=native" set (for example '
            f'RUSTFLAGS="-C target-cpu=native" bash scripts/env.sh), then set {SKIP_ENV}=1.'
        )
