#!/usr/bin/env bash
# The GPU check: one command on a machine with an NVIDIA GPU, CUDA and Python 3.12, no Rust and no
# package registry needed. Installs .whl/ (made by scripts/gpu_wheels.sh on a build machine) into a
# temporary folder and runs, each step time-boxed:
#   1. threadx.gpu.status() (which GPUs, NVRTC, the kernel build path, or why not);
#   2. the gpu test suite (pytest -m gpu: CPU/GPU bit equality for every indicator, sizes, nulls,
#      NaN/inf, .over(), chunks, lazy/streaming, device sets, concurrent calls, fallbacks);
#   3. benchmarks/bench_gpu.py (times against the CPU and TA-Lib, and a bit-equality column);
#   4. benchmarks/bench_by.py --gpu (by= against .over(), and a 100-period x 10M-row sweep on the
#      GPU against the CPU, with a bit-equality check).
# Writes a report (default gpu_check_report/, or $OUT/ when set, as on the device tool) and exits
# non-zero when a step fails. Under 8 minutes on an H200 machine.
#
#     bash scripts/gpu_check.sh [report_dir | --install-only]
set -uo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
REPORT_DIR="${OUT:-$ROOT/gpu_check_report}"
[ $# -gt 0 ] && [ "$1" != "--install-only" ] && REPORT_DIR="$1"
mkdir -p "$REPORT_DIR"
REPORT="$REPORT_DIR/report.md"
PY="${PYTHON:-python3}"
# Wheels from .whl/ and .whl-polars/ (scripts/gpu_wheels.sh) go into .site/, which is kept: a
# machine that can only receive one folder at a time installs them over two calls
# (`bash scripts/gpu_check.sh --install-only` with .whl-polars/, then this with .whl/).
SITE="$ROOT/.site"
mkdir -p "$SITE"
for d in .whl-polars .whl; do
    if ls "$d"/*.whl >/dev/null 2>&1; then
        "$PY" -m pip install --quiet --no-index --no-deps --upgrade --target "$SITE" "$d"/*.whl || exit 2
    fi
done
export PYTHONPATH="$SITE${PYTHONPATH:+:$PYTHONPATH}"
if [ "${1:-}" = "--install-only" ]; then
    echo "installed into $SITE: $(ls "$SITE" | grep -c dist-info) packages"
    exit 0
fi
if ! "$PY" -c "import threadx, polars, numpy, talib, pytest" 2>/dev/null; then
    echo "missing packages in $SITE: run bash scripts/gpu_wheels.sh on a build machine and bring .whl/ and .whl-polars/" >&2
    exit 2
fi
export THREADX_PROFILE="$(mktemp -d)/profile.json"
status=0

step() {  # step NAME TIMEOUT_S COMMAND...: runs it, logs to the report folder, records the result
    local name="$1" limit="$2"
    shift 2
    local log="$REPORT_DIR/$name.log" started=$SECONDS rc
    echo "== $name (at most ${limit} s)"
    timeout "$limit" "$@" >"$log" 2>&1
    rc=$?
    tail -n 25 "$log"
    {
        echo "## $name: $([ $rc -eq 0 ] && echo ok || echo "FAILED (exit $rc$([ $rc -eq 124 ] && echo ', timed out'))") in $((SECONDS - started)) s"
        echo '```'
        tail -n 40 "$log"
        echo '```'
    } >>"$REPORT"
    [ $rc -eq 0 ] || status=1
}

{
    echo "# threadx GPU check"
    echo "$(date -u '+%Y-%m-%d %H:%M UTC'), $(uname -n), $("$PY" --version 2>&1)"
    nvidia-smi --query-gpu=index,name,driver_version,memory.total,memory.used --format=csv 2>&1 | sed 's/^/    /'
    echo
} >"$REPORT"

step status 120 "$PY" -c 'import json, threadx; s = threadx.gpu.status(); print(json.dumps(s, indent=1)); raise SystemExit(0 if s["available"] else 1)'
step gpu_tests 420 "$PY" -m pytest -q -p no:cacheprovider -m gpu -x --durations=10 \
    --junitxml="$REPORT_DIR/gpu_tests.xml" tests/test_gpu.py tests/test_gpu_auto_profiling.py
step bench_gpu 180 "$PY" benchmarks/bench_gpu.py --sizes "${GPU_CHECK_SIZES:-1e5,1e6,1e7}" --runs 3
step bench_sweep 240 "$PY" benchmarks/bench_by.py --rounds 1 --runs 2 --gpu \
    --gpu-rows "${GPU_CHECK_SWEEP_ROWS:-10000000}" --gpu-periods 100

echo "== report: $REPORT ($([ $status -eq 0 ] && echo 'all steps passed' || echo 'a step FAILED'))"
exit $status
