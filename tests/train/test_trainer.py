"""End-to-end training on synthetic episodes: output, resume, damaged checkpoints, DDP."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from kairos_gym.errors import CheckpointError
from kairos_gym.imagined.checkpoint import load_env_checkpoint
from kairos_gym.model import checkpoint as ckpt
from kairos_gym.train.checkpointing import PREVIOUS_NAME, STATE_NAME
from kairos_gym.train.trainer import Trainer, load_config
from tests.train.conftest import write_config, write_data

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return write_data(tmp_path_factory.mktemp("data") / "eps.hdf5")


def _train(config_path: Path, output: Path, **kwargs) -> Path | None:
    torch.set_num_threads(1)
    return Trainer(load_config(config_path), output, progress=False, **kwargs).run()


def _weights(directory: Path) -> dict[str, torch.Tensor]:
    return {**ckpt.load_tensors(directory / "model.safetensors"),
            **{"codec." + k: v for k, v in ckpt.load_tensors(directory / "codec.safetensors").items()}}


def test_a_run_writes_an_env_checkpoint_and_a_metrics_log(tmp_path, data):
    out = _train(write_config(tmp_path, data), tmp_path / "run")
    loaded = load_env_checkpoint(out)
    assert loaded.num_resets == 3
    assert loaded.env_spec.env_id == "kairos_gym/Robosuite-Lift-v0"
    training = loaded.info["training"]
    assert training["steps"] == {"codec": 4, "world_model": 6}
    assert training["data"][0]["episodes"] == 6
    assert "hardware" in training and training["final_eval"]
    # The state normalisation was fitted to the data, not left at identity.
    assert not torch.equal(loaded.model.dit.state_std, torch.ones(9))
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    wm = [r for r in records if r["stage"] == "world_model" and "loss" in r]
    assert [r["step"] for r in wm] == [2, 4, 6]
    assert all(k in wm[0] for k in ("velocity", "reward", "success", "done", "state", "lr"))
    evals = [r["eval"] for r in records if r["stage"] == "world_model" and "eval" in r]
    assert len(evals) == 2  # step 3 and the end
    assert "open_loop_psnr" in evals[-1] and "baseline_psnr" in evals[-1] and "success_accuracy" in evals[-1]


def test_an_interrupted_run_ends_where_an_uninterrupted_one_does(tmp_path, data):
    config = write_config(tmp_path, data)
    whole = _train(config, tmp_path / "whole")
    assert _train(config, tmp_path / "split", stop_after=3) is None  # pauses in the codec stage
    assert (tmp_path / "split" / "codec" / STATE_NAME).exists()
    assert not (tmp_path / "split" / "world_model").exists()
    assert _train(config, tmp_path / "split", stop_after=3) is None  # codec done, pauses the world model
    split = _train(config, tmp_path / "split")
    a, b = _weights(whole), _weights(split)
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a), "resumed weights differ from an uninterrupted run"
    # The log of the resumed run has each step once.
    steps = [json.loads(line)["step"] for line in (tmp_path / "split" / "metrics.jsonl").read_text().splitlines()
             if '"world_model"' in line and '"loss"' in line]
    assert steps == [2, 4, 6]


def test_a_damaged_latest_checkpoint_falls_back_to_the_previous_one(tmp_path, data):
    config = write_config(tmp_path, data)
    whole = _train(config, tmp_path / "whole")
    out = tmp_path / "run"
    _train(config, out, stop_after=3)
    _train(config, out, stop_after=5)  # world model at step 5: latest = 5, previous = 4
    state_dir = out / "world_model"
    assert (state_dir / PREVIOUS_NAME).exists()
    (state_dir / STATE_NAME).write_bytes(b"\x00garbage")
    with pytest.warns(UserWarning, match="previous checkpoint"):
        result = _train(config, out)
    a, b = _weights(whole), _weights(result)
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_unreadable_checkpoints_and_other_runs_are_refused(tmp_path, data):
    config = write_config(tmp_path, data)
    out = tmp_path / "run"
    _train(config, out, stop_after=2)
    for name in (STATE_NAME, PREVIOUS_NAME):
        if (out / "codec" / name).exists():
            (out / "codec" / name).write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="no readable training state"):
        _train(config, out)
    other = write_config(tmp_path, data, world_model="lr = 0.5")
    with pytest.raises(CheckpointError, match="different config"):
        _train(other, out)


def test_the_cli_trains_and_reports_errors(tmp_path, data):
    config = write_config(tmp_path, data)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "kairos_gym.cli", "train", "--config", str(config), "--no-progress"]
    done = subprocess.run([*cmd, "--output", str(tmp_path / "run")], check=False, capture_output=True, text=True, env=env,
                          cwd=ROOT, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "environment checkpoint written" in done.stdout
    bad = tmp_path / "bad.toml"
    bad.write_text("[data]\npaths = ['missing.hdf5']\n")
    failed = subprocess.run([*cmd[:-3], "--config", str(bad), "--output", str(tmp_path / "x")], check=False, capture_output=True,
                            text=True, env=env, cwd=ROOT, timeout=120)
    assert failed.returncode == 2 and "does not exist" in failed.stderr


def test_two_gloo_processes_train_the_same_model_as_one(tmp_path, data):
    # Noise and batches are dealt per global row, so 2 processes with half the batch each
    # must match 1 process up to float summation order. The velocity loss is averaged over
    # equal counts per process (no context frames but the first; heads see only those).
    exact = "context_fraction = 0.0\ncontext_noise_max = 0.0\nhead_sigma_max = 0.0"
    config = write_config(tmp_path, data, world_model=exact)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MASTER_ADDR": "127.0.0.1"}
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port",
                str(29500 + os.getpid() % 1000), "-m", "kairos_gym.cli", "train", "--config", str(config),
                "--output", str(tmp_path / "ddp"), "--no-progress", "--device", "cpu"]
    done = subprocess.run(torchrun, check=False, capture_output=True, text=True, env=env, cwd=ROOT, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    single = _train(config, tmp_path / "single")
    a, b = _weights(tmp_path / "ddp" / "model"), _weights(single)
    worst = max(float((a[k].float() - b[k].float()).abs().max()) for k in a)
    assert worst < 1e-4, f"2-process weights differ from 1 process by {worst}"
    info = json.loads((tmp_path / "ddp" / "model" / "config.json").read_text())
    assert info["training"]["hardware"]["processes"] == 2


def test_init_fine_tunes_from_an_env_checkpoint(tmp_path, data):
    first = _train(write_config(tmp_path, data), tmp_path / "first")
    base = _weights(first)
    (tmp_path / "ft").mkdir()
    # A vanishing learning rate: the fine-tuned weights stay at the initial ones.
    config = write_config(tmp_path / "ft", data, world_model="lr = 1e-12")
    text = config.read_text().replace("seed = 3", f'seed = 3\ninit = "{first}"')
    config.write_text(text)
    out = _train(config, tmp_path / "tuned")
    tuned = _weights(out)
    assert not (tmp_path / "tuned" / "codec").exists()  # the codec stage was skipped
    for key, value in base.items():
        torch.testing.assert_close(tuned[key], value, atol=1e-6, rtol=0, msg=key)
    assert load_env_checkpoint(out).info["training"]["init"] == str(first)
    # A checkpoint of another shape is refused before anything trains.
    config.write_text(text.replace('preset = "tiny"', 'preset = "tiny"\ndim = 48'))
    with pytest.raises(CheckpointError, match="another model shape .*dim"):
        _train(config, tmp_path / "bad")
