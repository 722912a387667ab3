"""One place that turns ``device="auto"`` into a device name for all of decoding."""

from __future__ import annotations

import torch


def resolve_device(device: str) -> str:
    """``"auto"`` gives ``"cuda"`` when torch sees a GPU, else ``"cpu"``.

    Returns a name (``"cpu"``, ``"cuda"``, ``"cuda:1"``), which ``torch.device``,
    ``Module.to`` and safetensors' ``load_file`` all accept.
    """
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device not in ("cpu", "cuda") and not str(device).startswith("cuda:"):
        raise ValueError(f"device: expected 'auto', 'cpu' or 'cuda[:i]', got {device!r}")
    return device
