"""Argument checks shared by the generators and objectives: one message format for every
"must be a positive int" / "must be a finite float >= 0", so users see the same wording
whichever model they call.

Example:
    >>> positive_int(3, "n")
    3
    >>> finite_float(0.5, "eta")
    0.5
    >>> finite_float(0, "temperature", positive=True)
    Traceback (most recent call last):
    ...
    ValueError: temperature must be a finite float > 0, got 0
"""
from __future__ import annotations

import math
import numbers
from collections.abc import Mapping
from typing import Any

import numpy as np

__all__ = ["check_autoguidance", "check_time_interval", "check_guide_unused", "finite_float", "positive_int"]


def positive_int(value: Any, name: str) -> int:
    """``value`` as an ``int`` if it is a positive integer (not a bool), else a ``ValueError`` naming it."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    return int(value)


def finite_float(value: Any, name: str, positive: bool = False) -> float:
    """``value`` as a ``float`` if it is a finite real number (not a bool) that is >= 0, or
    > 0 with ``positive``; else a ``ValueError`` naming it. Numpy scalars are accepted."""
    bound = "> 0" if positive else ">= 0"
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f"{name} must be a finite float {bound}, got {value!r}")
    v = float(value)
    if not math.isfinite(v) or v < 0 or (positive and v == 0):
        raise ValueError(f"{name} must be a finite float {bound}, got {value!r}")
    return v


def check_guide_unused(sampling: Mapping[str, Any]) -> None:
    """Raise ValueError when stored sampling defaults use autoguidance, so a generator's
    guide network cannot be dropped under them."""
    if sampling.get("autoguidance", 1.0) != 1:
        raise ValueError(f"the stored autoguidance default ({sampling['autoguidance']}) needs the guide; "
                         "set it to 1 first (set_sampling_defaults(autoguidance=1))")


def check_autoguidance(scale: Any, has_guide: bool) -> float:
    """The ``autoguidance`` sampling option of a generator as a float; ValueError when it is
    not 1 and the generator holds no guide network."""
    scale = finite_float(scale, "autoguidance")
    if scale != 1 and not has_guide:
        raise ValueError("autoguidance needs a guide network, and this model has none: export it with "
                         "`dit3d export ... --guide EARLIER_CHECKPOINT` or call set_guide(); else leave "
                         "autoguidance at 1")
    return scale


def check_time_interval(value: Any, name: str) -> list[float]:
    """``value`` as ``[lo, hi]`` if it is two finite floats with ``0 <= lo <= hi <= 1``
    (flow times, 0 noise and 1 data), else a ``ValueError`` naming it."""
    try:
        lo, hi = (finite_float(v, name) for v in value)
    except (TypeError, ValueError):
        lo = hi = -1.0
    if not 0 <= lo <= hi <= 1:
        raise ValueError(f"{name} must be two flow times [lo, hi] with 0 <= lo <= hi <= 1, got {value!r}")
    return [lo, hi]

