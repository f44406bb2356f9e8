#!/usr/bin/env bash
# Prepares a GPU check for a machine that has an NVIDIA GPU, CUDA and Python 3.12 but no Rust
# and no package registry: builds threadx's wheel here and downloads the Python 3.12 wheels the
# GPU suite needs, all into .whl/ (about 60 MB). Then, on the GPU machine, in a copy of this
# repository with .whl/ next to it:   bash scripts/gpu_check.sh
#
#     bash scripts/gpu_wheels.sh          # ~1 min incremental, ~20 min from a cold target/
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh" >/dev/null
cd "$ROOT"
rm -rf .whl .whl-polars && mkdir -p .whl .whl-polars
echo "== threadx wheel (release, abi3: one wheel serves Python 3.9+)"
maturin build --release --quiet -o .whl 2>&1 | grep -E "^(error|warning: unused)" || true
download() {  # download DEST PACKAGE==VERSION...: Python 3.12 manylinux x86_64 wheels, no deps
    local dest="$1"
    shift
    "$VENV_PY" -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 \
        --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
        --platform manylinux2014_x86_64 -d "$dest" "$@"
}
echo "== Python 3.12 wheels for the gpu suite and bench_gpu.py (pinned as in requirements-dev.txt)"
download .whl numpy==2.4.6 TA-Lib==0.8.2 \
    pytest==9.2.0 pluggy==1.7.0 iniconfig==2.3.1 packaging==26.4 pygments==2.21.0
# Polars' runtime alone is ~54 MB: its own folder, so that each folder fits one device-tool call
# (64 MiB carried per call; see docs/gpu_auto_profiling.md, "Running the GPU check").
download .whl-polars polars==2.1.0 polars-runtime-32==2.1.0
for d in .whl .whl-polars; do
    echo "== $d/: $(du -sm "$d" | cut -f1) MB"
    ls -l "$d" | awk 'NR > 1 {printf "  %8.1f MB  %s\n", $5 / 1e6, $9}'
done
