"""Tests of ImaginedEnv: spaces, seeding, reset options, stepping, errors, snapshot/restore."""

from __future__ import annotations

import dataclasses
import warnings

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium.utils.env_checker import check_env

import kairos_gym  # noqa: F401  (registers the ids)
from kairos_gym.data.spaces import spaces_equal
from kairos_gym.errors import CheckpointError, InvalidAction, ResetNeeded, ShapeError
from kairos_gym.imagined.checkpoint import load_env_checkpoint
from kairos_gym.imagined.env import ImaginedEnv, ImaginedSnapshot
from tests.imagined_helpers import (
    INSTRUCTION,
    lift_spec,
    sample_actions,
    tiny_model,
    write_checkpoint,
)

LIMIT = 12  # the spec's max_episode_steps


@pytest.fixture(scope="module")
def ckpt_dir(tmp_path_factory):
    return write_checkpoint(tmp_path_factory.mktemp("imagined") / "lift")


@pytest.fixture(scope="module")
def ckpt(ckpt_dir):
    return load_env_checkpoint(ckpt_dir)


def make(ckpt, **kwargs) -> ImaginedEnv:
    kwargs.setdefault("done_threshold", 1.0)  # never terminate unless a test asks for it
    return ImaginedEnv(ckpt, **kwargs)


def run(env: ImaginedEnv, actions: np.ndarray, seed: int = 0):
    obs, _ = env.reset(seed=seed)
    out = [obs]
    for a in actions:
        out.append(env.step(a)[0])
    return out


def assert_same_obs(a, b):
    assert list(a) == list(b)
    for key in a:
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)


@pytest.mark.filterwarnings("ignore:kairos_gym/Imagined-v0 is registered")
def test_gym_make_passes_options_and_spaces_are_the_real_envs(ckpt_dir, ckpt):
    env = gym.make(
        "kairos_gym/Imagined-v0",
        checkpoint=str(ckpt_dir),
        render_mode="rgb_array",
        sample_steps=3,
        success_threshold=0.25,
        done_threshold=0.75,
    )
    base = env.unwrapped
    assert isinstance(base, ImaginedEnv)
    assert (
        base.settings.steps == 3 and base.success_threshold == 0.25 and base.done_threshold == 0.75
    )
    assert base.render_mode == "rgb_array"
    # gym.make's TimeLimit truncates (at the registered limit): the env keeps none of its own.
    assert base.max_episode_steps is None and env.spec.max_episode_steps == 80
    spec = lift_spec()
    assert spaces_equal(env.observation_space, spec.observation_space)
    assert spaces_equal(env.action_space, spec.action_space)
    assert base.instruction == INSTRUCTION and base.control_freq == 20.0
    assert env.metadata["render_fps"] == 20.0 and env.metadata["render_modes"] == ["rgb_array"]
    # A loaded checkpoint is shared, not copied; gym.make passes it through untouched.
    a = gym.make("kairos_gym/Imagined-v0", checkpoint=ckpt)
    b = ImaginedEnv(ckpt, max_episode_steps=5)
    assert a.unwrapped.model is ckpt.model and b.model is ckpt.model and b.max_episode_steps == 5


def test_check_env_passes(ckpt):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # the state is unbounded on purpose
        check_env(make(ckpt, render_mode="rgb_array"))
        check_env(make(ckpt, done_threshold=0.5))


def test_reset_returns_stored_or_given_observation_exactly(ckpt):
    env = make(ckpt)
    stored = ckpt.reset_observations
    for i in range(ckpt.num_resets):
        obs, info = env.reset(options={"reset_index": i})
        assert_same_obs(obs, {k: v[i] for k, v in stored.items()})
        assert info == {"success": False, "is_success": False, "instruction": INSTRUCTION}
    given = {
        "agentview_image": np.full((16, 16, 3), 7, np.uint8),
        "state": np.arange(8, dtype=np.float64),
    }
    obs, _ = env.reset(seed=3, options={"observation": given})
    assert obs["state"].dtype == np.float32 and obs["agentview_image"].dtype == np.uint8
    np.testing.assert_array_equal(obs["state"], np.arange(8)) and np.testing.assert_array_equal(
        obs["agentview_image"], 7
    )
    # Without options, np_random picks a stored start: reproducible for a seed, varied across seeds.
    picks = set()
    for seed in range(12):
        obs, _ = env.reset(seed=seed)
        index = [
            i for i in range(ckpt.num_resets) if np.array_equal(obs["state"], stored["state"][i])
        ]
        assert len(index) == 1
        picks.add(index[0])
        assert_same_obs(env.reset(seed=seed)[0], obs)
    assert len(picks) > 1
    # The returned observation is a copy: mutating it changes nothing inside.
    obs, _ = env.reset(options={"reset_index": 0})
    obs["state"][:] = 99
    assert not np.any(stored["state"] == 99)


@pytest.mark.parametrize(
    "options, error, match",
    [
        ({"bogus": 1}, ValueError, r"unknown reset option\(s\) \['bogus'\]"),
        ({"reset_index": 0, "observation": {}}, ValueError, "either"),
        ({"reset_index": 3}, ValueError, r"reset_index'\] must be an integer in 0..2 .*got 3"),
        ({"reset_index": True}, ValueError, "reset_index"),
        ({"reset_index": 1.0}, ValueError, "reset_index"),
        ({"observation": [1, 2]}, ShapeError, "must be a dict with keys"),
        ({"observation": {"state": np.zeros(8, np.float32)}}, ShapeError, "exactly the keys"),
        (
            {
                "observation": {
                    "agentview_image": np.zeros((16, 16), np.uint8),
                    "state": np.zeros(8, np.float32),
                }
            },
            ShapeError,
            r"\['agentview_image'\] must have shape \(16, 16, 3\), got \(16, 16\)",
        ),
        (
            {
                "observation": {
                    "agentview_image": np.zeros((16, 16, 3)),
                    "state": np.zeros(8, np.float32),
                }
            },
            ShapeError,
            r"must be uint8, got float64",
        ),
        (
            {
                "observation": {
                    "agentview_image": np.zeros((16, 16, 3), np.uint8),
                    "state": np.full(8, np.nan, np.float32),
                }
            },
            ShapeError,
            r"\['state'\] has NaN or values outside",
        ),
        ("reset_index", TypeError, "must be a dict"),
    ],
)
def test_bad_reset_options_raise_and_lose_nothing(ckpt, options, error, match):
    env = make(ckpt)
    env.reset(seed=0)
    env.step(sample_actions(1)[0])
    before = env.snapshot()
    with pytest.raises(error, match=match):
        env.reset(seed=1, options=options)
    after = env.snapshot()
    assert after.steps == (1,) and after.ended == (False,)
    assert_same_obs(dict(after.observation), dict(before.observation))
    assert torch.equal(after.generator_states[0], before.generator_states[0])
    assert after.rng_states == before.rng_states


def test_same_seed_same_frames_and_different_seed_differs(ckpt):
    actions = sample_actions(4)
    a, b, c = run(make(ckpt), actions, 0), run(make(ckpt), actions, 0), run(make(ckpt), actions, 1)
    for x, y in zip(a, b):
        assert_same_obs(x, y)
    assert not np.array_equal(a[-1]["agentview_image"], c[-1]["agentview_image"])
    # The noise stream depends only on the seed, not on how the start was chosen.
    env = make(ckpt)
    first, _ = env.reset(seed=0)
    index = next(
        i
        for i in range(ckpt.num_resets)
        if np.array_equal(first["state"], ckpt.reset_observations["state"][i])
    )
    env.reset(seed=0, options={"reset_index": index})
    assert_same_obs(env.step(actions[0])[0], a[1])


def test_step_is_the_models_prediction_in_the_real_layout(ckpt):
    env = make(ckpt, done_threshold=0.5, success_threshold=0.5)
    env.reset(seed=0)
    snap = env.snapshot()
    action = sample_actions(1)[0]
    obs, reward, terminated, truncated, info = env.step(action)
    generator = torch.Generator().manual_seed(0)
    generator.set_state(snap.generator_states[0])
    frames, out, _ = ckpt.model.step(
        snap.state, torch.from_numpy(action)[None], generator=generator
    )
    np.testing.assert_array_equal(obs["agentview_image"], frames[0].numpy())
    np.testing.assert_array_equal(obs["state"], out["state"][0].numpy())
    assert isinstance(reward, float) and reward == pytest.approx(float(out["reward"][0]))
    assert info["success_prob"] == pytest.approx(float(out["success"][0]))
    assert info["done_prob"] == pytest.approx(float(out["done"][0]))
    assert info["success"] == (info["success_prob"] > 0.5) and terminated == (
        info["done_prob"] > 0.5
    )
    assert set(info) == {"success", "is_success", "success_prob", "done_prob", "instruction"} and not truncated
    assert env.observation_space.contains(obs)
    assert obs["state"].dtype == np.float32 and obs["agentview_image"].dtype == np.uint8


def test_state_head_is_split_over_several_keys_and_clipped_into_bounds(tmp_path):
    # Gymnasium sorts Dict keys; the image key sorts between the state keys, and the split
    # follows the space's order.
    spec = dataclasses.replace(
        lift_spec(),
        observation_space=gym.spaces.Dict(
            {
                "aa_joints": gym.spaces.Box(-np.inf, np.inf, (2, 2), np.float32),
                "agentview_image": gym.spaces.Box(0, 255, (16, 16, 3), np.uint8),
                "gripper": gym.spaces.Box(-0.01, 0.01, (3,), np.float64),
                "touch": gym.spaces.Box(0, 1, (1,), np.int64),
            }
        ),
    )
    ckpt = load_env_checkpoint(write_checkpoint(tmp_path / "multi", spec))
    assert ckpt.state_keys == ("aa_joints", "gripper", "touch") and ckpt.model.config.state_dim == 8
    env = make(ckpt)
    env.reset(seed=0)
    snap = env.snapshot()
    obs = env.step(sample_actions(1)[0])[0]
    assert list(obs) == ["aa_joints", "agentview_image", "gripper", "touch"]
    assert env.observation_space.contains(obs)
    generator = torch.Generator()
    generator.set_state(snap.generator_states[0])
    _, out, _ = ckpt.model.step(
        snap.state, torch.from_numpy(sample_actions(1))[:1], generator=generator
    )
    state = out["state"][0].numpy()
    np.testing.assert_array_equal(obs["aa_joints"], state[:4].reshape(2, 2))
    np.testing.assert_allclose(obs["gripper"], np.clip(state[4:7], -0.01, 0.01))
    assert obs["touch"].dtype == np.int64 and obs["touch"][0] == np.clip(np.rint(state[7]), 0, 1)


def test_termination_truncation_and_reset_needed(ckpt):
    env = make(ckpt, done_threshold=0.0)  # done_prob > 0 always: terminates on the first step
    with pytest.raises(ResetNeeded, match="call reset"):
        env.step(sample_actions(1)[0])
    env.reset(seed=0)
    _, _, terminated, truncated, _ = env.step(sample_actions(1)[0])
    assert terminated and not truncated
    with pytest.raises(ResetNeeded, match="episode has ended"):
        env.step(sample_actions(1)[0])

    env = make(ckpt, max_episode_steps=3)
    env.reset(seed=0)
    flags = [env.step(a)[2:4] for a in sample_actions(3)]
    assert flags == [(False, False), (False, False), (False, True)]
    with pytest.raises(ResetNeeded):
        env.step(sample_actions(1)[0])
    env.reset()  # a new episode after the end
    assert env.step(sample_actions(1)[0])[3] is False
    # Truncation at the limit is not reported when the step also terminates.
    env = make(ckpt, max_episode_steps=1, done_threshold=0.0)
    env.reset(seed=0)
    assert env.step(sample_actions(1)[0])[2:4] == (True, False)
    # The spec's limit is the default.
    env = make(ckpt)
    env.reset(seed=0)
    results = [env.step(a)[3] for a in sample_actions(LIMIT)]
    assert results == [False] * (LIMIT - 1) + [True]


@pytest.mark.parametrize(
    "action, match",
    [
        (np.zeros(6, np.float32), r"shape \(7,\)"),
        (np.zeros((1, 7), np.float32), r"shape \(7,\)"),
        (np.array([0, 0, 0, np.nan, 0, 0, 0], np.float32), "NaN or inf"),
        (np.array([0, 0, 0, 0, 0, 0, np.inf]), "NaN or inf"),
        (
            np.array([0, 0, 1.5, 0, 0, 0, 0], np.float32),
            r"entries \[2\] = \[1.5\] are outside the bounds \[-1, 1\]",
        ),
        (np.array(["a"] * 7), "real-valued"),
    ],
)
def test_invalid_actions_raise_and_leave_the_episode_untouched(ckpt, action, match):
    actions = sample_actions(3)
    reference = run(make(ckpt), actions)
    env = make(ckpt)
    env.reset(seed=0)
    env.step(actions[0])
    with pytest.raises(InvalidAction, match=match):
        env.step(action)
    assert_same_obs(env.step(actions[1])[0], reference[2])
    assert_same_obs(env.step(actions[2])[0], reference[3])


def test_actions_of_other_dtypes_and_at_the_bounds_are_accepted(ckpt):
    env = make(ckpt)
    env.reset(seed=0)
    env.step(np.ones(7, dtype=np.int64))
    env.step(
        [1.0 + 5e-6] * 7
    )  # float rounding just outside the bound is clipped, like the real env


def test_render(ckpt):
    env = make(ckpt, render_mode="rgb_array")
    with pytest.raises(ResetNeeded):
        env.render()
    obs, _ = env.reset(seed=0)
    np.testing.assert_array_equal(env.render(), obs["agentview_image"])
    obs = env.step(sample_actions(1)[0])[0]
    frame = env.render()
    assert frame.shape == (16, 16, 3) and frame.dtype == np.uint8
    np.testing.assert_array_equal(frame, obs["agentview_image"])
    frame[:] = 0  # a copy
    assert env.render().any()
    assert make(ckpt).render() is None


def test_snapshot_restore_reproduces_and_forks(ckpt):
    actions = sample_actions(6)
    env = make(ckpt)
    env.reset(seed=0)
    for a in actions[:2]:
        env.step(a)
    snap = env.snapshot()
    assert isinstance(snap, ImaginedSnapshot) and snap.steps == (2,)
    first = [env.step(a) for a in actions[2:]]
    restored = env.restore(snap)
    assert_same_obs(restored, {k: v[0] for k, v in snap.observation.items()})
    second = [env.step(a) for a in actions[2:]]
    for x, y in zip(first, second):
        assert_same_obs(x[0], y[0])
        assert x[1:] == y[1:]
    # Another env on the same checkpoint continues the fork identically.
    other = make(ckpt)
    other.restore(snap)
    assert_same_obs(other.step(actions[2])[0], first[0][0])
    # Different actions from the same snapshot lead elsewhere.
    env.restore(snap)
    assert not np.array_equal(
        env.step(-actions[2])[0]["agentview_image"], first[0][0]["agentview_image"]
    )


def test_snapshot_is_immutable_and_restores_episode_end(ckpt):
    env = make(ckpt, max_episode_steps=2)
    env.reset(seed=0)
    env.step(sample_actions(1)[0])
    snap = env.snapshot()
    with pytest.raises(dataclasses.FrozenInstanceError):
        snap.steps = 5
    with pytest.raises(ValueError, match="read-only"):
        snap.observation["state"][0] = 1.0
    with pytest.raises(TypeError):
        snap.observation["state"] = np.zeros(8)
    frozen_t = snap.state["t"].clone()
    env.step(sample_actions(1)[0])  # ends the episode
    assert torch.equal(snap.state["t"], frozen_t)
    with pytest.raises(ResetNeeded):
        env.step(sample_actions(1)[0])
    env.restore(snap)
    assert env.step(sample_actions(1)[0])[3] is True
    end = env.snapshot()
    env.reset(seed=1)
    env.restore(end)
    with pytest.raises(ResetNeeded, match="episode has ended"):
        env.step(sample_actions(1)[0])


def test_snapshot_errors(ckpt, tmp_path):
    env = make(ckpt)
    with pytest.raises(ResetNeeded, match="before snapshot"):
        env.snapshot()
    env.reset(seed=0)
    with pytest.raises(TypeError, match="ImaginedSnapshot"):
        env.restore({"state": None})
    other = tiny_model(state_dim=8)
    other_state = dataclasses.replace(env.snapshot(), state=other.init_state(2))
    with pytest.raises(ValueError, match="memory .2 rows. does not fit 1 rows"):
        env.restore(other_state)


def _held_bytes(env: ImaginedEnv) -> int:
    """Bytes of the arrays, tensors and memories the env's core holds besides its shared
    checkpoint (its per-row generator lists have one entry per row, whatever the episode)."""
    total = 0
    for name, value in vars(env.core).items():
        if name in ("checkpoint", "model", "_rngs", "_generators"):
            continue
        values = value.values() if isinstance(value, dict) else [value]
        for v in values:
            if isinstance(v, np.ndarray):
                total += v.nbytes
            elif isinstance(v, torch.Tensor):
                total += v.numel() * v.element_size()
            elif hasattr(v, "nbytes") and callable(v.nbytes):
                total += v.nbytes()
            elif isinstance(v, (list, tuple)):
                total += 10**9 * len(v)  # no lists should be kept at all
    return total


def test_memory_does_not_grow_with_the_episode(ckpt):
    env = make(ckpt, max_episode_steps=40)
    env.reset(seed=0)
    sizes = []
    for i, a in enumerate(sample_actions(30)):
        env.step(a)
        if i in (4, 29):
            sizes.append((env.snapshot().state.nbytes(), _held_bytes(env)))
    assert sizes[0] == sizes[1] and sizes[0][1] > sizes[0][0]


def test_bad_constructor_arguments(ckpt, tmp_path):
    with pytest.raises(ValueError, match="sample_steps must be an integer in 1..50"):
        ImaginedEnv(ckpt, sample_steps=0)
    with pytest.raises(ValueError, match="done_threshold must be a number in \\[0, 1\\]"):
        ImaginedEnv(ckpt, done_threshold=1.5)
    with pytest.raises(ValueError, match="success_threshold"):
        ImaginedEnv(ckpt, success_threshold="high")
    with pytest.raises(ValueError, match="max_episode_steps must be a positive integer"):
        ImaginedEnv(ckpt, max_episode_steps=0)
    with pytest.raises(ValueError, match="render_mode must be None or one of \\['rgb_array'\\]"):
        ImaginedEnv(ckpt, render_mode="human")
    with pytest.raises(TypeError, match="checkpoint must be a directory"):
        ImaginedEnv(42)
    with pytest.raises(CheckpointError, match="no config.json"):
        ImaginedEnv(tmp_path / "missing")
    with pytest.raises(ValueError, match="never moved"):
        ImaginedEnv(ckpt, device="meta")
    ImaginedEnv(ckpt, device="cpu")


def test_close(ckpt):
    env = make(ckpt)
    env.reset(seed=0)
    env.close()
    env.close()
    with pytest.raises(ResetNeeded, match="closed"):
        env.step(sample_actions(1)[0])
    with pytest.raises(ResetNeeded, match="closed"):
        env.reset()
    # The shared model is untouched: other envs keep working.
    other = make(ckpt)
    other.reset(seed=0)
    other.step(sample_actions(1)[0])


def test_gym_make_time_limit_truncates(ckpt):
    # gym.make consumes max_episode_steps itself (a TimeLimit wrapper), as for every env.
    env = gym.make(
        "kairos_gym/Imagined-v0", checkpoint=ckpt, max_episode_steps=2, done_threshold=1.0
    )
    env.reset(seed=0)
    assert [env.step(a)[3] for a in sample_actions(2)] == [False, True]


def test_real_resets_start_where_the_real_episode_of_the_same_seed_starts(ckpt_dir, ckpt):
    pytest.importorskip("robosuite")
    spec = ckpt.env_spec
    real = gym.make(spec.env_id, **spec.env_kwargs)
    env = ImaginedEnv(ckpt_dir, real_resets=True, done_threshold=1.0)
    assert env.real_env is not None and env.real_env.spec.id == spec.env_id
    assert ImaginedEnv(ckpt).real_env is None
    try:
        starts = []
        for seed in (3, 4, 3):
            want, _ = real.reset(seed=seed)
            got, info = env.reset(seed=seed)
            assert_same_obs(got, want)
            assert info["success"] is False
            starts.append(got)
            env.step(sample_actions(1, seed=seed)[0])
        assert not np.array_equal(starts[0]["state"], starts[1]["state"])
        # Options still choose the start: a stored reset is a stored reset.
        stored, _ = env.reset(seed=3, options={"reset_index": 0})
        np.testing.assert_array_equal(stored["state"], ckpt.reset_observations["state"][0])
    finally:
        real.close()
    env.close()
    assert env.real_env is None
    with pytest.raises(TypeError, match="real_resets must be a bool"):
        ImaginedEnv(ckpt, real_resets="yes")


@pytest.mark.filterwarnings("ignore:kairos_gym/Imagined-v0 is registered")
def test_real_resets_through_gym_make(ckpt_dir):
    pytest.importorskip("robosuite")
    env = gym.make("kairos_gym/Imagined-v0", checkpoint=ckpt_dir, real_resets=True)
    try:
        a, _ = env.reset(seed=7)
        b, _ = env.reset(seed=7)
        assert_same_obs(a, b)
        assert env.unwrapped.real_env is not None
    finally:
        env.close()
