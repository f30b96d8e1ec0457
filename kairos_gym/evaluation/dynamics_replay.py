"""Replay recorded episodes through a model's proprioceptive dynamics alone (no frames).

The cheap half of the paired protocol: for each episode, the carried state starts from the
recorded first state and moves only through :class:`~kairos_gym.model.proprio.ProprioDynamics`
under the recorded actions, open loop, as it does in the imagined env. The predicted success
of each step is read from the state (``state_outcomes`` models) and compared with the
simulator's. Nothing is rendered or denoised, so hundreds of episodes take seconds: the loop
for judging a dynamics change before the frames are trained or the full agreement benchmark
is run. The denoiser does not move the carried state, so for a ``state_outcomes`` model this
predicts the success the paired protocol would imagine from the same actions (exactly, for a
deterministic dynamics; for a stochastic one, from other draws of the same distribution).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from kairos_gym.data.dataset import ClipDataset
from kairos_gym.imagined.checkpoint import EnvCheckpoint


@dataclass(frozen=True)
class ReplayResult:
    """Per-episode results of one file.

    Attributes:
        names: episode names ``[E]``.
        real_success: the episode reached success in the simulator, bool ``[E]``.
        imagined_success: some replayed step had ``success_prob > threshold``, bool ``[E]``.
        differences: per episode, the replayed state less the recorded one at every step, in
            environment units, float ``[T_e, S]`` each (entries in the order of the
            checkpoint's state keys): which entries leave the real ones, and which way.
    """

    names: list[str]
    real_success: np.ndarray
    imagined_success: np.ndarray
    differences: list[np.ndarray] = field(default_factory=list)

    @property
    def agreement(self) -> float:
        """Fraction of episodes whose imagined success equals the real one."""
        return float(np.mean(self.real_success == self.imagined_success))

    @property
    def state_errors(self) -> list[np.ndarray]:
        """Per episode, the L2 distance between the replayed and the recorded state at every
        step, float ``[T_e]`` each (how fast the carried state leaves the real one)."""
        return [np.linalg.norm(d, axis=-1) for d in self.differences]

    @property
    def final_state_error(self) -> np.ndarray:
        """That distance at each episode's last state, float ``[E]``."""
        return np.array([float(e[-1]) for e in self.state_errors])

    @property
    def peak_state_error(self) -> np.ndarray:
        """The largest such distance along each episode, float ``[E]``: a dynamics that
        diverges mid-episode and comes back is caught here."""
        return np.array([float(e.max()) for e in self.state_errors])


def replay_dynamics(ckpt: EnvCheckpoint, path: str, *, threshold: float = 0.5,
                    max_episodes: int | None = None, seed: int = 0) -> ReplayResult:
    """Replay every episode of ``path`` (recorded with ``ckpt``'s state keys) through the
    dynamics of ``ckpt``'s model. A stochastic dynamics draws each episode's states as the
    imagined env does, from a generator seeded ``seed + i`` for episode ``i``.

    Raises:
        ValueError: the model has no proprioceptive path or no outcome head on it.
        DatasetError: an unreadable file, or one without the model's state keys.
    """
    model = ckpt.model
    if not (model.config.proprio_conditioning and model.config.state_outcomes):
        raise ValueError("replay_dynamics needs a model with proprio_conditioning and state_outcomes")
    dit = model.dit
    dataset = ClipDataset(path, clip_len=1, cameras=(), state_keys=ckpt.observation_keys.state_keys)
    names, real, imagined, differences = [], [], [], []
    count = len(dataset.episodes) if max_episodes is None else min(max_episodes, len(dataset.episodes))
    with torch.no_grad():
        for i in range(count):
            ep = dataset.whole_episode(i)
            states = ep["state"].to(model.device)[None]
            actions = ep["actions"].to(model.device, torch.float32)[None]
            generator = torch.Generator(model.device).manual_seed(seed + i)
            unrolled = dit.proprio_dynamics.unroll(dit.normalize_state(states), actions, start=1,
                                                   sample=True, generator=generator)
            prob = dit.proprio_dynamics.outcomes(unrolled)["success"].sigmoid()[0, 1:]
            names.append(dataset.episodes[i][1])
            real.append(bool(ep["success"].any()))
            imagined.append(bool((prob > threshold).any()))
            differences.append((dit.denormalize_state(unrolled[0]) - states[0]).cpu().numpy())
    return ReplayResult(names, np.array(real), np.array(imagined), differences)


def summarize(results: Sequence[ReplayResult], error_steps: Sequence[int] = (), *,
              entries: bool = False) -> dict[str, Any]:
    """Real and imagined success rates, agreement and the mean final and peak state errors over
    all episodes; with ``error_steps``, also ``state_error_at``: the median state error at each
    of those steps over the episodes that last that long (``None`` where none does), and with
    ``entries`` too, ``entry_error_at``: the mean absolute error of every state entry at those
    steps (a list ``[S]``, or ``None``)."""
    real = np.concatenate([r.real_success for r in results])
    imagined = np.concatenate([r.imagined_success for r in results])
    errors = np.concatenate([r.final_state_error for r in results])
    peaks = np.concatenate([r.peak_state_error for r in results])
    out = {"episodes": int(real.size), "real_success": float(real.mean()),
           "imagined_success": float(imagined.mean()), "agreement": float(np.mean(real == imagined)),
           "final_state_error": float(errors.mean()), "peak_state_error": float(peaks.mean())}
    if error_steps:
        out["state_error_at"] = {int(t): _median_at(results, int(t)) for t in error_steps}
        if entries:
            out["entry_error_at"] = {int(t): _entry_mean_at(results, int(t)) for t in error_steps}
    return out


def _median_at(results: Sequence[ReplayResult], step: int) -> float | None:
    values = [c[step] for r in results for c in r.state_errors if len(c) > step]
    return float(np.median(values)) if values else None


def _entry_mean_at(results: Sequence[ReplayResult], step: int) -> list[float] | None:
    values = [np.abs(d[step]) for r in results for d in r.differences if len(d) > step]
    return np.mean(values, axis=0).tolist() if values else None
