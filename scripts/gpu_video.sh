#!/usr/bin/env bash
# On a GPU machine: the video codec's rate-distortion at full size (issue 6's goals need it):
# scripts/eval_rd.py on VIDEO (Big Buck Bunny 1280x720 with the default config video/bunny),
# ffnerv and ffnerv_cam at the same sizes and epochs against x264 veryslow, results in
# ${OUT:-gpu_video_out}: rd.json, rd.png, plan.json and eval_rd.txt (the log). With
# DEADLINE=<seconds> (and no VIDEO_EPOCHS) eval_rd gets --time-budget: x264 runs first, then every
# fit is timed for a few steps and all get the same epochs, the most that end before the
# deadline; the run is also cut off at the deadline, and the points that finished are in
# points.json (per-point metrics of every fit that ended).
# Settings (environment): VIDEO (required), VIDEO_CONFIG (video/bunny), VIDEO_MODELS
# (ffnerv,ffnerv_cam), VIDEO_PARAMS (250000,500000,1000000: about 0.01 to 0.04 bpp at 6 bits),
# VIDEO_BITS (6), VIDEO_EPOCHS (the config's, or the time budget's), VIDEO_CODECS (x264),
# VIDEO_CRF (51,46,41,36,31), VIDEO_FIT_COST (with DEADLINE: plan with these EPOCH_SECONDS,ONCE_SECONDS
# per fit instead of timing each fit, eval_rd's --fit-cost). Offline machines: wheels of missing packages in .whl/ (as for
# scripts/gpu_run.sh).
set -uo pipefail
cd "$(dirname "$0")/.."
out="${OUT:-gpu_video_out}"
work="${VIDEO_WORK:-/tmp/rd_work}"
mkdir -p "$out"
source scripts/gpu_env.sh
epochs=()
if [ -n "${VIDEO_EPOCHS:-}" ]; then
  epochs=(--epochs "$VIDEO_EPOCHS")
elif [ -n "${DEADLINE:-}" ]; then
  epochs=(--time-budget "$((DEADLINE - SECONDS - 20))")  # 20 s for python's start and the last writes
  [ -n "${VIDEO_FIT_COST:-}" ] && epochs+=(--fit-cost "$VIDEO_FIT_COST")
fi
timeout "${DEADLINE:-100000}" python3 scripts/eval_rd.py --video "${VIDEO:?set VIDEO to the clip}" \
  --config "${VIDEO_CONFIG:-video/bunny}" --models "${VIDEO_MODELS:-ffnerv,ffnerv_cam}" \
  --params "${VIDEO_PARAMS:-250000,500000,1000000}" --bits "${VIDEO_BITS:-6}" "${epochs[@]}" \
  --codecs "${VIDEO_CODECS:-x264}" --crf "${VIDEO_CRF:-51,46,41,36,31}" --out "$work" >"$out/eval_rd.txt" 2>&1
rc=$?
cp "$work"/rd.json "$work"/rd.png "$work"/plan.json "$out"/ 2>/dev/null
python3 - "$work" "$out/points.json" <<'PY'
import json, sys
from pathlib import Path
points = {p.parent.name: json.loads(p.read_text()) for p in sorted(Path(sys.argv[1]).glob("*/metrics.json"))}
Path(sys.argv[2]).write_text(json.dumps(points, indent=1))
PY
echo "eval_rd exit $rc" >>"$out/eval_rd.txt"
tail -n 20 "$out/eval_rd.txt"
