"""Simulators that write the real formats: the stimulus world, a simulated visual cortex
laid out like NSD, and a simulated DREAMER EEG recording.

Names are imported lazily (PEP 562), so ``import data_loaders.simulate`` stays cheap::

    from data_loaders.simulate import render_stimuli, simulate_nsd, default_nsd
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS: dict[str, str] = {
    # the stimulus world
    "SHAPE_CLASSES": "stimuli",
    "SHAPE_PROPERTIES": "stimuli",
    "COLOUR_NAMES": "stimuli",
    "COLOUR_RGB": "stimuli",
    "sample_scenes": "stimuli",
    "render_scenes": "stimuli",
    "render_stimuli": "stimuli",
    "shape_sdf": "stimuli",
    "object_mesh": "stimuli",
    "object_points": "stimuli",
    # the simulated visual cortex
    "ROI_NAMES": "fmri",
    "DEFAULT_NCSNR": "fmri",
    "SimulatedSubject": "fmri",
    "SimulatedNSD": "fmri",
    "gabor_energy_features": "fmri",
    "simulate_nsd": "fmri",
    "default_nsd": "fmri",
    "mni_grid": "fmri",
    "save_truth": "fmri",
    "load_truth": "fmri",
    "write_simulation": "fmri",
    "is_complete": "fmri",
    "DEFAULT_PARAMS": "fmri",
    # simulated EEG
    "simulate_dreamer": "eeg",
    "default_dreamer": "eeg",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        module = importlib.import_module(f"{__name__}.{_EXPORTS[name]}")
        return getattr(module, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
