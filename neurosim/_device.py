"""One place that turns ``device="auto"`` into a torch device for all of neurosim.

``decoding/_device.py`` applies the same rules (and the same messages) but returns the
device's name, which safetensors' ``load_file`` also accepts.
"""

from __future__ import annotations

import torch


def resolve_device(device: str | torch.device) -> torch.device:
    """The usable torch device a ``device`` argument names.

    Parameters
    ----------
    device : str or torch.device
        ``"auto"`` (CUDA when torch sees a GPU, else CPU), ``"cpu"``, ``"cuda"`` or
        ``"cuda:i"``.

    Returns
    -------
    torch.device

    Raises
    ------
    ValueError
        If the name is not a CPU/CUDA device, or CUDA (or GPU ``i``) is requested where
        torch sees none.
    """
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = device if isinstance(device, torch.device) else torch.device(device)
    except (RuntimeError, TypeError) as err:
        raise ValueError(
            f"device: expected 'auto', 'cpu', 'cuda' or 'cuda:i', got {device!r}"
        ) from err
    if dev.type not in ("cpu", "cuda"):
        raise ValueError(f"device: expected 'auto', 'cpu', 'cuda' or 'cuda:i', got {device!r}")
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(
                f"device: {str(device)!r} requested but torch sees no CUDA device "
                "(use 'cpu' or 'auto')"
            )
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ValueError(
                f"device: {str(device)!r} requested but torch sees "
                f"{torch.cuda.device_count()} CUDA device(s)"
            )
    return dev
