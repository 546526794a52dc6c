#!/usr/bin/env bash
# GPU-only checks of the VOX-1 engine: one script, one NVIDIA GPU, under 8 minutes (timeouts: 300 s + 110 s,
# plus about 30 s of interpreter starts).
#   1. eager vs sdpa (vs flash_attention_2 when it passes its checks): prefill and decode tokens/s and peak
#      memory, qwen3-tts-talker geometry (28 layers, 16 q / 8 KV heads, head dim 128, bf16), batches 1..64;
#   2. the auto batch planner's estimate vs the true largest batch found by search, per implementation;
#   3. the OOM back-off with real torch.cuda.OutOfMemoryError (bench/gpu_oom_check.py).
# Usage:  bench/gpu_check.sh [RESULTS_DIR]      PYTHON=/path/to/python (torch + transformers), default python3
# Writes: RESULTS_DIR/env.txt bench.json bench.txt bench.log oom.json oom.txt oom.log summary.txt
# GPU_CHECK_ALLOW_CPU=1 runs step 1 on the CPU with the tiny preset (a plumbing test of this script only).
set -uo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
OUT="${1:-$ROOT/bench/gpu-results}"
PY="${PYTHON:-python3}"
mkdir -p "$OUT"
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
started=$(date +%s)

{
  date -u
  nvidia-smi --query-gpu=name,compute_cap,memory.total,driver_version --format=csv,noheader 2>/dev/null \
    || echo "nvidia-smi: not available"
  "$PY" -c "import torch, transformers; print('torch', torch.__version__, 'cuda', torch.version.cuda, \
'cuda available', torch.cuda.is_available()); print('transformers', transformers.__version__)"
  "$PY" -c "import importlib.metadata as m; print('flash-attn', m.version('flash-attn'))" 2>/dev/null \
    || echo "flash-attn: not installed"
} > "$OUT/env.txt" 2>&1
cat "$OUT/env.txt"

cpu=0
if ! "$PY" -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)" 2>/dev/null; then
  if [ "${GPU_CHECK_ALLOW_CPU:-0}" != 1 ]; then
    echo "error: $PY sees no CUDA GPU; run this on a machine with an NVIDIA GPU" >&2
    exit 2
  fi
  cpu=1
  echo "GPU_CHECK_ALLOW_CPU=1: plumbing run on the CPU (tiny preset, no largest-batch search, no OOM check)"
fi

status=0
echo "== 1+2. throughput, peak memory, largest batch vs auto planner"
if [ "$cpu" = 1 ]; then
  timeout 300 "$PY" -m engine.bench --preset tiny --impl auto --batch 1,4 --seq 32 --decode-tokens 4 --repeats 1 \
    --out "$OUT/bench.json" > "$OUT/bench.txt" 2> "$OUT/bench.log" || status=1
else
  # --time-limit bounds the measuring; timeout only catches a hang (bench.json is rewritten after every point)
  timeout 300 "$PY" -m engine.bench --preset qwen3-tts-talker --impl auto --batch 1,2,4,8,16,32,64 --seq 512 \
    --decode-tokens 32 --repeats 2 --find-max --max-search 4096 --time-limit 230 \
    --out "$OUT/bench.json" > "$OUT/bench.txt" 2> "$OUT/bench.log" || status=1
fi
if [ ! -s "$OUT/bench.txt" ] && [ -s "$OUT/bench.json" ]; then  # stopped early: the partial table
  "$PY" -c "import json, sys; from engine.bench import render_table; print(render_table(json.load(open(sys.argv[1]))))" \
    "$OUT/bench.json" > "$OUT/bench.txt" 2>> "$OUT/bench.log"
fi
cat "$OUT/bench.txt"

if [ "$cpu" = 0 ]; then
  echo "== 3. OOM back-off with real torch.cuda.OutOfMemoryError"
  timeout 110 "$PY" "$ROOT/bench/gpu_oom_check.py" --out "$OUT/oom.json" > "$OUT/oom.txt" 2> "$OUT/oom.log" || status=1
  cat "$OUT/oom.txt"
fi

elapsed=$(( $(date +%s) - started ))
{
  cat "$OUT/env.txt"; echo; cat "$OUT/bench.txt"
  [ -f "$OUT/oom.txt" ] && { echo; cat "$OUT/oom.txt"; }
  echo; echo "elapsed: ${elapsed} s; status: $([ $status = 0 ] && echo ok || echo FAILED, see *.log)"
} > "$OUT/summary.txt"
echo "results in $OUT (elapsed ${elapsed} s)"
exit $status
