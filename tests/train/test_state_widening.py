"""Fine-tuning may widen a proprioceptive model's state with new keys (the objects' state)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch

from kairos_gym.data.episodes import EpisodeWriter
from kairos_gym.data.keys import ObservationKeys
from kairos_gym.errors import CheckpointError
from kairos_gym.imagined.env import ImaginedEnv
from kairos_gym.model import checkpoint as ckpt
from kairos_gym.train.trainer import Trainer, load_config, state_index
from tests.data.conftest import make_episode, make_spec
from tests.train.conftest import write_config, write_data

PROPRIO = 'preset = "tiny"\nproprio_conditioning = true\nproprio_hidden = 16'


def _write_object_data(path: Path, episodes: int = 6, steps: int = 12) -> Path:
    """``write_data``'s episodes with an ``object_state`` [3] key beside ``state`` [9]; the
    Dict space orders it first, so the init's ``state`` lands at entries 3..11."""
    spec = make_spec()
    spaces = dict(spec.observation_space.spaces)
    spaces["object_state"] = gym.spaces.Box(-np.inf, np.inf, (3,), np.float32)
    spec = dataclasses.replace(spec, observation_space=gym.spaces.Dict(spaces))
    with EpisodeWriter(str(path), spec) as writer:
        for i in range(episodes):
            ep = make_episode(steps, seed=i)
            rng = np.random.default_rng(100 + i)
            ep["obs"]["agentview_image"] = ep["obs"]["agentview_image"] + rng.integers(
                0, 40, ep["obs"]["agentview_image"].shape, dtype=np.uint8)
            cube = rng.standard_normal((steps + 1, 3)).astype(np.float32)
            ep["obs"]["object_state"], ep["final_obs"]["object_state"] = cube[:steps], cube[steps]
            writer.write_episode(**ep, seed=i)
    return path


def _train(config: Path, output: Path) -> Path:
    torch.set_num_threads(1)
    return Trainer(load_config(config), output, progress=False).run()


def _config(directory: Path, data: Path, init: Path | None = None, world_model: str = "") -> Path:
    directory.mkdir()
    config = write_config(directory, data, world_model=world_model)
    text = config.read_text().replace('preset = "tiny"', PROPRIO)
    if init is not None:
        text = text.replace("seed = 3", f'seed = 3\ninit = "{init}"')
    config.write_text(text)
    return config


@pytest.fixture(scope="module")
def narrow(tmp_path_factory) -> Path:
    """A tiny proprioceptive model trained on ``state`` alone."""
    root = tmp_path_factory.mktemp("narrow")
    data = write_data(root / "eps.hdf5")
    return _train(_config(root / "cfg", data), root / "run")


def test_widening_keeps_the_inits_state_entries_and_starts_the_new_ones_silent(tmp_path, narrow):
    data = _write_object_data(tmp_path / "objects.hdf5")
    config = _config(tmp_path / "wide", data, init=narrow, world_model="lr = 1e-12")
    tuned_dir = _train(config, tmp_path / "tuned")
    base = ckpt.load_tensors(narrow / "model.safetensors")
    tuned = ckpt.load_tensors(tuned_dir / "model.safetensors")
    old = slice(3, 12)  # object_state [3] sorts before state [9]
    assert tuned["state_mean"].shape == (12,)
    torch.testing.assert_close(tuned["state_mean"][old], base["state_mean"])
    torch.testing.assert_close(tuned["state_std"][old], base["state_std"])
    embed = tuned["proprio_embedding.0.weight"]
    torch.testing.assert_close(embed[:, old], base["proprio_embedding.0.weight"], atol=1e-6, rtol=0)
    assert embed[:, :3].abs().max() < 1e-9  # zero, up to the vanishing learning rate
    head = tuned["outcome_head.1.weight"]
    torch.testing.assert_close(head[:3], base["outcome_head.1.weight"][:3], atol=1e-6, rtol=0)
    torch.testing.assert_close(head[3 + 3:], base["outcome_head.1.weight"][3:], atol=1e-6, rtol=0)
    # The imagined env of the widened model starts from, and returns, both keys.
    env = ImaginedEnv(tuned_dir)
    obs, _ = env.reset(seed=0)
    assert set(obs) == {"agentview_image", "object_state", "state"}
    obs2, *_ = env.step(env.action_space.sample())
    assert obs2["object_state"].shape == (3,) and np.isfinite(obs2["object_state"]).all()
    env.close()


def test_a_state_key_the_data_lacks_is_refused_by_name():
    wide = ObservationKeys(("agentview_image",), ("object_state", "state"),
                           (gym.spaces.Box(-1, 1, (3,)), gym.spaces.Box(-1, 1, (9,))))
    narrow = ObservationKeys(("agentview_image",), ("state",), (gym.spaces.Box(-1, 1, (9,)),))
    assert state_index(narrow, wide, "init").tolist() == list(range(3, 12))
    other = ObservationKeys(("agentview_image",), ("joints",), (gym.spaces.Box(-1, 1, (9,)),))
    with pytest.raises(CheckpointError, match="'joints'.*can only gain keys"):
        state_index(other, wide, "init")
