"""Run a function in N local gloo processes, as torchrun would set them up (CPU tests)."""

from __future__ import annotations

import os
import socket

import torch.multiprocessing as mp


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _entry(rank: int, world: int, port: int, fn, args) -> None:
    os.environ.update(
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
        WORLD_SIZE=str(world),
        RANK=str(rank),
        LOCAL_RANK=str(rank),
    )
    import torch

    from fastadl.runtime import distributed

    torch.set_num_threads(1)  # N processes on a 2-core machine: no thread oversubscription
    try:
        fn(*args)
    finally:
        distributed.cleanup()


def run_processes(fn, world: int, *args) -> None:
    """Call fn(*args) in ``world`` processes joined in one process group; fn must be picklable
    (defined at module level)."""
    mp.spawn(_entry, args=(world, free_port(), fn, args), nprocs=world, join=True)
