#!/usr/bin/env bash
# On a GPU machine: build the CUDA extension, run the GPU tests and the modulation benchmark,
# and leave everything under ${OUT:-gpu_check_out}. Prints a short summary last.
# Offline machines: put wheels of missing packages (dacite, pytorch-msssim, constriction, lpips)
# in .whl/ first. With LEGO=<Blender lego folder> it then times the NeRF models on lego at full
# size (400x400, val split): each of NERF_MODELS (default ngp) trains for about NERF_SECONDS
# (default 300) seconds, evaluated on 20 val views; with DEADLINE=<seconds> the NeRF time shrinks so
# that the script ends by then (for time-limited machines). The extension compile test (tests/test_cuda_build.py)
# runs in CI; the build step here already compiles the same sources for this GPU. At most 8 files
# land in the output folder (what a time-limited device machine sends back).
set -uo pipefail
cd "$(dirname "$0")/.."
out="${OUT:-gpu_check_out}"
mkdir -p "$out"
export CAMFIELDS_CACHE="${CAMFIELDS_CACHE:-/tmp/camfields_cache}"
source scripts/gpu_env.sh
python3 - >"$out/build.log" 2>&1 <<'PY'
import time
from camfields.ops.backend import cuda_extension_status
t = time.time()
ok, reason = cuda_extension_status()
print("extension", "built" if ok else f"FAILED: {reason}", f"in {time.time() - t:.0f} s")
PY
nvidia-smi >>"$out/build.log" 2>&1
timeout 150 python3 -m pytest -q -p no:cacheprovider tests/test_cuda_ops.py >"$out/gpu_tests.log" 2>&1
tests_rc=$?
gpu=$(python3 -c "import torch; print(torch.cuda.get_device_name().replace(' ', '_'))" 2>/dev/null || echo unknown)
timeout 200 python3 benchmarks/bench_modulate.py --out "$out/modulate_${gpu}.json" >"$out/bench_modulate.txt" 2>&1
bench_rc=$?
timeout 60 python3 benchmarks/bench_modulate.py --ops dense2d,triplane,hash --points 20 --channels 128 \
  --deterministic --out "$out/modulate_deterministic_${gpu}.json" >>"$out/bench_modulate.txt" 2>&1
for case in dense2d,20,128,scalar triplane,20,128,scalar hash,20,128,channel; do  # where the time goes
  timeout 60 python3 benchmarks/bench_modulate.py --profile "$case" --out /dev/null
done >"$out/profile.txt" 2>&1
nerf_rc=skipped
if [ -n "${LEGO:-}" ]; then
  seconds="${NERF_SECONDS:-300}"
  if [ -n "${DEADLINE:-}" ]; then  # leave about 90 s per model for the probe fit and the evaluation
    models=$(echo "${NERF_MODELS:-ngp}" | tr ',' ' ' | wc -w)
    left=$(( (DEADLINE - SECONDS) / models - 90 ))
    [ "$left" -lt "$seconds" ] && seconds=$left
  fi
  printf 'extends = "nerf/lego"\neval_views = 20\nturntable_frames = 0\n' >/tmp/lego_gpu.toml
  limit=$(( ${DEADLINE:-100000} - SECONDS ))
  timeout "$limit" python3 benchmarks/bench_nerf.py --data "$LEGO" --config /tmp/lego_gpu.toml --downscale 1 --eval-split val \
    --models "${NERF_MODELS:-ngp}" --seconds "$seconds" --workdir /tmp/nerf_work \
    --out "$out/nerf_lego_400_${gpu}.json" >"$out/bench_nerf.txt" 2>&1
  nerf_rc=$?
  echo "nerf: ${seconds} s per model" >>"$out/bench_nerf.txt"
fi
echo "== summary ($gpu) =="
head -n 1 "$out/build.log"
grep -E "passed|failed|error" "$out/gpu_tests.log" | tail -n 5
echo "gpu tests exit $tests_rc; benchmark exit $bench_rc; nerf exit $nerf_rc"
tail -n 40 "$out/bench_modulate.txt"
[ -f "$out/bench_nerf.txt" ] && grep -v Warning "$out/bench_nerf.txt" | tail -n 12
