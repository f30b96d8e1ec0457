"""Batched imagined environments: ``make_vec`` and ``ImaginedVectorEnv``.

``ImaginedVectorEnv`` is a Gymnasium 1.x :class:`~gymnasium.vector.VectorEnv` holding one
world model and one batched :class:`~kairos_gym.model.state.WorldState` of ``num_envs`` rows;
every ``step`` is a single batched model call::

    import kairos_gym
    envs = kairos_gym.make_vec(num_envs=16, checkpoint="ckpt/lift")   # or checkpoint=None
    obs, infos = envs.reset(seed=0)               # obs["agentview_image"]: uint8 [16, 64, 64, 3]
    obs, rewards, terminated, truncated, infos = envs.step(envs.action_space.sample())

Each row draws its sampling noise from its own torch generator, seeded like a single
:class:`~kairos_gym.imagined.env.ImaginedEnv`'s, so ``reset(seed=[s0, s1, ...])`` gives the
same frames (up to float rounding of batched matrix products) as single envs reset with
``seed=s0``, ``seed=s1``, ... and a row's trajectory never depends on the other rows.
Rows reset independently: a reset row's real start frame is committed into a fresh memory
row that replaces it in the batch (rows keep their own frame counters). With temporal
compression ``tc > 1`` each row buffers its actions and imagines a latent frame (``tc``
frames) at its own ``tc``-th step, so rows reset at different times step their latent frames
at different env steps; the rows that do are batched into one model call.

Autoreset follows Gymnasium (``metadata["autoreset_mode"]``): ``NEXT_STEP`` (default) resets
a finished row on the next ``step`` (its action is ignored; reward 0, not terminated or
truncated); ``SAME_STEP`` resets it within the step and reports ``infos["final_obs"]`` and
``infos["final_info"]``; ``DISABLED`` leaves it to ``reset(options={"reset_mask": mask})``.

For any other id, :func:`make_vec` delegates to
``gymnasium.make_vec(..., vectorization_mode="sync")``.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from gymnasium.envs.registration import EnvSpec
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space

from kairos_gym.devices import check_device, parse_device
from kairos_gym.envs.common import as_array
from kairos_gym.errors import InvalidAction, ResetNeeded
from kairos_gym.imagined.checkpoint import EnvCheckpoint, checkpoint_episode_limit
from kairos_gym.imagined.core import CoreView, ImaginedCore, StartRequest
from kairos_gym.imagined.env import RENDER_MODES, check_render_mode
from kairos_gym.model.world_model import WorldModel

__all__ = ["IMAGINED_ID", "ImaginedVectorEnv", "make_vec"]

IMAGINED_ID = "kairos_gym/Imagined-v0"
_MODE_NAMES = {
    "next_step": AutoresetMode.NEXT_STEP,
    "same_step": AutoresetMode.SAME_STEP,
    "disabled": AutoresetMode.DISABLED,
}


def make_vec(
    env_id: str = IMAGINED_ID,
    num_envs: int = 16,
    *,
    autoreset_mode: str | AutoresetMode = "next_step",
    **kwargs: Any,
) -> VectorEnv:
    """A vector env of ``num_envs`` copies of ``env_id``, built by ``gymnasium.make_vec``.

    Args:
        env_id: ``"kairos_gym/Imagined-v0"`` builds an :class:`ImaginedVectorEnv` (one model,
            one batched memory) through the id's ``vector_entry_point``; any other id is
            built in ``"sync"`` mode (e.g. ``make_vec("kairos_gym/Robosuite-Lift-v0", 2,
            cameras=("agentview",))``).
        num_envs: number of sub-environments (rows).
        autoreset_mode: ``"next_step"`` (Gymnasium's default), ``"same_step"``, ``"disabled"``
            or a :class:`gymnasium.vector.AutoresetMode`.
        **kwargs: the env's constructor options (for the imagined env: ``checkpoint``,
            ``device``, ``max_episode_steps``, ``sample_steps``, ``render_mode``,
            ``success_threshold``, ``success_hold``, ``done_threshold``). Without ``max_episode_steps`` the
            imagined env truncates at its checkpoint's limit (``gym.make_vec`` itself would
            use the id's registered one).

    Returns:
        The vector env, with ``spec`` set as ``gymnasium.make_vec`` sets it.
    """
    mode = autoreset_mode_of(autoreset_mode)
    if env_id == IMAGINED_ID:
        if "max_episode_steps" not in kwargs:
            kwargs["max_episode_steps"] = checkpoint_episode_limit(kwargs.get("checkpoint"))
        return gym.make_vec(
            env_id,
            num_envs=num_envs,
            vectorization_mode="vector_entry_point",
            autoreset_mode=mode,
            **kwargs,
        )
    return gym.make_vec(
        env_id,
        num_envs=num_envs,
        vectorization_mode="sync",
        vector_kwargs={"autoreset_mode": mode},
        **kwargs,
    )


def autoreset_mode_of(value: str | AutoresetMode) -> AutoresetMode:
    """``"next_step"``/``"same_step"``/``"disabled"``, an enum value string or the enum itself."""
    if isinstance(value, AutoresetMode):
        return value
    if isinstance(value, str):
        if value.lower() in _MODE_NAMES:
            return _MODE_NAMES[value.lower()]
        try:
            return AutoresetMode(value)
        except ValueError:
            pass
    raise ValueError(
        f"autoreset_mode must be one of {sorted(_MODE_NAMES)} or a gymnasium AutoresetMode, "
        f"got {value!r}"
    )


class ImaginedVectorEnv(CoreView, VectorEnv):
    """``num_envs`` imagined episodes stepped by one batched world-model call.

    The ``num_envs``-row view of an :class:`~kairos_gym.imagined.core.ImaginedCore`
    (``envs.core``); it adds Gymnasium's vector conventions (autoreset, batched infos).

    Args:
        checkpoint: directory, loaded :class:`EnvCheckpoint` or ``None`` (embedded model).
        num_envs: number of rows.
        device, max_episode_steps, sample_steps, render_mode, success_threshold,
            success_hold, done_threshold, draw_state: as for :class:`~kairos_gym.imagined.env.ImaginedEnv`.
        autoreset_mode: see the module docstring (default ``NEXT_STEP``).

    Observations are batched dicts ``{key: [num_envs, *shape]}`` (``observation_space`` is
    ``batch_space(single_observation_space, num_envs)``); actions are ``[num_envs, A]``.

    Reset options (all optional): ``reset_mask`` (bool ``[num_envs]``: reset only these rows),
    ``observation`` (a batch ``{key: [num_envs, *shape]}`` of start observations; rows outside
    the mask are ignored) or ``reset_index`` (an int, or ``num_envs`` ints: stored starts).
    """

    def __init__(
        self,
        checkpoint: str | os.PathLike | EnvCheckpoint | None = None,
        num_envs: int = 16,
        *,
        device: torch.device | str | None = None,
        max_episode_steps: int | None = None,
        sample_steps: int | None = None,
        render_mode: str | None = None,
        success_threshold: float | None = None,
        done_threshold: float = 0.5,
        draw_state: bool = True,
        success_hold: int | None = None,
        autoreset_mode: str | AutoresetMode = AutoresetMode.NEXT_STEP,
    ) -> None:
        if (
            isinstance(num_envs, bool)
            or not isinstance(num_envs, (int, np.integer))
            or num_envs < 1
        ):
            raise ValueError(f"num_envs must be a positive integer, got {num_envs!r}")
        check_render_mode(render_mode)
        if device is not None:
            # A loaded model is never moved (the core says so); a path is loaded on the
            # device, which must exist here: checked first, with the reason it does not.
            (parse_device if isinstance(checkpoint, EnvCheckpoint) else check_device)(device)
        self.num_envs = int(num_envs)
        self.autoreset_mode = autoreset_mode_of(autoreset_mode)
        self.core = ImaginedCore(
            checkpoint,
            self.num_envs,
            device=device,
            max_episode_steps=max_episode_steps,
            sample_steps=sample_steps,
            success_threshold=success_threshold,
            success_hold=success_hold,
            done_threshold=done_threshold,
            draw_state=draw_state,
        )
        self.checkpoint: EnvCheckpoint = self.core.checkpoint
        self.model: WorldModel = self.core.model
        self.render_mode = render_mode
        self.instruction = self.core.instruction
        self.control_freq = self.core.control_freq
        self.metadata = {
            "render_modes": list(RENDER_MODES),
            "render_fps": self.control_freq,
            "autoreset_mode": self.autoreset_mode,
        }
        self.single_observation_space = self.core.observation_space
        self.single_action_space = self.core.action_space
        self.observation_space = batch_space(self.single_observation_space, self.num_envs)
        self.action_space = batch_space(self.single_action_space, self.num_envs)

    @property
    def spec(self) -> EnvSpec | None:
        """The spec ``gym.make_vec`` / :func:`make_vec` set, its ``max_episode_steps`` the
        limit this env truncates at (``None`` when built directly)."""
        value = self.__dict__.get("_env_spec")
        if value is None or value.max_episode_steps == self.max_episode_steps:
            return value
        return dataclasses.replace(value, max_episode_steps=self.max_episode_steps)

    @spec.setter
    def spec(self, value: EnvSpec | None) -> None:
        self.__dict__["_env_spec"] = value

    # --- the Gymnasium VectorEnv API ---
    def reset(
        self,
        *,
        seed: int | Sequence[int | None] | None = None,
        options: dict[str, Any] | None = None,
    ) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        """Reset every row (or the rows of ``options["reset_mask"]``).

        Args:
            seed: ``None``; an int ``s`` (row ``i`` gets ``s + i``, as in Gymnasium); or a list of
                ``num_envs`` ints or ``None``. Row ``i`` seeded with ``s`` starts exactly like
                ``ImaginedEnv.reset(seed=s)``.
            options: see the class docstring.

        Returns:
            ``(observations {key: [num_envs, ...]}, infos)``: infos in Gymnasium's dict-of-arrays
            form with ``_key`` masks (``success``, ``is_success``, ``instruction`` for the reset rows).

        Raises:
            ValueError / TypeError / ShapeError: bad seeds or options; nothing changes.
            ResetNeeded: a masked reset before the first full reset, or the env is closed.
        """
        self._require_open()
        seeds = self._seed_list(seed)
        mask, request = self._parse_options(options)
        if not self.core.started.all() and not mask.all():
            raise ResetNeeded("reset every row (no reset_mask) before resetting some of them")
        if isinstance(seed, (int, np.integer)) and not isinstance(seed, bool):
            super().reset(seed=int(seed))
        rows = np.flatnonzero(mask)
        self.core.start(rows, seeds=[seeds[i] for i in rows], request=_subset(request, rows))
        infos: dict[str, Any] = {}
        for i in rows:
            infos = self._add_info(infos, self.core.reset_info(), int(i))
        return self.core.observations(), infos

    def step(
        self, actions: Any
    ) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        """Step every row in one batched model call (autoresetting rows as the mode says).

        Args:
            actions: ``[num_envs, A]`` inside the single action space's bounds (rows that the
                ``NEXT_STEP`` mode resets in this call are ignored, as in Gymnasium).

        Returns:
            ``(obs, rewards float64 [N], terminated bool [N], truncated bool [N], infos)``;
            infos hold ``success``, ``is_success``, ``success_prob``, ``done_prob``,
            ``instruction`` per row (with ``_key`` masks), plus ``final_obs``/``final_info``
            in ``SAME_STEP`` mode.

        Raises:
            ResetNeeded: before ``reset``, after ``close``, or (``DISABLED``) a finished row.
            InvalidAction: wrong shape or dtype, NaN/inf, out of bounds (names the row);
                nothing changes.
        """
        self._require_open()
        if not self.core.started.all():
            raise ResetNeeded("call reset() before step()")
        n, mode = self.num_envs, self.autoreset_mode
        ended = self.core.ended
        if mode == AutoresetMode.DISABLED and ended.any():
            raise ResetNeeded(
                f"env(s) {np.flatnonzero(ended).tolist()} have ended; autoreset is "
                "disabled: call reset(options={'reset_mask': mask}) for them first"
            )
        pending = ended if mode == AutoresetMode.NEXT_STEP else np.zeros(n, dtype=bool)
        stepping = np.flatnonzero(~pending)
        acts = self._check_actions(actions, stepping)

        rewards = np.zeros(n, dtype=np.float64)
        terminated = np.zeros(n, dtype=bool)
        truncated = np.zeros(n, dtype=bool)
        step_infos: dict[int, dict[str, Any]] = {}
        if stepping.size:
            result = self.core.step(acts, stepping, checked=True)
            rewards[stepping] = result.reward
            terminated[stepping] = result.terminated
            truncated[stepping] = result.truncated
            step_infos = {int(i): result.info(j) for j, i in enumerate(stepping)}
        finished = terminated | truncated
        resetting = pending | (finished if mode == AutoresetMode.SAME_STEP else False)
        final_rows = np.flatnonzero(resetting & finished)
        final_obs = self.core.observations(final_rows) if final_rows.size else {}
        rows = np.flatnonzero(resetting)
        if rows.size:
            self.core.start(rows)

        # Infos in SyncVectorEnv's order and layout, so either vector env reads the same.
        infos: dict[str, Any] = {}
        for i in range(n):
            if resetting[i]:
                if i in final_rows:
                    j = int(np.flatnonzero(final_rows == i)[0])
                    last = {k: v[j] for k, v in final_obs.items()}
                    infos = self._add_info(
                        infos, {"final_obs": last, "final_info": step_infos[i]}, i
                    )
                infos = self._add_info(infos, self.core.reset_info(), i)
            else:
                infos = self._add_info(infos, step_infos[i], i)
        return self.core.observations(), rewards, terminated, truncated, infos

    def render(self) -> tuple[np.ndarray, ...] | None:
        """The last frame of every row (uint8 ``[H, W, 3]`` each); ``None`` unless ``rgb_array``."""
        if self.render_mode != "rgb_array":
            return None
        self._require_open()
        if not self.core.started.all():
            raise ResetNeeded("call reset() before render()")
        frames = self.core.observations()[self.core.image_key]
        return tuple(frames)

    def close_extras(self, **kwargs: Any) -> None:
        """Drop the batched memory; the (possibly shared) model stays loaded."""
        self.core.close()

    # --- attribute access as SyncVectorEnv offers it (rows share one object) ---
    def get_attr(self, name: str) -> tuple[Any, ...]:
        """``getattr(self, name)`` once per row (the rows share this object's attributes)."""
        value = getattr(self, name)
        return tuple(value for _ in range(self.num_envs))

    def set_attr(self, name: str, values: Any) -> None:
        """Set a shared attribute; a list/tuple must hold ``num_envs`` equal values.

        Raises:
            ValueError: per-row values that differ (rows cannot hold their own attributes).
        """
        if isinstance(values, (list, tuple)):
            if len(values) != self.num_envs:
                raise ValueError(
                    f"set_attr needs {self.num_envs} values (one per row), got {len(values)}"
                )
            if any(not _same(v, values[0]) for v in values):
                raise ValueError(
                    f"the rows of an ImaginedVectorEnv share one {name!r}; "
                    f"per-row values must all be equal, got {values!r}"
                )
            values = values[0]
        setattr(self, name, values)

    @property
    def episode_steps(self) -> np.ndarray:
        """``[num_envs]`` steps taken in each row's current episode (a copy)."""
        return self.core.steps

    def __repr__(self) -> str:
        return f"ImaginedVectorEnv({str(self.checkpoint.path)!r}, num_envs={self.num_envs})"

    # --- helpers ---
    def _require_open(self) -> None:
        if self.closed:
            raise ResetNeeded("the environment is closed")

    def _seed_list(self, seed: int | Sequence[int | None] | None) -> list[int | None]:
        n = self.num_envs
        if seed is None:
            return [None] * n
        if isinstance(seed, (int, np.integer)) and not isinstance(seed, bool):
            return [int(seed) + i for i in range(n)]
        if isinstance(seed, (str, bytes)) or not isinstance(seed, Sequence):
            raise TypeError(
                f"seed must be None, an int or a list of {n} ints/None, got {type(seed).__name__}"
            )
        if len(seed) != n:
            raise ValueError(f"seed lists need one entry per env ({n}), got {len(seed)}")
        for s in seed:
            if s is not None and (
                isinstance(s, bool) or not isinstance(s, (int, np.integer)) or s < 0
            ):
                raise ValueError(f"seeds must be non-negative ints or None, got {list(seed)!r}")
        return [None if s is None else int(s) for s in seed]

    def _parse_options(self, options: dict[str, Any] | None) -> tuple[np.ndarray, StartRequest]:
        """``(row mask, the start request for all num_envs rows)``; validates everything."""
        n = self.num_envs
        mask = np.ones(n, dtype=bool)
        if options is None:
            return mask, StartRequest()
        if not isinstance(options, dict):
            raise TypeError(f"reset options must be a dict or None, got {type(options).__name__}")
        if "reset_mask" in options:
            mask = options["reset_mask"]
            if not isinstance(mask, np.ndarray) or mask.dtype != np.bool_:
                raise TypeError(f"options['reset_mask'] must be a numpy bool array, got {mask!r}")
            if mask.shape != (n,):
                raise ValueError(f"options['reset_mask'] must have shape ({n},), got {mask.shape}")
            if not mask.any():
                raise ValueError("options['reset_mask'] must select at least one env")
            mask = mask.copy()
        request = self.core.parse_start(
            options, n, batched=True, mask=mask, handled=("reset_mask",)
        )
        return mask, request

    def _check_actions(self, actions: Any, rows: np.ndarray) -> np.ndarray:
        """Float32 actions of ``rows`` (``[len(rows), A]``) from a ``[num_envs, A]`` batch."""
        arr = as_array(actions, "actions")
        expected = (self.num_envs, *self.single_action_space.shape)
        if arr.dtype.kind not in "fiu":
            raise InvalidAction(
                f"actions must be a real-valued array of shape {expected}, got dtype {arr.dtype}"
            )
        if arr.shape != expected:
            raise InvalidAction(
                f"actions must have shape {expected} (num_envs={self.num_envs} rows of "
                f"{self.single_action_space}), got shape {arr.shape}"
            )
        return self.core.check_actions(arr[rows], rows.size, labels=rows)


def _same(a: Any, b: Any) -> bool:
    """``a is b`` or equal, for values whose ``==`` may be element-wise (arrays)."""
    if a is b:
        return True
    try:
        return bool(np.all(a == b))
    except (ValueError, TypeError):
        return False


def _subset(request: StartRequest, rows: np.ndarray) -> StartRequest:
    """The entries of a per-env request for ``rows``."""
    return StartRequest(
        observations=None
        if request.observations is None
        else tuple(request.observations[i] for i in rows),
        indices=None if request.indices is None else tuple(request.indices[i] for i in rows),
    )
