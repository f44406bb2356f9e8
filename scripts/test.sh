#!/usr/bin/env bash
# Quick start 2/2: install everything and run every test: Rust kernels/exec (cargo test, no Python
# linked), the pytest suite, and the pytest suite again against the lowest supported Polars.
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"

echo "== cargo test (pure-Rust kernels and executor)"
cargo test --quiet

echo "== pytest (polars $("$VENV_PY" -c 'import polars; print(polars.__version__)'))"
"$VENV_PY" -m pytest -q -p no:cacheprovider -m "not gpu" tests

# The GPU suite (pytest -m gpu) needs an NVIDIA GPU; elsewhere say why it did not run.
if gpu_reason=$("$VENV_PY" -c 'import threadx; s = threadx.gpu.status(); print(s["reason"] or ""); raise SystemExit(0 if s["available"] else 1)'); then
    echo "== pytest -m gpu"
    "$VENV_PY" -m pytest -q -p no:cacheprovider -m gpu tests
else
    echo "== pytest -m gpu: not run, no usable GPU here ($gpu_reason)"
fi

echo "== pytest against the lowest supported Polars (requirements-lowest.txt)"
bash scripts/test_lowest_polars.sh
