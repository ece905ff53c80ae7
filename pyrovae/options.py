"""Checks for component options read from a spec.

Each check returns the value in its canonical type or raises ``ValueError`` with the
option's name, the value and what is allowed; :meth:`Registry.build` turns that into a
:class:`~pyrovae.errors.SpecError` naming the spec key. Booleans are never numbers here
(YAML ``true`` is not a depth of 1).
"""

from __future__ import annotations

import math


def is_number(value) -> bool:
    """A finite int or float, not a bool."""
    return not isinstance(value, bool) and isinstance(value, (int, float)) and math.isfinite(value)


def check_finite(name: str, value) -> float:
    if not is_number(value):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    return float(value)


def check_positive(name: str, value) -> float:
    if not is_number(value) or not value > 0:
        raise ValueError(f"{name} must be a positive number, got {value!r}")
    return float(value)


def check_nonnegative(name: str, value) -> float:
    if not is_number(value) or not value >= 0:
        raise ValueError(f"{name} must be a non-negative number, got {value!r}")
    return float(value)


def check_int(name: str, value, low: int = 1, high: int | None = None) -> int:
    """An integer in [low, high] (no upper bound when ``high`` is None)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < low or (
            high is not None and value > high):
        where = f"an integer >= {low}" if high is None else f"an integer in [{low}, {high}]"
        raise ValueError(f"{name} must be {where}, got {value!r}")
    return value


def check_int_list(name: str, value, low: int = 1, *, empty: bool = True, low_name: str = "",
                   why: str = "") -> list[int]:
    """A list of integers >= ``low`` (layer sizes); ``empty=False`` requires at least one.
    ``low_name`` says what ``low`` is, ``why`` adds a reason to the message."""
    if not isinstance(value, (list, tuple)) or (not value and not empty) or not all(
            isinstance(v, int) and not isinstance(v, bool) and v >= low for v in value):
        what = "a list" if empty else "a non-empty list"
        kind = ("positive integers" if low == 1 and not low_name
                else f"integers >= {low_name} ({low})" if low_name else f"integers >= {low}")
        raise ValueError(f"{name} must be {what} of {kind}{why}, got {value!r}")
    return list(value)


def check_flag(name: str, value) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"{name} must be true or false, got {value!r}")
    return value


def check_choice(name: str, value, choices) -> str:
    if value not in choices:
        raise ValueError(f"unknown {name} {value!r} (valid choices: {', '.join(map(str, choices))})")
    return value


def softplus_inverse(y: float) -> float:
    """u with softplus(u) = y > 0 (to start a softplus-parameterised value at y)."""
    return y + math.log(-math.expm1(-y))
