"""Reading a config: YAML presets, `--set a.b=c` overrides, and the key listing.

An unknown key raises InputError naming the closest valid keys (all of them: `lsvr train
--keys`), a value of the wrong type one naming the type expected, before anything else
starts; the sections themselves and their checks are in lsvr.config.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import types
import typing
from pathlib import Path
from typing import Any, Literal

import yaml

from lsvr.config import Config, sections
from lsvr.config_checks import check_ranges
from lsvr.errors import InputError


def valid_keys() -> list[str]:
    """Every settable key, as `section.name`."""
    return [f"{name}.{f.name}" for name, cls in sections().items() for f in dataclasses.fields(cls)]


def unknown_key(section: str, key: str | None = None) -> InputError:
    """The error for an unknown section (key None) or key: the closest valid names ("did you
    mean data.normalize?"), not all 92 of them; `lsvr train --keys` lists those."""
    known = {name: [f.name for f in dataclasses.fields(cls)] for name, cls in sections().items()}
    if key is None:
        what, close = f"section {section!r}", difflib.get_close_matches(section, known, n=3)
    else:
        what = f"key {section}.{key}"
        close = [f"{section}.{k}" for k in difflib.get_close_matches(key, known[section], n=3)]
        close += [f"{other}.{key}" for other, keys in known.items() if other != section and key in keys]
    hint = f"; did you mean {' or '.join(close)}?" if close else ""
    return InputError(f"config: unknown {what}{hint} (`lsvr train --keys` lists every key)")


TEST_SECTIONS = ("debug",)  # listed apart by `--keys`: no real run sets them
TEST_SECTIONS_NOTE = "for tests only: failures on purpose (lsvr.train.faults); a real run leaves these alone"


def describe_keys() -> str:
    """One line per key: name, default and doc (for `lsvr train --keys`; docs/CONFIG.md is
    generated apart); the sections for tests come last, under a heading that says so."""
    lines, tests = [], []
    default = Config()
    for name, cls in sections().items():
        for f in dataclasses.fields(cls):
            value = getattr(getattr(default, name), f.name)
            line = f"{name}.{f.name} = {value!r}  # {f.metadata['doc']}"
            (tests if name in TEST_SECTIONS else lines).append(line)
    heading = ["", f"# {TEST_SECTIONS_NOTE}"]
    return "\n".join(lines + (heading + tests if tests else []))


def _check_type(key: str, value: Any, annotation: Any) -> Any:
    """Return value if it fits the annotation (ints widen to floats), else raise InputError."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(annotation)
        if value is None and type(None) in options:
            return None
        (inner,) = [a for a in options if a is not type(None)]
        return _check_type(key, value, inner)
    if origin is list:
        (inner,) = typing.get_args(annotation)
        if not isinstance(value, list):
            raise InputError(f"config: {key} must be a list, got {value!r}")
        return [_check_type(f"{key}[]", v, inner) for v in value]
    if origin is Literal:  # the type of its values here; which values, in Config.__post_init__
        annotation = type(typing.get_args(annotation)[0])
    if annotation is float:
        return _float(key, value)
    ok = isinstance(value, annotation) and not (annotation is int and isinstance(value, bool))
    if not ok:
        raise InputError(f"config: {key} must be {annotation.__name__}, got {value!r}")
    return value


def _float(key: str, value: Any) -> float:
    """A float key takes every finite literal float() takes: YAML 1.1 reads `1e-3` as a
    string (it wants `1.0e-3`), ints widen, and NaN or Inf fit no key."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise InputError(f"config: {key} must be float, got {value!r}")
    try:
        number = float(value)
    except ValueError:
        raise InputError(f"config: {key} must be float, got {value!r}") from None
    if not math.isfinite(number):
        raise InputError(f"config: {key} must be a finite number, got {value!r}")
    return number


# Sections an earlier lsvr wrote under another name (section, its keys renamed): the
# config.yaml of a run folder written then, and a preset that still uses them, read as now.
RENAMED = {"fault": ("debug", {"kind": "fault"})}


def _renamed(raw: dict[str, Any]) -> dict[str, Any]:
    out = dict(raw)
    for old, (new, keys) in RENAMED.items():
        if old not in out:
            continue
        if new in out:
            raise InputError(f"config: section {old!r} is the earlier name of {new!r}: give one of them")
        value = out.pop(old)
        out[new] = {keys.get(k, k): v for k, v in value.items()} if isinstance(value, dict) else value
    return out


def from_dict(raw: dict[str, Any]) -> Config:
    """Build a Config from nested mappings, refusing unknown keys and wrong types."""
    if not isinstance(raw, dict):
        raise InputError("config: the top level must be a mapping of sections")
    raw = _renamed(raw)
    hints = sections()
    built = {}
    for name, value in raw.items():
        if name not in hints:
            raise unknown_key(name)
        if not isinstance(value, dict):
            raise InputError(f"config: section {name!r} must be a mapping")
        cls = hints[name]
        fields = typing.get_type_hints(cls)
        kwargs = {}
        for key, v in value.items():
            if key not in fields:
                raise unknown_key(name, key)
            kwargs[key] = _check_type(f"{name}.{key}", v, fields[key])
        built[name] = cls(**kwargs)
    config = Config(**built)
    check_ranges(config)
    return config


def apply_overrides(raw: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply `section.key=value` strings; values are YAML (`[20,40]`, `true`, `0.1`, `null`)."""
    for item in overrides:
        key, sep, text = item.partition("=")
        parts = key.strip().split(".")
        if not sep or len(parts) != 2 or not all(parts):
            raise InputError(f"--set {item!r}: expected section.key=value")
        try:
            value = yaml.safe_load(text) if text.strip() else ""
        except yaml.YAMLError as exc:
            raise InputError(f"--set {item!r}: value is not valid YAML ({exc.__class__.__name__})") from None
        raw.setdefault(parts[0], {})
        if not isinstance(raw[parts[0]], dict):
            raise InputError(f"--set {item!r}: {parts[0]} is not a section")
        raw[parts[0]][parts[1]] = value
    return raw


class _UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that refuses a key given twice in one mapping: PyYAML keeps the last one
    silently, so a preset with `lr` set twice trained with whichever came second."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                line = key_node.start_mark.line + 1
                raise InputError(f"{self.name}: the key {key!r} is given twice in one mapping (line {line})")
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def _read_yaml(path: Path) -> Any:
    """The YAML document of a config file; a file that is not UTF-8 text (an image given by
    mistake), not YAML, or with a key given twice is one InputError naming it."""
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InputError(
            f"{path}: not a YAML config (not UTF-8 text: byte {exc.start} is {exc.object[exc.start]:#04x})"
        ) from None
    except OSError as exc:
        raise InputError(f"{path}: the config cannot be read ({exc.strerror or exc})") from None
    loader = _UniqueKeyLoader(text)
    loader.name = str(path)  # the errors name the file, not "<unicode string>"
    try:
        return loader.get_single_data() or {}
    except yaml.YAMLError as exc:
        raise InputError(f"{path}: not valid YAML ({str(exc).splitlines()[0]})") from None
    finally:
        loader.dispose()


def load_config(path: str | Path | None, overrides: list[str] | tuple[str, ...] = ()) -> Config:
    """Read a YAML preset (or start from the defaults when path is None) and apply overrides."""
    raw: dict[str, Any] = {}
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise InputError(f"{path}: config file not found")
        raw = _read_yaml(path)
        if not isinstance(raw, dict):
            raise InputError(f"{path}: the top level must be a mapping of sections")
    return from_dict(apply_overrides(raw, list(overrides)))
