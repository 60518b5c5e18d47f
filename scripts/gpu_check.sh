#!/usr/bin/env bash
# Every GPU check in one run, for the lent machine (Python 3.12, its own PyTorch and
# torchvision, no network). Run from the repository root, with the wheels of what that
# machine lacks in .whl/ (simplejpeg; see README "GPU check"). Writes JSON and logs under
# $OUT, most important first: each step has its own time limit, cut to what is left of
# BUDGET seconds (default 470, under 8 minutes); a step that fails or runs out of time
# leaves the others' results, and a step with under 20 s left is skipped.
# A dry run on CPU (minutes): DEVICE=cpu BATCH=8 STEPS=2 MAXSTEPS=2 bash scripts/gpu_check.sh
set -uo pipefail
OUT=${OUT:-gpu-check} DEVICE=${DEVICE:-cuda} BATCH=${BATCH:-256} STEPS=${STEPS:-30} MAXSTEPS=${MAXSTEPS:-0}
END=$((SECONDS + ${BUDGET:-470}))
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
if ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    && export PYTHONPATH=/tmp/site
fi
export PYTHONPATH="$PWD/src:$PWD${PYTHONPATH:+:$PYTHONPATH}"
limited() {  # LIMIT COMMAND...: run it for at most LIMIT seconds and what is left of the budget
  local left=$((END - SECONDS)) limit=$1
  ((left < limit)) && limit=$left
  if ((limit < 20)); then echo "skipped (budget spent): ${*:2}" >> "$OUT/skipped.txt"; return 124; fi
  timeout -k 10 "$limit" "${@:2}"  # -k: lsvr train answers SIGTERM by finishing its step and saving
}
lsvr() { limited "$1" python3 -m lsvr "${@:2}"; }
nvidia-smi > "$OUT/nvidia-smi.txt" 2>&1
python3 -c "import torch; print(torch.__version__, torch.cuda.is_available() and torch.cuda.get_device_name(0))" \
  > "$OUT/torch.txt" 2>&1
bench() {  # NAME LIMIT ARGS...: lsvr bench train at batch $BATCH for alexnet, JSON to $OUT/train_NAME.json
  lsvr "$2" bench train --model alexnet --batch "$BATCH" --steps "$STEPS" --device "$DEVICE" --dir /tmp/lsvr-bench \
    --json "${@:3}" > "$OUT/train_$1.json" 2> "$OUT/train_$1.log"
}

# 1. The training step at batch 256: model-only, end-to-end and baseline in each run.
bench fp32_raw 90 --precision fp32 --encoding raw
bench bf16_raw 60 --precision bf16 --encoding raw
bench bf16_jpeg_host 75 --precision bf16 --encoding jpeg --decode host
bench bf16_jpeg_device 60 --precision bf16 --encoding jpeg --decode device

# 2. The CUDA-only tests (pinned buffer reuse, nvJPEG against libjpeg-turbo), and the
#    host-device syncs left in the training loop's steady state.
limited 60 python3 -m pytest -q -p no:cacheprovider tests/test_loader.py -k "cuda or nvjpeg" > "$OUT/pytest_cuda.log" 2>&1
lsvr 60 prepare data/fashion-mnist-small prepared/fm256 --size 256 --channels 3 --encoding jpeg \
  --resize squash --no-progress > "$OUT/prepare_fm256.log" 2>&1
limited 60 python3 scripts/sync_check.py configs/fashion_mnist_alexnet_gpu.yaml "$OUT/syncs.json" \
  "train.device=$DEVICE" "train.global_batch=$BATCH" > "$OUT/syncs.log" 2>&1

# 3. The paper's AlexNet learns at full size: the embedded Fashion-MNIST at 256 RGB, bf16.
lsvr 120 train configs/fashion_mnist_alexnet_gpu.yaml --out "$OUT/fm256-alexnet" --set train.progress=false \
  --set train.device="$DEVICE" --set train.max_steps="$MAXSTEPS" > "$OUT/fm256-alexnet.log" 2>&1
lsvr 30 eval "$OUT/fm256-alexnet" prepared/fm256/test --device "$DEVICE" --json \
  > "$OUT/fm256-alexnet-eval.json" 2>> "$OUT/fm256-alexnet.log"
rm -f "$OUT"/fm256-alexnet/checkpoints/*.pt  # the figures travel back, not 700 MB of weights

# 4. Whether torch.compile and CUDA graphs pay (each compiles first, inside its limit).
bench bf16_raw_compile 75 --precision bf16 --encoding raw --compile default
bench bf16_raw_cudagraphs 75 --precision bf16 --encoding raw --compile reduce-overhead
ls -l "$OUT"
