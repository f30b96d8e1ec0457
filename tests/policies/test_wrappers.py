"""Tests of the policy wrappers: execution noise, the pinned gripper, constant actions."""

from __future__ import annotations

import numpy as np
import pytest

from kairos_gym.policies import Policy
from kairos_gym.policies.wrappers import ConstantPolicy, GripperOverride, NoisyPolicy


class Chunks(Policy):
    """Returns a fixed chunk [2, 3] (or a batch of them)."""

    def act(self, observation, instruction=""):
        return np.array([[0.5, 0.9, 0.0], [0.1, -0.2, 0.3]], np.float32)


def test_noisy_policy_is_seeded_clipped_and_keeps_chunk_shapes():
    a, b = NoisyPolicy(Chunks(), 0.5), NoisyPolicy(Chunks(), 0.5)
    a.reset(seed=3)
    b.reset(seed=3)
    x, y = a.act({}), b.act({})
    np.testing.assert_array_equal(x, y)
    assert x.shape == (2, 3) and np.all(np.abs(x) <= 1.0) and not np.allclose(x, Chunks().act({}))
    b.reset(seed=4)
    assert not np.array_equal(b.act({}), x)
    zero = NoisyPolicy(Chunks(), 0.0)
    np.testing.assert_array_equal(zero.act({}), Chunks().act({}))
    batch = a.act_batch({"state": np.zeros((4, 1))})
    assert batch.shape == (4, 2, 3)
    with pytest.raises(ValueError, match="std must be >= 0"):
        NoisyPolicy(Chunks(), -1.0)


def test_gripper_override_and_constant_policy():
    opened = GripperOverride(Chunks(), -1.0).act({})
    assert opened[:, -1].tolist() == [-1.0, -1.0]
    np.testing.assert_array_equal(opened[:, :-1], Chunks().act({})[:, :-1])
    zero = ConstantPolicy(np.zeros(7))
    assert zero.act({}).tolist() == [0.0] * 7
    assert zero.act_batch({"state": np.zeros((3, 2))}).shape == (3, 7)
