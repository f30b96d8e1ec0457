"""The policy contract used everywhere in kairos-gym, and action-chunk execution.

A policy maps one observation (the flat Dict observation of a kairos-gym environment) and
the task instruction to either one action ``[A]`` or an action chunk ``[H, A]`` (the next
``H`` actions, as openpi / LeRobot policies return them). The same object runs unchanged
against a real simulator and against the imagined environment. Policies that need
privileged simulator state (scripted experts) receive the environment in
:meth:`Policy.reset`; learned policies ignore it.

:meth:`Policy.act_batch` is the batched entry point (one call for ``N`` rows of a vector
env); its default loops :meth:`Policy.act`, and a served policy overrides it to answer a
whole batch in one request. :class:`ChunkedPolicy` turns any policy into one that returns a
single action per call, executing ``k`` actions of each chunk before asking again; every
episode loop of :mod:`kairos_gym.rollout` runs policies through it.
"""

from __future__ import annotations

import abc
from collections import deque
from collections.abc import Mapping, Sequence
from typing import Any

import gymnasium as gym
import numpy as np


class Policy(abc.ABC):
    """Observation + instruction in, action or action chunk out.

    Subclasses implement :meth:`act`; :meth:`reset` is called at the start of every
    episode with the episode's seed and the environment (``None`` where the policy must
    not rely on it, e.g. in batched loops, whose env is a vector env).
    """

    def reset(self, *, seed: int | None = None, env: gym.Env | None = None) -> None:
        """Start a new episode. ``env`` is given to policies that read privileged state."""
        del seed, env

    def reset_rows(self, rows: Sequence[int]) -> None:
        """In a batched loop, the rows ``rows`` start new episodes (the others go on).

        Called between :meth:`act_batch` calls; the default does nothing, which suits
        policies that keep no per-row memory.
        """
        del rows

    @abc.abstractmethod
    def act(self, observation: dict[str, np.ndarray], instruction: str = "") -> np.ndarray:
        """Return a float32 action ``[A]`` or an action chunk ``[H, A]``."""

    def act_batch(
        self, observations: Mapping[str, np.ndarray], instructions: str | Sequence[str] = ""
    ) -> np.ndarray:
        """Act for ``N`` rows at once: the seam a batched or served policy overrides.

        The default calls :meth:`act` once per row, in row order, so it equals per-row
        :meth:`act` calls; a policy that keeps per-episode memory in ``self`` should
        override it (and :meth:`reset_rows`) before running in a batched loop.

        Args:
            observations: ``{key: [N, ...]}``, row ``i`` being one observation.
            instructions: one instruction for every row, or ``N`` of them.

        Returns:
            float32 actions ``[N, A]`` or chunks ``[N, H, A]``.

        Raises:
            ValueError: ragged or empty batches, a wrong number of instructions, or rows whose
                outputs differ in shape.
        """
        n = batch_size(observations)
        texts = batch_instructions(instructions, n)
        outputs = [
            np.asarray(self.act({k: v[i] for k, v in observations.items()}, texts[i]), np.float32)
            for i in range(n)
        ]
        shapes = sorted({out.shape for out in outputs})
        if len(shapes) > 1:
            raise ValueError(
                f"{type(self).__name__}.act returned different shapes for the rows of one "
                f"batch ({shapes}); act_batch needs one shape"
            )
        return np.stack(outputs)


class RandomPolicy(Policy):
    """Uniform samples from an action space; seeded through :meth:`reset`.

    Args:
        action_space: a ``Box``.
        horizon: ``None`` returns one action ``[A]`` per call; ``H`` returns a chunk ``[H, A]``
            (a chunking baseline, and a test double for chunking policies).
    """

    def __init__(self, action_space: gym.spaces.Box, *, horizon: int | None = None) -> None:
        if not isinstance(action_space, gym.spaces.Box):
            raise TypeError(f"RandomPolicy needs a Box action space, got {action_space!r}")
        if horizon is not None and (not _is_int(horizon) or horizon < 1):
            raise ValueError(f"horizon must be a positive int or None, got {horizon!r}")
        self.action_space = action_space
        self.horizon = horizon
        self._rng = np.random.default_rng()

    def reset(self, *, seed: int | None = None, env: Any = None) -> None:
        self._rng = np.random.default_rng(seed)

    def act(self, observation: dict[str, np.ndarray], instruction: str = "") -> np.ndarray:
        low, high = self.action_space.low, self.action_space.high
        shape = low.shape if self.horizon is None else (self.horizon, *low.shape)
        return self._rng.uniform(low, high, size=shape).astype(np.float32)


class ChunkedPolicy(Policy):
    """Executes action chunks one action per call (an "action chunk broker").

    Asks the wrapped policy for a chunk ``[H, A]``, hands out its first ``execute`` actions
    one per :meth:`act` call, then asks again with the observation of that moment. A policy
    that returns one action ``[A]`` is a policy of chunks of one, so wrapping it changes
    nothing. Re-planning every ``k < H`` steps trades compute for reactivity, as openpi and
    LeRobot do.

    Batched: :meth:`act_batch` keeps one queue per row, asks the wrapped policy's
    :meth:`act_batch` only for the rows whose queue is empty (``{key: [M, ...]}``, in row
    order), and returns ``[N, A]``. :meth:`reset` clears every queue, :meth:`reset_rows` the
    queues of those rows.

    Args:
        policy: the policy that returns actions or chunks.
        execute: actions executed from each chunk before asking again; ``None`` executes the
            whole chunk. A chunk shorter than ``execute`` is executed in full.
        action_dim: when given, every chunk is checked to end in ``action_dim``.

    Raises:
        TypeError: ``policy`` is already a :class:`ChunkedPolicy`.
        ValueError: ``execute`` or ``action_dim`` is not a positive int.
    """

    def __init__(
        self, policy: Policy, execute: int | None = None, *, action_dim: int | None = None
    ) -> None:
        if isinstance(policy, ChunkedPolicy):
            raise TypeError("policy is already a ChunkedPolicy; wrap the inner policy once")
        if execute is not None and (not _is_int(execute) or execute < 1):
            raise ValueError(f"execute must be a positive int or None (all), got {execute!r}")
        if action_dim is not None and (not _is_int(action_dim) or action_dim < 1):
            raise ValueError(f"action_dim must be a positive int, got {action_dim!r}")
        self.policy = policy
        self.execute = execute
        self.action_dim = action_dim
        self._queue: deque[np.ndarray] = deque()
        self._rows: list[deque[np.ndarray]] = []

    def __repr__(self) -> str:
        return f"ChunkedPolicy({self.policy!r}, execute={self.execute})"

    def reset(self, *, seed: int | None = None, env: gym.Env | None = None) -> None:
        """Clear every queued action and reset the wrapped policy."""
        self._queue.clear()
        self._rows = []
        self.policy.reset(seed=seed, env=env)

    def reset_rows(self, rows: Sequence[int]) -> None:
        """Clear the queues of ``rows`` (new episodes there) and tell the wrapped policy."""
        for i in rows:
            if i < len(self._rows):
                self._rows[i].clear()
        self.policy.reset_rows(rows)

    @property
    def queued(self) -> int:
        """Actions left from the last chunk (single-env use)."""
        return len(self._queue)

    def act(self, observation: dict[str, np.ndarray], instruction: str = "") -> np.ndarray:
        """The next action ``[A]``: from the queue, or the first of a fresh chunk."""
        if not self._queue:
            chunk = as_chunk(self.policy.act(observation, instruction), self.action_dim)
            self._queue.extend(chunk[: self.execute])
        return self._queue.popleft().copy()

    def act_batch(
        self,
        observations: Mapping[str, np.ndarray],
        instructions: str | Sequence[str] = "",
        *,
        active: np.ndarray | None = None,
    ) -> np.ndarray:
        """The next action of every row, ``[N, A]``.

        Args:
            observations: ``{key: [N, ...]}``.
            instructions: one for every row, or ``N``.
            active: bool ``[N]``; rows outside it neither pop nor ask (their output row is
                zeros): batched loops pass the rows whose action the env will use.

        Raises:
            ValueError: the batch size changed while actions are still queued, or the
                wrapped policy returned the wrong shape.
        """
        n = batch_size(observations)
        texts = batch_instructions(instructions, n)
        mask = np.ones(n, dtype=bool) if active is None else np.asarray(active, dtype=bool)
        if mask.shape != (n,):
            raise ValueError(f"active must be a bool mask [{n}], got shape {mask.shape}")
        if len(self._rows) != n:
            if any(self._rows):
                raise ValueError(
                    f"a batch of {n} rows, but actions are queued for {len(self._rows)} rows; "
                    "call reset() before changing the batch size"
                )
            self._rows = [deque() for _ in range(n)]
        need = [i for i in np.flatnonzero(mask) if not self._rows[i]]
        if need:
            sub = {k: np.asarray(v)[need] for k, v in observations.items()}
            out = self.policy.act_batch(sub, [texts[i] for i in need])
            chunks = as_chunk_batch(out, len(need), self.action_dim)
            for i, chunk in zip(need, chunks):
                self._rows[i].extend(chunk[: self.execute])
        dim = self.action_dim or next((len(q[0]) for q in self._rows if q), 0)
        actions = np.zeros((n, dim), dtype=np.float32)
        for i in np.flatnonzero(mask):
            actions[i] = self._rows[i].popleft()
        return actions


def as_chunk(action: np.ndarray, action_dim: int | None) -> np.ndarray:
    """Normalise a policy output to a chunk ``[H, A]`` (``H = 1`` for a single action).

    Args:
        action: ``[A]`` or ``[H, A]``.
        action_dim: the expected ``A``; ``None`` accepts any.

    Raises:
        ValueError: the rank is not 1 or 2, the chunk is empty, or the last dimension is not
            ``action_dim``.
    """
    arr = np.asarray(action, dtype=np.float32)
    if arr.ndim == 1:
        arr = arr[None]
    dim = "A" if action_dim is None else action_dim
    ok = arr.ndim == 2 and arr.shape[0] > 0 and (action_dim is None or arr.shape[1] == action_dim)
    if not ok:
        raise ValueError(
            f"a policy must return an action [{dim}] or a chunk [H, {dim}] with H >= 1, "
            f"got shape {tuple(np.shape(action))}"
        )
    return arr


def as_chunk_batch(actions: np.ndarray, rows: int, action_dim: int | None) -> np.ndarray:
    """Normalise a batched policy output to chunks ``[N, H, A]`` (``[N, A]`` is ``H = 1``).

    Raises:
        ValueError: not ``[rows, A]`` or ``[rows, H, A]`` (with ``H >= 1`` and ``A`` equal to
            ``action_dim`` when given).
    """
    arr = np.asarray(actions, dtype=np.float32)
    if arr.ndim == 2:
        arr = arr[:, None]
    dim = "A" if action_dim is None else action_dim
    ok = arr.ndim == 3 and arr.shape[0] == rows and arr.shape[1] > 0
    if not ok or (action_dim is not None and arr.shape[2] != action_dim):
        raise ValueError(
            f"act_batch must return actions [{rows}, {dim}] or chunks [{rows}, H, {dim}] with "
            f"H >= 1, got shape {tuple(np.shape(actions))}"
        )
    return arr


def batch_size(observations: Mapping[str, np.ndarray]) -> int:
    """The row count ``N`` shared by every entry of a batched observation.

    Raises:
        ValueError: no entries, zero rows, or entries with different row counts.
    """
    sizes = {k: len(v) for k, v in observations.items()}
    if not sizes or len(set(sizes.values())) != 1 or 0 in sizes.values():
        raise ValueError(f"a batched observation needs N >= 1 rows in every entry, got {sizes}")
    return next(iter(sizes.values()))


def batch_instructions(instructions: str | Sequence[str], rows: int) -> list[str]:
    """``rows`` instructions: a single string is repeated.

    Raises:
        ValueError: a sequence whose length is not ``rows``.
    """
    if isinstance(instructions, str):
        return [instructions] * rows
    texts = [str(text) for text in instructions]
    if len(texts) != rows:
        raise ValueError(f"{rows} rows but {len(texts)} instructions")
    return texts


def _is_int(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)
