#!/usr/bin/env bash
# Runs the pytest suite with the lowest Polars we declare (pyproject: polars>=1.44.2) in a second
# virtualenv, importing the extension that scripts/env.sh built into python/threadx.
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
if [ ! -x .venv-lowest/bin/python ]; then
    "$PYTHON" -m venv .venv-lowest
fi
stamp=.venv-lowest/.requirements.stamp
if [ ! -f "$stamp" ] || ! cmp -s requirements-lowest.txt "$stamp"; then
    .venv-lowest/bin/python -m pip install -q --upgrade pip
    .venv-lowest/bin/python -m pip install -q -r requirements-lowest.txt
    cp requirements-lowest.txt "$stamp"
fi
PYTHONPATH="$ROOT/python" .venv-lowest/bin/python -c \
    "import polars, threadx; print('threadx', threadx.__version__, 'on polars', polars.__version__)"
# NVRTC for the kernel compile test: the wheel the main environment installed.
nvrtc_dir=$("$VENV_PY" -c 'import os, nvidia.cuda_nvrtc as m; print(os.path.join(list(m.__path__)[0], "lib"))' 2>/dev/null || true)
THREADX_NVRTC="$nvrtc_dir" PYTHONPATH="$ROOT/python" .venv-lowest/bin/python -m pytest -q -p no:cacheprovider -m "not gpu" tests
