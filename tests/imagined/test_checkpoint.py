"""Tests of environment checkpoints: round trip, the embedded default, and clear errors."""

from __future__ import annotations

import dataclasses
import json

import gymnasium as gym
import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from kairos_gym.errors import CheckpointError
from kairos_gym.imagined import checkpoint as env_checkpoint
from kairos_gym.imagined.checkpoint import (
    RESET_NAME,
    default_checkpoint,
    load_env_checkpoint,
    save_env_checkpoint,
)
from tests.imagined_helpers import (
    lift_spec,
    reset_observations,
    tiny_model,
    write_checkpoint,
)


@pytest.fixture
def model():
    return tiny_model(state_dim=8)


def test_round_trip(tmp_path, model):
    spec = lift_spec()
    resets = reset_observations(spec, count=4)
    path = save_env_checkpoint(
        tmp_path / "ck", model, spec, resets, training={"steps": 10, "data": "lift.hdf5"}
    )
    assert sorted(p.name for p in path.iterdir()) == [
        "codec.safetensors",
        "config.json",
        "model.safetensors",
        RESET_NAME,
    ]
    loaded = load_env_checkpoint(path)
    assert loaded.path == path and loaded.env_spec == spec and loaded.env_spec is not spec
    assert (
        loaded.info["training"] == {"steps": 10, "data": "lift.hdf5"} and loaded.info["format"] == 1
    )
    assert loaded.image_key == "agentview_image" and loaded.state_keys == ("state",)
    assert loaded.num_resets == 4 and loaded.max_episode_steps == 12
    for key, value in resets.items():
        assert loaded.reset_observations[key].dtype == value.dtype
        np.testing.assert_array_equal(loaded.reset_observations[key], value)
    assert not loaded.model.training
    latents = torch.randn(
        1, 3, *model.config.latent_shape, generator=torch.Generator().manual_seed(0)
    )
    sigmas, actions = torch.full((1, 3), 0.5), torch.zeros(1, 3, 7)
    torch.testing.assert_close(
        loaded.model.velocity(latents, sigmas, actions), model.velocity(latents, sigmas, actions)
    )
    # A spec without an episode limit has none.
    unlimited = save_env_checkpoint(
        tmp_path / "u", model, lift_spec(max_episode_steps=None), resets
    )
    assert load_env_checkpoint(unlimited).max_episode_steps is None


def test_several_state_keys_share_one_state_head(tmp_path):
    from kairos_gym.data.keys import ObservationKeys

    spec = lift_spec(
        state_spaces={
            "joints": gym.spaces.Box(-np.inf, np.inf, (2, 2), np.float32),
            "eef_pos": gym.spaces.Box(-np.inf, np.inf, (3,), np.float32),
            "touch": gym.spaces.Box(0, 3, (), np.int64),
        }
    )
    keys = ObservationKeys.from_spec(spec)
    assert keys.state_width == 8
    loaded = load_env_checkpoint(write_checkpoint(tmp_path / "ck", spec))
    assert loaded.state_keys == ("eef_pos", "joints", "touch") == keys.state_keys
    assert loaded.observation_keys == keys and loaded.model.config.state_dim == 8
    narrow = tiny_model(state_dim=7)
    with pytest.raises(
        CheckpointError,
        match=r"\['eef_pos', 'joints', 'touch'\] have 8 values but the model's state head "
        r"predicts 7",
    ):
        save_env_checkpoint(tmp_path / "bad", narrow, spec, reset_observations(spec))


def test_embedded_default(tmp_path, monkeypatch, model):
    monkeypatch.setattr(env_checkpoint, "DEFAULT_CHECKPOINT", tmp_path / "assets" / "lift")
    with pytest.raises(
        CheckpointError, match="embedded default model is missing .*checkpoint=<directory"
    ):
        default_checkpoint()
    with pytest.raises(CheckpointError, match="embedded default model is missing"):
        load_env_checkpoint(None)
    write_checkpoint(tmp_path / "assets" / "lift")
    assert default_checkpoint() == tmp_path / "assets" / "lift"
    assert load_env_checkpoint().path == tmp_path / "assets" / "lift"


def _with(spec, **changes):
    return dataclasses.replace(spec, **changes)


@pytest.mark.parametrize(
    "make_spec, match",
    [
        (
            lambda s: _with(
                s,
                cameras=("agentview", "wrist"),
                observation_space=gym.spaces.Dict(
                    {
                        **s.observation_space.spaces,
                        "wrist_image": gym.spaces.Box(0, 255, (16, 16, 3), np.uint8),
                    }
                ),
            ),
            r"exactly one camera, but the env spec has \['agentview', 'wrist'\]",
        ),
        (
            lambda s: lift_spec(image_size=32),
            r"'agentview_image' images are \(32, 32, 3\) but the model generates \(16, 16, 3\)",
        ),
        (
            lambda s: _with(s, action_space=gym.spaces.Box(-1, 1, (14,), np.float32)),
            "actions have 14 dimensions but the model takes 7",
        ),
        (
            lambda s: lift_spec(
                state_spaces={"state": gym.spaces.Box(-np.inf, np.inf, (5,), np.float32)}
            ),
            r"\['state'\] have 5 values but the model's state head predicts 8",
        ),
    ],
)
def test_save_refuses_a_spec_the_model_cannot_serve(tmp_path, model, make_spec, match):
    spec = make_spec(lift_spec())
    with pytest.raises(CheckpointError, match=match):
        save_env_checkpoint(tmp_path / "ck", model, spec, reset_observations(spec))
    assert not (tmp_path / "ck").exists()


@pytest.mark.parametrize(
    "edit, match",
    [
        (lambda r: {"state": r["state"]}, r"reset observations have keys \['state'\]"),
        (lambda r: {**r, "state": r["state"][:, :4]}, r"'state' must be \[N, 8\], got \(3, 4\)"),
        (lambda r: {**r, "state": r["state"][0]}, r"'state' must be \[N, 8\], got \(8,\)"),
        (
            lambda r: {**r, "state": np.where(np.eye(3, 8, dtype=bool), np.nan, r["state"])},
            "fall outside",
        ),
        (lambda r: {**r, "state": r["state"][:2]}, "same N >= 1 rows for every key"),
        (lambda r: {k: v[:0] for k, v in r.items()}, "same N >= 1 rows"),
    ],
)
def test_save_refuses_bad_reset_observations_and_keeps_the_old_checkpoint(
    tmp_path, model, edit, match
):
    path = write_checkpoint(tmp_path / "ck")
    before = {p.name: p.read_bytes() for p in path.iterdir()}
    spec = lift_spec()
    with pytest.raises(CheckpointError, match=match):
        save_env_checkpoint(
            path, tiny_model(state_dim=8, seed=1), spec, edit(reset_observations(spec))
        )
    assert {p.name: p.read_bytes() for p in path.iterdir()} == before
    load_env_checkpoint(path)


def _config(path):
    return json.loads((path / "config.json").read_text())


def _write_config(path, data):
    (path / "config.json").write_text(json.dumps(data))


def test_load_refuses_a_bare_world_model(tmp_path, model):
    model.save_pretrained(tmp_path / "bare")
    with pytest.raises(CheckpointError, match="no 'env_spec': this is a bare world model"):
        load_env_checkpoint(tmp_path / "bare")


@pytest.mark.parametrize(
    "edit, match",
    [
        (
            lambda spec: {k: v for k, v in spec.items() if k != "observation_space"},
            "invalid env_spec: env spec lacks the field 'observation_space'",
        ),
        (
            lambda spec: {**spec, "format_version": 99},
            "invalid env_spec: env spec format_version 99 is newer",
        ),
        (
            lambda spec: {**spec, "observation_space": {"type": "Discrete"}},
            "invalid env_spec: unknown space type",
        ),
        (
            lambda spec: {**spec, "action_space": {**spec["action_space"], "shape": [6]}},
            "actions have 6 dimensions but the model takes 7",
        ),
    ],
)
def test_load_refuses_bad_env_specs(tmp_path, edit, match):
    path = write_checkpoint(tmp_path / "ck")
    data = _config(path)
    data["env_spec"] = edit(data["env_spec"])
    _write_config(path, data)
    with pytest.raises(CheckpointError, match=match):
        load_env_checkpoint(path)


def test_load_refuses_missing_corrupt_or_mismatched_files(tmp_path):
    path = write_checkpoint(tmp_path / "ck")
    resets = (path / RESET_NAME).read_bytes()
    (path / RESET_NAME).write_bytes(resets[: len(resets) // 2])
    with pytest.raises(CheckpointError, match=f"{RESET_NAME} is not a readable safetensors file"):
        load_env_checkpoint(path)
    (path / RESET_NAME).unlink()
    with pytest.raises(CheckpointError, match=f"no {RESET_NAME} \\(the reset observations"):
        load_env_checkpoint(path)
    save_file(
        {
            "agentview_image": torch.zeros(2, 16, 16, 3, dtype=torch.uint8),
            "state": torch.zeros(2, 7),
        },
        str(path / RESET_NAME),
    )
    with pytest.raises(CheckpointError, match=r"'state' must be \[N, 8\], got \(2, 7\)"):
        load_env_checkpoint(path)
    (path / RESET_NAME).write_bytes(resets)
    load_env_checkpoint(path)

    model_file = path / "model.safetensors"
    weights = model_file.read_bytes()
    model_file.write_bytes(weights[:100])
    with pytest.raises(
        CheckpointError, match="model.safetensors is not a readable safetensors file"
    ):
        load_env_checkpoint(path)
    model_file.write_bytes(weights)
    (path / "config.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="config.json is not valid JSON"):
        load_env_checkpoint(path)
    with pytest.raises(CheckpointError, match="no config.json"):
        load_env_checkpoint(tmp_path / "nowhere")
