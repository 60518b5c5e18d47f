"""Vision Transformer (Dosovitskiy et al. 2020, arXiv:2010.11929) in torchvision's layout.

Module names, nesting and order follow torchvision's `VisionTransformer`: `conv_proj`,
`class_token`, `encoder.pos_embedding`, `encoder.layers.encoder_layer_{i}.{ln_1, self_attention,
ln_2, mlp}`, `encoder.ln`, `heads.head`; the MLP is a Sequential so its linears are `mlp.0` and
`mlp.3`, the keys torchvision's weights files hold. Pre-norm blocks, LayerNorm eps 1e-6, GELU,
the class token's final state classifies.

vit_b_16: 86,567,656 parameters at 1000 classes and a 224 crop (torchvision's count).
vit_s_16 (timm's ViT-S/16 shape; torchvision has none): 22,050,664 at the same.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from functools import partial

import torch
from torch import nn

_LayerNorm = partial(nn.LayerNorm, eps=1e-6)


class MLPBlock(nn.Sequential):
    """Linear -> GELU -> Dropout -> Linear -> Dropout: torchvision's MLPBlock (keys mlp.0, mlp.3)."""

    def __init__(self, in_dim: int, mlp_dim: int, dropout: float) -> None:
        super().__init__(
            nn.Linear(in_dim, mlp_dim),
            nn.GELU(),
            nn.Dropout(dropout),
            nn.Linear(mlp_dim, in_dim),
            nn.Dropout(dropout),
        )
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight)
                nn.init.normal_(m.bias, std=1e-6)


class EncoderBlock(nn.Module):
    """Pre-norm transformer block: x + attention(ln_1(x)), then + mlp(ln_2(.))."""

    def __init__(self, *, num_heads: int, hidden_dim: int, mlp_dim: int, dropout: float, attention_dropout: float):
        super().__init__()
        self.num_heads = num_heads
        self.ln_1 = _LayerNorm(hidden_dim)
        self.self_attention = nn.MultiheadAttention(hidden_dim, num_heads, dropout=attention_dropout, batch_first=True)
        self.dropout = nn.Dropout(dropout)
        self.ln_2 = _LayerNorm(hidden_dim)
        self.mlp = MLPBlock(hidden_dim, mlp_dim, dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, S, D) -> (B, S, D)
        y = self.ln_1(x)
        y, _ = self.self_attention(y, y, y, need_weights=False)
        x = x + self.dropout(y)
        return x + self.mlp(self.ln_2(x))


class Encoder(nn.Module):
    """Learned position embedding (std 0.02), the blocks, a final LayerNorm."""

    def __init__(
        self,
        *,
        seq_length: int,
        num_layers: int,
        num_heads: int,
        hidden_dim: int,
        mlp_dim: int,
        dropout: float,
        attention_dropout: float,
    ) -> None:
        super().__init__()
        self.pos_embedding = nn.Parameter(torch.empty(1, seq_length, hidden_dim).normal_(std=0.02))
        self.dropout = nn.Dropout(dropout)
        block = partial(
            EncoderBlock,
            num_heads=num_heads,
            hidden_dim=hidden_dim,
            mlp_dim=mlp_dim,
            dropout=dropout,
            attention_dropout=attention_dropout,
        )
        self.layers = nn.Sequential(OrderedDict((f"encoder_layer_{i}", block()) for i in range(num_layers)))
        self.ln = _LayerNorm(hidden_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, S, D) -> (B, S, D)
        return self.ln(self.layers(self.dropout(x + self.pos_embedding)))


class VisionTransformer(nn.Module):
    """torchvision's VisionTransformer without the optional representation layer or conv stem."""

    default_crop = 224

    def __init__(
        self,
        *,
        image_size: int,
        patch_size: int,
        num_layers: int,
        num_heads: int,
        hidden_dim: int,
        mlp_dim: int,
        in_channels: int = 3,
        dropout: float = 0.0,
        attention_dropout: float = 0.0,
        num_classes: int = 1000,
    ) -> None:
        super().__init__()
        if image_size < patch_size or image_size % patch_size:
            raise ValueError(f"crop {image_size} does not divide into {patch_size} px patches (use a multiple of it)")
        self.image_size = image_size
        self.patch_size = patch_size
        self.hidden_dim = hidden_dim
        self.mlp_dim = mlp_dim
        self.conv_proj = nn.Conv2d(in_channels, hidden_dim, kernel_size=patch_size, stride=patch_size)
        self.class_token = nn.Parameter(torch.zeros(1, 1, hidden_dim))
        self.seq_length = (image_size // patch_size) ** 2 + 1  # patches and the class token
        self.encoder = Encoder(
            seq_length=self.seq_length,
            num_layers=num_layers,
            num_heads=num_heads,
            hidden_dim=hidden_dim,
            mlp_dim=mlp_dim,
            dropout=dropout,
            attention_dropout=attention_dropout,
        )
        self.heads = nn.Sequential(OrderedDict(head=nn.Linear(hidden_dim, num_classes)))
        fan_in = in_channels * patch_size * patch_size
        nn.init.trunc_normal_(self.conv_proj.weight, std=math.sqrt(1 / fan_in))
        nn.init.zeros_(self.conv_proj.bias)
        nn.init.zeros_(self.heads.head.weight)  # torchvision starts the head at zero
        nn.init.zeros_(self.heads.head.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, crop, crop) -> (B, classes)
        n, _, h, w = x.shape
        if h != self.image_size or w != self.image_size:
            raise ValueError(f"vit built for {self.image_size} px input got {h}x{w}")
        x = self.conv_proj(x).reshape(n, self.hidden_dim, -1).permute(0, 2, 1)  # (B, patches, D)
        x = torch.cat([self.class_token.expand(n, -1, -1), x], dim=1)  # (B, 1 + patches, D)
        return self.heads(self.encoder(x)[:, 0])


def _vit(
    *,
    hidden_dim: int,
    num_heads: int,
    mlp_dim: int,
    num_classes: int,
    in_channels: int,
    crop: int,
    encoder_dropout: float = 0.0,
    attention_dropout: float = 0.0,
) -> VisionTransformer:
    return VisionTransformer(
        image_size=crop,
        patch_size=16,
        num_layers=12,
        num_heads=num_heads,
        hidden_dim=hidden_dim,
        mlp_dim=mlp_dim,
        in_channels=in_channels,
        num_classes=num_classes,
        dropout=encoder_dropout,
        attention_dropout=attention_dropout,
    )


def vit_b_16(
    *, num_classes: int = 1000, in_channels: int = 3, crop: int = 224, dropout: float = 0.0, **kw
) -> VisionTransformer:
    """ViT-B/16: 768 wide, 12 heads, 12 layers, MLP 3072; the position embedding is sized from `crop`.

    `dropout` is unused: torchvision's ViT has no classifier dropout. Its encoder's dropout and the
    attention's are `encoder_dropout` and `attention_dropout` (0 as torchvision's recipe trains it).
    """
    return _vit(
        hidden_dim=768, num_heads=12, mlp_dim=3072, num_classes=num_classes, in_channels=in_channels, crop=crop, **kw
    )


def vit_s_16(
    *, num_classes: int = 1000, in_channels: int = 3, crop: int = 224, dropout: float = 0.0, **kw
) -> VisionTransformer:
    """ViT-S/16: 384 wide, 6 heads, 12 layers, MLP 1536 (timm's vit_small_patch16_224 shape)."""
    return _vit(
        hidden_dim=384, num_heads=6, mlp_dim=1536, num_classes=num_classes, in_channels=in_channels, crop=crop, **kw
    )
