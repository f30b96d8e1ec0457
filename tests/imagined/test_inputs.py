"""Bad inputs to the imagined envs and the world model: step limits, devices, actions numpy
cannot read, symlinked checkpoint files. Each is refused clearly (or, where Gymnasium
documents it, does what it documents) and the env keeps working."""

from __future__ import annotations

import os

import gymnasium as gym
import numpy as np
import pytest
import torch

import kairos_gym
from kairos_gym.errors import CheckpointError, DeviceUnavailable, InvalidAction, ShapeError
from kairos_gym.imagined.checkpoint import RESET_NAME, load_env_checkpoint
from kairos_gym.imagined.env import ImaginedEnv
from tests.imagined_helpers import write_checkpoint

N = 2
no_cuda = pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is available here")


@pytest.fixture(scope="module")
def path(tmp_path_factory):
    return write_checkpoint(tmp_path_factory.mktemp("inputs") / "lift")  # limit: 12 steps


@pytest.fixture(scope="module")
def ckpt(path):
    return load_env_checkpoint(path)


def test_set_attr_refuses_a_negative_limit_and_episodes_keep_theirs(ckpt):
    envs = kairos_gym.make_vec(num_envs=N, checkpoint=ckpt)
    envs.reset(seed=0)
    with pytest.raises(ValueError, match=r"max_episode_steps must be a positive integer or None, got -5"):
        envs.set_attr("max_episode_steps", -5)
    with pytest.raises(ValueError, match="positive integer"):
        envs.set_attr("max_episode_steps", [0, 0])
    assert envs.get_attr("max_episode_steps") == (12, 12)
    actions = np.zeros((N, 7), np.float32)
    truncated = [envs.step(actions)[3].any() for _ in range(3)]
    assert truncated == [False, False, False]
    envs.close()


@pytest.mark.filterwarnings("ignore:kairos_gym/Imagined-v0 is registered")
def test_gym_make_minus_one_is_gymnasiums_no_time_limit(ckpt):
    """Gymnasium documents ``max_episode_steps=-1`` as "no TimeLimit"; the env then hands
    truncation to nobody: episodes end only when the model predicts the end."""
    env = gym.make("kairos_gym/Imagined-v0", checkpoint=ckpt, max_episode_steps=-1,
                   done_threshold=1.0)
    assert env.unwrapped.max_episode_steps is None
    env.reset(seed=0)
    ends = [env.step(np.zeros(7, np.float32))[2:4] for _ in range(15)]  # past the 12-step limit
    assert not any(terminated or truncated for terminated, truncated in ends)
    env.close()
    with pytest.raises(ValueError, match="max_episode_steps"):
        gym.make("kairos_gym/Imagined-v0", checkpoint=ckpt, max_episode_steps=-5)
    with pytest.raises(ValueError, match=r"max_episode_steps must be a positive integer or None, got -1"):
        ImaginedEnv(ckpt, max_episode_steps=-1)
    with pytest.raises(ValueError, match=r"max_episode_steps must be a positive integer or None, got -1"):
        kairos_gym.make_vec(num_envs=N, checkpoint=ckpt, max_episode_steps=-1)


def test_tensors_with_grad_are_actions_and_ragged_lists_are_refused(ckpt):
    env = ImaginedEnv(ckpt)
    env.reset(seed=0)
    action = torch.zeros(7, requires_grad=True) * 1.0
    env.step(action)
    with pytest.raises(InvalidAction, match="action must be a rectangular array of numbers, got list"):
        env.step([[0.0] * 7, [0.0]])
    assert env.core.steps[0] == 1
    env.step(np.zeros(7, np.float32))

    envs = kairos_gym.make_vec(num_envs=N, checkpoint=ckpt)
    envs.reset(seed=0)
    envs.step(torch.zeros(N, 7, requires_grad=True) * 1.0)
    with pytest.raises(InvalidAction, match="actions must be a rectangular array of numbers"):
        envs.step([[0.0] * 7, [0.0] * 6])
    assert envs.episode_steps.tolist() == [1, 1]
    envs.close()


@no_cuda
def test_cuda_on_a_cpu_build_is_a_clear_error(path, ckpt):
    match = r"device 'cuda' is not available: this torch is a CPU-only build"
    with pytest.raises(DeviceUnavailable, match=match):
        ImaginedEnv(path, device="cuda")
    with pytest.raises(DeviceUnavailable, match=match):
        gym.make("kairos_gym/Imagined-v0", checkpoint=path, device="cuda")
    with pytest.raises(DeviceUnavailable, match=match):
        kairos_gym.make_vec(num_envs=N, checkpoint=path, device="cuda")
    with pytest.raises(DeviceUnavailable, match=match):
        load_env_checkpoint(path, device="cuda")
    with pytest.raises(DeviceUnavailable, match="'tpu' is not a device name"):
        ImaginedEnv(ckpt, device="tpu")


def test_world_model_step_refuses_what_it_cannot_read(ckpt):
    model = ckpt.model
    state = model.observe(model.init_state(1), ckpt.reset_observations["agentview_image"][:1, None])
    before = {k: state[k].clone() for k in state}
    for bad, match in (
        ([[0.0] * 7, [0.0]], "actions must be a rectangular array of numbers"),
        (np.array([["a"] * 7]), "actions must be real numbers, got dtype <U1"),
        (torch.zeros(1, 7, dtype=torch.complex64), "real numbers, got a torch.complex64 tensor"),
        (np.full((1, 7), np.nan), "actions contain NaN or inf"),
    ):
        with pytest.raises(ShapeError, match=match):
            model.step(state, bad)
    with pytest.raises(TypeError, match="state must be a WorldState"):
        model.step({"t": 0}, np.zeros((1, 7)))
    assert all(torch.equal(before[k], state[k]) for k in state)
    frames, _, _ = model.step(state, torch.zeros(1, 7, requires_grad=True))
    assert frames.shape == (1, 16, 16, 3)


def test_a_symlinked_reset_file_is_refused(tmp_path, path):
    copy = write_checkpoint(tmp_path / "copy")
    os.unlink(copy / RESET_NAME)
    os.symlink(path / RESET_NAME, copy / RESET_NAME)
    with pytest.raises(CheckpointError, match=rf"{RESET_NAME} is a symlink"):
        load_env_checkpoint(copy)
