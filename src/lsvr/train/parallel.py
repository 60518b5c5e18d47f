"""Distribution: the process group from torchrun's environment, model wrapping, reductions.

The model knows nothing of this module, and no module but lsvr.train.launch (launch_env)
reads torchrun's environment. One code path serves 1 process and N nodes: with WORLD_SIZE
unset or 1 no process group is created and every call here is a no-op.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn

from lsvr.config import Config
from lsvr.device import pick_device
from lsvr.train.launch import LaunchEnv, launch_env


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
    restart: int = 0  # torchrun's restart attempt (LaunchEnv.restart): 0 on the first

    @property
    def is_main(self) -> bool:
        """Rank 0 alone prints and writes."""
        return self.rank == 0


def setup(cfg: Config) -> Distributed:
    """Join the process group torchrun describes (gloo on CPU, NCCL on GPUs), if any."""
    launch = launch_env()
    device = pick_device(cfg.train.device, launch.local_rank)
    if device.type == "cuda":
        torch.cuda.set_device(device)
        # the fastest convolution algorithms for the run's fixed shapes, timed once at the first
        # steps; deterministic runs keep cuDNN's default choice
        torch.backends.cudnn.benchmark = cfg.train.cudnn_benchmark and not cfg.train.deterministic
    if launch.world > 1 and not dist.is_initialized():
        timeout = datetime.timedelta(seconds=cfg.parallel.timeout_s)
        dist.init_process_group(
            backend="nccl" if device.type == "cuda" else "gloo", store=_store(launch, timeout), rank=launch.rank,
            world_size=launch.world, timeout=timeout,
        )  # fmt: skip
    return Distributed(rank=launch.rank, world=launch.world, local_rank=launch.local_rank, device=device,
                       restart=launch.restart)  # fmt: skip


def _store(launch: LaunchEnv, timeout: datetime.timedelta) -> dist.Store:
    """torchrun's store, its keys prefixed by the restart count: after torchrun restarts the
    workers, gloo must not meet the addresses the dead attempt published (seen here:
    "connectFullMesh ... Connection refused" on every restart without the prefix)."""
    store = dist.TCPStore(launch.master_addr, launch.master_port, launch.world,
                          is_master=not launch.agent_store and launch.rank == 0, timeout=timeout)  # fmt: skip
    return dist.PrefixStore(f"lsvr/attempt-{launch.restart}", store)


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
    """The paper's exchange: set every parameter AND every optimizer state tensor (PaperSGD's
    velocity, AdamW's two moments) to the mean over ranks, and floating-point buffers such as
    BatchNorm statistics, which the paper's net lacks. Step counts are checked, not averaged."""
    if env.world == 1:
        return
    tensors = list(model.parameters()) + [b for b in model.buffers() if b.is_floating_point()]
    tensors += _optimizer_moments(optimizer, env)
    for t in tensors:
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
        t.div_(env.world)


def _optimizer_moments(optimizer: torch.optim.Optimizer, env: Distributed) -> list[torch.Tensor]:
    """Every floating-point state tensor, in the groups' parameter order (the same on every rank:
    the state dict's own order is the order of the first steps). AdamW's "step" counts the updates
    its bias correction divides by: every rank has made the same ones, which one all-reduce checks
    (a rank that counted otherwise would be averaged into moments of another age)."""
    moments, steps = [], []
    for group in optimizer.param_groups:
        for p in group["params"]:
            for key, value in sorted(optimizer.state.get(p, {}).items()):
                if key == "step" and torch.is_tensor(value):
                    steps.append(value.reshape(()).double())
                elif torch.is_tensor(value) and value.is_floating_point():
                    moments.append(value)
    if steps:
        counts = torch.stack(steps).to(env.device)  # (P,)
        extremes = torch.cat([counts, -counts])  # max of -x is -min: both in one all-reduce
        dist.all_reduce(extremes, op=dist.ReduceOp.MAX)
        if not (torch.equal(extremes[: len(steps)], counts) and torch.equal(-extremes[len(steps) :], counts)):
            raise RuntimeError(f"rank {env.rank}: optimizer step counts differ across ranks; cannot average")
    return moments
