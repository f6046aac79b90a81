"""Typed exceptions of rfdm.

The library raises :class:`InvalidParameterError` for bad input (the CLI turns it into one sentence and
exit status 2) and :class:`NumericalError` when a computation cannot be trusted (non-convergence, a
matrix that should be positive semi-definite and is not, a truncation bound that is not met).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np


class RfdmError(Exception):
    """Base class of every error rfdm raises on purpose."""


class InvalidParameterError(RfdmError, ValueError):
    """An argument or input array is not valid; the message is one sentence saying which and why."""


class NumericalError(RfdmError, ArithmeticError):
    """A numerical procedure failed or its result cannot be trusted."""


def check_positive_int(name: str, value: Any) -> int:
    """Return ``value`` as an int if it is an integer >= 1, else raise InvalidParameterError."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        if isinstance(value, (float, np.floating)) and float(value).is_integer():
            value = int(value)
        else:
            raise InvalidParameterError(f"{name} must be a positive integer, got {value!r}.")
    if value < 1:
        raise InvalidParameterError(f"{name} must be a positive integer, got {value}.")
    return int(value)


def check_positive_float(name: str, value: Any, allow_zero: bool = False) -> float:
    """Return ``value`` as a finite float > 0 (or >= 0 with ``allow_zero``), else raise."""
    try:
        x = float(value)
    except (TypeError, ValueError):
        raise InvalidParameterError(f"{name} must be a number, got {value!r}.") from None
    if not math.isfinite(x):
        raise InvalidParameterError(f"{name} must be finite, got {value!r}.")
    if x < 0 or (x == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        raise InvalidParameterError(f"{name} must be {bound}, got {x:g}.")
    return x


def check_finite_array(name: str, array: Any, ndim: int | None = None) -> np.ndarray:
    """Return ``array`` as a float64 ndarray; raise if it has the wrong rank or holds NaN/inf."""
    try:
        a = np.asarray(array, dtype=np.float64)
    except (TypeError, ValueError):
        raise InvalidParameterError(f"{name} must be a numeric array.") from None
    if ndim is not None and a.ndim != ndim:
        raise InvalidParameterError(f"{name} must be a {ndim}-D array, got shape {a.shape}.")
    if a.size == 0:
        raise InvalidParameterError(f"{name} must not be empty.")
    if not np.all(np.isfinite(a)):
        raise InvalidParameterError(f"{name} contains NaN or infinite values.")
    return a
