#!/usr/bin/env bash
# On a GPU machine: build the CUDA extension, run the GPU tests and the modulation benchmark,
# and leave everything under ${OUT:-gpu_check_out}. Prints a short summary last.
set -uo pipefail
cd "$(dirname "$0")/.."
out="${OUT:-gpu_check_out}"
mkdir -p "$out"
export CAMFIELDS_CACHE="$out/cache"
pip install -e . --no-deps -q >"$out/install.log" 2>&1 || pip install -e . -q >>"$out/install.log" 2>&1
nvidia-smi >"$out/nvidia-smi.txt" 2>&1
python - >"$out/build.log" 2>&1 <<'PY'
import time
from camfields.ops.backend import cuda_extension_status
t = time.time()
ok, reason = cuda_extension_status()
print("extension", "built" if ok else f"FAILED: {reason}", f"in {time.time() - t:.0f} s")
PY
python -m pytest -q tests/test_cuda_ops.py tests/test_cuda_build.py >"$out/gpu_tests.log" 2>&1
tests_rc=$?
gpu=$(python -c "import torch; print(torch.cuda.get_device_name().replace(' ', '_'))" 2>/dev/null || echo unknown)
python benchmarks/bench_modulate.py --out "$out/modulate_${gpu}.json" >"$out/bench_modulate.txt" 2>&1
bench_rc=$?
echo "== summary ($gpu) =="
cat "$out/build.log"
tail -n 3 "$out/gpu_tests.log"
echo "gpu tests exit $tests_rc; benchmark exit $bench_rc"
tail -n 40 "$out/bench_modulate.txt"
