#!/usr/bin/env bash
# Every GPU check in one run, for the lent machine (Python 3.12, torch 2.11, torchvision 0.26,
# no network). Run from the repository root, with the wheels of what that machine lacks in
# .whl/ (`make gpu-wheels`: simplejpeg, pytest and its requirements...; see docs/BENCHMARKS.md, "The bench commands, and the GPU check").
#
# Steps, most valuable first, each with its own limit in seconds (they add to 300; a step gets
# at most what is left of BUDGET, and one with under 10 s left is skipped):
#   preflight 20 (doctor, every step's imports, 3 bf16 AlexNet steps: the check stops here if they fail),
#   cuda_tests 25, bf16_raw 40 (model-only, end-to-end, baseline), prepare_fm256 10,
#   syncs 20, bf16_jpeg_device 25, bf16_jpeg_host 20, resnet50_bf16_raw 25, compile 30,
#   reduce_overhead 25, fm256 50 (2 epochs, --resume to 3, eval), fp32_raw 10.
# A step runs under `timeout -s ABRT` with PYTHONFAULTHANDLER=1: one cut off by its limit
# dumps every thread's stack into its log. steps.txt gets `name rc seconds` per step.
#
# $OUT receives two files: results.tar.gz (every log and JSON) and summary.txt, the compact
# summary that is also this script's last lines of output. An $OUT holding other files is
# refused (exit 2): nothing there is overwritten.
#
# A dry run on CPU (every step, the CUDA-only tests skipped; at most 450 s on 2 cores):
#   DEVICE=cpu BATCH=8 STEPS=2 IMAGES=64 FM_STEPS=2 PRECISION=fp32 SCALE=3 BUDGET=450 OUT=/tmp/gpu-check \
#     bash scripts/gpu_check.sh
set -uo pipefail
OUT=${OUT:-gpu-check} DEVICE=${DEVICE:-cuda} BATCH=${BATCH:-256} STEPS=${STEPS:-20} IMAGES=${IMAGES:-5120}
PRECISION=${PRECISION:-bf16} SCALE=${SCALE:-1}  # a dry run: fp32 (CPU bf16 is slow) and limits x SCALE
FM_STEPS=${FM_STEPS:-0}  # 0: the Fashion-MNIST run's epochs in full; N: N steps a leg (a dry run)
END=$((SECONDS + ${BUDGET:-300}))
if [[ -e "$OUT" ]] && find "$OUT" -mindepth 1 -maxdepth 1 ! -name results.tar.gz ! -name summary.txt | grep -q .; then
  echo "gpu_check: $OUT holds files of its own; give an empty or new OUT (nothing there is overwritten)" >&2
  exit 2
fi
mkdir -p "$OUT"
WORK=$(mktemp -d /tmp/lsvr-gpu-check.XXXXXX)  # the run folders and bench sets stay here, not in $OUT
R="$WORK/results"
mkdir -p "$R"
export PYTHONUNBUFFERED=1 PYTHONFAULTHANDLER=1
if ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    && export PYTHONPATH=/tmp/site
fi
export PYTHONPATH="$PWD/src:$PWD${PYTHONPATH:+:$PYTHONPATH}"
nvidia-smi > "$R/nvidia-smi.txt" 2>&1

step() {  # NAME LIMIT COMMAND...: at most LIMIT s (and what is left), stdout to NAME.out, stderr to NAME.log
  local name=$1 limit=$(($2 * SCALE)) left=$((END - SECONDS)) began=$SECONDS rc
  ((left < limit)) && limit=$left
  if ((limit < 10)); then echo "$name skipped 0" >> "$R/steps.txt"; return 1; fi
  timeout -s ABRT -k 5 "$limit" "${@:3}" > "$R/$name.out" 2> "$R/$name.log"
  rc=$?
  echo "$name $rc $((SECONDS - began))" >> "$R/steps.txt"
  echo "step $name: exit $rc after $((SECONDS - began)) s (limit $limit)" >&2
  return $rc
}
bench() {  # NAME LIMIT ARGS...: lsvr bench train at batch $BATCH, JSON to NAME.out
  step "$1" "$2" python3 -m lsvr bench train --model alexnet --batch "$BATCH" --steps "$STEPS" --images "$IMAGES" \
    --device "$DEVICE" --dir "$WORK/bench" --json "${@:3}"
}
finish() {  # pack every result (the Fashion-MNIST run's metrics, however it ended), write the summary, print it last
  cp "$WORK/fm256-run/metrics.jsonl" "$R/fm256_metrics.jsonl" 2>/dev/null
  tar -czf "$OUT/results.tar.gz" -C "$WORK" results
  python3 scripts/gpu_summary.py "$R" > "$OUT/summary.txt" 2>&1
  cat "$OUT/summary.txt"
}

step preflight 20 python3 scripts/gpu_preflight.py "$DEVICE" "$R/preflight.json" || { finish; exit 1; }
step cuda_tests 25 python3 -m pytest -q -p no:cacheprovider tests/test_loader.py tests/test_gpu_paths.py \
  -k "cuda or nvjpeg or device"
bench bf16_raw 40 --precision "$PRECISION" --encoding raw --rounds 3
step prepare_fm256 10 python3 -m lsvr prepare data/fashion-mnist-small "$WORK/fm256" --size 256 --channels 3 \
  --encoding jpeg --resize squash --no-progress
step syncs 20 python3 scripts/sync_check.py configs/fashion_mnist_alexnet_gpu.yaml "$R/syncs.json" \
  "data.train=$WORK/fm256/train" "train.device=$DEVICE" "train.global_batch=$BATCH" "train.precision=$PRECISION"
bench bf16_jpeg_device 25 --precision "$PRECISION" --encoding jpeg --decode device --rounds 2 --no-baseline
bench bf16_jpeg_host 20 --precision "$PRECISION" --encoding jpeg --decode host --rounds 2 --no-baseline
step resnet50_bf16_raw 25 python3 -m lsvr bench train --model resnet50 --batch "$BATCH" --steps "$STEPS" \
  --images "$IMAGES" --device "$DEVICE" --dir "$WORK/bench" --json --precision "$PRECISION" --encoding raw --rounds 2 \
  --no-baseline
bench bf16_raw_compile 30 --precision "$PRECISION" --encoding raw --compile default --rounds 2 --no-baseline
bench bf16_raw_reduce_overhead 25 --precision "$PRECISION" --encoding raw --compile reduce-overhead --rounds 2 --no-baseline

# The paper's AlexNet learns at full size: Fashion-MNIST at 256 RGB, bf16, 2 epochs, then
# --resume (a CUDA checkpoint read back) to 3, then eval of the last checkpoint. The run folder
# stays in $WORK; only its metrics come back.
export WORK R DEVICE PRECISION FM_LEG1="train.epochs=2" FM_LEG2="train.epochs=3"
if ((FM_STEPS > 0)); then  # a dry run: N steps a leg, validated on 64 held-out images (a CPU's minutes)
  FM_LEG1="train.epochs=3 train.max_steps=$FM_STEPS data.val=null data.holdout=64"
  FM_LEG2="train.epochs=3 train.max_steps=$((2 * FM_STEPS)) data.val=null data.holdout=64"
fi
# shellcheck disable=SC2016
step fm256 50 bash -c '
  sets=(--set "data.train=$WORK/fm256/train" "data.val=$WORK/fm256/test" "train.device=$DEVICE" "train.progress=false"
    "train.precision=$PRECISION" "train.global_batch=$BATCH")
  python3 -m lsvr train configs/fashion_mnist_alexnet_gpu.yaml --out "$WORK/fm256-run" "${sets[@]}" $FM_LEG1 &&
  python3 -m lsvr train configs/fashion_mnist_alexnet_gpu.yaml --out "$WORK/fm256-run" --resume auto "${sets[@]}" $FM_LEG2 &&
  python3 -m lsvr eval "$WORK/fm256-run" "$WORK/fm256/test" --device "$DEVICE" --json > "$R/fm256_eval.json"'
bench fp32_raw 10 --precision fp32 --encoding raw --rounds 1 --no-baseline
finish
