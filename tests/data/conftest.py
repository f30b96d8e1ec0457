"""Fixtures for the data tests: a small env spec, synthetic episodes, and files in the
official LIBERO and robomimic layouts (built here, with their key names and attributes)."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import gymnasium as gym
import h5py
import numpy as np
import pytest

from kairos_gym.data.spaces import EpisodeEnvSpec

H = 16  # image side: small keeps every test fast


def make_spec(image_size: int = H, instruction: str = "lift the cube") -> EpisodeEnvSpec:
    """A spec shaped like a kairos-gym robosuite env with one camera."""
    obs = gym.spaces.Dict(
        {
            "agentview_image": gym.spaces.Box(0, 255, (image_size, image_size, 3), np.uint8),
            "state": gym.spaces.Box(-np.inf, np.inf, (9,), np.float32),
        }
    )
    return EpisodeEnvSpec(
        env_id="kairos_gym/Robosuite-Lift-v0",
        env_kwargs={"cameras": ("agentview",), "image_size": image_size, "max_episode_steps": 50},
        observation_space=obs,
        action_space=gym.spaces.Box(-1.0, 1.0, (7,), np.float32),
        control_freq=20.0,
        instruction=instruction,
        cameras=("agentview",),
        image_size=(image_size, image_size),
    )


def make_episode(T: int, seed: int = 0, image_size: int = H) -> dict[str, Any]:
    """Arrays for ``EpisodeWriter.write_episode``; frame j's pixels all equal j (mod 256),
    so alignment can be checked from the pixels alone. Action ``t`` is ``[t, t, ...] / 1000``."""
    rng = np.random.default_rng(seed)
    frames = (np.arange(T + 1) % 256).astype(np.uint8)[:, None, None, None]
    frames = np.broadcast_to(frames, (T + 1, image_size, image_size, 3)).copy()
    state = rng.standard_normal((T + 1, 9)).astype(np.float32)
    state[:, 0] = np.arange(T + 1)
    success = np.zeros(T, dtype=bool)
    success[T // 2 :] = True
    return {
        "obs": {"agentview_image": frames[:T], "state": state[:T]},
        "actions": (np.arange(T, dtype=np.float32)[:, None] / 1000 * np.ones(7, np.float32)),
        "rewards": np.arange(T, dtype=np.float64) + 1.0,  # reward of step t is t + 1
        "dones": np.arange(T) == T - 1,
        "success": success,
        "states": np.stack([np.full(5, t, np.float64) for t in range(T)]),
        "final_obs": {"agentview_image": frames[T], "state": state[T]},
        "final_state": np.full(5, T, np.float64),
    }


def make_bimanual_spec(image_size: int = H) -> EpisodeEnvSpec:
    """A spec shaped like the ALOHA envs: camera ``top``, 14-D joint targets (grippers in
    [0.2, 1]: bounds that exclude 0), a 14-D ``state``, 50 Hz, 40-step episodes."""
    low = np.full(14, -3.0, np.float32)
    high = np.full(14, 3.0, np.float32)
    low[[6, 13]], high[[6, 13]] = 0.2, 1.0
    obs = gym.spaces.Dict({
        "top_image": gym.spaces.Box(0, 255, (image_size, image_size, 3), np.uint8),
        "state": gym.spaces.Box(-np.inf, np.inf, (14,), np.float32),
    })
    return EpisodeEnvSpec(
        env_id="kairos_gym/Aloha-TransferCube-v0",
        env_kwargs={"cameras": ["top"], "image_size": image_size, "max_episode_steps": 40},
        observation_space=obs,
        action_space=gym.spaces.Box(low, high, dtype=np.float32),
        control_freq=50.0,
        instruction="hand the cube over",
        cameras=("top",),
        image_size=(image_size, image_size),
    )


def make_bimanual_episode(T: int, seed: int = 0, image_size: int = H) -> dict[str, Any]:
    """Arrays for ``write_episode`` under :func:`make_bimanual_spec`: random frames, actions
    inside the bounds, a random 14-D state, staged rewards."""
    rng = np.random.default_rng(500 + seed)
    spec = make_bimanual_spec(image_size)
    frames = rng.integers(0, 255, (T + 1, image_size, image_size, 3), dtype=np.uint8)
    state = rng.standard_normal((T + 1, 14)).astype(np.float32)
    space = spec.action_space
    actions = rng.uniform(space.low, space.high, (T, 14)).astype(np.float32)
    success = np.arange(T) >= T - 2
    return {
        "obs": {"top_image": frames[:T], "state": state[:T]},
        "actions": actions,
        "rewards": np.minimum(np.arange(T) // 3, 4).astype(np.float64),
        "dones": np.zeros(T, dtype=bool),
        "success": success,
        "final_obs": {"top_image": frames[T], "state": state[T]},
    }


MULTIKEY_STATE = {"eef_pos": (3,), "gripper": (2,), "joints": (2, 2), "n_contacts": ()}
"""State keys of :func:`make_multikey_spec`, in space order: 3 + 2 + 4 + 1 = 10 values."""


def make_multikey_spec(image_size: int = H) -> EpisodeEnvSpec:
    """A spec whose observation has one camera and several non-image keys, as LIBERO-style
    envs have: ``eef_pos`` float32 [3], ``gripper`` float32 [2] in [-1, 1], ``joints``
    float32 [2, 2] and ``n_contacts`` int64 [] in [0, 4]."""
    obs = gym.spaces.Dict(
        {
            "agentview_image": gym.spaces.Box(0, 255, (image_size, image_size, 3), np.uint8),
            "eef_pos": gym.spaces.Box(-np.inf, np.inf, (3,), np.float32),
            "gripper": gym.spaces.Box(-1.0, 1.0, (2,), np.float32),
            "joints": gym.spaces.Box(-np.inf, np.inf, (2, 2), np.float32),
            "n_contacts": gym.spaces.Box(0, 4, (), np.int64),
        }
    )
    return EpisodeEnvSpec(
        env_id="kairos_gym/Robosuite-Lift-v0",
        env_kwargs={"cameras": ("agentview",), "image_size": image_size, "max_episode_steps": 50},
        observation_space=obs,
        action_space=gym.spaces.Box(-1.0, 1.0, (7,), np.float32),
        control_freq=20.0,
        instruction="lift the cube",
        cameras=("agentview",),
        image_size=(image_size, image_size),
    )


def make_multikey_episode(T: int, seed: int = 0, image_size: int = H) -> dict[str, Any]:
    """:func:`make_episode` for :func:`make_multikey_spec`: the same frames, actions and
    labels; ``eef_pos[:, 0]`` holds the frame index and the other keys are random."""
    ep = make_episode(T, seed=seed, image_size=image_size)
    rng = np.random.default_rng(1000 + seed)
    eef = rng.standard_normal((T + 1, 3)).astype(np.float32)
    eef[:, 0] = np.arange(T + 1)
    state = {
        "eef_pos": eef,
        "gripper": rng.uniform(-1, 1, (T + 1, 2)).astype(np.float32),
        "joints": rng.standard_normal((T + 1, 2, 2)).astype(np.float32),
        "n_contacts": rng.integers(0, 5, T + 1).astype(np.int64),
    }
    image = ep["obs"]["agentview_image"], ep["final_obs"]["agentview_image"]
    ep["obs"] = {"agentview_image": image[0], **{k: v[:T] for k, v in state.items()}}
    ep["final_obs"] = {"agentview_image": image[1], **{k: v[T] for k, v in state.items()}}
    return ep


@pytest.fixture
def spec() -> EpisodeEnvSpec:
    return make_spec()


@pytest.fixture
def episode_factory() -> Callable[..., dict[str, Any]]:
    return make_episode


def write_libero_file(path: str, num_demos: int = 3, T: int = 12, image_size: int = H) -> None:
    """A file laid out like LIBERO's released demos (``*_demo.hdf5``)."""
    rng = np.random.default_rng(1)
    with h5py.File(path, "w") as f:
        data = f.create_group("data")
        data.attrs["problem_info"] = json.dumps(
            {
                "problem_name": "libero_tabletop_manipulation",
                "domain_name": "robosuite",
                "language_instruction": "put the bowl on the plate",
            }
        )
        data.attrs["env_args"] = json.dumps(
            {
                "type": 1,
                "env_name": "Libero_Tabletop_Manipulation",
                "problem_name": "libero_tabletop_manipulation",
                "bddl_file": "libero/bddl_files/put_the_bowl_on_the_plate.bddl",
                "env_kwargs": {"robots": ["Panda"], "control_freq": 20, "camera_heights": image_size},
            }
        )
        data.attrs["bddl_file_name"] = "libero/bddl_files/put_the_bowl_on_the_plate.bddl"
        data.attrs["macros_image_convention"] = "opengl"
        total = 0
        for i in range(num_demos):
            g = data.create_group(f"demo_{i}")
            obs = g.create_group("obs")
            obs.create_dataset("agentview_rgb", data=rng.integers(0, 255, (T, image_size, image_size, 3), dtype=np.uint8))
            obs.create_dataset("eye_in_hand_rgb", data=rng.integers(0, 255, (T, image_size, image_size, 3), dtype=np.uint8))
            obs.create_dataset("joint_states", data=rng.standard_normal((T, 7)))
            obs.create_dataset("gripper_states", data=rng.standard_normal((T, 2)))
            obs.create_dataset("ee_states", data=rng.standard_normal((T, 6)))
            g.create_dataset("actions", data=rng.uniform(-1, 1, (T, 7)))
            rewards = np.zeros(T, np.uint8)
            rewards[-1] = 1
            g.create_dataset("rewards", data=rewards)
            g.create_dataset("dones", data=rewards.copy())
            g.create_dataset("states", data=rng.standard_normal((T, 47)))
            g.create_dataset("robot_states", data=rng.standard_normal((T, 9)))
            g.attrs["num_samples"] = T
            g.attrs["init_state"] = rng.standard_normal(47)
            total += T
        data.attrs["num_demos"] = num_demos
        data.attrs["total"] = total


def write_robomimic_file(path: str, num_demos: int = 4, T: int = 10, image_size: int = H) -> None:
    """A file laid out like robomimic's image datasets (``image.hdf5``), with a ``mask`` group."""
    rng = np.random.default_rng(2)
    with h5py.File(path, "w") as f:
        data = f.create_group("data")
        data.attrs["env_args"] = json.dumps(
            {"env_name": "Lift", "type": 1, "env_kwargs": {"control_freq": 20, "has_renderer": False}}
        )
        total = 0
        for i in range(num_demos):
            g = data.create_group(f"demo_{i}")
            for group in ("obs", "next_obs"):
                o = g.create_group(group)
                o.create_dataset("agentview_image", data=rng.integers(0, 255, (T, image_size, image_size, 3), dtype=np.uint8))
                o.create_dataset("robot0_eye_in_hand_image", data=rng.integers(0, 255, (T, image_size, image_size, 3), dtype=np.uint8))
                o.create_dataset("robot0_eef_pos", data=rng.standard_normal((T, 3)))
                o.create_dataset("robot0_eef_quat", data=rng.standard_normal((T, 4)))
                o.create_dataset("robot0_gripper_qpos", data=rng.standard_normal((T, 2)))
                o.create_dataset("object", data=rng.standard_normal((T, 10)))
            g.create_dataset("actions", data=rng.uniform(-1, 1, (T, 7)))
            g.create_dataset("rewards", data=(np.arange(T) == T - 1).astype(np.float64))
            g.create_dataset("dones", data=(np.arange(T) == T - 1).astype(np.int64))
            g.create_dataset("states", data=rng.standard_normal((T, 32)))
            g.attrs["num_samples"] = T
            g.attrs["model_file"] = "<mujoco model=\"base\"></mujoco>"
            total += T
        data.attrs["total"] = total
        mask = f.create_group("mask")
        names = [f"demo_{i}" for i in range(num_demos)]
        mask.create_dataset("train", data=np.array(names[:-1], dtype="S"))
        mask.create_dataset("valid", data=np.array(names[-1:], dtype="S"))


@pytest.fixture
def libero_file(tmp_path) -> str:
    path = str(tmp_path / "KITCHEN_SCENE1_put_the_bowl_on_the_plate_demo.hdf5")
    write_libero_file(path)
    return path


@pytest.fixture
def robomimic_file(tmp_path) -> str:
    path = str(tmp_path / "image.hdf5")
    write_robomimic_file(path)
    return path


def collect_small(path, *extra: str, env: str = "kairos_gym/Robosuite-Lift-v0", seed: int = 11) -> None:
    """``kairos-gym collect`` two 8-step noisy-expert episodes at 16 px into ``path``."""
    from kairos_gym.cli import main

    argv = ["collect", "--env", env, "--image-size", "16", "--max-steps", "8", "--episodes", "2",
            "--seed", str(seed), "--policy", "expert+noise=0.3", "--output", str(path), "--no-progress"]
    assert main([*argv, *extra]) == 0
