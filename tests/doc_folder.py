"""The working folder a document's commands run in (tests/test_doc_commands.py): what a user's
checkout would hold, with stand-in data, made once per session and copied per document.

- `photos/`: a class-folder tree, 3 classes of 8 small photo-like JPEGs (lsvr.bench.photos).
- `ILSVRC2012_img_train.tar`, `ILSVRC2012_img_val.tar`, `ILSVRC2012_devkit_t12.tar.gz`: tiny
  ILSVRC-layout stand-ins (tests/ilsvrc_tars.py).
- links to the repo's `configs/`, `data/`, `scripts/`, `deploy/`, `Makefile`, `pyproject.toml`.
- `.venv`: a stand-in virtual environment whose `bin/` holds `lsvr` (tests/doc_shim.py: the
  real lsvr, scaled down), `python` (`python -m lsvr` the same; anything else the real
  python) and `torchrun` (the real one, its `-m lsvr ...` scaled), and whose install stamp
  is fresh: `make demo` runs as typed (the Makefile puts `.venv/bin` first on PATH; DEMO
  stays its default, runs/demo, inside this folder).
PATH starts with that `bin/`, then the real environment's.
"""

from __future__ import annotations

import os
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import simplejpeg
from tests.doc_blocks import ROOT
from tests.ilsvrc_tars import write_ilsvrc

from lsvr.bench.photos import photo, pink_field

LINKS = ("configs", "data", "scripts", "deploy", "Makefile", "pyproject.toml")
PHOTO_CLASSES = ("cat", "dog", "fish")
PHOTOS_PER_CLASS = 8
PHOTO_SIZES = ((200, 150), (160, 120), (150, 200), (180, 135))  # (width, height)

# Absolute paths a document names that exist on a user's machine, and what the runner reads
# instead (the one substitution it makes in a block's text before running it).
SUBSTITUTIONS = {"/usr/share/datasets/fashion-mnist": "data/fashion-mnist-small"}


def write_photos(root: Path, seed: int = 0) -> Path:
    """root/<class>/<class>_NN.jpg: small JPEGs with a photo's statistics."""
    rng = np.random.default_rng(seed)
    fields = [pink_field(rng, 256) for _ in range(3)]
    for c, cls in enumerate(PHOTO_CLASSES):
        (root / cls).mkdir(parents=True)
        for i in range(PHOTOS_PER_CLASS):
            width, height = PHOTO_SIZES[i % len(PHOTO_SIZES)]
            pixels = photo(np.random.default_rng([seed, c, i]), fields, width, height)
            (root / cls / f"{cls}_{i:02d}.jpg").write_bytes(simplejpeg.encode_jpeg(pixels, quality=90))
    return root


def write_shims(venv: Path, bench_dir: Path) -> Path:
    """venv/bin/lsvr and venv/bin/python, and the stamp that keeps `make` from installing."""
    bin_dir = venv / "bin"
    bin_dir.mkdir(parents=True)
    shim = ROOT / "tests" / "doc_shim.py"
    run_shim = f'#!/usr/bin/env bash\nexec "{sys.executable}" "{shim}" "{bench_dir}"'
    (bin_dir / "lsvr").write_text(f'{run_shim} "$@"\n')
    python = (
        "#!/usr/bin/env bash\n"
        'if [ "${1-}" = -m ] && [ "${2-}" = lsvr ]; then shift 2; exec "$(dirname "$0")/lsvr" "$@"; fi\n'
        f'exec "{sys.executable}" "$@"\n'
    )
    (bin_dir / "python").write_text(python)
    (bin_dir / "torchrun").write_text(f'{run_shim} --torchrun "$@"\n')
    for tool in ("lsvr", "python", "torchrun"):
        (bin_dir / tool).chmod(0o755)
    stamp, since = venv / ".installed", max(time.time(), (ROOT / "pyproject.toml").stat().st_mtime)
    stamp.touch()
    os.utime(stamp, (since + 1, since + 1))  # newer than pyproject.toml: the Makefile's install is done
    return bin_dir


def write_stand_ins(root: Path) -> Path:
    """The session's stand-ins, in root/files (copied per document) and root/venv."""
    files = root / "files"
    write_photos(files / "photos")
    made = write_ilsvrc(root / "ilsvrc")
    for key in ("train", "val", "devkit"):  # ILSVRC2012_img_train.tar, ..._val.tar, ..._devkit_t12.tar.gz
        shutil.move(made[key], files / made[key].name)
    write_shims(root / "venv", root / "bench")
    return root


def open_folder(stand_ins: Path, folder: Path) -> dict[str, str]:
    """folder made a document's working folder; the environment its commands run in."""
    shutil.copytree(stand_ins / "files", folder)
    for name in LINKS:
        (folder / name).symlink_to(ROOT / name)
    (folder / ".venv").symlink_to(stand_ins / "venv")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "OMP_NUM_THREADS"))}
    env["PATH"] = os.pathsep.join([str(stand_ins / "venv" / "bin"), str(Path(sys.executable).parent), env["PATH"]])
    return env


def substituted(source: str) -> str:
    for path, stand_in in SUBSTITUTIONS.items():
        source = source.replace(path, stand_in)
    return source
