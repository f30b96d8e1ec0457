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
row that replaces it in the batch (rows keep their own frame counters).

Autoreset follows Gymnasium (``metadata["autoreset_mode"]``): ``NEXT_STEP`` (default) resets
a finished row on the next ``step`` (its action is ignored; reward 0, not terminated or
truncated); ``SAME_STEP`` resets it within the step and reports ``infos["final_obs"]`` and
``infos["final_info"]``; ``DISABLED`` leaves it to ``reset(options={"reset_mask": mask})``.

For any other id, :func:`make_vec` delegates to
``gymnasium.make_vec(..., vectorization_mode="sync")``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from gymnasium.utils import seeding
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space, create_empty_array

from kairos_gym.envs.common import check_action
from kairos_gym.errors import InvalidAction, ResetNeeded, ShapeError
from kairos_gym.imagined.checkpoint import EnvCheckpoint
from kairos_gym.imagined.env import (
    RENDER_MODES,
    check_observation,
    check_render_mode,
    check_reset_index,
    check_threshold,
    draw_start,
    episode_limit,
    observations_from_outputs,
    resolve_checkpoint,
    sampler_settings,
    stored_observation,
)
from kairos_gym.model.sampler import SamplerSettings
from kairos_gym.model.state import WorldState
from kairos_gym.model.world_model import WorldModel

__all__ = ["IMAGINED_ID", "ImaginedVectorEnv", "make_vec", "observe_rows", "step_rows"]

IMAGINED_ID = "kairos_gym/Imagined-v0"
_MODE_NAMES = {
    "next_step": AutoresetMode.NEXT_STEP,
    "same_step": AutoresetMode.SAME_STEP,
    "disabled": AutoresetMode.DISABLED,
}
VECTOR_RESET_OPTIONS = ("observation", "reset_index", "reset_mask")


def make_vec(
    env_id: str = IMAGINED_ID,
    num_envs: int = 16,
    *,
    autoreset_mode: str | AutoresetMode = "next_step",
    **kwargs: Any,
) -> VectorEnv:
    """A vector env of ``num_envs`` copies of ``env_id``.

    Args:
        env_id: ``"kairos_gym/Imagined-v0"`` builds an :class:`ImaginedVectorEnv` (one model,
            one batched memory); any other id goes to ``gymnasium.make_vec`` in ``"sync"``
            mode (e.g. ``make_vec("kairos_gym/Robosuite-Lift-v0", 2, cameras=("agentview",))``).
        num_envs: number of sub-environments (rows).
        autoreset_mode: ``"next_step"`` (Gymnasium's default), ``"same_step"``, ``"disabled"``
            or a :class:`gymnasium.vector.AutoresetMode`.
        **kwargs: the env's constructor options (for the imagined env: ``checkpoint``,
            ``device``, ``max_episode_steps``, ``sample_steps``, ``render_mode``,
            ``success_threshold``, ``done_threshold``).
    """
    mode = autoreset_mode_of(autoreset_mode)
    if env_id == IMAGINED_ID:
        return ImaginedVectorEnv(num_envs=num_envs, autoreset_mode=mode, **kwargs)
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


@torch.no_grad()
def observe_rows(
    model: WorldModel, frames: torch.Tensor, generators: Sequence[torch.Generator]
) -> WorldState:
    """Fresh memory rows that each committed one real frame (``WorldModel.observe``, per-row noise).

    Args:
        frames: uint8 ``[R, H, W, 3]``, one start frame per row.
        generators: ``R`` torch generators; row ``i``'s context noise comes from ``generators[i]``,
            exactly the draw ``model.observe(init_state(1), frames[i, None, None], generator=g)``
            makes.

    Returns:
        A :class:`WorldState` of ``R`` rows at frame index 1.
    """
    if len(generators) != frames.shape[0]:
        raise ValueError(f"{frames.shape[0]} frames but {len(generators)} generators")
    return model.observe(model.init_state(len(generators)), frames[:, None], generator=list(generators))


@torch.no_grad()
def step_rows(
    model: WorldModel,
    state: WorldState,
    actions: torch.Tensor,
    generators: Sequence[torch.Generator],
    settings: SamplerSettings,
) -> tuple[torch.Tensor, dict[str, torch.Tensor], WorldState]:
    """``WorldModel.step`` over ``R`` rows with each row's noise drawn from its own generator.

    Row ``i`` consumes ``generators[i]`` exactly as ``model.step`` with batch size 1 would
    (initial noise ``[1, C, h, w]``, then the commit noise), so a batched row reproduces a
    single env's trajectory and never depends on the other rows.

    Args:
        state: memory of ``R`` rows.
        actions: float32 ``[R, A]``, validated by the caller.
        generators: ``R`` torch generators.
        settings: sampler settings.

    Returns:
        ``(frames uint8 [R, H, W, 3], outcomes {reward, success, done[, state]} [R(, S)],
        new state)``.
    """
    rows = state.batch_size
    if len(generators) != rows:
        raise ValueError(f"a state of {rows} rows but {len(generators)} generators")
    return model.step(state, actions, generator=list(generators), settings=settings)


class ImaginedVectorEnv(VectorEnv):
    """``num_envs`` imagined episodes stepped by one batched world-model call.

    Args:
        checkpoint: directory, loaded :class:`EnvCheckpoint` or ``None`` (embedded model).
        num_envs: number of rows.
        device, max_episode_steps, sample_steps, render_mode, success_threshold,
            done_threshold: as for :class:`~kairos_gym.imagined.env.ImaginedEnv`.
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
        success_threshold: float = 0.5,
        done_threshold: float = 0.5,
        autoreset_mode: str | AutoresetMode = AutoresetMode.NEXT_STEP,
    ) -> None:
        if (
            isinstance(num_envs, bool)
            or not isinstance(num_envs, (int, np.integer))
            or num_envs < 1
        ):
            raise ValueError(f"num_envs must be a positive integer, got {num_envs!r}")
        check_render_mode(render_mode)
        self.num_envs = int(num_envs)
        self.autoreset_mode = autoreset_mode_of(autoreset_mode)
        self.success_threshold = check_threshold("success_threshold", success_threshold)
        self.done_threshold = check_threshold("done_threshold", done_threshold)
        self.checkpoint = resolve_checkpoint(checkpoint, device)
        self.model: WorldModel = self.checkpoint.model
        self.settings = sampler_settings(self.model, sample_steps)
        self.max_episode_steps = episode_limit(self.checkpoint, max_episode_steps)
        spec = self.checkpoint.env_spec
        self.render_mode = render_mode
        self.instruction = spec.instruction
        self.control_freq = spec.control_freq
        self.metadata = {
            "render_modes": list(RENDER_MODES),
            "render_fps": spec.control_freq,
            "autoreset_mode": self.autoreset_mode,
        }
        self.single_observation_space = spec.observation_space
        self.single_action_space = spec.action_space
        self.observation_space = batch_space(self.single_observation_space, self.num_envs)
        self.action_space = batch_space(self.single_action_space, self.num_envs)

        n = self.num_envs
        self._rngs = [seeding.np_random()[0] for _ in range(n)]
        self._generators = [torch.Generator(device=self.model.device) for _ in range(n)]
        self._state: WorldState | None = None
        self._obs: dict[str, np.ndarray] = create_empty_array(
            self.single_observation_space, n, fn=np.zeros
        )
        self._steps = np.zeros(n, dtype=np.int64)
        self._ended = np.zeros(n, dtype=bool)  # finished rows awaiting an (auto)reset

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
            form with ``_key`` masks (``success``, ``instruction`` for the reset rows).

        Raises:
            ValueError / TypeError / ShapeError: bad seeds or options; nothing changes.
            ResetNeeded: a masked reset before the first full reset, or the env is closed.
        """
        self._require_open()
        seeds = self._seed_list(seed)
        mask, given, indices = self._parse_options(options)
        if self._state is None and not mask.all():
            raise ResetNeeded("reset every row (no reset_mask) before resetting some of them")
        if isinstance(seed, (int, np.integer)) and not isinstance(seed, bool):
            super().reset(seed=int(seed))
        rows = np.flatnonzero(mask)
        starts, fresh = self._start_rows(rows, [seeds[i] for i in rows], given, indices)
        self._state = (
            fresh
            if self._state is None or mask.all()
            else self._state.put_rows(rows.tolist(), fresh)
        )
        for key, value in starts.items():
            self._obs[key][rows] = value
        self._steps[rows] = 0
        self._ended[rows] = False
        infos: dict[str, Any] = {}
        for i in rows:
            infos = self._add_info(infos, self._reset_info(), int(i))
        return self._copy_obs(), infos

    def step(
        self, actions: Any
    ) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        """Step every row in one batched model call (autoresetting rows as the mode says).

        Args:
            actions: ``[num_envs, A]`` inside the single action space's bounds (rows that the
                ``NEXT_STEP`` mode resets in this call are ignored, as in Gymnasium).

        Returns:
            ``(obs, rewards float64 [N], terminated bool [N], truncated bool [N], infos)``;
            infos hold ``success``, ``success_prob``, ``done_prob``, ``instruction`` per row
            (with ``_key`` masks), plus ``final_obs``/``final_info`` in ``SAME_STEP`` mode.

        Raises:
            ResetNeeded: before ``reset``, after ``close``, or (``DISABLED``) a finished row.
            InvalidAction: wrong shape or dtype, NaN/inf, out of bounds (names the row);
                nothing changes.
        """
        self._require_open()
        if self._state is None:
            raise ResetNeeded("call reset() before step()")
        n, mode = self.num_envs, self.autoreset_mode
        if mode == AutoresetMode.DISABLED and self._ended.any():
            raise ResetNeeded(
                f"env(s) {np.flatnonzero(self._ended).tolist()} have ended; autoreset is "
                "disabled: call reset(options={'reset_mask': mask}) for them first"
            )
        pending = self._ended.copy() if mode == AutoresetMode.NEXT_STEP else np.zeros(n, dtype=bool)
        stepping = np.flatnonzero(~pending)
        acts = self._check_actions(actions, stepping)

        obs = {k: v.copy() for k, v in self._obs.items()}
        rewards = np.zeros(n, dtype=np.float64)
        terminated = np.zeros(n, dtype=bool)
        truncated = np.zeros(n, dtype=bool)
        steps = self._steps.copy()
        step_infos: dict[int, dict[str, Any]] = {}
        state = self._state
        if stepping.size:
            everyone = stepping.size == n
            generators = [self._generators[i] for i in stepping]
            saved = [g.get_state() for g in generators]
            try:
                sub = state if everyone else state.select(stepping.tolist())
                frames, out, sub = step_rows(
                    self.model,
                    sub,
                    torch.from_numpy(acts[stepping]).to(self.model.device),
                    generators,
                    self.settings,
                )
            except BaseException:
                # Leave every noise stream where it was, so a failed call changes nothing.
                for g, s in zip(generators, saved):
                    g.set_state(s)
                raise
            state = sub if everyone else state.put_rows(stepping.tolist(), sub)
            new = observations_from_outputs(self.checkpoint, frames, out)
            for key, value in new.items():
                obs[key][stepping] = value
            steps[stepping] += 1
            rewards[stepping] = out["reward"].double().cpu().numpy()
            success = out["success"].double().cpu().numpy()
            done = out["done"].double().cpu().numpy()
            terminated[stepping] = done > self.done_threshold
            if self.max_episode_steps is not None:
                truncated[stepping] = (steps[stepping] >= self.max_episode_steps) & ~terminated[
                    stepping
                ]
            for j, i in enumerate(stepping):
                step_infos[int(i)] = {
                    "success": bool(success[j] > self.success_threshold),
                    "success_prob": float(success[j]),
                    "done_prob": float(done[j]),
                    "instruction": self.instruction,
                }
        ended = terminated | truncated
        resetting = pending | (
            ended if mode == AutoresetMode.SAME_STEP else np.zeros(n, dtype=bool)
        )
        final_obs = {
            int(i): {k: obs[k][i].copy() for k in obs} for i in np.flatnonzero(resetting & ended)
        }
        rows = np.flatnonzero(resetting)
        if rows.size:
            starts, fresh = self._start_rows(rows, [None] * rows.size, None, None)
            state = state.put_rows(rows.tolist(), fresh)
            for key, value in starts.items():
                obs[key][rows] = value
            steps[rows] = 0

        # Infos in SyncVectorEnv's order and layout, so either vector env reads the same.
        infos: dict[str, Any] = {}
        for i in range(n):
            if resetting[i]:
                if i in final_obs:
                    infos = self._add_info(
                        infos, {"final_obs": final_obs[i], "final_info": step_infos[i]}, i
                    )
                infos = self._add_info(infos, self._reset_info(), i)
            else:
                infos = self._add_info(infos, step_infos[i], i)

        self._state, self._obs, self._steps = state, obs, steps
        self._ended = ended & ~resetting
        return self._copy_obs(), rewards, terminated, truncated, infos

    def render(self) -> tuple[np.ndarray, ...] | None:
        """The last frame of every row (uint8 ``[H, W, 3]`` each); ``None`` unless ``rgb_array``."""
        if self.render_mode != "rgb_array":
            return None
        self._require_open()
        if self._state is None:
            raise ResetNeeded("call reset() before render()")
        frames = self._obs[self.checkpoint.image_key]
        return tuple(frame.copy() for frame in frames)

    def close_extras(self, **kwargs: Any) -> None:
        """Drop the batched memory; the (possibly shared) model stays loaded."""
        self._state = None

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
            if any(v is not values[0] and v != values[0] for v in values):
                raise ValueError(
                    f"the rows of an ImaginedVectorEnv share one {name!r}; "
                    f"per-row values must all be equal, got {values!r}"
                )
            values = values[0]
        setattr(self, name, values)

    @property
    def world_state(self) -> WorldState | None:
        """The batched memory (``num_envs`` rows; each row has its own frame counter ``t``)."""
        return self._state

    @property
    def episode_steps(self) -> np.ndarray:
        """``[num_envs]`` steps taken in each row's current episode (a copy)."""
        return self._steps.copy()

    def __repr__(self) -> str:
        return f"ImaginedVectorEnv({str(self.checkpoint.path)!r}, num_envs={self.num_envs})"

    # --- helpers ---
    def _reset_info(self) -> dict[str, Any]:
        return {"success": False, "instruction": self.instruction}

    def _require_open(self) -> None:
        if self.closed:
            raise ResetNeeded("the environment is closed")

    def _copy_obs(self) -> dict[str, np.ndarray]:
        return {k: v.copy() for k, v in self._obs.items()}

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

    def _parse_options(
        self, options: dict[str, Any] | None
    ) -> tuple[np.ndarray, list[dict[str, np.ndarray]] | None, list[int] | None]:
        """``(row mask, per-row start observations or None, per-row stored indices or None)``."""
        n = self.num_envs
        mask = np.ones(n, dtype=bool)
        if options is None:
            return mask, None, None
        if not isinstance(options, dict):
            raise TypeError(f"reset options must be a dict or None, got {type(options).__name__}")
        unknown = sorted(set(options) - set(VECTOR_RESET_OPTIONS))
        if unknown:
            raise ValueError(
                f"unknown reset option(s) {unknown}; the imagined vector env takes "
                f"{list(VECTOR_RESET_OPTIONS)}"
            )
        if "observation" in options and "reset_index" in options:
            raise ValueError(
                "give either options['observation'] or options['reset_index'], not both"
            )
        if "reset_mask" in options:
            mask = options["reset_mask"]
            if not isinstance(mask, np.ndarray) or mask.dtype != np.bool_:
                raise TypeError(f"options['reset_mask'] must be a numpy bool array, got {mask!r}")
            if mask.shape != (n,):
                raise ValueError(f"options['reset_mask'] must have shape ({n},), got {mask.shape}")
            if not mask.any():
                raise ValueError("options['reset_mask'] must select at least one env")
            mask = mask.copy()
        given = indices = None
        if "observation" in options:
            batch = options["observation"]
            space = self.single_observation_space
            if not isinstance(batch, dict) or set(batch) != set(space.spaces):
                raise ShapeError(
                    f"options['observation'] must be a dict with keys {list(space.spaces)} of "
                    f"[{n}, ...] arrays (one row per env)"
                )
            for key, sub in space.spaces.items():
                shape = np.shape(batch[key])
                if shape != (n, *sub.shape):
                    raise ShapeError(
                        f"options['observation'][{key!r}] must have shape {(n, *sub.shape)} "
                        f"(one row per env), got {shape}"
                    )
            given = [
                check_observation(
                    {k: np.asarray(v)[i] for k, v in batch.items()},
                    space,
                    what=f"options['observation'] row {i}",
                )
                if mask[i]
                else {}
                for i in range(n)
            ]
        if "reset_index" in options:
            index = options["reset_index"]
            count = self.checkpoint.num_resets
            if isinstance(index, (list, tuple, np.ndarray)):
                if len(index) != n:
                    raise ValueError(
                        f"options['reset_index'] needs one index per env ({n}), got {len(index)}"
                    )
                indices = [
                    check_reset_index(v.item() if isinstance(v, np.generic) else v, count)
                    for v in index
                ]
            else:
                indices = [check_reset_index(index, count)] * n
        return mask, given, indices

    def _start_rows(
        self,
        rows: np.ndarray,
        seeds: list[int | None],
        given: list[dict[str, np.ndarray]] | None,
        indices: list[int] | None,
    ) -> tuple[dict[str, np.ndarray], WorldState]:
        """Draw the starts of ``rows`` (as ``ImaginedEnv.reset`` does) and commit their frames.

        Returns ``({key: [R, ...]} start observations, fresh memory of R rows)``.
        """
        starts = []
        generators = []
        for i, seed in zip(rows.tolist(), seeds):
            if seed is not None:
                self._rngs[i] = seeding.np_random(seed)[0]
            drawn, torch_seed = draw_start(self._rngs[i], self.checkpoint.num_resets)
            if given is not None:
                starts.append(given[i])
            else:
                starts.append(
                    stored_observation(self.checkpoint, drawn if indices is None else indices[i])
                )
            self._generators[i] = torch.Generator(device=self.model.device).manual_seed(torch_seed)
            generators.append(self._generators[i])
        batch = {k: np.stack([s[k] for s in starts]) for k in self.single_observation_space.spaces}
        frames = torch.from_numpy(batch[self.checkpoint.image_key]).to(self.model.device)
        return batch, observe_rows(self.model, frames, generators)

    def _check_actions(self, actions: Any, rows: np.ndarray) -> np.ndarray:
        """Float32 ``[num_envs, A]`` actions, the rows in ``rows`` checked and clipped."""
        arr = np.asarray(actions)
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
        out = arr.astype(np.float32)
        for i in rows.tolist():
            try:
                out[i] = check_action(arr[i], self.single_action_space)
            except InvalidAction as exc:
                raise InvalidAction(f"env {i}: {exc}") from None
        return out
