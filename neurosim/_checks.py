"""One check for the physical and numerical parameters of neurosim's models.

Every float parameter must be a finite real number inside its range; NaN and infinity give
silent zeros or garbage in an Euler loop (a NaN threshold never fires), so they are refused
with a ``ValueError`` naming the parameter, the value and the range.
"""

from __future__ import annotations

import math
import numbers

__all__ = ["check_finite"]


def check_finite(
    name: str,
    value,
    *,
    gt: float | None = None,
    ge: float | None = None,
    lt: float | None = None,
    le: float | None = None,
) -> float:
    """``value`` as a float after checking it is a finite real number in range.

    Parameters
    ----------
    name : str
        The parameter's name, which starts the message.
    value : real number
        The value (``bool`` is refused: ``True`` is not a physical quantity).
    gt, ge, lt, le : float, optional
        Bounds: ``value > gt``, ``value >= ge``, ``value < lt``, ``value <= le``.

    Returns
    -------
    float

    Raises
    ------
    ValueError
        ``"<name>: expected a finite number > 0, got nan"`` and similar.
    """
    bounds = [f"{op} {b:g}" for op, b in ((">", gt), (">=", ge), ("<", lt), ("<=", le))
              if b is not None]
    expected = "a finite number" + (" " + " and ".join(bounds) if bounds else "")
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f"{name}: expected {expected}, got {value!r}")
    v = float(value)
    ok = math.isfinite(v) and (gt is None or v > gt) and (ge is None or v >= ge) and (
        lt is None or v < lt) and (le is None or v <= le)
    if not ok:
        raise ValueError(f"{name}: expected {expected}, got {value!r}")
    return v
