"""kairos-gym: a learned Kairos-architecture world model served as a Gymnasium environment.

Public surface::

    from kairos_gym import WorldModel, WorldModelConfig
"""

from __future__ import annotations

__version__ = "0.1.0"

from kairos_gym.model import WorldModel, WorldModelConfig, WorldState

from kairos_gym.envs.registration import register_all as _register_all

_register_all()
