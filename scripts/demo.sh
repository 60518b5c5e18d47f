#!/usr/bin/env bash
# `make demo`: prepare the embedded Fashion-MNIST subset, train a short schedule,
# evaluate, predict a few test images, plot; ends with the test top-1 and the run folder
# (Ctrl-C: a line saying the demo stopped, no result, exit 130).
set -euo pipefail
cd "$(dirname "$0")/.."
run=${DEMO:-runs/demo}
data=prepared/demo

# Ctrl-C reaches every process of the demo: `lsvr train` then stops after its step, saves and
# exits 0, and bash runs this trap once it has. The demo ends there, saying so, with no result
# line: a run cut short is not the demo's result. 130: the status of a process ended by Ctrl-C.
trap 'echo >&2; echo "demo: stopped (Ctrl-C): no result; what was done is in $run" >&2; exit 130' INT

# A re-run replaces the previous demo run and nothing else: a DEMO folder that holds anything
# the demo does not write (a user's own files) is refused, and so is a file or a link.
if [ -L "$run" ] || { [ -e "$run" ] && [ ! -d "$run" ]; }; then
  echo "demo: $run is not a folder the demo made: set DEMO to another path" >&2
  exit 2
fi
if [ -d "$run" ]; then
  for entry in "$run"/* "$run"/.[!.]*; do
    [ -e "$entry" ] || [ -L "$entry" ] || continue
    case "$(basename "$entry")" in
      config.yaml | metrics.jsonl | checkpoints | plot.png | .lock | test.json | samples) ;;
      *)
        echo "demo: $run holds $(basename "$entry"), which the demo does not write: set DEMO to another folder" >&2
        exit 2
        ;;
    esac
  done
  rm -rf "$run"
fi

if [ ! -f "$data/train/meta.json" ] || [ ! -f "$data/test/meta.json" ]; then
  lsvr prepare data/fashion-mnist-small "$data" --size 32 --resize pad --overwrite
fi
lsvr info "$data/train" --verify >/dev/null

lsvr train configs/demo.yaml --out "$run"

echo
echo "== evaluate on the test split (centre crop, then 10 crops)"
lsvr eval "$run" "$data/test" --json > "$run/test.json"
top1=$(python -c 'import json, sys; print("%.2f" % json.load(open(sys.argv[1]))["top1"])' "$run/test.json")
echo "centre crop: top-1 ${top1}%  ($run/test.json)"
lsvr eval "$run" "$data/test" --crops 10

echo
echo "== predict three test images"
mkdir -p "$run/samples"
python - "$run/samples" <<'PY'
import sys
from pathlib import Path

from PIL import Image

from lsvr.data.sources import read_idx

images = read_idx(Path("data/fashion-mnist-small/t10k-images-idx3-ubyte.gz"))
for i in range(3):
    Image.fromarray(images[i * 700]).save(Path(sys.argv[1]) / f"test-{i * 700}.png")
PY
lsvr predict "$run" "$run"/samples/*.png --top 3

echo
lsvr plot "$run" >/dev/null
echo "test top-1: ${top1}%   run: $run   (curves: $run/plot.png)"
