"""Bad inputs to the real environments: reset options, cameras, step limits set later, and
actions numpy cannot read. Each is refused with a clear error and the env keeps working."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch

from kairos_gym.envs.common import (
    EpisodeLimit,
    as_array,
    check_action,
    check_reset_options,
    positive_limit,
    validate_options,
)
from kairos_gym.errors import InvalidAction

UNIT = gym.spaces.Box(-1.0, 1.0, (3,), np.float32)


def test_a_tensor_that_requires_grad_is_an_action():
    action = torch.tensor([0.5, -0.25, 1.0], requires_grad=True)
    out = check_action(action * 1.0, UNIT)
    np.testing.assert_array_equal(out, np.array([0.5, -0.25, 1.0], np.float32))
    assert out.dtype == np.float32
    np.testing.assert_array_equal(as_array(torch.ones(2, dtype=torch.bfloat16)), [1.0, 1.0])


def test_a_ragged_list_is_an_invalid_action():
    with pytest.raises(InvalidAction, match=r"action must be a rectangular array of numbers, got list"):
        check_action([[0.1, 0.2], [0.3]], UNIT)
    with pytest.raises(InvalidAction, match=r"real-valued array .* got dtype object"):
        check_action({"a": 1}, UNIT)


def test_reset_options_are_checked():
    assert check_reset_options(None, "toy") == {}
    assert check_reset_options({}, "toy") == {}
    with pytest.raises(ValueError, match=r"unknown reset option\(s\) \['observation'\]; the toy env takes no reset options"):
        check_reset_options({"observation": 1}, "toy")
    with pytest.raises(TypeError, match=r"reset options must be a dict or None, got list"):
        check_reset_options([1], "toy")
    assert check_reset_options({"a": 1}, "toy", accepted=("a",)) == {"a": 1}


class _Limited(EpisodeLimit):
    def __init__(self) -> None:
        self.max_episode_steps = 5


@pytest.mark.parametrize("bad", [-5, 0, 2.5, "10", True])
def test_a_step_limit_set_later_is_checked(bad):
    env = _Limited()
    with pytest.raises(ValueError, match=rf"max_episode_steps must be a positive integer or None, got {bad!r}"):
        env.max_episode_steps = bad
    assert env.max_episode_steps == 5
    env.max_episode_steps = None
    assert env.max_episode_steps is None
    assert positive_limit(np.int64(3)) == 3


def test_option_types_are_refused_with_their_values():
    common = {"family": "toy", "tasks": ("Reach",), "cameras": (), "terminate_on_success": False,
              "render_mode": None, "render_modes": ["rgb_array"]}
    with pytest.raises(ValueError, match=r"max_episode_steps must be positive, got 'abc'"):
        validate_options(task="Reach", image_size=8, max_episode_steps="abc", **common)
    with pytest.raises(ValueError, match=r"image_size must be an int or an \(H, W\) pair, got \('a', 'b'\)"):
        validate_options(task="Reach", image_size=("a", "b"), max_episode_steps=5, **common)
    with pytest.raises(ValueError, match=r"unknown toy task \['Reach'\]"):
        validate_options(task=["Reach"], image_size=8, max_episode_steps=5, **common)
    with pytest.raises(TypeError, match=r"tuple of camera names, got \(1, 2\)"):
        validate_options(**{**common, "cameras": (1, 2)}, task="Reach", image_size=8, max_episode_steps=5)


@pytest.mark.sim
def test_aloha_refuses_unknown_reset_options_a_camera_string_and_bad_limits():
    pytest.importorskip("gym_aloha")
    pytest.importorskip("dm_control")
    from kairos_gym.envs.aloha_env import AlohaEnv

    with pytest.raises(TypeError, match=r"cameras must be a tuple of camera names, got the string 'top'"):
        AlohaEnv("TransferCube", cameras="top")
    env = AlohaEnv("TransferCube", cameras=(), max_episode_steps=3)
    try:
        first, _ = env.reset(seed=1)
        with pytest.raises(ValueError, match=r"unknown reset option\(s\) \['reset_index'\]; the ALOHA env"):
            env.reset(seed=2, options={"reset_index": 0})
        with pytest.raises(ValueError, match="max_episode_steps must be a positive integer"):
            env.max_episode_steps = -5
        assert env.max_episode_steps == 3
        env.reset(seed=1, options={})
        hold = np.clip(first["state"], env.action_space.low, env.action_space.high)
        assert [env.step(hold)[3] for _ in range(3)] == [False, False, True]
    finally:
        env.close()


@pytest.mark.sim
def test_robosuite_refuses_unknown_reset_options_and_keeps_its_episode():
    pytest.importorskip("robosuite")
    from kairos_gym.envs.robosuite_env import RobosuiteEnv

    env = RobosuiteEnv("Lift", cameras=())
    try:
        obs, _ = env.reset(seed=0)
        with pytest.raises(ValueError, match=r"unknown reset option\(s\) \['observation'\]; the robosuite env"):
            env.reset(seed=5, options={"observation": obs})
        with pytest.raises(TypeError, match="reset options must be a dict or None"):
            env.reset(options="fast")
        # The episode in progress is untouched: the next step continues it.
        env.step(np.zeros(7, np.float32))
        again, _ = env.reset(seed=0, options={})
        np.testing.assert_array_equal(again["state"], obs["state"])
    finally:
        env.close()
