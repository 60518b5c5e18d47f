"""The cluster templates say what lsvr and torchrun accept: deploy/pytorchjob.yaml (Kubeflow)
and scripts/slurm/train.sbatch."""

import os
import re
from unittest import mock

import yaml
from tests.support import ROOT
from torch.distributed.run import get_args_parser

from lsvr.cli import build_parser
from lsvr.config_file import load_config


def lsvr_train_args(torchrun_args: list[str]) -> list[str]:
    """torchrun's own arguments parsed as torchrun parses them; what follows `-m lsvr`."""
    parsed = get_args_parser().parse_args(torchrun_args)
    assert parsed.module and parsed.training_script == "lsvr", parsed
    return parsed.training_script_args


def test_the_pytorchjob_runs_an_lsvr_train_command_lsvr_accepts():
    job = yaml.safe_load((ROOT / "deploy" / "pytorchjob.yaml").read_text())
    assert job["kind"] == "PyTorchJob" and job["apiVersion"] == "kubeflow.org/v1"
    spec = job["spec"]
    assert spec["elasticPolicy"]["rdzvBackend"] == "c10d"
    pod = spec["pytorchReplicaSpecs"]["Worker"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["name"] == "pytorch" and container["command"] == ["torchrun"]
    argv = lsvr_train_args(container["args"])
    args = build_parser().parse_args(argv)
    assert args.command == "train" and args.resume == "auto" and args.out.startswith("/runs/")
    assert (ROOT / args.config).is_file()
    overrides = [item for items in args.set for item in items]
    load_config(ROOT / args.config, overrides)  # every key it sets is one lsvr knows
    claims = {v["name"]: v for v in pod["volumes"]}
    for mount in container["volumeMounts"]:
        assert mount["name"] in claims
    mounted = {m["mountPath"] for m in container["volumeMounts"]}
    assert {"/data", "/runs"} <= mounted and all(o.split("=", 1)[1].startswith("/data/") for o in overrides)


def test_the_sbatch_template_asks_for_the_warning_signal_and_forwards_it():
    text = (ROOT / "scripts" / "slurm" / "train.sbatch").read_text()
    directives = re.findall(r"^#SBATCH (\S+)", text, flags=re.M)
    assert "--signal=USR1@120" in directives and "--requeue" in directives
    exports = dict(re.findall(r"^export (\w+)=(\S+)", text, flags=re.M))
    assert "SIGUSR1" in exports["PET_SIGNALS_TO_HANDLE"].split(",")
    # torchrun reads PET_<FLAG> as the flag's default: the template's value is what its agent handles
    with mock.patch.dict(os.environ, {"PET_SIGNALS_TO_HANDLE": exports["PET_SIGNALS_TO_HANDLE"]}):
        parsed = get_args_parser().parse_args(["-m", "lsvr", "train"])
    assert "SIGUSR1" in parsed.signals_to_handle
    assert "--resume auto --set slurm.requeue=true" in text
