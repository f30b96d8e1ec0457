"""Policies: one contract (:class:`Policy`) shared by real and imagined environments.

Imported as ``kairos_gym.policies``. :class:`ChunkedPolicy` executes action chunks one
action per call; the episode loops of :mod:`kairos_gym.rollout` wrap every policy in it.
"""

from kairos_gym.policies.base import ChunkedPolicy, Policy, RandomPolicy, as_chunk, as_chunk_batch
from kairos_gym.policies.registry import make_policy

__all__ = ["ChunkedPolicy", "Policy", "RandomPolicy", "as_chunk", "as_chunk_batch", "make_policy"]
