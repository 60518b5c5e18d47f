"""JPEG decoding on the GPU: data.decode=device.

CPU threads decode a 256 px JPEG at 1,000-2,400 images/s a core; a GPU trains AlexNet at
tens of thousands a second. Here the reading threads only gather each batch's compressed
bytes; nvJPEG (torchvision.io.decode_jpeg, batched, device="cuda") decodes them, and the
windows are cut (and resized where they are not crop x crop) on the device. torchvision is
optional and imported only here.
DeviceReader is the host reader's twin (data/readers.py): the same read(rows, draws) -> Batch.

The decoder is a plain function, list of 1-D uint8 CPU tensors -> list of (C, H, W) uint8
tensors on the device, so that any decoder can stand in for nvJPEG (tests use libjpeg-turbo).
"""

from __future__ import annotations

import collections
from collections.abc import Callable

import numpy as np
import torch

from lsvr.data.dataset import PreparedDataset
from lsvr.data.draws import Draws
from lsvr.data.readers import Batch, resize_window
from lsvr.errors import InputError

Decoder = Callable[[list[torch.Tensor]], list[torch.Tensor]]


def nvjpeg_decoder(device: torch.device, channels: int) -> Decoder:
    """torchvision's batched decode_jpeg on `device` (nvJPEG on CUDA)."""
    try:
        from torchvision.io import ImageReadMode, decode_jpeg
    except ImportError:
        raise InputError("data.decode=device needs torchvision (the build that matches torch)") from None
    mode = ImageReadMode.GRAY if channels == 1 else ImageReadMode.RGB

    def decode(data: list[torch.Tensor]) -> list[torch.Tensor]:
        return decode_jpeg(data, mode=mode, device=device)

    return decode


class DeviceReader:
    """One rank's batch read as compressed bytes and decoded (and cut) on the device, from
    the reading threads; on CUDA each read takes a stream of its own from a pool, and the
    batch comes with the event that marks it ready. Every record is decoded as a whole batch:
    data.bad_records does not apply here (bad_rows stays empty)."""

    def __init__(self, dataset: PreparedDataset, device: torch.device, decoder: Decoder | None = None) -> None:
        if dataset.encoding != "jpeg":
            raise InputError(f"{dataset.path}: data.decode=device needs a JPEG-encoded set, not {dataset.encoding}")
        self.dataset, self.device = dataset, device
        self.decoder = decoder or nvjpeg_decoder(device, dataset.shape[2])
        self.bad_rows: dict[int, str] = {}
        self._labels = torch.from_numpy(dataset.labels)
        self._streams: collections.deque = collections.deque()  # kept across epochs' threads

    def read(self, rows: np.ndarray, draws: Draws | None) -> Batch:
        """Images (B, H, W, C), or (B, crop, crop, C) cut at the draws' windows, with their
        labels and draws, all on the device."""
        data = self.dataset.encoded(rows)
        labels = self._labels[torch.from_numpy(rows)]
        if self.device.type != "cuda":
            return self._read(data, labels, draws)
        try:
            stream = self._streams.popleft()  # deque operations are atomic: threads share it
        except IndexError:
            stream = torch.cuda.Stream(self.device)
        try:
            with torch.cuda.stream(stream):
                # nvJPEG writes on torchvision's own stream into memory allocated on this one:
                # the last batch's work here must be done before that memory is handed out again
                stream.synchronize()
                return self._read(data, labels, draws)
        finally:
            self._streams.append(stream)

    def _read(self, data: list[torch.Tensor], labels: torch.Tensor, draws: Draws | None) -> Batch:
        decoded = self.decoder(data)  # each (C, H, W) uint8 on the device
        if draws is not None and (draws.resized or not self.dataset.shape[0]):
            images = self._resized(decoded, draws)
            draws = draws.to(self.device, non_blocking=True)
        elif draws is not None:  # crop x crop windows of a fixed-shape set: one gather
            draws = draws.to(self.device, non_blocking=True)
            images = draws.cut(torch.stack(decoded).permute(0, 2, 3, 1))  # of (B, H, W, C), a view
        else:
            images = torch.stack(decoded).permute(0, 2, 3, 1).contiguous()  # (B, H, W, C)
        labels = labels.to(self.device, non_blocking=True)
        ready = None
        if self.device.type == "cuda":
            ready = torch.cuda.Event()
            ready.record()
        return Batch(images, labels, draws, ready=ready)

    def _resized(self, decoded: list[torch.Tensor], draws: Draws) -> torch.Tensor:
        """Each image's window (host draws) resized to crop x crop on the device, one image at a
        time: images of a batch may differ in shape, and so may their windows."""
        out = torch.empty((len(decoded), draws.crop, draws.crop, decoded[0].shape[0]), dtype=torch.uint8,
                          device=self.device)  # fmt: skip
        bounds = zip(*(t.tolist() for t in (draws.top, draws.left, draws.height, draws.width)), strict=True)
        for j, (image, (top, left, height, width)) in enumerate(zip(decoded, bounds, strict=True)):
            out[j] = resize_window(image.permute(1, 2, 0)[top : top + height, left : left + width], draws.crop)
        return out
