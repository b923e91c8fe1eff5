"""Tiny torch.distributed helpers that degrade to no-ops in a single process.

Launch (one device): ``python -m fastadl.search ...``; several: ``torchrun --nproc_per_node=N
-m fastadl.search ...``. torchrun sets WORLD_SIZE / RANK / LOCAL_RANK; without them nothing here
touches torch.distributed, so the CPU and single-GPU paths need no process group.
"""

from __future__ import annotations

import os

import torch
import torch.distributed as dist


def is_dist() -> bool:
    """True when a process group is initialised (by ``init_distributed`` or the caller)."""
    return dist.is_available() and dist.is_initialized()


def rank() -> int:
    """Global rank; 0 in a single process."""
    return dist.get_rank() if is_dist() else 0


def world_size() -> int:
    """Number of processes; 1 in a single process."""
    return dist.get_world_size() if is_dist() else 1


def is_main_process() -> bool:
    """Rank 0: the one process that writes files and logs."""
    return rank() == 0


def resolve_device(name: str) -> torch.device:
    """``--device``: "auto" (CUDA when present), "cpu", "cuda", "cuda:N", ... as a torch.device.

    Raises ValueError naming the flag for a string that is no device, or a CUDA device this
    machine does not have (rather than failing later, deep inside the first forward).
    """
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError):
        raise ValueError(f"--device {name!r} is not a device (auto, cpu, cuda, cuda:N)") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"--device {name}: CUDA is not available here (use auto or cpu)")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ValueError(
                f"--device {name}: this machine has {torch.cuda.device_count()} CUDA device(s)"
            )
    return device


def under_torchrun() -> bool:
    """True in a process torchrun (or torch.distributed.run) started."""
    return "TORCHELASTIC_RUN_ID" in os.environ or int(os.environ.get("WORLD_SIZE", "1")) > 1


def init_distributed(device: str | torch.device) -> torch.device:
    """Join the torchrun process group if WORLD_SIZE > 1 and return this process's device.

    device: the requested device ("cpu", "cuda", "cuda:1", ...). Under torchrun with CUDA each
    process takes cuda:LOCAL_RANK (the index in ``device`` is ignored); NCCL for CUDA, gloo for CPU.
    A CUDA device becomes the process's current device before anything else runs on it: the
    loader's pin-memory thread and the telemetry ask torch for the current device, and with
    ``cuda:1`` left at the default they would open a context on, and report, GPU 0.
    """
    device = torch.device(device)
    ws = int(os.environ.get("WORLD_SIZE", "1"))
    if ws <= 1:
        if device.type == "cuda":
            if device.index is None:  # "cuda": the current device, named by its index
                device = torch.device("cuda", torch.cuda.current_device())
            torch.cuda.set_device(device)
        return device
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if device.type == "cuda":
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    if not is_dist():
        backend = "nccl" if device.type == "cuda" else "gloo"
        rank = int(os.environ["RANK"])
        dist.init_process_group(backend=backend, store=_round_store(), rank=rank, world_size=ws)
    return device


def _round_store() -> dist.Store:
    """The rendezvous store (env://: torchrun's), its keys prefixed by torchrun's restart count.

    After torchrun restarts the worker group (--max-restarts) the store can still hold the old
    group's keys, among them the killed worker's gloo address: a restarted rank that reads it
    before its peer overwrites it connects to a dead port ("connectFullMesh failed ...
    Connection refused"; seen under load, cf. pytorch/pytorch#167288). A prefix per restart
    round makes each round's process group meet on fresh keys."""
    store, _, _ = next(dist.rendezvous("env://"))
    restart = os.environ.get("TORCHELASTIC_RESTART_COUNT", "0")
    return dist.PrefixStore(f"fastadl_round_{restart}", store)


def barrier() -> None:
    """Wait for every rank; a no-op in a single process."""
    if is_dist():
        dist.barrier()


def all_reduce_mean(tensor: torch.Tensor) -> torch.Tensor:
    """Mean of ``tensor`` over ranks (a new tensor; the input is left unchanged).

    Integer tensors are averaged in float64 (in every world size, so the dtype does not depend on
    how the run was launched) and counts do not truncate.
    """
    out = tensor.detach().clone()
    if not out.is_floating_point():
        out = out.double()
    if is_dist() and world_size() > 1:
        dist.all_reduce(out, op=dist.ReduceOp.SUM)
        out /= world_size()
    return out


def cleanup() -> None:
    """Destroy the process group if one exists (safe to call always)."""
    if is_dist():
        dist.destroy_process_group()
