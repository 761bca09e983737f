#!/usr/bin/env bash
# The GPU measurement of Sparse-Tuning against dense, in one command (about 8 minutes on one H100):
#   1. the fused received-attention kernels against an fp64 reference on the GPU (values, gradients);
#   2. eager bf16, FlashAttention pinned for every variant: ViT-B/16 images batch 128, VideoMAE ViT-B
#      batch 8 and 32, VideoMAE ViT-L batch 8; dense ViT, dense adapters, keep 0.5/0.7, the explicit
#      reference and the chunked-score kernel at 0.7; inference, training step, peak memory;
#   3. one torch.profiler trace per variant of the ViT-B video batch-8 run;
#   4. the same images and video batch 8 with every variant torch.compile'd (time-limited).
# Everything lands in OUT_DIR, packed at the end into results.tar.gz (tables, JSON, logs) and
# traces.tar.gz.
#
#   bash tools/gpu_check.sh [OUT_DIR]            # default outputs/gpu_check
#   SMALL=1 bash tools/gpu_check.sh /tmp/small   # the same steps at tiny shapes on the CPU (a dry run)
#
# PYTHON overrides the interpreter (default: the repository's .venv python, else python3).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OUT_DIR="${1:-outputs/gpu_check}"
if [ -z "${PYTHON:-}" ]; then
    if [ -x "$ROOT/.venv/bin/python" ]; then PYTHON="$ROOT/.venv/bin/python"; else PYTHON=python3; fi
fi
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
mkdir -p "$OUT_DIR"
BENCH=("$PYTHON" "$ROOT/tools/benchmark.py")
ROWS=(--keep-rates 0.5 0.7 --explicit-keep-rates 0.7 --chunked-keep-rates 0.7)

if [ "${SMALL:-0}" = 1 ]; then
    DEVICE=cpu
    EAGER=(--preset tiny --batch-size 2 --reps 1 --warmup 1 --train-reps 1)
    VIDEO=(--model sparse_videomae_nano_patch16_64 --batch-size 2 --reps 1 --warmup 1 --train-reps 1)
    CHECK=(--lengths 17 197)
    BACKEND=()
else
    DEVICE=cuda
    EAGER=(--preset image video video32 video_large --reps 5 --warmup 2)
    VIDEO=(--preset video --reps 5 --warmup 2)
    CHECK=()
    BACKEND=(--sdpa-backend flash)
    nvidia-smi -L | tee "$OUT_DIR/device.txt"
fi

start=$SECONDS
step() { echo "== $1 ($((SECONDS - start)) s)"; }

step "fused received attention vs fp64"
"$PYTHON" "$ROOT/tools/check_received_attention.py" --device "$DEVICE" "${CHECK[@]}" 2>&1 | tee "$OUT_DIR/check.log"

step "eager, pinned backend"
"${BENCH[@]}" "${EAGER[@]}" "${ROWS[@]}" --device "$DEVICE" "${BACKEND[@]}" --out-dir "$OUT_DIR/eager" \
    2>&1 | tee "$OUT_DIR/eager.log"

step "profile, one trace per variant"
"${BENCH[@]}" "${VIDEO[@]}" "${ROWS[@]}" --device "$DEVICE" "${BACKEND[@]}" --no-memory \
    --profile "$OUT_DIR/profile" --out-dir "$OUT_DIR/profiled" 2>&1 | tee "$OUT_DIR/profile.log"

step "compiled, pinned backend (time-limited)"
COMPILED=(--keep-rates 0.7 --explicit-keep-rates --no-memory --compile --device "$DEVICE" "${BACKEND[@]}")
if [ "${SMALL:-0}" = 1 ]; then
    COMPILED+=("${VIDEO[@]}")
else
    COMPILED+=(--preset image video --reps 5 --warmup 2)
fi
timeout "${COMPILE_TIMEOUT:-240}" "${BENCH[@]}" "${COMPILED[@]}" --out-dir "$OUT_DIR/compiled" \
    >"$OUT_DIR/compiled.log" 2>&1 || echo "compiled run stopped (exit $?): see compiled.log"
tail -n 30 "$OUT_DIR/compiled.log"

step "packing"
(cd "$OUT_DIR" && tar -czf results.tar.gz --exclude='*.tar.gz' --exclude=profile -- * \
    && tar -czf traces.tar.gz profile)
ls -la "$OUT_DIR"
step "done"
