"""Option validation and action checking shared by kairos-gym's environments.

Every environment takes the same constructor options (``task``, ``cameras``, ``image_size``,
``max_episode_steps``, ``terminate_on_success``, ``render_mode``) and checks every action
against a float32 ``gymnasium.spaces.Box`` before touching its simulator. This module holds
the single implementation of both, so the environments accept the same inputs and raise the
same errors:

- :func:`image_hw` turns ``image_size`` (an int or an ``(H, W)`` pair) into ``(H, W)``.
- :func:`validate_options` checks the constructor options and returns them normalised as
  :class:`EnvOptions`; :meth:`EnvOptions.store_on` sets them as the environment's attributes.
- :func:`check_action` validates an action against a ``Box`` and returns it as float32,
  clipped to the bounds; errors are :class:`kairos_gym.errors.InvalidAction` naming the
  expected space (shape, bounds) and the value received.
- :class:`EpisodeLimit` gives ``max_episode_steps`` one meaning whether an env is built
  directly, by ``gym.make`` or by ``gym.make_vec``, and refuses a limit that is not a
  positive integer however it is set (``env.max_episode_steps = -5``, ``set_attr``).
- :func:`check_reset_options` refuses reset options an env does not take (the real envs
  take none; the imagined env its own), as the imagined env does.

Nothing here imports a simulator.
"""

from __future__ import annotations

import os
import sys
import warnings
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium.envs.registration import EnvSpec

from kairos_gym.errors import InvalidAction

__all__ = [
    "EnvOptions",
    "EpisodeLimit",
    "as_array",
    "check_action",
    "check_reset_options",
    "image_hw",
    "positive_limit",
    "validate_options",
]


class EpisodeLimit:
    """Mixin: ``max_episode_steps`` means the same thing however the env was built.

    It is always "the episode is truncated after this many steps":

    - built directly (``RobosuiteEnv("Lift", max_episode_steps=n)``), the env truncates its
      episodes itself, at ``n`` or its default (:meth:`default_episode_limit`);
    - built by ``gym.make(id, max_episode_steps=n)``, Gymnasium wraps the env in its
      ``TimeLimit(n)`` (the registered default when ``n`` is not given: every kairos-gym id
      registers one). Two limits would let the shorter win, so the env gives up its own
      truncation when ``gym.make`` hands it its spec, and ``TimeLimit`` alone truncates;
    - vector envs take ``max_episode_steps`` as a constructor argument (``gym.make_vec``
      passes it, or the registered default).

    The mixin must come before ``gymnasium.Env`` in the bases; the class provides a settable
    ``max_episode_steps`` (``None``: no truncation of its own) and may override
    :meth:`default_episode_limit`.
    """

    @property
    def max_episode_steps(self) -> int | None:
        """Steps after which the env truncates its episodes itself (``None``: never)."""
        return self.__dict__.get("_max_episode_steps")

    @max_episode_steps.setter
    def max_episode_steps(self, value: int | None) -> None:
        # Checked here, not only in the constructor: a limit of -5 set later (by
        # ``envs.set_attr``) would otherwise truncate every episode after one step.
        self.__dict__["_max_episode_steps"] = positive_limit(value)

    def default_episode_limit(self) -> int | None:
        """The limit the env keeps when built directly (default: ``max_episode_steps``)."""
        return self.max_episode_steps

    @property
    def spec(self) -> EnvSpec | None:
        """The env's spec (set by ``gym.make``), or ``None`` when built directly."""
        return self.__dict__.get("_env_spec")

    @spec.setter
    def spec(self, value: EnvSpec | None) -> None:
        self.__dict__["_env_spec"] = value
        registered = gym.registry.get(value.id) if isinstance(value, EnvSpec) else None
        # gym.make assigns a spec without a limit right before it wraps the env in
        # TimeLimit(its max_episode_steps, or the registered one): that wrapper truncates.
        if (
            registered is None
            or registered.max_episode_steps is None
            or value.max_episode_steps is not None
        ):
            return
        own = self.default_episode_limit()
        if own is not None and own != registered.max_episode_steps and not _limit_given_to_make():
            warnings.warn(
                f"{value.id} is registered with max_episode_steps={registered.max_episode_steps}, "
                f"but this env's own limit is {own}: gym.make truncates at its "
                f"max_episode_steps argument, else at {registered.max_episode_steps}; pass "
                f"max_episode_steps={own} to keep the env's limit",
                stacklevel=3,
            )
        self.max_episode_steps = None


def _limit_given_to_make() -> bool:
    """Whether the ``gym.make`` call now assigning an env its spec was given ``max_episode_steps``.

    Gymnasium hands the env a spec without a limit either way, so the caller's choice is
    visible only as ``make``'s own argument, in its frame up the stack. False where no such
    frame is found (another caller, a Gymnasium laid out otherwise): the warning it guards is
    then shown, as before.
    """
    registration = os.path.join("gymnasium", "envs", "registration.py")
    frame = sys._getframe(1)
    while frame is not None:
        code = frame.f_code
        if code.co_name == "make" and code.co_filename.endswith(registration):
            return frame.f_locals.get("max_episode_steps") is not None
        frame = frame.f_back
    return False


def positive_limit(value: Any, name: str = "max_episode_steps") -> int | None:
    """``value`` as a step limit: a positive integer, or ``None`` for no limit.

    Raises:
        ValueError: anything else (bools, floats, strings, zero and negative numbers; the
            ``-1`` of ``gym.make(id, max_episode_steps=-1)`` never reaches an env).
    """
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be a positive integer or None, got {value!r}")
    return int(value)


def check_reset_options(
    options: Any, family: str, accepted: Collection[str] = ()
) -> dict[str, Any]:
    """Refuse reset options an env does not take; returns them as a dict (``{}`` for None).

    Gymnasium's vector envs pass what is left of their options (often ``{}``) to every
    sub-env, so an empty dict is always accepted.

    Raises:
        TypeError: options that are not a dict or None.
        ValueError: unknown keys, naming the ones the env takes.
    """
    if options is None:
        return {}
    if not isinstance(options, Mapping):
        raise TypeError(f"reset options must be a dict or None, got {type(options).__name__}")
    unknown = sorted(str(k) for k in options if k not in accepted)
    if unknown:
        takes = f"takes {sorted(accepted)}" if accepted else "takes no reset options (only seed)"
        raise ValueError(f"unknown reset option(s) {unknown}; the {family} env {takes}")
    return dict(options)


def as_array(value: Any, what: str = "action") -> np.ndarray:
    """``value`` as a numpy array: lists, numpy arrays and torch tensors (detached and moved
    to the CPU, so a policy's output that requires grad is accepted).

    Raises:
        InvalidAction: a ragged nested list, or anything numpy cannot turn into an array.
    """
    if hasattr(value, "detach") and hasattr(value, "cpu") and hasattr(value, "numpy"):
        try:
            return value.detach().cpu().numpy()
        except (RuntimeError, TypeError) as exc:  # e.g. a bfloat16 tensor
            try:
                return value.detach().cpu().float().numpy()
            except (RuntimeError, TypeError):
                raise InvalidAction(f"{what} tensor cannot be read as an array ({exc})") from None
    try:
        return np.asarray(value)
    except (ValueError, TypeError, RuntimeError, OverflowError) as exc:
        raise InvalidAction(
            f"{what} must be a rectangular array of numbers, got {type(value).__name__} ({exc})"
        ) from None


def image_hw(image_size: int | Sequence[int]) -> tuple[int, int]:
    """``(height, width)`` of an ``image_size`` option.

    Args:
        image_size: the side of square images, or an ``(H, W)`` pair.

    Raises:
        ValueError: not an int or a pair (strings and bools are refused), or a side < 1.
    """
    def is_int(v: Any) -> bool:
        return isinstance(v, (int, np.integer)) and not isinstance(v, bool)

    if is_int(image_size):
        h = w = int(image_size)
    elif (
        isinstance(image_size, Sequence)
        and not isinstance(image_size, (str, bytes))
        and len(image_size) == 2
        and all(is_int(v) for v in image_size)
    ):
        h, w = (int(v) for v in image_size)
    else:
        raise ValueError(f"image_size must be an int or an (H, W) pair, got {image_size!r}")
    if h < 1 or w < 1:
        raise ValueError(f"image_size must be positive, got {image_size!r}")
    return h, w


@dataclass(frozen=True)
class EnvOptions:
    """The validated, normalised constructor options common to every environment.

    Attributes:
        task: the task name (a key of the environment's task table).
        cameras: distinct camera names, in the caller's order.
        image_hw: ``(height, width)`` of every camera image.
        max_episode_steps: truncation length, >= 1.
        terminate_on_success: end the episode on the first success.
        render_mode: ``None`` or one of the environment's render modes.
    """

    task: str
    cameras: tuple[str, ...]
    image_hw: tuple[int, int]
    max_episode_steps: int
    terminate_on_success: bool
    render_mode: str | None

    def store_on(self, env: Any) -> None:
        """Set every option as the attribute of the same name on ``env``."""
        env.task = self.task
        env.cameras = self.cameras
        env.image_hw = self.image_hw
        env.max_episode_steps = self.max_episode_steps
        env.terminate_on_success = self.terminate_on_success
        env.render_mode = self.render_mode


def validate_options(
    *,
    family: str,
    task: str,
    tasks: Collection[str],
    cameras: Sequence[str],
    image_size: int | Sequence[int],
    max_episode_steps: int,
    terminate_on_success: bool,
    render_mode: str | None,
    render_modes: Sequence[str],
    known_cameras: Sequence[str] | None = None,
) -> EnvOptions:
    """Check an environment's constructor options and return them normalised.

    Checks run in this order: task, cameras (type, then known names when ``known_cameras``
    is given, then repeats), render mode, step limit, image size.

    Args:
        family: the environment family named in messages (``"robosuite"``, ``"ALOHA"``).
        task: requested task; must be in ``tasks``.
        tasks: the supported task names.
        cameras: camera names (a tuple or list; a single string is refused).
        image_size: see :func:`image_hw`.
        max_episode_steps: truncation length (already resolved from any default).
        terminate_on_success: stored as a bool.
        render_mode: ``None`` or one of ``render_modes``.
        render_modes: the render modes the environment supports.
        known_cameras: the camera names the environment has, when known before building the
            simulator; ``None`` leaves that check to the caller.

    Raises:
        TypeError: ``cameras`` is a string.
        ValueError: unknown task, camera or render mode; repeated camera; step limit < 1;
            bad image size.
    """
    if not isinstance(task, str) or task not in tasks:
        raise ValueError(f"unknown {family} task {task!r}; choose one of {sorted(tasks)}")
    if isinstance(cameras, str):
        raise TypeError(f"cameras must be a tuple of camera names, got the string {cameras!r}")
    if not isinstance(cameras, Sequence) or not all(isinstance(c, str) for c in cameras):
        raise TypeError(f"cameras must be a tuple of camera names, got {cameras!r}")
    cams = tuple(cameras)
    if known_cameras is not None:
        known = tuple(known_cameras)
        for cam in cams:
            if cam not in known:
                raise ValueError(f"unknown camera {cam!r} for {family}; choose from {known}")
    if len(set(cams)) != len(cams):
        raise ValueError(f"cameras must not repeat a name, got {cams!r}")
    if render_mode is not None and render_mode not in render_modes:
        raise ValueError(
            f"render_mode must be None or one of {list(render_modes)}, got {render_mode!r}"
        )
    if (
        isinstance(max_episode_steps, bool)
        or not isinstance(max_episode_steps, (int, np.integer))
        or max_episode_steps < 1
    ):
        raise ValueError(f"max_episode_steps must be positive, got {max_episode_steps!r}")
    return EnvOptions(
        task=task,
        cameras=cams,
        image_hw=image_hw(image_size),
        max_episode_steps=int(max_episode_steps),
        terminate_on_success=bool(terminate_on_success),
        render_mode=render_mode,
    )


def _format_bounds(low: np.ndarray, high: np.ndarray, bad: np.ndarray) -> str:
    """``[lo, hi]`` when every entry shares the bounds, else the offending entries' bounds."""
    if low.size and np.all(low == low.flat[0]) and np.all(high == high.flat[0]):
        return f"[{float(low.flat[0]):g}, {float(high.flat[0]):g}]"
    return f"low={low[bad].tolist()} high={high[bad].tolist()}"


def check_action(
    action: Any,
    space: gym.spaces.Box,
    *,
    tolerance: float = 1e-5,
    description: str | None = None,
) -> np.ndarray:
    """Validate ``action`` against ``space`` and return it as float32, clipped to the bounds.

    Values up to ``tolerance`` outside the bounds (float rounding in a caller's own clipping)
    are accepted and clipped; anything further out is an error.

    Args:
        action: anything ``np.asarray`` accepts, or a torch tensor (see :func:`as_array`);
            any real dtype (float, int, uint).
        space: the environment's action space.
        tolerance: how far outside ``[low, high]`` a value may lie before it is refused.
        description: how messages name the space; defaults to ``str(space)`` (pass a short
            text when the space's repr spans several lines).

    Returns:
        A new float32 array of ``space.shape`` inside ``[space.low, space.high]``.

    Raises:
        InvalidAction: a ragged list, non-real dtype, wrong shape, NaN/inf, or a value outside
            the bounds beyond ``tolerance``; the message names the expected space and the
            value given.
    """
    desc = str(space) if description is None else description
    arr = as_array(action)
    if arr.dtype.kind not in "fiu":
        raise InvalidAction(f"action must be a real-valued array for {desc}, got dtype {arr.dtype}")
    if arr.shape != space.shape:
        raise InvalidAction(
            f"action must have shape {space.shape} for {desc}, got shape {arr.shape}"
        )
    act = arr.astype(np.float32)
    if not np.all(np.isfinite(act)):
        raise InvalidAction(f"action contains NaN or inf: {act.tolist()}")
    low = np.asarray(space.low, dtype=np.float32)
    high = np.asarray(space.high, dtype=np.float32)
    bad = np.flatnonzero((act < low - tolerance) | (act > high + tolerance))
    if bad.size:
        flat = act.reshape(-1)
        raise InvalidAction(
            f"action entries {bad.tolist()} = {flat[bad].tolist()} are outside the bounds "
            f"{_format_bounds(low.reshape(-1), high.reshape(-1), bad)} of {desc}, "
            f"got {act.tolist()}"
        )
    return np.clip(act, low, high).astype(np.float32, copy=False)
