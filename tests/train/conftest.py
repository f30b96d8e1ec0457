"""A tiny training run on synthetic episodes: what every trainer test starts from."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from kairos_gym.data.episodes import EpisodeWriter
from tests.data.conftest import make_episode, make_multikey_episode, make_multikey_spec, make_spec

TINY_MODEL = """
[model]
preset = "tiny"
"""


def write_data(path: Path, episodes: int = 6, steps: int = 12, multikey: bool = False) -> Path:
    """An episode file of ``episodes`` synthetic 16 px episodes (noisy frames so the codec learns).

    Args:
        multikey: use ``make_multikey_spec`` (several non-image keys, 10 state values)
            instead of ``make_spec`` (one ``state`` key of 9).
    """
    spec = make_multikey_spec() if multikey else make_spec()
    episode = make_multikey_episode if multikey else make_episode
    with EpisodeWriter(str(path), spec) as writer:
        for i in range(episodes):
            ep = episode(steps, seed=i)
            rng = np.random.default_rng(100 + i)
            noise = rng.integers(0, 40, ep["obs"]["agentview_image"].shape, dtype=np.uint8)
            ep["obs"]["agentview_image"] = ep["obs"]["agentview_image"] + noise
            writer.write_episode(**ep, seed=i)
    return path


def write_config(directory: Path, data: Path, extra: str = "", world_model: str = "", codec: str = "") -> Path:
    """A TOML config training the tiny preset for a handful of steps."""
    text = f"""
seed = 3
{TINY_MODEL}
[data]
paths = ["{data}"]
val_fraction = 0.34
reset_observations = 3
{extra}
[codec]
steps = 4
batch_size = 4
log_every = 2
checkpoint_every = 2
eval_every = 0
eval_frames = 8
statistics_frames = 16
{codec}
[world_model]
steps = 6
batch_size = 4
clip_len = 4
warmup_steps = 2
log_every = 2
checkpoint_every = 2
eval_every = 3
eval_episodes = 2
eval_horizon = 3
{world_model}
"""
    path = directory / "train.toml"
    path.write_text(text)
    return path
