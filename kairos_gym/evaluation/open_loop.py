"""Open-loop fidelity of a world model on held-out episodes.

For every episode the model observes the first ``context_frames`` real frames, then imagines
``horizon`` steps from the episode's recorded actions without ever seeing another real frame
(open loop); each imagined frame is scored against the real one::

    from kairos_gym.data import load_episodes
    from kairos_gym.evaluation.open_loop import open_loop_eval
    from kairos_gym.imagined.checkpoint import load_env_checkpoint

    ckpt = load_env_checkpoint("runs/lift")
    episodes = load_episodes(["lift.hdf5"], ckpt.image_key, split="val", min_steps=64,
                             max_steps=64, max_episodes=24, state_keys=ckpt.state_keys)
    result = open_loop_eval(ckpt.model, episodes, horizon=64)
    print(result.summary()); json.dump(result.to_dict(), f)

An episode is a mapping of arrays (``T`` steps, ``T + 1`` frames; numpy or torch)::

    frames   uint8   [T + 1, H, W, 3]  frames[j]; frames[j] (j >= 1) was produced by actions[j - 1]
    actions  float   [T, A]            actions[j] leads from frame j into frame j + 1
    rewards  float   [T]               reward of step j: the label of frame j + 1
    success  bool    [T]               info["success"] after step j: the label of frame j + 1
    state    float   [T + 1, S]        optional: state of frame j (state-head targets; the
                                       concatenation of ObservationKeys.concat_state)
    name     str                       optional: reported in the results

which is the alignment of :class:`~kairos_gym.data.dataset.ClipDataset` (frame ``j``'s labels
are those of the step that led into it). :func:`kairos_gym.data.load_episodes` reads them
from episode files.

Imagined step ``k`` (1-based) produces frame ``c - 1 + k`` (``c = context_frames``) from
``actions[c - 2 + k]``, and is scored against ``frames[c - 1 + k]``, ``rewards[c - 2 + k]``,
``success[c - 2 + k]`` and ``state[c - 1 + k]``. The baseline repeats the last context frame.

With temporal compression ``tc > 1`` (a video codec: the Wan VAE's ``tc = 4``) the context is
one clip of ``c = 1 + tc m`` frames and the horizon a multiple of ``tc``; the model imagines
``tc`` frames per latent step from the ``tc`` recorded actions that lead into them, and every
frame is scored as above. The heads predict one outcome per latent step, so ``success_*``,
``reward_error`` and ``state_error`` hold ``K / tc`` entries per episode: latent step ``g``
(1-based) is scored against the label of its last frame ``c - 1 + tc g`` (its reward against
the sum of its ``tc`` rewards).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from kairos_gym.errors import ShapeError
from kairos_gym.evaluation.metrics import psnr, ssim
from kairos_gym.model.sampler import SamplerSettings
from kairos_gym.model.world_model import WorldModel

__all__ = ["PSNR_CAP_DB", "OpenLoopResult", "open_loop_eval"]

PSNR_CAP_DB = 100.0
"""PSNR counted for identical frames (``inf``) in means and JSON. Any two 8-bit frames that
differ at all score below ``10 log10(255^2 H W 3)`` dB (89 dB at 64x64), so the cap never
touches a real difference; it only keeps means and JSON finite."""


@dataclasses.dataclass
class OpenLoopResult:
    """Scores of an open-loop evaluation (``E`` episodes, horizon ``K``).

    Attributes:
        horizon: ``K`` imagined steps per episode.
        context_frames: real frames observed before imagining.
        episode_names: ``E`` names.
        psnr, ssim: ``[E, K]`` model frame ``k`` against the real one (PSNR in dB, identical
            frames counted as :data:`PSNR_CAP_DB`).
        baseline_psnr, baseline_ssim: ``[E, K]`` the last context frame against the real one.
        success_pred: bool ``[E, K]`` predicted success probability > 0.5 (``[E, K / tc]``,
            one per latent step, with temporal compression ``tc``).
        success_true: bool ``[E, K]`` the recorded success label of the same frame.
        reward_error: ``[E, K]`` absolute error of the predicted reward.
        state_error: ``[E, K]`` mean absolute error of the predicted state over its ``S``
            values, or ``None`` (no state head, or episodes without ``state``).
        seconds: wall-clock time of the evaluation.
        seed, batch_size: the sampling noise is drawn per batch, so results depend on both.
        frames: uint8 ``[E, K, H, W, 3]`` imagined frames when asked for (``keep_frames``).
    """

    horizon: int
    context_frames: int
    episode_names: list[str]
    psnr: np.ndarray
    ssim: np.ndarray
    baseline_psnr: np.ndarray
    baseline_ssim: np.ndarray
    success_pred: np.ndarray
    success_true: np.ndarray
    reward_error: np.ndarray
    state_error: np.ndarray | None
    seconds: float
    seed: int
    batch_size: int
    frames: np.ndarray | None = None

    @property
    def num_episodes(self) -> int:
        """``E``."""
        return len(self.episode_names)

    def curve(self, name: str) -> np.ndarray:
        """Mean over episodes ``[K]`` of psnr, ssim, baseline_psnr or baseline_ssim."""
        if name not in ("psnr", "ssim", "baseline_psnr", "baseline_ssim"):
            raise ValueError(
                f"no curve {name!r}; choose psnr, ssim, baseline_psnr or baseline_ssim"
            )
        return getattr(self, name).mean(axis=0)

    @property
    def success_accuracy(self) -> float:
        """Fraction of (episode, step) pairs whose predicted success matches the label."""
        return float((self.success_pred == self.success_true).mean())

    @property
    def success_episode_agreement(self) -> float:
        """Fraction of episodes where "success at some step within the horizon" agrees."""
        return float((self.success_pred.any(axis=1) == self.success_true.any(axis=1)).mean())

    @property
    def reward_mae(self) -> float:
        """Mean absolute reward error over all steps and episodes."""
        return float(self.reward_error.mean())

    @property
    def state_mae(self) -> float | None:
        """Mean absolute state error over all values, steps and episodes (``None`` without one)."""
        return None if self.state_error is None else float(self.state_error.mean())

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready summary: per-horizon curves (means and standard deviations over
        episodes), success, reward and state scores, and per-episode means."""

        def floats(x: np.ndarray) -> list[float]:
            return [float(v) for v in x]

        success = {
            "step_accuracy": self.success_accuracy,
            "episode_agreement": self.success_episode_agreement,
            "step_positive_rate_true": float(self.success_true.mean()),
            "step_positive_rate_pred": float(self.success_pred.mean()),
            "episodes_succeeded_true": int(self.success_true.any(axis=1).sum()),
            "episodes_succeeded_pred": int(self.success_pred.any(axis=1).sum()),
        }
        per_episode = [
            {
                "name": name,
                "psnr": float(self.psnr[i].mean()),
                "ssim": float(self.ssim[i].mean()),
                "success_true": bool(self.success_true[i].any()),
                "success_pred": bool(self.success_pred[i].any()),
            }
            for i, name in enumerate(self.episode_names)
        ]
        return {
            "horizon": self.horizon,
            "context_frames": self.context_frames,
            "num_episodes": self.num_episodes,
            "seed": self.seed,
            "batch_size": self.batch_size,
            "seconds": self.seconds,
            "psnr_cap_db": PSNR_CAP_DB,
            "curves": {
                "step": list(range(1, self.horizon + 1)),
                "psnr": floats(self.curve("psnr")),
                "ssim": floats(self.curve("ssim")),
                "baseline_psnr": floats(self.curve("baseline_psnr")),
                "baseline_ssim": floats(self.curve("baseline_ssim")),
                "psnr_std": floats(self.psnr.std(axis=0)),
                "ssim_std": floats(self.ssim.std(axis=0)),
                "reward_mae": floats(self.reward_error.mean(axis=0)),
            },
            "success": success,
            "reward_mae": self.reward_mae,
            "state_mae": self.state_mae,
            "episodes": per_episode,
        }

    def summary(self) -> str:
        """One line: PSNR/SSIM at the first and last step (baseline in brackets), success
        accuracy, reward and state MAE."""
        k = self.horizon
        p, s = self.curve("psnr"), self.curve("ssim")
        bp, bs = self.curve("baseline_psnr"), self.curve("baseline_ssim")
        parts = [
            f"open loop, {self.num_episodes} episodes, horizon {k}:",
            f"PSNR@1 {p[0]:.2f} dB (repeat {bp[0]:.2f}),",
            f"PSNR@{k} {p[-1]:.2f} (repeat {bp[-1]:.2f});",
            f"SSIM@1 {s[0]:.3f} ({bs[0]:.3f}), SSIM@{k} {s[-1]:.3f} ({bs[-1]:.3f});",
            f"success acc {self.success_accuracy:.3f}",
            f"(episodes {self.success_episode_agreement:.3f});",
            f"reward MAE {self.reward_mae:.4f}",
        ]
        if self.state_mae is not None:
            parts[-1] += ";"
            parts.append(f"state MAE {self.state_mae:.4f}")
        return " ".join(parts)


def _replaying(model: WorldModel) -> SamplerSettings:
    """The model's sampler settings for replaying recorded actions open loop: a stochastic
    dynamics takes its prediction (draws would add up with no policy to correct them)."""
    return dataclasses.replace(model.sampler, draw_state=False)


def _tensor(value: Any, what: str) -> torch.Tensor:
    if value is None:
        raise ShapeError(f"{what} is missing")
    return value if isinstance(value, torch.Tensor) else torch.as_tensor(np.asarray(value))


def _check_episodes(
    model: WorldModel, episodes: Sequence[Mapping[str, Any]], horizon: int, context: int
) -> tuple[list[dict[str, torch.Tensor]], list[str], bool]:
    """Validate every episode and cut it to the ``context + horizon`` frames that are scored.

    Returns the cut episodes (CPU tensors), their names, and whether all carry ``state``.
    """
    cfg = model.config
    steps = context - 1 + horizon  # actions needed; frames needed = steps + 1
    cut, names, with_state = [], [], True
    for i, ep in enumerate(episodes):
        if not isinstance(ep, Mapping):
            raise TypeError(
                f"episode {i}: episodes must be mappings of arrays, got {type(ep).__name__}"
            )
        name = str(ep.get("name", f"episode {i}"))
        where = f"episode {i} ({name})" if "name" in ep else f"episode {i}"
        frames = _tensor(ep.get("frames"), f"{where}: 'frames'")
        if (
            frames.dtype != torch.uint8
            or frames.ndim != 4
            or tuple(frames.shape[1:]) != cfg.frame_shape
        ):
            raise ShapeError(
                f"{where}: frames must be uint8 [T + 1, {', '.join(map(str, cfg.frame_shape))}] "
                f"(the model's frame shape), got {frames.dtype} {tuple(frames.shape)}"
            )
        if frames.shape[0] < steps + 1:
            raise ShapeError(
                f"{where}: has {frames.shape[0]} frames but context_frames={context} and "
                f"horizon={horizon} need {steps + 1}"
            )
        out = {"frames": frames[: steps + 1]}
        for key, shape in (("actions", (cfg.action_dim,)), ("rewards", ()), ("success", ())):
            arr = _tensor(ep.get(key), f"{where}: {key!r}")
            if arr.ndim != 1 + len(shape) or tuple(arr.shape[1:]) != shape or arr.shape[0] < steps:
                want = f"[>= {steps}{''.join(f', {d}' for d in shape)}]"
                raise ShapeError(f"{where}: {key} must be {want}, got {tuple(arr.shape)}")
            out[key] = arr[:steps]
        if not torch.isfinite(out["actions"].float()).all():
            raise ShapeError(f"{where}: actions contain NaN or inf")
        state = ep.get("state")
        if state is None or cfg.state_dim == 0:
            with_state = False
        else:
            state = _tensor(state, f"{where}: 'state'")
            if state.ndim != 2 or state.shape[1] != cfg.state_dim or state.shape[0] < steps + 1:
                raise ShapeError(
                    f"{where}: state must be [>= {steps + 1}, {cfg.state_dim}] (the model's "
                    f"state_dim), got {tuple(state.shape)}"
                )
            out["state"] = state[: steps + 1]
        cut.append(out)
        names.append(name)
    return cut, names, with_state


def _imagine_grouped(
    model: WorldModel,
    batch: list[dict[str, torch.Tensor]],
    frames: torch.Tensor,
    actions: torch.Tensor,
    c: int,
    k_steps: int,
    generator: torch.Generator,
) -> tuple[torch.Tensor, list[dict[str, torch.Tensor]]]:
    """Observe the context clip and imagine ``K`` frames, ``tc`` per latent step (``tc > 1``).

    Returns the frames ``[B, K, H, W, 3]`` and one outcome dict per latent step.
    """
    tc = model.config.temporal_compression
    b = frames.shape[0]
    # observe() reads actions[:, t] as the action that led into frame t (none into frame 0).
    lead = torch.cat([actions.new_zeros(b, 1, actions.shape[-1]), actions[:, : c - 1]], dim=1)
    extra = {}
    if model.config.proprio_conditioning:
        extra["proprio"] = torch.stack([ep["state"] for ep in batch])[:, :c].to(
            frames.device, torch.float32
        )
    state = model.observe(model.init_state(b), frames[:, :c], lead, generator=generator, **extra)
    imagined, outs = [], []
    replaying = _replaying(model)
    for g in range(k_steps // tc):
        chunk = actions[:, c - 1 + tc * g : c - 1 + tc * (g + 1)]
        frame, out, state = model.step(state, chunk, generator=generator, settings=replaying)
        imagined.append(frame)
        outs.append(out)
    return torch.cat(imagined, dim=1), outs


@torch.no_grad()
def open_loop_eval(
    model: WorldModel,
    episodes: Sequence[Mapping[str, Any]],
    *,
    horizon: int,
    context_frames: int = 1,
    seed: int = 0,
    batch_size: int = 16,
    progress: bool = True,
    keep_frames: bool = False,
) -> OpenLoopResult:
    """Observe real context frames, imagine ``horizon`` steps open loop, score every frame.

    Episodes are processed ``batch_size`` at a time as rows of one batched rollout: the first
    real frame is committed without an action (as the first frame of every training clip),
    frames ``1 .. context_frames - 1`` with the actions that led into them, then each imagined
    step takes the episode's next recorded action. The model is put in eval mode for the
    call and its previous mode restored (the trainer calls this between training steps).

    Args:
        model: a world model (with temporal compression ``tc > 1``, ``context_frames`` must
            be ``1 + tc m`` and ``horizon`` a multiple of ``tc``).
        episodes: mappings with ``frames`` uint8 ``[T + 1, H, W, 3]``, ``actions``
            ``[T, A]``, ``rewards`` ``[T]``, ``success`` ``[T]``, optionally ``state``
            ``[T + 1, S]`` and ``name`` (see the module docstring); numpy or torch; every
            episode needs ``T >= context_frames - 1 + horizon``.
        horizon: ``K >= 1`` imagined steps.
        context_frames: ``c >= 1`` real frames observed first.
        seed: seed of the sampling noise (one generator for the whole call).
        batch_size: episodes imagined together.
        progress: show a progress bar (imagined steps).
        keep_frames: keep the imagined frames in the result (``result.frames``).

    Returns:
        An :class:`OpenLoopResult`.

    Raises:
        ShapeError: an episode with missing keys, wrong shapes, or too few steps.
        ValueError: bad arguments, no episodes, or a context/horizon a video codec cannot step.
    """
    for name, value in (
        ("horizon", horizon),
        ("context_frames", context_frames),
        ("batch_size", batch_size),
    ):
        if not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    if len(episodes) == 0:
        raise ValueError("open_loop_eval needs at least one episode, got none")
    tc = model.config.temporal_compression
    if tc > 1 and ((context_frames - 1) % tc or horizon % tc):
        raise ValueError(
            f"a model with temporal compression {tc} observes a context of 1 + {tc}m frames and "
            f"imagines {tc} frames per latent step: got context_frames={context_frames}, "
            f"horizon={horizon}"
        )
    cut, names, with_state = _check_episodes(model, episodes, horizon, context_frames)
    if model.config.proprio_conditioning and not with_state:
        raise ShapeError(
            "this model conditions on the proprioceptive state: the episodes need 'state'"
        )
    c, k_steps, device = context_frames, horizon, model.device
    was_training = model.training
    model.eval()
    start = time.perf_counter()
    generator = torch.Generator(device=device).manual_seed(seed)
    replaying = _replaying(model)
    scores: dict[str, list[torch.Tensor]] = {
        key: []
        for key in (
            "psnr",
            "ssim",
            "baseline_psnr",
            "baseline_ssim",
            "success_pred",
            "success_true",
            "reward_error",
            "state_error",
            "frames",
        )
    }
    batches = [cut[i : i + batch_size] for i in range(0, len(cut), batch_size)]
    bar = tqdm(
        total=len(batches) * k_steps,
        desc="open loop",
        unit="step",
        disable=not progress,
        mininterval=1.0,
    )
    try:
        for batch in batches:
            frames = torch.stack([ep["frames"] for ep in batch]).to(device)  # [B, c+K, H, W, 3]
            actions = torch.stack([ep["actions"] for ep in batch]).to(
                device, torch.float32
            )  # [B, c-1+K, A]
            if tc > 1:
                pred, outs = _imagine_grouped(model, batch, frames, actions, c, k_steps, generator)
                bar.update(k_steps)
            else:
                # Models that carry the proprioceptive state start from the real one.
                first, rest = {}, {}
                if model.config.proprio_conditioning:
                    proprio = torch.stack([ep["state"] for ep in batch]).to(device, torch.float32)
                    first, rest = {"proprio": proprio[:, :1]}, {"proprio": proprio[:, 1:c]}
                state = model.observe(
                    model.init_state(len(batch)), frames[:, :1], generator=generator, **first
                )
                if c > 1:
                    state = model.observe(
                        state, frames[:, 1:c], actions[:, : c - 1], generator=generator, **rest
                    )
                imagined, outs = [], []
                for k in range(k_steps):
                    frame, out, state = model.step(
                        state, actions[:, c - 1 + k], generator=generator, settings=replaying
                    )
                    imagined.append(frame)
                    outs.append(out)
                    bar.update(1)
                pred = torch.stack(imagined, dim=1)  # [B, K, H, W, 3]
            real = frames[:, c:]
            last = frames[:, c - 1 : c].expand_as(real)
            scores["psnr"].append(psnr(pred, real).clamp(max=PSNR_CAP_DB).cpu())
            scores["ssim"].append(ssim(pred, real).cpu())
            scores["baseline_psnr"].append(psnr(last, real).clamp(max=PSNR_CAP_DB).cpu())
            scores["baseline_ssim"].append(ssim(last, real).cpu())
            if keep_frames:
                scores["frames"].append(pred.cpu())
            success = torch.stack([o["success"] for o in outs], dim=1).float().cpu()  # [B, K]
            reward = torch.stack([o["reward"] for o in outs], dim=1).float().cpu()
            scores["success_pred"].append(success > 0.5)
            true_success = torch.stack([ep["success"].bool() for ep in batch])[:, c - 1 :]
            true_reward = torch.stack([ep["rewards"].float() for ep in batch])[:, c - 1 :]
            if tc > 1:
                # One label per latent step: its last frame's, its rewards summed.
                true_success = true_success[:, tc - 1 :: tc]
                true_reward = true_reward.unflatten(1, (-1, tc)).sum(-1)
            scores["success_true"].append(true_success)
            scores["reward_error"].append((reward - true_reward).abs())
            if with_state and "state" in outs[0]:
                pred_state = (
                    torch.stack([o["state"] for o in outs], dim=1).float().cpu()
                )  # [B, K, S]
                true_state = torch.stack([ep["state"].float() for ep in batch])[:, c:]
                if tc > 1:
                    true_state = true_state[:, tc - 1 :: tc]
                scores["state_error"].append((pred_state - true_state).abs().mean(dim=-1))
    finally:
        bar.close()
        model.train(was_training)

    def cat(key: str) -> np.ndarray | None:
        return torch.cat(scores[key]).numpy() if scores[key] else None

    return OpenLoopResult(
        horizon=k_steps,
        context_frames=c,
        episode_names=names,
        psnr=cat("psnr"),
        ssim=cat("ssim"),
        baseline_psnr=cat("baseline_psnr"),
        baseline_ssim=cat("baseline_ssim"),
        success_pred=cat("success_pred"),
        success_true=cat("success_true"),
        reward_error=cat("reward_error"),
        state_error=cat("state_error"),
        seconds=time.perf_counter() - start,
        seed=int(seed),
        batch_size=int(batch_size),
        frames=cat("frames"),
    )
