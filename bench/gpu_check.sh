#!/usr/bin/env bash
# The standing GPU check: run it first whenever an issue is lent a GPU (see cuda/README.md).
#
#   bash bench/gpu_check.sh [OUT_DIR]        # default: $OUT if set (the device tool's), else gpu_check_out/
#
# On a fresh GPU machine with only torch (and nvcc) it, in under 8 minutes:
#   1. builds the CUDA extension (nerfkit_cuda) and the CPU one,
#   2. runs the CUDA parity tests (tests marked `cuda`) with CUDA_LAUNCH_BLOCKING=1, and the check
#      that gsplat and the CPU rasterizer agree on a distorted capture (tests/methods, marked `cuda`),
#   3. benchmarks the kernels against their twins (and nerfacc when it imports and builds),
#   4. trains ngp and splat on object-a for a fixed time with native CUDA on,
# and writes every figure to OUT_DIR (one file per step, plus summary.txt with each step's exit code
# and seconds). Each step has its own time limit; a failing or timed-out step is recorded and the
# rest still run. Python packages missing there can travel as wheels in .whl/ (installed with
# --no-index into /tmp/site); the scene is $NERFKIT_SCENE, else shared/scenes/object-a or
# ../shared/scenes/object-a.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT_DIR=${1:-${OUT:-gpu_check_out}}
mkdir -p "$OUT_DIR"
export PYTHONUNBUFFERED=1
if compgen -G ".whl/*.whl" >/dev/null; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
        && export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
SCENE=${NERFKIT_SCENE:-}
for candidate in shared/scenes/object-a ../shared/scenes/object-a; do
    [ -z "$SCENE" ] && [ -d "$candidate" ] && SCENE=$candidate
done
SUMMARY="$OUT_DIR/summary.txt"
: > "$SUMMARY"

step() {  # step NAME SECONDS COMMAND...: run with a limit, output to NAME.txt, record rc and time
    local name=$1 limit=$2; shift 2
    local start=$SECONDS
    timeout "$limit" "$@" > "$OUT_DIR/$name.txt" 2>&1
    local rc=$?
    echo "$name rc=$rc seconds=$((SECONDS - start))" | tee -a "$SUMMARY"
}

step environment 30 bash -c 'date -u; nvidia-smi; nvcc --version; python3 -c "import torch, sys; print(sys.version); \
print(\"torch\", torch.__version__, \"cuda\", torch.version.cuda, torch.cuda.get_device_name())"'
step build 200 python3 -c "from nerfkit.ops import _native_build as b; b.build('cuda', verbose=True); \
b.build('cpu'); print('built')"
step parity 150 env CUDA_LAUNCH_BLOCKING=1 NERFKIT_NATIVE=1 python3 -m pytest -q -m cuda -p no:cacheprovider \
    tests/ops tests/render
step lens 150 env NERFKIT_NATIVE=1 python3 -m pytest -q -m cuda -p no:cacheprovider \
    tests/methods/test_splat_lens_gsplat.py
step kernels 90 env NERFKIT_NATIVE=1 python3 bench/bench_kernels.py --device cuda
if [ -n "$SCENE" ]; then
    step train_ngp 80 env NERFKIT_NATIVE=1 python3 bench/bench_train.py "$SCENE" --method ngp --times 20,40 \
        --device cuda --output-dir /tmp/gpu_check_runs
    step train_splat 80 env NERFKIT_NATIVE=1 python3 bench/bench_train.py "$SCENE" --method splat --times 20,40 \
        --device cuda --output-dir /tmp/gpu_check_runs
else
    echo "train: no scene (set NERFKIT_SCENE or carry shared/scenes/object-a); skipped" | tee -a "$SUMMARY"
fi
echo "figures in $OUT_DIR" | tee -a "$SUMMARY"
