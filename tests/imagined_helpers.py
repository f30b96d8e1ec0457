"""Tiny environment checkpoints for the imagined-env, vector-env and SB3 tests.

The spec imitates ``kairos_gym/Robosuite-Lift-v0`` (one ``agentview`` camera, 8-D state,
7-D action in [-1, 1], 20 Hz) at the tiny preset's 16x16 frames; the model's parameters are
perturbed so every output (frames, reward, probabilities, state) depends on its inputs.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from kairos_gym.data.keys import ObservationKeys
from kairos_gym.data.spaces import EpisodeEnvSpec
from kairos_gym.imagined.checkpoint import save_env_checkpoint
from kairos_gym.model import WorldModel, WorldModelConfig
from tests.model.conftest import randomize_

INSTRUCTION = "lift the red cube"


def lift_spec(
    image_size: int = 16,
    max_episode_steps: int | None = 12,
    state_spaces: dict[str, gym.spaces.Box] | None = None,
) -> EpisodeEnvSpec:
    """A Lift-like spec: ``agentview_image`` uint8 ``[S, S, 3]`` + ``state`` float32 ``[8]``.

    Args:
        state_spaces: replaces ``{"state": Box(-inf, inf, (8,))}`` (to test key splitting).
    """
    spaces: dict[str, gym.spaces.Space] = {
        "agentview_image": gym.spaces.Box(0, 255, (image_size, image_size, 3), np.uint8)
    }
    spaces.update(state_spaces or {"state": gym.spaces.Box(-np.inf, np.inf, (8,), np.float32)})
    kwargs = {"cameras": ["agentview"], "image_size": image_size}
    if max_episode_steps is not None:
        kwargs["max_episode_steps"] = max_episode_steps
    return EpisodeEnvSpec(
        env_id="kairos_gym/Robosuite-Lift-v0",
        env_kwargs=kwargs,
        observation_space=gym.spaces.Dict(spaces),
        action_space=gym.spaces.Box(-1.0, 1.0, (7,), np.float32),
        control_freq=20.0,
        instruction=INSTRUCTION,
        cameras=("agentview",),
        image_size=(image_size, image_size),
    )


def tiny_model(state_dim: int = 8, image_size: int = 16, seed: int = 0, **overrides: Any) -> WorldModel:
    """A tiny-preset model with perturbed weights (``overrides``: more config fields);
    ``image_size=64`` keeps 4x4 latents."""
    cfg = WorldModelConfig.preset("tiny", state_dim=state_dim, **overrides)
    if image_size != 16:
        # Same token count as the tiny preset, larger frames: one more codec stage per 2x.
        stages = int(np.log2(image_size // 4))
        cfg = dataclasses.replace(
            cfg,
            image_size=(image_size, image_size),
            spatial_compression=2**stages,
            codec_channels=(8,) * (stages - 1) + (16,),
        )
    torch.manual_seed(seed)
    return randomize_(WorldModel(cfg), seed=seed).eval()


def reset_observations(
    spec: EpisodeEnvSpec, count: int = 3, seed: int = 0
) -> dict[str, np.ndarray]:
    """``count`` random observations in ``spec``'s observation space: ``{key: [count, ...]}``."""
    rng = np.random.default_rng(seed)
    out = {}
    for key, sub in spec.observation_space.spaces.items():
        if sub.dtype == np.uint8:
            out[key] = rng.integers(0, 256, (count, *sub.shape), dtype=np.uint8)
        else:
            low = np.maximum(sub.low, -1.0)
            high = np.minimum(sub.high, 1.0)
            out[key] = rng.uniform(low, high, (count, *sub.shape)).astype(sub.dtype)
    return out


def write_checkpoint(
    directory: Path, spec: EpisodeEnvSpec | None = None, count: int = 3, seed: int = 0,
    **model_overrides: Any,
) -> Path:
    """Write a tiny environment checkpoint for ``spec`` (default :func:`lift_spec`)."""
    spec = spec or lift_spec()
    width = ObservationKeys.from_spec(spec).state_width
    model = tiny_model(state_dim=width, image_size=spec.image_size[0], seed=seed, **model_overrides)
    save_env_checkpoint(
        directory,
        model,
        spec,
        reset_observations(spec, count, seed),
        training={"note": "random weights for tests"},
    )
    return Path(directory)


def sample_actions(steps: int, rows: int | None = None, seed: int = 0) -> np.ndarray:
    """Uniform actions in [-1, 1]: ``[steps, 7]`` or ``[steps, rows, 7]`` float32."""
    shape = (steps, 7) if rows is None else (steps, rows, 7)
    return np.random.default_rng(seed).uniform(-1, 1, shape).astype(np.float32)
