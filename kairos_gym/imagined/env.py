"""``ImaginedEnv``: a trained world model served as the Gymnasium environment it imitates.

The imagined environment has exactly the real environment's spaces (read from the
checkpoint's env spec), so a policy written for ``kairos_gym/Robosuite-Lift-v0`` runs on
``kairos_gym/Imagined-v0`` unchanged::

    import gymnasium as gym, kairos_gym
    env = gym.make("kairos_gym/Imagined-v0", checkpoint="ckpt/lift")   # None: the embedded model
    obs, info = env.reset(seed=0)           # a stored real reset observation
    obs, reward, terminated, truncated, info = env.step(env.action_space.sample())

Per step the model imagines the next camera frame from the action; the other observation
keys are the state head's prediction split in space order; the reward is the predicted
reward, ``terminated`` is ``done_prob > done_threshold`` and ``info["success"]`` (also
``info["is_success"]``) is the checkpoint's :class:`~kairos_gym.imagined.success.SuccessRule`
met: ``success_prob > success_threshold`` for ``success_hold`` consecutive steps (by default
0.5 and 1 step; a checkpoint may carry its own). The model's memory is
bounded (sliding windows + Gated DeltaNet state), so a step costs the same at step 10 and at
step 10,000.

A model with temporal compression ``tc > 1`` (the Wan2.1 VAE: 4) still takes one action per
step: it imagines a latent frame, decoded to ``tc`` frames, every ``tc`` steps, and between
them the observation is the latest imagined frame (a new image every ``tc`` steps;
``info["latent_step"]`` says when). See :mod:`kairos_gym.imagined.core` for the rewards and
probabilities between latent steps.

The env is the 1-row view of an :class:`~kairos_gym.imagined.core.ImaginedCore` (``env.core``):
:meth:`ImaginedEnv.snapshot` / :meth:`ImaginedEnv.restore` rewind an episode exactly, and
``env.core.fork(0, n)`` gives a planner ``n`` batched copies of the current episode.
"""

from __future__ import annotations

import os
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from kairos_gym.devices import check_device, parse_device
from kairos_gym.envs.common import EpisodeLimit, check_action
from kairos_gym.errors import ResetNeeded
from kairos_gym.imagined.checkpoint import EnvCheckpoint
from kairos_gym.imagined.core import CoreView, ImaginedCore, ImaginedSnapshot
from kairos_gym.model.world_model import WorldModel

__all__ = ["RENDER_MODES", "ImaginedEnv", "ImaginedSnapshot", "check_render_mode"]

RENDER_MODES = ("rgb_array",)


class ImaginedEnv(CoreView, EpisodeLimit, gym.Env):
    """A world model stepping like the real environment it was trained on.

    Args:
        checkpoint: an environment checkpoint directory, an already loaded
            :class:`~kairos_gym.imagined.checkpoint.EnvCheckpoint` (so many envs share one
            model), or ``None`` for the embedded default model.
        device: where to load the model (default ``"cpu"``); with a loaded checkpoint it must
            be ``None`` or the model's own device (a shared model is never moved).
        max_episode_steps: truncation length; ``None`` uses the real env's limit from the
            checkpoint's spec (no limit if it has none). See
            :class:`~kairos_gym.envs.common.EpisodeLimit` for ``gym.make``.
        sample_steps: Euler steps per imagined frame (1..50), overriding the config's.
        render_mode: ``None`` or ``"rgb_array"`` (``render()`` returns the last frame).
        success_threshold, success_hold: ``info["success"]`` is true at a step that ends
            ``success_hold`` consecutive steps with ``success_prob > success_threshold``;
            ``None`` takes the checkpoint's rule (``checkpoint.success_rule``: the one its
            agreement with the real simulator was measured with; ``> 0.5`` for one step when
            it has none).
        done_threshold: ``terminated`` is ``done_prob > done_threshold``.
        draw_state: a stochastic dynamics draws each carried state (default) or, ``False``,
            takes its prediction (see :class:`~kairos_gym.imagined.core.ImaginedCore`).
        real_resets: ``reset(seed=s)`` without options resets the real env the model was
            trained on (built here from the checkpoint's spec, ``gym.make(env_id,
            **env_kwargs)``; the simulator must be installed) with seed
            ``s`` and starts from its observation, so the imagined episode of seed ``s``
            starts where the real episode of seed ``s`` does. This is how a benchmark's
            seeded episodes run in imagination unchanged. ``False``: from a stored reset.

    Attributes:
        core: the 1-row :class:`ImaginedCore` behind the env.
        checkpoint: the loaded :class:`EnvCheckpoint`; ``model`` is ``checkpoint.model``.
        instruction: the real env's task instruction (also in every ``info``).
        control_freq: the real env's control rate in Hz (``metadata["render_fps"]``).
        real_env: with ``real_resets``, the real env the resets come from (else ``None``);
            this env only ever resets it. A paired evaluation may step it (the policy acts
            in the real env, every action also goes to the imagined one).

    Raises:
        CheckpointError: the checkpoint is missing, corrupt or inconsistent.
        DeviceUnavailable: ``device`` does not exist here (``"cuda"`` on a CPU-only build).
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
        success_threshold: float | None = None,
        done_threshold: float = 0.5,
        draw_state: bool = True,
        success_hold: int | None = None,
        real_resets: bool = False,
    ) -> None:
        check_render_mode(render_mode)
        if not isinstance(real_resets, bool):
            raise TypeError(f"real_resets must be a bool, got {real_resets!r}")
        if device is not None:
            # A loaded model is never moved (the core says so); a path is loaded on the
            # device, which must exist here: checked first, with the reason it does not.
            (parse_device if isinstance(checkpoint, EnvCheckpoint) else check_device)(device)
        self.core = ImaginedCore(
            checkpoint,
            1,
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
        self.observation_space = self.core.observation_space
        self.action_space = self.core.action_space
        self.render_mode = render_mode
        self.instruction = self.core.instruction
        self.control_freq = self.core.control_freq
        self.metadata = {"render_modes": list(RENDER_MODES), "render_fps": self.control_freq}
        self.real_env: gym.Env | None = self._make_real_env() if real_resets else None
        self._closed = False

    def default_episode_limit(self) -> int | None:
        """The limit the env keeps when built directly: the checkpoint's real env limit."""
        return self.checkpoint.max_episode_steps

    # --- the Gymnasium API ---
    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        """Start an imagined episode from a real observation.

        Args:
            seed: seeds ``np_random``, which picks the stored reset observation and seeds the
                torch generator of the sampling noise: the same seed and actions give the
                same frames. With ``real_resets``, also the real env's reset seed.
            options: ``None`` (a stored reset, or with ``real_resets`` the real env's reset
                with ``seed``); ``{"observation": obs}`` to start from a given real observation
                (an element of the observation space, e.g. the real env's reset observation);
                or ``{"reset_index": i}`` for the ``i``-th stored reset observation.

        Returns:
            ``(observation, {"success": False, "is_success": False, "instruction": str})``;
            the observation is the start observation itself (a copy), as in the real env.

        Raises:
            ValueError / ShapeError: bad options; the env is left as it was.
            ResetNeeded: the env is closed.
        """
        self._require_open()
        if self.real_env is not None and options is None:
            real_obs, _ = self.real_env.reset(seed=seed)
            options = {"observation": real_obs}
        # Validate before touching anything, so a bad call loses nothing.
        request = self.core.parse_start(options, 1, batched=False)
        super().reset(seed=seed)
        self.core.bind_rng(0, self.np_random)
        obs = self.core.start(request=request)
        return {k: v[0] for k, v in obs.items()}, self.core.reset_info()

    def step(self, action: Any) -> tuple[dict[str, np.ndarray], float, bool, bool, dict[str, Any]]:
        """Imagine one control step.

        Args:
            action: ``[A]`` in the action space (any real dtype, a list or a torch tensor,
                which is detached; clipped within 1e-5 of the bounds, like the real env).

        Returns:
            ``(obs, reward, terminated, truncated, info)``: the imagined frame and predicted
            state in the real observation layout; the predicted reward; ``done_prob >
            done_threshold``; the episode limit reached (and not terminated); ``info =
            {"success", "is_success", "success_prob", "done_prob", "instruction"}``.

        Raises:
            ResetNeeded: before ``reset``, after the episode ended, or after ``close``.
            InvalidAction: wrong shape or dtype, NaN/inf, out of bounds; nothing changes.
        """
        self._require_open()
        if not self.core.started[0]:
            raise ResetNeeded("call reset() before step()")
        act = check_action(action, self.action_space)
        result = self.core.step(act[None], checked=True)
        obs = {k: v[0] for k, v in result.observations.items()}
        terminated, truncated = bool(result.terminated[0]), bool(result.truncated[0])
        return obs, float(result.reward[0]), terminated, truncated, result.info(0)

    def render(self) -> np.ndarray | None:
        """The last frame, uint8 ``[H, W, 3]``; ``None`` unless ``render_mode="rgb_array"``.

        Raises:
            ResetNeeded: before ``reset`` or after ``close``.
        """
        if self.render_mode != "rgb_array":
            return None
        self._require_open()
        if not self.core.started[0]:
            raise ResetNeeded("call reset() before render()")
        return self.core.observations([0])[self.core.image_key][0]

    def close(self) -> None:
        """Drop the episode's memory; the (possibly shared) model stays loaded. Idempotent.
        Closes the real env of ``real_resets`` too."""
        self._closed = True
        self.core.close()
        if self.real_env is not None:
            self.real_env.close()
            self.real_env = None

    # --- rewinding ---
    def snapshot(self) -> ImaginedSnapshot:
        """An immutable copy of the episode: memory, step count, observation, noise state.

        Restoring it (into this env or another one serving the same checkpoint) and taking
        the same actions reproduces the same frames.

        Raises:
            ResetNeeded: before ``reset`` or after ``close``.
        """
        self._require_open()
        return self.core.snapshot()

    def restore(self, snapshot: ImaginedSnapshot) -> dict[str, np.ndarray]:
        """Return to a 1-row ``snapshot`` exactly; returns (a copy of) its observation.

        Raises:
            TypeError: not an :class:`ImaginedSnapshot`.
            ValueError: the snapshot's memory does not fit this env's model.
            ResetNeeded: the env is closed.
        """
        self._require_open()
        # Later resets continue the snapshot's draws through this env's np_random.
        self.core.bind_rng(0, self.np_random)
        obs = self.core.restore(snapshot)
        return {k: v[0] for k, v in obs.items()}

    def _make_real_env(self) -> gym.Env:
        """The real env of ``real_resets``, from the checkpoint's spec."""
        import kairos_gym  # noqa: F401  (registers the kairos_gym/... ids)
        from kairos_gym.data.unified import is_unified

        spec = self.checkpoint.env_spec
        if is_unified(spec):
            raise ValueError(
                f"{self.checkpoint.path} models several embodiments: real_resets needs one real "
                "env; serve one embodiment (kairos_gym.imagined.embodiment.make_embodiment_env) "
                "and pass the real reset as options={'observation': obs}"
            )
        if spec.env_id not in gym.registry:
            raise ValueError(
                f"real_resets: the checkpoint's real env {spec.env_id!r} is not a registered "
                "Gymnasium id"
            )
        return gym.make(spec.env_id, **spec.env_kwargs)

    def _require_open(self) -> None:
        if self._closed:
            raise ResetNeeded("the environment is closed")


def check_render_mode(render_mode: str | None) -> None:
    """Refuse render modes other than ``None`` and ``"rgb_array"``."""
    if render_mode is not None and render_mode not in RENDER_MODES:
        raise ValueError(
            f"render_mode must be None or one of {list(RENDER_MODES)}, got {render_mode!r}"
        )
