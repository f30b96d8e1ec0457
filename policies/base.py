"""The policy contract used everywhere in kairos-gym.

A policy maps one observation (the flat Dict observation of a kairos-gym environment) and
the task instruction to either one action ``[A]`` or an action chunk ``[H, A]``. The same
object runs unchanged against a real simulator and against the imagined environment.
Policies that need privileged simulator state (scripted experts) receive the environment
in :meth:`Policy.reset`; learned policies ignore it.
"""

from __future__ import annotations

import abc
from typing import Any

import gymnasium as gym
import numpy as np


class Policy(abc.ABC):
    """Observation + instruction in, action or action chunk out.

    Subclasses implement :meth:`act`; :meth:`reset` is called at the start of every
    episode with the episode's seed and the environment (``None`` where the policy must
    not rely on it).
    """

    def reset(self, *, seed: int | None = None, env: gym.Env | None = None) -> None:
        """Start a new episode. ``env`` is given to policies that read privileged state."""
        del seed, env

    @abc.abstractmethod
    def act(self, observation: dict[str, np.ndarray], instruction: str = "") -> np.ndarray:
        """Return a float32 action ``[A]`` or an action chunk ``[H, A]``."""


class RandomPolicy(Policy):
    """Uniform samples from an action space; seeded through :meth:`reset`."""

    def __init__(self, action_space: gym.spaces.Box) -> None:
        if not isinstance(action_space, gym.spaces.Box):
            raise TypeError(f"RandomPolicy needs a Box action space, got {action_space!r}")
        self.action_space = action_space
        self._rng = np.random.default_rng()

    def reset(self, *, seed: int | None = None, env: Any = None) -> None:
        self._rng = np.random.default_rng(seed)

    def act(self, observation: dict[str, np.ndarray], instruction: str = "") -> np.ndarray:
        low, high = self.action_space.low, self.action_space.high
        return self._rng.uniform(low, high).astype(np.float32)


def as_chunk(action: np.ndarray, action_dim: int) -> np.ndarray:
    """Normalise a policy output to a chunk ``[H, A]`` (``H = 1`` for a single action).

    Raises:
        ValueError: if the last dimension is not ``action_dim`` or the rank is not 1 or 2.
    """
    arr = np.asarray(action, dtype=np.float32)
    if arr.ndim == 1:
        arr = arr[None]
    if arr.ndim != 2 or arr.shape[-1] != action_dim:
        raise ValueError(
            f"a policy must return an action [{action_dim}] or a chunk [H, {action_dim}], "
            f"got shape {tuple(np.shape(action))}"
        )
    return arr
