#!/usr/bin/env bash
# Every GPU check in one run, for the lent machine (Python 3.12, its own PyTorch, no network).
# Run from the repository root, with the wheels of what that machine lacks in .whl/
# (simplejpeg, safetensors; see README "GPU check"). Writes JSON and logs under $OUT.
# Budget: about 8 minutes on one H100. A dry run on CPU (minutes): DEVICE=cpu BATCH=8 STEPS=2 MAXSTEPS=2
set -uo pipefail
OUT=${OUT:-gpu-check} DEVICE=${DEVICE:-cuda} BATCH=${BATCH:-256} STEPS=${STEPS:-30} MAXSTEPS=${MAXSTEPS:-0}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
if ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    && export PYTHONPATH=/tmp/site
fi
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
lsvr() { timeout "$1" python3 -m lsvr "${@:2}"; }
nvidia-smi > "$OUT/nvidia-smi.txt" 2>&1
python3 -c "import torch; print(torch.__version__, torch.cuda.is_available() and torch.cuda.get_device_name(0))" > "$OUT/torch.txt" 2>&1

# 1. The training step at batch 256: model-only, end-to-end from raw and from JPEG (CPU decode), baseline.
for precision in fp32 bf16; do
  lsvr 150 bench train --model alexnet --batch "$BATCH" --steps "$STEPS" --device "$DEVICE" --precision "$precision" \
    --encoding raw --dir /tmp/lsvr-bench --json > "$OUT/train_${precision}_raw.json" 2> "$OUT/train_${precision}_raw.log"
done
lsvr 120 bench train --model alexnet --batch "$BATCH" --steps "$STEPS" --device "$DEVICE" --precision bf16 \
  --encoding jpeg --dir /tmp/lsvr-bench --json > "$OUT/train_bf16_jpeg.json" 2> "$OUT/train_bf16_jpeg.log"
# (GPU JPEG decoding needs torchvision, which lsvr does not use: not measured.)

# 2. The paper's AlexNet learns at full size: the embedded Fashion-MNIST at 256 RGB, a few epochs in bf16.
lsvr 60 prepare data/fashion-mnist-small prepared/fm256 --size 256 --channels 3 --encoding jpeg \
  --resize squash --no-progress > "$OUT/prepare_fm256.log" 2>&1
lsvr 200 train configs/fashion_mnist_alexnet_gpu.yaml --out "$OUT/fm256-alexnet" --set train.progress=false \
  --set train.device="$DEVICE" --set train.max_steps="$MAXSTEPS" \
  > "$OUT/fm256-alexnet.log" 2>&1
lsvr 60 eval "$OUT/fm256-alexnet" prepared/fm256/test --device "$DEVICE" --json > "$OUT/fm256-alexnet-eval.json" 2>> "$OUT/fm256-alexnet.log"
rm -f "$OUT"/fm256-alexnet/checkpoints/*.pt  # the figures travel back, not 700 MB of weights
ls -l "$OUT"
