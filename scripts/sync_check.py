"""Host-device syncs in the training loop's steady state, as CUDA's sync debug mode sees them.

python3 scripts/sync_check.py CONFIG OUT.json [key=value ...]

Trains `steps` steps with torch.cuda.set_sync_debug_mode("warn") switched on from the third
step to the last but one (so neither the first steps' set-up nor the last step's log and
save count), and writes the syncs per step and the lsvr line each came from. The goal is 0:
a sync leaves the GPU idle while the host queues the next step.
"""

from __future__ import annotations

import collections
import json
import sys
import tempfile
import traceback
import warnings
from pathlib import Path

import torch

from lsvr.config_file import load_config
from lsvr.train.engine import train


def main(config: str, out: str, overrides: list[str]) -> None:
    steps = 24
    cfg = load_config(config, [f"train.max_steps={steps}", f"train.log_every={steps}", "data.val=null",
                               "train.progress=false", "checkpoint.every_steps=0", *overrides])  # fmt: skip
    sites: collections.Counter = collections.Counter()
    counted = [0]

    def record(message, category, filename, lineno, file=None, line=None):
        if "synchroniz" not in str(message):
            return
        counted[0] += 1
        frames = [f for f in traceback.extract_stack()[:-1] if "/lsvr/" in f.filename]
        where = f"{Path(frames[-1].filename).name}:{frames[-1].lineno} {frames[-1].line}" if frames else filename
        sites[where] += 1

    def on_step(step: int, model, env) -> None:
        if not torch.cuda.is_available():  # a dry run on CPU: nothing to watch
            return
        if step == 2:
            torch.cuda.set_sync_debug_mode("warn")
        if step == steps - 1:
            torch.cuda.set_sync_debug_mode("default")

    with warnings.catch_warnings(), tempfile.TemporaryDirectory() as run:
        warnings.simplefilter("always")
        warnings.showwarning = record
        train(cfg, out=Path(run), on_step=on_step)
    watched = steps - 3
    device = torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu"
    result = {"device": device, "steps_watched": watched, "syncs": counted[0], "syncs_per_step": counted[0] / watched,
              "sites": dict(sites.most_common()), "overrides": overrides}  # fmt: skip
    Path(out).write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3:])
