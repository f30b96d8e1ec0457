"""What a checkpoint directory may make the loader do: read only its own files, in a known
format, and build no model bigger than the tensors it holds."""

from __future__ import annotations

import json
import os
import time

import pytest
import torch

from kairos_gym.devices import check_device
from kairos_gym.errors import CheckpointError, DeviceUnavailable
from kairos_gym.model import WorldModel
from kairos_gym.model import checkpoint as ckpt


def _saved(tmp_path, wm, name="ckpt"):
    return wm.save_pretrained(tmp_path / name)


def _edit_config(path, **model_changes):
    data = json.loads((path / "config.json").read_text())
    data["model"].update(model_changes)
    (path / "config.json").write_text(json.dumps(data))


@pytest.mark.parametrize(
    "changes, match",
    [
        # Each of these would need tens of GB (or hours) if the model were built first.
        ({"dim": 2**16, "ffn_dim": 2**18}, r"does not hold the model config.json declares: .*mis-shaped"),
        ({"ffn_dim": 2**30}, r"mis-shaped tensors .*checkpoint \(64, 32\) vs model \(1073741824, 32\)"),
        ({"num_layers": 10**6}, r"declares num_layers=1000000 but model.safetensors holds 4 blocks"),
        ({"state_dim": 2**31}, r"mis-shaped tensors"),
        ({"codec_channels": [8] * 200, "spatial_compression": 2**200, "image_size": [2**200, 2**200]},
         r"declares 200 codec stages but codec.safetensors holds \d+ tensors"),
        # Sizes no tensor holds, bounded by the memory one env row would need.
        ({"window": 2**20, "dilation": 2**10}, r"one env row's memory would take .* GiB \(window 1048576"),
        ({"image_size": [2**14, 2**14]}, r"image_size \(16384, 16384\) has more than 16777216 pixels"),
        ({"image_size": [4096, 4096]}, r"one env row's memory would take"),
    ],
)
def test_a_config_cannot_ask_for_more_than_its_tensors(tmp_path, tiny_world_model, changes, match):
    path = _saved(tmp_path, tiny_world_model)
    _edit_config(path, **changes)
    started = time.perf_counter()
    with pytest.raises(CheckpointError, match=match):
        WorldModel.from_pretrained(path)
    assert time.perf_counter() - started < 30  # refused from the headers, nothing built


def test_the_format_version_is_checked(tmp_path, tiny_world_model):
    path = _saved(tmp_path, tiny_world_model)
    data = json.loads((path / "config.json").read_text())
    for bad in (2, "1", True, 0):
        (path / "config.json").write_text(json.dumps({**data, "format": bad}))
        with pytest.raises(CheckpointError, match=rf"has format {bad!r}; this kairos-gym reads checkpoint format 1..1"):
            WorldModel.from_pretrained(path)
    (path / "config.json").write_text(json.dumps({**data, "format": 1}))
    WorldModel.from_pretrained(path)


def test_symlinked_files_are_refused_but_a_symlinked_directory_is_not(tmp_path, tiny_world_model):
    path = _saved(tmp_path, tiny_world_model)
    other = _saved(tmp_path, tiny_world_model, name="elsewhere")
    for name in ("model.safetensors", "codec.safetensors", "config.json"):
        target = tmp_path / f"moved_{name}"
        os.replace(path / name, target)
        os.symlink(other / name if name != "config.json" else target, path / name)
        with pytest.raises(CheckpointError, match=rf"{name} is a symlink \(to .*\); checkpoint files must be stored"):
            WorldModel.from_pretrained(path)
        os.unlink(path / name)
        os.replace(target, path / name)
    os.symlink(path, tmp_path / "link")
    WorldModel.from_pretrained(tmp_path / "link")


def test_a_header_that_does_not_fit_the_file_is_refused(tmp_path, tiny_world_model):
    path = _saved(tmp_path, tiny_world_model)
    raw = (path / "model.safetensors").read_bytes()
    length = int.from_bytes(raw[:8], "little")
    header = json.loads(raw[8:8 + length])
    name = next(k for k in header if k != "__metadata__")
    header[name]["shape"] = [10**6, 10**6]
    text = json.dumps(header).encode()
    (path / "model.safetensors").write_bytes(len(text).to_bytes(8, "little") + text + raw[8 + length:])
    with pytest.raises(CheckpointError, match=rf"tensor {name!r} has a bad header entry"):
        WorldModel.from_pretrained(path)
    (path / "model.safetensors").write_bytes((10**12).to_bytes(8, "little") + raw[8:])
    with pytest.raises(CheckpointError, match=r"not a readable safetensors file .*header length 1000000000000"):
        WorldModel.from_pretrained(path)


@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is available here")
def test_an_unavailable_device_is_a_clear_error(tmp_path, tiny_world_model):
    path = _saved(tmp_path, tiny_world_model)
    with pytest.raises(DeviceUnavailable, match=r"device 'cuda' is not available: this torch is a CPU-only build"):
        WorldModel.from_pretrained(path, device="cuda")
    with pytest.raises(DeviceUnavailable, match=r"'gpu' is not a device name"):
        check_device("gpu")
    assert check_device("cpu") == torch.device("cpu")


def test_read_header_lists_the_stored_tensors(tmp_path, tiny_world_model):
    path = _saved(tmp_path, tiny_world_model)
    header = ckpt.read_header(path / "model.safetensors")
    own = tiny_world_model.dit.state_dict()
    assert set(header) == set(own)
    assert all(header[k] == ("F32", tuple(v.shape)) for k, v in own.items())
