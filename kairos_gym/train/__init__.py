"""Training: the codec, then the world model and its heads, into an environment checkpoint.

Run it with ``kairos-gym train --config CONFIG.toml --output runs/NAME`` (or under
``torchrun`` for data parallelism); see :mod:`kairos_gym.train.trainer` for the output
layout and :mod:`kairos_gym.train.config` for the config file.
"""

from kairos_gym.train.config import (
    CodecTrainConfig,
    DataConfig,
    FinetuneConfig,
    TrainConfig,
    WorldModelTrainConfig,
)
from kairos_gym.train.trainer import Trainer, load_config

__all__ = [
    "CodecTrainConfig",
    "DataConfig",
    "FinetuneConfig",
    "TrainConfig",
    "Trainer",
    "WorldModelTrainConfig",
    "load_config",
]
