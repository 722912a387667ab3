"""Run by test_generation_training under torchrun: fit() on a linear model, data-parallel."""

import sys

import numpy as np
import torch
from torch import nn

from decoding.generation.training import fit


def run(out: str, batch_size: int = 16, n_steps: int = 12) -> None:
    torch.manual_seed(0)
    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    X = torch.from_numpy(rng.normal(size=(64, 5)).astype(np.float32))
    y = X @ torch.arange(1.0, 6.0)[:, None] + 0.1
    lin = nn.Linear(5, 1)

    def loss(parts, batch, gen):
        xb, yb = batch
        return ((parts["lin"](xb) - yb) ** 2).mean()

    fit({"lin": lin}, loss, (X, y), n_steps=n_steps, batch_size=batch_size, lr=0.05,
        progress=False)
    rank = torch.distributed.get_rank() if torch.distributed.is_initialized() else 0
    w = torch.cat([lin.weight.detach().ravel(), lin.bias.detach()]).numpy()
    np.save(f"{out}/rank{rank}.npy", w)


if __name__ == "__main__":
    run(sys.argv[1])
