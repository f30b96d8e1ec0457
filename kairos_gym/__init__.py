"""kairos-gym: a learned Kairos-architecture world model served as a Gymnasium environment.

Public surface::

    import kairos_gym                         # registers the kairos_gym/... environment ids
    gym.make("kairos_gym/Imagined-v0")        # the embedded Lift model as an env (ImaginedEnv)
    kairos_gym.make_vec(num_envs=16)          # a batched imagined VectorEnv
    from kairos_gym import WorldModel, WorldModelConfig, WorldState, ImaginedEnv

More: ``kairos_gym.imagined.checkpoint`` (load/save environment checkpoints), ``kairos_gym.imagined.sb3``
(stable-baselines3 adapter), ``kairos_gym.train`` (the trainer), ``kairos_gym.evaluation.open_loop``
and ``kairos_gym.evaluation.metrics`` (fidelity).
"""

from __future__ import annotations

from kairos_gym.envs.registration import register_all as _register_all
from kairos_gym.imagined.env import ImaginedEnv
from kairos_gym.imagined.vector import make_vec
from kairos_gym.model import WorldModel, WorldModelConfig, WorldState

__version__ = "0.1.0"
__all__ = ["ImaginedEnv", "WorldModel", "WorldModelConfig", "WorldState", "__version__", "make_vec"]

_register_all()
