"""A cut ILSVRC2012 train tar (`head -c N ILSVRC2012_img_train.tar > cut.tar`) is refused with
one line that names the class it cut, what that class keeps and that the classes after it are
lost; --allow-cut prepares what it holds and says the same under the summary. Before, it
prepared the classes before the cut with one `truncated` reject and exit 0."""

import tarfile

from tests.ilsvrc_tars import write_ilsvrc
from tests.support import cli, one_line

from lsvr.data.dataset import PreparedDataset

ARGS = ("--size", "32", "--no-progress", "--workers", "2")


def test_a_cut_train_tar_is_refused_naming_the_loss_unless_allowed(tmp_path, capsys):
    train = write_ilsvrc(tmp_path)["train"]
    with tarfile.open(train) as outer:
        first, second = outer.getmembers()[:2]  # inner class tars, in tar order: n01484850, n01443537, ...
    cut = tmp_path / "cut.tar"
    cut.write_bytes(train.read_bytes()[: second.offset_data + 512 * 5])  # inside the second class's tar
    assert cli("prepare", cut, tmp_path / "out", *ARGS) == 2
    line = one_line(capsys, f"cut.tar:{second.name}:", "the rest of", "--allow-cut")
    assert "with the classes after it in cut.tar" in line and "class n01443537 keeps 0 images" in line
    assert not (tmp_path / "out").exists()

    assert cli("prepare", cut, tmp_path / "out", *ARGS, "--allow-cut") == 0
    captured = capsys.readouterr()
    assert "class n01443537 keeps" in captured.err and "--allow-cut" in captured.err
    ds = PreparedDataset(tmp_path / "out")
    assert ds.classes == sorted([first.name[:-4], second.name[:-4]])
