#!/usr/bin/env bash
# Quick start 1/2: install (venv + release build) and run the demo on built-in data.
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
exec "$VENV_PY" -m threadx demo
