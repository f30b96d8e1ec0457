"""Tests of the scripted ALOHA experts and their inverse kinematics."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("gym_aloha")
pytest.importorskip("dm_control")

import gymnasium as gym

import kairos_gym  # noqa: F401  (registers the ids)
from kairos_gym.policies import make_policy
from kairos_gym.policies.aloha_experts import (
    ArmIK,
    InsertionExpert,
    TransferCubeExpert,
    pitched_frame,
    slerp,
)

pytestmark = pytest.mark.sim


def run_episode(task: str, seed: int, noise: float = 0.0, steps: int = 400) -> tuple[bool, float]:
    """Run the task's expert for ``steps``; return (any success, best reward stage)."""
    env = gym.make(f"kairos_gym/Aloha-{task}-v0", cameras=())
    expert = make_policy("expert", env, noise=noise)
    obs, _ = env.reset(seed=seed)
    expert.reset(seed=seed, env=env)
    success, best = False, 0.0
    for _ in range(steps):
        obs, reward, _, _, info = env.step(expert.act(obs))
        success |= info["success"]
        best = max(best, reward)
    env.close()
    return success, best


@pytest.mark.parametrize("seed", [0, 11])
def test_transfer_cube_expert_succeeds(seed):
    success, best = run_episode("TransferCube", seed)
    assert success and best == 4.0


def test_insertion_expert_succeeds():
    success, best = run_episode("Insertion", seed=0)
    assert success and best == 4.0


def test_make_policy_returns_experts():
    for task, cls in (("TransferCube", TransferCubeExpert), ("Insertion", InsertionExpert)):
        env = gym.make(f"kairos_gym/Aloha-{task}-v0", cameras=())
        assert type(make_policy("expert", env, noise=0.1)) is cls
        env.close()


def test_noise_is_seeded_and_expert_leaves_the_sim_alone():
    env = gym.make("kairos_gym/Aloha-TransferCube-v0", cameras=())
    actions = []
    for seed, noise in ((1, 0.05), (1, 0.05), (2, 0.05), (1, 0.0)):
        obs, _ = env.reset(seed=1)
        expert = TransferCubeExpert(noise=noise)
        expert.reset(seed=seed, env=env)
        before = env.unwrapped.get_sim_state()
        action = expert.act(obs)
        np.testing.assert_array_equal(before, env.unwrapped.get_sim_state())
        assert action.shape == (14,) and action.dtype == np.float32
        assert env.action_space.contains(action)
        actions.append(action)
    np.testing.assert_array_equal(actions[0], actions[1])
    assert not np.allclose(actions[0], actions[2])
    assert not np.allclose(actions[0], actions[3])
    env.close()


def test_expert_argument_errors():
    with pytest.raises(ValueError, match=r"noise must be a finite number >= 0, got -0.1"):
        TransferCubeExpert(noise=-0.1)
    expert = InsertionExpert()
    with pytest.raises(RuntimeError, match=r"call InsertionExpert.reset"):
        expert.act({})
    with pytest.raises(ValueError, match=r"needs the ALOHA environment"):
        expert.reset(seed=0, env=None)


def test_ik_reaches_a_reachable_pose():
    env = gym.make("kairos_gym/Aloha-TransferCube-v0", cameras=())
    env.reset(seed=0)
    ik = ArmIK(env.unwrapped.model, "right")
    start = env.unwrapped.privileged()["qpos"][7:13]
    goal_q = start + np.array([0.3, 0.2, -0.3, 0.2, 0.4, -0.3])
    pos, rot = ik.forward(goal_q)
    q, err = ik.solve(start, pos, rot, iters=200, tol=1e-6)
    reached_pos, reached_rot = ik.forward(q)
    assert err < 1e-4
    np.testing.assert_allclose(reached_pos, pos, atol=1e-4)
    np.testing.assert_allclose(reached_rot, rot, atol=1e-3)
    with pytest.raises(ValueError, match=r"side must be 'left' or 'right', got 'middle'"):
        ArmIK(env.unwrapped.model, "middle")
    env.close()


def test_frames_and_slerp():
    rot = pitched_frame("right", np.array([0.0, 0.5]), pitch_deg=90.0)
    np.testing.assert_allclose(rot[:, 0], [0.0, 0.0, -1.0], atol=1e-12)  # approach straight down
    np.testing.assert_allclose(rot.T @ rot, np.eye(3), atol=1e-12)
    assert np.linalg.det(rot) == pytest.approx(1.0)
    other = pitched_frame("right", np.array([0.0, 0.5]), pitch_deg=0.0)
    np.testing.assert_allclose(slerp(rot, other, 0.0), rot, atol=1e-9)
    np.testing.assert_allclose(slerp(rot, other, 1.0), other, atol=1e-9)
    half = slerp(rot, other, 0.5)
    np.testing.assert_allclose(half[:, 0], np.array([-1.0, 0.0, -1.0]) / np.sqrt(2.0), atol=1e-9)


def test_expert_plans_from_the_state_at_its_first_act():
    env = gym.make("kairos_gym/Aloha-TransferCube-v0", cameras=())
    expert = TransferCubeExpert()
    obs, _ = env.reset(seed=4)
    expert.reset(seed=0, env=env)
    after = expert.act(obs)
    env.reset(seed=9)
    expert.reset(seed=0, env=env)  # expert first, environment second: same plan as usual
    obs, _ = env.reset(seed=4)
    np.testing.assert_array_equal(expert.act(obs), after)
    env.close()



def test_execution_noise_is_clipped_to_the_aloha_action_bounds():
    # ALOHA's grippers are in [0, 1] and its joints reach beyond 1 rad: noise clipped to
    # robosuite's [-1, 1] would leave the space on the grippers and cut the joints short.
    env = gym.make("kairos_gym/Aloha-TransferCube-v0", cameras=())
    policy = make_policy("zero+noise=3", env)
    obs, _ = env.reset(seed=0)
    policy.reset(seed=0, env=env)
    actions = np.stack([policy.act(obs) for _ in range(50)])
    space = env.action_space
    assert all(space.contains(a) for a in actions)
    assert (np.abs(actions) > 1.0).any()
    env.close()


def test_modifier_specs_act_inside_the_aloha_action_space():
    """The robosuite-style modifiers wrote -1 grippers and [-1, 1] detours, which ALOHA refuses."""
    env = gym.make("kairos_gym/Aloha-TransferCube-v0", cameras=())
    policy = make_policy("expert+interrupt=0.2+gripper=0.2+hold=0.1+open", env)
    obs, _ = env.reset(seed=3)
    policy.reset(seed=3, env=env)
    for _ in range(40):
        action = policy.act(obs)
        assert action[6] == action[13] == 1.0  # both grippers held open
        obs, _, terminated, truncated, info = env.step(action)
        assert "physics_error" not in info and not (terminated or truncated)
    env.close()
