"""`lsvr predict` over many files: every readable image is predicted, each bad one is named on
stderr, and the exit status (2) says that some failed; a folder means the images inside it."""

import json
from pathlib import Path

import pytest
from tests.support import CONFIG, cli, sets, write_tree


@pytest.fixture(scope="module")
def run_and_images(tmp_path_factory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("predict")
    tree = write_tree(folder / "tree", {"a": 40, "b": 40, "c": 40})
    assert cli("prepare", tree, folder / "set", "--size", "32", "--no-progress") == 0
    assert cli("train", CONFIG, "--out", folder / "run", *sets(folder / "set", **{"train.epochs": 1})) == 0
    return folder / "run", tree


def test_one_bad_file_among_many_spoils_no_other(run_and_images, tmp_path, capsys):
    run, tree = run_and_images
    good = sorted((tree / "a").iterdir())[:3]
    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    args = [good[0], tmp_path / "missing.jpg", good[1], tmp_path / "broken.jpg", good[2]]
    capsys.readouterr()
    assert cli("predict", run, *args, "--json") == 2
    captured = capsys.readouterr()
    predicted = [p["image"] for p in json.loads(captured.out)["predictions"]]
    assert predicted == [str(p) for p in good]
    errors = [line for line in captured.err.splitlines() if "error" in line]
    assert len(errors) == 2 and "missing.jpg: no such image file" in errors[0] and "broken.jpg" in errors[1]
    assert "2 of 5 images could not be read" in captured.err


def test_a_folder_predicts_the_images_inside_sorted(run_and_images, capsys):
    run, tree = run_and_images
    (tree / "b" / "notes.txt").write_text("not an image")
    capsys.readouterr()
    assert cli("predict", run, tree / "b", "--json") == 0
    predicted = [p["image"] for p in json.loads(capsys.readouterr().out)["predictions"]]
    assert predicted == [str(p) for p in sorted((tree / "b").glob("*.JPEG"))] and len(predicted) == 40


@pytest.mark.parametrize("top", ["-1", "0"])
def test_a_top_below_one_is_refused_inone_line(run_and_images, capsys, top):
    run, tree = run_and_images
    capsys.readouterr()
    assert cli("predict", run, sorted((tree / "a").iterdir())[0], "--top", top) == 2
    captured = capsys.readouterr()
    assert captured.err == f"lsvr predict: error: --top must be a positive whole number, got {top}\n"
    assert captured.out == ""
