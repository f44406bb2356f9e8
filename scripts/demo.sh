#!/usr/bin/env bash
# Quick start 1/2: install (venv + release build), then the indicator tour on built-in data and
# the auto-profiling demo (machine, autotune, decisions, balance, live bit-identical fusion).
REQUIREMENTS=requirements-demo.txt source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
"$VENV_PY" -m threadx demo
exec "$VENV_PY" -m threadx.demo_gpu_auto
