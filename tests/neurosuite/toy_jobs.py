"""Small real jobs that exercise the front door's machinery (not science)."""

from __future__ import annotations

import numpy as np
from pydantic import BaseModel, ConfigDict, Field


class ToyParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    n: int = Field(100, gt=0)
    scale: float = 1.0
    fail: bool = False


def toy_job(params: ToyParams, run) -> dict:
    """Draw n normal numbers with the run's seed; report their mean and a histogram."""
    import matplotlib.pyplot as plt

    if params.fail:
        raise RuntimeError("asked to fail")
    x = np.random.default_rng(run.seed).normal(scale=params.scale, size=params.n)
    fig, ax = plt.subplots()
    ax.hist(x, bins=10)
    run.add_figure(fig, "hist", caption="histogram")
    run.add_table("summary", [{"n": params.n, "mean": float(x.mean())}])
    marker = run.checkpoint_dir / "seen.txt"
    resumed = marker.exists()
    marker.write_text("1")
    for _ in run.progress(range(3), desc="toy"):
        pass
    return {"mean": float(x.mean()), "std": float(x.std()), "resumed": resumed,
            "level": run.level}
