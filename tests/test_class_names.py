"""A class list with a name given twice or an empty name is refused at prepare time (exit 2,
naming the file and the name), whichever way the classes arrive: --classes, --classes-from,
a classes.txt beside idx files."""

import json
import os
import shutil

import pytest
from tests.support import DEMO_DATA, cli, one_line, write_tree

from lsvr.data.dataset import PreparedDataset


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("cat\ncat\ndog\n", "class name 'cat' is given twice (classes 0 and 1); each class needs a name of its own"),
        ("cat\n\ndog\n", "an empty class name between names (it would shift every later label)"),
    ],
)
def test_a_classes_file_with_a_repeated_or_empty_name_is_refused(tmp_path, capsys, text, reason):
    src = write_tree(tmp_path / "src", {"cat": 1, "dog": 1})
    names = tmp_path / "names.txt"
    names.write_text(text)
    assert cli("prepare", src, tmp_path / "pc", "--size", "16", "--classes", names, "--no-progress") == 2
    err = one_line(capsys)
    assert err.startswith(f"lsvr prepare: error: {names}") and err.endswith(reason), err
    assert sorted(os.listdir(tmp_path)) == ["names.txt", "src"]


def test_blank_lines_around_the_names_are_ignored(tmp_path):
    src = write_tree(tmp_path / "src", {"cat": 1, "dog": 1})
    (tmp_path / "names.txt").write_text("\ncat\ndog\n\n")
    assert cli("prepare", src, tmp_path / "pc", "--size", "16", "--classes", tmp_path / "names.txt",
               "--no-progress") == 0  # fmt: skip
    assert PreparedDataset(tmp_path / "pc").classes == ["cat", "dog"]


@pytest.mark.parametrize("classes", [["cat", "cat", "dog"], ["cat", "", "dog"]])
def test_classes_from_a_set_with_repeated_or_empty_names_is_refused(tmp_path, capsys, classes):
    src = write_tree(tmp_path / "src", {"cat": 1, "dog": 1})
    assert cli("prepare", src, tmp_path / "train", "--size", "16", "--no-progress") == 0
    meta_path = tmp_path / "train" / "meta.json"
    meta = json.loads(meta_path.read_text())
    meta["classes"] = classes  # as a set written by an lsvr that did not check
    meta_path.write_text(json.dumps(meta))
    flags = ["--classes-from", tmp_path / "train", "--no-progress"]
    for source in (src, flat_with_labels(tmp_path, src)):
        labels = ["--labels", tmp_path / "val.txt"] if source != src else []
        assert cli("prepare", source, tmp_path / "val", "--size", "16", *labels, *flags) == 2
        err = one_line(capsys)
        assert err.startswith(f"lsvr prepare: error: {meta_path}: class "), err
        assert "given twice" in err or "empty name" in err
        assert not (tmp_path / "val").exists()


def flat_with_labels(tmp_path, src):
    """The tree's images in one folder, with a Caffe val.txt (class indices)."""
    flat = tmp_path / "flat"
    flat.mkdir(exist_ok=True)
    rows = []
    for label, name in enumerate(("cat", "dog")):
        for image in sorted((src / name).iterdir()):
            shutil.copy(image, flat / f"{name}_{image.name}")
            rows.append(f"{name}_{image.name} {label}")
    (tmp_path / "val.txt").write_text("\n".join(rows) + "\n")
    return flat


def test_a_classes_txt_beside_idx_files_with_a_repeated_name_is_refused(tmp_path, capsys):
    src = tmp_path / "fmnist"
    src.mkdir()
    for name in os.listdir(DEMO_DATA):
        shutil.copy(DEMO_DATA / name, src / name)
    (src / "classes.txt").write_text("\n".join(["shirt"] * 10) + "\n")
    assert cli("prepare", src, tmp_path / "out", "--size", "28", "--no-progress") == 2
    assert one_line(capsys).startswith(f"lsvr prepare: error: {src / 'classes.txt'}: class name 'shirt' is given twice")
    assert not (tmp_path / "out").exists()


def test_prepare_refuses_a_source_whose_classes_repeat_a_name(tmp_path):
    from lsvr.data.open_source import open_source
    from lsvr.data.prepare import prepare
    from lsvr.errors import InputError

    src = write_tree(tmp_path / "src", {"cat": 1, "dog": 1})
    source = open_source(src)
    source.classes = ["cat", "dog", "cat"]  # a library caller's list, not read from a file
    with pytest.raises(InputError, match=r"class name 'cat' is given twice \(classes 0 and 2\)"):
        prepare(source, tmp_path / "out", size=16, progress=False)
    assert sorted(os.listdir(tmp_path)) == ["src"]
