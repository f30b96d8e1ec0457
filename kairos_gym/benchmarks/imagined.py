"""A benchmark's episodes in imagination: the same jobs and seeds, run in a world model.

A real benchmark job resets its env with a seed. Its imagined twin runs
``kairos_gym/Imagined-v0`` over a checkpoint of that env with ``real_resets=True``: the
imagined episode of seed ``s`` starts from the real env's reset observation of seed ``s``,
and from then on the policy sees only imagined observations (closed loop). Success,
reward and termination are the model's. Comparing a run in each world on the same seeds
says how far the model can stand in for the simulator for that policy.

Privileged policies (:func:`kairos_gym.policies.registry.is_privileged`: the scripted
experts, which read the simulator's state) cannot act on imagined observations. Their jobs run :func:`paired_episode`
instead, the paired protocol: the policy acts in the real env of the same seed, every
action also goes to the imagined env, and the record is the imagined outcome.

Example (the TransferCube expert's first kept RoboTwin seeds, imagined)::

    kairos-gym bench robotwin --task TransferCube --episodes 10 --policy expert \\
        --checkpoint runs/transfer_cube_rollouts/model --out results/robotwin/imagined_expert
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kairos_gym.benchmarks.runner import EnvFactory, EpisodeJob, EpisodeSummary
from kairos_gym.envs.registration import IMAGINED_ID

__all__ = [
    "PAIRED_EPISODE",
    "PairedOutcome",
    "checkpoint_env_id",
    "imagined_factory",
    "paired_episode",
]

# The episode function of privileged jobs in imagination (see EpisodeJob.episode).
PAIRED_EPISODE = "kairos_gym.benchmarks.imagined:paired_episode"


def checkpoint_env_id(checkpoint: str | os.PathLike[str]) -> str:
    """The real env id an environment checkpoint imitates, read from its ``config.json``
    without loading the model.

    Raises:
        CheckpointError: no readable config, or a config without an env spec.
    """
    from kairos_gym.errors import CheckpointError
    from kairos_gym.model import checkpoint as ckpt

    spec = ckpt.read_config(checkpoint).get("env_spec")
    if not isinstance(spec, dict) or not isinstance(spec.get("env_id"), str):
        raise CheckpointError(
            f"{checkpoint}: config.json has no env_spec.env_id: not an environment checkpoint "
            "(write one with kairos-gym train)"
        )
    return spec["env_id"]


def imagined_factory(
    checkpoint: str | os.PathLike[str], env_id: str, *, max_episode_steps: int | None
) -> EnvFactory:
    """The env factory of ``env_id``'s jobs in imagination: ``kairos_gym/Imagined-v0`` over
    ``checkpoint`` with real resets and the given step limit.

    Raises:
        CheckpointError: ``checkpoint`` is not an environment checkpoint.
        ValueError: it imitates another env than ``env_id``.
    """
    path = Path(checkpoint).resolve()
    imitated = checkpoint_env_id(path)
    if imitated != env_id:
        raise ValueError(
            f"the checkpoint {os.fspath(checkpoint)!r} imitates {imitated!r}, not {env_id!r}: "
            "give a checkpoint of the benchmark's task"
        )
    kwargs: dict[str, Any] = {"checkpoint": os.fspath(path), "real_resets": True}
    if max_episode_steps is not None:
        kwargs["max_episode_steps"] = max_episode_steps
    return EnvFactory(IMAGINED_ID, kwargs)


@dataclass(frozen=True)
class PairedOutcome(EpisodeSummary):
    """A paired episode as the runner records it: the imagined side.

    ``success`` is the first imagined success; ``length`` counts steps until the episode
    ended (either env ending it, or the step limit); ``env_seconds`` is the time inside the
    imagined env's ``step``; ``real_success`` is the real side's outcome of the same
    actions.
    """

    real_success: bool


# (policy spec, real env id) -> the policy, built once per worker (it rebinds to the env on
# each reset).
_POLICIES: dict[tuple[str, str], Any] = {}


def paired_episode(env: Any, policy_spec: str, job: EpisodeJob) -> PairedOutcome:
    """The paired protocol for one job: ``policy_spec`` acts in the imagined env's real env.

    ``env`` is an imagined env built with ``real_resets`` (:func:`imagined_factory`). The
    policy is reset on the real env (a scripted expert reads it) with the job's seed, and
    the imagined env starts from that reset observation with the same seed; each action
    the policy takes in the real env is taken in the imagined env too. The episode ends at
    the first imagined success, when either env ends it, or at the job's step limit (else
    the imagined env's).

    Raises:
        ValueError: ``env`` is not an imagined env with ``real_resets``.
    """
    import time

    from kairos_gym.policies import make_policy
    from kairos_gym.rollout import Transition, run_episode

    imagined = env
    real = getattr(env.unwrapped, "real_env", None)
    if real is None:
        raise ValueError(
            "paired_episode needs an imagined env built with real_resets=True "
            "(kairos_gym.benchmarks.imagined.imagined_factory)"
        )
    # The real env's own limit is its checkpoint's; the job's (else the imagined env's) rules.
    limit = job.max_steps or getattr(getattr(env, "spec", None), "max_episode_steps", None)
    real = real.unwrapped
    # make_policy picks the expert by the env's id: one policy per spec and real env id.
    key = (policy_spec, getattr(real.spec, "id", None) or type(real).__name__)
    if key not in _POLICIES:
        _POLICIES[key] = make_policy(policy_spec, real)
    state = {"reward": 0.0, "first": None, "seconds": 0.0, "ended_by": "max_steps"}

    def start_imagined(obs: Any, info: Any) -> None:
        imagined.reset(seed=job.seed, options={"observation": obs})

    def step_imagined(t: Transition) -> bool:
        started = time.perf_counter()
        _, reward, terminated, truncated, info = imagined.step(t.action)
        state["seconds"] += time.perf_counter() - started
        state["reward"] += float(reward)
        if info.get("success") and state["first"] is None:
            state["first"] = t.step
            state["ended_by"] = "success"
            return True
        if terminated or truncated:
            state["ended_by"] = "imagined " + ("terminated" if terminated else "truncated")
            return True
        return False

    episode = run_episode(
        real,
        _POLICIES[key],
        seed=job.seed,
        max_steps=limit,
        on_reset=start_imagined,
        on_step=step_imagined,
    )
    ended_by = state["ended_by"]
    if ended_by == "max_steps" and episode.ended_by != "max_steps":
        ended_by = f"real {episode.ended_by}"
    return PairedOutcome(
        success=state["first"] is not None,
        total_reward=state["reward"],
        length=episode.length,
        first_success=state["first"],
        ended_by=ended_by,
        instruction=episode.instruction,
        env_seconds=state["seconds"],
        real_success=episode.success,
    )
