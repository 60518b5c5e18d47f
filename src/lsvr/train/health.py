"""Each step's health, agreed by every rank: a NaN or Inf loss or gradient anywhere, a stop
asked anywhere (SIGTERM, SIGINT).

The two counts travel in one small all-reduce per step. Reading them on the host waits for
the step to finish, which would leave a GPU idle while the host queues the next step; so
under guard.nonfinite=stop the flags are read one step late, after the next step's work is
queued, and read at once before anything is saved. A bad step is then found one step after
it ran, before any checkpoint could hold it. guard.nonfinite=skip must know before the
update, and reads them at once (one host-device sync a step).
"""

from __future__ import annotations

import torch

from lsvr.config import Config
from lsvr.train import parallel


class Health:
    def __init__(self, env: parallel.Distributed, *, check_grads: bool) -> None:
        self.env, self.check_grads = env, check_grads
        self.pending: list[tuple[int, torch.Tensor, torch.cuda.Event | None]] = []

    def exchange(self, step: int, loss: torch.Tensor, params: list, asked: bool) -> torch.Tensor | None:
        """Queue step `step`'s flags (summed over ranks); returns this rank's gradient norm
        (None when gradients are not checked: fp16, whose scaler skips inf steps itself)."""
        finite, grad_norm = torch.isfinite(loss), None
        if self.check_grads:
            grad_norm = torch.nn.utils.get_total_norm([p.grad for p in params if p.grad is not None])
            finite &= torch.isfinite(grad_norm)
        # torch.full, not torch.tensor: a fill kernel, where a copy from the host would wait for the stream
        flags = torch.stack([(~finite).float(), torch.full((), float(asked), device=loss.device)])
        flags = parallel.all_sum(flags, self.env)
        event = None
        if flags.is_cuda:  # copied to the host behind the step, without waiting for it
            host = torch.empty(2, pin_memory=True)
            host.copy_(flags, non_blocking=True)
            event = torch.cuda.Event()
            event.record()
            flags = host
        self.pending.append((step, flags, event))
        return grad_norm

    def settle(self, *, keep: int = 0) -> tuple[int | None, bool]:
        """Read all queued flags but the newest `keep`: (the first step with a non-finite
        loss or gradient on some rank, or None; whether some rank asked to stop)."""
        bad, stop = None, False
        while len(self.pending) > keep:
            step, flags, event = self.pending.pop(0)
            if event is not None:
                event.synchronize()
            nonfinite, asked = flags.tolist()
            if nonfinite and bad is None:
                bad = step
            stop = stop or asked > 0
        return bad, stop

    def weights_finite(self, params: list) -> bool:
        """Whether the weights are finite on every rank: an update can overflow even where the
        loss and gradient were finite, so this runs before each save (a sync, not a step's)."""
        finite = torch.stack([torch.isfinite(p).all() for p in params]).all()
        return parallel.all_sum((~finite).float(), self.env).item() == 0


def nonfinite_hint(cfg: Config) -> str:
    """What to change after a non-finite loss. mean_image leaves pixels at -128..127 (no division
    by a std), which a small model without batch norm does not survive at a high lr. Measured on
    the Fashion-MNIST demo set at 32 px, configs/debug.yaml, 100 steps: alexnet_small with
    mean_image gives NaN at step 6 with lr 0.01, chance (10.0%) with 0.005, 48.6% with 0.003,
    61.3% with 0.001; with data.normalize=channel at lr 0.01, 63.4%."""
    if cfg.model.name == "alexnet_small" and cfg.data.normalize == "mean_image" and cfg.optim.lr >= 0.005:
        return (f"; alexnet_small with data.normalize=mean_image at optim.lr>=0.005 is known to diverge"
                f" (optim.lr={cfg.optim.lr:g} here): use data.normalize=channel, or optim.lr=0.001")  # fmt: skip
    return "; a lower optim.lr, guard.clip_norm or data.normalize=channel may help"
