# Sourced by the other scripts: a project virtualenv (.venv) with the pinned tools, and the plugin
# built into it in release mode (incremental: target/ is kept between runs). One line per phase;
# the tools' own output goes to .venv.setup.log, shown when a phase fails.
# REQUIREMENTS (default requirements-dev.txt) names what to install: scripts/demo.sh asks for
# requirements-demo.txt, a subset, so a first demo does not download the test and benchmark stack.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
PYTHON="${PYTHON:-python3}"
REQUIREMENTS="${REQUIREMENTS:-requirements-dev.txt}"
SETUP_LOG="$ROOT/.venv.setup.log"
: >"$SETUP_LOG"

setup_step() {  # setup_step "what" command...: runs it logged; on failure shows the log's tail
    echo "threadx setup: $1"
    shift
    if ! "$@" >>"$SETUP_LOG" 2>&1; then
        echo "threadx setup failed: $* (full log: $SETUP_LOG)" >&2
        tail -n 30 "$SETUP_LOG" >&2
        exit 1
    fi
}

if [ ! -x .venv/bin/python ]; then
    setup_step "creating the virtualenv .venv" "$PYTHON" -m venv .venv
fi
VENV_PY="$ROOT/.venv/bin/python"
# A requirements file is installed once per content (its copy is the stamp); the dev set is a
# superset of the demo set, so a venv set up for the tests serves the demo as it is.
installed() { [ -f ".venv/.$1.stamp" ] && cmp -s "$1" ".venv/.$1.stamp"; }
if ! installed "$REQUIREMENTS" && ! installed requirements-dev.txt; then
    setup_step "upgrading pip" "$VENV_PY" -m pip install --upgrade pip
    setup_step "installing the pinned Python packages of $REQUIREMENTS" \
        "$VENV_PY" -m pip install -r "$REQUIREMENTS"
    cp "$REQUIREMENTS" ".venv/.$REQUIREMENTS.stamp"
fi
# maturin develop needs VIRTUAL_ENV to know where to install.
export VIRTUAL_ENV="$ROOT/.venv"
export PATH="$VIRTUAL_ENV/bin:$PATH"
if [ -d target/release/deps ] && ls target/release/deps/libpolars_core-* >/dev/null 2>&1; then
    what="building threadx (release, incremental)"
else
    what="compiling threadx and Polars in release mode: about 7 minutes the first time on 2 cores"
fi
setup_step "$what" maturin develop --release
"$VENV_PY" -c "import threadx" # fail early if the build did not install
