"""Training losses, as modules so that ``DistributedDataParallel`` can wrap them.

- :class:`CodecObjective`: reconstruction of single frames.
- :class:`WorldModelObjective`: flow matching with a noise level per frame (diffusion
  forcing), context-noise augmentation, action dropout, and the reward / success /
  termination / state heads, and the proprioceptive dynamics of models that carry it.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from kairos_gym.model.codec import ConvCodec
from kairos_gym.model.dit import KairosDiT
from kairos_gym.model.proprio import ProprioDynamics
from kairos_gym.train.config import WorldModelTrainConfig


def proprio_loss(dynamics: ProprioDynamics, states: torch.Tensor, actions: torch.Tensor,
                 input_noise: float = 0.0, generator: torch.Generator | None = None,
                 at_reset: torch.Tensor | None = None,
                 reset_weight: float = 1.0,
                 step_scale: torch.Tensor | None = None,
                 reset_weight_steps: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """The dynamics loss on normalised states ``[B, T, S]`` and actions ``[B, T, A]``
    (``actions[:, t]`` leads into state ``t``): one-step predictions from true states plus an
    open-loop unroll from the first two. Returns ``(loss, the unroll [B, T, S])``.

    ``input_noise``: the one-step predictions start from the true states plus Gaussian noise
    of this standard deviation (normalised units) and are scored against the clean next
    states, as learned simulators are trained (Sanchez-Gonzalez et al., 2020): the dynamics
    learns to pull a state that is off back to where the rest of the state says it must be,
    instead of carrying the error on, so long unrolls stay stable.

    ``at_reset`` ``[B]`` (bool): which windows start at an episode's first state. A window's
    first state has no state before it, so its one-step prediction sees a zero previous
    difference; that is what the imagined env gives the dynamics after a reset (the arm at
    rest), and right only for those windows. With ``at_reset`` the other windows' first
    one-step prediction (an arm in motion presented as at rest) is left out of the loss, and
    windows at a reset are unrolled from their one first state, as the imagined env unrolls.
    Without it every window is scored as if it started at a reset. With the dynamics'
    ``action_history`` the same holds for state 2 (its history reaches the state before the
    window). ``reset_weight`` weighs the windows at a reset against the others (one window in
    an episode's sixty-odd starts at its reset, where every imagined episode starts).
    ``reset_weight_steps``: weigh only that many of a reset window's first predicted states
    (the steps every imagined episode starts with), the rest of it as any window's; 0 weighs
    the whole window. A long window weighted whole takes its share of the loss from the late
    steps the other windows cover.

    ``step_scale`` ``[S]``: one-step errors are measured in these units per entry (the typical
    size of a step, see ``[proprio] step_normalised``) instead of the state's.
    """
    inputs = states
    if input_noise > 0:
        inputs = states + input_noise * torch.randn(
            states.shape, generator=generator, device=states.device, dtype=states.dtype)
    one_step_error = dynamics.teacher_forced(inputs, actions) - states[:, 1:]
    if step_scale is not None:
        one_step_error = one_step_error / step_scale.to(one_step_error)
    one_step = one_step_error.square().mean(-1)
    if at_reset is None:
        unrolled = dynamics.unroll(states, actions, start=2)
        return one_step.mean() + (unrolled[:, 2:] - states[:, 2:]).square().mean(), unrolled
    at_reset = at_reset.to(device=states.device, dtype=torch.bool)
    # The leading predicted states whose inputs reach before the window (taken at rest): state
    # 1, and with an action history state 2 too (the state before the window's first).
    warmup = 2 if dynamics.action_history else 1
    unrolled = torch.zeros_like(states)
    for rows, start in ((~at_reset, warmup + 1), (at_reset, 1)):
        if rows.any():
            unrolled[rows] = dynamics.unroll(states[rows], actions[rows], start=start)
    # Per predicted state 1..T-1: the window's weight, and the warm-up states (predicted from
    # a history at rest, in both terms) only where the window starts at a reset.
    weighted = torch.where(at_reset, float(reset_weight), 1.0)[:, None]
    keep = torch.ones_like(one_step)
    head = reset_weight_steps if reset_weight_steps > 0 else keep.shape[1]
    keep[:, :head] = weighted
    keep[:, :warmup] *= at_reset[:, None]
    unroll_error = (unrolled[:, 1:] - states[:, 1:]).square().mean(-1)
    loss = ((one_step + unroll_error) * keep).sum() / keep.sum()
    return loss, unrolled


def step_scale(states: torch.Tensor) -> torch.Tensor:
    """Per-entry typical step ``[S]`` of normalised windows ``[N, T, S]``: the standard deviation
    of one-step changes, floored at a tenth of the entries' median (entries that barely move,
    such as a resting object's, would otherwise weigh without bound). The units of
    :func:`proprio_loss`'s ``step_scale``."""
    spread = (states[:, 1:] - states[:, :-1]).reshape(-1, states.shape[-1]).std(dim=0)
    return spread.clamp_min(0.1 * float(spread.median()))


def state_outcome_loss(dynamics: ProprioDynamics, states: torch.Tensor,
                       batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, float]]:
    """Loss of the dynamics' outcome head on true normalised states ``[B, T, S]`` against the
    labels of the same frames (``rewards``, ``success``, ``done`` ``[B, T]``): the head learns
    what a state means, and reads imagined states only at inference."""
    heads = dynamics.outcomes(states)
    success = F.binary_cross_entropy_with_logits(heads["success"], batch["success"].float())
    done = F.binary_cross_entropy_with_logits(heads["done"], batch["done"].float())
    reward = F.mse_loss(heads["reward"], batch["rewards"].float())
    hits = ((heads["success"] > 0) == batch["success"].bool()).float().mean()
    metrics = {"success_bce": float(success.detach()), "reward_mse": float(reward.detach()),
               "success_acc": float(hits)}
    return success + done + reward, metrics


def noise_nll(log_scale: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
    """Mean Gaussian negative log-likelihood (less its constant) of ``residual`` ``[N, S]``, the
    true next states less the dynamics' predictions, under the per-entry log standard
    deviations ``log_scale`` ``[N, S]`` of its noise head."""
    return (log_scale + 0.5 * (residual * torch.exp(-log_scale)).square()).mean()


class ProprioObjective(nn.Module):
    """The proprioceptive dynamics alone, on windows of normalised states (``[proprio]`` stage)."""

    def __init__(self, dynamics: ProprioDynamics, input_noise: float = 0.0,
                 reset_weight: float = 1.0, step_scale: torch.Tensor | None = None,
                 reset_weight_steps: int = 0) -> None:
        super().__init__()
        self.dynamics = dynamics
        self.input_noise = float(input_noise)
        self.reset_weight = float(reset_weight)
        self.reset_weight_steps = int(reset_weight_steps)
        self.step_scale = step_scale

    def forward(self, batch: dict[str, torch.Tensor],
                generator: torch.Generator | None = None) -> tuple[torch.Tensor, dict[str, float]]:
        """Loss of ``batch``: ``state`` ``[B, T, S]`` (normalised) and ``actions`` ``[B, T, A]``,
        optionally ``at_reset`` ``[B]`` (see :func:`proprio_loss`), and for a dynamics with an
        outcome head the labels ``rewards``/``success``/``done`` ``[B, T]``."""
        loss, unrolled = proprio_loss(self.dynamics, batch["state"], batch["actions"],
                                      self.input_noise if self.training else 0.0, generator,
                                      batch.get("at_reset"), self.reset_weight, self.step_scale,
                                      self.reset_weight_steps)
        drift = (unrolled[:, 2:] - batch["state"][:, 2:]).abs().mean()
        metrics = {"unroll_mae": float(drift.detach())}
        if self.dynamics.outcome_head is not None:
            head_loss, head_metrics = state_outcome_loss(self.dynamics, batch["state"], batch)
            loss = loss + head_loss
            metrics.update(head_metrics)
        return loss, {"loss": float(loss.detach()), **metrics}


class CodecObjective(nn.Module):
    """Mean squared reconstruction error of uint8 frames ``[N, H, W, 3]`` (in [-1, 1] units)."""

    def __init__(self, codec: ConvCodec) -> None:
        super().__init__()
        self.codec = codec

    def forward(self, frames: torch.Tensor, generator: torch.Generator | None = None) -> tuple[torch.Tensor, dict[str, float]]:
        loss = self.codec.reconstruction_loss(frames)
        return loss, {"loss": float(loss.detach())}


class WorldModelObjective(nn.Module):
    """The denoiser's training loss on a batch of latent clips.

    Every frame gets its own noise level (diffusion forcing). A frame is either a *target*,
    with ``sigma`` drawn from the sampler's shifted schedule (where generation queries the
    model), or, with probability ``context_fraction``, *context* with ``sigma`` in
    ``[0, context_noise_max]``: the clean-ish memory the model reads at inference, noised so
    it learns to tolerate its own imperfect frames. The first frame of a clip is always
    context (nothing leads into it, as after ``reset``). The velocity loss covers target
    frames; the heads learn on frames at ``sigma <= head_sigma_max``, the regime of frames
    committed to memory, where they are read.
    """

    def __init__(self, dit: KairosDiT, cfg: WorldModelTrainConfig, shard: tuple[int, int] = (0, 1)) -> None:
        super().__init__()
        self.dit = dit
        self.cfg = cfg
        self.shift = dit.cfg.timestep_shift
        self.shard = shard

    def _draw(self, sampler: Callable[..., torch.Tensor], shape: tuple[int, ...],
              generator: torch.Generator | None, device: torch.device) -> torch.Tensor:
        # Draw for the global batch and keep this process's rows (global row j lives on rank
        # j % world, as the trainer deals batches), so N processes see exactly the noise one
        # process would: data parallelism does not change the run.
        rank, world = self.shard
        full = sampler((shape[0] * world, *shape[1:]), generator=generator, device=device)
        return full[rank::world]

    def sample_sigmas(self, b: int, t: int, generator: torch.Generator | None,
                      device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """Noise levels ``[B, T]`` and the context mask ``[B, T]`` of one batch."""
        cfg = self.cfg
        u = self._draw(torch.rand, (b, t), generator, device)
        target = self.shift * u / (1.0 + (self.shift - 1.0) * u)
        context = self._draw(torch.rand, (b, t), generator, device) < cfg.context_fraction
        context[:, 0] = True
        context_sigma = self._draw(torch.rand, (b, t), generator, device) * cfg.context_noise_max
        return torch.where(context, context_sigma, target), context

    def forward(self, batch: dict[str, torch.Tensor],
                generator: torch.Generator | None = None) -> tuple[torch.Tensor, dict[str, float]]:
        """Loss of one batch.

        Args:
            batch: ``latents`` ``[B, T, C, h, w]`` (clean, normalised), ``actions``
                ``[B, T, A]``, ``action_mask`` ``[B, T]``, ``rewards``/``success``/``done``
                ``[B, T]`` and ``state`` ``[B, T, S]`` (labels of each frame).
            generator: source of noise levels, noise and action dropout (seeded per step,
                the same on every process).
        """
        cfg, dit = self.cfg, self.dit
        x0 = batch["latents"].float()
        b, t = x0.shape[:2]
        device = x0.device
        sigmas, context = self.sample_sigmas(b, t, generator, device)
        eps = self._draw(torch.randn, tuple(x0.shape), generator, device)
        s = sigmas[:, :, None, None, None]
        noisy = (1.0 - s) * x0 + s * eps
        keep = self._draw(torch.rand, (b, t), generator, device) >= cfg.action_dropout
        action_mask = batch["action_mask"] & keep
        proprio, proprio_loss = None, None
        if dit.cfg.proprio_conditioning:
            proprio, proprio_loss = self._proprio(batch, generator, device)
        v, features = dit.forward_parallel(noisy, sigmas, batch["actions"].float(), action_mask,
                                           proprio=proprio)

        per_frame = (v.float() - (eps - x0)).square().mean(dim=(2, 3, 4))  # [B, T]
        targets = (~context).float()
        velocity_loss = (per_frame * targets).sum() / targets.sum().clamp_min(1.0)

        heads = dit.outcomes(features)
        w = (sigmas <= cfg.head_sigma_max).float()
        n = w.sum().clamp_min(1.0)
        reward_loss = (w * (heads["reward"] - batch["rewards"].float()).square()).sum() / n
        success_loss = (w * F.binary_cross_entropy_with_logits(
            heads["success"], batch["success"].float(), reduction="none")).sum() / n
        done_loss = (w * F.binary_cross_entropy_with_logits(
            heads["done"], batch["done"].float(), reduction="none")).sum() / n
        loss = velocity_loss + cfg.outcome_weight * (reward_loss + success_loss + done_loss)
        metrics = {"velocity": float(velocity_loss.detach()), "reward": float(reward_loss.detach()),
                   "success": float(success_loss.detach()), "done": float(done_loss.detach())}
        if "state" in heads:
            target_state = dit.normalize_state(batch["state"])
            state_loss = (w * (heads["state"] - target_state).square().mean(-1)).sum() / n
            loss = loss + cfg.state_weight * state_loss
            metrics["state"] = float(state_loss.detach())
        if proprio_loss is not None:
            loss = loss + cfg.proprio_weight * proprio_loss
            metrics["proprio"] = float(proprio_loss.detach())
        metrics["loss"] = float(loss.detach())
        return loss, metrics

    def _proprio(self, batch: dict[str, torch.Tensor], generator: torch.Generator | None,
                 device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """The states the frames are conditioned on ``[B, T, S]`` and the dynamics loss.

        The dynamics model learns one-step predictions from true states and an open-loop
        unroll from the clip's first two states. A fraction of clips is conditioned on that
        unroll (detached: the frames do not train the dynamics), the rest on the true states
        with a little noise, so the frames follow the states imagination will give them.
        """
        cfg, dit = self.cfg, self.dit
        true = dit.normalize_state(batch["state"])
        actions = batch["actions"].float()
        dynamics = dit.proprio_dynamics
        if any(p.requires_grad for p in dynamics.parameters()):
            loss, unrolled = proprio_loss(dynamics, true, actions)
            if dynamics.outcome_head is not None:
                loss = loss + state_outcome_loss(dynamics, true, batch)[0]
        else:  # fitted in its own stage and frozen: only its unrolls are used here
            with torch.no_grad():
                unrolled = dynamics.unroll(true, actions, start=2)
            loss = torch.zeros((), device=device)
        b = true.shape[0]
        own = self._draw(torch.rand, (b,), generator, device) < cfg.proprio_self_fraction
        noisy = true + cfg.proprio_noise * self._draw(torch.randn, tuple(true.shape), generator, device)
        return torch.where(own[:, None, None], unrolled.detach(), noisy), loss
