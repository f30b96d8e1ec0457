"""Spaces as JSON and the EpisodeEnvSpec: exact round trips and clear errors."""

from __future__ import annotations

import json
from typing import Any, ClassVar

import gymnasium as gym
import numpy as np
import pytest

from kairos_gym.data.spaces import (
    EpisodeEnvSpec,
    restrict_to_state_keys,
    space_from_json,
    space_to_json,
    spaces_equal,
)
from kairos_gym.errors import DatasetError
from tests.data.conftest import make_multikey_spec


def roundtrip(space: gym.Space) -> gym.Space:
    return space_from_json(json.loads(json.dumps(space_to_json(space), allow_nan=False)))


def test_uniform_image_box_is_compact_and_exact():
    space = gym.spaces.Box(0, 255, (64, 64, 3), np.uint8)
    d = space_to_json(space)
    assert d == {"type": "Box", "shape": [64, 64, 3], "dtype": "uint8", "low": 0, "high": 255}
    back = roundtrip(space)
    assert back.dtype == np.uint8 and back.shape == (64, 64, 3)
    assert spaces_equal(space, back)


def test_nonuniform_and_infinite_bounds_roundtrip_exactly():
    low = np.array([-1.0, -np.inf, 0.1, np.float32(1 / 3)], dtype=np.float32)
    high = np.array([1.0, np.inf, 0.2, 7.0], dtype=np.float32)
    space = gym.spaces.Box(low, high, dtype=np.float32)
    back = roundtrip(space)
    assert back.dtype == np.float32
    assert np.array_equal(back.low, low) and np.array_equal(back.high, high)
    assert space_to_json(gym.spaces.Box(-np.inf, np.inf, (3,), np.float32))["low"] == "-inf"


def test_float64_bounds_keep_every_bit():
    low = np.array([0.1, 1e-300, -2.5e17], dtype=np.float64)
    space = gym.spaces.Box(low, low + 1, dtype=np.float64)
    assert np.array_equal(roundtrip(space).low, low)


def test_dict_roundtrip_and_equality():
    space = gym.spaces.Dict(
        {
            "agentview_image": gym.spaces.Box(0, 255, (8, 8, 3), np.uint8),
            "state": gym.spaces.Box(-np.inf, np.inf, (9,), np.float32),
        }
    )
    back = roundtrip(space)
    assert isinstance(back, gym.spaces.Dict) and list(back.spaces) == list(space.spaces)
    assert spaces_equal(space, back)
    other = gym.spaces.Dict({**space.spaces, "state": gym.spaces.Box(-1, 1, (9,), np.float32)})
    assert not spaces_equal(space, other)


def test_unsupported_spaces_raise():
    with pytest.raises(TypeError, match="only Box and flat Dict"):
        space_to_json(gym.spaces.Discrete(3))
    nested = gym.spaces.Dict({"a": gym.spaces.Dict({"b": gym.spaces.Box(0, 1, (1,))})})
    with pytest.raises(TypeError, match="entry 'a'"):
        space_to_json(nested)
    with pytest.raises(ValueError, match="unknown space type 'Tuple'"):
        space_from_json({"type": "Tuple"})
    with pytest.raises(ValueError, match=r"shape \(2,\) does not match the space shape \(3,\)"):
        space_from_json({"type": "Box", "shape": [3], "dtype": "float32", "low": [0, 1], "high": 1})


def test_env_spec_json_roundtrip(spec):
    text = spec.to_json()
    back = EpisodeEnvSpec.from_json(text)
    assert back == spec
    assert back.env_kwargs["cameras"] == ["agentview"]  # tuples normalised through JSON
    assert back.image_size == (16, 16) and back.cameras == ("agentview",)
    assert back.image_keys == ("agentview_image",) and back.action_dim == 7
    assert spaces_equal(back.observation_space, spec.observation_space)


def test_env_spec_differences_name_the_fields(spec):
    import dataclasses

    other = dataclasses.replace(spec, control_freq=10.0, instruction="stack")
    assert spec.differences(other) == ["control_freq", "instruction"]
    assert spec != other


def test_env_spec_validates(spec):
    import dataclasses

    with pytest.raises(ValueError, match="camera 'wrist' has no 'wrist_image' entry"):
        dataclasses.replace(spec, cameras=("wrist",))
    with pytest.raises(ValueError, match=r"image_size is \(32, 32\)"):
        dataclasses.replace(spec, image_size=(32, 32))
    with pytest.raises(ValueError, match="control_freq must be a positive number, got -1"):
        dataclasses.replace(spec, control_freq=-1)
    with pytest.raises(TypeError, match="env_kwargs must be JSON-serialisable"):
        dataclasses.replace(spec, env_kwargs={"f": object()})
    with pytest.raises(ValueError, match="lacks the field 'env_id'"):
        EpisodeEnvSpec.from_dict({"observation_space": {}, "action_space": {}})
    with pytest.raises(ValueError, match="newer than this kairos-gym"):
        EpisodeEnvSpec.from_dict({"format_version": 99})


class _FakeEnv(gym.Env):
    metadata: ClassVar[dict[str, Any]] = {"render_modes": ["rgb_array"], "render_fps": 20.0}

    def __init__(self, cameras=("agentview",), image_size=8):
        self.cameras = tuple(cameras)
        self.instruction = "lift the cube"
        self.control_freq = 20.0
        spaces = {f"{c}_image": gym.spaces.Box(0, 255, (image_size, image_size, 3), np.uint8) for c in cameras}
        spaces["state"] = gym.spaces.Box(-np.inf, np.inf, (4,), np.float32)
        self.observation_space = gym.spaces.Dict(spaces)
        self.action_space = gym.spaces.Box(-1, 1, (7,), np.float32)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        return self.observation_space.sample(), {"success": False, "instruction": self.instruction}

    def step(self, action):
        return self.observation_space.sample(), 0.0, False, False, {"success": False}


def test_from_env_reads_a_wrapped_env():
    env = gym.wrappers.TimeLimit(_FakeEnv(cameras=("agentview", "wrist")), 5)
    spec = EpisodeEnvSpec.from_env(env, env_kwargs={"cameras": ("agentview", "wrist"), "image_size": 8})
    assert spec.cameras == ("agentview", "wrist")
    assert spec.image_size == (8, 8)
    assert spec.control_freq == 20.0 and spec.instruction == "lift the cube"
    assert spec.env_id == "_FakeEnv"
    assert EpisodeEnvSpec.from_json(spec.to_json()) == spec


def test_restrict_to_state_keys_drops_the_others_and_the_option_that_adds_them():
    import dataclasses

    full = make_multikey_spec()
    full = dataclasses.replace(full, env_kwargs={**full.env_kwargs, "joint_obs": True, "object_obs": True})
    options = {"joints": "joint_obs", "object_state": "object_obs"}
    kept = restrict_to_state_keys(full, ["gripper", "eef_pos", "n_contacts"], options)
    assert list(kept.observation_space.spaces) == ["agentview_image", "eef_pos", "gripper", "n_contacts"]
    assert "joint_obs" not in kept.env_kwargs
    assert kept.env_kwargs["object_obs"] is True  # its key is not in this data: left as it was
    assert kept.cameras == full.cameras and kept.action_space == full.action_space
    assert restrict_to_state_keys(full, ["eef_pos", "gripper", "joints", "n_contacts"], options) is full
    assert "joints" in full.observation_space.spaces  # the input is not changed

    for keys, match in ((["eef_pos", "wrist"], "'wrist'"), (["agentview_image"], "agentview_image"),
                        (["eef_pos", "eef_pos"], "once")):
        with pytest.raises(DatasetError, match=match):
            restrict_to_state_keys(full, keys, options)
    with pytest.raises(ValueError, match="must be a list"):
        restrict_to_state_keys(full, "eef_pos")
