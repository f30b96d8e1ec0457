"""Policies: one contract (:class:`Policy`) shared by real and imagined environments.

Imported as ``kairos_gym.policies``.
"""

from kairos_gym.policies.base import Policy, RandomPolicy, as_chunk
from kairos_gym.policies.registry import make_policy

__all__ = ["Policy", "RandomPolicy", "as_chunk", "make_policy"]
