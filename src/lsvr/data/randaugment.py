"""RandAugment (Cubuk et al. 2020) on uint8 training batches, per sample, drawn from the sample keys.

The rules are torchvision's RandAugment(num_ops, magnitude, num_magnitude_bins=31) with its
defaults (nearest interpolation, fill 0), as the ViT-B/16 recipe runs it (`--auto-augment ra`:
2 ops at magnitude 9): each image takes `num_ops` ops in turn, each chosen uniformly from the
14 below, each signed op negated with probability 1/2; the strength is bin `magnitude` of the
op's 31 bins (ShearX/Y 0..0.3, TranslateX/Y 0..150/331 of the side, Rotate 0..30 degrees,
Brightness/Color/Contrast/Sharpness factor 1 + 0..0.9, Posterize 8..4 bits, Solarize threshold
255..0). Grey (C=1) images: Color is the identity, as torchvision's adjust_saturation.

Determinism: the ops and signs of a sample come from its key (data/draws.py: a hash of (seed,
epoch, position in the epoch's order)) mixed with a constant of this module's own, so a resumed
run and any world size augment each sample alike, without generator state. The work is batched
per op: the samples that drew one op are gathered, changed together and written back. The
shears and the rotation share one pass per round (each pixel's nearest source pixel under
torchvision's inverse affine map, gathered as bytes: what F.affine_grid + grid_sample give, in
60% of the time); a translation moves whole pixels, so it is a shift of slices.

The loader runs it in its reading threads (data/loader.py), on each batch's uint8 windows before
Augment mirrors and normalises them (torchvision mirrors first; the ops' distribution is
mirror-symmetric except the shears, which pivot on the top-left corner there and here).
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from lsvr.data.draws import splitmix64

OPS = ("identity", "shear_x", "shear_y", "translate_x", "translate_y", "rotate", "brightness", "color",
       "contrast", "sharpness", "posterize", "solarize", "autocontrast", "equalize")  # fmt: skip
SIGNED = frozenset(OPS[1:10])  # the ops whose strength takes a random sign
GEOMETRIC = frozenset(("shear_x", "shear_y", "rotate"))  # through an affine map; translations are shifts
BINS = 31  # torchvision's num_magnitude_bins: magnitudes 0..30
TOPS = {"shear_x": 0.3, "shear_y": 0.3, "rotate": 30.0, "brightness": 0.9, "color": 0.9, "contrast": 0.9,
        "sharpness": 0.9}  # fmt: skip
# Mixed into each key, so the ops' draws are not the crop's (which reads the key's bits
# directly) nor Mix's. Any constant does; this one spells "lsvr RA".
_STREAM = np.uint64(0x6C73767220524100)


def strength(op: str, magnitude: int, *, height: int, width: int) -> float:
    """Bin `magnitude` of op's 31 (unsigned; float32 values as torch.linspace makes them):
    a shear's slope, a translation in pixels, degrees, a factor minus 1, bits, a threshold."""
    if op in TOPS:
        top = TOPS[op]
    elif op in ("translate_x", "translate_y"):
        top = 150.0 / 331.0 * (width if op == "translate_x" else height)
    elif op == "posterize":  # 8 bits at bin 0 down to 4 at bin 30, rounded
        return float(8 - round(magnitude / ((BINS - 1) / 4)))
    elif op == "solarize":
        return float(torch.linspace(255.0, 0.0, BINS)[magnitude])
    else:
        return 0.0
    return float(torch.linspace(0.0, top, BINS)[magnitude])


class RandAugment:
    """num_ops ops per image at bin `magnitude` (0..30), e.g. RandAugment(num_ops=2, magnitude=9)."""

    def __init__(self, *, num_ops: int, magnitude: int) -> None:
        if num_ops < 1 or not 0 <= magnitude < BINS:
            raise ValueError(f"RandAugment needs num_ops >= 1 and magnitude in 0..{BINS - 1}")
        self.num_ops, self.magnitude = num_ops, magnitude

    def draw(self, keys: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        """(B,) sample keys -> (B, num_ops) int64 op indices into OPS and (B, num_ops) bool
        negations, each a pure function of its key: bits 33.. of a SplitMix64 hash choose the op
        (the modulo's bias is below 1e-8), bit 0 the sign."""
        base = keys.astype(np.uint64) ^ _STREAM  # (B,)
        rounds = np.arange(self.num_ops, dtype=np.uint64)
        hashed = splitmix64(base[:, None] + rounds[None, :])  # (B, num_ops); uint64 arrays wrap
        ops = (hashed >> np.uint64(33)) % np.uint64(len(OPS))
        negate = (hashed & np.uint64(1)) == 1
        return torch.from_numpy(ops.astype(np.int64)), torch.from_numpy(negate)

    def __call__(self, images: torch.Tensor, keys: np.ndarray) -> None:
        """Augment (B, H, W, C) uint8 images in place, sample i by keys[i]. The ops work on the
        (B, C, H, W) view: planar memory (the loader's resized windows) as it is, any other
        through one contiguous copy, written back at the end."""
        ops, negate = self.draw(keys)
        view = images.permute(0, 3, 1, 2)  # (B, C, H, W)
        planes = view if view.is_contiguous() else view.contiguous()
        height, width = planes.shape[2:]
        for r in range(self.num_ops):
            geometric = torch.zeros(len(keys), dtype=torch.bool)
            for k, op in enumerate(OPS):
                chosen = ops[:, r] == k  # (B,)
                if op == "identity" or not chosen.any():
                    continue
                if op in GEOMETRIC:
                    geometric |= chosen
                    continue
                value = strength(op, self.magnitude, height=height, width=width)
                signs = 1.0 - 2.0 * negate[chosen, r].float() if op in SIGNED else torch.ones(int(chosen.sum()))
                where = chosen.nonzero().flatten().to(planes.device)
                values = signs.to(planes.device) * value
                picked = planes.index_select(0, where)
                out = shifted(picked, values, op) if op.startswith("translate") else apply_colour(op, picked, values)
                _put(planes, where, out)
            if geometric.any():
                where = geometric.nonzero().flatten()
                matrices = self._matrices(ops[where, r], negate[where, r], height=height, width=width)
                where = where.to(planes.device)
                _put(planes, where, affine(planes.index_select(0, where), matrices.to(planes.device)))
        if planes is not view:
            view.copy_(planes)

    def _matrices(self, ops: torch.Tensor, negate: torch.Tensor, *, height: int, width: int) -> torch.Tensor:
        """(n,) geometric op indices and negations -> (n, 2, 3) float64 inverse maps in pixels."""
        out = torch.zeros(len(ops), 2, 3, dtype=torch.float64)
        for k, op in enumerate(OPS):
            chosen = ops == k
            if op not in GEOMETRIC or not chosen.any():
                continue
            value = strength(op, self.magnitude, height=height, width=width)
            signed = torch.where(negate[chosen], -value, value).double()  # (n_op,)
            out[chosen] = geometric_matrix(op, signed, height=height, width=width)
        return out


def _put(planes: torch.Tensor, where: torch.Tensor, images: torch.Tensor) -> None:
    """planes[where] = images, image by image: on CPU (224 px, 128 images, one thread) the
    copies took 10 ms where index_copy_ took 86 and advanced indexing 56."""
    for j, i in enumerate(where.tolist()):
        planes[i].copy_(images[j])


def geometric_matrix(op: str, values: torch.Tensor, *, height: int, width: int) -> torch.Tensor:
    """(n,) signed strengths of one geometric op -> (n, 2, 3) float64 maps from each output pixel
    to the input pixel it reads, in pixels from the image's centre (torchvision's inverse affine
    matrices): shears pivot on the top-left corner, a rotation turns by its degrees counter-clockwise."""
    one, zero = torch.ones_like(values), torch.zeros_like(values)
    if op == "shear_x":  # x_in = x + s * (y + H/2)
        rows = [one, values, values * height / 2, zero, one, zero]
    elif op == "shear_y":  # y_in = y + s * (x + W/2)
        rows = [one, zero, zero, values, one, values * width / 2]
    elif op == "rotate":
        angle = values * (math.pi / 180)
        cos, sin = angle.cos(), angle.sin()
        rows = [cos, -sin, zero, sin, cos, zero]
    else:
        raise ValueError(f"not a geometric op: {op}")
    return torch.stack(rows, dim=1).reshape(-1, 2, 3)


def affine(planes: torch.Tensor, matrices: torch.Tensor) -> torch.Tensor:
    """(n, C, H, W) uint8 images through (n, 2, 3) inverse maps in centred pixels: each output
    pixel takes the input pixel nearest to where its map points (ties to even), 0 outside the
    image: torchvision's affine with nearest interpolation and fill None. The source indices are
    computed separably in float32 and the bytes gathered: measured at 224 px, one thread, 2.4 ms
    an image through F.affine_grid + grid_sample on floats (1.3 ms of it building the grid)."""
    n, c, h, w = planes.shape
    m = matrices.float()[:, :, :, None, None]  # (n, 2, 3, 1, 1)
    x = torch.arange(w, device=planes.device, dtype=torch.float32) + (0.5 - w / 2)  # pixel centres, centred
    y = torch.arange(h, device=planes.device, dtype=torch.float32)[:, None] + (0.5 - h / 2)
    cols, rows = (_plane(m[:, i, 0] * x, m[:, i, 1] * y + m[:, i, 2] + (size / 2 - 0.5)).round_()
                  for i, size in ((0, w), (1, h)))  # (n, H, W) source column and row of each pixel  # fmt: skip
    inside = (cols >= 0) & (cols <= w - 1) & (rows >= 0) & (rows <= h - 1)  # (n, H, W)
    index = rows.clamp_(0, h - 1).mul_(w).add_(cols.clamp_(0, w - 1)).long().flatten(1)  # (n, H*W)
    moved = planes.reshape(n, c, h * w).gather(2, index[:, None, :].expand(n, c, h * w))
    return moved.mul_(inside.flatten(1)[:, None, :]).reshape(n, c, h, w)


def shifted(planes: torch.Tensor, values: torch.Tensor, op: str) -> torch.Tensor:
    """(n, C, H, W) uint8 images moved right (translate_x) or down (translate_y) by their (n,)
    signed strengths' whole pixels (truncated toward 0, as torchvision's int()), 0 where nothing
    lands: torchvision's affine translation, as slices (0.05 ms an image at 224 px, one thread,
    against 0.75 through the gather that shears and rotation take)."""
    out = torch.zeros_like(planes)
    side = planes.shape[3 if op == "translate_x" else 2]
    for j, k in enumerate(int(v) for v in values.tolist()):
        if abs(k) >= side:
            continue
        src = slice(max(-k, 0), side - max(k, 0))
        dst = slice(max(k, 0), side - max(-k, 0))
        if op == "translate_x":
            out[j, :, :, dst] = planes[j, :, :, src]
        else:
            out[j, :, dst] = planes[j, :, src]
    return out


def _plane(across: torch.Tensor, down: torch.Tensor) -> torch.Tensor:
    """(n, 1, W) + (n, H, 1) as a new (n, H, W) float32: the row copied, then the column added in
    place (torch's broadcasting add of the two was 6x slower on CPU)."""
    n, h, w = len(across), down.shape[1], across.shape[2]
    return torch.empty(n, h, w, device=across.device).copy_(across.expand(n, h, w)).add_(down)


def apply_colour(op: str, planes: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    """One pixel op on (n, C, H, W) uint8 images with (n,) signed strengths -> new uint8 images."""
    if op == "posterize":  # keep the high bits
        bits = int(values[0])
        return planes & (256 - 2 ** (8 - bits))
    if op == "solarize":  # invert the pixels at or above the threshold
        return torch.where(planes >= values[:, None, None, None], 255 - planes, planes)
    if op == "autocontrast":
        return autocontrast(planes)
    if op == "equalize":
        return equalize(planes)
    factor = (1.0 + values).float()[:, None, None, None]  # (n, 1, 1, 1)
    if op == "brightness":  # towards black
        return blend(planes, None, factor)
    if op == "color":  # towards the image's grey; a grey image has no colour to change
        return planes if planes.shape[1] == 1 else blend(planes, grey(planes), factor)
    if op == "contrast":  # towards the mean grey level
        levels = grey(planes) if planes.shape[1] == 3 else planes
        return blend(planes, levels.float().mean(dim=(1, 2, 3), keepdim=True), factor)
    if op == "sharpness":  # away from (factor > 1) or towards a 3x3 blur; none without inner pixels
        return planes if min(planes.shape[2:]) <= 2 else blend(planes, smoothed(planes), factor)
    raise ValueError(f"not a pixel op: {op}")


def blend(planes: torch.Tensor, other: torch.Tensor | None, factor: torch.Tensor) -> torch.Tensor:
    """factor * planes + (1 - factor) * other, clamped to 0..255 and truncated to uint8 (torchvision's
    _blend; other None: black, whose term is 0). In place on one float copy: 2.9 ms an image at
    224 px (one thread) as one expression with its temporaries, 1.0 ms so."""
    out = planes.float().mul_(factor)
    if other is not None:
        out.add_(other.float().mul_(1.0 - factor))
    return out.clamp_(0, 255).to(torch.uint8)


def grey(planes: torch.Tensor) -> torch.Tensor:
    """(n, 3, H, W) uint8 -> (n, 1, H, W) uint8 luma (ITU-R 601-2 weights, truncated)."""
    r, g, b = planes.unbind(1)
    return (0.2989 * r + 0.587 * g + 0.114 * b).to(torch.uint8)[:, None]


def smoothed(planes: torch.Tensor) -> torch.Tensor:
    """The images with each inner pixel replaced by a 3x3 blur (centre weight 5 of 13, rounded);
    the border kept (images of side >= 3). Summed exactly in int16 (at most 13 * 255): the
    quotient by 13 is never a half, so rounding it gives what torchvision's float convolution
    gives, in less than half a grouped conv2d's time (0.65 against 1.45 ms an image, 224 px, one thread)."""
    wide = planes.to(torch.int16)
    across = wide[:, :, :, :-2] + wide[:, :, :, 1:-1] + wide[:, :, :, 2:]  # (n, C, H, W-2)
    box = across[:, :, :-2] + across[:, :, 1:-1] + across[:, :, 2:]  # (n, C, H-2, W-2): 3x3 sums
    total = box.add_(wide[:, :, 1:-1, 1:-1], alpha=4)  # the centre's weight 1 + 4
    out = planes.clone()
    out[:, :, 1:-1, 1:-1] = total.mul_(2).add_(13).div_(26, rounding_mode="floor")  # round(total / 13)
    return out


def autocontrast(planes: torch.Tensor) -> torch.Tensor:
    """Each channel of each image stretched to 0..255 (a flat channel left as it is)."""
    low = planes.amin(dim=(2, 3), keepdim=True).float()  # (n, C, 1, 1)
    high = planes.amax(dim=(2, 3), keepdim=True).float()
    flat = high == low
    scale = torch.where(flat, 1.0, 255.0 / (high - low).clamp_min(1.0))
    low = torch.where(flat, 0.0, low)
    return ((planes - low) * scale).clamp_(0, 255).to(torch.uint8)


def equalize(planes: torch.Tensor) -> torch.Tensor:
    """Histogram equalisation of each channel of each image (PIL's ImageOps.equalize, as
    torchvision's tensor version): the lookup (cumulative count + step // 2) // step, shifted
    one level up, where step is the pixels not at the channel's top level, // 255; a channel
    whose step is 0 (nearly one level) is left as it is."""
    n, c, h, w = planes.shape
    levels = planes.reshape(n * c, h * w).long()  # (N, P), one row per channel
    where = levels + torch.arange(n * c, device=planes.device)[:, None] * 256  # (N, P): row * 256 + level
    hist = torch.bincount(where.flatten(), minlength=n * c * 256).reshape(n * c, 256)
    top = levels.amax(dim=1, keepdim=True)  # (N, 1): the last level with a pixel
    step = (h * w - hist.gather(1, top)) // 255  # (N, 1)
    lut = (hist.cumsum(1) + step // 2) // step.clamp_min(1)
    lut = F.pad(lut, (1, 0))[:, :-1].clamp_(0, 255)  # (N, 256): level v maps to lut[v]
    lut = torch.where(step > 0, lut, torch.arange(256, device=planes.device)).to(torch.uint8)
    return lut.flatten()[where].reshape(n, c, h, w)


def randaugment_for(setting: list[int]) -> RandAugment | None:
    """data.randaugment's [num_ops, magnitude] as a RandAugment; None when empty (off)."""
    return RandAugment(num_ops=setting[0], magnitude=setting[1]) if setting else None
