"""Policy specs naming a served policy (``served:ADDRESS``), against a real local server."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

from kairos_gym.policies import ChunkedPolicy, make_policy
from kairos_gym.policies.base import RandomPolicy
from kairos_gym.policies.registry import POLICY_NAMES, check_spec, is_privileged, parse_spec

ACTIONS = gym.spaces.Box(-1.0, 1.0, (7,), np.float32)
ENV = type("E", (), {"action_space": ACTIONS, "spec": None})()


def test_served_specs_parse():
    assert "served:ADDRESS" in POLICY_NAMES
    assert parse_spec("served:ws://127.0.0.1:8000+execute=5") == (
        "served:ws://127.0.0.1:8000",
        [("execute", 5)],
    )
    assert check_spec("served:localhost:8000+noise=0.1") == "served:localhost:8000+noise=0.1"
    assert check_spec("served:wss://policy.example.org:443/pi05")
    assert not is_privileged("served:127.0.0.1:8000")
    for bad in ("served:", "served:localhost", "served:http://a:1", "served:a:99999"):
        with pytest.raises(ValueError, match="bad policy server address|non-empty"):
            check_spec(bad)


def test_a_served_spec_builds_a_client_of_the_server():
    from kairos_gym.serving import PolicyServer, WebsocketPolicy

    with PolicyServer(lambda: RandomPolicy(ACTIONS, horizon=4), port=0, seed=1) as server:
        policy = make_policy(f"served:{server.uri}+execute=2", ENV)
        assert isinstance(policy, ChunkedPolicy) and policy.execute == 2
        client = policy.policy
        assert isinstance(client, WebsocketPolicy) and client.action_dim == 7 and client.connected
        reference = RandomPolicy(ACTIONS, horizon=4)
        reference.reset(seed=1)
        chunk = reference.act({})
        first, second = policy.act({"state": np.zeros(8, np.float32)}), policy.act({})
        np.testing.assert_array_equal(np.stack([first, second]), chunk[:2])
        assert server.answered == 1  # the second action came from the queue
        client.close()


def test_aloha_specs_follow_the_absolute_two_gripper_convention():
    from types import SimpleNamespace

    from kairos_gym.policies.registry import action_convention

    low = np.array([-3.0] * 6 + [0.0] + [-3.0] * 6 + [0.0], np.float32)
    space = gym.spaces.Box(low, -low + (low == 0), dtype=np.float32)
    aloha = type("A", (), {"action_space": space,
                           "spec": SimpleNamespace(id="kairos_gym/Aloha-TransferCube-v0")})()
    conv = action_convention(aloha)
    assert conv.absolute and conv.grippers == (6, 13) and conv.gripper_open == 1.0
    assert not action_convention(ENV).absolute and action_convention(ENV).grippers == (-1,)
    opened = make_policy("zero+open", aloha).act({})
    assert opened[6] == opened[13] == 1.0 and np.all(np.delete(opened, [6, 13]) == 0.0)
    policy = make_policy("zero+interrupt=0.5+gripper=0.5+hold=0.2", aloha)
    policy.reset(seed=0)
    actions = np.stack([policy.act({}) for _ in range(100)])
    assert np.all(actions >= space.low) and np.all(actions <= space.high)
    # An imagined env trained on ALOHA data answers the id it imitates.
    spec = SimpleNamespace(env_id="kairos_gym/Aloha-TransferCube-v0")
    imagined = type("I", (), {"action_space": space, "spec": None,
                              "checkpoint": SimpleNamespace(env_spec=spec)})()
    assert action_convention(imagined).absolute
