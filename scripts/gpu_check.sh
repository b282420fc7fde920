#!/usr/bin/env bash
# On a GPU machine: build the CUDA extension, run the GPU tests and the modulation benchmark,
# and leave everything under ${OUT:-gpu_check_out}. Prints a short summary last.
# Offline machines: put wheels of missing packages (dacite, pytorch-msssim) in .whl/ first.
set -uo pipefail
cd "$(dirname "$0")/.."
out="${OUT:-gpu_check_out}"
mkdir -p "$out"
export CAMFIELDS_CACHE="$out/cache"
if [ -d .whl ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl >"$out/install.log" 2>&1
  export PYTHONPATH="/tmp/site:${PYTHONPATH:-}"
fi
export PYTHONPATH="$PWD:${PYTHONPATH:-}"  # camfields from this checkout, no install needed
nvidia-smi >"$out/nvidia-smi.txt" 2>&1
python3 - >"$out/build.log" 2>&1 <<'PY'
import time
from camfields.ops.backend import cuda_extension_status
t = time.time()
ok, reason = cuda_extension_status()
print("extension", "built" if ok else f"FAILED: {reason}", f"in {time.time() - t:.0f} s")
PY
python3 -m pytest -q -p no:cacheprovider tests/test_cuda_ops.py tests/test_cuda_build.py >"$out/gpu_tests.log" 2>&1
tests_rc=$?
gpu=$(python3 -c "import torch; print(torch.cuda.get_device_name().replace(' ', '_'))" 2>/dev/null || echo unknown)
python3 benchmarks/bench_modulate.py --out "$out/modulate_${gpu}.json" >"$out/bench_modulate.txt" 2>&1
bench_rc=$?
echo "== summary ($gpu) =="
cat "$out/build.log"
grep -E "passed|failed|error" "$out/gpu_tests.log" | tail -n 5
echo "gpu tests exit $tests_rc; benchmark exit $bench_rc"
tail -n 40 "$out/bench_modulate.txt"
