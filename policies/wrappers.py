"""Policy wrappers that change how a policy acts: skill knobs and deliberate failure modes.

The agreement benchmark needs policies of every skill, including ones that fail in ways the
expert data never shows; these wrappers make them from any observation-only policy:

- :class:`NoisyPolicy`: seeded Gaussian noise on every action (execution noise), clipped to
  the action bounds;
- :class:`GripperOverride`: the gripper dimension(s) pinned (``-1`` in robosuite: never grasps);
- :class:`ConstantPolicy`: one fixed action every step (``zeros``: the arm never moves);
- :class:`ActionSequence`: a recorded sequence of actions played back, whatever it sees (the
  actions a policy chose in imagination, replayed in the real simulator);
- :class:`Interrupted`: random or paused segments inside another policy's episode;
- :class:`RandomGripper`: random open/close segments of the gripper.

Two action conventions are covered (:class:`ActionConvention`): robosuite / LIBERO deltas in
``[-1, 1]`` with one gripper last (``-1`` open, ``+1`` closed), where a zero action pauses the
arm; and ALOHA's absolute joint targets with two grippers (entries 6 and 13, ``1`` open, ``0``
closed), where a pause repeats the last target and a random detour is one random target held
for the segment (targets redrawn every step make gym-aloha's undamped servos diverge).

Each wrapper returns what its inner policy returns, chunk or single action, changed per
action, so it composes with :class:`~kairos_gym.policies.ChunkedPolicy`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np

from kairos_gym.policies.base import Policy

__all__ = [
    "ActionConvention",
    "ActionSequence",
    "ConstantPolicy",
    "GripperOverride",
    "Interrupted",
    "NoisyPolicy",
    "PolicyWrapper",
    "RandomGripper",
]


@dataclass(frozen=True)
class ActionConvention:
    """What an action space's entries mean, for wrappers that write actions themselves.

    Attributes:
        low, high: the action bounds (scalars or per-dimension ``[A]`` arrays).
        grippers: indices of the gripper entries (one per arm).
        gripper_open, gripper_closed: the gripper command values that open / close it.
        absolute: actions are absolute position targets (ALOHA's joints) rather than deltas:
            a pause repeats the last action instead of sending zeros, and a random detour holds
            one random target instead of drawing a new one every step.
    """

    low: float | np.ndarray = -1.0
    high: float | np.ndarray = 1.0
    grippers: tuple[int, ...] = (-1,)
    gripper_open: float = -1.0
    gripper_closed: float = 1.0
    absolute: bool = False

    def __post_init__(self) -> None:
        if not self.grippers:
            raise ValueError("an action convention needs at least one gripper index")


# robosuite / LIBERO: OSC deltas in [-1, 1], gripper last (-1 open, +1 closed).
DELTA_CONVENTION = ActionConvention()


class PolicyWrapper(Policy):
    """A policy that changes what ``policy`` returns, action by action.

    The inner policy is reset, reset per row and asked as usual; :meth:`transform` changes
    its output (``[A]``, ``[H, A]`` or ``[N, ...]``, a float32 copy it may modify in place).
    ``self.rng`` is reseeded with ``(seed, seed_tag)`` at every :meth:`reset`, so each
    wrapper draws a stream of its own, apart from anything the inner policy seeds with
    ``seed``; :meth:`on_reset` clears per-episode state.
    """

    seed_tag: int = 0

    def __init__(self, policy: Policy) -> None:
        self.policy = policy
        self.rng = np.random.default_rng()

    def reset(self, *, seed: int | None = None, env: gym.Env | None = None) -> None:
        self.policy.reset(seed=seed, env=env)
        self.rng = np.random.default_rng(None if seed is None else (seed, self.seed_tag))
        self.on_reset()

    def on_reset(self) -> None:
        """Clear per-episode state (default: none)."""

    def reset_rows(self, rows: Sequence[int]) -> None:
        self.policy.reset_rows(rows)

    def act(self, observation: dict[str, np.ndarray], instruction: str = "") -> np.ndarray:
        return self.transform(np.array(self.policy.act(observation, instruction), np.float32))

    def act_batch(self, observations: Mapping[str, np.ndarray], instructions: Any = "") -> np.ndarray:
        return self.transform(np.array(self.policy.act_batch(observations, instructions), np.float32))

    def transform(self, action: np.ndarray) -> np.ndarray:
        """The changed action(s); the default returns them as they are."""
        return action


class NoisyPolicy(PolicyWrapper):
    """``policy``'s actions plus Gaussian noise of standard deviation ``std`` (seeded per
    episode by :meth:`reset`), clipped to ``[low, high]``.

    Args:
        policy: the inner policy.
        std: noise standard deviation in action units (>= 0).
        low, high: the action bounds, scalars or per-dimension arrays (``make_policy`` gives
            the env's action space bounds; the default is the robosuite/LIBERO ``[-1, 1]``).
    """

    seed_tag = 0x4E015E

    def __init__(self, policy: Policy, std: float, low: float | np.ndarray = -1.0,
                 high: float | np.ndarray = 1.0) -> None:
        if not std >= 0:
            raise ValueError(f"std must be >= 0, got {std!r}")
        super().__init__(policy)
        self.std, self.low, self.high = float(std), low, high

    def transform(self, action: np.ndarray) -> np.ndarray:
        noise = self.rng.normal(0.0, self.std, action.shape) if self.std else 0.0
        return np.clip(action + noise, self.low, self.high).astype(np.float32)


class GripperOverride(PolicyWrapper):
    """``policy``'s actions with the gripper entries set to ``value``.

    ``value=-1`` (robosuite) opens the gripper for good: the arm reaches but never grasps, a
    failure the expert data never shows. ``index`` is one gripper entry or a tuple of them
    (ALOHA: ``(6, 13)``, opened with ``value=1``).
    """

    def __init__(self, policy: Policy, value: float = -1.0, index: int | tuple[int, ...] = -1) -> None:
        super().__init__(policy)
        self.value = float(value)
        self.index = list(index) if isinstance(index, tuple) else index

    def transform(self, action: np.ndarray) -> np.ndarray:
        action[..., self.index] = self.value
        return action


class ConstantPolicy(Policy):
    """The same action ``[A]`` every step, whatever it sees (``zeros``: the arm stays put)."""

    def __init__(self, action: Sequence[float] | np.ndarray) -> None:
        self.action = np.asarray(action, dtype=np.float32).reshape(-1)

    def act(self, observation: dict[str, np.ndarray], instruction: str = "") -> np.ndarray:
        return self.action.copy()

    def act_batch(self, observations: Mapping[str, np.ndarray], instructions: Any = "") -> np.ndarray:
        rows = len(next(iter(observations.values())))
        return np.repeat(self.action[None], rows, axis=0)


class ActionSequence(Policy):
    """Plays back recorded actions ``[T, A]`` one per step, whatever it sees; every
    :meth:`reset` starts again from the first.

    ``kairos-gym collect --dream`` replays with it, in the real simulator, the actions a
    policy chose closed-loop in imagination.

    Raises:
        ValueError: (construction) not a non-empty ``[T, A]`` array of finite numbers;
            (:meth:`act`) asked for action ``T + 1``.
    """

    def __init__(self, actions: np.ndarray) -> None:
        actions = np.asarray(actions, dtype=np.float32)
        if actions.ndim != 2 or actions.shape[0] == 0:
            raise ValueError(f"expected recorded actions [T, A] with T >= 1, got shape {actions.shape}")
        if not np.isfinite(actions).all():
            raise ValueError("recorded actions hold NaN or infinity")
        self.actions = actions
        self._next = 0

    def reset(self, *, seed: int | None = None, env: gym.Env | None = None) -> None:
        self._next = 0

    def act(self, observation: dict[str, np.ndarray], instruction: str = "") -> np.ndarray:
        if self._next >= len(self.actions):
            raise ValueError(f"all {len(self.actions)} recorded actions were played; the episode "
                             "should have ended (cap it at their number of steps)")
        self._next += 1
        return self.actions[self._next - 1].copy()


def _check_segments(rate: float, length: int) -> None:
    """Segment wrappers start a segment of ``length`` steps with probability ``rate``."""
    if not 0.0 <= rate <= 1.0 or length < 1:
        raise ValueError(f"need 0 <= rate <= 1 and length >= 1, got {rate!r} and {length!r}")


class Interrupted(PolicyWrapper):
    """``policy``, interrupted: at each step, with probability ``rate``, a segment of
    ``length`` steps starts in which the action is replaced by a uniform random action inside
    the convention's bounds (or, with ``hold=True``, by a pause). Seeded per episode by
    :meth:`reset`.

    For delta actions (robosuite, LIBERO) a pause is the zero action and a new random action
    is drawn every step. For absolute targets (``convention.absolute``, ALOHA) a pause repeats
    the last action returned before the segment, and one random target is held for the whole
    segment (an excursion towards a random pose, which the position servos survive).

    Interrupted experts show what actions do off the expert's path and how the expert's
    motion resumes from there, which expert data alone never shows.
    """

    seed_tag = 0x1E7
    # Segments are counted per call: a batch is acted on row by row (Policy's default).
    act_batch = Policy.act_batch

    def __init__(
        self,
        policy: Policy,
        rate: float,
        length: int = 8,
        hold: bool = False,
        convention: ActionConvention = DELTA_CONVENTION,
    ) -> None:
        _check_segments(rate, length)
        super().__init__(policy)
        self.rate, self.length, self.hold = float(rate), int(length), hold
        self.convention = convention
        self._left = 0
        self._last: np.ndarray | None = None  # the last action returned (absolute pauses)
        self._target: np.ndarray | None = None  # the segment's held target (absolute detours)

    def on_reset(self) -> None:
        self._left = 0
        self._last = self._target = None

    def transform(self, action: np.ndarray) -> np.ndarray:
        # The inner policy is asked every step, so a scripted expert keeps its own phase.
        if self._left == 0 and self.rng.random() < self.rate:
            self._left = self.length
            self._target = None
        if self._left == 0:
            self._last = action.copy()
            return action
        self._left -= 1
        conv, shape = self.convention, action.shape[-1:]
        if not conv.absolute:
            out = np.zeros(shape) if self.hold else self._uniform(shape)
            return out.astype(np.float32)
        if self._target is None:
            # A pause at the first step of an episode holds the inner policy's first action.
            pause = self._last if self._last is not None else action
            self._target = pause.copy() if self.hold else self._uniform(shape)
        out = np.asarray(self._target, np.float32).copy()
        self._last = out.copy()
        return out

    def _uniform(self, shape: tuple[int, ...]) -> np.ndarray:
        low, high = self.convention.low, self.convention.high
        if np.isscalar(low) and np.isscalar(high):
            return self.rng.uniform(low, high, shape)
        return self.rng.uniform(np.broadcast_to(low, shape), np.broadcast_to(high, shape))


class RandomGripper(PolicyWrapper):
    """``policy`` with a gripper command replaced, in random segments, by a random open or
    close (robosuite: ``-1`` / ``+1``): closing on nothing and opening mid-grasp, both of which
    the expert data never shows. A segment of ``length`` steps starts with probability
    ``rate``; with several grippers (ALOHA) each segment picks one of them at random.
    """

    seed_tag = 0x6217
    act_batch = Policy.act_batch  # segments counted per call, as in Interrupted

    def __init__(
        self,
        policy: Policy,
        rate: float,
        length: int = 10,
        convention: ActionConvention = DELTA_CONVENTION,
    ) -> None:
        _check_segments(rate, length)
        super().__init__(policy)
        self.rate, self.length, self.convention = float(rate), int(length), convention
        self._left, self._value, self._index = 0, convention.gripper_open, convention.grippers[0]

    def on_reset(self) -> None:
        self._left = 0

    def transform(self, action: np.ndarray) -> np.ndarray:
        conv = self.convention
        if self._left == 0 and self.rng.random() < self.rate:
            choices = [conv.gripper_open, conv.gripper_closed]
            self._left, self._value = self.length, float(self.rng.choice(choices))
            # Drawn only with several grippers, so one-gripper streams stay as they were.
            if len(conv.grippers) > 1:
                self._index = conv.grippers[int(self.rng.integers(len(conv.grippers)))]
        if self._left:
            self._left -= 1
            action[..., self._index] = self._value
        return action
