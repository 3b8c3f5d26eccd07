#!/usr/bin/env bash
# The GPU check of the CUDA backend (issue #4), for an H100/H200 machine that has nvcc, CMake,
# PyTorch, pybind11 and scikit-build-core but no network. From the repository root:
#
#     bash bench/gpu_check.sh          # about 4-6 minutes; PYTHON=... picks the interpreter
#
# 1. installs pyconvnet from this working tree: pip install --no-build-isolation --no-deps .
#    (CMake finds nvcc and builds pyconvnet._cuda for sm_80 and sm_90). The build and runtime
#    dependency scipy-openblas32 is usually missing on such a machine: the script installs it
#    from .whl/ at the repository root when that folder holds its wheel. Prepare the folder on a
#    machine with network access (and carry it along with the working tree):
#        pip download scipy-openblas32 --only-binary=:all: --no-deps -d .whl \
#            --python-version 3.12 --platform manylinux2014_x86_64
#    Without it the script stops and says so. The other runtime dependencies are only imported
#    by parts of pyconvnet that the check does not use.
# 2. runs tests/test_cuda.py from outside the tree (so that the installed package is imported),
#    where the CUDA tests run because a device is there;
# 3. runs `pyconvnet bench models --device cuda --compare-torch` (LeNet-5, alexnet_small and AlexNet
#    training steps next to PyTorch on the same GPU, each checked first);
# 4. runs bench/gpu_bench.py: every op at the AlexNet shapes (batch 128), the AlexNet training
#    step, and SGEMM 4096^3, against PyTorch + cuDNN in FP32 with TF32 off, ratio table last.
#
# A failing step does not stop the later ones (each runs under a time limit, so nothing can hang
# the check); the exit status is 1 if any step failed. With LOG_DIR set (e.g. LOG_DIR=$OUT), the
# full logs, the benchmark's JSON and a kernel-time profile of the AlexNet step land there.
set -uo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
PY=${PYTHON:-python3}
LOGS=${LOG_DIR:-$(mktemp -d /tmp/pyconvnet-gpu-check.XXXXXX)}
mkdir -p "$LOGS"
T0=$SECONDS
FAILED=()
step() { printf '\n==== %s  [%ds]\n' "$1" $((SECONDS - T0)); }
cd "$ROOT"

step "machine"
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.max.sm --format=csv,noheader || echo "nvidia-smi failed"
nvcc --version | tail -2
"$PY" -c "import sys, torch; print(sys.executable, sys.version.split()[0], '| torch', torch.__version__, \
'CUDA', torch.version.cuda, 'cuDNN', torch.backends.cudnn.version(), '|', torch.cuda.get_device_name())"

step "scipy-openblas32 (build and runtime dependency)"
if "$PY" -c "import scipy_openblas32" 2>/dev/null; then
  echo "present"
elif compgen -G ".whl/scipy_openblas32-*.whl" > /dev/null; then
  "$PY" -m pip install -q --no-index --find-links .whl scipy-openblas32
else
  echo "scipy-openblas32 is not installed and .whl/ holds no wheel of it: see the top of $0" >&2
  exit 2
fi

step "install from the working tree"
if ! CMAKE_BUILD_PARALLEL_LEVEL=$(nproc) timeout 300 "$PY" -m pip install --no-build-isolation \
    --no-deps -v . > "$LOGS/install.log" 2>&1; then
  grep -E "error|Error" "$LOGS/install.log" | head -40
  tail -30 "$LOGS/install.log"
  echo "install failed (full log: $LOGS/install.log)" >&2
  exit 1
fi
grep -E "pyconvnet: (building the CUDA backend|no CUDA backend)|warning" "$LOGS/install.log" | head -20 || true

WORK=$(mktemp -d)
cd "$WORK"  # import the installed package, not the source tree
if ! "$PY" - <<'PY'
import pyconvnet, pyconvnet.cuda as c
print("pyconvnet", pyconvnet.__file__)
assert c.is_available(), f"CUDA backend unusable: {c.why_unavailable()}"
print("device count", c.device_count(), "| GEMM backend", c.gemm_backend(),
      "| cuBLAS:", c.why_no_cublas() or "loaded")
PY
then
  echo "the CUDA backend does not load: nothing else can run" >&2
  exit 1
fi

step "CUDA tests"
timeout 240 "$PY" -m pytest "$ROOT/tests/test_cuda.py" -q -p no:cacheprovider --rootdir "$ROOT" \
  -rfEs --tb=short > "$LOGS/tests.log" 2>&1 || FAILED+=("CUDA tests")
grep -E "^(FAILED|ERROR)|passed|failed|error" "$LOGS/tests.log" | tail -40
grep -E "^E  " "$LOGS/tests.log" | head -40

step "training steps: pyconvnet bench models --device cuda --compare-torch"
timeout 150 "$PY" -m pyconvnet.cli bench models --device cuda --compare-torch --no-progress \
  --out "$LOGS/models" 2>&1 | tail -12 || FAILED+=("bench models")

step "benchmark"
timeout 300 "$PY" "$ROOT/bench/gpu_bench.py" --batch 128 --json "$LOGS/bench.json" \
  --profile "$LOGS/profile.txt" 2>&1 | tee "$LOGS/bench.log" || FAILED+=("benchmark")

step "done"
if [ ${#FAILED[@]} -gt 0 ]; then
  echo "FAILED: ${FAILED[*]} (logs in $LOGS)" >&2
  exit 1
fi
echo "logs in $LOGS"
