"""Model names -> builders, with the parameter counts `lsvr models` prints."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from torch import nn

from lsvr.errors import InputError
from lsvr.models.alexnet import AlexNet, AlexNetSmall, AlexNetTV


@dataclass(frozen=True)
class ModelSpec:
    build: Callable[..., nn.Module]
    default_crop: int
    about: str
    scalable: bool = False  # takes a width multiplier


MODELS: dict[str, ModelSpec] = {
    "alexnet": ModelSpec(AlexNet, 227, "the paper's AlexNet: groups=2, pool->LRN(k=2), Gaussian init"),
    "alexnet_tv": ModelSpec(AlexNetTV, 224, "torchvision's AlexNet layout: its weights files load as they are"),
    "alexnet_small": ModelSpec(AlexNetSmall, 28, "the paper's structure for 28-64 px inputs", True),
    "alexnet_small_bn": ModelSpec(
        lambda **kw: AlexNetSmall(batchnorm=True, **kw), 28, "alexnet_small with BatchNorm in place of LRN", True
    ),
}


def model_spec(name: str) -> ModelSpec:
    if name not in MODELS:
        raise InputError(f"unknown model {name!r}; known: {', '.join(MODELS)}")
    return MODELS[name]


def build_model(
    name: str, *, num_classes: int, in_channels: int, crop: int, dropout: float, width: float = 1.0
) -> nn.Module:
    """Build a model by name; a crop the model cannot take is an InputError."""
    spec = model_spec(name)
    extra = {}
    if width != 1.0:
        if not spec.scalable:
            raise InputError(f"model.width: {name} has the paper's fixed widths; only alexnet_small* scale")
        extra["width"] = width
    try:
        return spec.build(num_classes=num_classes, in_channels=in_channels, crop=crop, dropout=dropout, **extra)
    except ValueError as exc:
        raise InputError(str(exc)) from None


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def describe_models(num_classes: int = 1000, in_channels: int = 3) -> list[dict]:
    """One row per model: name, the crop its count is taken at, parameter count, summary."""
    rows = []
    for name, spec in MODELS.items():
        model = build_model(name, num_classes=num_classes, in_channels=in_channels, crop=spec.default_crop, dropout=0.5)
        rows.append(
            {
                "name": name,
                "crop": spec.default_crop,
                "classes": num_classes,
                "channels": in_channels,
                "parameters": count_parameters(model),
                "about": spec.about,
            }
        )
    return rows
