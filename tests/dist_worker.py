"""What the distribution tests run under torchrun: `lsvr train` with a hook that records,
on every rank, a fingerprint of the weights after each step (RECORD.rank<R>.json).

    python -m torch.distributed.run ... tests/dist_worker.py CONFIG OUT RECORD [--resume] [KEY=VALUE ...]
"""

import hashlib
import json
import os
import sys
from pathlib import Path

from lsvr.cli import main as lsvr_main
from lsvr.config_file import load_config
from lsvr.errors import InputError
from lsvr.train.engine import train


def main(argv: list[str]) -> int:
    config, out, record, *rest = argv
    resume = "--resume" in rest
    sets = [a for a in rest if a != "--resume"]
    if record == "-":  # no fingerprints: exactly what `lsvr train` does, exit status included
        return lsvr_main(["train", config, "--out", out, *(["--resume", "auto"] if resume else []),
                          *[x for s in sets for x in ("--set", s)]])  # fmt: skip
    prints = []

    def fingerprint(step, model, env) -> None:
        digest = hashlib.sha256()
        for tensor in model.state_dict().values():
            digest.update(tensor.detach().cpu().numpy().tobytes())
        prints.append([step, digest.hexdigest()])

    try:
        train(load_config(config, sets), out=Path(out), resume="auto" if resume else None, on_step=fingerprint)
    except InputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    Path(f"{record}.rank{os.environ.get('RANK', '0')}.json").write_text(json.dumps(prints))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
