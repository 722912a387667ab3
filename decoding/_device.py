"""One place that turns ``device="auto"`` into a device name for all of decoding.

Same rules and messages as ``neurosim/_device.py`` (the two packages may not import each
other); this one returns the name.
"""

from __future__ import annotations

import torch


def resolve_device(device: str | torch.device) -> str:
    """The usable device a ``device`` argument names, as a string.

    Parameters
    ----------
    device : str or torch.device
        ``"auto"`` (``"cuda"`` when torch sees a GPU, else ``"cpu"``), ``"cpu"``,
        ``"cuda"`` or ``"cuda:i"``.

    Returns
    -------
    str
        ``"cpu"``, ``"cuda"`` or ``"cuda:i"``, which ``torch.device``, ``Module.to`` and
        safetensors' ``load_file`` all accept.

    Raises
    ------
    ValueError
        If the name is not a CPU/CUDA device, or CUDA (or GPU ``i``) is requested where
        torch sees none.
    """
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
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
    return str(dev)
