"""Real-vs-imagined agreement figures from paired episodes.

:func:`kairos_gym.rollout.run_paired` runs the episode: the real env and the imagined env
start from the same real reset observation, the policy acts on the *real* observations and
every action goes to both; each step records the PSNR of the imagined frame against the real
one (and of the reset frame against the real one, the "nothing moves" baseline), both
rewards and both success flags. This module turns those records into the figures that
``kairos-gym demo`` prints for one episode (:func:`summarize`) and that
``kairos_gym.eval.real_vs_imagined`` reports over many (:func:`aggregate`).
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

import gymnasium as gym
import numpy as np

from kairos_gym.rollout import PairedEpisode, PairedStep

if TYPE_CHECKING:  # pragma: no cover
    from kairos_gym.imagined.checkpoint import EnvCheckpoint

__all__ = ["PairedEpisode", "PairedStep", "aggregate", "summarize"]


def summarize(episode: PairedEpisode) -> dict[str, Any]:
    """One paired episode's figures.

    Returns:
        ``seed``, ``steps``; ``psnr_mean`` (and over the first and last 10 steps),
        ``baseline_psnr_mean``; ``success_agreement`` (fraction of steps whose success flags
        agree); ``return`` / ``imagined_return`` and ``reward_mae``; ``first_success_real`` /
        ``first_success_imagined`` (1-based steps or ``None``); steps per second of each env;
        ``ended_by``.

    Raises:
        ValueError: the episode has no steps.
    """
    steps = episode.steps
    if not steps:
        raise ValueError(f"the paired episode of seed {episode.seed} has no steps to summarize")
    scores = np.array([s.psnr for s in steps])
    n = len(steps)
    return {
        "seed": episode.seed,
        "steps": n,
        "psnr_mean": float(scores.mean()),
        "psnr_first_10": float(scores[:10].mean()),
        "psnr_last_10": float(scores[-10:].mean()),
        "baseline_psnr_mean": float(np.mean([s.baseline_psnr for s in steps])),
        "success_agreement": float(np.mean([s.success == s.imagined_success for s in steps])),
        "return": float(sum(s.reward for s in steps)),
        "imagined_return": float(sum(s.imagined_reward for s in steps)),
        "reward_mae": float(np.mean([abs(s.reward - s.imagined_reward) for s in steps])),
        "first_success_real": next((s.step for s in steps if s.success), None),
        "first_success_imagined": next((s.step for s in steps if s.imagined_success), None),
        "real_steps_per_s": n / episode.real_seconds if episode.real_seconds else None,
        "imagined_steps_per_s": n / episode.imagined_seconds if episode.imagined_seconds else None,
        "ended_by": episode.ended_by,
    }


def aggregate(episodes: list[dict[str, Any]]) -> dict[str, Any]:
    """Means over per-episode summaries (:func:`summarize`) of one policy.

    Returns:
        ``episodes``; mean ``psnr`` and ``baseline_psnr``; ``success_step_agreement``;
        ``success_episode_agreement`` (episodes where both or neither env ever succeeded);
        both success rates; mean returns and ``reward_mae``; ``first_success_step_error``
        (mean absolute difference over episodes where both succeeded, else ``None``).

    Raises:
        ValueError: no episodes.
    """
    if not episodes:
        raise ValueError("aggregate needs at least one episode summary")

    def mean(key: str) -> float:
        return float(np.mean([e[key] for e in episodes]))

    real_won = [e["first_success_real"] is not None for e in episodes]
    imagined_won = [e["first_success_imagined"] is not None for e in episodes]
    both = [e for e, r, i in zip(episodes, real_won, imagined_won) if r and i]
    errors = [abs(e["first_success_real"] - e["first_success_imagined"]) for e in both]
    return {
        "episodes": len(episodes),
        "psnr": mean("psnr_mean"),
        "baseline_psnr": mean("baseline_psnr_mean"),
        "success_step_agreement": mean("success_agreement"),
        "success_episode_agreement": float(np.mean([r == i for r, i in zip(real_won, imagined_won)])),
        "real_success_rate": float(np.mean(real_won)),
        "imagined_success_rate": float(np.mean(imagined_won)),
        "return": mean("return"),
        "imagined_return": mean("imagined_return"),
        "reward_mae": mean("reward_mae"),
        "first_success_step_error": float(np.mean(errors)) if errors else None,
    }


def open_env_pair(
    checkpoint: str | None,
    *,
    sample_steps: int | None = None,
    embodiment: str | None = None,
    success_threshold: float | None = None,
    draw_state: bool = True,
    success_hold: int | None = None,
) -> tuple[EnvCheckpoint, gym.Env, gym.Env]:
    """``(checkpoint, real env, imagined env)`` for comparing the two worlds: the real env is
    built from the checkpoint's spec (``gym.make(spec.env_id, **spec.env_kwargs)``), so both
    have the same spaces, cameras and episode limit.

    For a multi-embodiment checkpoint (:mod:`kairos_gym.data.unified`) ``embodiment`` names
    the one to compare: the real env is built from that embodiment's spec, the imagined env
    is an :class:`~kairos_gym.imagined.embodiment.EmbodimentEnv`, and the returned checkpoint
    carries that embodiment's spec as its ``env_spec`` (for reports; serve the model through
    the returned env, not through it). ``success_threshold`` and ``success_hold`` are the
    imagined env's (``None``: the checkpoint's :class:`~kairos_gym.imagined.success.SuccessRule`);
    so is ``draw_state``
    (``False`` for replaying one world's actions in the other, see
    :class:`~kairos_gym.imagined.core.ImaginedCore`).

    Raises:
        CheckpointError, ValueError: a bad checkpoint or option (an ``embodiment`` missing or
            given where it does not apply).
        DependencyNotInstalled, gymnasium.error.Error: the real simulator cannot be built.
    """
    from kairos_gym.data.unified import UnifiedLayout, is_unified
    from kairos_gym.imagined.checkpoint import load_env_checkpoint
    from kairos_gym.imagined.embodiment import make_embodiment_env
    from kairos_gym.imagined.env import ImaginedEnv

    ckpt = load_env_checkpoint(checkpoint)
    if is_unified(ckpt.env_spec):
        layout = UnifiedLayout.from_spec(ckpt.env_spec)
        if embodiment is None:
            raise ValueError(f"{ckpt.path} models several embodiments {list(layout.names)}: "
                             "name the one to compare (--embodiment)")
        imagined: gym.Env = make_embodiment_env(
            ckpt, embodiment, sample_steps=sample_steps, success_threshold=success_threshold,
            success_hold=success_hold, draw_state=draw_state,
        )
        spec = layout.embodiment(embodiment).spec
        ckpt = dataclasses.replace(ckpt, env_spec=spec)
    else:
        if embodiment is not None:
            raise ValueError(f"{ckpt.path} models {ckpt.env_spec.env_id} alone; --embodiment "
                             "applies to multi-embodiment checkpoints")
        imagined = ImaginedEnv(
            ckpt, sample_steps=sample_steps, success_threshold=success_threshold,
            success_hold=success_hold, draw_state=draw_state,
        )
    real = gym.make(ckpt.env_spec.env_id, **ckpt.env_spec.env_kwargs)
    return ckpt, real, imagined
