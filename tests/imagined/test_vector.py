"""Tests of make_vec / ImaginedVectorEnv: batching, Gymnasium autoreset semantics, errors."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium.vector import AutoresetMode, SyncVectorEnv

import kairos_gym
from kairos_gym.data.spaces import spaces_equal
from kairos_gym.errors import InvalidAction, ResetNeeded, ShapeError
from kairos_gym.imagined.checkpoint import load_env_checkpoint
from kairos_gym.imagined.env import ImaginedEnv
from kairos_gym.imagined.vector import ImaginedVectorEnv, make_vec
from tests.imagined_helpers import sample_actions, write_checkpoint

N = 3


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    return load_env_checkpoint(write_checkpoint(tmp_path_factory.mktemp("vector") / "lift"))


def sync_twin(ckpt, n: int = N, mode=AutoresetMode.NEXT_STEP, **kwargs) -> SyncVectorEnv:
    """Gymnasium's reference implementation over single ImaginedEnvs."""
    return SyncVectorEnv(
        [lambda: ImaginedEnv(ckpt, **kwargs) for _ in range(n)], autoreset_mode=mode
    )


def assert_obs_close(a, b):
    """Frames within 1 grey level (batched matmuls round differently), state to 1e-4."""
    assert list(a) == list(b)
    image = np.abs(a["agentview_image"].astype(int) - b["agentview_image"].astype(int))
    assert image.max() <= 1 and image.mean() < 0.01
    np.testing.assert_allclose(a["state"], b["state"], atol=1e-4)


def assert_infos_match(a: dict, b: dict):
    """Same keys, same masks, close values (recursively, final_obs included)."""
    assert sorted(a) == sorted(b)
    for key, x in a.items():
        y = b[key]
        if isinstance(x, dict):
            assert_infos_match(x, y)
        elif key == "final_obs":
            for u, v in zip(x, y):
                assert (u is None) == (v is None)
                if u is not None:
                    assert_obs_close(u, v)
        elif x.dtype.kind == "f":
            np.testing.assert_allclose(x, y, atol=1e-4)
        else:
            np.testing.assert_array_equal(x, y, err_msg=key)


def test_make_vec_builds_one_batched_env(ckpt):
    envs = kairos_gym.make_vec(num_envs=N, checkpoint=ckpt, sample_steps=1, render_mode="rgb_array")
    assert isinstance(envs, ImaginedVectorEnv) and envs.num_envs == N and envs.model is ckpt.model
    assert envs.settings.steps == 1 and envs.metadata["autoreset_mode"] is AutoresetMode.NEXT_STEP
    assert envs.metadata["render_fps"] == 20.0
    assert spaces_equal(envs.single_observation_space, ckpt.env_spec.observation_space)
    assert spaces_equal(envs.single_action_space, ckpt.env_spec.action_space)
    assert envs.observation_space["agentview_image"].shape == (N, 16, 16, 3)
    assert envs.action_space.shape == (N, 7)
    obs, infos = envs.reset(seed=0)
    assert envs.observation_space.contains(obs)
    assert envs.world_state.batch_size == N and envs.world_state.frame_index.tolist() == [1] * N
    assert infos["success"].tolist() == [False] * N and infos["_success"].all()
    assert list(infos["instruction"]) == ["lift the red cube"] * N
    obs, rewards, terminated, truncated, infos = envs.step(envs.action_space.sample())
    assert envs.observation_space.contains(obs)
    assert rewards.dtype == np.float64 and terminated.dtype == bool and truncated.dtype == bool
    assert set(infos) == {
        "success",
        "_success",
        "is_success",
        "_is_success",
        "success_prob",
        "_success_prob",
        "done_prob",
        "_done_prob",
        "instruction",
        "_instruction",
    }
    frames = envs.render()
    assert isinstance(frames, tuple) and len(frames) == N
    np.testing.assert_array_equal(np.stack(frames), obs["agentview_image"])
    same = make_vec(num_envs=2, checkpoint=ckpt, autoreset_mode="same_step")
    assert same.metadata["autoreset_mode"] is AutoresetMode.SAME_STEP


def test_rows_match_single_envs_with_the_same_seeds(ckpt):
    seeds = [11, 5, 11]  # rows 0 and 2 share a seed: identical trajectories
    envs = ImaginedVectorEnv(ckpt, N, done_threshold=1.0)
    singles = [ImaginedEnv(ckpt, done_threshold=1.0) for _ in range(N)]
    obs, _ = envs.reset(seed=seeds)
    for i, (env, seed) in enumerate(zip(singles, seeds)):
        start, _ = env.reset(seed=seed)
        for key in start:
            np.testing.assert_array_equal(obs[key][i], start[key])
    for actions in sample_actions(5, N):
        actions[2] = actions[0]
        obs, rewards, _, _, infos = envs.step(actions)
        for i, env in enumerate(singles):
            single, reward, _, _, info = env.step(actions[i])
            assert_obs_close({k: v[i] for k, v in obs.items()}, single)
            assert rewards[i] == pytest.approx(reward, abs=1e-5)
            assert infos["done_prob"][i] == pytest.approx(info["done_prob"], abs=1e-5)
    np.testing.assert_array_equal(obs["agentview_image"][0], obs["agentview_image"][2])
    assert not np.array_equal(obs["agentview_image"][0], obs["agentview_image"][1])


def test_a_stochastic_dynamics_draws_each_row_from_its_own_seed(tmp_path):
    # The carried state is drawn from each row's generator: a row is the single env of its
    # seed, rows that share a seed and actions stay identical, other seeds draw otherwise.
    ckpt = load_env_checkpoint(write_checkpoint(tmp_path / "stochastic", proprio_conditioning=True,
                                                proprio_stochastic=True, proprio_hidden=16))
    dynamics = ckpt.model.dit.proprio_dynamics
    with torch.no_grad():
        dynamics.reset_noise_head(torch.full((dynamics.state_dim,), 0.1))
    seeds = [11, 5, 11]
    envs = ImaginedVectorEnv(ckpt, N, done_threshold=1.0)
    single = ImaginedEnv(ckpt, done_threshold=1.0)
    obs, _ = envs.reset(seed=seeds)
    start = single.reset(seed=5)[0]["state"]
    for k, step in enumerate(sample_actions(4, seed=3)):
        actions = np.repeat(step[None], N, axis=0)
        obs, *_ = envs.step(actions)
        alone, *_ = single.step(step)
        assert_obs_close({k: v[1] for k, v in obs.items()}, alone)
        if k == 0:  # a draw, not the prediction
            dit = ckpt.model.dit
            s = dit.normalize_state(torch.as_tensor(start)[None])
            mean = dit.denormalize_state(dynamics(s, s, torch.as_tensor(step)[None]))[0].detach().numpy()
            assert np.abs(alone["state"] - mean).max() > 1e-3
    np.testing.assert_allclose(obs["state"][0], obs["state"][2], atol=1e-5)
    # draw_state=False takes the prediction: every seed then carries the same state.
    mean = ImaginedVectorEnv(ckpt, 2, done_threshold=1.0, draw_state=False)
    mean.reset(seed=[5, 5])
    assert not mean.core.settings.draw_state
    first = mean.step(np.repeat(sample_actions(1, seed=3), 2, axis=0))[0]["state"]
    s = ckpt.model.dit.normalize_state(torch.as_tensor(start)[None])
    expected = ckpt.model.dit.denormalize_state(dynamics(s, s, torch.as_tensor(sample_actions(1, seed=3))))
    np.testing.assert_allclose(first[0], expected[0].detach().numpy(), atol=1e-5)
    with pytest.raises(TypeError, match="draw_state"):
        ImaginedEnv(ckpt, draw_state="no")


@pytest.mark.parametrize("mode", [AutoresetMode.NEXT_STEP, AutoresetMode.SAME_STEP])
def test_autoreset_matches_gymnasiums_sync_vector_env(ckpt, mode):
    # Episodes of 2 steps, and a staggered start so rows end at different steps.
    kwargs = {"max_episode_steps": 2, "done_threshold": 1.0}
    envs = ImaginedVectorEnv(ckpt, N, autoreset_mode=mode, **kwargs)
    twin = sync_twin(ckpt, mode=mode, **kwargs)
    seeds = [3, 4, 5]
    actions = sample_actions(7, N, seed=2)
    a, _ = envs.reset(seed=seeds)
    b, _ = twin.reset(seed=seeds)
    assert_obs_close(a, b)
    a = envs.step(actions[0])
    b = twin.step(actions[0])
    mask = np.array([True, False, False])
    a_obs, a_info = envs.reset(options={"reset_mask": mask})
    b_obs, b_info = twin.reset(options={"reset_mask": mask.copy()})
    assert_obs_close(a_obs, b_obs)
    assert_infos_match(a_info, b_info)
    ends = 0
    for act in actions[1:]:
        a = envs.step(act)
        b = twin.step(act)
        assert_obs_close(a[0], b[0])
        np.testing.assert_allclose(a[1], b[1], atol=1e-5)
        for x, y in zip(a[2:4], b[2:4]):
            np.testing.assert_array_equal(x, y)
        assert_infos_match(a[4], b[4])
        ends += int(a[3].sum())
    assert ends >= 4
    # Rows keep their own frame counters.
    assert len(set(envs.world_state.frame_index.tolist())) > 1


def test_next_step_autoreset_semantics(ckpt):
    envs = ImaginedVectorEnv(ckpt, 2, max_episode_steps=1, done_threshold=1.0)
    envs.reset(seed=[0, 1])
    _, rewards, terminated, truncated, _ = envs.step(sample_actions(1, 2)[0])
    assert truncated.tolist() == [True, True] and not terminated.any()
    # The next step resets both rows; their actions are ignored (even NaN).
    obs, rewards, terminated, truncated, infos = envs.step(np.full((2, 7), np.nan, np.float32))
    assert rewards.tolist() == [0.0, 0.0] and not terminated.any() and not truncated.any()
    assert set(infos) == {
        "success", "_success", "is_success", "_is_success", "instruction", "_instruction"
    }
    stored = ckpt.reset_observations["state"]
    for i in range(2):
        assert any(np.array_equal(obs["state"][i], s) for s in stored)
    assert envs.world_state.frame_index.tolist() == [1, 1] and envs.episode_steps.tolist() == [0, 0]
    # Stepping again works normally.
    assert envs.step(sample_actions(1, 2)[0])[3].tolist() == [True, True]


def test_terminated_rows_and_same_step_final_info(ckpt):
    envs = ImaginedVectorEnv(ckpt, 2, done_threshold=0.0, autoreset_mode="same_step")
    envs.reset(seed=0)
    obs, _, terminated, truncated, infos = envs.step(sample_actions(1, 2)[0])
    assert terminated.tolist() == [True, True] and not truncated.any()
    assert infos["_final_obs"].tolist() == [True, True]
    assert set(infos["final_info"]) == {
        "success",
        "_success",
        "is_success",
        "_is_success",
        "success_prob",
        "_success_prob",
        "done_prob",
        "_done_prob",
        "instruction",
        "_instruction",
    }
    assert (infos["final_info"]["done_prob"] > 0).all()
    for i in range(2):  # obs is the reset observation, the final one is in the info
        assert any(np.array_equal(obs["state"][i], s) for s in ckpt.reset_observations["state"])
        assert not np.array_equal(infos["final_obs"][i]["state"], obs["state"][i])
    assert infos["success"].tolist() == [False, False]


def test_disabled_autoreset_needs_a_masked_reset(ckpt):
    envs = ImaginedVectorEnv(
        ckpt, 2, max_episode_steps=1, done_threshold=1.0, autoreset_mode="disabled"
    )
    envs.reset(seed=0)
    envs.step(sample_actions(1, 2)[0])
    with pytest.raises(ResetNeeded, match=r"env\(s\) \[0, 1\] have ended"):
        envs.step(sample_actions(1, 2)[0])
    envs.reset(options={"reset_mask": np.array([True, True])})
    envs.step(sample_actions(1, 2)[0])


def test_reset_options(ckpt):
    envs = ImaginedVectorEnv(ckpt, N, done_threshold=1.0)
    stored = ckpt.reset_observations
    obs, _ = envs.reset(options={"reset_index": [2, 0, 1]})
    np.testing.assert_array_equal(obs["state"], stored["state"][[2, 0, 1]])
    obs, _ = envs.reset(options={"reset_index": 1})
    np.testing.assert_array_equal(obs["agentview_image"], stored["agentview_image"][[1, 1, 1]])
    given = {"agentview_image": np.full((N, 16, 16, 3), 9, np.uint8), "state": np.ones((N, 8))}
    obs, _ = envs.reset(options={"observation": given})
    assert (
        obs["state"].dtype == np.float32
        and (obs["state"] == 1).all()
        and (obs["agentview_image"] == 9).all()
    )
    envs.step(sample_actions(1, N)[0])
    envs.step(sample_actions(1, N)[0])
    before = envs.world_state
    obs, infos = envs.reset(
        seed=[None, 7, None],
        options={"reset_mask": np.array([False, True, False]), "reset_index": [0, 2, 0]},
    )
    np.testing.assert_array_equal(obs["state"][1], stored["state"][2])
    assert (obs["state"][[0, 2]] != 1).any()  # the others kept their imagined state
    assert infos["_success"].tolist() == [False, True, False]
    assert envs.world_state.frame_index.tolist() == [3, 1, 3] and envs.episode_steps.tolist() == [
        2,
        0,
        2,
    ]
    assert torch.equal(
        envs.world_state.select([0, 2])["blocks.3.state"], before.select([0, 2])["blocks.3.state"]
    )


@pytest.mark.parametrize(
    "seed, options, error, match",
    [
        ([1, 2], None, ValueError, r"one entry per env \(3\), got 2"),
        ("0", None, TypeError, "seed must be None, an int or a list"),
        ([1, -1, 2], None, ValueError, "non-negative"),
        (None, {"reset_mask": [True, False, True]}, TypeError, "numpy bool array"),
        (None, {"reset_mask": np.array([True, False])}, ValueError, r"shape \(3,\)"),
        (None, {"reset_mask": np.zeros(3, bool)}, ValueError, "at least one"),
        (None, {"colour": 1}, ValueError, r"unknown reset option\(s\) \['colour'\]"),
        (None, {"reset_index": [0, 1]}, ValueError, "one index per env"),
        (None, {"reset_index": 5}, ValueError, "integer in 0..2"),
        (
            None,
            {"observation": {"state": np.zeros((3, 8))}},
            ShapeError,
            "must be a dict with keys",
        ),
        (
            None,
            {
                "observation": {
                    "agentview_image": np.zeros((16, 16, 3), np.uint8),
                    "state": np.zeros((3, 8)),
                }
            },
            ShapeError,
            r"\['agentview_image'\] must have shape \(3, 16, 16, 3\)",
        ),
        (
            None,
            {
                "observation": {
                    "agentview_image": np.zeros((3, 16, 16, 3), np.uint8),
                    "state": np.array([[0.0] * 8, [np.nan] * 8, [0.0] * 8]),
                }
            },
            ShapeError,
            r"row 1\['state'\] has NaN",
        ),
        (None, [1], TypeError, "must be a dict"),
    ],
)
def test_bad_resets_raise_and_change_nothing(ckpt, seed, options, error, match):
    envs = ImaginedVectorEnv(ckpt, N, done_threshold=1.0)
    envs.reset(seed=0)
    envs.step(sample_actions(1, N)[0])
    state, steps = envs.world_state, envs.episode_steps
    with pytest.raises(error, match=match):
        envs.reset(seed=seed, options=options)
    assert envs.world_state is state and envs.episode_steps.tolist() == steps.tolist()


def test_masked_reset_before_the_first_reset_is_refused(ckpt):
    envs = ImaginedVectorEnv(ckpt, 2)
    with pytest.raises(ResetNeeded, match="before resetting some"):
        envs.reset(options={"reset_mask": np.array([True, False])})
    with pytest.raises(ResetNeeded, match="call reset"):
        envs.step(np.zeros((2, 7), np.float32))


@pytest.mark.parametrize(
    "actions, match",
    [
        (np.zeros(7, np.float32), r"shape \(3, 7\) .*got shape \(7,\)"),
        (np.zeros((3, 6), np.float32), r"got shape \(3, 6\)"),
        (np.array([[0.0] * 7, [0.0] * 6 + [np.nan], [0.0] * 7]), r"env 1: action contains NaN"),
        (
            np.array([[0.0] * 7, [0.0] * 7, [2.0] + [0.0] * 6]),
            r"env 2: action entries \[0\] = \[2.0\] are outside",
        ),
        (np.full((3, 7), "x"), "real-valued"),
    ],
)
def test_bad_actions_raise_and_change_nothing(ckpt, actions, match):
    steps = sample_actions(2, N)
    reference = ImaginedVectorEnv(ckpt, N, done_threshold=1.0)
    reference.reset(seed=0)
    expected = [reference.step(a)[0] for a in steps]
    envs = ImaginedVectorEnv(ckpt, N, done_threshold=1.0)
    envs.reset(seed=0)
    envs.step(steps[0])
    state = envs.world_state
    with pytest.raises(InvalidAction, match=match):
        envs.step(actions)
    assert envs.world_state is state
    assert_obs_close(envs.step(steps[1])[0], expected[1])


def test_memory_is_bounded_and_close(ckpt):
    envs = ImaginedVectorEnv(ckpt, 2, max_episode_steps=100, done_threshold=1.0)
    envs.reset(seed=0)
    sizes = []
    for i, a in enumerate(sample_actions(25, 2)):
        envs.step(a)
        if i in (3, 24):
            sizes.append(envs.world_state.nbytes())
    assert sizes[0] == sizes[1]
    envs.close()
    envs.close()
    with pytest.raises(ResetNeeded, match="closed"):
        envs.step(np.zeros((2, 7), np.float32))


def test_bad_constructor_arguments_and_attributes(ckpt):
    with pytest.raises(ValueError, match="num_envs must be a positive integer"):
        ImaginedVectorEnv(ckpt, 0)
    with pytest.raises(ValueError, match="autoreset_mode must be one of"):
        make_vec(num_envs=2, checkpoint=ckpt, autoreset_mode="sometimes")
    with pytest.raises(TypeError, match="unexpected keyword"):
        make_vec(num_envs=2, checkpoint=ckpt, colour="red")
    envs = ImaginedVectorEnv(ckpt, 2, render_mode=None)
    assert envs.get_attr("instruction") == ("lift the red cube",) * 2
    envs.set_attr("done_threshold", [0.25, 0.25])
    assert envs.done_threshold == 0.25
    with pytest.raises(ValueError, match="per-row values must all be equal"):
        envs.set_attr("done_threshold", [0.1, 0.2])
    assert envs.render() is None
    assert "num_envs=2" in repr(envs)


def test_make_vec_delegates_other_ids_to_gymnasium():
    envs = make_vec("CartPole-v1", 2, autoreset_mode="same_step")
    assert isinstance(envs, SyncVectorEnv) and envs.num_envs == 2
    assert envs.metadata["autoreset_mode"] is AutoresetMode.SAME_STEP
    obs, _ = envs.reset(seed=0)
    assert obs.shape == (2, 4)
    envs.close()


@pytest.mark.sim
def test_make_vec_robosuite():
    pytest.importorskip("robosuite")
    envs = make_vec("kairos_gym/Robosuite-Lift-v0", 2, cameras=(), max_episode_steps=3)
    obs, _ = envs.reset(seed=0)
    assert obs["state"].shape == (2, 8)
    assert isinstance(envs.envs[0].unwrapped, gym.Env)
    envs.close()
