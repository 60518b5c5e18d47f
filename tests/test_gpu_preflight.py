"""The GPU check's preflight (scripts/gpu_preflight.py) imports everything its steps need, so a
machine that lacks one (pytest for cuda_tests, or one of pytest's own requirements) stops the
check at once, naming it, rather than a later step failing with `no tally`."""

import ast
import importlib.util
import json
import re
import shutil
import subprocess
import sys
from importlib import metadata

import pytest
from packaging.requirements import Requirement
from tests.support import ENV, ROOT

DEVICE_PYTHON = {"python_version": "3.12", "python_full_version": "3.12.0", "sys_platform": "linux",
                 "platform_system": "Linux", "os_name": "posix", "extra": ""}  # fmt: skip


def preflight():
    spec = importlib.util.spec_from_file_location("gpu_preflight", ROOT / "scripts" / "gpu_preflight.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # its main() runs only as a script
    return module


def checked() -> set[str]:
    """The top-level names the preflight imports, needed or optional."""
    module = preflight()
    names = [name for names in module.NEEDED.values() for name in names] + list(module.OPTIONAL)
    return {name.split(".")[0] for name in names}


def step_code() -> list:
    """The Python the check's steps run: lsvr, the scripts and test files gpu_check.sh names, and
    the tests' shared modules."""
    script = (ROOT / "scripts" / "gpu_check.sh").read_text()
    named = sorted(set(re.findall(r"(?:scripts|tests)/\w+\.py", script)))
    assert "tests/test_gpu_paths.py" in named and "scripts/sync_check.py" in named  # the pattern still finds them
    return [*ROOT.joinpath("src", "lsvr").rglob("*.py"), *(ROOT / n for n in named),
            ROOT / "tests" / "support.py", ROOT / "tests" / "conftest.py"]  # fmt: skip


def third_party_imports(path) -> set[str]:
    """Top-level modules a file imports anywhere (inside functions too) that are neither the
    standard library's nor lsvr's or the tests' own."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            found.add(node.module.split(".")[0])
    return found - set(sys.stdlib_module_names) - {"lsvr", "tests", "__future__"}


def test_the_preflight_imports_every_module_the_steps_import():
    missing, imported = {}, checked()
    for path in step_code():
        for name in third_party_imports(path) - imported:
            missing.setdefault(name, str(path.relative_to(ROOT)))
    assert not missing, f"imported by the GPU check's steps but not by its preflight: {missing}"


def test_the_preflight_imports_pytest_and_its_requirements_on_the_devices_python():
    """cuda_tests runs pytest (with pytest-timeout: pyproject's `timeout`); each requirement of
    theirs on Python 3.12 / Linux, transitively, is a module the preflight imports."""
    modules: dict[str, set[str]] = {}
    for module, dists in metadata.packages_distributions().items():
        for dist in dists:
            modules.setdefault(dist.lower().replace("_", "-"), set()).add(module)
    want, seen = ["pytest", "pytest-timeout"], set()
    while want:
        dist = want.pop()
        if dist in seen:
            continue
        seen.add(dist)
        for text in metadata.requires(dist) or []:
            req = Requirement(text)
            if req.marker is None or req.marker.evaluate(DEVICE_PYTHON):
                want.append(req.name.lower().replace("_", "-"))
    assert {"pluggy", "iniconfig", "packaging"} <= seen
    uncovered = sorted(dist for dist in seen if not modules.get(dist, set()) & checked())
    assert not uncovered, f"pytest needs these on the GPU machine, and the preflight does not import them: {uncovered}"


def test_a_machine_without_one_of_pytests_requirements_stops_at_the_preflight_naming_it(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "iniconfig", None)  # `import iniconfig` raises ImportError, as where it is missing
    out = tmp_path / "preflight.json"
    assert preflight().main("cpu", str(out)) == 1
    found = json.loads(out.read_text())
    assert found["failure"].startswith("missing imports: iniconfig (cuda_tests (pytest and its requirements): ")
    assert found["failure"].endswith("see `make gpu-wheels`") and "steps" not in found  # no AlexNet step ran
    assert json.loads(capsys.readouterr().out)["failure"] == found["failure"]


@pytest.mark.slow  # about 2 s: pip started offline
def test_gpu_wheels_offline_names_every_wheel_the_preflight_needs_that_it_lacks(tmp_path):
    """`make gpu-wheels` without network: exit 1, naming each package of the preflight's list the
    machine's own Python does not bring (its torch, numpy and Pillow) and .whl/ does not hold."""
    (tmp_path / "scripts").mkdir()
    shutil.copy(ROOT / "scripts" / "gpu_wheels.sh", tmp_path / "scripts")
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    env = {**ENV, "PYTHON": sys.executable, "PIP_NO_INDEX": "1", "PIP_FIND_LINKS": "", "PIP_CONFIG_FILE": "/dev/null"}
    done = subprocess.run(["bash", str(tmp_path / "scripts" / "gpu_wheels.sh")], env=env, capture_output=True,
                          text=True, timeout=120)  # fmt: skip
    assert done.returncode == 1, done.stdout + done.stderr
    said = done.stderr.strip().splitlines()[-1]
    assert said.startswith("gpu-wheels: pip download failed (offline?) and .whl/ lacks "), said
    lacks = set(said.split(" lacks ")[1].split(":")[0].split())
    module = preflight()
    needed = {name.split(".")[0] for names in module.NEEDED.values() for name in names}
    machines_own = {"torch", "numpy", "PIL", "lsvr"}
    assert {"yaml" if n == "pyyaml" else n for n in lacks} == needed - machines_own
    assert (tmp_path / ".git" / "info" / "exclude").read_text().splitlines()[-1] == "/.whl/"
