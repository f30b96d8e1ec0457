"""Replaying recorded episodes through the embedded lift-objects model's dynamics alone."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest

from kairos_gym.data.episodes import EpisodeWriter
from kairos_gym.eval.dynamics_replay import main
from kairos_gym.evaluation.dynamics_replay import replay_dynamics, summarize
from kairos_gym.imagined.checkpoint import EMBEDDED_CHECKPOINTS, load_env_checkpoint


@pytest.fixture(scope="module")
def ckpt():
    return load_env_checkpoint(EMBEDDED_CHECKPOINTS["lift-objects"])


def _still_arm_file(ckpt, path: Path, labelled_success: bool, episodes: int = 3, steps: int = 30) -> str:
    """State-only episodes of a still arm from the checkpoint's real resets, success as given."""
    box = {k: gym.spaces.Box(-np.inf, np.inf, ckpt.reset_observations[k].shape[1:], np.float32)
           for k in ("object_state", "state")}
    spec = dataclasses.replace(ckpt.env_spec, observation_space=gym.spaces.Dict(box), cameras=(),
                               image_size=None, env_kwargs={"cameras": [], "max_episode_steps": 80,
                                                            "object_obs": True})
    with EpisodeWriter(str(path), spec) as writer:
        for i in range(episodes):
            obs = {k: np.repeat(ckpt.reset_observations[k][i : i + 1], steps, 0) for k in box}
            writer.write_episode(
                obs=obs, actions=np.zeros((steps, 7), np.float32),
                rewards=np.zeros(steps), dones=np.zeros(steps, bool),
                success=np.full(steps, labelled_success), states=np.zeros((steps, 4)),
                final_obs={k: v[-1] for k, v in obs.items()}, final_state=np.zeros(4), seed=i,
            )
    return str(path)


def test_a_still_arm_replays_as_a_failure_and_disagrees_with_a_false_success_label(ckpt, tmp_path):
    honest = replay_dynamics(ckpt, _still_arm_file(ckpt, tmp_path / "still.hdf5", False))
    assert not honest.imagined_success.any() and honest.agreement == 1.0
    assert honest.final_state_error.shape == (3,) and np.isfinite(honest.final_state_error).all()
    assert (honest.peak_state_error >= honest.final_state_error).all()
    assert [len(c) for c in honest.state_errors] == [len(c) for c in honest.state_errors[:1]] * 3
    at = summarize([honest], error_steps=(0, 2, 10_000))["state_error_at"]
    # Starts on the recorded state (up to the rounding of the state normalisation).
    assert at[0] == pytest.approx(0.0, abs=1e-6) and at[2] >= 0.0 and at[10_000] is None
    # Per entry: the differences hold the distances, entry by entry.
    width = ckpt.observation_keys.state_width
    assert all(d.shape == (len(c), width) for d, c in zip(honest.differences, honest.state_errors))
    entry = summarize([honest], error_steps=(2, 10_000), entries=True)["entry_error_at"]
    assert len(entry[2]) == width and entry[10_000] is None
    np.testing.assert_allclose(entry[2], np.abs(np.stack([d[2] for d in honest.differences])).mean(0))
    lying = replay_dynamics(ckpt, _still_arm_file(ckpt, tmp_path / "lie.hdf5", True))
    assert lying.real_success.all() and lying.agreement == 0.0
    both = summarize([honest, lying])
    assert both["episodes"] == 6 and both["real_success"] == 0.5 and both["imagined_success"] == 0.0


def test_the_script_reports_and_refuses_a_model_without_state_outcomes(ckpt, tmp_path, capsys):
    data = _still_arm_file(ckpt, tmp_path / "still.hdf5", False)
    out = tmp_path / "r.json"
    assert main(["--checkpoint", str(EMBEDDED_CHECKPOINTS["lift-objects"]), "--data", data,
                 "--error-steps", "5", "--entry-errors", "--output", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "still.hdf5" in printed and "object_state[0]" in printed and out.exists()
    report = json.loads(out.read_text())
    width = len(report["state_entries"])
    assert report["state_entries"][0] == "object_state[0]"
    assert len(next(iter(report["files"].values()))["entry_error_at"]["5"]) == width
    assert main(["--data", data]) == 2  # the default model reads success off its frames
    assert "state_outcomes" in capsys.readouterr().err
    # Entry errors are reported at the error steps: asked for without them, a clear refusal.
    assert main(["--checkpoint", str(EMBEDDED_CHECKPOINTS["lift-objects"]), "--data", data,
                 "--entry-errors"]) == 2
    assert "--error-steps" in capsys.readouterr().err


def test_a_stochastic_dynamics_replays_the_draws_of_its_seed(ckpt, tmp_path):
    # The embedded model draws its arm's state: a seed repeats a replay, another seed moves it.
    assert ckpt.model.dit.proprio_dynamics.stochastic
    data = _still_arm_file(ckpt, tmp_path / "still.hdf5", False)
    first, again = (replay_dynamics(ckpt, data, seed=3) for _ in range(2))
    other = replay_dynamics(ckpt, data, seed=4)
    np.testing.assert_array_equal(first.final_state_error, again.final_state_error)
    assert not np.allclose(first.final_state_error, other.final_state_error)
