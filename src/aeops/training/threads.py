"""How many CPU threads torch uses in a training process.

Torch's default is a thread per core in every process. Two processes on the same cores (a test
worker beside another, `dvc exp run --queue` workers, a tune worker beside a server) then spin
against each other: on 2 cores a 39 s run took 854 s beside one other training. `auto` gives each
local training process its share of the cores it may use; an explicit `OMP_NUM_THREADS` wins.
"""

from __future__ import annotations

import os
from typing import Literal


def usable_cores() -> int:
    """Cores this process may run on (its CPU affinity where the OS reports one)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def resolve_threads(setting: int | Literal["auto"], *, processes: int = 1, env: dict[str, str] | None = None) -> int | None:
    """The thread count to set, or None to leave torch as the environment configured it.

    `auto`: `OMP_NUM_THREADS` where set (None), else the usable cores ÷ `processes` (at least 1).
    """
    env = os.environ if env is None else env
    if setting != "auto":
        return int(setting)
    if env.get("OMP_NUM_THREADS", "").strip():
        return None
    return max(1, usable_cores() // max(1, processes))


def set_threads(setting: int | Literal["auto"], *, processes: int = 1) -> int:
    """Apply `resolve_threads` to torch; return the threads torch now uses."""
    import torch

    threads = resolve_threads(setting, processes=processes)
    if threads is not None and threads != torch.get_num_threads():
        torch.set_num_threads(threads)
    return torch.get_num_threads()
