"""Distribution: the process group from torchrun's environment, model wrapping, reductions.

The model knows nothing of this module. One code path serves 1 process and N nodes:
with WORLD_SIZE unset or 1 no process group is created and every call here is a no-op.
"""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn

from lsvr.config import Config


class PeerError(RuntimeError):
    """A collective failed: a peer process died, or stopped answering within parallel.timeout_s."""


def peer_failure(exc: BaseException) -> bool:
    """Whether exc is a collective's failure (torch raises gloo's and NCCL's as RuntimeError)."""
    if isinstance(exc, getattr(dist, "DistError", ())):
        return True
    text = str(exc)
    return isinstance(exc, RuntimeError) and any(
        word in text for word in ("gloo", "NCCL", "Timed out", "timed out", "Connection closed", "Connection reset")
    )


@dataclass(frozen=True)
class Distributed:
    rank: int
    world: int
    local_rank: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        """Rank 0 alone prints and writes."""
        return self.rank == 0


def pick_device(name: str, local_rank: int = 0) -> torch.device:
    if name == "cpu" or (name == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu")
    if not torch.cuda.is_available():
        from lsvr.errors import InputError

        raise InputError("train.device=cuda but no CUDA device is available")
    return torch.device("cuda", local_rank)


def setup(cfg: Config) -> Distributed:
    """Join the process group torchrun describes (gloo on CPU, NCCL on GPUs), if any."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = pick_device(cfg.train.device, local_rank)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    if world > 1 and not dist.is_initialized():
        timeout = datetime.timedelta(seconds=cfg.parallel.timeout_s)
        dist.init_process_group(
            backend="nccl" if device.type == "cuda" else "gloo", store=_store(rank, world, timeout), rank=rank,
            world_size=world, timeout=timeout,
        )  # fmt: skip
    return Distributed(rank=rank, world=world, local_rank=local_rank, device=device)


def _store(rank: int, world: int, timeout: datetime.timedelta) -> dist.Store:
    """torchrun's store, its keys prefixed by the restart count: after torchrun restarts the
    workers, gloo must not meet the addresses the dead attempt published (seen here:
    "connectFullMesh ... Connection refused" on every restart without the prefix)."""
    agent = os.environ.get("TORCHELASTIC_USE_AGENT_STORE") == "True"  # torchrun's agent hosts it
    store = dist.TCPStore(os.environ["MASTER_ADDR"], int(os.environ["MASTER_PORT"]), world,
                          is_master=not agent and rank == 0, timeout=timeout)  # fmt: skip
    return dist.PrefixStore(f"lsvr/attempt-{os.environ.get('TORCHELASTIC_RESTART_COUNT', '0')}", store)


def barrier(env: Distributed) -> None:
    """Wait for every rank."""
    if env.world > 1:
        dist.barrier(device_ids=[env.device.index] if env.device.type == "cuda" else None)


def teardown() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def wrap(model: nn.Module, env: Distributed, cfg: Config) -> nn.Module:
    """DDP in ddp mode at world > 1; the bare model otherwise (average mode syncs by hand)."""
    if env.world == 1 or cfg.parallel.mode != "ddp":
        return model
    ids = [env.device.index] if env.device.type == "cuda" else None
    # Gradients as views of the buckets: no copy in or out, and one layout for both.
    ddp = nn.parallel.DistributedDataParallel(
        model, device_ids=ids, bucket_cap_mb=cfg.parallel.bucket_mb, gradient_as_bucket_view=True
    )
    if cfg.parallel.compress == "bf16":
        ddp.register_comm_hook(None, bf16_allreduce)
    return ddp


def bf16_allreduce(group, bucket):  # no return annotation: DDP checks it, and string annotations fail the check
    """A DDP communication hook: each gradient bucket is averaged in bfloat16 (half the
    bytes on the wire) and written back in place. torch's bf16_compress_hook does the same
    on NCCL only; this one runs on gloo too."""
    group = group or dist.group.WORLD
    buffer = bucket.buffer()
    half = buffer.to(torch.bfloat16).div_(dist.get_world_size(group))
    future = dist.all_reduce(half, group=group, async_op=True).get_future()

    def written_back(done: torch.futures.Future) -> torch.Tensor:
        buffer.copy_(done.value()[0])
        return buffer

    return future.then(written_back)


def all_sum(tensor: torch.Tensor, env: Distributed) -> torch.Tensor:
    """Sum over ranks, in place; returns the tensor."""
    if env.world > 1:
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


@torch.no_grad()
def average_replicas(model: nn.Module, optimizer: torch.optim.Optimizer, env: Distributed) -> None:
    """The paper's exchange: set every parameter AND momentum buffer to the mean over ranks
    (and floating-point buffers such as BatchNorm statistics, which the paper's net lacks)."""
    if env.world == 1:
        return
    tensors = list(model.parameters()) + [b for b in model.buffers() if b.is_floating_point()]
    tensors += [s["velocity"] for s in optimizer.state.values() if "velocity" in s]
    for t in tensors:
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
        t.div_(env.world)
