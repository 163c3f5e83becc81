"""attrs validators for strategy and plugin parameters. Each error names the class and the parameter, so a
bad `--set name=value` or `--tau` ends in one line that says what to give instead."""

from __future__ import annotations

import math


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def unit_interval(instance, attribute, value) -> None:
    """A probability threshold in [0, 1]."""
    if not _is_number(value) or not 0.0 <= value <= 1.0:
        raise ValueError(f"{type(instance).__name__}: parameter {attribute.name!r} must be a number in [0, 1], "
                         f"got {value!r}")


def non_negative(instance, attribute, value) -> None:
    """A finite number >= 0 (a budget, a scale)."""
    if not _is_number(value) or not 0.0 <= value < math.inf:
        raise ValueError(f"{type(instance).__name__}: parameter {attribute.name!r} must be a finite number >= 0, "
                         f"got {value!r}")


def positive_int(instance, attribute, value) -> None:
    """A whole number >= 1 (steps, counts)."""
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{type(instance).__name__}: parameter {attribute.name!r} must be a whole number >= 1, "
                         f"got {value!r}")
