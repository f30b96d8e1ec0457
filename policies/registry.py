"""Policies by name, for the command line and benchmark runners.

``make_policy("expert", env)`` returns the scripted expert of the environment's task;
``make_policy("random", env)`` a uniform random policy.
"""

from __future__ import annotations

import importlib

import gymnasium as gym

from kairos_gym.policies.base import Policy, RandomPolicy

# gymnasium id -> "module:Class" of its scripted expert (constructed as Class(noise=...)).
EXPERTS: dict[str, str] = {
    "kairos_gym/Robosuite-Lift-v0": "kairos_gym.policies.robosuite_experts:LiftExpert",
    "kairos_gym/Robosuite-Stack-v0": "kairos_gym.policies.robosuite_experts:StackExpert",
    "kairos_gym/Robosuite-PickPlaceCan-v0": "kairos_gym.policies.robosuite_experts:PickPlaceCanExpert",
    "kairos_gym/Robosuite-Door-v0": "kairos_gym.policies.robosuite_experts:DoorExpert",
    "kairos_gym/Aloha-TransferCube-v0": "kairos_gym.policies.aloha_experts:TransferCubeExpert",
    "kairos_gym/Aloha-Insertion-v0": "kairos_gym.policies.aloha_experts:InsertionExpert",
}

POLICY_NAMES = ("expert", "random")


def make_policy(name: str, env: gym.Env, *, noise: float = 0.0) -> Policy:
    """Build a policy by name for ``env``.

    Args:
        name: ``"expert"`` (the task's scripted expert) or ``"random"``.
        env: the environment the policy will act in (its id picks the expert).
        noise: standard deviation of Gaussian action noise the expert injects, in action units.

    Raises:
        ValueError: unknown name, or no expert for this environment.
    """
    if name == "random":
        return RandomPolicy(env.action_space)
    if name != "expert":
        raise ValueError(f"unknown policy {name!r}; choose one of {POLICY_NAMES}")
    env_id = env.spec.id if env.spec is not None else None
    if env_id not in EXPERTS:
        raise ValueError(f"no scripted expert for environment {env_id!r}; experts exist for {sorted(EXPERTS)}")
    module_name, class_name = EXPERTS[env_id].split(":")
    cls = getattr(importlib.import_module(module_name), class_name)
    return cls(noise=noise)
