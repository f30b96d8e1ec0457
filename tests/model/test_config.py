import dataclasses
import json

import pytest

from kairos_gym.model import WorldModelConfig
from kairos_gym.model.config import PRESETS


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_presets_build_and_round_trip_through_json(name):
    cfg = WorldModelConfig.preset(name)
    again = WorldModelConfig.from_dict(json.loads(cfg.to_json()))
    assert again == cfg


def test_kairos_4b_has_the_released_shapes():
    cfg = WorldModelConfig.preset("kairos-4b")
    assert (cfg.num_layers, cfg.dim, cfg.num_heads, cfg.ffn_dim) == (32, 2560, 20, 10240)
    assert cfg.layer_pattern == ("swa", "swa", "dswa", "gated")
    assert (cfg.window, cfg.dilation, cfg.latent_channels, cfg.patch_size) == (3, 4, 16, 2)
    assert cfg.temporal_compression == 4
    kinds = [cfg.layer_kind(i) for i in range(cfg.num_layers)]
    assert (kinds.count("swa"), kinds.count("dswa"), kinds.count("gated")) == (16, 8, 8)


def test_derived_shapes_of_the_small_preset():
    cfg = WorldModelConfig.preset("small")
    assert cfg.latent_shape == (16, 8, 8)
    assert cfg.frame_shape == (64, 64, 3)
    assert cfg.tokens_per_frame == 16
    assert cfg.action_dim == 7
    assert cfg.memory_span(0) == 2 and cfg.memory_span(2) == 8 and cfg.memory_span(3) == 0


def test_replace_keeps_validation():
    cfg = dataclasses.replace(WorldModelConfig.preset("tiny"), window=3, dilation=4)
    assert (cfg.window, cfg.dilation) == (3, 4)
    with pytest.raises(ValueError, match="window must be a positive integer, got 0"):
        dataclasses.replace(cfg, window=0)


@pytest.mark.parametrize("changes, message", [
    ({"layer_pattern": ("swa", "lstm")}, "layer_pattern entries must be in"),
    ({"dim": 33}, "dim \\(33\\) must be divisible by num_heads"),
    ({"image_size": (18, 16)}, "must be divisible by spatial_compression"),
    ({"sample_steps": 51}, "sample_steps must be in 1..50, got 51"),
    ({"context_sigma": 1.0}, "context_sigma must be in \\[0, 1\\)"),
    ({"codec_channels": (8,)}, "spatial_compression is 4"),
])
def test_invalid_configs_raise_clear_errors(changes, message):
    with pytest.raises(ValueError, match=message):
        WorldModelConfig.preset("tiny", **changes)


def test_unknown_preset_and_fields():
    with pytest.raises(ValueError, match="unknown preset 'huge'"):
        WorldModelConfig.preset("huge")
    with pytest.raises(ValueError, match="unknown WorldModelConfig fields: \\['colour'\\]"):
        WorldModelConfig.from_dict({"colour": 1})
