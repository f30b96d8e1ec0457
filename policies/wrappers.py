"""Policy wrappers that change how a policy acts: skill knobs and deliberate failure modes.

The agreement benchmark needs policies of every skill, including ones that fail in ways the
expert data never shows; these wrappers make them from any observation-only policy:

- :class:`NoisyPolicy`: seeded Gaussian noise on every action (execution noise), clipped to
  the action bounds;
- :class:`GripperOverride`: the gripper dimension pinned (``-1``: never grasps);
- :class:`ConstantPolicy`: one fixed action every step (``zeros``: the arm never moves).

Each wrapper returns what its inner policy returns, chunk or single action, changed per
action, so it composes with :class:`~kairos_gym.policies.ChunkedPolicy`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import gymnasium as gym
import numpy as np

from kairos_gym.policies.base import Policy

__all__ = ["ConstantPolicy", "GripperOverride", "NoisyPolicy"]


class NoisyPolicy(Policy):
    """``policy``'s actions plus Gaussian noise of standard deviation ``std`` (seeded per
    episode by :meth:`reset`), clipped to ``[low, high]``.

    Args:
        policy: the inner policy.
        std: noise standard deviation in action units (>= 0).
        low, high: the action bounds (the robosuite/LIBERO action is in ``[-1, 1]``).
    """

    def __init__(self, policy: Policy, std: float, low: float = -1.0, high: float = 1.0) -> None:
        if not std >= 0:
            raise ValueError(f"std must be >= 0, got {std!r}")
        self.policy, self.std, self.low, self.high = policy, float(std), low, high
        self._rng = np.random.default_rng()

    def reset(self, *, seed: int | None = None, env: gym.Env | None = None) -> None:
        self.policy.reset(seed=seed, env=env)
        # Offset so the noise stream differs from anything the inner policy seeds with ``seed``.
        self._rng = np.random.default_rng(None if seed is None else (seed, 0x4E015E))

    def reset_rows(self, rows: Sequence[int]) -> None:
        self.policy.reset_rows(rows)

    def act(self, observation: dict[str, np.ndarray], instruction: str = "") -> np.ndarray:
        return self._noisy(self.policy.act(observation, instruction))

    def act_batch(self, observations: Mapping[str, np.ndarray], instructions: Any = "") -> np.ndarray:
        return self._noisy(self.policy.act_batch(observations, instructions))

    def _noisy(self, action: np.ndarray) -> np.ndarray:
        arr = np.asarray(action, dtype=np.float32)
        noise = self._rng.normal(0.0, self.std, arr.shape) if self.std else 0.0
        return np.clip(arr + noise, self.low, self.high).astype(np.float32)


class GripperOverride(Policy):
    """``policy``'s actions with the last dimension (the gripper) set to ``value``.

    ``value=-1`` opens the gripper for good: the arm reaches but never grasps, a failure the
    expert data never shows.
    """

    def __init__(self, policy: Policy, value: float = -1.0, index: int = -1) -> None:
        self.policy, self.value, self.index = policy, float(value), index

    def reset(self, *, seed: int | None = None, env: gym.Env | None = None) -> None:
        self.policy.reset(seed=seed, env=env)

    def reset_rows(self, rows: Sequence[int]) -> None:
        self.policy.reset_rows(rows)

    def act(self, observation: dict[str, np.ndarray], instruction: str = "") -> np.ndarray:
        return self._override(self.policy.act(observation, instruction))

    def act_batch(self, observations: Mapping[str, np.ndarray], instructions: Any = "") -> np.ndarray:
        return self._override(self.policy.act_batch(observations, instructions))

    def _override(self, action: np.ndarray) -> np.ndarray:
        arr = np.array(action, dtype=np.float32)
        arr[..., self.index] = self.value
        return arr


class ConstantPolicy(Policy):
    """The same action ``[A]`` every step, whatever it sees (``zeros``: the arm stays put)."""

    def __init__(self, action: Sequence[float] | np.ndarray) -> None:
        self.action = np.asarray(action, dtype=np.float32).reshape(-1)

    def act(self, observation: dict[str, np.ndarray], instruction: str = "") -> np.ndarray:
        return self.action.copy()

    def act_batch(self, observations: Mapping[str, np.ndarray], instructions: Any = "") -> np.ndarray:
        rows = len(next(iter(observations.values())))
        return np.repeat(self.action[None], rows, axis=0)
