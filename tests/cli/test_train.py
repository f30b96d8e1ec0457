"""``kairos-gym train --codec-weights``: the Wan VAE's weights from the command line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from kairos_gym.cli import main
from kairos_gym.imagined.checkpoint import load_env_checkpoint
from kairos_gym.model import WorldModelConfig
from kairos_gym.model.video_codec import WanVideoCodec
from tests.train.conftest import write_config, write_data
from tests.train.test_wan_training import wan_config


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return write_data(tmp_path_factory.mktemp("data") / "eps.hdf5", episodes=4, steps=12)


def _train(config: Path, output: Path, *extra: str) -> int:
    return main(["train", "--config", str(config), "--output", str(output), "--device", "cpu",
                 "--threads", "1", "--no-progress", "--no-open-loop", *extra])


def test_the_codec_weights_flag_loads_the_vae_into_the_run(tmp_path, data):
    torch.manual_seed(5)
    vae = WanVideoCodec(WorldModelConfig.preset("tiny-wan"))
    weights = vae.save_vae_weights(tmp_path / "vae" / "diffusion_pytorch_model.safetensors")
    # A diffusers VAE folder works as well as the file itself.
    assert _train(wan_config(tmp_path, data), tmp_path / "run", "--codec-weights",
                  str(weights.parent)) == 0
    loaded = load_env_checkpoint(tmp_path / "run" / "model")
    for name, value in vae.vae.state_dict().items():
        torch.testing.assert_close(loaded.model.codec.vae.state_dict()[name], value)
    recorded = json.loads((tmp_path / "run" / "train_config.json").read_text())
    assert recorded["codec_weights"] == str(weights.parent.resolve())


def test_bad_codec_weights_are_named(tmp_path, data, capsys):
    config = wan_config(tmp_path, data)
    assert _train(config, tmp_path / "a", "--codec-weights", str(tmp_path / "no.safetensors")) == 1
    assert "missing VAE weights file" in capsys.readouterr().err
    assert _train(config, tmp_path / "b", "--codec-weights", str(tmp_path / "vae.pth")) == 1
    assert "VAE weights must be a .safetensors file" in capsys.readouterr().err
    (tmp_path / "conv").mkdir()
    conv = write_config(tmp_path / "conv", data)  # the tiny preset's convolutional codec
    assert _train(conv, tmp_path / "c", "--codec-weights", str(tmp_path / "x.safetensors")) == 2
    err = capsys.readouterr().err
    assert "kairos-gym train: error: codec_weights are the Wan VAE's weights" in err
    assert "this model's codec is 'conv'" in err
    assert not any((tmp_path / d).exists() for d in "abc")
