"""The trainer and ``kairos-gym train`` refuse what cannot work before any stage trains:
clip lengths the data cannot serve, a bad ``stop_after``, threads or device."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import pytest
import torch

from kairos_gym.cli import main
from kairos_gym.errors import DatasetError
from kairos_gym.train.trainer import Trainer, load_config
from tests.train.conftest import write_config, write_data


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return write_data(tmp_path_factory.mktemp("data") / "eps.hdf5")  # 12 steps: 13 frames


def test_a_clip_longer_than_every_episode_fails_before_the_codec_trains(tmp_path, data):
    config = load_config(write_config(tmp_path, data))
    config = dataclasses.replace(config, world_model=dataclasses.replace(config.world_model, clip_len=40))
    started = time.perf_counter()
    with pytest.raises(
        DatasetError,
        match=r"world_model.clip_len = 40 does not fit the data: no clip of 40 frames .* longest 13 frames",
    ):
        Trainer(config, tmp_path / "run", progress=False)
    assert time.perf_counter() - started < 20
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("bad", [-3, 0, 2.5, True])
def test_stop_after_must_be_positive(tmp_path, data, bad):
    config = load_config(write_config(tmp_path, data))
    with pytest.raises(ValueError, match=rf"stop_after must be a positive integer or None, got {bad!r}"):
        Trainer(config, tmp_path / "run", progress=False, stop_after=bad)


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--stop-after", "-3"], "argument --stop-after: expected a positive integer, got -3"),
        (["--stop-after", "0"], "expected a positive integer, got 0"),
        (["--threads", "-1"], "argument --threads: expected a positive integer, got -1"),
        (["--device", "gpu"], "argument --device: 'gpu' is not a device name"),
    ],
)
def test_the_cli_refuses_bad_numbers_and_devices_before_writing(tmp_path, data, capsys, extra, message):
    config = write_config(tmp_path, data)
    threads = torch.get_num_threads()
    with pytest.raises(SystemExit) as info:
        main(["train", "--config", str(config), "--output", str(tmp_path / "run"), "--no-progress", *extra])
    assert info.value.code == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "run").exists()
    assert torch.get_num_threads() == threads


@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is available here")
def test_cuda_on_a_cpu_build_is_refused_by_the_cli(tmp_path, data, capsys):
    config = write_config(tmp_path, data)
    with pytest.raises(SystemExit) as info:
        main(["train", "--config", str(config), "--output", str(tmp_path / "run"), "--device", "cuda"])
    assert info.value.code == 2
    assert "device 'cuda' is not available: this torch is a CPU-only build" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()
