"""Tests of ``python -m kairos_gym.eval.bench_imagined_speed`` on a tiny environment checkpoint:
the JSON report, the real env's kwargs, failures reported rather than fatal, and (with the
simulators installed) one short run against real robosuite. No speed is asserted."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch

import kairos_gym
from kairos_gym.data.spaces import EpisodeEnvSpec
from kairos_gym.eval.bench_imagined_speed import main, real_env_kwargs
from kairos_gym.imagined.checkpoint import load_env_checkpoint, save_env_checkpoint
from kairos_gym.model import WorldModel, WorldModelConfig
from tests.model.conftest import randomize_

REPO = Path(__file__).resolve().parents[2]

needs_make_vec = pytest.mark.skipif(
    not hasattr(kairos_gym, "make_vec"), reason="kairos_gym.make_vec is not in this version"
)


def write_checkpoint(directory: Path, env_id: str = "kairos_gym/Robosuite-Lift-v0") -> str:
    """A tiny checkpoint imitating robosuite Lift at 16x16 (8-D state, as the real env has)."""
    spec = EpisodeEnvSpec(
        env_id=env_id,
        env_kwargs={"task": "Lift", "cameras": ["agentview", "robot0_eye_in_hand"],
                    "image_size": 64, "max_episode_steps": 20},
        observation_space=gym.spaces.Dict({
            "agentview_image": gym.spaces.Box(0, 255, (16, 16, 3), np.uint8),
            "state": gym.spaces.Box(-np.inf, np.inf, (8,), np.float32),
        }),
        action_space=gym.spaces.Box(-1.0, 1.0, (7,), np.float32),
        control_freq=20.0,
        instruction="lift the cube",
        cameras=("agentview",),
        image_size=(16, 16),
    )
    torch.manual_seed(0)
    model = randomize_(WorldModel(WorldModelConfig.preset("tiny", state_dim=8))).eval()
    rng = np.random.default_rng(0)
    resets = {"agentview_image": rng.integers(0, 256, (2, 16, 16, 3), dtype=np.uint8),
              "state": rng.standard_normal((2, 8)).astype(np.float32)}
    return str(save_env_checkpoint(directory, model, spec, resets))


def short_run(ckpt: str, out: Path, *extra: str) -> list[str]:
    return ["--checkpoint", ckpt, "--num-envs", "3", "--steps", "4", "--single-steps", "3",
            "--warmup", "1", "--threads", "1", "--output", str(out), *extra]


def test_real_env_renders_only_the_checkpoint_camera_at_its_size(tmp_path):
    ckpt = load_env_checkpoint(write_checkpoint(tmp_path / "ckpt"))
    kwargs = real_env_kwargs(ckpt)
    assert kwargs["cameras"] == ("agentview",) and kwargs["image_size"] == 16
    assert kwargs["task"] == "Lift" and kwargs["max_episode_steps"] == 20


@needs_make_vec
def test_imagined_only_report(tmp_path, capsys):
    ckpt, out = write_checkpoint(tmp_path / "ckpt"), tmp_path / "r" / "speed.json"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert main(short_run(ckpt, out, "--no-real")) == 0
    # The single env keeps the checkpoint's 20-step limit, not the id's registered one.
    assert not [w for w in caught if "registered with max_episode_steps" in str(w.message)]
    report = json.loads(out.read_text())
    command = "python -m kairos_gym.eval.bench_imagined_speed --checkpoint"
    assert report["command"].startswith(command)
    vec, single = report["imagined_vector"], report["imagined_single"]
    assert vec["num_envs"] == 3 and vec["batched_steps"] == 4 and vec["env_steps"] == 12
    assert vec["env_steps_per_s"] > 0 and set(vec["batched_step_ms"]) >= {"median", "p90"}
    assert single["env_steps"] == 3 and single["step_ms"]["min"] <= single["step_ms"]["max"]
    assert report["real"] == {"skipped": "--no-real"}
    assert report["ratios"]["vector_over_real"] is None
    assert report["torch_threads"] == 1 and report["checkpoint"] == ckpt
    assert "imagined vector (3 envs)" in capsys.readouterr().out


@needs_make_vec
def test_a_real_env_that_cannot_be_made_is_reported_not_fatal(tmp_path, capsys):
    ckpt = write_checkpoint(tmp_path / "ckpt", env_id="kairos_gym/Nowhere-v0")
    out = tmp_path / "speed.json"
    assert main(short_run(ckpt, out, "--real-steps", "2")) == 1
    report = json.loads(out.read_text())
    assert "Nowhere" in report["real"]["skipped"] and report["imagined_vector"]["env_steps"] == 12
    assert report["ratios"] == {"vector_over_real": None, "single_over_real": None}
    assert "some measurements did not run" in capsys.readouterr().err


def test_bad_arguments(tmp_path, capsys):
    assert main(["--checkpoint", str(tmp_path), "--output", str(tmp_path / "x.json")]) == 2
    assert "error:" in capsys.readouterr().err
    assert main(["--steps", "0", "--output", str(tmp_path / "x.json")]) == 2


@needs_make_vec
@pytest.mark.sim
@pytest.mark.skipif(importlib.util.find_spec("robosuite") is None, reason="needs the [sim] extra")
def test_against_real_robosuite_as_a_module(tmp_path):
    ckpt, out = write_checkpoint(tmp_path / "ckpt"), tmp_path / "speed.json"
    proc = subprocess.run(
        [sys.executable, "-m", "kairos_gym.eval.bench_imagined_speed",
         *short_run(ckpt, out, "--real-steps", "5")],
        cwd=REPO, env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True,
        timeout=300, check=False,
    )
    assert proc.returncode == 0, proc.stderr
    report = json.loads(out.read_text())
    assert report["real"]["env_steps"] == 5 and report["real"]["env_kwargs"]["image_size"] == 16
    assert report["ratios"]["vector_over_real"] > 0 and report["mujoco_gl"]
    assert "imagined vector / real" in proc.stdout
