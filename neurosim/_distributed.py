"""Data-parallel training under ``torchrun`` / ``accelerate launch``, with no code changes.

Those launchers start one process per device with ``WORLD_SIZE``, ``RANK``, ``LOCAL_RANK``,
``MASTER_ADDR`` and ``MASTER_PORT`` in the environment. The package's trainers call
:func:`world` once: with ``WORLD_SIZE`` unset or 1 it returns ``(0, 1)`` and nothing
changes; otherwise it joins the default process group (``gloo`` on CPU, ``nccl`` on CUDA)
and each step of the trainer then

1. draws the same mini-batch on every rank (the same seeded generator), and computes the
   loss on its own slice of it (:func:`shard`), summed and divided by the *global* batch
   size, so that
2. the all-reduced sum of the ranks' gradients (:func:`all_reduce_gradients`) is the
   gradient of the one-process loss (to float rounding);
3. the optimiser step, identical on every rank, keeps the replicas equal; running buffers
   (duty cycles, sample counters, batch-norm statistics) are merged by :func:`sync_buffers`.

So 2 processes follow the 1-process run up to the summation order of the gradients (and the
buffer merge, exact for counters and steady-state running means); the tests give the
tolerance. The work of a step is split, its number is not: this is the data parallelism of
``DistributedDataParallel`` without its module wrapper (the trainers' modules stay plain).
"""

from __future__ import annotations

import os
from collections.abc import Iterable

import torch


def world(device: torch.device | str | None = None) -> tuple[int, int]:
    """``(rank, world_size)``; joins the process group the launcher describes, if any."""
    size = int(os.environ.get("WORLD_SIZE", "1") or 1)
    if size <= 1:
        return 0, 1
    import torch.distributed as dist

    if not dist.is_available():  # pragma: no cover - torch built without distributed
        raise RuntimeError("WORLD_SIZE > 1 but torch.distributed is not available")
    if not dist.is_initialized():
        cuda = device is not None and torch.device(device).type == "cuda"
        dist.init_process_group("nccl" if cuda else "gloo")
    return dist.get_rank(), dist.get_world_size()


def local_device(device: torch.device) -> torch.device:
    """Under a launcher, a CUDA device becomes this process's ``cuda:LOCAL_RANK``."""
    if device.type == "cuda" and "LOCAL_RANK" in os.environ and device.index is None:
        return torch.device("cuda", int(os.environ["LOCAL_RANK"]))
    return device


def shard(n: int, rank: int, size: int) -> slice:
    """This rank's contiguous part of ``n`` items (sizes differ by at most one)."""
    return slice(n * rank // size, n * (rank + 1) // size)


def all_reduce_gradients(params: Iterable[torch.nn.Parameter], size: int) -> None:
    """Sum the gradients of ``params`` over the ranks, in one flat all-reduce."""
    if size <= 1:
        return
    import torch.distributed as dist

    ps = [p for p in params if p.requires_grad]
    for p in ps:
        if p.grad is None:
            p.grad = torch.zeros_like(p)
    flat = torch.cat([p.grad.reshape(-1) for p in ps])
    dist.all_reduce(flat)
    i = 0
    for p in ps:
        n = p.grad.numel()
        p.grad.copy_(flat[i:i + n].view_as(p.grad))
        i += n


def all_reduce_sum(value: float, size: int) -> float:
    """A Python number summed over the ranks (e.g. a loss piece, for the logged curve)."""
    if size <= 1:
        return float(value)
    import torch.distributed as dist

    t = torch.tensor([float(value)], dtype=torch.float64)
    dist.all_reduce(t)
    return float(t)


def snapshot_buffers(module: torch.nn.Module) -> list[torch.Tensor]:
    """Copies of the module's buffers before a step (for :func:`sync_buffers`)."""
    return [b.detach().clone() for b in module.buffers()]


def sync_buffers(module: torch.nn.Module, before: list[torch.Tensor], size: int,
                 mode: str = "sum_deltas") -> None:
    """Merge what a step did to the buffers on each rank.

    ``"sum_deltas"``: ``old + sum_r (new_r - old)``, exact for counters of samples seen and
    for running means over a fixed horizon fed by each rank's slice; ``"mean"``: the average
    over ranks (batch-norm running statistics). k-winners duty cycles (modules with
    ``duty_cycle``, ``learning_iterations`` and ``duty_cycle_period``) are recomputed from
    the ranks' summed winner counts: exactly the 1-process update.
    """
    if size <= 1:
        return
    import torch.distributed as dist

    olds = {id(b): old for b, old in zip(module.buffers(), before, strict=True)}
    done: set[int] = set()
    for m in module.modules():  # k-winners duty cycles: merged exactly (see below)
        if all(hasattr(m, a) for a in ("duty_cycle", "learning_iterations",
                                       "duty_cycle_period")):
            _merge_duty_cycle(m, olds[id(m.duty_cycle)], olds[id(m.learning_iterations)])
            done |= {id(m.duty_cycle), id(m.learning_iterations)}
    for b, old in zip(module.buffers(), before, strict=True):
        if id(b) in done:
            continue
        if mode == "mean" and b.dtype.is_floating_point:
            dist.all_reduce(b)
            b.div_(size)
        else:  # counters (e.g. num_batches_tracked): summed, or one rank's step in "mean"
            delta = b - old
            dist.all_reduce(delta)
            b.copy_(old + (delta // size if mode == "mean" else delta))


def _merge_duty_cycle(m: torch.nn.Module, dc_old: torch.Tensor, it_old: torch.Tensor) -> None:
    """The k-winners update ``dc = (dc (p - b) + s) / p``, ``p = min(P, seen)``, for the whole
    batch: each rank's winner counts ``s_r`` (integers) are recovered from its own update,
    summed with the slice sizes ``b_r``, and the update is redone with the totals, in the
    layer's own operation order (so it is the 1-process value to the last bit)."""
    import torch.distributed as dist

    b_r = int(m.learning_iterations) - int(it_old)
    p_r = min(int(m.duty_cycle_period), int(m.learning_iterations))
    s_r = torch.round(m.duty_cycle.double() * p_r - dc_old.double() * (p_r - b_r))
    pack = torch.cat([s_r, torch.tensor([float(b_r)], dtype=torch.float64)])
    dist.all_reduce(pack)
    b = int(round(float(pack[-1])))
    seen = int(it_old) + b
    p = min(int(m.duty_cycle_period), seen)
    m.learning_iterations.fill_(seen)
    dc = dc_old.clone()
    dc.mul_(p - b)
    dc.add_(pack[:-1].to(dc.dtype))
    dc.div_(p)
    m.duty_cycle.copy_(dc)
