"""What a bug report needs: versions, devices, threads (like ``mne sys_info``)."""

from __future__ import annotations

import importlib
import os
import platform
import subprocess
import sys
from pathlib import Path
from typing import Any

PACKAGES = (
    "neurosuite", "numpy", "scipy", "torch", "brian2", "sklearn", "skimage", "nilearn",
    "nibabel", "mne", "mne_bids", "diffusers", "himalaya", "h5py", "safetensors",
    "matplotlib", "pydantic", "yaml",
)


# distribution names of the import names that differ (for importlib.metadata)
_DISTRIBUTIONS = {"sklearn": "scikit-learn", "skimage": "scikit-image", "yaml": "PyYAML",
                  "mne_bids": "mne-bids"}


def _version(name: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    if name == "neurosuite":
        try:
            return version("neurosuite")
        except PackageNotFoundError:
            return None
    if name not in sys.modules:
        # the installed version without importing it: every run records these, and
        # importing diffusers or brian2 only to read a string costs seconds
        try:
            return version(_DISTRIBUTIONS.get(name, name))
        except PackageNotFoundError:
            pass
    try:
        mod = importlib.import_module(name)
    except Exception:  # noqa: BLE001 - an optional package may fail to import for any reason
        return None
    return str(getattr(mod, "__version__", "unknown"))  # torch's is a str subclass


def git_commit() -> str | None:
    """The commit of the source tree, when it is a git checkout."""
    root = Path(__file__).resolve().parents[1]
    try:
        out = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "--short", "HEAD"],
            capture_output=True, text=True, timeout=5, check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def versions() -> dict[str, Any]:
    """Python, platform and package versions, and the git commit of the suite."""
    out: dict[str, Any] = {"python": platform.python_version(), "platform": platform.platform()}
    for name in PACKAGES:
        out[name] = _version(name)
    out["git_commit"] = git_commit()
    return out


def devices() -> dict[str, Any]:
    """CPU cores, torch threads, CUDA devices."""
    import torch

    info: dict[str, Any] = {
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "cuda_available": torch.cuda.is_available(),
        "cuda_devices": [],
    }
    if torch.cuda.is_available():
        for i in range(torch.cuda.device_count()):
            p = torch.cuda.get_device_properties(i)
            info["cuda_devices"].append(f"{p.name} ({p.total_memory / 2**30:.0f} GiB)")
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "NEUROSUITE_DATA"):
        info[var] = os.environ.get(var)
    return info


def sys_info(file=None) -> None:
    """Print versions and devices."""
    file = file or sys.stdout
    print("neurosuite system information", file=file)
    for section in (versions(), devices()):
        for k, v in section.items():
            print(f"  {k + ':':<18} {v}", file=file)
