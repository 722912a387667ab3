"""The name -> class table behind ``get_extractor`` and ``get_text_encoder``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


class Registry:
    """Classes registered by name, built with keyword arguments.

    Parameters
    ----------
    kind : str
        What the entries are, for the error message (e.g. ``"feature extractor"``).
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._classes: dict[str, Callable[..., Any]] = {}

    def register(self, name: str) -> Callable:
        """Class decorator: make the class available as ``build(name, ...)``."""

        def deco(cls):
            self._classes[name] = cls
            return cls

        return deco

    def names(self) -> list[str]:
        """The registered names, sorted."""
        return sorted(self._classes)

    def build(self, name: str, **kwargs: Any) -> Any:
        """Instantiate the class registered as ``name``; unknown names are refused."""
        if name not in self._classes:
            raise ValueError(f"name: unknown {self.kind} {name!r}; expected one of {self.names()}")
        return self._classes[name](**kwargs)
