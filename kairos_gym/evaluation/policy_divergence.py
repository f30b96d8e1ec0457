"""How differently a policy acts on imagined observations than on real ones, and through which input.

The closed-loop agreement benchmark runs a policy on imagined observations, so an imagined
success rate can differ from the real one for two reasons: the model moves the world wrongly
under the policy's actions (the dynamics), or it shows the policy observations on which the
policy acts differently than on real ones (perception). :mod:`~kairos_gym.evaluation.dynamics_replay`
measures the first; this module measures the second, on recorded real episodes of the policy.

For each episode of a file, the imagined env starts from the episode's first observation and
is stepped with the recorded actions, as in the paired protocol, so both worlds see the same
actions. At every step the policy is asked, in one batch, for its action on five inputs:

- ``real``: the recorded observation (the reference);
- ``imagined``: the imagined observation, as in closed-loop evaluation;
- ``imagined_images``: the imagined camera frames with the real non-image observations;
- ``imagined_state``: the real camera frames with the imagined non-image observations;
- ``reconstructed_images``: the real frames passed through the model's codec (encoded and
  decoded, with the real state): the part of the divergence that better frames from the same
  codec cannot remove (NaN for a codec that compresses time, whose frames decode only together).

Each divergence is the mean absolute difference from the action on the real input, per action
entry, divided by the spread (standard deviation over the file's steps) of that entry of the
policy's real-input actions and averaged over entries: 0 means the policy acts on imagination
exactly as on reality, 1 means the difference is as large as its actions' typical variation.
Where ``imagined_images`` is near ``imagined`` and ``imagined_state`` near 0, the frames are
what steers the policy off its real behaviour, and the other way round. The policy must keep
no per-step memory (a behaviour-cloned policy, say): it is queried five times per step.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from kairos_gym.data.reader import EpisodeReader
from kairos_gym.errors import DatasetError
from kairos_gym.imagined.checkpoint import EnvCheckpoint
from kairos_gym.imagined.env import ImaginedEnv
from kairos_gym.policies.base import Policy

__all__ = ["INPUTS", "DivergenceResult", "policy_divergence", "summarize"]

INPUTS = ("imagined", "imagined_images", "imagined_state", "reconstructed_images")
"""The inputs compared with the real observation, in the order of the result's arrays."""


@dataclass(frozen=True)
class DivergenceResult:
    """Divergences of one file's episodes.

    Attributes:
        names: episode names ``[E]``.
        steps: steps compared per episode, int ``[E]``.
        divergence: ``{input: float [E]}``, each episode's mean relative divergence for each
            of :data:`INPUTS`.
        per_step: ``{input: float [H]}``, the relative divergence at step ``1..H`` averaged
            over the episodes that reach it (it grows as the imagined world drifts).
        action_scale: float ``[A]``, the standard deviation of the policy's actions on the real
            observations over all compared steps (the divergences' unit).
    """

    names: list[str]
    steps: np.ndarray
    divergence: dict[str, np.ndarray]
    per_step: dict[str, np.ndarray]
    action_scale: np.ndarray

    def mean(self, which: str = "imagined") -> float:
        """The divergence of ``which`` averaged over all compared steps of all episodes."""
        weights = self.steps / max(int(self.steps.sum()), 1)
        return float((self.divergence[which] * weights).sum())


def _first_action(output: np.ndarray, rows: int) -> np.ndarray:
    """float64 ``[rows, A]``: the first action of each row's chunk (or its single action)."""
    out = np.asarray(output, dtype=np.float64)
    return out[:, 0] if out.ndim == 3 else out.reshape(rows, -1)


def _reconstruct(codec: torch.nn.Module, frame: np.ndarray) -> np.ndarray:
    """uint8 ``[H, W, 3]``: ``frame`` encoded and decoded by a codec that codes frames one by one."""
    with torch.no_grad():
        out = codec.decode(codec.encode(torch.from_numpy(np.ascontiguousarray(frame))[None, None]))
    return out[0, 0].cpu().numpy()


def policy_divergence(
    ckpt: EnvCheckpoint,
    policy: Policy,
    path: str,
    *,
    horizon: int | None = None,
    max_episodes: int | None = None,
    seed: int = 0,
    sample_steps: int | None = None,
) -> DivergenceResult:
    """Measure how differently ``policy`` acts on ``ckpt``'s imagination of the episodes in
    ``path`` than on the recorded observations (see the module docstring).

    Args:
        ckpt: the environment checkpoint (the episodes must hold every observation key of its
            env spec: record them with the same cameras and ``--object-state`` if it has it).
        policy: a memoryless policy whose observation keys the checkpoint's env provides.
        path: an episode file, typically of this policy's own real rollouts.
        horizon: compare at most this many steps per episode (``None``: whole episodes).
        max_episodes: at most this many episodes, in file order.
        seed: the imagined env's noise seed of episode ``i`` is ``seed + i``.
        sample_steps: denoising steps per imagined frame (``None``: the checkpoint's).

    Raises:
        DatasetError: an unreadable file, no episode, or episodes without the checkpoint's keys.
        ValueError: ``horizon`` or ``max_episodes`` below 1.
    """
    if horizon is not None and horizon < 1:
        raise ValueError(f"horizon must be >= 1 or None, got {horizon}")
    if max_episodes is not None and max_episodes < 1:
        raise ValueError(f"max_episodes must be >= 1 or None, got {max_episodes}")
    # The recorded actions are replayed to the episode's end: imagined termination is ignored.
    env = ImaginedEnv(ckpt, max_episode_steps=None, sample_steps=sample_steps, done_threshold=1.0)
    keys = list(env.observation_space.spaces)
    images = set(ckpt.observation_keys.image_keys)
    # A codec that compresses time decodes frames in groups, not one by one: no reconstruction.
    codec = ckpt.model.codec
    rebuilds = getattr(codec, "temporal_compression", 1) == 1
    names: list[str] = []
    diffs: list[np.ndarray] = []  # per episode: [steps, len(INPUTS), A] absolute differences
    reals: list[np.ndarray] = []  # per episode: [steps, A] actions on the real inputs
    try:
        with EpisodeReader(path) as reader:
            count = len(reader) if max_episodes is None else min(len(reader), max_episodes)
            if count == 0:
                raise DatasetError(f"{path}: no episode")
            for i in range(count):
                episode = reader[i]
                missing = sorted(set(keys) - set(episode.obs_keys))
                if missing:
                    raise DatasetError(
                        f"{path}: episode {episode.name!r} has no {missing}; the checkpoint's "
                        f"env observes {keys} (record them when collecting)"
                    )
                steps = episode.num_frames - 1
                if horizon is not None:
                    steps = min(steps, horizon)
                if steps < 1:
                    continue
                real = {k: episode.frames(k, 0, steps + 1) for k in keys}
                actions = episode.actions[:steps]
                obs, _ = env.reset(seed=seed + i, options={"observation": {k: v[0] for k, v in real.items()}})
                episode_diffs, episode_reals = [], []
                for t in range(steps):
                    obs = env.step(actions[t])[0]
                    now = {k: v[t + 1] for k, v in real.items()}
                    rows = [
                        now,
                        obs,
                        {k: (obs[k] if k in images else now[k]) for k in keys},
                        {k: (now[k] if k in images else obs[k]) for k in keys},
                    ]
                    if rebuilds:
                        rows.append({k: (_reconstruct(codec, now[k]) if k in images else now[k])
                                     for k in keys})
                    batch = {k: np.stack([row[k] for row in rows]) for k in keys}
                    acted = _first_action(
                        policy.act_batch(batch, [env.instruction] * len(rows)), len(rows)
                    )
                    diff = np.full((len(INPUTS), acted.shape[1]), np.nan)
                    diff[: len(rows) - 1] = np.abs(acted[1:] - acted[0])
                    episode_reals.append(acted[0])
                    episode_diffs.append(diff)
                names.append(episode.name)
                diffs.append(np.stack(episode_diffs))
                reals.append(np.stack(episode_reals))
    finally:
        env.close()
    if not diffs:
        raise DatasetError(f"{path}: no episode with a step to compare")
    scale = np.concatenate(reals).std(axis=0)
    # An entry the policy never varies (a constant gripper command) has no spread to measure
    # against; it is left out rather than dividing by ~0.
    varied = scale > 1e-6 * max(float(scale.max()), 1e-12)
    if not varied.any():
        varied = np.ones_like(varied)
        scale = np.ones_like(scale)
    relative = [(d[..., varied] / scale[varied]).mean(-1) for d in diffs]  # [steps, inputs]
    longest = max(len(r) for r in relative)
    per_step = {}
    for j, name in enumerate(INPUTS):
        padded = np.full((len(relative), longest), np.nan)
        for e, r in enumerate(relative):
            padded[e, : len(r)] = r[:, j]
        with warnings.catch_warnings():  # all-NaN columns (no reconstruction) stay NaN
            warnings.simplefilter("ignore", RuntimeWarning)
            per_step[name] = np.nanmean(padded, axis=0)
    return DivergenceResult(
        names=names,
        steps=np.array([len(r) for r in relative]),
        divergence={name: np.array([r[:, j].mean() for r in relative]) for j, name in enumerate(INPUTS)},
        per_step=per_step,
        action_scale=scale,
    )


def summarize(results: Sequence[DivergenceResult]) -> dict[str, float]:
    """Step-weighted mean divergence of each input over several files' results."""
    total = sum(int(r.steps.sum()) for r in results)
    out: dict[str, float] = {"episodes": float(sum(len(r.names) for r in results)), "steps": float(total)}
    for name in INPUTS:
        out[name] = float(sum(r.mean(name) * int(r.steps.sum()) for r in results) / max(total, 1))
    return out
