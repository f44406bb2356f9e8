# Sourced by the other scripts: a project virtualenv (.venv) with the pinned tools, and the plugin
# built into it in release mode (incremental: target/ is kept between runs).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
PYTHON="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
fi
VENV_PY="$ROOT/.venv/bin/python"
stamp=.venv/.requirements-dev.stamp
if [ ! -f "$stamp" ] || ! cmp -s requirements-dev.txt "$stamp"; then
    "$VENV_PY" -m pip install -q --upgrade pip
    "$VENV_PY" -m pip install -q -r requirements-dev.txt
    cp requirements-dev.txt "$stamp"
fi
# maturin develop needs VIRTUAL_ENV to know where to install.
export VIRTUAL_ENV="$ROOT/.venv"
export PATH="$VIRTUAL_ENV/bin:$PATH"
maturin develop --release --quiet 2>&1 | grep -vE "^(📦|✏️|🛠|🔗|🐍|⚠️ Warning: You)" || true
"$VENV_PY" -c "import threadx" # fail early if the build did not install
