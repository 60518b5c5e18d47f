"""The command blocks README.md and docs/*.md keep from running (a GPU, a cluster, an hour) are
parsed instead, as the tools themselves would read them: `torchrun` lines by torchrun's own
parser and what follows `-m lsvr` by lsvr's, `lsvr` lines by lsvr's, `sbatch` lines against
scripts/slurm/train.sbatch (its options, then the `lsvr train` it runs), `kubectl apply -f`
and scripts by the files they name, `make` by the Makefile's targets; every configs/*.yaml
named must exist and load. Every fence names its language, and every skip directive gives its
reason (tests/doc_blocks.py)."""

from __future__ import annotations

import ast
import contextlib
import io
import re
from pathlib import Path

import pytest
from tests.doc_blocks import (
    LANGUAGE,
    ROOT,
    document_paths,
    fence_infos,
    is_skip,
    logical_lines,
    name,
    read_documents,
    skipped_blocks,
    split_command,
)
from torch.distributed.run import get_args_parser

from lsvr.cli import build_parser
from lsvr.config_file import load_config

DOCUMENTS = read_documents()
SKIPPED = [(example, reason) for d in DOCUMENTS for example, reason in skipped_blocks(d)]
SHELL_NAMES = {"bash", "shell", "console", "shell-session", "zsh", "shellsession"}  # commands are `sh`
TEMPLATE = ROOT / "scripts" / "slurm" / "train.sbatch"
SBATCH_FLAGS = {"--requeue", "--exclusive", "--no-requeue", "--wait", "--test-only", "-h", "--help"}
SBATCH_OPTIONS = {"--partition", "--account", "--qos", "--time", "--nodes", "--gpus-per-node", "--ntasks-per-node",
                  "--cpus-per-task", "--job-name", "--output", "--error", "--mem", "--export", "--dependency",
                  "--chdir", "--constraint", "--gres", "--signal", "--open-mode", "--array", "--nodelist",
                  "-p", "-A", "-N", "-t", "-J", "-q", "-o", "-e", "-c", "-D", "-C", "-w"}  # fmt: skip


def parsed(parser, argv: list[str], what: str):
    """argv parsed by parser; an AssertionError with the parser's own message where it refuses."""
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err):
            return parser.parse_args(argv)
    except SystemExit as e:
        raise AssertionError(f"{what} refuses {argv}: {err.getvalue().strip() or e}") from None


def check_config(config: str, overrides: list[str] = ()) -> None:
    assert (ROOT / config).is_file(), f"{config}: no such config"
    load_config(ROOT / config, list(overrides))  # every key set is one lsvr knows, of its type


def check_lsvr(argv: list[str]) -> None:
    args = parsed(build_parser(), argv, "lsvr's parser")
    if args.command == "train" and args.config:
        check_config(args.config, [item for items in args.set or [] for item in items])


def check_torchrun(argv: list[str]) -> None:
    args = parsed(get_args_parser(), argv, "torchrun's parser")
    if args.module and args.training_script == "lsvr":
        check_lsvr(args.training_script_args)
    elif not args.module:
        assert (ROOT / args.training_script).is_file(), f"torchrun's script {args.training_script}: no such file"


def template_default_config() -> str:
    return re.search(r"config=\$\{LSVR_CONFIG:-([^}]+)\}", TEMPLATE.read_text()).group(1)


def check_sbatch(env: dict[str, str], argv: list[str]) -> None:
    """sbatch [options] SCRIPT [lsvr train arguments]: the options sbatch takes, the script
    there, and the `lsvr train` line the template runs with what follows it."""
    known = SBATCH_OPTIONS | set(re.findall(r"^#SBATCH (-[\w-]+)", TEMPLATE.read_text(), flags=re.M))
    while argv and argv[0].startswith("-"):
        option = argv.pop(0)
        key = option.split("=", 1)[0]
        assert key in known | SBATCH_FLAGS, f"sbatch option {key}: not one the template or sbatch's common set knows"
        if "=" not in option and key not in SBATCH_FLAGS:
            assert argv, f"sbatch option {key} has no value"
            argv.pop(0)
    assert argv and (ROOT / argv[0]).is_file(), f"sbatch script {argv[:1]}: no such file"
    if Path(argv[0]).resolve() == TEMPLATE.resolve():
        config = env.get("LSVR_CONFIG", template_default_config())
        check_lsvr(["train", config, "--out", "runs/job", "--resume", "auto", "--set", "slurm.requeue=true", *argv[1:]])


def check_line(line: str) -> bool:
    """Checks one command line; whether it held a command these checks know."""
    env, words = split_command(line)
    if words[:1] == ["srun"]:  # srun [options] COMMAND, as tests/test_slurm.py's stand-in reads it
        words = words[1:]
        while words and words[0].startswith("-"):
            words.pop(0)
    for config in {c for w in words for c in re.findall(r"configs/[\w.-]+\.ya?ml", w)}:
        check_config(config)
    head, known = words[:3], True
    if words[:1] == ["torchrun"] or head == ["python", "-m", "torch.distributed.run"]:
        check_torchrun(words[1:] if words[0] == "torchrun" else words[3:])
    elif words[:1] == ["lsvr"] or head == ["python", "-m", "lsvr"]:
        check_lsvr(words[1:] if words[0] == "lsvr" else words[3:])
    elif words[:1] == ["sbatch"]:
        check_sbatch(env, words[1:])
    elif words[:3] == ["kubectl", "apply", "-f"]:
        assert (ROOT / words[3]).is_file(), f"kubectl apply -f {words[3]}: no such file"
    elif words[:1] == ["make"]:
        makefile = (ROOT / "Makefile").read_text()
        for target in [w for w in words[1:] if "=" not in w and not w.startswith("-")]:
            assert re.search(rf"^{re.escape(target)}:", makefile, flags=re.M), f"make {target}: no such target"
    elif words[:1] in (["python"], ["bash"]) and len(words) > 1 and words[1].endswith((".py", ".sh", ".sbatch")):
        assert (ROOT / words[1]).is_file(), f"{words[1]}: no such script"
    else:
        known = False
    return known


def commands(source: str) -> list[str]:
    """The block's command lines, `&&` split; a `for VAR in FIRST ...; do BODY; done` line gives
    its body with $VAR as FIRST."""
    lines = []
    for line in logical_lines(source):
        loop = re.match(r"^for (\w+) in (\S+).*?;\s*do\s+(.+?);?\s*done$", line)
        if loop:
            line = loop.group(3).replace("${" + loop.group(1) + "}", loop.group(2))
            line = re.sub(rf"\${loop.group(1)}\b", loop.group(2), line)
        lines += [part.strip() for part in line.split("&&")]
    return lines


def test_every_fence_names_its_language():
    bare = [f"{p.relative_to(ROOT)}:{line}" for p in document_paths() for line, info in fence_infos(p) if not info]
    shells = [f"{p.relative_to(ROOT)}:{line} ({info})" for p in document_paths() for line, info in fence_infos(p)
              if info in SHELL_NAMES]  # fmt: skip
    assert not bare, f"fences with no info string (commands: {LANGUAGE}; output and listings: text, yaml): {bare}"
    assert not shells, f"commands a user types are fenced `{LANGUAGE}`: {shells}"


def test_every_skip_directive_gives_a_reason_and_comes_right_before_a_command_block():
    for document in DOCUMENTS:
        examples = list(document.examples())
        for k, example in enumerate(examples):
            if not is_skip(example) or example.parsed[0] == "end":
                continue
            action, reason = example.parsed
            try:  # Sybil evaluates the reason as Python: a quoted string
                given = ast.literal_eval(reason) if reason else None
            except (ValueError, SyntaxError):
                given = None
            assert isinstance(given, str) and given.strip(), f"{name(example)}: skip: {action} with no quoted reason"
            after = examples[k + 1] if k + 1 < len(examples) else None
            between = document.text[example.region.end : after.region.start] if after else "x"
            between = re.sub(r"^\s*-+>", "", between)  # the directive's region ends before its `-->`
            assert after is not None and not is_skip(after) and not between.strip(), (
                f'{name(example)}: a skip directive stands on the line right before a fenced `{LANGUAGE}` block'
            )  # fmt: skip


@pytest.mark.parametrize("example,reason", SKIPPED, ids=[name(e) for e, _ in SKIPPED])
def test_a_skipped_command_block_parses(example, reason):
    assert reason, f"{name(example)}: skipped with no reason"
    checked = [check_line(line) for line in commands(str(example.parsed))]
    assert any(checked), f"{name(example)}: no command these checks know (torchrun, lsvr, sbatch, make, scripts...)"


def test_the_runner_s_scale_down_options_win_over_what_a_document_wrote():
    """tests/doc_shim.py appends; argparse keeps an option's last value and later --set items win."""
    from tests.doc_shim import scaled, torchrun_scaled

    written = ["train", "configs/resnet50_imagenet.yaml", "--set", "train.global_batch=1024", "train.max_steps=0"]
    args = build_parser().parse_args(scaled(written, "BENCH"))
    config = load_config(ROOT / args.config, [item for items in args.set for item in items])
    assert (config.train.global_batch, config.train.max_steps, config.train.progress) == (8, 2, False)
    bench = build_parser().parse_args(scaled(["bench", "train", "--images", "64", "--steps", "2"], "BENCH"))
    assert (bench.images, bench.steps, bench.rounds, bench.dir) == (20, 1, 1, "BENCH")
    torchrun = get_args_parser().parse_args(torchrun_scaled(["--nproc-per-node", "2", "-m", "lsvr", *written], "B"))
    assert torchrun.nproc_per_node == "2" and torchrun.training_script_args[-1] == "data.val_shift=0"
