#!/usr/bin/env bash
# Quick start 2/2: install everything and run every test: Rust kernels/exec (cargo test, no Python
# linked), the pytest suite, and the pytest suite again against the lowest supported Polars.
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"

echo "== cargo test (pure-Rust kernels and executor)"
cargo test --quiet

echo "== pytest (polars $("$VENV_PY" -c 'import polars; print(polars.__version__)'))"
"$VENV_PY" -m pytest -q -p no:cacheprovider tests

echo "== pytest against the lowest supported Polars (requirements-lowest.txt)"
bash scripts/test_lowest_polars.sh
