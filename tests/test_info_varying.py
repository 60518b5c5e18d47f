"""`lsvr info` of a set of varying shapes (prepare --resize short): its image shape is the
policy in words, not meta.json's [0, 0, C] placeholder."""

import json

from tests.support import cli, write_tree


def test_info_shows_the_resize_policy_of_a_set_of_varying_shapes(tmp_path, capsys):
    tree = write_tree(tmp_path / "tree", {"a": 2, "b": 2}, size=(60, 30))
    assert cli("prepare", tree, tmp_path / "short", "--size", "20", "--resize", "short", "--no-progress") == 0
    assert cli("prepare", tree, tmp_path / "capped", "--size", "20", "--resize", "short", "--max-size", "32",
               "--no-progress") == 0  # fmt: skip
    capsys.readouterr()
    assert cli("info", tmp_path / "short") == 0
    text = capsys.readouterr().out
    assert "image_shape: varying: shorter side 20, aspect kept, 3 channels\n" in text and "[0, 0, 3]" not in text
    assert cli("info", tmp_path / "capped", "--json") == 0
    info = json.loads(capsys.readouterr().out)
    assert info["image_shape"] == "varying: shorter side 20, longer side at most 32 (the shorter then less), 3 channels"
    assert info["sizes"]["heights"] == [16, 16]  # 60 x 30 capped at 32: 32 x 16
