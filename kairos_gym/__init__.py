"""kairos-gym: a learned Kairos-architecture world model served as a Gymnasium environment.

Public surface::

    import kairos_gym                         # registers the kairos_gym/... environment ids
    gym.make("kairos_gym/Imagined-v0")        # the embedded Lift model as an env (ImaginedEnv)
    gym.make_vec("kairos_gym/Imagined-v0", 16)  # one batched ImaginedVectorEnv over one model
    kairos_gym.make_vec(num_envs=16)          # the same, at the checkpoint's episode limit
    from kairos_gym import ImaginedCore       # the batched core: start, step, fork, snapshot

More: ``kairos_gym.imagined`` (env checkpoints, the SB3 adapter), ``kairos_gym.rollout`` (the
episode loop), ``kairos_gym.data``, ``kairos_gym.train``, ``kairos_gym.evaluation``.
"""

from __future__ import annotations

from kairos_gym.envs.registration import register_all as _register_all
from kairos_gym.imagined.checkpoint import load_env_checkpoint
from kairos_gym.imagined.core import ImaginedCore
from kairos_gym.imagined.env import ImaginedEnv
from kairos_gym.imagined.vector import ImaginedVectorEnv, make_vec
from kairos_gym.model import WorldModel, WorldModelConfig, WorldState

__version__ = "0.1.0"
__all__ = [
    "ImaginedCore",
    "ImaginedEnv",
    "ImaginedVectorEnv",
    "WorldModel",
    "WorldModelConfig",
    "WorldState",
    "__version__",
    "load_env_checkpoint",
    "make_vec",
]

_register_all()
