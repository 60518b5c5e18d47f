"""What torchrun tells a worker through its environment (rank, world, restart count): the one
reader of those variables. It imports no torch, so that the CLI can ask who it is on its error
path (rank 0 alone says a refusal that every rank meets) without a 5 s import."""

from __future__ import annotations

import os
import signal
import time
from dataclasses import dataclass

RANK0_WAIT_S = 30.0  # how long another rank leaves rank 0 to say what both met (wait_for_stop)


@dataclass(frozen=True)
class LaunchEnv:
    """What torchrun tells a worker through its environment; a plain process is rank 0 of 1."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0
    restart: int = 0  # TORCHELASTIC_RESTART_COUNT: how many times torchrun restarted the workers
    agent_store: bool = False  # the store is hosted by torchrun's agent, not by rank 0
    master_addr: str = ""
    master_port: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def launch_env() -> LaunchEnv:
    """The one reader of torchrun's environment variables."""
    env = os.environ
    return LaunchEnv(
        rank=int(env.get("RANK", "0")), world=int(env.get("WORLD_SIZE", "1")),
        local_rank=int(env.get("LOCAL_RANK", "0")), restart=int(env.get("TORCHELASTIC_RESTART_COUNT", "0")),
        agent_store=env.get("TORCHELASTIC_USE_AGENT_STORE") == "True",
        master_addr=env.get("MASTER_ADDR", ""), master_port=int(env.get("MASTER_PORT", "0")),
    )  # fmt: skip


def wait_for_stop(seconds: float = RANK0_WAIT_S) -> None:
    """A rank other than 0 that met what rank 0 meets too (a refusal of the same inputs, a NaN
    stop at the same step) waits here for torchrun to stop it: were it to exit first, torchrun
    would SIGTERM rank 0, maybe before rank 0 said a word. torchrun's SIGTERM ends the wait and
    the process at once; back from here after `seconds`, rank 0 is still running (it did not
    meet it), and the caller says it itself."""
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    time.sleep(seconds)
