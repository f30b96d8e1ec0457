import json

import pytest
import torch
from safetensors.torch import load_file, save_file

from kairos_gym.errors import CheckpointError
from kairos_gym.model import WorldModel, WorldModelConfig
from tests.model.conftest import randomize_


def _saved(tmp_path, wm):
    return wm.save_pretrained(tmp_path / "ckpt")


def test_save_and_load_round_trip_exactly(tmp_path, tiny_world_model):
    path = _saved(tmp_path, tiny_world_model)
    assert sorted(p.name for p in path.iterdir()) == ["codec.safetensors", "config.json", "model.safetensors"]
    loaded = WorldModel.from_pretrained(path)
    assert loaded.config == tiny_world_model.config
    for (name, a), (_, b) in zip(tiny_world_model.state_dict().items(), loaded.state_dict().items()):
        assert torch.equal(a, b), name


def test_extra_config_entries_are_kept(tmp_path, tiny_world_model):
    path = tiny_world_model.save_pretrained(tmp_path / "c", extra={"env_spec": {"env_id": "x"}})
    assert WorldModel.from_pretrained(path).checkpoint_info["env_spec"] == {"env_id": "x"}


def test_missing_unexpected_and_misshaped_keys_are_all_named(tmp_path, tiny_world_model):
    path = _saved(tmp_path, tiny_world_model)
    tensors = load_file(path / "model.safetensors")
    del tensors["blocks.0.self_attn.q.weight"]
    tensors["blocks.0.extra"] = torch.zeros(1)
    tensors["head.head.bias"] = torch.zeros(5)
    save_file(tensors, path / "model.safetensors")
    with pytest.raises(CheckpointError) as info:
        WorldModel.from_pretrained(path)
    message = str(info.value)
    assert "missing keys (1): blocks.0.self_attn.q.weight" in message
    assert "unexpected keys (1): blocks.0.extra" in message
    assert "head.head.bias: checkpoint (5,) vs model (4,)" in message


def test_a_config_for_another_shape_is_rejected(tmp_path, tiny_world_model):
    path = _saved(tmp_path, tiny_world_model)
    data = json.loads((path / "config.json").read_text())
    data["model"]["dim"] = 64
    (path / "config.json").write_text(json.dumps(data))
    with pytest.raises(CheckpointError, match="mis-shaped tensors"):
        WorldModel.from_pretrained(path)


@pytest.mark.parametrize("damage, message", [
    ("truncate_model", "model.safetensors is not a readable safetensors file"),
    ("remove_codec", "missing checkpoint file .*codec.safetensors"),
    ("bad_json", "config.json is not valid JSON"),
    ("remove_config", "no config.json in checkpoint directory"),
    ("bad_field", "invalid model config: unknown WorldModelConfig fields"),
    ("nan", "tensor head.head.weight contains NaN or inf"),
])
def test_corrupt_checkpoints_raise_clear_errors(tmp_path, tiny_world_model, damage, message):
    path = _saved(tmp_path, tiny_world_model)
    if damage == "truncate_model":
        data = (path / "model.safetensors").read_bytes()
        (path / "model.safetensors").write_bytes(data[: len(data) // 2])
    elif damage == "remove_codec":
        (path / "codec.safetensors").unlink()
    elif damage == "bad_json":
        (path / "config.json").write_text("{not json")
    elif damage == "remove_config":
        (path / "config.json").unlink()
    elif damage == "bad_field":
        (path / "config.json").write_text(json.dumps({"model": {"colour": 3}}))
    else:
        tensors = load_file(path / "model.safetensors")
        tensors["head.head.weight"][0, 0] = float("nan")
        save_file(tensors, path / "model.safetensors")
    with pytest.raises(CheckpointError, match=message):
        WorldModel.from_pretrained(path)


RELEASED_NAMES = [
    "patch_embedding.weight", "patch_embedding.bias", "time_embedding.0.weight", "time_embedding.2.weight",
    "time_projection.1.weight", "text_embedding.0.weight", "text_embedding.2.weight",
    "blocks.0.self_attn.q.weight", "blocks.0.self_attn.norm_q.weight", "blocks.0.cross_attn.k.weight",
    "blocks.0.norm3.weight", "blocks.0.ffn.0.weight", "blocks.0.ffn.2.weight", "blocks.0.modulation",
    "blocks.3.gated_delta.q_proj.weight", "blocks.3.gated_delta.a_proj.weight",
    "blocks.3.gated_delta.b_proj.weight", "blocks.3.gated_delta.g_proj.weight",
    "blocks.3.gated_delta.o_proj.weight", "blocks.3.gated_delta.A_log", "blocks.3.gated_delta.dt_bias",
    "blocks.3.gated_delta.q_conv1d.weight", "blocks.3.gated_delta.v_conv1d.weight",
    "blocks.3.gated_delta.o_norm.weight", "head.head.weight", "head.modulation",
]


def _released_checkpoint(tmp_path, prefix=""):
    """A tiny checkpoint written with the release's parameter names (no action parts)."""
    cfg = WorldModelConfig.preset("tiny", text_dim=12)
    source = randomize_(WorldModel(cfg), seed=3).dit
    tensors = {prefix + k: v for k, v in source.state_dict().items()
               if not k.startswith(("action_embedding", "no_action_embedding", "outcome_head"))}
    if prefix:
        tensors["action_dit.head.weight"] = torch.zeros(7, 4)
    path = tmp_path / "kairos_dit.safetensors"
    save_file(tensors, path)
    return cfg, source, path


@pytest.mark.parametrize("prefix", ["", "video_dit."])
def test_released_dit_weights_load_by_name(tmp_path, prefix):
    cfg, source, path = _released_checkpoint(tmp_path, prefix)
    names = set(load_file(path))
    assert {prefix + n for n in RELEASED_NAMES} <= names
    wm = WorldModel.from_released_dit(path, cfg)
    for name, value in source.state_dict().items():
        if not name.startswith(("action_embedding", "no_action_embedding", "outcome_head")):
            assert torch.equal(wm.dit.state_dict()[name], value), name


def test_released_weights_of_another_size_are_rejected(tmp_path):
    _, _, path = _released_checkpoint(tmp_path)
    with pytest.raises(CheckpointError, match="mis-shaped tensors"):
        WorldModel.from_released_dit(path, WorldModelConfig.preset("tiny", text_dim=12, dim=48, num_heads=2))


def test_checkpoint_files_get_the_usual_permissions(tmp_path, tiny_world_model):
    import os
    import stat

    old = os.umask(0o022)
    try:
        directory = tiny_world_model.save_pretrained(tmp_path / "ckpt")
    finally:
        os.umask(old)
    for name in ("config.json", "model.safetensors", "codec.safetensors"):
        assert stat.S_IMODE((directory / name).stat().st_mode) == 0o644, name
