"""The job registry: a job name in a config maps to one public function of a package.

Each entry is ``"module:function"``, imported only when the job runs (so ``neurosuite list``
stays fast). The function's ``params`` annotation is the pydantic model that validates the
config's ``params:`` section; see ``CONTRIBUTING.md``.
"""

from __future__ import annotations

import difflib
import importlib
import inspect
import typing
from collections.abc import Callable

from pydantic import BaseModel

JOBS: dict[str, str] = {
    # neurosim
    "izhikevich_patterns": "neurosim.jobs.izhikevich_patterns:izhikevich_patterns",
    "simulate_network": "neurosim.jobs.simulate_network:simulate_network",
    "what_when": "neurosim.jobs.what_when:what_when",
    "sdr_theory": "neurosim.jobs.dendrites:sdr_theory",
    "dendrites_continual": "neurosim.jobs.dendrites:dendrites_continual",
    # data_loaders
    "simulate_nsd": "data_loaders.jobs.simulate_nsd:simulate_nsd",
    # decoding
    "braincorl": "decoding.jobs.braincorl:braincorl",
    "histn": "decoding.jobs.histn:histn",
    "brain3d": "decoding.jobs.brain3d:brain3d",
    "mindbridge": "decoding.jobs.mindbridge:mindbridge",
    "stimulus_diffusion": "decoding.jobs.generation:stimulus_diffusion",
}


def suggest(name: str, valid: typing.Iterable[str]) -> str:
    """A ' Did you mean ...?' hint for a misspelt name, or ''."""
    close = difflib.get_close_matches(name, list(valid), n=1, cutoff=0.6)
    return f" Did you mean {close[0]!r}?" if close else ""


def get_job(name: str) -> tuple[Callable, type[BaseModel]]:
    """Return ``(function, params_model)`` for a registered job name.

    Raises
    ------
    KeyError
        If ``name`` is not registered; the message lists the valid names.
    """
    if name not in JOBS:
        valid = ", ".join(sorted(JOBS))
        raise KeyError(f"job: unknown job {name!r}; valid jobs are: {valid}.{suggest(name, JOBS)}")
    module_name, func_name = JOBS[name].split(":")
    func = getattr(importlib.import_module(module_name), func_name)
    return func, params_model(func)


def params_model(func: Callable) -> type[BaseModel]:
    """The pydantic model annotated on the job's first parameter (``params``)."""
    hints = typing.get_type_hints(func)
    first = next(iter(inspect.signature(func).parameters))
    model = hints.get(first)
    if not (inspect.isclass(model) and issubclass(model, BaseModel)):
        raise TypeError(
            f"job function {func.__module__}.{func.__name__}: its first parameter must be "
            f"annotated with a pydantic BaseModel, got {model!r}"
        )
    return model
