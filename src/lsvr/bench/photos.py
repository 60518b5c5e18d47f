"""A generated ImageNet-like set: photo-sized JPEGs with natural image statistics.

Natural images have a power spectrum falling as 1/f^2; flat noise has none of their
structure and compresses (and decodes) unlike photos. Each photo is a window of one of a
few large 1/f fields with correlated colour channels, a few smooth-edged shapes, a
brightness and contrast of its own and a little sensor noise, saved by libjpeg-turbo at
quality 90 with 4:2:0 subsampling, as cameras and Flickr do.
"""

from __future__ import annotations

import tarfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import simplejpeg

SIZES = ((500, 375), (500, 333), (375, 500), (500, 400), (400, 300))  # (width, height), as ILSVRC's


def pink_field(rng: np.random.Generator, side: int) -> np.ndarray:
    """A (side, side, 3) float field with a 1/f amplitude spectrum and correlated channels."""
    freq = np.hypot(*np.meshgrid(np.fft.fftfreq(side), np.fft.rfftfreq(side), indexing="ij"))
    amplitude = 1.0 / np.maximum(freq, 1.0 / side)
    mix = np.array([[1.0, 0.9, 0.8], [0.0, 0.35, 0.1], [0.0, 0.0, 0.3]])  # mostly luminance, some colour
    channels = []
    for _ in range(3):
        phase = rng.uniform(0, 2 * np.pi, amplitude.shape)
        channels.append(np.fft.irfft2(amplitude * np.exp(1j * phase), s=(side, side)))
    field = np.stack(channels, axis=-1) @ mix
    return ((field - field.mean()) / field.std()).astype(np.float32)


def photo(rng: np.random.Generator, fields: list[np.ndarray], width: int, height: int) -> np.ndarray:
    base = fields[rng.integers(len(fields))]
    top, left = rng.integers(0, base.shape[0] - height), rng.integers(0, base.shape[1] - width)
    image = base[top : top + height, left : left + width].copy()
    for _ in range(rng.integers(1, 4)):  # a few objects with soft edges and a colour of their own
        cy, cx = rng.uniform(0, height), rng.uniform(0, width)
        ry, rx = rng.uniform(20, height / 2), rng.uniform(20, width / 2)
        y0, y1 = int(max(0, cy - ry)), int(min(height, cy + ry + 1))
        x0, x1 = int(max(0, cx - rx)), int(min(width, cx + rx + 1))
        yy, xx = np.ogrid[y0:y1, x0:x1]
        inside = np.clip(3 * (1 - ((yy - cy) / ry) ** 2 - ((xx - cx) / rx) ** 2), 0, 1).astype(np.float32)[:, :, None]
        window = image[y0:y1, x0:x1]
        window += (rng.normal(0, 1.2, 3).astype(np.float32) - window * 0.5) * inside
    image *= rng.uniform(30, 55)
    image += 128 + rng.uniform(-25, 25)
    image += rng.standard_normal(image.shape, dtype=np.float32) * 2.0
    return np.clip(image, 0, 255).astype(np.uint8)


def write_photos(root: Path, count: int, classes: int = 10, seed: int = 0, workers: int = 2) -> list[Path]:
    """count photos in root/<class>/, class folders as ILSVRC's train; returns their paths.
    The same (count, classes, seed) always gives the same files."""
    rng = np.random.default_rng(seed)
    fields = [pink_field(rng, 1024) for _ in range(6)]
    for c in range(classes):
        (root / f"n{c:08d}").mkdir(parents=True, exist_ok=True)

    def one(i: int) -> Path:
        width, height = SIZES[i % len(SIZES)]
        path = root / f"n{i % classes:08d}" / f"n{i % classes:08d}_{i}.JPEG"
        pixels = photo(np.random.default_rng([seed, i]), fields, width, height)
        path.write_bytes(simplejpeg.encode_jpeg(pixels, quality=90, colorsubsampling="420"))
        return path

    with ThreadPoolExecutor(workers) as pool:
        return list(pool.map(one, range(count)))


def pack_nested_tar(folder: Path, tar_path: Path) -> Path:
    """The class folders of `folder` packed as ILSVRC2012_img_train.tar is: an outer tar of one
    inner tar per class, named as its wnid is (n01440764.tar): each written to a temporary
    file, then added."""
    partial = tar_path.with_name(tar_path.name + ".partial")
    with tarfile.open(partial, "w") as outer:
        for cls in sorted(p for p in folder.iterdir() if p.is_dir()):
            inner = tar_path.with_name(f"{cls.name}.tar.partial")
            with tarfile.open(inner, "w") as tar:
                for path in sorted(cls.iterdir()):
                    tar.add(path, arcname=path.name)
            outer.add(inner, arcname=f"{cls.name}.tar")
            inner.unlink()
    partial.rename(tar_path)
    return tar_path
