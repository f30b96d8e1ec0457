"""One embodiment of a multi-embodiment world model, served with exactly its real env's spaces.

A model trained on episodes in a :class:`~kairos_gym.data.unified.UnifiedLayout` (Lift and
TransferCube together, say) takes unified actions and predicts unified states. This wrapper
presents one of its embodiments as that embodiment's own environment: a policy written for
the real Lift env (7-D actions, ``agentview_image`` + 8-D ``state``) runs on it unchanged::

    from kairos_gym.imagined.embodiment import make_embodiment_env
    env = make_embodiment_env("runs/cross_joint/model", "lift")
    obs, info = env.reset(seed=0)            # one of the stored Lift reset observations
    obs, r, terminated, truncated, info = env.step(env.action_space.sample())

Actions are checked against the embodiment's action space, placed in its slots with its
one-hot (:meth:`UnifiedLayout.unify_action`) and stepped by the one imagined core; the
observation's state is read from the embodiment's slots of the state head's prediction.
"""

from __future__ import annotations

import os
from typing import Any

import gymnasium as gym
import numpy as np

from kairos_gym.data.unified import UnifiedLayout, is_unified
from kairos_gym.envs.common import check_action
from kairos_gym.errors import CheckpointError
from kairos_gym.imagined.checkpoint import EnvCheckpoint, load_env_checkpoint
from kairos_gym.imagined.env import ImaginedEnv

__all__ = ["EmbodimentEnv", "make_embodiment_env"]


class EmbodimentEnv(gym.Wrapper):
    """An :class:`ImaginedEnv` over a unified checkpoint, seen as one embodiment's env.

    Args:
        env: the imagined env of a multi-embodiment checkpoint.
        embodiment: the embodiment's name (one of the layout's ``names``).

    Attributes:
        layout: the checkpoint's :class:`UnifiedLayout`.
        embodiment: the served embodiment (name and real env spec).

    Raises:
        CheckpointError: the checkpoint is not a multi-embodiment one, or stores no reset
            observation of this embodiment.
        ValueError: an unknown embodiment name (the message lists the known ones).
    """

    def __init__(self, env: ImaginedEnv, embodiment: str) -> None:
        super().__init__(env)
        spec = env.checkpoint.env_spec
        if not is_unified(spec):
            raise CheckpointError(f"{env.checkpoint.path} is a model of {spec.env_id} alone; "
                                  "an embodiment view needs a multi-embodiment checkpoint")
        self.layout = UnifiedLayout.from_spec(spec)
        self.embodiment = self.layout.embodiment(embodiment)
        self.observation_space = self.embodiment.spec.observation_space
        self.action_space = self.embodiment.spec.action_space
        self.metadata = {**env.metadata, "render_fps": self.embodiment.spec.control_freq}
        owners = self.layout.embodiment_of(env.checkpoint.reset_observations["state"])
        self._resets = np.flatnonzero(owners == self.layout.index(embodiment))
        if self._resets.size == 0:
            raise CheckpointError(f"{env.checkpoint.path} stores no reset observation of "
                                  f"{embodiment!r}; start episodes with options['observation']")
        self._rng = np.random.default_rng()

    @property
    def instruction(self) -> str:
        """The embodiment's task instruction."""
        return self.embodiment.spec.instruction

    @property
    def control_freq(self) -> float:
        """The embodiment's control rate in Hz."""
        return self.embodiment.spec.control_freq

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        """Start an imagined episode of this embodiment.

        Args:
            seed: seeds the choice of stored reset observation and the sampling noise.
            options: ``None`` (a stored reset observation of this embodiment), ``{"observation":
                obs}`` with ``obs`` in this embodiment's observation space (the real env's reset
                observation), or ``{"reset_index": i}``: the ``i``-th stored reset of this
                embodiment.

        Raises:
            ValueError / ShapeError: bad options; the env is left as it was.
        """
        if seed is not None:
            self._rng = np.random.default_rng(seed)
        inner: dict[str, Any]
        options = dict(options or {})
        unknown = sorted(set(options) - {"observation", "reset_index"})
        if unknown or len(options) > 1:
            raise ValueError(f"options take one of 'observation', 'reset_index'; got {sorted(options)}")
        if "observation" in options:
            inner = {"observation": self.layout.unify_observation(
                self.embodiment.name, options["observation"])}
        elif "reset_index" in options:
            i = options["reset_index"]
            if isinstance(i, bool) or not isinstance(i, (int, np.integer)) or not 0 <= i < len(self._resets):
                raise ValueError(f"options['reset_index'] must be an int in [0, {len(self._resets)}), "
                                 f"got {i!r}")
            inner = {"reset_index": int(self._resets[i])}
        else:
            inner = {"reset_index": int(self._rng.choice(self._resets))}
        obs, info = self.env.reset(seed=seed, options=inner)
        info["instruction"] = self.instruction
        return self.layout.split_observation(self.embodiment.name, obs), info

    def step(self, action: Any) -> tuple[dict[str, np.ndarray], float, bool, bool, dict[str, Any]]:
        """Imagine one step of this embodiment.

        Raises:
            InvalidAction: ``action`` is not in this embodiment's action space; nothing changes.
            ResetNeeded: as :meth:`ImaginedEnv.step`.
        """
        act = check_action(action, self.action_space)
        unified = self.layout.unify_action(self.embodiment.name, act)
        obs, reward, terminated, truncated, info = self.env.step(unified)
        info["instruction"] = self.instruction
        return self.layout.split_observation(self.embodiment.name, obs), reward, terminated, truncated, info


def make_embodiment_env(
    checkpoint: str | os.PathLike | EnvCheckpoint, embodiment: str, **kwargs: Any
) -> EmbodimentEnv:
    """An :class:`EmbodimentEnv` for ``embodiment`` of a multi-embodiment checkpoint, truncated
    at that embodiment's real episode limit unless ``max_episode_steps`` is given.

    Args:
        checkpoint: a checkpoint directory or a loaded checkpoint.
        embodiment: the embodiment's name.
        kwargs: further :class:`ImaginedEnv` options (``device``, ``sample_steps``, ...).
    """
    ckpt = checkpoint if isinstance(checkpoint, EnvCheckpoint) else load_env_checkpoint(checkpoint)
    if is_unified(ckpt.env_spec) and kwargs.get("max_episode_steps") is None:
        layout = UnifiedLayout.from_spec(ckpt.env_spec)
        kwargs["max_episode_steps"] = layout.embodiment(embodiment).max_episode_steps
    return EmbodimentEnv(ImaginedEnv(ckpt, **kwargs), embodiment)
