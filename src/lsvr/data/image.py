"""One image, file to pixels: decoding, resizing and channel conversion.

What `lsvr prepare` does to each item and what `lsvr predict` does to each file, kept in one
place so that the two stay the same; it needs neither the prepare pipeline nor torch.
Decoding policy: JPEGs go through libjpeg-turbo (simplejpeg), everything else and the
JPEGs it refuses (CMYK, a PNG named .JPEG) through Pillow. EXIF orientation is NOT applied,
as in the ImageNet tools: the stored pixels are used as they are.
"""

from __future__ import annotations

import io
import os
import re
import stat
import warnings
from pathlib import Path

import numpy as np
import simplejpeg
from PIL import Image

MAX_PIXELS = 89_478_485  # Pillow's own decompression-bomb limit; above it an image is refused
# the most bytes one image file may hold (prepare's --max-image-bytes): a file or tar member above
# it is refused before it is read, so a small hostile archive cannot make prepare hold gigabytes.
# ILSVRC2012's largest train JPEG is under 16 MB; 64 MiB leaves room for big PNGs and TIFFs
MAX_IMAGE_BYTES = 64 << 20
READ_CHUNK = 1 << 30  # one read() returns at most about 2 GiB on Linux: bigger reads go in chunks
# Pillow warns on opening an image above that limit (and raises above twice it); lsvr checks the
# size itself and rejects the file with one line, so the warning would only repeat it as noise.
# A filter for the whole process, not catch_warnings: prepare decodes in threads, and
# catch_warnings swaps the global filter list, which threads would race on.
warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)
IMAGE_SUFFIXES = (".jpeg", ".jpg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".pbm")
SCALES = (8, 4, 2)  # libjpeg-turbo's reduced-size decodes that pay (3/4 and the like do not)
RESAMPLING = {"bilinear": Image.Resampling.BILINEAR, "bicubic": Image.Resampling.BICUBIC}  # Preprocess.interpolation


class DecodeError(Exception):
    """An input that cannot become an image: `kind` (a short class of failure, counted in
    the summary) and the message (the reason written to rejects.tsv)."""

    def __init__(self, reason: str, kind: str = "undecodable") -> None:
        super().__init__(reason)
        self.kind = kind


def looks_like_image(name: str) -> bool:
    return name.lower().endswith(IMAGE_SUFFIXES)


# ---------------------------------------------------------------- decoding


def decode_file(path: Path, min_side: int = 0, *, max_bytes: int = MAX_IMAGE_BYTES) -> np.ndarray:
    """Decode one image file to (H, W, C) uint8, C = 1 for grey and 3 otherwise. Only a regular
    file is read (a FIFO would block, a device never end), and only one of at most max_bytes."""
    try:
        kind = stat.S_IFMT(os.stat(path).st_mode)
        if kind == stat.S_IFDIR:
            raise DecodeError("is a directory", "directory")
        if kind != stat.S_IFREG:
            raise DecodeError(f"not a regular file ({_FILE_KINDS.get(kind, 'a special file')})", "not-a-file")
        # O_NONBLOCK: a file swapped for a FIFO since the stat must not block the open
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
        try:
            data = read_regular(fd, max_bytes, what="file")
        finally:
            os.close(fd)
    except OSError as exc:
        raise DecodeError(f"unreadable: {exc.strerror or exc}", "unreadable") from None
    if not data:
        raise DecodeError("empty file", "empty")
    return decode_bytes(data, min_side)


_FILE_KINDS = {stat.S_IFIFO: "a FIFO", stat.S_IFCHR: "a character device", stat.S_IFBLK: "a block device",
               stat.S_IFSOCK: "a socket", stat.S_IFLNK: "a link"}  # fmt: skip


def too_large(size: int, max_bytes: int, what: str) -> DecodeError:
    return DecodeError(f"the {what} holds {size} bytes, over the {max_bytes} an image may hold (--max-image-bytes)",
                       "too-large")  # fmt: skip


def read_regular(fd: int, max_bytes: int, *, what: str) -> bytes:
    """An open regular file's bytes, read in chunks; DecodeError too-large, unread, when it
    holds more than max_bytes (and when it grows past them while read)."""
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode):
        raise DecodeError(f"not a regular file ({_FILE_KINDS.get(stat.S_IFMT(info.st_mode), 'a special file')})",
                          "not-a-file")  # fmt: skip
    if info.st_size > max_bytes:
        raise too_large(info.st_size, max_bytes, what)
    parts, total = [], 0
    while True:
        part = os.read(fd, min(READ_CHUNK, max_bytes + 1 - total))
        if not part:
            return b"".join(parts)
        parts.append(part)
        total += len(part)
        if total > max_bytes:
            raise too_large(total, max_bytes, what)


def reduced_scale(width: int, height: int, min_side: int) -> int:
    """The largest libjpeg-turbo scale denominator (8, 4, 2, else 1) keeping the shorter side >= min_side."""
    if min_side <= 0:
        return 1
    short = min(width, height)
    return next((f for f in SCALES if short // f >= min_side), 1)


def decode_bytes(data: bytes, min_side: int = 0) -> np.ndarray:
    if data[:2] == b"\xff\xd8":
        try:
            height, width, colorspace, _ = simplejpeg.decode_jpeg_header(data)
        except ValueError as exc:
            raise DecodeError(f"bad JPEG header: {exc}", "bad-jpeg") from None
        if width * height > MAX_PIXELS:
            raise DecodeError(f"{width}x{height} pixels is over the {MAX_PIXELS} limit", "too-large")
        scale = reduced_scale(width, height, min_side)
        try:
            grey = colorspace == "Gray"
            pixels = simplejpeg.decode_jpeg(
                data, colorspace="GRAY" if grey else "RGB", min_width=width // scale, min_height=height // scale
            )
            return pixels if pixels.ndim == 3 else pixels[:, :, None]
        except ValueError as exc:
            jpeg_error = str(exc)  # CMYK and some odd JPEGs: Pillow decodes them, else this reason
            try:
                return _decode_pillow(data, min_side)
            except DecodeError:
                raise DecodeError(f"bad JPEG: {jpeg_error}", "bad-jpeg") from None
    return _decode_pillow(data, min_side)


def _decode_pillow(data: bytes, min_side: int = 0) -> np.ndarray:
    try:
        with Image.open(io.BytesIO(data)) as image:
            if image.width * image.height > MAX_PIXELS:
                raise DecodeError(f"{image.width}x{image.height} pixels is over the {MAX_PIXELS} limit", "too-large")
            scale = reduced_scale(image.width, image.height, min_side)
            if scale > 1 and image.format == "JPEG":  # CMYK JPEGs: Pillow's own reduced-size decode
                image.draft(image.mode, (-(-image.width // scale), -(-image.height // scale)))
            image.load()
            return _to_array(image)
    except DecodeError:
        raise
    except Image.DecompressionBombError as exc:
        raise DecodeError(f"decompression bomb: {_text(exc)}", "too-large") from None
    except Image.UnidentifiedImageError:  # its message names the BytesIO by address: not reproducible
        raise DecodeError("not a decodable image: no image format recognised", "not-an-image") from None
    except (OSError, ValueError, SyntaxError) as exc:
        raise DecodeError(f"not a decodable image: {_text(exc)}", "not-an-image") from None


def _text(exc: BaseException) -> str:
    """A library's error message without object addresses, so that two identical prepares
    write identical rejects.tsv (docs/DATA_FORMAT.md)."""
    return re.sub(r"<([\w.]+) object at 0x[0-9a-fA-F]+>", r"<\1>", str(exc))


def _to_array(image: Image.Image) -> np.ndarray:
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):  # 16-bit grey: scale, or convert() clips to white
        wide = np.asarray(image, dtype=np.float64)
        top = 65535.0 if image.mode.startswith("I;16") or wide.max() > 255 else 255.0
        return np.clip(wide * (255.0 / top) + 0.5, 0, 255).astype(np.uint8)[:, :, None]
    if image.mode in ("1", "L", "LA", "La"):  # grey, with or without alpha: the alpha is dropped
        return np.asarray(image.convert("L"))[:, :, None]
    return np.asarray(image.convert("RGB"))


# ---------------------------------------------------------------- resizing and channels


def resize(pixels: np.ndarray, size: int, policy: str) -> np.ndarray:
    """(H, W, C) -> (size, size, C). squash: ignore aspect (the paper); center: shorter side
    to size, then centre crop; pad: fit inside, centred on black (no upscaling)."""
    h, w, c = pixels.shape
    if policy == "pad" and h <= size and w <= size:
        out = np.zeros((size, size, c), np.uint8)
        top, left = (size - h) // 2, (size - w) // 2
        out[top : top + h, left : left + w] = pixels
        return out
    if (h, w) == (size, size):
        return pixels
    image = Image.fromarray(pixels[:, :, 0] if c == 1 else pixels)
    if policy == "squash":
        image = image.resize((size, size), Image.Resampling.BILINEAR)
    elif policy == "center":
        scale = size / min(h, w)
        nw, nh = max(size, round(w * scale)), max(size, round(h * scale))
        image = image.resize((nw, nh), Image.Resampling.BILINEAR)
        left, top = (nw - size) // 2, (nh - size) // 2
        image = image.crop((left, top, left + size, top + size))
    else:  # pad, image larger than the canvas: shrink to fit, keep aspect
        scale = size / max(h, w)
        image = image.resize((max(1, round(w * scale)), max(1, round(h * scale))), Image.Resampling.BILINEAR)
        return resize(np.asarray(image).reshape(image.height, image.width, c), size, policy)
    return np.asarray(image).reshape(size, size, c)


def short_side_shape(height: int, width: int, size: int, *, max_size: int | None = None) -> tuple[int, int]:
    """(height, width) with the shorter side brought to `size`, aspect kept, the longer side
    capped at `max_size` (then the shorter side is below `size`): torchvision's Resize(size,
    max_size=...) arithmetic (the longer side truncated, not rounded), so a set prepared here
    holds the sizes its transform would give. Small images are upscaled, as Resize does. A
    side never drops below 1 pixel (a 1 x 10,000 image under a cap)."""
    short, long = min(height, width), max(height, width)
    new_short, new_long = size, int(size * long / short)
    if max_size is not None and new_long > max_size:
        new_short, new_long = max(1, int(max_size * new_short / new_long)), max_size
    return (new_short, new_long) if height <= width else (new_long, new_short)


def resize_short(pixels: np.ndarray, size: int, max_size: int | None = None, *,
                 interpolation: str = "bilinear") -> np.ndarray:  # fmt: skip
    """(H, W, C) -> (h, w, C) of short_side_shape, antialiased (Pillow's bilinear or bicubic
    filter widens with the reduction, as for the fixed-size policies): what torchvision's
    Resize(size, interpolation, antialias=True) calls on a PIL image, so the same pixels."""
    h, w, c = pixels.shape
    nh, nw = short_side_shape(h, w, size, max_size=max_size)
    if (nh, nw) == (h, w):
        return pixels
    image = Image.fromarray(pixels[:, :, 0] if c == 1 else pixels)
    image = image.resize((nw, nh), RESAMPLING[interpolation])
    return np.asarray(image).reshape(nh, nw, c)


def center_crop(pixels: np.ndarray, crop: int) -> np.ndarray:
    """The centred crop x crop window of an (H, W, C) image at least crop on each side, at
    torchvision's CenterCrop offsets: round((side - crop) / 2), half to even."""
    h, w, _ = pixels.shape
    top, left = round((h - crop) / 2), round((w - crop) / 2)
    return pixels[top : top + crop, left : left + crop]


def to_channels(pixels: np.ndarray, channels: int) -> np.ndarray:
    if pixels.shape[2] == channels:
        return pixels
    if channels == 3:  # grey -> RGB by repetition
        return np.repeat(pixels, 3, axis=2)
    # RGB -> grey with ITU-R 601-2 luma, as Pillow's convert("L")
    grey = pixels.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)
    return np.clip(grey + 0.5, 0, 255).astype(np.uint8)[:, :, None]
