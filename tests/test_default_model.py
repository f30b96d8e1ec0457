"""The embedded default model: present, small, documented, and a drop-in for the real Lift env."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium.utils.env_checker import check_env

import kairos_gym  # noqa: F401  (registers the environments)
from kairos_gym.data.spaces import spaces_equal
from kairos_gym.imagined.checkpoint import (
    EMBEDDED_CHECKPOINTS,
    load_env_checkpoint,
)

MAX_BYTES = 25 * 1024 * 1024
PACKAGE_BUDGET = 50 * 1024 * 1024


@pytest.mark.parametrize("name", sorted(EMBEDDED_CHECKPOINTS))
def test_every_embedded_model_ships_within_the_size_budget(name):
    files = [p for p in EMBEDDED_CHECKPOINTS[name].iterdir() if p.is_file()]
    names = {p.name for p in files}
    assert {"config.json", "model.safetensors", "codec.safetensors", "reset_observations.safetensors",
            "README.md"} <= names
    assert sum(p.stat().st_size for p in files) <= MAX_BYTES


def test_the_embedded_models_together_keep_the_package_under_50_mb():
    total = sum(p.stat().st_size for d in EMBEDDED_CHECKPOINTS.values() for p in d.iterdir())
    assert total <= PACKAGE_BUDGET


@pytest.mark.parametrize("name", sorted(EMBEDDED_CHECKPOINTS))
def test_the_model_card_reports_data_steps_hardware_and_fidelity(name):
    card = (EMBEDDED_CHECKPOINTS[name] / "README.md").read_text()
    for needle in ("kairos-gym collect", "kairos-gym train", "steps", "CPU", "PSNR", "SSIM",
                   "success", "steps/s"):
        assert needle in card, f"the model card does not mention {needle!r}"


def test_the_default_model_loads_as_a_lift_env_checkpoint():
    ckpt = load_env_checkpoint(None)
    assert ckpt.env_spec.env_id == "kairos_gym/Robosuite-Lift-v0"
    assert ckpt.image_key == "agentview_image" and ckpt.model.config.frame_shape == (64, 64, 3)
    assert ckpt.num_resets >= 16
    assert ckpt.info["training"]["steps"]["world_model"] > 0


def test_the_default_imagined_env_passes_the_gymnasium_checker():
    env = gym.make("kairos_gym/Imagined-v0")
    check_env(env.unwrapped, skip_render_check=True)
    env.reset(seed=0)
    obs = env.step(env.action_space.sample())[0]
    assert env.observation_space.contains(obs)
    env.close()


@pytest.mark.sim
def test_the_default_imagined_env_has_the_real_envs_spaces():
    pytest.importorskip("robosuite")
    ckpt = load_env_checkpoint(None)
    real = gym.make(ckpt.env_spec.env_id, **ckpt.env_spec.env_kwargs)
    imagined = gym.make("kairos_gym/Imagined-v0", checkpoint=ckpt)
    try:
        assert spaces_equal(real.observation_space, imagined.observation_space)
        assert spaces_equal(real.action_space, imagined.action_space)
        obs, _ = real.reset(seed=3)
        start, _ = imagined.reset(seed=3, options={"observation": obs})
        assert (start["agentview_image"] == obs["agentview_image"]).all()
    finally:
        real.close()
        imagined.close()


def test_the_transfer_cube_model_carries_the_real_start_and_a_still_pair_of_arms():
    env = gym.make("kairos_gym/Imagined-v0", checkpoint=EMBEDDED_CHECKPOINTS["transfer-cube"],
                   max_episode_steps=400)
    core = env.unwrapped.core
    assert core.model.config.proprio_conditioning and core.model.config.state_outcomes
    assert env.action_space.shape == (14,) and env.unwrapped.checkpoint.image_key == "top_image"
    obs, _ = env.reset(seed=0)
    carried = core.model.dit.denormalize_state(core.world_state["proprio"])[0].numpy()
    start = np.concatenate([obs["object_state"], obs["state"]])  # the space order
    assert abs(carried - start).max() < 1e-3
    # Joint targets held at the start pose (ALOHA's actions are absolute joint targets):
    # the arms stay, the cube stays down, and nothing is imagined as a success.
    hold = np.clip(obs["state"], env.action_space.low, env.action_space.high)
    for _ in range(40):
        obs, _, terminated, _, info = env.step(hold)
        assert not info["success"] and not terminated
    assert abs(obs["state"] - start[3:]).max() < 0.1
    # The cube settles from its spawn height onto the table (it does in the simulator
    # too, and may slide a few cm there) and is never lifted.
    assert obs["object_state"][2] < 0.03 and abs(obs["object_state"][:2] - start[:2]).max() < 0.1
    env.close()


@pytest.mark.sim
def test_the_transfer_cube_model_starts_from_the_real_reset_of_a_seed():
    pytest.importorskip("gym_aloha")
    env = gym.make("kairos_gym/Imagined-v0", checkpoint=EMBEDDED_CHECKPOINTS["transfer-cube"],
                   max_episode_steps=400, real_resets=True)
    real = env.unwrapped.real_env
    try:
        assert spaces_equal(real.observation_space, env.observation_space)
        assert spaces_equal(real.action_space, env.action_space)
        want, _ = real.reset(seed=100000)
        got, _ = env.reset(seed=100000)
        for key in want:
            np.testing.assert_array_equal(got[key], want[key])
    finally:
        env.close()


def test_the_objects_model_reads_success_from_the_carried_cube():
    env = gym.make("kairos_gym/Imagined-v0", checkpoint=EMBEDDED_CHECKPOINTS["lift-objects"])
    core = env.unwrapped.core
    assert core.model.config.state_outcomes and "object_state" in env.observation_space.spaces
    obs, _ = env.reset(seed=0)
    # A still arm: the carried cube stays on the table and no step is imagined as a success
    # (the earlier models with a success head on the frames imagined some).
    for _ in range(40):
        obs, _, terminated, _, info = env.step(np.zeros(7, np.float32))
        assert not info["success"] and not terminated
    assert abs(obs["object_state"][2] - 0.82) < 0.02  # the cube's height: on the table
    # Success follows the carried state: a cube lifted 15 cm is a success.
    dyn = core.model.dit.proprio_dynamics
    lifted = torch.as_tensor(np.concatenate([obs["object_state"], obs["state"]]))[None].float()
    lifted[0, 2] += 0.15
    lifted[0, 3:6] = lifted[0, 0:3]  # the grip site at the cube
    lifted[0, 9:11] = torch.tensor([0.0208, -0.0208])  # fingers closed on a 4 cm cube
    with torch.no_grad():
        p = dyn.outcomes(core.model.dit.normalize_state(lifted))["success"].sigmoid()
    assert float(p) > 0.5
    env.close()



def test_the_door_model_reads_success_from_the_carried_hinge():
    env = gym.make("kairos_gym/Imagined-v0", checkpoint=EMBEDDED_CHECKPOINTS["door"],
                   max_episode_steps=120)
    core = env.unwrapped.core
    assert core.model.config.state_outcomes and env.unwrapped.checkpoint.image_key == "sideview_image"
    obs, _ = env.reset(seed=0)
    # A still arm never opens the door: the carried hinge stays shut and no step succeeds.
    for _ in range(30):
        obs, _, terminated, _, info = env.step(np.zeros(7, np.float32))
        assert not info["success"] and not terminated
    assert abs(obs["object_state"][3]) < 0.05  # the hinge angle (rad)
    # Success follows the carried state: a door swung 1 rad open is a success. (The outcome
    # head was fitted on reachable states, where an open door has the gripper at its handle;
    # with the arm still at rest, as here, it reads the 0.3 rad threshold only from ~0.6 rad.)
    dyn = core.model.dit.proprio_dynamics
    opened = torch.as_tensor(np.concatenate([obs["object_state"], obs["state"]]))[None].float()
    opened[0, 3] = 1.0
    with torch.no_grad():
        p = dyn.outcomes(core.model.dit.normalize_state(opened))["success"].sigmoid()
    assert float(p) > 0.5
    env.close()
