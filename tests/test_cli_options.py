"""Every option of every command: a bad number stops the command in one line before anything is
read or written, and every argument says what it is in --help (docs/CLI.md lists them all:
tests/test_reference_docs.py)."""

import argparse

import pytest
from tests.support import cli, one_line, write_tree

from lsvr.cli import build_parser
from lsvr.cli_args import Real, Whole


def _commands() -> dict[str, argparse.ArgumentParser]:
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return dict(sub.choices)


def _bad_values(action: argparse.Action) -> list[str]:
    """Values the option must refuse: below and above its range, a fraction for a whole number,
    nan and inf for a real one, words; a value outside the choices of one that has some."""
    kind = action.type
    if isinstance(kind, Whole):
        return [str(kind.low - 1), "-5", "1.5", "many"] + ([str(kind.high + 1)] if kind.high is not None else [])
    if isinstance(kind, Real):
        edge = [str(kind.low)] if kind.above else [str(kind.low - 1)]
        return [*edge, "nan", "inf", "-inf", "many"] + ([str(kind.high + 1)] if kind.high is not None else [])
    assert action.choices, f"{action.option_strings}: a number of type {kind} without bounds or choices"
    return ["2" if 2 not in action.choices else "7", "many"]


NUMERIC = [
    (command, action.option_strings[0], bad)
    for command, parser in _commands().items()
    for action in parser._actions
    if action.type in (int, float) or isinstance(action.type, (Whole, Real))
    for bad in _bad_values(action)
]


def test_every_numeric_option_has_a_checked_type():
    flags = {(command, flag) for command, flag, _ in NUMERIC}
    named = {("eval", "--batch"), ("eval", "--threads"), ("eval", "--shift"), ("prepare", "--workers"),
             ("prepare", "--max-rejects"), ("predict", "--top"), ("doctor", "--seconds"), ("bench", "--rounds"),
             ("train", "--profile")}  # fmt: skip
    assert named <= flags


@pytest.mark.parametrize(("command", "flag", "bad"), NUMERIC)
def test_a_bad_number_is_refused_in_one_line_before_anything_is_read(tmp_path, capsys, command, flag, bad):
    parser = _commands()[command]
    positionals = [a for a in parser._actions if not a.option_strings and a.nargs != "?"]
    values = [a.choices[0] if a.choices else str(tmp_path / "none") for a in positionals]
    assert cli(command, *values, f"{flag}={bad}") == 2
    one_line(capsys, f"lsvr {command}: error: ", flag, bad)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("flags", "says"),
    [(("--batch", "0"), "--batch must be a positive whole number, got 0"),
     (("--batch", "-5"), "--batch must be a positive whole number, got -5"),
     (("--threads", "-3"), "--threads must be in 0..1024, got -3"),
     (("--threads", "100000"), "--threads must be in 0..1024, got 100000"),  # "can't start new thread"
     (("--resize", "100000"), "--resize must be in 1..4096, got 100000")],
)  # fmt: skip
def test_eval_refuses_a_bad_batch_or_thread_count(tmp_path, capsys, flags, says):
    assert cli("eval", tmp_path / "run", tmp_path / "set", *flags) == 2
    one_line(capsys, says)


@pytest.mark.parametrize("workers", ["-1", "0"])
def test_prepare_refuses_a_worker_count_below_one_and_writes_nothing(tmp_path, capsys, workers):
    photos = write_tree(tmp_path / "photos", {"a": 2, "b": 2})
    out = tmp_path / "out"
    assert cli("prepare", photos, out, "--workers", workers, "--no-progress") == 2
    one_line(capsys, f"--workers must be in 1..1024, got {workers}")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["photos"]  # neither out/ nor out.partial/


def test_usage_errors_are_one_line(capsys):
    assert cli("eval", "run", "set", "--crops", "3") == 2
    one_line(capsys, "lsvr eval: error: argument --crops: invalid choice: 3", "`lsvr eval --help`")
    assert cli("predict") == 2
    one_line(capsys, "the following arguments are required: checkpoint, IMAGE|FOLDER")


def _every_action():
    for command, parser in _commands().items():
        for action in parser._actions:
            yield command, action


def test_every_argument_of_every_command_has_help():
    top = build_parser()
    sub = next(a for a in top._actions if isinstance(a, argparse._SubParsersAction))
    assert all(choice.help for choice in sub._choices_actions)  # each command in `lsvr --help`
    missing = [f"{command} {action.option_strings or action.dest}" for command, action in _every_action()
               if not (action.help or "").strip()]  # fmt: skip
    assert missing == []


def test_convert_help_names_the_model_it_takes(capsys):
    assert cli("convert", "--help") == 0
    out = capsys.readouterr().out
    assert "alexnet_tv" in out and "torchvision" in out
