"""torchvision's published ImageNet weights for the zoo models that share its layout: per
weights enum, the file torchvision downloads, the evaluation transform it documents and the
accuracy it publishes. Data only; `lsvr convert` (lsvr.convert) reads it.

Read from torchvision 0.29's `models/*.py` (each `*_Weights` enum: its `url`, its
`ImageClassification(crop_size, resize_size, interpolation, mean, std)` transform and the
`acc@1`/`acc@5` of its meta). That transform is Resize(resize, interpolation, antialias) of the
shorter side of a PIL image, CenterCrop(crop), ToTensor, Normalize(mean, std): lsvr's resize
"short" record with eval_size resize and eval_crop crop. Means and stds here are in 0..1 units.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class PublishedWeights:
    """One torchvision weights enum member and what it was trained (and is evaluated) with."""

    name: str  # the enum member torchvision names it by: ResNet50_Weights.IMAGENET1K_V2
    file: str  # the file name of its URL (download.pytorch.org/models/FILE), as torch's hub cache keeps it
    resize: int  # Resize: the shorter side, before the centre crop
    crop: int  # CenterCrop: the side the model sees
    acc1: float | None  # published ImageNet-1K validation top-1, %; None: none published (features only)
    acc5: float | None  # top-5, %
    interpolation: str = "bilinear"  # of the Resize: bilinear or bicubic
    mean: tuple[float, float, float] = IMAGENET_MEAN  # Normalize, 0..1 units, as the model must see it
    std: tuple[float, float, float] = IMAGENET_STD
    note: str = ""

    @property
    def member(self) -> str:
        """IMAGENET1K_V2: what `lsvr convert --weights` takes (the full name is taken too)."""
        return self.name.split(".")[-1]


def _w(name: str, file: str, acc1: float | None, acc5: float | None, *, resize: int = 256, crop: int = 224,
       **kw: Any) -> PublishedWeights:  # fmt: skip
    return PublishedWeights(name=name, file=file, resize=resize, crop=crop, acc1=acc1, acc5=acc5, **kw)


# torchvision's googlenet builder sets transform_input=True for these weights (ported from
# TensorFlow): the model turns ImageNet-normalised input into (x - 0.5) / 0.5 itself. lsvr's
# googlenet has no such step, so the record holds the composite: mean 0.5, std 0.5.
_GOOGLENET = (
    "torchvision's transforms normalise with ImageNet's mean/std and its googlenet (transform_input=True, set by"
    " its builder for these weights) re-normalises to (x - 0.5) / 0.5: the record holds that composite"
)
_VGG16_FEATURES = (
    "features only: its classifier is untrained (torchvision publishes no accuracy); the paper's input, mean"
    " pixel subtracted, std 1/255"
)

# model -> its weights; the first is the default (V1: what `pretrained=True` gave).
WEIGHTS: dict[str, tuple[PublishedWeights, ...]] = {
    "alexnet_tv": (_w("AlexNet_Weights.IMAGENET1K_V1", "alexnet-owt-7be5be79.pth", 56.522, 79.066),),
    "resnet18": (_w("ResNet18_Weights.IMAGENET1K_V1", "resnet18-f37072fd.pth", 69.758, 89.078),),
    "resnet34": (_w("ResNet34_Weights.IMAGENET1K_V1", "resnet34-b627a593.pth", 73.314, 91.420),),
    "resnet50": (
        _w("ResNet50_Weights.IMAGENET1K_V1", "resnet50-0676ba61.pth", 76.130, 92.862),
        _w("ResNet50_Weights.IMAGENET1K_V2", "resnet50-11ad3fa6.pth", 80.858, 95.434, resize=232),
    ),
    "resnet101": (
        _w("ResNet101_Weights.IMAGENET1K_V1", "resnet101-63fe2227.pth", 77.374, 93.546),
        _w("ResNet101_Weights.IMAGENET1K_V2", "resnet101-cd907fc2.pth", 81.886, 95.780, resize=232),
    ),
    "resnet152": (
        _w("ResNet152_Weights.IMAGENET1K_V1", "resnet152-394f9c45.pth", 78.312, 94.046),
        _w("ResNet152_Weights.IMAGENET1K_V2", "resnet152-f82ba261.pth", 82.284, 96.002, resize=232),
    ),
    "vgg11": (_w("VGG11_Weights.IMAGENET1K_V1", "vgg11-8a719046.pth", 69.020, 88.628),),
    "vgg11_bn": (_w("VGG11_BN_Weights.IMAGENET1K_V1", "vgg11_bn-6002323d.pth", 70.370, 89.810),),
    "vgg13": (_w("VGG13_Weights.IMAGENET1K_V1", "vgg13-19584684.pth", 69.928, 89.246),),
    "vgg13_bn": (_w("VGG13_BN_Weights.IMAGENET1K_V1", "vgg13_bn-abd245e5.pth", 71.586, 90.374),),
    "vgg16": (
        _w("VGG16_Weights.IMAGENET1K_V1", "vgg16-397923af.pth", 71.592, 90.382),
        _w("VGG16_Weights.IMAGENET1K_FEATURES", "vgg16_features-amdegroot-88682ab5.pth", None, None,
           mean=(0.48235, 0.45882, 0.40784), std=(1 / 255, 1 / 255, 1 / 255), note=_VGG16_FEATURES),
    ),
    "vgg16_bn": (_w("VGG16_BN_Weights.IMAGENET1K_V1", "vgg16_bn-6c64b313.pth", 73.360, 91.516),),
    "vgg19": (_w("VGG19_Weights.IMAGENET1K_V1", "vgg19-dcbb9e9d.pth", 72.376, 90.876),),
    "vgg19_bn": (_w("VGG19_BN_Weights.IMAGENET1K_V1", "vgg19_bn-c79401a0.pth", 74.218, 91.842),),
    "googlenet": (
        _w("GoogLeNet_Weights.IMAGENET1K_V1", "googlenet-1378be20.pth", 69.778, 89.530,
           mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5), note=_GOOGLENET),
    ),
    "vit_b_16": (
        _w("ViT_B_16_Weights.IMAGENET1K_V1", "vit_b_16-c867db91.pth", 81.072, 95.318),
        _w("ViT_B_16_Weights.IMAGENET1K_SWAG_E2E_V1", "vit_b_16_swag-9ac1b537.pth", 85.304, 97.650,
           resize=384, crop=384, interpolation="bicubic", note="SWAG pre-training, fine-tuned end to end at 384 px"),
        _w("ViT_B_16_Weights.IMAGENET1K_SWAG_LINEAR_V1", "vit_b_16_lc_swag-4e70ced5.pth", 81.886, 96.180,
           resize=224, interpolation="bicubic", note="the frozen SWAG trunk with a linear classifier"),
    ),
    "convnext_tiny": (
        _w("ConvNeXt_Tiny_Weights.IMAGENET1K_V1", "convnext_tiny-983f1562.pth", 82.520, 96.146, resize=236),
    ),
}  # fmt: skip
