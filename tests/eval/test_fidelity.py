"""Tests of ``python -m kairos_gym.eval.fidelity`` on a tiny environment checkpoint and small
episode files: JSON and PNG outputs, the table, and clear errors for mismatched data."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from kairos_gym.data.episodes import EpisodeWriter
from kairos_gym.eval.fidelity import main, table_steps
from kairos_gym.imagined.checkpoint import save_env_checkpoint
from kairos_gym.model import WorldModel, WorldModelConfig
from tests.data.conftest import make_episode, make_spec
from tests.model.conftest import randomize_

REPO = Path(__file__).resolve().parents[2]


def write_checkpoint(directory: Path) -> Path:
    """A tiny environment checkpoint for make_spec's env (16x16 agentview, 9-D state)."""
    spec = make_spec()
    torch.manual_seed(0)
    model = randomize_(WorldModel(WorldModelConfig.preset("tiny", state_dim=9))).eval()
    rng = np.random.default_rng(0)
    resets = {
        "agentview_image": rng.integers(0, 256, (2, 16, 16, 3), dtype=np.uint8),
        "state": rng.standard_normal((2, 9)).astype(np.float32),
    }
    return save_env_checkpoint(directory, model, spec, resets)


def write_episodes(path: Path, lengths: list[int], instruction: str = "lift the cube") -> str:
    with EpisodeWriter(str(path), make_spec(instruction=instruction)) as writer:
        for i, T in enumerate(lengths):
            writer.write_episode(**make_episode(T, seed=i), seed=i)
    return str(path)


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("fidelity")
    return {
        "ckpt": str(write_checkpoint(root / "ckpt")),
        "data": write_episodes(root / "lift.hdf5", [10, 12, 6, 11]),
        "other": write_episodes(root / "other.hdf5", [10], instruction="stack the cubes"),
    }


def test_writes_json_and_plot_and_prints_the_table(files, tmp_path, capsys):
    out, png = tmp_path / "res" / "fidelity.json", tmp_path / "res" / "fidelity.png"
    argv = ["--checkpoint", files["ckpt"], "--data", files["data"], "--split", "all",
            "--episodes", "3", "--horizon", "8", "--batch-size", "2", "--threads", "1",
            "--output", str(out), "--plot", str(png), "--no-progress"]
    assert main(argv) == 0
    report = json.loads(out.read_text())
    assert report["command"].startswith("python -m kairos_gym.eval.fidelity --checkpoint ")
    assert "--horizon 8" in report["command"]
    assert report["checkpoint"] == files["ckpt"] and report["data"] == [files["data"]]
    # Round-robin in file order over the episodes with >= 8 steps (demo_2 has only 6).
    assert report["episode_names"] == ["lift.hdf5:demo_0", "lift.hdf5:demo_1", "lift.hdf5:demo_3"]
    curves = report["curves"]
    assert curves["step"] == list(range(1, 9))
    for key in ("psnr", "ssim", "baseline_psnr", "baseline_ssim"):
        assert len(curves[key]) == 8 and all(np.isfinite(curves[key]))
    # make_episode's frame j is flat gray j: repeating frame 0 is off by k at step k.
    assert np.allclose(curves["baseline_psnr"], 20 * np.log10(255 / np.arange(1, 9)))
    assert 0.0 <= report["success"]["step_accuracy"] <= 1.0 and report["state_mae"] is not None
    assert report["torch_threads"] == 1 and report["timing"]["imagined_frames"] == 24
    assert report["image_key"] == "agentview_image" and report["horizon"] == 8
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    table = capsys.readouterr().out
    rows = [line.split()[0] for line in table.splitlines() if line.strip()[:1].isdigit()]
    assert rows == ["1", "2", "4", "8"] and "success accuracy" in table


def test_table_steps():
    assert table_steps(64) == [1, 2, 4, 8, 16, 32, 64]
    assert table_steps(100) == [1, 2, 4, 8, 16, 32, 64, 100]
    assert table_steps(5) == [1, 2, 4, 5]


def test_data_from_another_environment_is_refused(files, tmp_path, capsys):
    argv = ["--checkpoint", files["ckpt"], "--data", files["data"], files["other"],
            "--split", "all", "--episodes", "1", "--horizon", "2",
            "--output", str(tmp_path / "x.json")]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "other.hdf5 was recorded with a different environment than the checkpoint" in err
    assert 'instruction: checkpoint "lift the cube", data "stack the cubes"' in err
    assert not (tmp_path / "x.json").exists()


def test_too_few_long_episodes_says_how_many_are_long_enough(files, tmp_path, capsys):
    argv = ["--checkpoint", files["ckpt"], "--data", files["data"], "--split", "all",
            "--episodes", "3", "--horizon", "11", "--output", str(tmp_path / "x.json")]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "only 2 of the 4 episodes in split 'all' have the 11 steps" in err
    assert "longest: 12 steps" in err
    # --episodes 0 takes every long-enough episode.
    argv[argv.index("3")] = "0"
    assert main([*argv, "--no-progress"]) == 0
    assert len(json.loads((tmp_path / "x.json").read_text())["episode_names"]) == 2


def test_missing_files_and_bad_checkpoints_are_clear_errors(files, tmp_path, capsys):
    base = ["--split", "all", "--horizon", "2", "--output", str(tmp_path / "x.json")]
    assert main(["--checkpoint", files["ckpt"], "--data", str(tmp_path / "nope.hdf5"), *base]) == 2
    assert "no such episode file" in capsys.readouterr().err
    assert main(["--checkpoint", str(tmp_path), "--data", files["data"], *base]) == 2
    assert "error:" in capsys.readouterr().err


def test_runs_as_a_module(files, tmp_path):
    out = tmp_path / "f.json"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "kairos_gym.eval.fidelity", "--checkpoint", files["ckpt"],
         "--data", files["data"], "--split", "all", "--episodes", "2", "--horizon", "4",
         "--threads", "1", "--output", str(out), "--no-progress"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=120, check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(out.read_text())["num_episodes"] == 2
    assert "wrote" in proc.stdout


def test_sample_steps_override_is_used_and_recorded(files, tmp_path, capsys):
    base = ["--checkpoint", files["ckpt"], "--data", files["data"], "--split", "all", "--episodes", "0",
            "--horizon", "2", "--no-progress", "--output", str(tmp_path / "x.json")]
    assert main([*base, "--sample-steps", "3"]) == 0
    assert json.loads((tmp_path / "x.json").read_text())["model_config"]["sample_steps"] == 3
    assert main([*base, "--sample-steps", "0"]) == 2
    assert "--sample-steps must be in 1..50" in capsys.readouterr().err


def test_the_state_of_several_observation_keys_is_scored(tmp_path):
    from kairos_gym.data import ObservationKeys
    from tests.data.conftest import make_multikey_episode, make_multikey_spec

    spec = make_multikey_spec()
    width = ObservationKeys.from_spec(spec).state_width
    torch.manual_seed(0)
    model = randomize_(WorldModel(WorldModelConfig.preset("tiny", state_dim=width))).eval()
    resets = make_multikey_episode(2)["obs"]
    ckpt = save_env_checkpoint(tmp_path / "ckpt", model, spec, resets)
    data = str(tmp_path / "multi.hdf5")
    with EpisodeWriter(data, spec) as writer:
        for i in range(2):
            writer.write_episode(**make_multikey_episode(6, seed=i), seed=i)
    out = tmp_path / "f.json"
    argv = ["--checkpoint", str(ckpt), "--data", data, "--split", "all", "--episodes", "2",
            "--horizon", "3", "--threads", "1", "--output", str(out), "--no-progress"]
    assert main(argv) == 0
    report = json.loads(out.read_text())
    assert report["model_config"]["state_dim"] == 10 and np.isfinite(report["state_mae"])
