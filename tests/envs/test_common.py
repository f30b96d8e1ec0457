"""Direct tests of the option validation and action checking shared by the environments."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

from kairos_gym.envs.common import check_action, image_hw, validate_options
from kairos_gym.errors import InvalidAction

UNIT = gym.spaces.Box(-1.0, 1.0, (3,), np.float32)
MIXED = gym.spaces.Box(
    low=np.array([-2.0, 0.0], np.float32), high=np.array([2.0, 1.0], np.float32), dtype=np.float32
)


def test_good_action_is_float32_and_clipped_within_tolerance():
    out = check_action(np.array([0.5, 1.0 + 5e-6, -1.0 - 5e-6], np.float64), UNIT)
    assert out.dtype == np.float32 and out.shape == (3,)
    np.testing.assert_array_equal(out, np.array([0.5, 1.0, -1.0], np.float32))
    assert check_action([1, 0, -1], UNIT).dtype == np.float32  # ints are accepted


def test_wrong_shape_names_the_space():
    with pytest.raises(InvalidAction, match=r"shape \(3,\) for Box\(-1\.0, 1\.0.*got shape \(2,\)"):
        check_action(np.zeros(2, np.float32), UNIT)
    with pytest.raises(InvalidAction, match=r"shape \(3,\) for the unit box, got shape \(1, 3\)"):
        check_action(np.zeros((1, 3)), UNIT, description="the unit box")


def test_non_real_dtype_and_nan_are_refused():
    with pytest.raises(InvalidAction, match=r"real-valued array for .*got dtype <U1"):
        check_action(np.array(["a", "b", "c"]), UNIT)
    with pytest.raises(InvalidAction, match=r"NaN or inf: \[0\.0, nan, 0\.0\]"):
        check_action(np.array([0.0, np.nan, 0.0]), UNIT)
    with pytest.raises(InvalidAction, match=r"NaN or inf"):
        check_action(np.array([np.inf, 0.0, 0.0]), UNIT)


def test_out_of_bounds_beyond_tolerance_names_entries_bounds_and_value():
    with pytest.raises(
        InvalidAction,
        match=r"entries \[1\] = \[1\.5\] are outside the bounds \[-1, 1\] of Box.*"
        r"got \[0\.0, 1\.5, 0\.0\]",
    ):
        check_action(np.array([0.0, 1.5, 0.0]), UNIT)
    with pytest.raises(
        InvalidAction,
        match=r"entries \[1\] = \[-0\.5\] are outside the bounds low=\[0\.0\] high=\[1\.0\]",
    ):
        check_action(np.array([0.0, -0.5]), MIXED)
    with pytest.raises(InvalidAction, match=r"outside the bounds"):
        check_action(np.array([0.0, 1.0 + 1e-3, 0.0]), UNIT, tolerance=1e-4)


def test_image_hw_and_option_validation():
    assert image_hw(64) == (64, 64)
    assert image_hw((48, 32)) == (48, 32)
    with pytest.raises(ValueError, match=r"image_size must be positive, got 0"):
        image_hw(0)
    with pytest.raises(ValueError, match=r"an int or an \(H, W\) pair, got '64'"):
        image_hw("64")
    common = {
        "family": "toy",
        "tasks": ("Reach",),
        "image_size": 8,
        "max_episode_steps": 5,
        "terminate_on_success": 1,
        "render_mode": None,
        "render_modes": ["rgb_array"],
    }
    opts = validate_options(task="Reach", cameras=["a", "b"], **common)
    assert opts.cameras == ("a", "b") and opts.image_hw == (8, 8)
    assert opts.terminate_on_success is True
    with pytest.raises(ValueError, match=r"unknown toy task 'Push'"):
        validate_options(task="Push", cameras=(), **common)
    with pytest.raises(TypeError, match=r"tuple of camera names.*'a'"):
        validate_options(task="Reach", cameras="a", **common)
    with pytest.raises(ValueError, match=r"unknown camera 'c' for toy"):
        validate_options(task="Reach", cameras=("c",), known_cameras=("a",), **common)
    with pytest.raises(ValueError, match=r"must not repeat a name"):
        validate_options(task="Reach", cameras=("a", "a"), **common)
