"""One thread policy for every run: ``n_jobs`` (MNE-like) and torch's intra-op threads.

Measured on a shared 2-core machine (issue 16): with OpenMP's default *spinning* wait
policy, a torch op split over 2 threads runs 33x slower beside one busy process (its
threads spin waiting for a core the other process holds); with ``OMP_WAIT_POLICY=PASSIVE``
it runs 1.6x slower, and one thread 2.5x. So:

- the ``neurosuite`` entry point sets ``OMP_WAIT_POLICY=PASSIVE`` before torch is imported
  (:func:`set_wait_policy`; an explicit setting in the environment wins);
- ``n_jobs`` in the run config (``--n-jobs`` on the command line), as in MNE: the number of
  CPUs a run may use, ``-1`` for all of them; ``0`` and values below ``-1`` are refused. The
  default is 1: one torch thread, the fastest for the suite's small models on a shared
  machine (a HiSTN fit: 4.2 s on 1 thread vs 17.9 s on 2 in issue 16; 30 HiSTN steps with
  the passive policy at load 3.7: 0.8 s vs 2.0 s);
- a job with independent trials, folds or sweep points runs them in ``n_jobs`` worker
  processes (joblib's loky backend; :func:`parallel_map`), each with one torch thread, rather
  than in threads; a job without such units gives its one process ``n_jobs`` torch threads.

The resolved ``n_jobs`` is recorded in the run folder's ``config.yaml``.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterable, Iterator
from typing import Any

THREAD_ENV = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")
N_JOBS_HELP = ("CPUs the run may use, as in MNE (default: the config's n_jobs, 1; -1: all): "
               "torch threads, or worker processes for independent trials/folds")


def set_wait_policy() -> None:
    """Set ``OMP_WAIT_POLICY=PASSIVE`` unless the environment says otherwise.

    Must run before torch (or numpy's BLAS) is first imported: OpenMP reads it once at start.
    """
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def check_n_jobs(n_jobs: Any, field: str = "n_jobs") -> int:
    """Validate an MNE-like ``n_jobs``: an integer >= 1, or -1 (all CPUs).

    Raises
    ------
    ValueError
        Naming ``field`` and the value, for 0, values below -1 and non-integers.
    """
    if isinstance(n_jobs, bool) or not isinstance(n_jobs, int | float) or int(n_jobs) != n_jobs:
        raise ValueError(f"{field}: expected an integer >= 1 or -1 (all CPUs), got {n_jobs!r}")
    n_jobs = int(n_jobs)
    if n_jobs == 0 or n_jobs < -1:
        raise ValueError(
            f"{field}: expected an integer >= 1 or -1 (all CPUs), got {n_jobs} "
            "(0 runs nothing; -2 and below are not supported)"
        )
    return n_jobs


def resolve_n_jobs(n_jobs: int) -> int:
    """The number of CPUs ``n_jobs`` stands for (``-1``: every CPU this process may use)."""
    n_jobs = check_n_jobs(n_jobs)
    if n_jobs == -1:
        try:
            return max(len(os.sched_getaffinity(0)), 1)
        except AttributeError:  # pragma: no cover - not on Linux
            return max(os.cpu_count() or 1, 1)
    return n_jobs


@contextlib.contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """Run the block with ``n`` torch intra-op threads (restored afterwards)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(max(int(n), 1))
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _one_thread_call(func: Callable, item: Any) -> Any:
    import torch

    torch.set_num_threads(1)
    return func(item)


def parallel_map(func: Callable[[Any], Any], items: Iterable[Any], n_jobs: int = 1,
                 backend: str = "loky") -> list[Any]:
    """``[func(x) for x in items]`` in ``n_jobs`` worker processes, one torch thread each.

    With ``n_jobs == 1`` (or one item) it runs in this process with no pool. ``func`` and
    the items must be picklable (a module-level function). Worker processes inherit this
    process's environment, so ``OMP_WAIT_POLICY=PASSIVE`` set by the entry point holds there.
    """
    items = list(items)
    n = min(resolve_n_jobs(n_jobs), max(len(items), 1))
    if n == 1:
        return [func(x) for x in items]
    from joblib import Parallel, delayed

    env = {k: "1" for k in THREAD_ENV}
    with _env(env):  # loky starts its workers with this environment
        return list(Parallel(n_jobs=n, backend=backend)(
            delayed(_one_thread_call)(func, x) for x in items))


@contextlib.contextmanager
def _env(values: dict[str, str]) -> Iterator[None]:
    old = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
