"""Tests of the scripted robosuite experts (full success rates live in eval/expert_success.py)."""

from __future__ import annotations

import math

import numpy as np
import pytest

pytest.importorskip("robosuite")

import gymnasium as gym

import kairos_gym  # noqa: F401  (registers the ids)
from kairos_gym.policies import make_policy
from kairos_gym.policies.robosuite_experts import (
    DoorExpert,
    LiftExpert,
    PickPlaceCanExpert,
    StackExpert,
    mat_to_axis_angle,
    rot_axis,
    square_grasp_yaw,
)

pytestmark = pytest.mark.sim


def _make(task: str, **kwargs) -> gym.Env:
    return gym.make(f"kairos_gym/Robosuite-{task}-v0", cameras=(), **kwargs)


@pytest.mark.parametrize("seed", [0, 1])
def test_lift_expert_succeeds(seed):
    env = _make("Lift", terminate_on_success=True)
    try:
        expert = make_policy("expert", env)
        assert isinstance(expert, LiftExpert)
        obs, info = env.reset(seed=seed)
        expert.reset(seed=seed, env=env)
        terminated = truncated = False
        while not (terminated or truncated):
            obs, _, terminated, truncated, info = env.step(expert.act(obs, info["instruction"]))
        assert terminated and info["success"], f"failed on seed {seed} in phase {expert.phase}"
    finally:
        env.close()


@pytest.mark.parametrize(
    ("task", "cls", "first_phases"),
    [
        ("Stack", StackExpert, {"approach", "descend"}),
        ("PickPlaceCan", PickPlaceCanExpert, {"approach", "descend"}),
        ("Door", DoorExpert, {"approach", "descend"}),
    ],
)
def test_other_experts_run_a_short_episode(task, cls, first_phases):
    env = _make(task, max_episode_steps=25)
    try:
        expert = make_policy("expert", env, noise=0.05)
        assert isinstance(expert, cls) and expert.noise == 0.05
        obs, _ = env.reset(seed=0)
        expert.reset(seed=0, env=env)
        phases = set()
        truncated = False
        while not truncated:
            action = expert.act(obs)
            assert action.shape == (7,) and action.dtype == np.float32
            assert np.all(np.abs(action) <= 1.0)
            phases.add(expert.phase)
            obs, _, _, truncated, _ = env.step(action)
        assert first_phases <= phases
    finally:
        env.close()


def test_noise_is_seeded_and_zero_noise_is_deterministic():
    env = _make("Lift")
    try:
        def actions(noise, seed):
            expert = LiftExpert(noise=noise)
            obs, _ = env.reset(seed=0)
            expert.reset(seed=seed, env=env)
            out = []
            for _ in range(3):
                out.append(expert.act(obs))
                obs = env.step(out[-1])[0]
            return np.stack(out)

        clean = actions(0.0, 0)
        np.testing.assert_array_equal(clean, actions(0.0, 99))
        noisy = actions(0.3, 7)
        np.testing.assert_array_equal(noisy, actions(0.3, 7))
        assert not np.array_equal(noisy, clean)
        assert not np.array_equal(noisy, actions(0.3, 8))
    finally:
        env.close()


def test_expert_misuse_raises_clear_errors():
    with pytest.raises(ValueError, match="noise must be a finite number >= 0, got -0.1"):
        LiftExpert(noise=-0.1)
    with pytest.raises(ValueError, match="got nan"):
        LiftExpert(noise=float("nan"))
    with pytest.raises(RuntimeError, match=r"LiftExpert.reset\(seed=..., env=env\) before act"):
        LiftExpert().act({})
    with pytest.raises(TypeError, match="pass the robosuite environment.*got None"):
        LiftExpert().reset(seed=0)
    env = _make("Door")
    try:
        with pytest.raises(TypeError, match="LiftExpert solves 'Lift', got an env of task 'Door'"):
            LiftExpert().reset(seed=0, env=env)
    finally:
        env.close()


def test_rotation_helpers():
    axis = np.array([0.3, -0.4, 0.866])
    axis /= np.linalg.norm(axis)
    for angle in (0.0, 0.2, 1.5, 3.0):
        np.testing.assert_allclose(
            mat_to_axis_angle(rot_axis(axis, angle)), axis * angle, atol=1e-9
        )
    half_turn = mat_to_axis_angle(rot_axis(axis, math.pi))
    np.testing.assert_allclose(np.linalg.norm(half_turn), math.pi, atol=1e-6)
    for yaw in np.linspace(-4, 4, 17):
        g = square_grasp_yaw(yaw)
        assert -math.pi / 4 <= g < math.pi / 4
        assert math.isclose(math.remainder(yaw - g, math.pi / 2), 0.0, abs_tol=1e-9)


def test_expert_success_script_runs_and_writes_json(tmp_path, capsys):
    import json

    from kairos_gym.eval.expert_success import main

    out = tmp_path / "experts.json"
    args = ["--env", "kairos_gym/Robosuite-Lift-v0", "--episodes", "1", "--seed", "3"]
    rc = main([*args, "--json", str(out)])
    assert rc == 0
    table = capsys.readouterr().out
    assert "| kairos_gym/Robosuite-Lift-v0 | 1 | 1 | 100% |" in table
    result = json.loads(out.read_text())["results"][0]
    assert result["successes"] == 1 and result["per_episode"][0][0] == 3
    assert main(["--env", "kairos_gym/Nope-v0"]) == 2


def test_a_missing_expert_aims_off_the_cube_by_at_most_its_radius():
    env = _make("Lift")
    try:
        expert = make_policy("expert+miss=0.05", env)
        assert isinstance(expert, LiftExpert) and expert.aim_error == 0.05
        offsets = []
        for seed in range(6):
            obs, _ = env.reset(seed=seed)
            expert.reset(seed=seed, env=env)
            expert.act(obs)
            offsets.append(expert._aim_offset.copy())
        offsets = np.stack(offsets)
        radii = np.linalg.norm(offsets[:, :2], axis=1)
        assert np.all(radii <= 0.05) and np.all(offsets[:, 2] == 0) and len(set(radii.round(6))) == 6
        # Seeded per episode, and the clean expert aims at the cube itself.
        expert.reset(seed=3, env=env)
        np.testing.assert_array_equal(expert._aim_offset, offsets[3])
        clean = make_policy("expert", env)
        clean.reset(seed=3, env=env)
        assert not clean._aim_offset.any()
        with pytest.raises(ValueError, match="miss=D modifies a robosuite expert"):
            make_policy("random+miss=0.05", env)
        with pytest.raises(ValueError, match="miss=0.9"):
            make_policy("expert+miss=0.9", env)
    finally:
        env.close()
