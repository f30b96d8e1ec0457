"""Argument types shared by the ``kairos-gym`` sub-commands.

Each turns one command-line word into a checked value or raises
``argparse.ArgumentTypeError`` with the value it got, so every command refuses bad numbers
with the same message (argparse prints it and exits with status 2).
"""

from __future__ import annotations

import argparse
import math

__all__ = [
    "non_negative_float",
    "non_negative_int",
    "policy_spec",
    "positive_float",
    "positive_int",
]


def positive_int(text: str) -> int:
    """An integer >= 1."""
    return _int(text, 1, "a positive integer")


def non_negative_int(text: str) -> int:
    """An integer >= 0."""
    return _int(text, 0, "an integer >= 0")


def non_negative_float(text: str) -> float:
    """A finite number >= 0."""
    return _float(text, strict=False)


def positive_float(text: str) -> float:
    """A finite number > 0."""
    return _float(text, strict=True)


def _int(text: str, low: int, what: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
    if value < low:
        raise argparse.ArgumentTypeError(f"expected {what}, got {value}")
    return value


def _float(text: str, strict: bool) -> float:
    what = "a finite number > 0" if strict else "a finite number >= 0"
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
    if not math.isfinite(value) or value < 0 or (strict and value == 0):
        raise argparse.ArgumentTypeError(f"expected {what}, got {text}")
    return value


def policy_spec(text: str) -> str:
    """A policy spec (``BASE[+MODIFIER...]``, see :mod:`kairos_gym.policies.registry`)."""
    from kairos_gym.policies.registry import check_spec

    try:
        return check_spec(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
