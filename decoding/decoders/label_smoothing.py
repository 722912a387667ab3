"""Ordinal Gaussian label smoothing (HiSTN's "unique label smoothing").

Kuang, Song & Michoski (2024), arXiv:2408.15255, code ``Dreamer_10cv.py``: for a 0-based
ordinal score ``y`` on the grid ``k = 0..K-1`` the soft target is

.. math:: q_k = \\exp(-(k - y)^2 / (2 \\sigma^2)) / \\sum_j \\exp(-(j - y)^2 / (2 \\sigma^2)),

with :math:`\\sigma = 0.5`; the loss is the cross-entropy against :math:`q`. Neighbouring
classes get mass, so the network learns the order of the classes and its two best guesses
tend to be adjacent (what Seq2HR rewards).
"""

from __future__ import annotations

import numpy as np


def gaussian_soft_labels(y: np.ndarray, n_classes: int, sigma: float | None = 0.5) -> np.ndarray:
    """Soft ordinal targets.

    Parameters
    ----------
    y : array of int, shape (n,)
        Class indices in ``0..n_classes-1``.
    n_classes : int
        Size of the ordinal grid (5 for DREAMER ratings).
    sigma : float | None
        Width of the Gaussian in class units; ``None`` or 0 gives one-hot targets.

    Returns
    -------
    ndarray of float32, shape (n, n_classes)
        Rows sum to 1.
    """
    y = np.asarray(y)
    if y.ndim != 1 or y.dtype.kind not in "iu":
        raise ValueError(f"y: expected a 1-d int array of class indices, got {y.dtype} {y.shape}")
    if y.size and (y.min() < 0 or y.max() >= n_classes):
        raise ValueError(f"y: expected classes in 0..{n_classes - 1}, got range "
                         f"{y.min()}..{y.max()}")
    grid = np.arange(n_classes)
    if not sigma:
        return np.eye(n_classes, dtype=np.float32)[y]
    if sigma < 0:
        raise ValueError(f"sigma: expected a width >= 0 (class units), got {sigma!r}")
    logits = -((grid[None, :] - y[:, None]) ** 2) / (2.0 * sigma**2)
    q = np.exp(logits - logits.max(axis=1, keepdims=True))
    return (q / q.sum(axis=1, keepdims=True)).astype(np.float32)
