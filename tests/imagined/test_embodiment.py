"""One model, two embodiments: a tiny model trained on unified files, served as each one's env."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from kairos_gym.data.episodes import EpisodeWriter
from kairos_gym.data.unified import Embodiment, UnifiedLayout, unify_episodes
from kairos_gym.errors import CheckpointError, InvalidAction
from kairos_gym.evaluation.real_vs_imagined import open_env_pair
from kairos_gym.imagined.checkpoint import load_env_checkpoint
from kairos_gym.imagined.embodiment import EmbodimentEnv, make_embodiment_env
from kairos_gym.imagined.env import ImaginedEnv
from kairos_gym.train.trainer import Trainer, load_config
from tests.data.conftest import make_bimanual_episode, make_bimanual_spec, make_spec
from tests.train.conftest import write_config, write_data


@pytest.fixture(scope="module")
def joint(tmp_path_factory) -> Path:
    """A tiny model trained on a Lift-like and an ALOHA-like embodiment, weighted half each."""
    root = tmp_path_factory.mktemp("joint")
    lift = write_data(root / "lift.hdf5", episodes=4, steps=10)
    aloha = root / "aloha.hdf5"
    with EpisodeWriter(str(aloha), make_bimanual_spec()) as writer:
        for i in range(4):
            writer.write_episode(**make_bimanual_episode(10, seed=i), seed=i)
    layout = UnifiedLayout((Embodiment("lift", make_spec()), Embodiment("aloha", make_bimanual_spec())))
    unify_episodes(lift, root / "u_lift.hdf5", layout, "lift")
    unify_episodes(aloha, root / "u_aloha.hdf5", layout, "aloha")
    config = write_config(root, root / "u_lift.hdf5", extra='camera = "view"\nweights = [1, 1]')
    config.write_text(config.read_text().replace(
        f'paths = ["{root / "u_lift.hdf5"}"]',
        f'paths = ["{root / "u_lift.hdf5"}", "{root / "u_aloha.hdf5"}"]'))
    torch.set_num_threads(1)
    out = Trainer(load_config(config), root / "run", progress=False).run()
    assert out is not None
    return out


def test_each_embodiment_is_served_with_its_real_spaces(joint):
    ckpt = load_env_checkpoint(joint)
    assert ckpt.model.config.action_dim == 7 + 14 + 2
    lift = make_embodiment_env(ckpt, "lift")
    aloha = make_embodiment_env(ckpt, "aloha")
    assert lift.observation_space == make_spec().observation_space
    assert lift.action_space == make_spec().action_space
    assert aloha.observation_space == make_bimanual_spec().observation_space
    assert aloha.action_space == make_bimanual_spec().action_space
    assert aloha.control_freq == 50.0 and aloha.instruction == "hand the cube over"
    for env in (lift, aloha):
        obs, info = env.reset(seed=3)
        assert env.observation_space.contains(obs) and info["instruction"] == env.instruction
        again, _ = env.reset(seed=3)
        np.testing.assert_array_equal(obs["state"], again["state"])
        obs, reward, *_, info = env.step(env.action_space.sample())
        assert env.observation_space.contains(obs) and np.isfinite(reward)
        assert {"success", "success_prob"} <= set(info)


def test_resets_come_from_the_embodiments_own_episodes(joint):
    env = make_embodiment_env(joint, "aloha")
    layout = env.layout
    stored = env.unwrapped.checkpoint.reset_observations["state"]
    for i in range(len(env._resets)):
        obs, _ = env.reset(options={"reset_index": i})
        np.testing.assert_allclose(obs["state"], stored[env._resets[i], layout.state_slice("aloha")])
    real = make_bimanual_episode(4, seed=9)["final_obs"]
    obs, _ = env.reset(options={"observation": real})
    np.testing.assert_array_equal(obs["top_image"], real["top_image"])
    with pytest.raises(ValueError, match="reset_index"):
        env.reset(options={"reset_index": len(env._resets)})
    with pytest.raises(ValueError, match="one of"):
        env.reset(options={"observation": real, "reset_index": 0})


def test_bad_actions_are_refused_and_change_nothing(joint):
    env = make_embodiment_env(joint, "lift", max_episode_steps=3)
    env.reset(seed=0)
    with pytest.raises(InvalidAction):
        env.step(np.zeros(23, np.float32))  # the unified width is not this embodiment's
    with pytest.raises(InvalidAction):
        env.step(np.full(7, np.nan, np.float32))
    assert env.unwrapped.core.steps[0] == 0
    env.step(np.zeros(7, np.float32))
    assert env.unwrapped.core.steps[0] == 1
    assert env.unwrapped.max_episode_steps == 3  # the limit that was asked for
    # By default each embodiment keeps its own real env's limit.
    assert make_embodiment_env(joint, "aloha").unwrapped.max_episode_steps == 40
    assert make_embodiment_env(joint, "lift").unwrapped.max_episode_steps == 50


def test_wrong_checkpoints_and_names_are_named(joint, tmp_path):
    with pytest.raises(ValueError, match=r"unknown embodiment 'panda'; .*\['lift', 'aloha'\]"):
        make_embodiment_env(joint, "panda")
    with pytest.raises(ValueError, match="--embodiment"):
        open_env_pair(str(joint))
    single = Trainer(load_config(write_config(tmp_path, write_data(tmp_path / "e.hdf5", episodes=3))),
                     tmp_path / "run", progress=False).run()
    with pytest.raises(CheckpointError, match="multi-embodiment"):
        EmbodimentEnv(ImaginedEnv(single), "lift")
    with pytest.raises(ValueError, match="multi-embodiment"):
        open_env_pair(str(single), embodiment="lift")
