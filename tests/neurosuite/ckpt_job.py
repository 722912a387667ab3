"""A small real job for the run-folder tests: one checkpoint per unit of work, and an
environment switch that kills the process with SIGKILL after some units (kill-and-resume).
Kept apart from the test module so that a subprocess imports only what the CLI needs."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from data_loaders._io import atomic_path, load_npz

KILL_ENV = "NEUROSUITE_TEST_KILL_AFTER"


class CkptParams(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)
    n_units: int = Field(4, ge=1)
    scale: float = 1.0
    data_path: str | None = None


def ckpt_job(params: CkptParams, run) -> dict:
    """Draw 3 numbers per unit with the run's seed; each unit is checkpointed."""
    if params.data_path is not None and not Path(params.data_path).exists():
        raise FileNotFoundError(f"data_path: no data at {params.data_path}")
    kill_after = int(os.environ.get(KILL_ENV, "0"))
    values, computed = [], 0
    for i in range(params.n_units):
        path = run.checkpoint_dir / f"unit{i}.npz"
        res = run.load_checkpoint(path, lambda p: load_npz(p, ("value",)))
        if res is None:
            value = params.scale * np.random.default_rng([run.seed, i]).normal(size=3)
            with atomic_path(path) as tmp, open(tmp, "wb") as fh:
                np.savez(fh, value=value)
            computed += 1
            run.add_metrics({"units_done": i + 1})
            if kill_after and computed >= kill_after:
                os.kill(os.getpid(), signal.SIGKILL)  # as a power cut or `kill -9` would
        else:
            value = res["value"]
        values.append([float(v) for v in value])
    return {"values": values, "computed": computed}
