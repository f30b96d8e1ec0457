"""The imagined environment: a trained world model served with the real env's spaces.

- :mod:`~kairos_gym.imagined.checkpoint`: environment checkpoints (model + env spec + resets).
- :mod:`~kairos_gym.imagined.env`: :class:`ImaginedEnv`, a ``gymnasium.Env``.
- :mod:`~kairos_gym.imagined.vector`: :class:`ImaginedVectorEnv` and :func:`make_vec`.
- :mod:`~kairos_gym.imagined.sb3`: the stable-baselines3 ``VecEnv`` adapter.
"""
