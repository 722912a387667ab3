"""Argument checks shared across decoding (one message per kind of mistake)."""

from __future__ import annotations

from typing import Any

import numpy as np


def check_int(name: str, value: Any, low: int) -> int:
    """``value`` as int after checking it is an integer (numpy's too, not bool) >= ``low``.

    Raises
    ------
    ValueError
        ``"{name}: expected an int >= {low}, got {value!r}"``.
    """
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < low:
        raise ValueError(f"{name}: expected an int >= {low}, got {value!r}")
    return int(value)
