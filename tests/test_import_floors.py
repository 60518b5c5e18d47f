"""The house: using a model never imports training code, and no module imports itself back.

Read from the source (every import, lazy ones inside functions and type-only ones included),
not from one run's sys.modules: a lazy import on a path a test does not take still counts."""

from __future__ import annotations

import ast
import functools
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"

# the commands that use a model: eval, predict, export, info, convert, and what they stand on
MODEL_SIDE = ("lsvr.cli_model", "lsvr.evaluate", "lsvr.inference", "lsvr.export", "lsvr.convert", "lsvr.info")


def _module(path: Path) -> str:
    parts = path.relative_to(SRC).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module(p): p for p in sorted(SRC.rglob("*.py"))}


@functools.cache
def imports(name: str) -> set[str]:
    """The lsvr modules a module names in any import statement (the module itself where one
    of them is a package's submodule: `from lsvr.train import checkpoint`)."""
    return named_in(MODULES[name].read_text(), name=name)


def named_in(source: str, *, name: str) -> set[str]:
    """The lsvr modules, other than `name`, that any import statement of source names:
    lazy ones inside functions and type-only ones under `if TYPE_CHECKING:` too."""
    tree = ast.parse(source)
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            assert not node.level, f"{name}: a relative import (lsvr's are absolute)"
            base = node.module or ""
            found |= {f"{base}.{a.name}" if f"{base}.{a.name}" in MODULES else base for a in node.names}
    return {m for m in found if m in MODULES and m != name}


def reachable(start: str) -> dict[str, str]:
    """Every module start's imports reach, each with the module that imports it."""
    seen, todo = {start: ""}, [start]
    while todo:
        here = todo.pop()
        for there in sorted(imports(here)):
            if there not in seen:
                seen[there] = here
                todo.append(there)
    return seen


def _path(seen: dict[str, str], end: str) -> str:
    chain = [end]
    while seen[chain[-1]]:
        chain.append(seen[chain[-1]])
    return " -> ".join(reversed(chain))


FLOORS = [m for m in MODULES if m.startswith(("lsvr.models", "lsvr.data", "lsvr.runs"))] + list(MODEL_SIDE)


@pytest.mark.parametrize("name", FLOORS)
def test_using_a_model_imports_no_training_code(name):
    seen = reachable(name)
    training = sorted(m for m in seen if m == "lsvr.train" or m.startswith("lsvr.train."))
    assert not training, f"{name} reaches training code: {_path(seen, training[0])}"


def test_the_check_sees_lazy_imports():
    """The walk counts an import inside a function (cli_train's are all lazy)."""
    assert "lsvr.train.trainer" in reachable("lsvr.cli_train")


def cycle_through(name: str) -> str | None:
    """An import cycle back to name, as `a -> b -> a`, or None where none returns to it."""
    for there in sorted(imports(name)):
        seen = reachable(there)
        if name in seen:
            return f"{name} -> {_path(seen, name)}"
    return None


def test_no_module_imports_itself_back():
    """No import cycle among lsvr's modules, counting every import statement: a type-only one
    ties two files into one floor as much as a runtime one (neither can be read or moved alone)."""
    cycles: dict[frozenset[str], str] = {}
    for name in MODULES:
        if (cycle := cycle_through(name)) is not None:
            cycles.setdefault(frozenset(cycle.split(" -> ")), cycle)
    assert not cycles, "import cycles: " + "; ".join(sorted(cycles.values()))


def test_the_cycle_check_sees_type_only_imports():
    source = "from typing import TYPE_CHECKING\n\nif TYPE_CHECKING:\n    from lsvr.config import Config\n"
    assert named_in(source, name="lsvr.x") == {"lsvr.config"}
