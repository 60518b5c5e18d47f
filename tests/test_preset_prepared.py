"""Every preset names the prepare its sets need, in its header and in data.prepared_with, and a
run on a set prepared otherwise is refused (where it would be wrong or not the preset's) or
warned of (where it is merely different) before the first step: a ResNet preset on a squash
256 set trained without a word, and predict then crashed."""

import shlex
from pathlib import Path
from types import SimpleNamespace

import pytest
from tests.ilsvrc_tars import write_ilsvrc
from tests.support import ROOT, as_rank, cli, one_line, train, write_tree

from lsvr.config_file import load_config
from lsvr.data.dataset import PreparedDataset
from lsvr.errors import InputError
from lsvr.prepared_with import parse_prepare, prepared_with, recorded_options
from lsvr.train.prepared_check import check_prepared

PRESETS = sorted(ROOT.glob("configs/*.yaml"))
UNCHECKED = {"debug"}  # the tests' preset: trained on sets prepared many ways (its header says so)
RESNET = ROOT / "configs" / "resnet50_imagenet.yaml"


def header_commands(preset: Path) -> list[list[str]]:
    """The `lsvr prepare` commands in the preset's opening comment (a line that starts with one,
    and the lines its trailing backslashes continue it onto)."""
    commands, open_ = [], False
    for line in preset.read_text().splitlines():
        if not line.startswith("#"):
            break
        text = line.lstrip("# ")
        if open_:
            commands[-1] += " " + text
        elif text.startswith("lsvr prepare "):
            commands.append(text)
        open_ = (open_ or text.startswith("lsvr prepare ")) and text.endswith("\\")
    return [shlex.split(command.replace("\\", " ")) for command in commands]


@pytest.mark.parametrize("preset", PRESETS, ids=lambda p: p.stem)
def test_the_header_prepares_what_data_prepared_with_checks(preset):
    cfg = load_config(preset)
    if preset.stem in UNCHECKED:
        assert cfg.data.prepared_with == "" and not header_commands(preset)
        return
    asked = prepared_with(cfg.data.prepared_with)
    commands = header_commands(preset)
    assert asked is not None and commands, f"{preset.name}: no data.prepared_with, or no prepare in its header"
    outs = set()
    for words in commands:
        args = parse_prepare(words[2:], what=preset.name)  # prepare's own parser: exit 2 would raise here
        assert recorded_options(args) == asked, f"{preset.name}: {shlex.join(words)}"
        outs.add(args.out)
    sets = {cfg.data.train, cfg.data.val}
    folders = {str(Path(s).parent) for s in sets}  # a folder of idx files gives OUT/train and OUT/test
    assert outs in (sets, folders), f"{preset.name}: the header prepares {outs}, the preset reads {sets}"


@pytest.mark.parametrize(
    ("value", "said"),
    [("--resize sideways", "invalid choice: 'sideways'"), ("--size 3", "--size must be in 8..4096, got 3"),
     ("--size 32 photos", "unrecognized arguments: photos"), ("--size 32 --max-size 400", "--max-size caps"),
     ("--resize short --encoding raw", "only --encoding jpeg"), ("--quality 80", "--quality is the JPEG quality"),
     ("--size '32", "No closing quotation"), ("--help", "--help names no option")],
)  # fmt: skip
def test_a_value_prepare_refuses_is_a_config_error_naming_the_key(value, said):
    with pytest.raises(InputError) as caught:
        load_config(None, [f"data.prepared_with={value}"])
    line = str(caught.value)
    assert line.startswith("config: data.prepared_with=") and said in line and "\n" not in line, line


def _set(**meta):
    """A fixed-shape set's meta.json as prepare writes it (squash 256, 3 channels, raw), changed by meta."""
    return SimpleNamespace(path=Path("prepared/x"), meta={"resize": "squash", "size": 256, "channels": 3,
                                                          "encoding": "raw", "jpeg_quality": None, **meta})  # fmt: skip


@pytest.mark.parametrize(
    ("asked", "meta", "said"),
    [("--size 256 --channels 3", {"channels": 1}, "--channels 1 where data.prepared_with asks for --channels 3"),
     ("--size 256 --resize pad", {}, "--resize squash where data.prepared_with asks for --resize pad"),
     ("--size 256 --resize center", {"resize": "squash", "size": 300}, "--resize squash where"),
     ("--size 256", {"size": 240}, "--size 240 where data.prepared_with asks for --size 256 (the random crop")],
)  # fmt: skip
def test_what_makes_the_run_wrong_is_refused(asked, meta, said):
    cfg = load_config(None, [f"data.prepared_with={asked}"])
    with pytest.raises(InputError) as caught:
        check_prepared(cfg, _set(**meta))
    line = str(caught.value)
    assert line.startswith("prepared/x: prepared with ") and said in line, line
    assert f"lsvr prepare SOURCE OUT {asked}" in line and line.endswith("--set data.prepared_with=")
    assert "--size 300" not in line  # a side of other images is not compared: the set is made again anyway


@pytest.mark.parametrize(
    ("asked", "meta", "said"),
    [("--size 256", {"size": 288}, "--size 288 where data.prepared_with asks for --size 256"),
     ("--size 256 --encoding jpeg", {}, "--encoding raw where data.prepared_with asks for --encoding jpeg"),
     ("--encoding jpeg --quality 95", {"encoding": "jpeg", "jpeg_quality": 90}, "--quality 90 where"),
     ("--size 256", {}, None), ("--channels 3", {"encoding": "jpeg", "jpeg_quality": 90}, "--encoding jpeg where"),
     ("", {"resize": "short", "channels": 1}, None)],
)  # fmt: skip
def test_what_is_merely_different_is_one_warning_line(asked, meta, said):
    line = check_prepared(load_config(None, [f"data.prepared_with={asked}"]), _set(**meta))
    if said is None:
        assert line is None
    else:
        assert line.startswith("lsvr train: warning: prepared/x: prepared with ") and said in line, line
        assert "\n" not in line and "--quality None" not in line


def test_a_set_of_an_older_lsvr_is_compared_on_what_it_records():
    old = _set()
    del old.meta["resize"], old.meta["jpeg_quality"]
    assert check_prepared(load_config(None, ["data.prepared_with=--size 256 --resize center"]), old) is None


@pytest.fixture(scope="module")
def photo_sets(tmp_path_factory) -> Path:
    """A few photos prepared as the README's ImageNet section once did (squash 256), and with a
    short side of 256 or 64 (capped at 400)."""
    root = tmp_path_factory.mktemp("photo_sets")
    write_tree(root / "photos", {"n01440764": 2, "n01443537": 2}, size=(80, 60))
    for name, options in (("squash256", ["--size", "256"]), ("short256", ["--resize", "short", "--size", "256",
                          "--max-size", "400"]), ("short64", ["--resize", "short", "--size", "64"])):  # fmt: skip
        assert cli("prepare", root / "photos", root / name, *options, "--no-progress") == 0
    return root


def test_a_resnet_preset_on_a_squash_256_set_is_refused_in_one_line_before_anything(photo_sets, tmp_path, capsys):
    out = tmp_path / "run"
    capsys.readouterr()
    assert cli("train", RESNET, "--out", out, "--set", f"data.train={photo_sets / 'squash256'}", "data.val=null") == 2
    one_line(capsys, f"lsvr train: error: {photo_sets / 'squash256'}: prepared with --resize squash where"
             " data.prepared_with asks for --resize short (its RandomResizedCrop and shorter-side evaluation need"
             " each image's aspect kept)", "lsvr prepare SOURCE OUT --resize short --size 320 --max-size 500",
             "--set data.prepared_with=")  # fmt: skip
    assert not out.exists()


def test_a_preset_run_before_its_sets_are_prepared_gives_the_prepare_command(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the preset's own prepared/imagenet-short/train, not made yet
    capsys.readouterr()
    assert cli("train", RESNET, "--out", tmp_path / "run") == 2
    one_line(capsys, "lsvr train: error: prepared/imagenet-short/train: no such folder; make it with `lsvr prepare"
             " SOURCE prepared/imagenet-short/train --resize short --size 320 --max-size 500`")  # fmt: skip
    assert sorted(tmp_path.iterdir()) == []


@pytest.mark.parametrize(("rank", "local_rank", "waits"), [(1, 1, True), (2, 0, False)])
def test_every_rank_refuses_it_alike(photo_sets, tmp_path, capsys, monkeypatch, rank, local_rank, waits):
    waited = as_rank(monkeypatch, rank, local_rank)
    capsys.readouterr()
    assert cli("train", RESNET, "--out", tmp_path / "run", "--set", f"data.train={photo_sets / 'squash256'}") == 2
    one_line(capsys, f"lsvr train: error: rank {rank}: {photo_sets / 'squash256'}: prepared with --resize squash")
    assert waited == ([True] if waits else [])


def test_a_short_set_too_small_for_the_evaluation_is_refused_and_a_smaller_one_that_holds_it_warned_of(photo_sets):
    cfg = load_config(RESNET, ["data.val=null"])
    with pytest.raises(InputError) as caught:
        check_prepared(cfg, PreparedDataset(photo_sets / "short64"))
    assert (
        "--size 64 where data.prepared_with asks for --size 320 (the evaluation resizes the shorter side to 256:"
        " smaller images would be upscaled)"
    ) in str(caught.value)
    line = check_prepared(cfg, PreparedDataset(photo_sets / "short256"))
    assert "--size 256 where data.prepared_with asks for --size 320; --max-size 400 where" in line, line


def test_a_run_on_a_set_merely_different_warns_once_before_the_first_step_and_trains(tiny_data, tmp_path, capsys):
    capsys.readouterr()
    asked = '"--size 32 --encoding jpeg"'  # tiny_data holds raw pixels
    assert train(tmp_path / "run", tiny_data, **{"data.prepared_with": asked, "train.max_steps": 1}) == 0
    err = capsys.readouterr().err.splitlines()
    warned = [i for i, line in enumerate(err) if "prepared with --encoding raw where" in line]
    started = [i for i, line in enumerate(err) if line.startswith("lsvr train: run ")]
    assert len(warned) == 1 and warned[0] < started[0], err


def test_the_imagenet_headers_commands_make_sets_their_presets_take_without_a_word(tmp_path, monkeypatch):
    """The headers' prepare commands, run as written on stand-ins of the three official files."""
    write_ilsvrc(tmp_path)
    monkeypatch.chdir(tmp_path)
    for preset in ("alexnet_imagenet", "resnet50_imagenet"):
        path = ROOT / "configs" / f"{preset}.yaml"
        for words in header_commands(path):
            assert cli(*words[1:], "--no-progress") == 0, shlex.join(words)
        cfg = load_config(path)
        for folder in (cfg.data.train, cfg.data.val):
            assert check_prepared(cfg, PreparedDataset(folder)) is None, f"{preset}: {folder}"


def test_the_demo_set_is_what_the_demo_preset_asks_for(demo_prepared):
    cfg = load_config(ROOT / "configs" / "demo.yaml")
    for split in ("train", "test"):
        assert check_prepared(cfg, PreparedDataset(demo_prepared / split)) is None
