"""Policies by name, for the command line and benchmark runners.

A policy spec is ``BASE[+MODIFIER...]``:

- bases: ``expert`` (the task's scripted expert; reads the simulator), ``random`` (uniform
  actions), ``zero`` (the arm never moves), ``bc:DIR`` (a behaviour-cloned
  :class:`~kairos_gym.policies.learned.BCPolicy` written by ``kairos-gym train-policy``),
  ``served:ADDRESS`` (a policy server speaking the openpi websocket protocol, e.g.
  ``served:ws://127.0.0.1:8000`` or ``served:127.0.0.1:8000``: an openpi server or
  ``kairos-gym serve-policy``; see :mod:`kairos_gym.serving`);
- modifiers, applied left to right: ``noise=S`` (Gaussian execution noise), ``open`` (the
  gripper never closes), ``interrupt=R`` (random-action segments started with probability
  ``R`` per step), ``hold=R`` (pauses), ``gripper=R`` (random open/close segments),
  ``execute=K`` (re-plan after ``K`` actions of a chunk), ``miss=D`` (robosuite experts only:
  every grasp aimed up to ``D`` metres off the object, drawn once per episode).

The modifiers that write actions themselves follow the env's :func:`action_convention`: on the
bimanual ALOHA envs (absolute joint targets, grippers at entries 6 and 13, ``1`` open) ``open``
opens both grippers, a pause repeats the last target and a random segment holds one random
target inside the bounds; ``zero`` stays the literal zero action (there: the all-zero joint
pose with both grippers closed, not a still arm).

``make_policy("expert", env)`` is the scripted expert; ``make_policy("expert+interrupt=0.05",
env)`` the same expert with random detours; ``make_policy("bc:runs/bc/lift+noise=0.3", env)``
a noisy learned policy; ``make_policy("served:127.0.0.1:8000+execute=5", env)`` a served VLA
policy re-planning every 5 steps.
"""

from __future__ import annotations

import importlib
import math

import gymnasium as gym
import numpy as np

from kairos_gym.policies.base import Policy, RandomPolicy
from kairos_gym.policies.wrappers import ActionConvention

# gymnasium id -> "module:Class" of its scripted expert (constructed as Class(noise=...)).
EXPERTS: dict[str, str] = {
    "kairos_gym/Robosuite-Lift-v0": "kairos_gym.policies.robosuite_experts:LiftExpert",
    "kairos_gym/Robosuite-Stack-v0": "kairos_gym.policies.robosuite_experts:StackExpert",
    "kairos_gym/Robosuite-PickPlaceCan-v0": "kairos_gym.policies.robosuite_experts:PickPlaceCanExpert",
    "kairos_gym/Robosuite-Door-v0": "kairos_gym.policies.robosuite_experts:DoorExpert",
    "kairos_gym/Aloha-TransferCube-v0": "kairos_gym.policies.aloha_experts:TransferCubeExpert",
    "kairos_gym/Aloha-Insertion-v0": "kairos_gym.policies.aloha_experts:InsertionExpert",
    "kairos_gym/Libero-Spatial-v0": "kairos_gym.policies.libero_experts:LiberoPickPlaceExpert",
    "kairos_gym/Libero-Object-v0": "kairos_gym.policies.libero_experts:LiberoPickPlaceExpert",
}

POLICY_NAMES = ("expert", "random", "zero", "bc:DIR", "served:ADDRESS")
MODIFIERS = ("noise=S", "open", "interrupt=R", "hold=R", "gripper=R", "execute=K", "miss=D")


def make_policy(spec: str, env: gym.Env, *, noise: float = 0.0) -> Policy:
    """Build the policy named by ``spec`` (see the module docstring) for ``env``.

    Args:
        spec: ``BASE[+MODIFIER...]``.
        env: the environment the policy will act in (its id picks the expert, its action
            space the random and zero policies).
        noise: standard deviation of the Gaussian action noise the scripted expert injects
            itself (the expert's own ``noise``; ``+noise=S`` adds execution noise to any base).

    Raises:
        ValueError: unknown base or modifier, a malformed value or server address, or no
            expert for this env.
        CheckpointError: a ``bc:DIR`` that does not hold a policy.
        ServerError: a ``served:ADDRESS`` where no policy server answers.
    """
    from kairos_gym.policies.base import ChunkedPolicy
    from kairos_gym.policies.wrappers import (
        GripperOverride,
        Interrupted,
        NoisyPolicy,
        RandomGripper,
    )

    base, modifiers = parse_spec(spec)
    policy = _base_policy(base, env, noise)
    for name, value in modifiers:
        if name == "miss":  # a property of the expert's plan, not of its actions
            from kairos_gym.policies.robosuite_experts import RobosuiteExpert

            if not isinstance(policy, RobosuiteExpert):
                raise ValueError(f"miss=D modifies a robosuite expert's grasp, not {base!r} ({spec!r})")
            assert value is not None
            policy.aim_error = float(value)
    modifiers = [(name, value) for name, value in modifiers if name != "miss"]
    convention = action_convention(env) if modifiers else None
    for name, value in modifiers:
        assert convention is not None
        if name == "noise":
            policy = NoisyPolicy(policy, value, low=convention.low, high=convention.high)
        elif name in ("interrupt", "hold"):
            policy = Interrupted(policy, value, hold=name == "hold", convention=convention)
        elif name == "gripper":
            policy = RandomGripper(policy, value, convention=convention)
        elif name == "open":
            policy = GripperOverride(policy, convention.gripper_open, index=convention.grippers)
        else:  # execute, always last
            policy = ChunkedPolicy(policy, int(value))
    return policy


# Env id prefix -> its action convention where it is not robosuite's (see action_convention).
_ALOHA_PREFIX = "kairos_gym/Aloha-"


def action_convention(env: gym.Env) -> ActionConvention:
    """How ``env``'s actions are laid out, for the modifiers that write actions themselves.

    ALOHA (``kairos_gym/Aloha-*``, and imagined envs trained on it, which record the real id):
    absolute joint targets, grippers at entries 6 and 13, ``1`` open and ``0`` closed. Every
    other env: robosuite's deltas, one gripper last, ``-1`` open. The bounds are the env's
    action space.
    """
    space = env.action_space
    low, high = np.asarray(space.low, np.float32), np.asarray(space.high, np.float32)
    env_id = _env_id(env) or ""
    if env_id.startswith(_ALOHA_PREFIX) or _imitated_id(env).startswith(_ALOHA_PREFIX):
        return ActionConvention(low=low, high=high, grippers=(6, 13), gripper_open=1.0,
                                gripper_closed=0.0, absolute=True)
    return ActionConvention(low=low, high=high)


def _imitated_id(env: gym.Env) -> str:
    """The real env id an imagined env imitates ("" for any other env)."""
    checkpoint = getattr(getattr(env, "unwrapped", env), "checkpoint", None)
    return str(getattr(getattr(checkpoint, "env_spec", None), "env_id", "") or "")


def check_spec(spec: str) -> str:
    """Check a spec's grammar without building anything (``bc:DIR`` is not opened).

    Raises:
        ValueError: as :func:`parse_spec`.
    """
    parse_spec(spec)
    return spec


def parse_spec(spec: str) -> tuple[str, list[tuple[str, float | None]]]:
    """``(base, [(modifier, value or None), ...])`` of a spec, every value checked.

    Raises:
        ValueError: an empty spec, an unknown base or modifier, a value out of range, or
            ``execute`` not last; the message lists what is allowed.
    """
    if not isinstance(spec, str) or not spec:
        raise ValueError(f"a policy spec is a non-empty string, got {spec!r}")
    base, *mods = spec.split("+")
    if base.startswith("served:"):
        from kairos_gym.serving.protocol import parse_address

        parse_address(base[len("served:") :])
    elif base not in ("expert", "random", "zero") and not (base.startswith("bc:") and len(base) > 3):
        raise ValueError(f"unknown policy {base!r}; choose one of {POLICY_NAMES}")
    ranges = {"noise": (0.0, None), "interrupt": (0.0, 1.0), "hold": (0.0, 1.0),
              "gripper": (0.0, 1.0), "miss": (0.0, 0.5)}
    parsed: list[tuple[str, float | None]] = []
    for i, mod in enumerate(mods):
        name, eq, value = mod.partition("=")
        try:
            if name in ranges and eq:
                parsed.append((name, _number(value, *ranges[name])))
            elif name == "execute" and eq and i == len(mods) - 1:
                if int(value) < 1:
                    raise ValueError(f"{value!r} is not an integer >= 1")
                parsed.append((name, int(value)))
            elif name == "open" and not eq:
                parsed.append((name, None))
            else:
                raise ValueError("unknown")
        except ValueError as exc:
            raise ValueError(
                f"bad modifier {mod!r} in policy {spec!r} ({exc}); modifiers are "
                f"{', '.join(MODIFIERS)} (execute last)"
            ) from None
    return base, parsed


def is_privileged(spec: str) -> bool:
    """Whether the spec's policy reads the simulator (cannot act in imagination)."""
    return spec.split("+")[0] == "expert"


def _base_policy(base: str, env: gym.Env, noise: float) -> Policy:
    from kairos_gym.policies.wrappers import ConstantPolicy

    if base == "random":
        return RandomPolicy(env.action_space)
    if base == "zero":
        return ConstantPolicy(np.zeros(env.action_space.shape, dtype=np.float32))
    if base.startswith("bc:"):
        from kairos_gym.policies.learned import BCPolicy

        return BCPolicy.load(base[3:])
    if base.startswith("served:"):
        from kairos_gym.serving.client import WebsocketPolicy

        return WebsocketPolicy(base[len("served:") :], action_dim=_action_dim(env))
    if base != "expert":
        raise ValueError(f"unknown policy {base!r}; choose one of {POLICY_NAMES}")
    env_id = _env_id(env)
    if env_id not in EXPERTS:
        raise ValueError(f"no scripted expert for environment {env_id!r}; experts exist for {sorted(EXPERTS)}")
    module_name, class_name = EXPERTS[env_id].split(":")
    cls = getattr(importlib.import_module(module_name), class_name)
    return cls(noise=noise)


def _env_id(env: gym.Env) -> str | None:
    """The env's gymnasium id; a LIBERO env built directly (no spec) answers its suite's id."""
    if env.spec is not None:
        return env.spec.id
    from kairos_gym.envs.registration import LIBERO_IDS

    suite = getattr(getattr(env, "unwrapped", env), "suite", None)
    return f"kairos_gym/Libero-{LIBERO_IDS[suite]}-v0" if suite in LIBERO_IDS else None


def _action_dim(env: gym.Env) -> int | None:
    shape = getattr(env.action_space, "shape", None)
    return int(shape[0]) if shape is not None and len(shape) == 1 else None


def _number(text: str, low: float, high: float | None) -> float:
    value = float(text)
    if not (math.isfinite(value) and value >= low and (high is None or value <= high)):
        bound = f"in [{low:g}, {high:g}]" if high is not None else f">= {low:g}"
        raise ValueError(f"{text!r} is not a number {bound}")
    return value
