"""Tests of the policy wrappers: execution noise, the pinned gripper, constant actions."""

from __future__ import annotations

import numpy as np
import pytest

from kairos_gym.policies import Policy
from kairos_gym.policies.wrappers import (
    ActionSequence,
    ConstantPolicy,
    GripperOverride,
    NoisyPolicy,
)


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


def test_interrupted_and_random_gripper_are_seeded_segments():
    from kairos_gym.policies.wrappers import Interrupted, RandomGripper

    base = ConstantPolicy(np.full(7, 0.5))
    a = Interrupted(base, rate=0.2, length=3)
    a.reset(seed=1)
    actions = np.stack([a.act({}) for _ in range(60)])
    detour = ~np.all(actions == 0.5, axis=1)
    assert 0 < detour.sum() < 60 and np.all(np.abs(actions) <= 1)
    b = Interrupted(base, rate=0.2, length=3)
    b.reset(seed=1)
    np.testing.assert_array_equal(np.stack([b.act({}) for _ in range(60)]), actions)
    held = Interrupted(base, rate=1.0, length=2, hold=True)
    held.reset(seed=0)
    assert held.act({}).tolist() == [0.0] * 7
    grip = RandomGripper(base, rate=0.3, length=4)
    grip.reset(seed=2)
    g = np.stack([grip.act({}) for _ in range(40)])
    assert set(np.unique(g[:, -1])) <= {-1.0, 0.5, 1.0} and (g[:, -1] != 0.5).any()
    np.testing.assert_array_equal(g[:, :-1], 0.5)
    with pytest.raises(ValueError, match="0 <= rate <= 1"):
        Interrupted(base, rate=2.0)


def test_policy_specs_build_and_refuse():
    import gymnasium as gym

    from kairos_gym.policies import ChunkedPolicy, make_policy
    from kairos_gym.policies.registry import check_spec, is_privileged
    from kairos_gym.policies.wrappers import GripperOverride, Interrupted

    env = type("E", (), {"action_space": gym.spaces.Box(-1, 1, (7,), np.float32), "spec": None})()
    policy = make_policy("zero+interrupt=0.1+open+execute=2", env)
    assert isinstance(policy, ChunkedPolicy) and isinstance(policy.policy, GripperOverride)
    assert isinstance(policy.policy.policy, Interrupted)
    assert make_policy("zero", env).act({}).tolist() == [0.0] * 7
    assert is_privileged("expert+noise=0.3") and not is_privileged("bc:x+noise=0.3")
    for bad, match in [("smart", "unknown policy 'smart'"), ("zero+noise=x", "bad modifier"),
                       ("zero+execute=2+open", "execute last"), ("zero+hold=1.5", r"in \[0, 1\]"),
                       ("", "non-empty")]:
        with pytest.raises(ValueError, match=match):
            check_spec(bad)
    with pytest.raises(ValueError, match="no scripted expert"):
        make_policy("expert", env)


# ALOHA's layout: absolute joint targets, grippers at 6 and 13 (1 open, 0 closed), per-entry bounds.
ALOHA_LOW = np.array([-3.0, -1.8, -1.7, -3.0, -1.8, -3.0, 0.0] * 2, np.float32)
ALOHA_HIGH = np.array([3.0, 1.2, 1.6, 3.0, 2.2, 3.0, 1.0] * 2, np.float32)


def aloha_convention():
    from kairos_gym.policies.wrappers import ActionConvention

    return ActionConvention(low=ALOHA_LOW, high=ALOHA_HIGH, grippers=(6, 13), gripper_open=1.0,
                            gripper_closed=0.0, absolute=True)


class Counting(Policy):
    """Returns ``[0.01 * (t % 50 + 1)] * 14`` at call ``t``: a moving target inside ALOHA's bounds."""

    def reset(self, *, seed=None, env=None):
        self.t = 0

    def act(self, observation, instruction=""):
        self.t += 1
        return np.full(14, 0.01 * (self.t % 50 + 1), np.float32)


def test_interrupted_absolute_holds_one_target_inside_the_bounds():
    from kairos_gym.policies.wrappers import Interrupted

    policy = Interrupted(Counting(), rate=0.2, length=4, convention=aloha_convention())
    policy.reset(seed=5)
    actions = np.stack([policy.act({}) for _ in range(200)])
    detour = ~np.isclose(actions, 0.01 * (np.arange(1, 201) % 50 + 1)[:, None]).all(axis=1)
    assert 0 < detour.sum() < 200
    assert np.all(actions >= ALOHA_LOW) and np.all(actions <= ALOHA_HIGH)
    # One target per segment: consecutive detour steps repeat the same action.
    starts = np.flatnonzero(detour[1:] & ~detour[:-1]) + 1
    for s in starts[starts <= 196]:
        np.testing.assert_array_equal(actions[s], actions[s + 1])
    # Robosuite's stream is unchanged by per-entry [-1, 1] bounds (the Lift data stays reproducible).
    from kairos_gym.policies.wrappers import ActionConvention

    box = ActionConvention(low=np.full(7, -1, np.float32), high=np.full(7, 1, np.float32))
    a, b = Interrupted(ConstantPolicy(np.zeros(7)), 0.3), Interrupted(
        ConstantPolicy(np.zeros(7)), 0.3, convention=box)
    a.reset(seed=9)
    b.reset(seed=9)
    np.testing.assert_array_equal([a.act({}) for _ in range(40)], [b.act({}) for _ in range(40)])


def test_interrupted_absolute_pause_repeats_the_last_action():
    from kairos_gym.policies.wrappers import Interrupted

    policy = Interrupted(Counting(), rate=0.1, length=5, hold=True, convention=aloha_convention())
    policy.reset(seed=1)
    actions = np.stack([policy.act({}) for _ in range(100)])
    paused = np.flatnonzero(np.all(actions[1:] == actions[:-1], axis=1)) + 1
    assert len(paused) > 0 and not np.any(np.all(actions == 0.0, axis=1))
    # A paused step repeats the step before it; outside pauses the counter moves on.
    for i in paused:
        np.testing.assert_array_equal(actions[i], actions[i - 1])
    first = Interrupted(Counting(), rate=1.0, length=3, hold=True, convention=aloha_convention())
    first.reset(seed=0)
    np.testing.assert_allclose(first.act({}), np.full(14, 0.02))  # paused from step 1


def test_random_gripper_and_open_on_two_grippers():
    from kairos_gym.policies.wrappers import RandomGripper

    base = ConstantPolicy(np.full(14, 0.5))
    grip = RandomGripper(base, rate=0.3, length=4, convention=aloha_convention())
    grip.reset(seed=2)
    g = np.stack([grip.act({}) for _ in range(200)])
    arms = np.delete(g, [6, 13], axis=1)
    np.testing.assert_array_equal(arms, 0.5)
    for i in (6, 13):
        assert set(np.unique(g[:, i])) == {0.0, 0.5, 1.0}
    opened = GripperOverride(base, 1.0, index=(6, 13)).act({})
    assert opened[6] == opened[13] == 1.0 and np.all(np.delete(opened, [6, 13]) == 0.5)


def test_action_sequence_plays_back_and_restarts_at_reset():
    actions = np.arange(6, dtype=np.float32).reshape(3, 2)
    policy = ActionSequence(actions)
    played = [policy.act({}) for _ in range(3)]
    np.testing.assert_array_equal(np.stack(played), actions)
    with pytest.raises(ValueError, match="all 3 recorded actions were played"):
        policy.act({})
    policy.reset(seed=1)
    np.testing.assert_array_equal(policy.act({}), actions[0])
    played[0][:] = 99  # callers own what they get
    np.testing.assert_array_equal(policy.actions, actions)


@pytest.mark.parametrize("bad, message", [
    (np.zeros((0, 7)), "T >= 1"), (np.zeros(7), "T >= 1"), (np.full((2, 7), np.nan), "NaN"),
])
def test_action_sequence_rejects_bad_recordings(bad, message):
    with pytest.raises(ValueError, match=message):
        ActionSequence(bad)
