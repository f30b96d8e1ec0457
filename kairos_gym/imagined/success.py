"""When an imagined step counts as a success: a threshold on the predicted probability, held.

The model predicts a success probability each step; an imagined episode succeeds at the
first step that ends ``hold`` consecutive steps whose probability is above ``threshold``.
``SuccessRule(0.5, 1)`` is the plain rule (``success_prob > 0.5``). A larger ``hold`` asks the
model to keep predicting success, which a brief hedge on an uncertain grasp does not.

The rule is a property of a model's calibration, so an environment checkpoint can carry its
own (``config.json``: ``"success_rule": {"threshold": 0.5, "hold": 5}``, written by
``kairos-gym train`` from the training config's ``success_rule``); the imagined envs use it
unless told otherwise, and the agreement benchmark scores with it. One rule, written once:
:class:`~kairos_gym.imagined.core.ImaginedCore` advances it step by step
(:meth:`SuccessRule.advance`) and the benchmark's rescoring of traced episodes replays it
(:meth:`SuccessRule.first_success`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

__all__ = ["SuccessRule"]


@dataclasses.dataclass(frozen=True)
class SuccessRule:
    """An imagined step succeeds when it ends ``hold`` consecutive steps whose predicted
    success probability is strictly above ``threshold``.

    Attributes:
        threshold: in ``[0, 1]`` (1 never succeeds).
        hold: consecutive steps, ``>= 1``.
    """

    threshold: float = 0.5
    hold: int = 1

    def __post_init__(self) -> None:
        if (isinstance(self.threshold, bool)
                or not isinstance(self.threshold, (int, float, np.integer, np.floating))
                or not 0.0 <= float(self.threshold) <= 1.0):
            raise ValueError(f"threshold must be a number in [0, 1], got {self.threshold!r}")
        if isinstance(self.hold, bool) or not isinstance(self.hold, (int, np.integer)) or self.hold < 1:
            raise ValueError(f"hold must be an int >= 1, got {self.hold!r}")
        object.__setattr__(self, "threshold", float(self.threshold))
        object.__setattr__(self, "hold", int(self.hold))

    @classmethod
    def parse(cls, text: str) -> SuccessRule:
        """``"0.8"`` or ``"0.8:3"`` (threshold, then hold)."""
        threshold, _, hold = str(text).partition(":")
        try:
            return cls(float(threshold), int(hold) if hold else 1)
        except ValueError as exc:
            raise ValueError(f"a success rule is THRESHOLD[:HOLD], e.g. 0.8 or 0.8:3; got "
                             f"{text!r} ({exc})") from None

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SuccessRule:
        """From ``{"threshold": float, "hold": int}`` (a checkpoint's ``success_rule``).

        Raises:
            ValueError: not such a mapping, or values out of range.
        """
        if not isinstance(data, Mapping) or set(data) - {"threshold", "hold"}:
            raise ValueError(f"a success rule is {{'threshold': float, 'hold': int}}, got {data!r}")
        return cls(data.get("threshold", 0.5), data.get("hold", 1))

    def to_dict(self) -> dict[str, float | int]:
        """``{"threshold": float, "hold": int}``, as a checkpoint stores it."""
        return {"threshold": self.threshold, "hold": self.hold}

    def __str__(self) -> str:
        return f"{self.threshold:g}" if self.hold == 1 else f"{self.threshold:g}:{self.hold}"

    def advance(self, run: np.ndarray, probs: np.ndarray) -> np.ndarray:
        """The run lengths after one more step: ``run + 1`` where ``probs`` pass the
        threshold, else 0. ``run``, ``probs``: ``[R]``; a row succeeds where the result is
        ``>= hold`` (:meth:`met`)."""
        return np.where(np.asarray(probs) > self.threshold, np.asarray(run) + 1, 0)

    def met(self, run: np.ndarray) -> np.ndarray:
        """bool ``[R]``: the rows whose run of passing steps is at least ``hold`` long."""
        return np.asarray(run) >= self.hold

    def first_success(self, probs: Sequence[float]) -> int | None:
        """The step (1-based) at which ``probs`` ``[T]`` first satisfy the rule, or ``None``."""
        run = np.zeros((), dtype=np.int64)
        for step, p in enumerate(probs, start=1):
            run = self.advance(run, p)
            if self.met(run):
                return step
        return None
