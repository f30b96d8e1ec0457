"""Policies: one contract (:class:`Policy`) shared by real and imagined environments.

Imported as ``kairos_gym.policies``. :class:`ChunkedPolicy` executes action chunks one
action per call; the episode loops of :mod:`kairos_gym.rollout` wrap every policy in it.
:mod:`kairos_gym.policies.learned` holds the behaviour-cloned observation-only policy,
:mod:`kairos_gym.policies.wrappers` execution noise and deliberate failure modes.
"""

from kairos_gym.policies.base import ChunkedPolicy, Policy, RandomPolicy, as_chunk, as_chunk_batch
from kairos_gym.policies.registry import make_policy
from kairos_gym.policies.wrappers import (
    ActionSequence,
    ConstantPolicy,
    GripperOverride,
    NoisyPolicy,
)

__all__ = [
    "ActionSequence",
    "ChunkedPolicy",
    "ConstantPolicy",
    "GripperOverride",
    "NoisyPolicy",
    "Policy",
    "RandomPolicy",
    "as_chunk",
    "as_chunk_batch",
    "make_policy",
]
