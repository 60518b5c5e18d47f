"""OUT given as a symbolic link, `.`, or a folder of the user's for an idx folder's two splits:
the user's link and files are never renamed, deleted or mixed with lsvr's output."""

import os

import pytest
from tests.support import DEMO_DATA, cli, one_line, write_tree

from lsvr.data.dataset import PreparedDataset


@pytest.fixture
def tree(tmp_path):
    return write_tree(tmp_path / "tree", {"a": 2, "b": 2})


def test_a_link_to_an_empty_folder_is_written_through_and_left_a_link(tmp_path, tree):
    (tmp_path / "etarget").mkdir()
    (tmp_path / "elink").symlink_to("etarget")
    assert cli("prepare", tree, tmp_path / "elink", "--size", "32", "--no-progress") == 0
    assert os.readlink(tmp_path / "elink") == "etarget"
    assert PreparedDataset(tmp_path / "etarget").shape == (32, 32, 3)
    assert sorted(os.listdir(tmp_path)) == ["elink", "etarget", "tree"]  # no .elink.replaced, no lock left


def test_overwrite_through_a_link_to_a_dataset_replaces_the_dataset_and_keeps_the_link(tmp_path, tree):
    assert cli("prepare", tree, tmp_path / "v1", "--size", "16", "--no-progress") == 0
    (tmp_path / "current").symlink_to(tmp_path / "v1")
    for size in ("20", "24"):  # a second run through the same link works as the first
        assert cli("prepare", tree, tmp_path / "current", "--size", size, "--overwrite", "--no-progress") == 0
        assert os.readlink(tmp_path / "current") == str(tmp_path / "v1")
        assert PreparedDataset(tmp_path / "current").shape == (int(size), int(size), 3)
    assert sorted(os.listdir(tmp_path)) == ["current", "tree", "v1"]


def test_a_dangling_link_as_out_is_refused_and_left_as_it_is(tmp_path, tree, capsys):
    (tmp_path / "dangl").symlink_to("nowhere")
    assert cli("prepare", tree, tmp_path / "dangl", "--size", "32", "--no-progress") == 2
    assert one_line(capsys) == (
        f"lsvr prepare: error: {tmp_path / 'dangl'}: a symbolic link to nowhere, which does not exist; lsvr writes"
        " through a link only to an existing folder: create it or choose another OUT"
    )
    assert os.readlink(tmp_path / "dangl") == "nowhere"
    assert sorted(os.listdir(tmp_path)) == ["dangl", "tree"]


@pytest.mark.parametrize("name", ["out.partial", ".out.replaced"])
def test_a_link_named_out_partial_or_replaced_is_never_written_through_or_removed(tmp_path, tree, capsys, name):
    (tmp_path / "mine").mkdir()
    (tmp_path / name).symlink_to("mine")
    assert cli("prepare", tree, tmp_path / "out", "--size", "16", "--no-progress", "--overwrite") == 2
    assert f"{tmp_path / name}: a symbolic link, which lsvr never renames or deletes" in one_line(capsys)
    assert os.readlink(tmp_path / name) == "mine" and os.listdir(tmp_path / "mine") == []
    assert not (tmp_path / "out").exists()


def test_build_open_refuses_a_link_as_out_partial(tmp_path):
    from lsvr.data.build import Build
    from lsvr.errors import InputError

    (tmp_path / "mine").mkdir()
    (tmp_path / "x.partial").symlink_to("mine")
    with pytest.raises(InputError, match="a symbolic link, which lsvr never renames or deletes"):
        Build.open(tmp_path / "x.partial", {"encoding": "raw"}, (8, 8, 1), discard=True)
    assert os.listdir(tmp_path / "mine") == []


@pytest.mark.parametrize("dot", [".", "./", "sub/.."])
def test_the_current_folder_as_out_is_one_line_exit_2(tmp_path, tree, capsys, monkeypatch, dot):
    here = tmp_path / "here"
    (here / "sub").mkdir(parents=True)
    monkeypatch.chdir(here)
    assert cli("prepare", tree, dot, "--size", "16", "--no-progress") == 2
    assert one_line(capsys) == (
        f"lsvr prepare: error: {here}: is the current folder or above it; give the dataset a folder of its own"
        " (OUT/name)"
    )
    assert os.listdir(here) == ["sub"] and sorted(os.listdir(tmp_path)) == ["here", "tree"]


@pytest.mark.slow
def test_idx_splits_are_never_mixed_into_a_folder_of_the_users(tmp_path, capsys):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep")
    for flags in ([], ["--overwrite"]):
        assert cli("prepare", DEMO_DATA, mine, "--size", "28", "--no-progress", *flags) == 2
        assert one_line(capsys) == (
            f"lsvr prepare: error: {mine}: it holds notes.txt, which lsvr does not write there; the train and test"
            " splits go into a folder that is new, empty or holds only them: move it away or choose another OUT"
        )
    assert os.listdir(mine) == ["notes.txt"]
    # an empty folder, and one holding only the splits (replaced with --overwrite), are written
    (mine / "notes.txt").unlink()
    assert cli("prepare", DEMO_DATA, mine, "--size", "28", "--no-progress") == 0
    assert cli("prepare", DEMO_DATA, mine, "--size", "32", "--resize", "pad", "--overwrite", "--no-progress") == 0
    assert sorted(os.listdir(mine)) == ["test", "train"]
    assert PreparedDataset(mine / "train").shape == PreparedDataset(mine / "test").shape == (32, 32, 1)
