"""The training configs under configs/ parse, and the TransferCube one asks for what it says."""

from __future__ import annotations

from pathlib import Path

import pytest

from kairos_gym.train.config import TrainConfig

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
# Action and state sizes the data would give (the trainer reads them from the episode files).
DIMS = {"transfer_cube.toml": (14, 14)}


@pytest.mark.parametrize("name", sorted(p.name for p in CONFIGS.glob("*.toml")))
def test_shipped_configs_parse(name):
    action_dim, state_dim = DIMS.get(name, (7, 8))
    config = TrainConfig.from_toml(CONFIGS / name, image_size=(64, 64), action_dim=action_dim,
                                   state_dim=state_dim)
    assert config.data.paths and all(Path(p).is_absolute() for p in config.data.paths)


def test_transfer_cube_config_is_the_proprio_recipe_on_the_top_camera():
    config = TrainConfig.from_toml(CONFIGS / "transfer_cube.toml", image_size=(64, 64),
                                   action_dim=14, state_dim=14)
    assert config.data.camera == "top" and config.model.proprio_conditioning
    assert config.proprio.steps > 0 and config.proprio.window == config.world_model.clip_len
    assert not any("heldout" in p for p in config.data.paths)
