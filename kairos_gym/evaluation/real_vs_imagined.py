"""One policy's actions in the real simulator and in imagination, compared step by step.

The real env and the imagined env start from the same real reset observation; the policy
acts on the *real* observations and every action goes to both. Each step records the PSNR
of the imagined frame against the real one (and of the first frame against the real one,
the "nothing moves" baseline), both rewards and both success flags. This is what
``kairos-gym demo`` shows for one episode and what ``kairos_gym.eval.real_vs_imagined``
aggregates over many.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import gymnasium as gym
import numpy as np

from kairos_gym.evaluation.metrics import psnr
from kairos_gym.imagined.env import ImaginedEnv
from kairos_gym.policies.base import Policy


@dataclass
class StepRecord:
    """One step of a paired episode."""

    step: int
    psnr: float
    baseline_psnr: float
    reward: float
    imagined_reward: float
    success: bool
    imagined_success: bool
    imagined_success_prob: float


@dataclass
class PairedEpisode:
    """A policy's episode in the real env and in imagination.

    Attributes:
        seed: the real env's reset seed (the imagined env's noise seed too).
        steps: one :class:`StepRecord` per step.
        frames: ``(real, imagined)`` uint8 ``[H, W, 3]`` pairs, reset first, when kept.
        ended_by: why the episode stopped early (``"real: terminated"``...), or ``[]``.
        real_seconds, imagined_seconds: time spent stepping each env.
    """

    seed: int
    steps: list[StepRecord] = field(default_factory=list)
    frames: list[tuple[np.ndarray, np.ndarray]] = field(default_factory=list)
    ended_by: list[str] = field(default_factory=list)
    real_seconds: float = 0.0
    imagined_seconds: float = 0.0

    def summary(self) -> dict[str, Any]:
        """Mean PSNR (and of the baseline), success agreement, returns, first successes, speed."""
        scores = np.array([s.psnr for s in self.steps])
        first_real = next((s.step for s in self.steps if s.success), None)
        first_imagined = next((s.step for s in self.steps if s.imagined_success), None)
        n = len(self.steps)
        return {
            "seed": self.seed, "steps": n,
            "psnr_mean": float(scores.mean()), "psnr_first_10": float(scores[:10].mean()),
            "psnr_last_10": float(scores[-10:].mean()),
            "baseline_psnr_mean": float(np.mean([s.baseline_psnr for s in self.steps])),
            "success_agreement": float(np.mean([s.success == s.imagined_success for s in self.steps])),
            "return": float(sum(s.reward for s in self.steps)),
            "imagined_return": float(sum(s.imagined_reward for s in self.steps)),
            "reward_mae": float(np.mean([abs(s.reward - s.imagined_reward) for s in self.steps])),
            "first_success_real": first_real, "first_success_imagined": first_imagined,
            "real_steps_per_s": n / self.real_seconds if self.real_seconds else None,
            "imagined_steps_per_s": n / self.imagined_seconds if self.imagined_seconds else None,
            "ended_by": self.ended_by,
        }


def run_paired_episode(
    real: gym.Env, imagined: ImaginedEnv, policy: Policy, *, seed: int, steps: int, image_key: str,
    keep_frames: bool = False, on_step: Callable[[StepRecord], None] | None = None,
) -> PairedEpisode:
    """Run ``policy`` for ``steps`` steps in ``real`` and the same actions in ``imagined``.

    Args:
        real: the real environment (a kairos-gym env with the checkpoint's spec).
        imagined: the imagined environment.
        policy: acts on the real observations; reset with ``seed`` (and the real env, which
            scripted experts read).
        seed: reset seed of the real env and noise seed of the imagined one.
        steps: at most this many steps; the episode stops when either env ends.
        image_key: the generated camera's observation key.
        keep_frames: keep every ``(real, imagined)`` frame pair (for videos).
        on_step: called with each step's record (progress printing).
    """
    obs, _ = real.reset(seed=seed)
    policy.reset(seed=seed, env=real)
    imagined_obs, _ = imagined.reset(seed=seed, options={"observation": obs})
    first = obs[image_key].copy()
    episode = PairedEpisode(seed=seed)
    if keep_frames:
        episode.frames.append((obs[image_key].copy(), imagined_obs[image_key].copy()))
    for step in range(1, steps + 1):
        action = policy.act(obs, getattr(imagined, "instruction", ""))
        t0 = time.perf_counter()
        obs, reward, terminated, truncated, info = real.step(action)
        t1 = time.perf_counter()
        imagined_obs, imagined_reward, imagined_term, imagined_trunc, imagined_info = imagined.step(action)
        t2 = time.perf_counter()
        episode.real_seconds += t1 - t0
        episode.imagined_seconds += t2 - t1
        record = StepRecord(
            step=step, psnr=float(psnr(imagined_obs[image_key], obs[image_key])),
            baseline_psnr=float(psnr(first, obs[image_key])), reward=float(reward),
            imagined_reward=float(imagined_reward), success=bool(info["success"]),
            imagined_success=bool(imagined_info["success"]),
            imagined_success_prob=float(imagined_info["success_prob"]))
        episode.steps.append(record)
        if keep_frames:
            episode.frames.append((obs[image_key].copy(), imagined_obs[image_key].copy()))
        if on_step is not None:
            on_step(record)
        flags = (("real: terminated", terminated), ("real: truncated", truncated),
                 ("imagined: terminated", imagined_term), ("imagined: truncated", imagined_trunc))
        ended = [name for name, flag in flags if flag]
        if ended:
            if step < steps:
                episode.ended_by = ended
            break
    return episode
