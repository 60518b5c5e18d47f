"""`lsvr export CHECKPOINT OUT.onnx` and `lsvr predict OUT.onnx`: a checkpoint's model as one
ONNX graph that takes images as bytes, its normalisation inside, for runtimes without torch.

The graph's input `images`: uint8 (N, C, eval_crop, eval_crop), NCHW, channels in the order
lsvr's loader gives (RGB; one grey channel for a grey set), values 0..255: each image already
brought to the record's evaluation view (`input_text` says it for one record). Its output
`logits`: float32 (N, classes). N is free (a dynamic axis). Inside it, lsvr's evaluation
normalisation (lsvr.data.augment.Augment): the mean image's centre eval_crop window subtracted,
or per channel (x - mean) * (1 / std) in 0..255 units, float32 as Augment computes it.

The model's metadata_props hold `lsvr` (JSON, the keys of a .safetensors export's metadata:
model, classes, preprocess (Preprocess.to_dict without the mean image), step, metrics, weights)
and `input` (the sentence of `input_text`).

Exporter: torch.onnx.export with dynamo=True (torch.export, then onnxscript's translation). The
TorchScript exporter (dynamo=False) refuses adaptive_avg_pool2d whose output does not divide its
input (seen: vgg11 at a 32 px crop, alexnet_tv at 63 px), so it cannot take every model at every
crop; torch.export took every family here (tests/test_export_onnx.py).
"""

from __future__ import annotations

import json
import logging
import sys
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from importlib.util import find_spec
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from lsvr.data.augment import Augment
from lsvr.data.draws import Draws
from lsvr.errors import InputError
from lsvr.folders import write_atomic
from lsvr.preprocess import Preprocess
from lsvr.runs.record import CheckpointRecord

INSTALL = "pip install 'lsvr[onnx]'"
INPUT, OUTPUT = "images", "logits"


def check_onnx_extra(what: str) -> None:
    """Refuse, before any work, where the onnx extra is not installed. what: export or predict."""
    for module in ("onnx", "onnxscript") if what == "export" else ("onnxruntime",):
        # found, not imported: onnxscript's import alone takes seconds
        there = sys.modules[module] is not None if module in sys.modules else find_spec(module) is not None
        if not there:
            raise InputError(f"{what} of .onnx files needs the onnx extra ({module} is missing): {INSTALL}")


class Normalized(nn.Module):
    """(N, C, crop, crop) uint8 images -> (N, classes) logits: the record's evaluation
    normalisation, as Augment does it on a centred eval_crop window, then the model."""

    def __init__(self, model: nn.Module, pre: Preprocess) -> None:
        super().__init__()
        self.model = model
        if pre.normalize == "mean_image":
            # the centre window Draws.centred cuts at eval_size (the stored size: check_view) and
            # Augment subtracts the mean image's same window
            size = pre.mean_image.shape[0]
            draws = Draws.centred(np.array([[size, size]]), resize=pre.eval_size, crop=pre.eval_crop)
            top, left, crop = int(draws.top[0]), int(draws.left[0]), pre.eval_crop
            window = pre.mean_image.float()[top : top + crop, left : left + crop]  # (crop, crop, C)
            self.register_buffer("mean", window.permute(2, 0, 1).contiguous())  # (C, crop, crop)
            self.register_buffer("inv_std", torch.ones(()))
        else:
            channels = pre.channels or 3
            mean = torch.tensor(pre.channel_mean or (0.0,) * channels, dtype=torch.float32)
            std = torch.tensor(pre.channel_std or (1.0,) * channels, dtype=torch.float32)
            self.register_buffer("mean", mean[:, None, None])  # (C, 1, 1)
            self.register_buffer("inv_std", (1.0 / std.clamp_min(1e-3))[:, None, None])  # Augment's, bit for bit
        self.scaled = pre.normalize != "mean_image"

    def forward(self, images: torch.Tensor) -> torch.Tensor:  # (N, C, crop, crop) uint8 -> (N, classes)
        pixels = images.float() - self.mean
        return self.model(pixels * self.inv_std if self.scaled else pixels)


def input_text(pre: Preprocess) -> str:
    """The graph's input and what a caller does first, in one sentence, for this record."""
    c, crop = pre.channels, pre.eval_crop
    order = "RGB" if c == 3 else ("grey" if c == 1 else f"{c} channels")
    if pre.resize == "short":
        stored = f"the shorter side resized to {pre.size} px" + (f" (the longer at most {pre.max_size})"
                                                                  if pre.max_size else "")  # fmt: skip
    else:
        stored = f"{pre.size} x {pre.size} px by resize policy {pre.resize or 'squash'}"
    return (f"{INPUT}: uint8 (N, {c}, {crop}, {crop}), NCHW, {order}, 0..255; each image decoded, {stored}"
            f" ({pre.interpolation}), then Resize({pre.eval_size}) on the shorter side and CenterCrop({crop});"
            f" {OUTPUT}: float32 (N, {len(pre.classes)})")  # fmt: skip


def export_onnx(model: nn.Module, state: CheckpointRecord, out: Path) -> Path:
    """Write the model (in eval mode, on the CPU) behind the record's normalisation as OUT.onnx,
    atomically: a failed export leaves an earlier OUT as it was."""
    pre = state.preprocess
    graph = Normalized(model, pre).eval()
    example = torch.randint(0, 256, (2, pre.channels, pre.eval_crop, pre.eval_crop), dtype=torch.uint8)
    with warnings.catch_warnings(), _quiet("torch.onnx", "torch.export", "torch._dynamo", "onnxscript"):
        warnings.simplefilter("ignore")  # the exporter's deprecation notes of torch internals
        program = torch.onnx.export(graph, (example,), None, dynamo=True, input_names=[INPUT],
                                    output_names=[OUTPUT], dynamic_shapes=({0: torch.export.Dim("batch")},),
                                    external_data=False, verbose=False)  # fmt: skip
    proto = program.model_proto
    info = {"model": state.config.get("model", {}), "classes": state.classes,
            "preprocess": pre.to_dict(mean_image=False), "step": state.step, "metrics": state.metrics,
            "weights": "ema" if state.weights is state.ema else "model"}  # fmt: skip
    for key, value in (("lsvr", json.dumps(info)), ("input", input_text(pre))):
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    proto.doc_string = f"lsvr {state.setting('model', 'name')}: {input_text(pre)}"
    out.parent.mkdir(parents=True, exist_ok=True)
    try:
        write_atomic(out, proto.SerializeToString())
    except OSError as exc:
        raise InputError(f"{out}: could not be written ({exc.strerror or exc})") from None
    return out


@contextmanager
def _quiet(*names: str) -> Iterator[None]:
    """Loggers held at ERROR for a while: the exporter logs a warning per torchvision operator it
    skips (torchvision is not installed) and its steps at INFO."""
    loggers = [logging.getLogger(name) for name in names]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)


class OnnxModel(nn.Module):
    """An exported graph run by onnxruntime, called as inference.predict calls a model: views
    from `raw_augment` (float32 holding whole pixel levels 0..255) in, logits out."""

    def __init__(self, session: Any) -> None:
        super().__init__()
        self.session = session

    def forward(self, views: torch.Tensor) -> torch.Tensor:  # (B, C, crop, crop) -> (B, classes)
        pixels = views.to(torch.uint8).contiguous().numpy()  # exact: the values are whole levels
        (logits,) = self.session.run([OUTPUT], {INPUT: pixels})
        return torch.from_numpy(logits)


def raw_augment(pre: Preprocess) -> Augment:
    """An Augment that cuts and mirrors evaluation's views as `augment_for` does but leaves the
    pixels as they are (mean 0, std 1: x * 1.0 in float32, exact): the graph normalises them."""
    channels = pre.channels or 3
    side = np.zeros((pre.eval_size, pre.eval_size, channels), np.float32)  # its side: where center() cuts
    return Augment(mean_image=side, channel_mean=[0.0] * channels, channel_std=[1.0] * channels,
                   crop=pre.eval_crop, normalize="channel")  # fmt: skip


def onnx_device(name: str) -> torch.device:
    """`lsvr predict X.onnx --device NAME`: onnxruntime's CPU provider runs the graph."""
    if name not in ("auto", "cpu"):
        raise InputError(f"--device {name}: an .onnx file runs on the CPU here (onnxruntime's CPU provider)")
    return torch.device("cpu")


def read_onnx(path: Path, *, threads: int = 0) -> tuple[OnnxModel, CheckpointRecord]:
    """An `lsvr export` .onnx file as the model predict calls and the record of its metadata;
    threads: onnxruntime's intra-op threads (0: its default, one per core). Views the graph
    cannot score are refused: with a mean image it holds the centre window's alone, so a record
    that also averages the mirror or shifted views cannot be followed."""
    import onnxruntime

    if not path.is_file():
        raise InputError(f"{path}: {'not a regular file' if path.exists() else 'no such file'}")
    options = onnxruntime.SessionOptions()
    options.log_severity_level = 3  # errors only
    options.intra_op_num_threads = threads
    try:
        session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own types (InvalidProtobuf, Fail, ...)
        raise InputError(f"{path}: not a readable ONNX model ({str(exc).splitlines()[0]})") from None
    try:
        meta = json.loads(session.get_modelmeta().custom_metadata_map.get("lsvr", "null"))
        pre = Preprocess.from_dict(meta["preprocess"], classes=meta["classes"])
    except (KeyError, TypeError, ValueError):
        raise InputError(f"{path}: an ONNX model without lsvr's metadata (make it with `lsvr export`)") from None
    names = ([i.name for i in session.get_inputs()], [o.name for o in session.get_outputs()])
    if names != ([INPUT], [OUTPUT]):
        raise InputError(f"{path}: inputs {names[0]} and outputs {names[1]}, not lsvr's [{INPUT!r}] and [{OUTPUT!r}]")
    views = ["the mirror (eval_flip)"] if pre.eval_flip else []
    views += [f"views shifted {pre.eval_shift} px (eval_shift)"] if pre.eval_shift else []
    if pre.normalize == "mean_image" and views:
        raise InputError(f"{path}: its record averages {' and '.join(views)} too, but the graph subtracts the mean"
                         " image's centre window only; predict from the checkpoint or its .safetensors")  # fmt: skip
    state = CheckpointRecord(config={"model": meta.get("model") or {}}, preprocess=pre, step=meta.get("step") or 0,
                             metrics=meta.get("metrics") or {})  # fmt: skip
    return OnnxModel(session), state
