"""Model names -> builders and the input each model declares, with the parameter counts and
forward multiply-adds `lsvr models` prints."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import nn

from lsvr.errors import InputError
from lsvr.models import convnext, googlenet, resnet, vgg, vit
from lsvr.models.alexnet import AlexNet, AlexNetSmall, AlexNetTV
from lsvr.models.blurpool import MIN_CHANNELS, apply_blurpool
from lsvr.models.quicknet import QuickNet

# torchvision's and timm's ImageNet statistics, in 0..1 units (x255 for lsvr's 0..255 pixels).
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class ModelSpec:
    """A builder and what its model needs of its input, as timm's pretrained config declares it
    (input size, crop_pct, interpolation, mean, std). The defaults are torchvision's ImageNet
    recipe: random 224 crops in training; shorter side 256, centre 224 in evaluation."""

    build: Callable[..., nn.Module]
    about: str
    default_crop: int = 224  # the training crop; data.crop=0 takes it (capped at the stored side)
    eval_resize: int | None = 256  # shorter side before the centre crop; None: the stored image as prepared
    eval_crop: int = 224  # the centre crop evaluated
    interpolation: Literal["bilinear", "bicubic"] = "bilinear"  # of the resizes
    normalize: Literal["mean_image", "channel"] = "channel"  # the paper's mean image, or channel mean/std
    mean: tuple[float, ...] | None = IMAGENET_MEAN  # channel mean, 0..1 units; None: the training set's own
    std: tuple[float, ...] | None = IMAGENET_STD  # channel std, 0..1 units; None: the training set's own
    scalable: bool = False  # takes a width multiplier (model.width)
    dropout: float | None = None  # its classifier dropout (model.dropout=null takes it); None: it has none
    residual: bool = False  # built of residual blocks: takes model.zero_init_residual


def _alexnet_small_bn(**kw: Any) -> nn.Module:
    return AlexNetSmall(batchnorm=True, **kw)


# One entry per model. The alexnet family keeps what lsvr did before models declared their
# input: evaluation takes the centre of the stored image (eval_resize None).
# Dropout as each model's torchvision builder has it (googlenet's 0.2 before its fc).
_PAPER = {"eval_resize": None, "normalize": "mean_image", "mean": None, "std": None, "dropout": 0.5}
_SMALL = {"default_crop": 28, "eval_resize": None, "eval_crop": 28, "mean": None, "std": None, "scalable": True,
          "dropout": 0.5}  # fmt: skip
_VGG = {"dropout": 0.5}
_RESNET = {"residual": True}
MODELS: dict[str, ModelSpec] = {
    "alexnet": ModelSpec(AlexNet, "the paper's AlexNet: groups=2, pool->LRN(k=2), Gaussian init",
                         default_crop=227, eval_crop=227, **_PAPER),
    "alexnet_tv": ModelSpec(AlexNetTV, "torchvision's AlexNet layout: its weights files load as they are",
                            dropout=0.5),
    "alexnet_small": ModelSpec(AlexNetSmall, "the paper's structure for 28-64 px inputs", **_SMALL),
    "alexnet_small_bn": ModelSpec(_alexnet_small_bn, "alexnet_small with BatchNorm in place of LRN", **_SMALL),
    "quicknet": ModelSpec(QuickNet, "7 convs in airbench's layout for 28-64 px inputs; any side from 8 px",
                          **{**_SMALL, "dropout": 0.0}),
    "resnet18": ModelSpec(resnet.resnet18, "ResNet-18 (v1.5), torchvision's layout", **_RESNET),
    "resnet34": ModelSpec(resnet.resnet34, "ResNet-34 (v1.5), torchvision's layout", **_RESNET),
    "resnet50": ModelSpec(resnet.resnet50, "ResNet-50 v1.5 (stride on the 3x3), torchvision's layout", **_RESNET),
    "resnet101": ModelSpec(resnet.resnet101, "ResNet-101 v1.5, torchvision's layout", **_RESNET),
    "resnet152": ModelSpec(resnet.resnet152, "ResNet-152 v1.5, torchvision's layout", **_RESNET),
    "vgg11": ModelSpec(vgg.vgg11, "VGG-11 (configuration A), torchvision's layout", **_VGG),
    "vgg11_bn": ModelSpec(vgg.vgg11_bn, "VGG-11 with BatchNorm, torchvision's layout", **_VGG),
    "vgg13": ModelSpec(vgg.vgg13, "VGG-13 (configuration B), torchvision's layout", **_VGG),
    "vgg13_bn": ModelSpec(vgg.vgg13_bn, "VGG-13 with BatchNorm, torchvision's layout", **_VGG),
    "vgg16": ModelSpec(vgg.vgg16, "VGG-16 (configuration D), torchvision's layout", **_VGG),
    "vgg16_bn": ModelSpec(vgg.vgg16_bn, "VGG-16 with BatchNorm, torchvision's layout", **_VGG),
    "vgg19": ModelSpec(vgg.vgg19, "VGG-19 (configuration E), torchvision's layout", **_VGG),
    "vgg19_bn": ModelSpec(vgg.vgg19_bn, "VGG-19 with BatchNorm, torchvision's layout", **_VGG),
    "googlenet": ModelSpec(googlenet.googlenet, "Inception v1 (BN convs), torchvision's layout; aux heads optional",
                           dropout=0.2),
    "vit_b_16": ModelSpec(vit.vit_b_16, "ViT-B/16, torchvision's layout; position embedding sized from the crop"),
    "vit_s_16": ModelSpec(vit.vit_s_16, "ViT-S/16 (384 wide, 6 heads), timm's shape in torchvision's layout"),
    "convnext_tiny": ModelSpec(convnext.convnext_tiny, "ConvNeXt-T, torchvision's layout; stochastic depth 0.1",
                               eval_resize=236),
}  # fmt: skip


def model_spec(name: str) -> ModelSpec:
    if name not in MODELS:
        raise InputError(f"unknown model {name!r}; known: {', '.join(MODELS)}")
    return MODELS[name]


def build_model(
    name: str,
    *,
    num_classes: int,
    in_channels: int,
    crop: int,
    dropout: float | None = None,
    width: float = 1.0,
    zero_init_residual: bool = False,
    blurpool: bool = False,
) -> nn.Module:
    """Build a model by name; `dropout` None: the model's own; `blurpool`: FFCV's blur before its
    strided convs (models/blurpool.py). A crop the model cannot take, or an option it has not,
    is an InputError."""
    spec = model_spec(name)
    extra: dict[str, Any] = {}
    if width != 1.0:
        if not spec.scalable:
            scalable = ", ".join(n for n, s in MODELS.items() if s.scalable)
            raise InputError(f"model.width: {name} has fixed widths; only {scalable} scale")
        extra["width"] = width
    if zero_init_residual:
        if not spec.residual:
            residual = ", ".join(n for n, s in MODELS.items() if s.residual)
            raise InputError(f"model.zero_init_residual: {name} has no residual blocks; it applies to {residual}")
        extra["zero_init_residual"] = True
    dropout = spec.dropout if dropout is None else dropout
    if dropout is not None:  # a model without classifier dropout takes the keyword and ignores it
        extra["dropout"] = dropout
    try:
        model = spec.build(num_classes=num_classes, in_channels=in_channels, crop=crop, **extra)
    except ValueError as exc:
        raise InputError(str(exc)) from None
    if blurpool and not apply_blurpool(model):
        raise InputError(f"model.blurpool: {name} has no strided conv on >= {MIN_CHANNELS} channels to blur"
                         " (FFCV's rule); it applies to resnet* and convnext_tiny")  # fmt: skip
    return model


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def forward_macs(model: nn.Module, *, crop: int, in_channels: int = 3) -> int:
    """Multiply-adds of one image's forward pass at `crop`. FlopCounterMode counts 2 FLOPs per
    multiply-add of the convs and matmuls; halved here, this is the "GFLOPS" torchvision quotes
    (resnet50 4.09). Norms, activations, pools and additions are not counted. A model built
    under `torch.device("meta")` is counted without memory or arithmetic."""
    from torch.utils.flop_counter import FlopCounterMode

    image = torch.empty(1, in_channels, crop, crop, device=next(model.parameters()).device)
    was_training = model.training
    model.eval()
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(image)
    model.train(was_training)
    return counter.get_total_flops() // 2


def describe_models(num_classes: int = 1000, in_channels: int = 3) -> list[dict]:
    """One row per model: name, parameters, forward multiply-adds at its default crop, the
    input it declares, summary. Built on the meta device: all of them in a few seconds."""
    rows = []
    for name, spec in MODELS.items():
        with torch.device("meta"):
            model = build_model(name, num_classes=num_classes, in_channels=in_channels,
                                crop=spec.default_crop)  # fmt: skip
        rows.append(
            {
                "name": name,
                "crop": spec.default_crop,
                "classes": num_classes,
                "channels": in_channels,
                "parameters": count_parameters(model),
                "gmacs": round(forward_macs(model, crop=spec.default_crop, in_channels=in_channels) / 1e9, 3),
                "eval_resize": spec.eval_resize,
                "eval_crop": spec.eval_crop,
                "interpolation": spec.interpolation,
                "normalize": spec.normalize,
                "mean": spec.mean,
                "std": spec.std,
                "dropout": spec.dropout,
                "about": spec.about,
            }
        )
    return rows
