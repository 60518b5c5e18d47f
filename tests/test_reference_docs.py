"""docs/CLI.md and docs/CONFIG.md are what `make docs` (lsvr.reference) makes of the code now:
a changed flag, help line or config key leaves a stale file, and this test names it. Every
command, argument and key is checked against the parsers and dataclasses themselves, so a
generator that drops one fails too."""

import argparse
import dataclasses
import difflib
import re

import pytest
from tests.support import ROOT

from lsvr import reference
from lsvr.cli import build_parser
from lsvr.config import sections
from lsvr.config_file import valid_keys


def check_fresh(path: str, text: str) -> None:
    """Fail, naming the file and the command that refreshes it, where the committed file differs."""
    file = ROOT / path
    committed = file.read_text(encoding="utf-8") if file.is_file() else ""
    if committed != text:
        diff = difflib.unified_diff(committed.splitlines(), text.splitlines(), "committed", "generated", lineterm="")
        shown = "\n".join(list(diff)[:20])
        pytest.fail(f"{path} is stale: run {reference.REFRESH} and commit it\n{shown}", pytrace=False)


def commands(prog: str, parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    """Every command under lsvr, nested ones too (`lsvr a b`), found from the parsers alone."""
    found = {prog: parser}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                found.update(commands(f"{prog} {name}", sub))
    return found


def missing_from_cli(text: str) -> list[str]:
    """The commands without a heading of their own, and the arguments not named under it."""
    missing = []
    for prog, parser in commands("lsvr", build_parser()).items():
        if prog == "lsvr":
            section = text.split("\n## ", 1)[0]
        else:
            match = re.search(rf"^## {prog}\n(.*?)(?=^## |\Z)", text, flags=re.M | re.S)
            if match is None:
                missing.append(prog)
                continue
            section = match.group(1)
        for action in parser._actions:
            if isinstance(action, (argparse._HelpAction, argparse._SubParsersAction)):
                continue
            names = action.option_strings or [action.metavar or action.dest]
            missing += [f"{prog} {name}" for name in names if f"`{name}`" not in section.replace("\\|", "|")]
    return missing


def missing_from_config(text: str) -> list[str]:
    """The keys without a row, and Literal choices their row leaves out."""
    rows = {m.group(1): m.group(0) for m in re.finditer(r"^\| `([a-z_]+\.[a-z_]+)` \|.*$", text, flags=re.M)}
    missing = [key for key in valid_keys() if key not in rows]
    for name, cls in sections().items():
        for f in dataclasses.fields(cls):
            row = rows.get(f"{name}.{f.name}", "")
            missing += [f"{name}.{f.name}: {doc}" for doc in [f.metadata["doc"]] if reference.cell(doc) not in row]
    return missing


@pytest.mark.parametrize("path", ["docs/CLI.md", "docs/CONFIG.md"])
def test_the_committed_reference_is_what_the_code_gives(path):
    check_fresh(path, reference.generated()[path])


def test_every_command_argument_and_key_is_listed():
    generated = reference.generated()
    assert missing_from_cli(generated["docs/CLI.md"]) == []
    assert missing_from_config(generated["docs/CONFIG.md"]) == []
    assert {"lsvr bench", "lsvr train", "lsvr predict"} <= set(commands("lsvr", build_parser()))  # the walk walks


def test_a_changed_help_line_leaves_cli_md_stale(monkeypatch, capsys):
    def edited():
        parser = build_parser()
        prepare = commands("lsvr", parser)["lsvr prepare"]
        size = next(a for a in prepare._actions if "--size" in a.option_strings)
        size.help = "the side | edited"
        return parser

    monkeypatch.setattr(reference, "build_parser", edited)
    text = reference.generated()["docs/CLI.md"]
    assert "| the side \\| edited |" in text
    with pytest.raises(pytest.fail.Exception, match=r"docs/CLI\.md is stale: run `make docs`"):
        check_fresh("docs/CLI.md", text)
    assert reference.main(["--check"]) == 1
    assert "docs/CLI.md is stale: run `make docs` (`python -m lsvr.reference`)" in capsys.readouterr().err.splitlines()


def test_a_new_config_key_leaves_config_md_stale(monkeypatch):
    @dataclasses.dataclass
    class Extra:
        level: int = dataclasses.field(default=3, metadata={"doc": "a key added since"})

    monkeypatch.setattr(reference, "sections", lambda: {**sections(), "extra": Extra})
    text = reference.generated()["docs/CONFIG.md"]
    assert "| `extra.level` | int | `3` | a key added since |" in text
    with pytest.raises(pytest.fail.Exception, match=r"docs/CONFIG\.md is stale"):
        check_fresh("docs/CONFIG.md", text)


def test_a_dropped_row_is_missed():
    generated = reference.generated()
    cli = generated["docs/CLI.md"].replace("| `--allow-cut` |", "| `--allow-cutting` |")
    assert missing_from_cli(cli) == ["lsvr prepare --allow-cut"]
    cli = generated["docs/CLI.md"].replace("## lsvr bench\n", "## lsvr benches\n")
    assert missing_from_cli(cli) == ["lsvr bench"]
    config = re.sub(r"^\| `optim\.nesterov` .*\n", "", generated["docs/CONFIG.md"], flags=re.M)
    assert missing_from_config(config) == ["optim.nesterov", "optim.nesterov: sgd: Nesterov momentum"]


def cells(row: str) -> int:
    """The cells of a table row as GitHub splits it: at each `|` not escaped."""
    return len(re.split(r"(?<!\\)\|", row.strip())) - 2


def test_every_table_row_has_the_cells_of_its_header():
    for path, text in reference.generated().items():
        header = 0
        for line in text.splitlines():
            if not line.startswith("|"):
                header = 0
            elif header == 0:
                header = cells(line)
            else:
                assert cells(line) == header, f"{path}: {line}"
    assert cells("| `IMAGE\\|FOLDER` | a | b | c |") == 4 and cells("| `IMAGE|FOLDER` | a | b | c |") == 5


def test_the_same_bytes_whatever_the_terminal_or_folder(monkeypatch, tmp_path):
    before = reference.generated()
    monkeypatch.setenv("COLUMNS", "40")
    monkeypatch.chdir(tmp_path)
    assert reference.generated() == before
    assert "```sh" not in "".join(before.values())  # the doc runner would run an sh block
