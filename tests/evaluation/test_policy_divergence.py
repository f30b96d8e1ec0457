"""How differently a policy acts on imagined observations: the input mixtures and the script."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from kairos_gym.data.episodes import EpisodeWriter
from kairos_gym.eval.policy_divergence import main
from kairos_gym.evaluation.policy_divergence import INPUTS, policy_divergence, summarize
from kairos_gym.imagined.checkpoint import load_env_checkpoint
from kairos_gym.policies.base import Policy
from kairos_gym.policies.learned import BCConfig, train_bc
from tests.imagined_helpers import sample_actions, write_checkpoint

STEPS = 6


@pytest.fixture(scope="module")
def ckpt_dir(tmp_path_factory) -> Path:
    return write_checkpoint(tmp_path_factory.mktemp("divergence") / "ckpt")


@pytest.fixture(scope="module")
def ckpt(ckpt_dir):
    torch.set_num_threads(1)
    return load_env_checkpoint(ckpt_dir)


@pytest.fixture(scope="module")
def episodes(ckpt, tmp_path_factory) -> str:
    """Two "recorded" episodes in the checkpoint's spaces: random frames and states, random
    actions (what a real rollout file holds, without a simulator)."""
    path = tmp_path_factory.mktemp("episodes") / "roll.hdf5"
    rng = np.random.default_rng(0)
    with EpisodeWriter(str(path), ckpt.env_spec) as writer:
        for i in range(2):
            obs = {
                "agentview_image": rng.integers(0, 256, (STEPS, 16, 16, 3), dtype=np.uint8),
                "state": rng.uniform(-1, 1, (STEPS, 8)).astype(np.float32),
            }
            writer.write_episode(
                obs=obs, actions=sample_actions(STEPS, seed=i), rewards=np.zeros(STEPS),
                dones=np.arange(STEPS) == STEPS - 1, success=np.zeros(STEPS, bool),
                states=np.zeros((STEPS, 3)),
                final_obs={"agentview_image": obs["agentview_image"][-1], "state": obs["state"][-1]},
                final_state=np.zeros(3), seed=i,
            )
    return str(path)


class _Reads(Policy):
    """A memoryless policy whose action depends only on the named inputs."""

    def __init__(self, image: bool, state: bool) -> None:
        self.image, self.state = image, state

    def act(self, observation, instruction=""):
        value = 0.0
        if self.image:
            value += observation["agentview_image"].astype(np.float32).mean() / 255.0
        if self.state:
            value += float(observation["state"].sum())
        return np.full((2, 7), value, np.float32)  # a chunk: its first action is compared


def test_the_mixtures_isolate_the_input_a_policy_reads(ckpt, episodes):
    constant = policy_divergence(ckpt, _Reads(False, False), episodes)
    # A constant policy has no spread to divide by: its divergence is exactly 0 in any unit.
    assert all(np.all(constant.divergence[name] == 0) for name in INPUTS)
    images = policy_divergence(ckpt, _Reads(True, False), episodes)
    assert np.all(images.divergence["imagined_state"] == 0)
    np.testing.assert_allclose(images.divergence["imagined_images"], images.divergence["imagined"])
    assert np.all(images.divergence["imagined"] > 0)
    # The codec of a random tiny model reconstructs poorly, but not as differently as imagining.
    assert np.all(images.divergence["reconstructed_images"] > 0)
    state = policy_divergence(ckpt, _Reads(False, True), episodes, horizon=3)
    assert np.all(state.divergence["imagined_images"] == 0)
    assert np.all(state.divergence["reconstructed_images"] == 0)
    np.testing.assert_allclose(state.divergence["imagined_state"], state.divergence["imagined"])
    assert state.steps.tolist() == [3, 3] and state.per_step["imagined"].shape == (3,)
    assert len(state.names) == 2 and state.names[0] != state.names[1]
    both = summarize([images, state])
    assert both["episodes"] == 4 and both["steps"] == 2 * STEPS + 6


def test_a_learned_policy_and_the_script(ckpt_dir, ckpt, episodes, tmp_path, capsys):
    policy = train_bc(episodes, BCConfig(steps=3, batch_size=4), progress=False)
    result = policy_divergence(ckpt, policy, episodes, max_episodes=1)
    assert len(result.names) == 1 and result.steps.tolist() == [STEPS]
    assert all(np.isfinite(result.divergence[name]).all() for name in INPUTS)
    assert result.action_scale.shape == (7,)
    policy.save(tmp_path / "bc")
    out = tmp_path / "div.json"
    assert main(["--checkpoint", str(ckpt_dir), "--policy", f"bc:{tmp_path / 'bc'}",
                 "--data", episodes, "--horizon", "2", "--output", str(out)]) == 0
    assert "roll.hdf5" in capsys.readouterr().out
    report = json.loads(out.read_text())
    assert report["benchmark"] == "policy_divergence" and report["all"]["steps"] == 4
    assert set(report["files"][episodes]["per_step"]) == set(INPUTS)
    # Execution modifiers are refused: the policy is judged on what it would do.
    assert main(["--checkpoint", str(ckpt_dir), "--policy", f"bc:{tmp_path / 'bc'}+noise=0.3",
                 "--data", episodes]) == 2
    assert "execution modifiers" in capsys.readouterr().err


def test_bad_inputs_are_refused(ckpt, episodes, tmp_path):
    with pytest.raises(ValueError, match="horizon"):
        policy_divergence(ckpt, _Reads(True, True), episodes, horizon=0)
    with pytest.raises(ValueError, match="max_episodes"):
        policy_divergence(ckpt, _Reads(True, True), episodes, max_episodes=0)
    from kairos_gym.errors import DatasetError

    with pytest.raises(DatasetError):
        policy_divergence(ckpt, _Reads(True, True), str(tmp_path / "missing.hdf5"))
