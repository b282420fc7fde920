#!/usr/bin/env bash
# The one GPU script: on a GPU machine, in this order, each step under its own timeout and the
# whole run within DEADLINE seconds (default 480) by construction (cap / minimum to start, s):
#   build    (200 / 30) the CUDA extension (JIT, cached in $CAMFIELDS_CACHE) and nvidia-smi -> build.log
#   tests    (180 / 60) the GPU tests: fused kernels vs PyTorch (float64 gradchecks included), the
#            hash encoding, no host wait in a training step                      -> gpu_tests.log
#   kernels  (150 / 60) bench_modulate.py --goals: issue 28's goal rows, pass/fail
#                                                                  -> kernels/modulate_goals_<gpu>.json
#   steps    (150 / 60) bench_end_to_end.py: image / vanilla_cam / ngp training steps/s,
#            CAMFIELDS_BACKEND=torch vs fused (NeRF rows need LEGO)     -> kernels/end_to_end_<gpu>.json
#   nerf     (the time left / 150) with LEGO: bench_nerf.py ngp vs ngp_cam at nerf/lego_compact
#            (2^14-entry hash tables, 0.5 M parameters) --compress 8, each fit evaluated as float
#            and decoded from its 8-bit scene.camf (PSNR and file bytes: issue 29's "under 1 MB"
#            lego row). Estimate: 2 x (its fit + about 35 s: a 300-step probe, 10 val views
#            rendered twice, the ~0.5 MB file encoded and decoded (about 1 s each on a 2-core CPU)).
#            With KODAK it leaves kodak its minimum where both then fit.
#                                               -> nerf/lego/ngp_ngp_cam_2e14_400x400_<gpu>.json
#   kodak    (300 / 90) with KODAK (a folder of full-size Kodak PNGs): camfields eval-rd --task
#            image, image/kodak_rd_gpu, the latent-pyramid codecs pyramid_cam and pyramid at rate
#            weights 0.003 / 0.01 / 0.03 (about 1.1 / 0.5 / 0.2 bpp at 384x256 on the CPU), 6-bit
#            files, vs JPEG / WebP / AVIF / JPEG 2000, in two rounds: the first image, then every
#            image (the first one's fits resumed); each round's rd.json replaces the result file as
#            it ends, so a cut run keeps the last finished round (its "count" says how many images).
#            Estimate, unmeasured on a GPU: round 1 about 90 s (6 fits x (2000 full-image steps at
#            about 4 ms + 3 s), baselines 10 s, start 10 s), both rounds on 3 images about 230 s.
#                                        -> image/kodak/rd_pyramid_cam_6bit_768x512_<gpu>.json
# The benchmarks' tables go to bench.log; summary.txt is written (and printed) last. Each file
# lands in ${OUT:-gpu_run_out} as soon as it exists, so a run that is cut off still returns what
# it had (8 files at most, what the device tool sends back: no rd.png). The result files sit in
# benchmarks/results/'s layout (<gpu> as benchmarks/results_layout.py tags it, e.g. h200): copy
# $OUT/kernels, $OUT/nerf and $OUT/image there to commit them. A step starts only if the time left
# allows its minimum, and is cut at the smaller of its cap and the time left.
# Settings (environment): LEGO (the 400x400 lego folder, e.g. .gpudata/lego), KODAK (a folder of
# Kodak PNGs at full size, e.g. .gpudata/kodak; docs/gpu.md names them), DEADLINE (480), STEPS
# (build,tests,kernels,steps,nerf,kodak: a subset for a rerun), GPU_TESTS (the test files),
# PYTHON (python3).
# Offline machines: wheels of missing packages in .whl/ (scripts/gpu_env.sh installs them).
# DRY_RUN=1: every step on the CPU at tiny sizes (no CUDA build: the sources are listed; the
# GPU tests are collected, not run; kodak's images downscaled 8x, two rate weights, 3 steps;
# torch on one thread; DEADLINE 900), to check the script (tests/benchmarks/test_gpu_script.py).
set -uo pipefail
cd "$(dirname "$0")/.."
out="${OUT:-gpu_run_out}"
mkdir -p "$out/kernels"
export CAMFIELDS_CACHE="${CAMFIELDS_CACHE:-/tmp/camfields_cache}" PYTHONUNBUFFERED=1
source scripts/gpu_env.sh
dry="${DRY_RUN:-0}"
py="${PYTHON:-python3}"
deadline="${DEADLINE:-$([ "$dry" = 1 ] && echo 900 || echo 480)}"
steps=",${STEPS:-build,tests,kernels,steps,nerf,kodak},"
reserve=10  # seconds kept for the summary
results=()
work=$(mktemp -d /tmp/gpu_run.XXXXXX)  # the NeRF and Kodak fits and their configs
trap 'rm -rf "$work"' EXIT

limit_for() {  # limit_for CAP MIN: the seconds a step may take now, 0 when fewer than MIN are left
  local left=$((deadline - SECONDS - reserve))
  if [ "$left" -lt "$2" ]; then echo 0; elif [ "$left" -lt "$1" ]; then echo "$left"; else echo "$1"; fi
}

run_step() {  # run_step NAME CAP MIN LOG COMMAND...: COMMAND under its limit, output appended to LOG
  local name=$1 cap=$2 min=$3 log=$4 limit start rc
  shift 4
  if [[ $steps != *",$name,"* ]]; then return; fi
  limit=$(limit_for "$cap" "$min")
  if [ "$limit" -le 0 ]; then
    results+=("$name: skipped, $((deadline - SECONDS)) s left")
    return
  fi
  start=$SECONDS
  echo "== $name (limit $limit s): $*" >>"$log"
  timeout -k 5 "$limit" "$@" >>"$log" 2>&1
  rc=$?
  if [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then rc="$rc (cut at the $limit s limit)"; fi
  results+=("$name: exit $rc after $((SECONDS - start)) s")
}

kodak_rounds() {  # kodak_rounds PYTHON FITS RESULT EVAL_RD_ARGS...: eval-rd --out FITS on KODAK's
  # first PNG, then (where there are more) on all of them, the first one's fits resumed; each
  # round's rd.json is copied to RESULT as the round ends
  local py=$1 fits=$2 result=$3 source
  shift 3
  local images=("$KODAK"/*.png)
  if [ ! -f "${images[0]}" ]; then
    echo "kodak: $KODAK holds no .png images"
    return 2
  fi
  local sources=("${images[0]}")
  if [ "${#images[@]}" -gt 1 ]; then sources+=("$KODAK"); fi
  mkdir -p "$(dirname "$result")"
  for source in "${sources[@]}"; do
    "$py" -m camfields eval-rd --task image --images "$source" --out "$fits" "$@" || return
    cp "$fits/rd.json" "$result"
    echo "kodak: rd.json of $source after $SECONDS s -> $result"
  done
}
export -f kodak_rounds

gpu_tests=()
for f in ${GPU_TESTS:-tests/ops/test_cuda_ops.py tests/ops/test_hash_encode.py tests/ops/test_sync.py}; do
  [ -f "$f" ] && gpu_tests+=("$f")
done
if [ "$dry" = 1 ]; then
  gpu=cpu
  export OMP_NUM_THREADS=1  # tiny tensors: one thread is faster, most of all on a busy machine
  run_step build 300 0 "$out/build.log" "$py" -c \
    "from camfields.cuda_build import SOURCE_NAMES; print('dry run, no build; sources:', *SOURCE_NAMES)"
  run_step tests 300 0 "$out/gpu_tests.log" "$py" -m pytest -q -p no:cacheprovider --collect-only "${gpu_tests[@]}"
  run_step kernels 300 0 "$out/bench.log" "$py" benchmarks/bench_modulate.py --goals --device cpu --tiny \
    --out "$out/kernels/modulate_goals_$gpu.json"
  run_step steps 300 0 "$out/bench.log" "$py" benchmarks/bench_end_to_end.py --device cpu --tiny --warmup 1 \
    --seconds 0.05 ${LEGO:+--data "$LEGO"} --out "$out/kernels/end_to_end_$gpu.json"
  nerf_args=(--device cpu --downscale 16 --steps 3)
  cat >"$work/lego.toml" <<'TOML'
extends = "nerf/lego_compact"
eval_views = 1
turntable_frames = 0
sampler = { grid_resolution = 16, steps_per_diagonal = 32 }
train = { batch_size = 64 }
field = { trunk = { encoding = { hash = { levels = 4, log2_table_size = 10 } } } }
TOML
  cat >"$work/kodak.toml" <<'TOML'
extends = "image/kodak_rd_gpu"
downscale = 8
TOML
  kodak_args=(--config "$work/kodak.toml" --rate-weights 0.01,0.1 --steps 3 --device cpu)
  nerf_min=0 kodak_cap=300 kodak_min=0
else
  run_step build 200 30 "$out/build.log" "$py" -c "
import time
from camfields.ops.backend import cuda_extension_status
t = time.time()
ok, reason = cuda_extension_status()
print('extension', 'built' if ok else f'FAILED: {reason}', f'in {time.time() - t:.0f} s')"
  nvidia-smi >>"$out/build.log" 2>&1
  gpu=$("$py" -c "import sys, torch; sys.path.insert(0, 'benchmarks'); from results_layout import device_tag
print(device_tag(torch.device('cuda')))" 2>/dev/null || echo unknown)
  run_step tests 180 60 "$out/gpu_tests.log" "$py" -m pytest -q -p no:cacheprovider --durations=10 "${gpu_tests[@]}"
  run_step kernels 150 60 "$out/bench.log" "$py" benchmarks/bench_modulate.py --goals \
    --out "$out/kernels/modulate_goals_$gpu.json"
  run_step steps 150 60 "$out/bench.log" "$py" benchmarks/bench_end_to_end.py --warmup 20 --seconds 8 \
    ${LEGO:+--data "$LEGO"} --out "$out/kernels/end_to_end_$gpu.json"
  printf 'extends = "nerf/lego_compact"\neval_views = 10\nturntable_frames = 0\n' >"$work/lego.toml"
  nerf_args=(--downscale 1)
  kodak_args=(--config image/kodak_rd_gpu --rate-weights 0.003,0.01,0.03)
  nerf_min=150 kodak_cap=300 kodak_min=90
fi
keep=0  # seconds nerf leaves to kodak: its minimum, where nerf then still has its own
if [ -n "${KODAK:-}" ] && [[ $steps == *",kodak,"* ]] && [ $((deadline - SECONDS - reserve - kodak_min)) -ge "$nerf_min" ]; then
  keep=$kodak_min
fi
nerf_cap=$((deadline - SECONDS - reserve - keep))
# each model: a 300-step probe, the fit, and its evaluations, float and from the file (about 35 s besides the fit)
[ "$dry" = 1 ] || nerf_args+=(--seconds $((nerf_cap / 2 - 35)))
if [ -n "${LEGO:-}" ]; then
  mkdir -p "$out/nerf/lego"
  nerf_out="$out/nerf/lego/ngp_ngp_cam_2e14_400x400_$gpu.json"
  run_step nerf "$nerf_cap" "$nerf_min" "$out/bench.log" "$py" benchmarks/bench_nerf.py --data "$LEGO" \
    --config "$work/lego.toml" --eval-split val --models ngp,ngp_cam --compress 8 "${nerf_args[@]}" \
    --workdir "$work/nerf" --out "$nerf_out"
  if [ -d "$work/nerf" ] && [ ! -f "$nerf_out" ]; then  # cut off: the models that finished
    "$py" - "$work/nerf" "$nerf_out" <<'PY'
import json, sys
from pathlib import Path
done = {p.parent.name: json.loads(p.read_text()) for p in sorted(Path(sys.argv[1]).glob("*/metrics.json"))}
Path(sys.argv[2]).write_text(json.dumps({"partial": True, "results": done}, indent=1))
PY
  fi
elif [[ $steps == *",nerf,"* ]]; then
  results+=("nerf: skipped, no LEGO folder given")
fi
if [ -n "${KODAK:-}" ]; then
  run_step kodak "$kodak_cap" "$kodak_min" "$out/bench.log" bash -c 'kodak_rounds "$@"' kodak_rounds "$py" \
    "$work/kodak" "$out/image/kodak/rd_pyramid_cam_6bit_768x512_$gpu.json" --models pyramid_cam,pyramid --bits 6 \
    --quiet "${kodak_args[@]}"
elif [[ $steps == *",kodak,"* ]]; then
  results+=("kodak: skipped, no KODAK folder given")
fi

{
  echo "== gpu_run summary: $gpu, $(date -u +%Y-%m-%dT%H:%MZ), ${SECONDS} s of DEADLINE=$deadline s =="
  printf '%s\n' "${results[@]}"
  grep -E "^extension|^dry run" "$out/build.log" 2>/dev/null
  grep -E "passed|failed|error|collected" "$out/gpu_tests.log" 2>/dev/null | tail -n 3
  grep -v -i -E "warn|^\s*$" "$out/bench.log" 2>/dev/null | tail -n 60
} >"$out/summary.txt"
cat "$out/summary.txt"
