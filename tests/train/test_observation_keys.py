"""Training on data whose observation has several non-image keys: the state the model learns
is every non-image key of the env spec, and the checkpoint, loading and open-loop evaluation
all read the same width."""

from __future__ import annotations

import json

import numpy as np
import torch

from kairos_gym.data import ObservationKeys, load_episodes
from kairos_gym.evaluation.open_loop import open_loop_eval
from kairos_gym.imagined.checkpoint import load_env_checkpoint
from kairos_gym.train.trainer import Trainer, load_config
from tests.data.conftest import make_multikey_spec
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
