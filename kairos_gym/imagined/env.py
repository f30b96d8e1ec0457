"""``ImaginedEnv``: a trained world model served as the Gymnasium environment it imitates.

The imagined environment has exactly the real environment's spaces (read from the
checkpoint's env spec), so a policy written for ``kairos_gym/Robosuite-Lift-v0`` runs on
``kairos_gym/Imagined-v0`` unchanged::

    import gymnasium as gym, kairos_gym
    env = gym.make("kairos_gym/Imagined-v0", checkpoint="ckpt/lift")   # None: the embedded model
    obs, info = env.reset(seed=0)           # a stored real reset observation
    obs, reward, terminated, truncated, info = env.step(env.action_space.sample())

Per step the model imagines the next camera frame from the action (``WorldModel.step``);
the other observation keys are the state head's prediction ``[S]`` split in space order;
the reward is the predicted reward, ``terminated`` is ``done_prob > done_threshold`` and
``info["success"]`` is ``success_prob > success_threshold``. The model's memory is bounded
(sliding windows + Gated DeltaNet state), and the env keeps only the latest observation, so
a step costs the same at step 10 and at step 10,000.

:meth:`ImaginedEnv.snapshot` / :meth:`ImaginedEnv.restore` fork and rewind an episode
exactly (memory, step counter, observation and noise generator), which is what planners
need. The helpers at the bottom (:func:`resolve_checkpoint`, :func:`check_observation`,
:func:`observations_from_outputs`, :func:`draw_start`) are shared with
:class:`kairos_gym.imagined.vector.ImaginedVectorEnv` so the single and batched envs agree.
"""

from __future__ import annotations

import copy
import os
import types
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from kairos_gym.envs.common import check_action
from kairos_gym.errors import ResetNeeded, ShapeError
from kairos_gym.imagined.checkpoint import EnvCheckpoint, load_env_checkpoint
from kairos_gym.model.sampler import SamplerSettings
from kairos_gym.model.state import WorldState
from kairos_gym.model.world_model import WorldModel

__all__ = [
    "ImaginedEnv",
    "ImaginedSnapshot",
    "check_observation",
    "draw_start",
    "observations_from_outputs",
    "resolve_checkpoint",
    "sampler_settings",
]

RENDER_MODES = ("rgb_array",)
RESET_OPTIONS = ("observation", "reset_index")
# Torch seeds are drawn below 2**63 so they fit torch's int64 manual_seed.
_SEED_BOUND = 2**63 - 1


@dataclass(frozen=True)
class ImaginedSnapshot:
    """An immutable copy of an :class:`ImaginedEnv` episode, taken by :meth:`ImaginedEnv.snapshot`.

    Attributes:
        state: the world model's memory (one row), a private clone.
        steps: steps taken in the episode.
        observation: the last observation (read-only arrays).
        episode_over: whether the episode had terminated or truncated.
        generator_state: the torch noise generator's state (uint8 tensor).
        np_random_state: the env's ``np_random`` bit-generator state (for later resets).
    """

    state: WorldState
    steps: int
    observation: Mapping[str, np.ndarray]
    episode_over: bool
    generator_state: torch.Tensor
    np_random_state: Mapping[str, Any]


class ImaginedEnv(gym.Env):
    """A world model stepping like the real environment it was trained on.

    Args:
        checkpoint: an environment checkpoint directory, an already loaded
            :class:`~kairos_gym.imagined.checkpoint.EnvCheckpoint` (so many envs share one model),
            or ``None`` for the embedded default model.
        device: where to load the model (default ``"cpu"``); with a loaded checkpoint it must
            be ``None`` or the model's own device (a shared model is never moved).
        max_episode_steps: truncation length; ``None`` uses the real env's limit from the
            spec (``env_kwargs["max_episode_steps"]``), and no limit if the spec has none.
        sample_steps: Euler steps per imagined frame (1..50), overriding the config's.
        render_mode: ``None`` or ``"rgb_array"`` (``render()`` returns the last frame).
        success_threshold: ``info["success"]`` is ``success_prob > success_threshold``.
        done_threshold: ``terminated`` is ``done_prob > done_threshold``.

    Attributes:
        checkpoint: the loaded :class:`EnvCheckpoint`; ``model`` is ``checkpoint.model``.
        instruction: the real env's task instruction (also in every ``info``).
        control_freq: the real env's control rate in Hz (``metadata["render_fps"]``).

    Raises:
        CheckpointError: the checkpoint is missing, corrupt or inconsistent.
        ValueError: a bad option (named in the message); TypeError: a bad checkpoint type.
    """

    # Class-level for gym.make (render modes); each instance sets render_fps = its control_freq.
    metadata: dict[str, Any] = {"render_modes": list(RENDER_MODES), "render_fps": 20.0}  # noqa: RUF012

    def __init__(
        self,
        checkpoint: str | os.PathLike | EnvCheckpoint | None = None,
        *,
        device: torch.device | str | None = None,
        max_episode_steps: int | None = None,
        sample_steps: int | None = None,
        render_mode: str | None = None,
        success_threshold: float = 0.5,
        done_threshold: float = 0.5,
    ) -> None:
        check_render_mode(render_mode)
        self.success_threshold = check_threshold("success_threshold", success_threshold)
        self.done_threshold = check_threshold("done_threshold", done_threshold)
        self.checkpoint = resolve_checkpoint(checkpoint, device)
        self.model: WorldModel = self.checkpoint.model
        self.settings = sampler_settings(self.model, sample_steps)
        self.max_episode_steps = episode_limit(self.checkpoint, max_episode_steps)
        spec = self.checkpoint.env_spec
        self.observation_space = spec.observation_space
        self.action_space = spec.action_space
        self.render_mode = render_mode
        self.instruction = spec.instruction
        self.control_freq = spec.control_freq
        self.metadata = {"render_modes": list(RENDER_MODES), "render_fps": spec.control_freq}

        self._state: WorldState | None = None
        self._generator = torch.Generator(device=self.model.device)
        self._obs: dict[str, np.ndarray] | None = None
        self._steps = 0
        self._episode_over = False
        self._closed = False

    # --- the Gymnasium API ---
    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        """Start an imagined episode from a real observation.

        Args:
            seed: seeds ``np_random``, which picks the stored reset observation and seeds the
                torch generator of the sampling noise: the same seed and actions give the
                same frames.
            options: ``None``; ``{"observation": obs}`` to start from a given real observation
                (an element of the observation space, e.g. the real env's reset observation);
                or ``{"reset_index": i}`` for the ``i``-th stored reset observation.

        Returns:
            ``(observation, {"success": False, "instruction": str})``; the observation is the
            start observation itself (a copy), as in the real env.

        Raises:
            ValueError / ShapeError: bad options; the env is left as it was.
            ResetNeeded: the env is closed.
        """
        self._require_open()
        # Validate before touching anything, so a bad call loses nothing.
        given, index = parse_reset_options(options, self.checkpoint)
        super().reset(seed=seed)
        drawn, torch_seed = draw_start(self.np_random, self.checkpoint.num_resets)
        start = (
            given
            if given is not None
            else stored_observation(self.checkpoint, drawn if index is None else index)
        )
        generator = torch.Generator(device=self.model.device).manual_seed(torch_seed)
        frames = torch.from_numpy(start[self.checkpoint.image_key])[None, None]
        self._state = self.model.observe(self.model.init_state(1), frames, generator=generator)
        self._generator = generator
        self._obs = start
        self._steps = 0
        self._episode_over = False
        return copy_observation(start), self._reset_info()

    def step(self, action: Any) -> tuple[dict[str, np.ndarray], float, bool, bool, dict[str, Any]]:
        """Imagine one control step.

        Args:
            action: ``[A]`` in the action space (any real dtype; clipped within 1e-5 of
                the bounds, like the real env).

        Returns:
            ``(obs, reward, terminated, truncated, info)``: the imagined frame and predicted
            state in the real observation layout; the predicted reward; ``done_prob >
            done_threshold``; the episode limit reached (and not terminated); ``info =
            {"success", "success_prob", "done_prob", "instruction"}``.

        Raises:
            ResetNeeded: before ``reset``, after the episode ended, or after ``close``.
            InvalidAction: wrong shape or dtype, NaN/inf, out of bounds; nothing changes.
        """
        self._require_open()
        if self._state is None:
            raise ResetNeeded("call reset() before step()")
        if self._episode_over:
            raise ResetNeeded("the episode has ended (terminated or truncated); call reset()")
        act = check_action(action, self.action_space)
        saved = self._generator.get_state()
        try:
            frames, out, state = self.model.step(
                self._state,
                torch.from_numpy(act)[None].to(self.model.device),
                generator=self._generator,
                settings=self.settings,
            )
        except BaseException:
            # A failure (or Ctrl-C) mid-sample must not leave the noise stream half-advanced.
            self._generator.set_state(saved)
            raise
        obs = observations_from_outputs(self.checkpoint, frames, out)
        self._obs = {k: v[0] for k, v in obs.items()}
        self._state = state
        self._steps += 1
        success_prob = float(out["success"][0])
        done_prob = float(out["done"][0])
        terminated = done_prob > self.done_threshold
        truncated = (
            self.max_episode_steps is not None
            and self._steps >= self.max_episode_steps
            and not terminated
        )
        self._episode_over = terminated or truncated
        info = {
            "success": success_prob > self.success_threshold,
            "success_prob": success_prob,
            "done_prob": done_prob,
            "instruction": self.instruction,
        }
        return copy_observation(self._obs), float(out["reward"][0]), terminated, truncated, info

    def render(self) -> np.ndarray | None:
        """The last frame, uint8 ``[H, W, 3]``; ``None`` unless ``render_mode="rgb_array"``.

        Raises:
            ResetNeeded: before ``reset`` or after ``close``.
        """
        if self.render_mode != "rgb_array":
            return None
        self._require_open()
        if self._obs is None:
            raise ResetNeeded("call reset() before render()")
        return self._obs[self.checkpoint.image_key].copy()

    def close(self) -> None:
        """Drop the episode's memory; the (possibly shared) model stays loaded. Idempotent."""
        self._closed = True
        self._state = None
        self._obs = None

    # --- forking ---
    def snapshot(self) -> ImaginedSnapshot:
        """An immutable copy of the episode: memory, step count, observation, noise state.

        Restoring it (into this env or another one serving the same checkpoint) and taking
        the same actions reproduces the same frames.

        Raises:
            ResetNeeded: before ``reset`` or after ``close``.
        """
        self._require_open()
        if self._state is None or self._obs is None:
            raise ResetNeeded("call reset() before snapshot()")
        obs = {}
        for key, value in self._obs.items():
            frozen = value.copy()
            frozen.flags.writeable = False
            obs[key] = frozen
        return ImaginedSnapshot(
            state=self._state.clone(),
            steps=self._steps,
            observation=types.MappingProxyType(obs),
            episode_over=self._episode_over,
            generator_state=self._generator.get_state(),
            np_random_state=types.MappingProxyType(
                copy.deepcopy(self.np_random.bit_generator.state)
            ),
        )

    def restore(self, snapshot: ImaginedSnapshot) -> dict[str, np.ndarray]:
        """Return to ``snapshot`` exactly; returns (a copy of) its observation.

        Raises:
            TypeError: not an :class:`ImaginedSnapshot`.
            ValueError: the snapshot's memory does not fit this env's model.
            ResetNeeded: the env is closed.
        """
        self._require_open()
        if not isinstance(snapshot, ImaginedSnapshot):
            raise TypeError(
                "restore() takes an ImaginedSnapshot from snapshot(), "
                f"got {type(snapshot).__name__}"
            )
        expected = self.model.init_state(1)
        if (
            snapshot.state.batch_size != 1
            or set(snapshot.state) != set(expected)
            or any(snapshot.state[k].shape != expected[k].shape for k in expected)
        ):
            raise ValueError(
                "the snapshot's memory layout does not match this env's model; "
                "snapshots move only between envs serving the same checkpoint"
            )
        # The model never writes into a state it is given, so the snapshot can be shared.
        self._state = snapshot.state.to(self.model.device)
        self._steps = snapshot.steps
        self._obs = {k: np.array(v) for k, v in snapshot.observation.items()}
        self._episode_over = snapshot.episode_over
        self._generator.set_state(snapshot.generator_state)
        self.np_random.bit_generator.state = copy.deepcopy(dict(snapshot.np_random_state))
        return copy_observation(self._obs)

    # --- helpers ---
    def _reset_info(self) -> dict[str, Any]:
        return {"success": False, "instruction": self.instruction}

    def _require_open(self) -> None:
        if self._closed:
            raise ResetNeeded("the environment is closed")


# --- shared by ImaginedEnv and ImaginedVectorEnv ---
def resolve_checkpoint(
    checkpoint: str | os.PathLike | EnvCheckpoint | None, device: torch.device | str | None
) -> EnvCheckpoint:
    """Load ``checkpoint`` (a directory or None) or check a loaded one against ``device``.

    Raises:
        TypeError: ``checkpoint`` is neither a path, an EnvCheckpoint nor None.
        ValueError: a loaded checkpoint lives on another device than ``device``.
        CheckpointError: loading failed.
    """
    if isinstance(checkpoint, EnvCheckpoint):
        if device is not None and torch.device(device) != checkpoint.model.device:
            raise ValueError(
                f"the loaded checkpoint's model is on {checkpoint.model.device}, not "
                f"{torch.device(device)}; a shared model is never moved (load it there)"
            )
        ckpt = checkpoint
    elif checkpoint is None or isinstance(checkpoint, (str, os.PathLike)):
        ckpt = load_env_checkpoint(checkpoint, device="cpu" if device is None else device)
    else:
        raise TypeError(
            "checkpoint must be a directory, an EnvCheckpoint or None, "
            f"got {type(checkpoint).__name__}"
        )
    if ckpt.model.config.temporal_compression != 1:
        raise ValueError(
            f"the imagined env steps one frame per action; this model has temporal "
            f"compression {ckpt.model.config.temporal_compression}"
        )
    return ckpt


def sampler_settings(model: WorldModel, sample_steps: int | None) -> SamplerSettings:
    """The model's sampler settings with ``sample_steps`` (1..50) overriding the step count."""
    base = model.sampler
    if sample_steps is None:
        return base
    if (
        isinstance(sample_steps, bool)
        or not isinstance(sample_steps, (int, np.integer))
        or not 1 <= sample_steps <= 50
    ):
        raise ValueError(f"sample_steps must be an integer in 1..50 or None, got {sample_steps!r}")
    return SamplerSettings(int(sample_steps), base.shift, base.guidance_scale, base.context_sigma)


def episode_limit(checkpoint: EnvCheckpoint, max_episode_steps: int | None) -> int | None:
    """``max_episode_steps`` validated, defaulting to the real env's limit from the spec."""
    if max_episode_steps is None:
        return checkpoint.max_episode_steps
    if (
        isinstance(max_episode_steps, bool)
        or not isinstance(max_episode_steps, (int, np.integer))
        or max_episode_steps < 1
    ):
        raise ValueError(
            f"max_episode_steps must be a positive integer or None, got {max_episode_steps!r}"
        )
    return int(max_episode_steps)


def check_threshold(name: str, value: float) -> float:
    """A probability threshold in [0, 1] as a float."""
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float, np.floating, np.integer))
        or not 0.0 <= float(value) <= 1.0
    ):
        raise ValueError(f"{name} must be a number in [0, 1], got {value!r}")
    return float(value)


def check_render_mode(render_mode: str | None) -> None:
    """Refuse render modes other than ``None`` and ``"rgb_array"``."""
    if render_mode is not None and render_mode not in RENDER_MODES:
        raise ValueError(
            f"render_mode must be None or one of {list(RENDER_MODES)}, got {render_mode!r}"
        )


def draw_start(rng: np.random.Generator, num_resets: int) -> tuple[int, int]:
    """Draw ``(stored reset index, torch noise seed)`` from ``rng``.

    Both are always drawn, so the noise stream after ``reset(seed=s)`` depends only on ``s``
    (not on whether ``options`` picked the start), and the single and batched envs consume
    their generators identically.
    """
    index = int(rng.integers(num_resets))
    return index, int(rng.integers(_SEED_BOUND))


def stored_observation(checkpoint: EnvCheckpoint, index: int) -> dict[str, np.ndarray]:
    """A copy of the ``index``-th stored reset observation."""
    return {k: v[index].copy() for k, v in checkpoint.reset_observations.items()}


def parse_reset_options(
    options: Mapping[str, Any] | None, checkpoint: EnvCheckpoint
) -> tuple[dict[str, np.ndarray] | None, int | None]:
    """Validate ``reset`` options: ``(given observation or None, stored index or None)``.

    Raises:
        TypeError: options that are not a dict.
        ValueError: unknown keys, both keys, or a bad ``reset_index``.
        ShapeError: an ``observation`` outside the observation space.
    """
    if options is None:
        return None, None
    if not isinstance(options, Mapping):
        raise TypeError(f"reset options must be a dict or None, got {type(options).__name__}")
    unknown = sorted(set(options) - set(RESET_OPTIONS))
    if unknown:
        raise ValueError(
            f"unknown reset option(s) {unknown}; the imagined env takes {list(RESET_OPTIONS)}"
        )
    if "observation" in options and "reset_index" in options:
        raise ValueError("give either options['observation'] or options['reset_index'], not both")
    if "observation" in options:
        return check_observation(
            options["observation"], checkpoint.env_spec.observation_space
        ), None
    if "reset_index" in options:
        return None, check_reset_index(options["reset_index"], checkpoint.num_resets)
    return None, None


def check_reset_index(index: Any, num_resets: int) -> int:
    """A stored reset index in ``0 .. num_resets - 1``."""
    if (
        isinstance(index, bool)
        or not isinstance(index, (int, np.integer))
        or not 0 <= index < num_resets
    ):
        raise ValueError(
            f"options['reset_index'] must be an integer in 0..{num_resets - 1} "
            f"(the checkpoint stores {num_resets} reset observations), got {index!r}"
        )
    return int(index)


def check_observation(
    obs: Any, space: gym.spaces.Dict, what: str = "options['observation']"
) -> dict[str, np.ndarray]:
    """Validate one observation against ``space`` and return a copy in the space's dtypes.

    Values of another dtype are accepted when numpy casts them safely within their kind
    (float64 -> float32, uint8 -> int64), never across kinds (a float image is refused).

    Raises:
        ShapeError: not a mapping, missing or extra keys, wrong shape or dtype, NaN or a
            value outside the space; the message names the key and the expected space.
    """
    if not isinstance(obs, Mapping):
        raise ShapeError(
            f"{what} must be a dict with keys {list(space.spaces)}, got {type(obs).__name__}"
        )
    if set(obs) != set(space.spaces):
        raise ShapeError(
            f"{what} must have exactly the keys {list(space.spaces)}, got {sorted(obs)}"
        )
    out: dict[str, np.ndarray] = {}
    for key, sub in space.spaces.items():
        arr = np.asarray(obs[key])
        if arr.shape != sub.shape:
            raise ShapeError(f"{what}[{key!r}] must have shape {sub.shape}, got {arr.shape}")
        if (
            not np.can_cast(arr.dtype, sub.dtype, casting="same_kind")
            or arr.dtype.kind not in "fiub"
        ):
            raise ShapeError(f"{what}[{key!r}] must be {sub.dtype}, got {arr.dtype}")
        arr = arr.astype(sub.dtype, copy=True)
        if not sub.contains(arr):
            raise ShapeError(f"{what}[{key!r}] has NaN or values outside {sub}")
        out[key] = arr
    return out


def observations_from_outputs(
    checkpoint: EnvCheckpoint, frames: torch.Tensor, outcomes: Mapping[str, torch.Tensor]
) -> dict[str, np.ndarray]:
    """Batched observations ``{key: [B, *shape]}`` from one model step.

    Args:
        frames: uint8 ``[B, H, W, 3]``, the imagined camera frames.
        outcomes: the model's outcomes; ``state`` ``[B, S]`` is split over the non-image keys
            in space order, reshaped, clipped into each key's bounds and cast to its dtype.
    """
    space = checkpoint.env_spec.observation_space
    out = {checkpoint.image_key: frames.cpu().numpy()}
    keys = checkpoint.state_keys
    if keys:
        state = outcomes["state"].detach().float().cpu().numpy()
        offset = 0
        for key in keys:
            sub = space[key]
            size = int(np.prod(sub.shape))
            part = state[:, offset : offset + size].reshape(len(state), *sub.shape)
            offset += size
            # Bounds are usually infinite (proprioception); finite ones are enforced so an
            # imagined observation always belongs to the space.
            part = np.clip(part, sub.low, sub.high)
            if np.dtype(sub.dtype).kind in "iub":
                part = np.rint(part)
            out[key] = part.astype(sub.dtype)
    return {k: out[k] for k in space.spaces}


def copy_observation(obs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """A dict of array copies, in the given key order."""
    return {k: np.array(v, copy=True) for k, v in obs.items()}
