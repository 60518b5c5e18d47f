"""checkpoint.keep counts checkpoints that load: a step file a resume found broken is moved
aside as *.corrupt at the resumed run's first save (before that save could write over it),
never kept in place of a loadable one."""

import os
import shutil

import pytest
from tests.support import train

from lsvr.errors import InputError
from lsvr.runs import checkpoints

EXTRA = {"train.global_batch": 8, "train.epochs": 2, "checkpoint.every_steps": 4}  # 20 steps an epoch


@pytest.fixture(scope="module")
def broken_at_12(tiny_data, tmp_path_factory):
    """A run to step 12 saved every 4 steps (8 and 12 kept), its step-12 file cut in half."""
    out = tmp_path_factory.mktemp("keep") / "run"
    assert train(out, tiny_data, **{**EXTRA, "train.max_steps": 12}) == 0
    step_12 = out / "checkpoints" / "step-00000012.pt"
    os.truncate(step_12, step_12.stat().st_size // 2)
    return out


def _resumed(broken_at_12, tiny_data, tmp_path, **extra) -> tuple[list[str], bytes]:
    out = tmp_path / "run"
    shutil.copytree(broken_at_12, out)
    cut = (out / "checkpoints" / "step-00000012.pt").read_bytes()
    assert train(out, tiny_data, "--resume", "auto", **{**EXTRA, "train.max_steps": 13, **extra}) == 0
    return sorted(p.name for p in (out / "checkpoints").iterdir()), cut


def _loads(path) -> bool:
    try:
        checkpoints.load_step(path)
    except InputError:
        return False
    return True


@pytest.mark.slow
def test_a_broken_checkpoint_is_moved_aside_before_a_save_of_its_step_writes_over_it(
    broken_at_12, tiny_data, tmp_path, capsys
):
    names, cut = _resumed(broken_at_12, tiny_data, tmp_path)  # saves at 12 and 13, resumed from 8
    assert names == ["latest", "step-00000012.pt", "step-00000012.pt.corrupt", "step-00000013.pt"]
    folder = tmp_path / "run" / "checkpoints"
    assert (folder / "step-00000012.pt.corrupt").read_bytes() == cut
    assert _loads(folder / "step-00000012.pt") and _loads(folder / "step-00000013.pt")
    assert "moved aside as step-00000012.pt.corrupt" in capsys.readouterr().err


@pytest.mark.slow
def test_a_broken_checkpoint_does_not_count_towards_keep(broken_at_12, tiny_data, tmp_path):
    names, _ = _resumed(broken_at_12, tiny_data, tmp_path, **{"checkpoint.every_steps": 0})  # one save, at 13
    assert names == ["latest", "step-00000008.pt", "step-00000012.pt.corrupt", "step-00000013.pt"]
    folder = tmp_path / "run" / "checkpoints"
    assert _loads(folder / "step-00000008.pt") and _loads(folder / "step-00000013.pt")  # keep=2: two that load
