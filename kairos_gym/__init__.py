"""kairos-gym: a learned Kairos-architecture world model served as a Gymnasium environment.

Public surface::

    import kairos_gym                         # registers the kairos_gym/... environment ids
    from kairos_gym import WorldModel, WorldModelConfig, WorldState
"""

from __future__ import annotations

from kairos_gym.envs.registration import register_all as _register_all
from kairos_gym.model import WorldModel, WorldModelConfig, WorldState
from kairos_gym.vector import make_vec

__version__ = "0.1.0"
__all__ = ["WorldModel", "WorldModelConfig", "WorldState", "__version__", "make_vec"]

_register_all()
