"""Training on data whose observation has several non-image keys: the state the model learns
is every non-image key of the env spec, and the checkpoint, loading and open-loop evaluation
all read the same width."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch

from kairos_gym.data import ObservationKeys, load_episodes
from kairos_gym.data.episodes import EpisodeWriter
from kairos_gym.errors import DatasetError
from kairos_gym.evaluation.open_loop import open_loop_eval
from kairos_gym.imagined.checkpoint import load_env_checkpoint
from kairos_gym.train.trainer import Trainer, load_config
from tests.data.conftest import make_multikey_episode, make_multikey_spec
from tests.train.conftest import write_config, write_data


def test_a_run_on_several_state_keys_writes_a_checkpoint_of_their_width(tmp_path):
    data = write_data(tmp_path / "multi.hdf5", multikey=True)
    keys = ObservationKeys.from_spec(make_multikey_spec())
    config = load_config(write_config(tmp_path, data))
    assert config.model.state_dim == keys.state_width == 10
    torch.set_num_threads(1)
    trainer = Trainer(config, tmp_path / "run", progress=False)
    assert trainer.keys == keys
    assert trainer._dataset(2, "train")[0]["state"].shape == (2, 10)
    out = trainer.run()

    loaded = load_env_checkpoint(out)
    assert loaded.model.config.state_dim == 10
    assert loaded.state_keys == ("eef_pos", "gripper", "joints", "n_contacts")
    assert loaded.observation_keys == keys
    # The normalisation was fitted on all ten values (not left at identity, not 9 wide).
    assert loaded.model.dit.state_std.shape == (10,)
    assert not torch.equal(loaded.model.dit.state_std, torch.ones(10))
    resets = loaded.reset_observations
    assert resets["n_contacts"].shape == (3,) and resets["joints"].shape == (3, 2, 2)
    # The held-out evaluation during training scored the state head.
    records = [
        json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
    ]
    evals = [r["eval"] for r in records if r["stage"] == "world_model" and "eval" in r]
    assert "state_mae" in evals[-1] and np.isfinite(evals[-1]["state_mae"])

    episodes = load_episodes(
        data,
        loaded.image_key,
        split="all",
        min_steps=3,
        max_episodes=2,
        state_keys=loaded.state_keys,
    )
    assert episodes[0]["state"].shape[1] == loaded.model.config.state_dim
    result = open_loop_eval(loaded.model, episodes, horizon=3, progress=False)
    assert result.state_error.shape == (2, 3) and np.isfinite(result.state_mae)


def _write_multikey(path: Path, with_joints: bool, episodes: int = 6, steps: int = 12) -> Path:
    """``write_data(multikey=True)``'s episodes; with ``joints`` recorded as an env option
    adds it (``joint_obs``), or without the key and the option, as an older recording."""
    spec = make_multikey_spec()
    if with_joints:
        spec = dataclasses.replace(spec, env_kwargs={**spec.env_kwargs, "joint_obs": True})
    else:
        spaces = {k: v for k, v in spec.observation_space.spaces.items() if k != "joints"}
        spec = dataclasses.replace(spec, observation_space=gym.spaces.Dict(spaces))
    with EpisodeWriter(str(path), spec) as writer:
        for i in range(episodes):
            ep = make_multikey_episode(steps, seed=i + 10 * with_joints)
            rng = np.random.default_rng(100 + i)
            ep["obs"]["agentview_image"] = ep["obs"]["agentview_image"] + rng.integers(
                0, 40, ep["obs"]["agentview_image"].shape, dtype=np.uint8)
            if not with_joints:
                del ep["obs"]["joints"], ep["final_obs"]["joints"]
            writer.write_episode(**ep, seed=i)
    return path


def test_state_keys_train_files_with_and_without_a_key_left_out(tmp_path):
    new = _write_multikey(tmp_path / "joints.hdf5", with_joints=True)
    old = _write_multikey(tmp_path / "plain.hdf5", with_joints=False)
    config = write_config(tmp_path, new)
    text = config.read_text().replace(f'paths = ["{new}"]', f'paths = ["{new}", "{old}"]')
    config.write_text(text)
    with pytest.raises(DatasetError, match="different environment"):
        load_config(config)  # every key of the data: the two files differ

    config.write_text(text.replace("[data]\n", '[data]\nstate_keys = ["n_contacts", "eef_pos", "gripper"]\n'))
    loaded_config = load_config(config)
    assert loaded_config.data.state_keys == ("n_contacts", "eef_pos", "gripper")
    assert loaded_config.model.state_dim == 3 + 2 + 1
    torch.set_num_threads(1)
    out = Trainer(loaded_config, tmp_path / "run", progress=False).run()

    loaded = load_env_checkpoint(out)
    # The space's order, not the config's; the key and the option that adds it are gone.
    assert loaded.state_keys == ("eef_pos", "gripper", "n_contacts")
    assert loaded.model.config.state_dim == 6
    assert "joints" not in loaded.env_spec.observation_space.spaces
    assert "joint_obs" not in loaded.env_spec.env_kwargs
    assert set(loaded.reset_observations) == {"agentview_image", "eef_pos", "gripper", "n_contacts"}


def test_state_keys_must_be_keys_of_the_data(tmp_path):
    data = _write_multikey(tmp_path / "joints.hdf5", with_joints=True, episodes=2)
    config = write_config(tmp_path, data)
    text = config.read_text()
    for keys, match in (('["eef_pos", "wrist"]', "wrist"), ('["agentview_image"]', "agentview_image")):
        config.write_text(text.replace("[data]\n", f"[data]\nstate_keys = {keys}\n"))
        with pytest.raises(DatasetError, match=match):
            load_config(config)
    config.write_text(text.replace("[data]\n", '[data]\nstate_keys = "eef_pos"\n'))
    with pytest.raises(ValueError, match="must be a list"):
        load_config(config)
