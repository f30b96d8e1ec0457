"""Gymnasium ids of every kairos-gym environment.

Entry points are strings, so registering costs nothing and imports no simulator; the
simulator is imported by ``gym.make``. ``import kairos_gym`` calls :func:`register_all`.
"""

from __future__ import annotations

import gymnasium as gym

ROBOSUITE_TASKS = ("Lift", "Stack", "PickPlaceCan", "Door")
ALOHA_TASKS = ("TransferCube", "Insertion")


def register_all() -> None:
    """Register every ``kairos_gym/...`` id with Gymnasium (idempotent)."""
    entries: dict[str, tuple[str, dict]] = {}
    for task in ROBOSUITE_TASKS:
        entries[f"kairos_gym/Robosuite-{task}-v0"] = (
            "kairos_gym.envs.robosuite_env:RobosuiteEnv",
            {"task": task},
        )
    for task in ALOHA_TASKS:
        entries[f"kairos_gym/Aloha-{task}-v0"] = (
            "kairos_gym.envs.aloha_env:AlohaEnv",
            {"task": task},
        )
    entries["kairos_gym/Imagined-v0"] = ("kairos_gym.imagined.env:ImaginedEnv", {})
    for env_id, (entry_point, kwargs) in entries.items():
        if env_id not in gym.registry:
            gym.register(id=env_id, entry_point=entry_point, kwargs=kwargs)
