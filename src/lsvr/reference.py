"""docs/CLI.md and docs/CONFIG.md, generated from the code they describe.

    python -m lsvr.reference          # (make docs) rewrite both files
    python -m lsvr.reference --check  # exit 1 naming a file that differs from what the code gives

CLI.md walks lsvr's argparse parsers (every command and flag, in the order the parser declares
them), CONFIG.md the config dataclasses (every key with its type, default, choices and doc line).
Neither uses argparse's help formatter, whose wrapping follows the terminal's width: the same
code gives the same bytes on every machine, so a test (tests/test_reference_docs.py) can say a
committed file is stale.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import re
import sys
import types
import typing
from pathlib import Path
from typing import Any, Literal

from lsvr.cli import build_parser
from lsvr.config import sections
from lsvr.config_file import TEST_SECTIONS, TEST_SECTIONS_NOTE

REFRESH = "`make docs` (`python -m lsvr.reference`)"  # the command that rewrites both files
MARKUP = re.compile(r"[\\*<~]|(?<![0-9A-Za-z])_|_(?![0-9A-Za-z])")  # an _ inside a word is no emphasis
SYNOPSIS_WIDTH = 88  # fixed, not the terminal's: the file is the same wherever it is made


def note(source: str) -> str:
    return f"_Generated from {source} by {REFRESH}: do not edit by hand._\n"


def cell(text: str) -> str:
    """Text for a table cell: `|` escaped everywhere (code spans too, as GitHub reads tables);
    outside code spans, the characters Markdown would take as emphasis, HTML or strike-through."""
    parts = text.split("`")
    for i in range(0, len(parts), 2):  # the even parts lie outside `code`
        parts[i] = MARKUP.sub(lambda m: "\\" + m.group(), parts[i])
    return "`".join(parts).replace("|", "\\|").replace("\n", " ")


def code(value: Any) -> str:
    return f"`{value}`"


# --- docs/CLI.md ---------------------------------------------------------------------------


def _metavar(action: argparse.Action) -> str:
    """The value's name as argparse's usage shows it: METAVAR, {choice,...} or DEST."""
    if action.metavar is not None:
        return str(action.metavar)
    if action.choices is not None:
        return "{" + ",".join(str(c) for c in action.choices) + "}"
    return action.dest if not action.option_strings else action.dest.upper()


def _arity(action: argparse.Action) -> str:
    name, nargs = _metavar(action), action.nargs
    if nargs is None:
        return name
    if nargs == "?":
        return f"[{name}]"
    if nargs == "*":
        return f"[{name} ...]"
    if nargs == "+":
        return f"{name} [{name} ...]"
    if nargs == argparse.PARSER:
        return f"{name} ..."
    return " ".join([name] * int(nargs))


def _documented(parser: argparse.ArgumentParser) -> list[argparse.Action]:
    """The parser's arguments in their declared order, -h/--help left out (every command has it)."""
    return [a for a in parser._actions if not isinstance(a, argparse._HelpAction) and a.help != argparse.SUPPRESS]


def _subcommands(parser: argparse.ArgumentParser) -> list[tuple[str, str, argparse.ArgumentParser]]:
    """(name, help, parser) of each subcommand, as declared; an alias is not listed again."""
    found = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helps = {a.dest: a.help or "" for a in action._choices_actions}
            seen: set[int] = set()
            for name, sub in action.choices.items():
                if id(sub) not in seen:
                    seen.add(id(sub))
                    found.append((name, helps.get(name, ""), sub))
    return found


def _synopsis(prog: str, parser: argparse.ArgumentParser) -> str:
    """The usage line, options first and positionals last as argparse orders them, wrapped at a
    fixed width between whole arguments."""
    parts = []
    for action in _documented(parser):
        if not action.option_strings:
            continue
        flag = " | ".join(action.option_strings) if isinstance(action, argparse.BooleanOptionalAction) else None
        text = flag or (action.option_strings[0] + (f" {_arity(action)}" if action.nargs != 0 else ""))
        parts.append(text if action.required else f"[{text}]")
    parts += [_arity(a) for a in _documented(parser) if not a.option_strings]
    lines, line = [], prog
    for part in parts:
        if len(line) + 1 + len(part) > SYNOPSIS_WIDTH and line.strip():
            lines.append(line)
            line = " " * len(prog)
        line += " " + part
    return "\n".join([*lines, line])


def _value(action: argparse.Action) -> str:
    """What an argument takes: its arity, choices and type; a switch takes nothing."""
    if action.nargs == 0:
        return "(switch)"
    words = []
    named = action.metavar is not None or (action.option_strings and action.choices is None)
    if named or action.nargs is not None:  # else the name (a positional) or the choices say it
        words.append(code(_arity(action)))
    want = getattr(action.type, "want", None)  # lsvr.cli_args.Whole and Real say what they accept
    if action.choices is not None:
        words.append("one of " + ", ".join(code(c) for c in action.choices))
    elif want:
        words.append(want)
    elif action.type in (int, float):
        words.append({int: "a whole number", float: "a number"}[action.type])
    return cell(", ".join(words))


def _default(action: argparse.Action) -> str:
    default = action.default
    if default in (None, argparse.SUPPRESS, []) or action.nargs == 0:
        return ""
    return cell(code(default))


def _help(action: argparse.Action, prog: str) -> str:
    text = action.help or ""
    if "%" in text:  # argparse's own expansion: %(default)s, %(prog)s
        text = text % {**vars(action), "prog": prog}
    return cell(text)


def _anchor(prog: str) -> str:
    return "#" + prog.replace(" ", "-")  # GitHub's id of the heading `## lsvr bench`


def _command(prog: str, summary: str, parser: argparse.ArgumentParser) -> list[str]:
    """A command's text: what it does, its synopsis, its subcommands, a row per argument."""
    out = []
    for text in dict.fromkeys((summary, parser.description or "")):  # the same text once
        if text:
            out += [cell(text), ""]
    out += ["```text", _synopsis(prog, parser), "```", ""]
    subcommands = _subcommands(parser)
    if subcommands:
        out += ["| command | what it does |", "| --- | --- |"]
        out += [f"| [{code(f'{prog} {name}')}]({_anchor(f'{prog} {name}')}) | {cell(text)} |"
                for name, text, _ in subcommands]  # fmt: skip
        out.append("")
    args = [a for a in _documented(parser) if not isinstance(a, argparse._SubParsersAction)]
    if args:
        out += ["| argument | value | default | meaning |", "| --- | --- | --- | --- |"]
        for action in args:
            name = ", ".join(code(s) for s in action.option_strings) or code(action.metavar or action.dest)
            out.append(f"| {cell(name)} | {_value(action)} | {_default(action)} | {_help(action, prog)} |")
        out.append("")
    return out


def _walk(prog: str, summary: str, parser: argparse.ArgumentParser) -> list[tuple[str, str, argparse.ArgumentParser]]:
    """(prog, help, parser) of this command and every command under it, depth first as declared."""
    found = [(prog, summary, parser)]
    for name, help_text, sub in _subcommands(parser):
        found += _walk(f"{prog} {name}", help_text, sub)
    return found


def cli_reference(parser: argparse.ArgumentParser | None = None) -> str:
    """docs/CLI.md: every command of `lsvr` with its synopsis and a row per argument."""
    parser = parser or build_parser()
    (prog, summary, top), *commands = _walk("lsvr", "", parser)
    out = [note("lsvr's argparse parsers (src/lsvr/cli.py `build_parser`)"), "# lsvr commands", ""]
    out += _command(prog, summary, top)
    out += ["Every command also takes `-h`/`--help`. The keys of a config: [CONFIG.md](CONFIG.md).", ""]
    for prog, summary, sub in commands:
        out += [f"## {prog}", "", *_command(prog, summary, sub)]
    return "\n".join(out).rstrip("\n") + "\n"


# --- docs/CONFIG.md ------------------------------------------------------------------------


def _type(annotation: Any) -> str:
    """A key's type in the words a YAML preset or `--set` uses: `float or null`, `list of int`."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        return " or ".join("null" if a is type(None) else _type(a) for a in args)
    if origin is list:
        return f"list of {_type(args[0])}"
    if origin is Literal:
        return "one of " + ", ".join(code(a) for a in args)
    return annotation.__name__


def _yaml(value: Any) -> str:
    """A default as it is written in YAML: null, true, [20, 40]; a string bare ("" when empty)."""
    if isinstance(value, str) and value:
        return value
    return json.dumps(value)


def _section(name: str, cls: type, default: Any) -> list[str]:
    out = [f"## {name}", ""]
    if name in TEST_SECTIONS:  # as `lsvr train --keys` lists it: apart, last, saying why
        out += [f"_{cell(TEST_SECTIONS_NOTE[0].upper() + TEST_SECTIONS_NOTE[1:])}._", ""]
    out += ["| key | type | default | meaning |", "| --- | --- | --- | --- |"]
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        value = code(_yaml(getattr(default, f.name)))
        row = [code(f"{name}.{f.name}"), _type(hints[f.name]), value, f.metadata["doc"]]
        out.append("| " + " | ".join(cell(text) for text in row) + " |")
    return [*out, ""]


def config_reference() -> str:
    """docs/CONFIG.md: every config key by section in declared order, the test sections last."""
    names = sorted(sections(), key=lambda name: name in TEST_SECTIONS)  # stable: declared order kept
    out = [note("the config dataclasses (src/lsvr/config.py)"), "# lsvr config keys", ""]
    out += [
        "A preset (configs/\\*.yaml) sets them by section; `lsvr train CONFIG --set section.key=value` overrides"
        " one; `lsvr train --keys` lists them with their defaults. An unknown key or a value of the wrong"
        " type stops the run before it starts. The commands: [CLI.md](CLI.md).",
        "",
        "Sections: " + " · ".join(f"[{name}](#{name})" for name in names),
        "",
    ]
    for name in names:
        cls = sections()[name]
        out += _section(name, cls, cls())  # Config() holds each section at its own defaults
    return "\n".join(out).rstrip("\n") + "\n"


# --- the files -----------------------------------------------------------------------------

ROOT = Path(__file__).resolve().parents[2]  # the checkout: src/lsvr/reference.py


def generated() -> dict[str, str]:
    """{path under the checkout: its text}."""
    return {"docs/CLI.md": cli_reference(), "docs/CONFIG.md": config_reference()}


def stale(root: Path = ROOT) -> list[str]:
    """The generated files whose committed text differs from what the code gives now."""
    return [path for path, text in generated().items() if _read(root / path) != text]


def _read(path: Path) -> str | None:
    return path.read_text(encoding="utf-8") if path.is_file() else None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lsvr.reference", description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="write nothing; exit 1 naming each stale file")
    args = parser.parse_args(argv)
    if not (ROOT / "pyproject.toml").is_file():
        print(f"lsvr.reference: {ROOT} is not lsvr's source checkout; run it from one", file=sys.stderr)
        return 2
    if args.check:
        paths = stale()
        for path in paths:
            print(f"{path} is stale: run {REFRESH}", file=sys.stderr)
        return 1 if paths else 0
    for path, text in generated().items():
        (ROOT / path).write_text(text, encoding="utf-8")
        print(f"wrote {path} ({text.count(chr(10))} lines)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
