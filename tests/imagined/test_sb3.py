"""Tests of the stable-baselines3 adapter (kairos_gym.imagined.sb3) and the PPO example."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import warnings
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest

import kairos_gym
from kairos_gym.errors import DependencyNotInstalled
from kairos_gym.imagined.checkpoint import load_env_checkpoint
from kairos_gym.imagined.env import ImaginedEnv
from kairos_gym.imagined.sb3 import to_sb3, unbatch_infos
from tests.imagined_helpers import lift_spec, sample_actions, write_checkpoint

N = 3
ROOT = Path(__file__).resolve().parents[2]
# Only the missing-dependency test runs without the optional `rl` extra.
needs_sb3 = pytest.mark.skipif(
    importlib.util.find_spec("stable_baselines3") is None,
    reason="stable-baselines3 (the rl extra) is not installed",
)


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    return load_env_checkpoint(write_checkpoint(tmp_path_factory.mktemp("sb3") / "lift"))


@pytest.fixture(scope="module")
def ckpt64_dir(tmp_path_factory):
    # 64x64 frames (SB3's NatureCNN needs >= 36 px), still 4x4x4 latents: as fast as tiny.
    return write_checkpoint(
        tmp_path_factory.mktemp("sb3") / "lift64", lift_spec(64, max_episode_steps=6)
    )


def test_missing_stable_baselines3_is_a_clear_error(ckpt, monkeypatch):
    monkeypatch.setitem(sys.modules, "stable_baselines3", None)
    monkeypatch.setitem(sys.modules, "stable_baselines3.common.vec_env", None)
    envs = kairos_gym.make_vec(num_envs=2, checkpoint=ckpt)
    with pytest.raises(
        DependencyNotInstalled, match=r"stable-baselines3 is not installed.*\.\[rl\]"
    ):
        to_sb3(envs)
    with pytest.raises(ImportError):  # DependencyNotInstalled is an ImportError
        from kairos_gym.imagined.sb3 import SB3VecEnv  # noqa: F401


@needs_sb3
def test_unbatch_infos():
    infos = {
        "a": np.array([1.0, 0.0, 3.0]),
        "_a": np.array([True, False, True]),
        "final_info": {"b": np.array([0, 7, 0]), "_b": np.array([False, True, False])},
        "_final_info": np.array([False, True, False]),
        "shared": "x",
    }
    rows = unbatch_infos(infos, 3)
    assert rows == [
        {"a": 1.0, "shared": "x"},
        {"final_info": {"b": 7}, "shared": "x"},
        {"a": 3.0, "shared": "x"},
    ]
    assert isinstance(rows[0]["a"], float)


@needs_sb3
@pytest.mark.parametrize("mode", ["same_step", "next_step"])
def test_vec_env_api_over_the_imagined_vector_env(ckpt, mode):
    venv = to_sb3(
        kairos_gym.make_vec(
            num_envs=N,
            checkpoint=ckpt,
            autoreset_mode=mode,
            max_episode_steps=2,
            done_threshold=1.0,
            render_mode="rgb_array",
        )
    )
    from stable_baselines3.common.vec_env import VecEnv

    from kairos_gym.imagined.sb3 import SB3VecEnv

    assert isinstance(venv, VecEnv) and isinstance(venv, SB3VecEnv) and venv.num_envs == N
    assert venv.observation_space == ckpt.env_spec.observation_space
    assert venv.action_space == ckpt.env_spec.action_space
    venv.seed(4)
    obs = venv.reset()
    assert set(obs) == {"agentview_image", "state"} and obs["agentview_image"].shape == (
        N,
        16,
        16,
        3,
    )
    assert venv.reset_infos[0] == {"success": False, "is_success": False, "instruction": "lift the red cube"}
    obs, rewards, dones, infos = venv.step(sample_actions(1, N)[0])
    assert rewards.dtype == np.float32 and dones.dtype == bool and not dones.any()
    assert len(infos) == N and set(infos[0]) == {
        "success",
        "is_success",
        "success_prob",
        "done_prob",
        "instruction",
        "TimeLimit.truncated",
    }
    last = {k: v.copy() for k, v in obs.items()}
    obs, rewards, dones, infos = venv.step(sample_actions(1, N, seed=1)[0])
    assert dones.all() and all(info["TimeLimit.truncated"] for info in infos)
    for i, info in enumerate(infos):
        terminal = info["terminal_observation"]
        assert set(terminal) == {"agentview_image", "state"} and terminal["state"].shape == (8,)
        assert not np.array_equal(
            terminal["state"], last["state"][i]
        )  # the step's, not the previous
        # obs holds the next episode's (stored) start
        assert any(np.array_equal(obs["state"][i], s) for s in ckpt.reset_observations["state"])
        assert "success_prob" in info and venv.reset_infos[i]["success"] is False
    obs, _, dones, _ = venv.step(sample_actions(1, N)[0])  # the new episodes go on normally
    assert not dones.any()
    image = venv.render(mode="rgb_array")
    assert image.dtype == np.uint8 and image.ndim == 3
    assert venv.get_attr("instruction") == ["lift the red cube"] * N
    assert venv.get_attr("control_freq", indices=[1]) == [20.0]
    venv.set_attr("success_threshold", 0.9)
    assert venv.vector_env.success_threshold == 0.9
    with pytest.raises(ValueError, match="can only be set for all 3 envs"):
        venv.set_attr("success_threshold", 0.1, indices=[0])
    with pytest.raises(NotImplementedError, match="on .vector_env directly"):
        venv.env_method("snapshot")
    assert venv.env_is_wrapped(gym.Wrapper) == [False] * N
    venv.close()


@needs_sb3
def test_next_step_conversion_equals_same_step(ckpt):
    def run(mode):
        venv = to_sb3(
            kairos_gym.make_vec(
                num_envs=N,
                checkpoint=ckpt,
                autoreset_mode=mode,
                max_episode_steps=2,
                done_threshold=1.0,
            )
        )
        venv.seed(0)
        out = [venv.reset()]
        for a in sample_actions(5, N):
            out.append(venv.step(a))
        return out

    same, nxt = run("same_step"), run("next_step")
    np.testing.assert_array_equal(same[0]["state"], nxt[0]["state"])
    for a, b in zip(same[1:], nxt[1:]):
        np.testing.assert_allclose(a[0]["state"], b[0]["state"], atol=1e-5)
        np.testing.assert_allclose(a[1], b[1], atol=1e-5)
        np.testing.assert_array_equal(a[2], b[2])
        for x, y in zip(a[3], b[3]):
            assert sorted(x) == sorted(y)
            if "terminal_observation" in x:
                np.testing.assert_allclose(
                    x["terminal_observation"]["state"],
                    y["terminal_observation"]["state"],
                    atol=1e-5,
                )


@needs_sb3
def test_vec_env_api_over_a_gymnasium_sync_vector_env():
    # Next-step CartPole: finished envs are reset right after the step, as SB3 expects.
    venv = to_sb3(gym.make_vec("CartPole-v1", num_envs=2, vectorization_mode="sync"))
    venv.seed(0)
    obs = venv.reset()
    assert obs.shape == (2, 4)
    seen_done = False
    for _ in range(200):
        obs, _, dones, infos = venv.step(np.array([1, 1]))
        for i in np.flatnonzero(dones):
            seen_done = True
            assert infos[i]["terminal_observation"].shape == (4,)
            assert abs(infos[i]["terminal_observation"][2]) > 0.2 or infos[i]["TimeLimit.truncated"]
            assert np.all(np.abs(obs[i]) <= 0.05)  # a fresh CartPole start
    assert seen_done
    assert venv.get_attr("spec")[0].id == "CartPole-v1"
    venv.set_attr("custom", 5, indices=[1])
    assert venv.get_attr("custom", indices=[1]) == [5]
    assert venv.env_method("get_wrapper_attr", "custom", indices=[1]) == [5]
    assert venv.env_is_wrapped(gym.wrappers.TimeLimit) == [True, True]
    venv.close()


@needs_sb3
def test_sb3_env_checker_and_wrappers(ckpt):
    from stable_baselines3.common.env_checker import check_env as sb3_check_env
    from stable_baselines3.common.vec_env import VecMonitor

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # 16 px images and an unbounded state
        sb3_check_env(ImaginedEnv(ckpt, done_threshold=1.0))
    monitored = VecMonitor(
        to_sb3(
            kairos_gym.make_vec(
                num_envs=2, checkpoint=ckpt, max_episode_steps=2, done_threshold=1.0
            )
        )
    )
    monitored.reset()
    episodes = []
    for a in sample_actions(4, 2):
        _, _, dones, infos = monitored.step(a)
        episodes += [info["episode"] for info, done in zip(infos, dones) if done]
    assert len(episodes) == 4 and all(e["l"] == 2 for e in episodes)


@needs_sb3
def test_ppo_learns_a_few_hundred_steps(ckpt64_dir):
    from stable_baselines3 import PPO

    venv = to_sb3(
        kairos_gym.make_vec(
            num_envs=4, checkpoint=str(ckpt64_dir), autoreset_mode="same_step", sample_steps=1
        )
    )
    agent = PPO(
        "MultiInputPolicy", venv, n_steps=32, batch_size=64, n_epochs=2, seed=0, device="cpu"
    )
    before = [p.detach().clone() for p in agent.policy.parameters()]
    agent.learn(total_timesteps=256)
    assert agent.num_timesteps == 256
    assert any(
        not np.array_equal(a.numpy(), b.detach().numpy())
        for a, b in zip(before, agent.policy.parameters())
    )
    obs = venv.reset()
    actions, _ = agent.predict(obs, deterministic=True)
    assert actions.shape == (4, 7) and np.all(np.abs(actions) <= 1)


@needs_sb3
def test_ppo_example_runs(ckpt64_dir, tmp_path):
    script = ROOT / "examples" / "ppo_imagined.py"
    result = subprocess.run(
        [
            sys.executable,
            str(script),
            "--checkpoint",
            str(ckpt64_dir),
            "--timesteps",
            "64",
            "--num-envs",
            "2",
            "--n-steps",
            "32",
            "--batch-size",
            "32",
            "--horizon",
            "4",
            "--eval-episodes",
            "2",
            "--sample-steps",
            "1",
            "--threads",
            "1",
        ],
        check=False,
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert "mean predicted episode reward (2 episodes x 4 steps): before " in result.stdout
    assert "after" in result.stdout
    missing = subprocess.run(
        [sys.executable, str(script), "--checkpoint", str(tmp_path / "nothing")],
        check=False,
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    assert missing.returncode == 1 and "error: no config.json" in missing.stderr
