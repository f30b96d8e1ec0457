"""Tests of kairos_gym.evaluation.open_loop: alignment of frames, actions and labels (with an oracle model
that knows the synthetic episodes' pixel code), scoring episodes loaded from files, and the
evaluation of a real tiny world model (determinism, batching, mode restore, errors). Loading
itself is tested in tests/data/test_loading.py."""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np
import pytest
import torch

from kairos_gym.data import ObservationKeys, load_episodes
from kairos_gym.data.episodes import EpisodeWriter
from kairos_gym.errors import ShapeError
from kairos_gym.evaluation.metrics import SSIM_C1
from kairos_gym.evaluation.open_loop import PSNR_CAP_DB, open_loop_eval
from kairos_gym.model import WorldModel, WorldModelConfig
from tests.data.conftest import make_episode, make_multikey_episode, make_multikey_spec, make_spec
from tests.model.conftest import randomize_

STATE_DIM = 9  # make_spec's "state" width


def episode_dict(T: int, name: str = "ep") -> dict[str, Any]:
    """An episode in open_loop_eval's format whose frame j has every pixel = j and state = j,
    action j = j / 1000 (leads into frame j + 1), reward of step j = j + 1, success from T // 2."""
    raw = make_episode(T)
    frames = np.concatenate(
        [raw["obs"]["agentview_image"], raw["final_obs"]["agentview_image"][None]]
    )
    state = np.repeat(np.arange(T + 1, dtype=np.float32)[:, None], STATE_DIM, axis=1)
    return {
        "name": name,
        "frames": frames,
        "actions": raw["actions"],
        "rewards": raw["rewards"],
        "success": raw["success"],
        "state": state,
    }


class Oracle(WorldModel):
    """Predicts exactly what make_episode recorded, decoding the frame index from the action.

    ``lag`` shifts every prediction one frame back, to prove the scores notice misalignment.
    """

    def __init__(self, T: int, lag: int = 0) -> None:
        super().__init__(WorldModelConfig.preset("tiny", state_dim=STATE_DIM))
        self.T, self.lag = T, lag
        self.observed: list[tuple[torch.Tensor, torch.Tensor | None]] = []

    def observe(self, state, frames, actions=None, generator=None):
        self.observed.append(
            (
                torch.as_tensor(frames).clone(),
                None if actions is None else torch.as_tensor(actions).clone(),
            )
        )
        return state

    def step(self, state, actions, generator=None, settings=None):
        j = torch.round(actions[:, 0] * 1000).long() + 1 - self.lag  # the frame this action made
        frames = (j % 256).to(torch.uint8)[:, None, None, None].expand(-1, 16, 16, 3).contiguous()
        out = {
            "reward": j.float(),  # reward of step j - 1 is j
            "success": ((j - 1) >= self.T // 2).float() * 0.8 + 0.1,
            "done": torch.zeros(len(j)),
            "state": j.float()[:, None].expand(-1, STATE_DIM),
        }
        return frames, out, state


def test_oracle_scores_perfectly_and_the_baseline_matches_closed_form():
    T, K = 20, 8
    episodes = [episode_dict(T, f"e{i}") for i in range(3)]
    res = open_loop_eval(Oracle(T), episodes, horizon=K, batch_size=2, progress=False)
    assert (
        res.psnr.shape == (3, K)
        and res.num_episodes == 3
        and res.episode_names == ["e0", "e1", "e2"]
    )
    assert (res.psnr == PSNR_CAP_DB).all() and np.allclose(res.ssim, 1.0)
    assert res.success_accuracy == 1.0 and res.success_episode_agreement == 1.0
    assert res.reward_mae == 0.0 and res.state_mae == 0.0
    # Repeat-last-frame: real frame k has pixels k, the repeated frame 0: MSE k^2.
    steps = np.arange(1, K + 1)
    assert np.allclose(res.curve("baseline_psnr"), 20 * np.log10(255 / steps))
    constant_ssim = (2 * 0 * steps + SSIM_C1) / (
        0 + steps**2 + SSIM_C1
    )  # flat images: luminance only
    assert np.allclose(res.curve("baseline_ssim"), constant_ssim)


def test_a_one_frame_misalignment_is_caught_by_every_score():
    T, K = 20, 12
    res = open_loop_eval(
        Oracle(T, lag=1), [episode_dict(T)], horizon=K, context_frames=4, progress=False
    )
    assert np.allclose(res.psnr, 20 * math.log10(255))  # every frame off by one gray level
    assert res.reward_mae == 1.0 and res.state_mae == 1.0
    # Labels switch at step T // 2 = 10 (frame 11); the lagged oracle switches one frame late.
    assert res.success_accuracy == pytest.approx(1 - 1 / K)


def test_context_frames_are_observed_with_the_actions_that_led_into_them():
    T, K, c = 20, 5, 3
    model = Oracle(T)
    res = open_loop_eval(
        model, [episode_dict(T), episode_dict(T)], horizon=K, context_frames=c, progress=False
    )
    (first, no_action), (rest, actions) = model.observed
    assert no_action is None and first.shape == (2, 1, 16, 16, 3) and (first == 0).all()
    assert (
        rest.shape == (2, c - 1, 16, 16, 3) and (rest[:, 0] == 1).all() and (rest[:, 1] == 2).all()
    )
    assert torch.allclose(
        actions[:, :, 0], torch.tensor([[0.0, 0.001]] * 2)
    )  # a_0 -> f_1, a_1 -> f_2
    assert (res.psnr == PSNR_CAP_DB).all()
    # Baseline repeats frame c - 1 = 2 against frames 3 .. 7.
    assert np.allclose(res.curve("baseline_psnr"), 20 * np.log10(255 / np.arange(1, K + 1)))


def test_result_serialises_to_strict_json_and_summarises():
    res = open_loop_eval(Oracle(20), [episode_dict(20, "a")], horizon=4, progress=False)
    data = json.loads(json.dumps(res.to_dict(), allow_nan=False))
    assert data["curves"]["step"] == [1, 2, 3, 4] and len(data["curves"]["psnr"]) == 4
    assert data["success"]["step_accuracy"] == 1.0 and data["episodes"][0]["name"] == "a"
    assert data["state_mae"] == 0.0 and data["horizon"] == 4
    text = res.summary()
    assert "horizon 4" in text and "PSNR@1 100.00" in text and "state MAE" in text


def _write_file(path: str, lengths: list[int]) -> str:
    with EpisodeWriter(path, make_spec()) as writer:
        for i, T in enumerate(lengths):
            writer.write_episode(**make_episode(T, seed=i), seed=i)
    return path


def test_episodes_loaded_from_a_file_keep_the_alignment(tmp_path):
    path = _write_file(str(tmp_path / "a.hdf5"), [12, 4])
    full = load_episodes(path, "agentview_image", split="all", min_steps=12)[0]
    res = open_loop_eval(Oracle(12), [full], horizon=12, progress=False)
    assert (res.psnr == PSNR_CAP_DB).all() and res.reward_mae == 0.0 and res.success_accuracy == 1.0


def test_a_state_head_as_wide_as_the_observation_keys_is_scored(tmp_path):
    path = str(tmp_path / "multi.hdf5")
    with EpisodeWriter(path, make_multikey_spec()) as writer:
        writer.write_episode(**make_multikey_episode(6))
    width = ObservationKeys.from_spec(make_multikey_spec()).state_width
    torch.manual_seed(0)
    model = randomize_(WorldModel(WorldModelConfig.preset("tiny", state_dim=width))).eval()
    episodes = load_episodes(path, "agentview", split="all", min_steps=3)
    res = open_loop_eval(model, episodes, horizon=3, progress=False)
    assert res.state_error.shape == (1, 3) and np.isfinite(res.state_mae)
    narrow = randomize_(WorldModel(WorldModelConfig.preset("tiny", state_dim=9))).eval()
    with pytest.raises(ShapeError, match=r"state must be \[>= 4, 9\] .*got \(7, 10\)"):
        open_loop_eval(narrow, episodes, horizon=3, progress=False)


@pytest.fixture(scope="module")
def tiny_model() -> WorldModel:
    torch.manual_seed(0)
    return randomize_(WorldModel(WorldModelConfig.preset("tiny", state_dim=STATE_DIM))).eval()


def test_real_model_batches_like_a_manual_rollout_and_is_seeded(tiny_model):
    T, K = 10, 4
    rng = np.random.default_rng(0)
    episodes = []
    for i in range(3):
        ep = episode_dict(T, f"e{i}")
        ep["frames"] = rng.integers(0, 256, ep["frames"].shape, dtype=np.uint8)
        ep["actions"] = rng.uniform(-1, 1, ep["actions"].shape).astype(np.float32)
        episodes.append(ep)
    tiny_model.train()
    res = open_loop_eval(
        tiny_model, episodes, horizon=K, batch_size=2, seed=5, keep_frames=True, progress=False
    )
    assert tiny_model.training  # the caller's mode is restored
    tiny_model.eval()
    assert res.frames.shape == (3, K, 16, 16, 3) and res.state_error.shape == (3, K)
    assert np.isfinite(res.psnr).all() and (res.psnr < PSNR_CAP_DB).all()
    # The first batch is exactly observe(frame 0) + rollout(actions 0..K-1) with the same noise.
    gen = torch.Generator().manual_seed(5)
    frames = torch.as_tensor(np.stack([e["frames"] for e in episodes[:2]]))
    actions = torch.as_tensor(np.stack([e["actions"] for e in episodes[:2]]))
    state = tiny_model.observe(tiny_model.init_state(2), frames[:, :1], generator=gen)
    expected, _, _ = tiny_model.rollout(state, actions[:, :K], generator=gen)
    # Equal up to float rounding (a rare pixel off by one: the action tensors' strides differ).
    diff = (torch.as_tensor(res.frames[:2]).int() - expected.int()).abs()
    assert diff.max() <= 1 and (diff > 0).float().mean() < 0.01
    again = open_loop_eval(
        tiny_model, episodes, horizon=K, batch_size=2, seed=5, keep_frames=True, progress=False
    )
    assert np.array_equal(again.frames, res.frames) and np.array_equal(again.ssim, res.ssim)
    other = open_loop_eval(
        tiny_model, episodes, horizon=K, batch_size=2, seed=6, keep_frames=True, progress=False
    )
    assert not np.array_equal(other.frames, res.frames)


def test_no_state_score_without_a_state_head():
    torch.manual_seed(0)
    model = WorldModel(WorldModelConfig.preset("tiny")).eval()
    res = open_loop_eval(model, [episode_dict(6)], horizon=3, progress=False)
    assert res.state_error is None and res.state_mae is None
    assert json.loads(json.dumps(res.to_dict()))["state_mae"] is None


def test_bad_input_is_rejected():
    model = Oracle(20)
    ep = episode_dict(6, "short")
    with pytest.raises(
        ShapeError,
        match=r"episode 0 \(short\): has 7 frames but context_frames=2 and "
        r"horizon=6 need 8",
    ):
        open_loop_eval(model, [ep], horizon=6, context_frames=2, progress=False)
    with pytest.raises(ShapeError, match=r"frames must be uint8 \[T \+ 1, 16, 16, 3\]"):
        open_loop_eval(model, [{**ep, "frames": ep["frames"][:, :8]}], horizon=2, progress=False)
    with pytest.raises(ShapeError, match=r"actions must be \[>= 2, 7\], got \(6, 6\)"):
        open_loop_eval(model, [{**ep, "actions": ep["actions"][:, :6]}], horizon=2, progress=False)
    with pytest.raises(ShapeError, match=r"'success' is missing"):
        open_loop_eval(
            model, [{k: v for k, v in ep.items() if k != "success"}], horizon=2, progress=False
        )
    with pytest.raises(ShapeError, match=r"state must be \[>= 3, 9\]"):
        open_loop_eval(model, [{**ep, "state": ep["state"][:, :2]}], horizon=2, progress=False)
    with pytest.raises(ValueError, match="horizon must be a positive integer, got 0"):
        open_loop_eval(model, [ep], horizon=0, progress=False)
    with pytest.raises(ValueError, match="at least one episode"):
        open_loop_eval(model, [], horizon=2, progress=False)
