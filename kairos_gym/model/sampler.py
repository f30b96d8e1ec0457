"""Flow-matching sampling of one latent frame against the streaming memory.

Along ``x_sigma = (1 - sigma) x0 + sigma eps`` the model predicts ``v = eps - x0``; an
Euler step from ``sigma`` to ``sigma'`` is ``x + (sigma' - sigma) v``. The schedule runs
from 1 to 0 in ``steps`` steps, shifted toward the noisy end by
``shift * s / (1 + (shift - 1) s)``. Each denoising pass reads the memory; one final pass at
``context_sigma`` commits the frame.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from kairos_gym.model.dit import KairosDiT
from kairos_gym.model.noise import Generators, randn
from kairos_gym.model.state import WorldState


def flow_sigmas(steps: int, shift: float = 1.0, device: torch.device | str | None = None) -> torch.Tensor:
    """Noise levels ``[steps + 1]`` from 1 down to 0 with the timestep shift applied."""
    if not 1 <= steps <= 50:
        raise ValueError(f"steps must be in 1..50, got {steps}")
    s = torch.linspace(1.0, 0.0, steps + 1, device=device)
    return shift * s / (1.0 + (shift - 1.0) * s)


@dataclass(frozen=True)
class SamplerSettings:
    """How a frame is imagined: Euler steps, schedule shift, guidance, commit noise, and
    whether a stochastic dynamics draws the state it is imagined from."""

    steps: int = 4
    shift: float = 3.0
    guidance_scale: float = 1.0
    context_sigma: float = 0.05
    draw_state: bool = True
    """A stochastic proprioceptive dynamics draws the carried state (``False``: takes its
    prediction). Drawing is for closed loop, where a policy answers what it sees; replaying
    a fixed action sequence open loop, the draws add up with nothing to correct them (see
    ``ImaginedCore``'s ``draw_state``)."""


def add_noise(latent: torch.Tensor, sigma: float, generator: Generators = None) -> torch.Tensor:
    """``(1 - sigma) latent + sigma eps``: a latent ``[B, ...]`` moved to noise level ``sigma``."""
    if sigma == 0:
        return latent
    eps = randn(tuple(latent.shape), generator, latent.device, latent.dtype)
    return (1.0 - sigma) * latent + sigma * eps


@torch.no_grad()
def sample_frame(
    dit: KairosDiT, state: WorldState, action: torch.Tensor | None, settings: SamplerSettings,
    generator: Generators = None,
) -> tuple[torch.Tensor, torch.Tensor, WorldState]:
    """Imagine the next latent frame of every row and commit it.

    Args:
        dit: the denoiser.
        state: memory before the frame (``B`` rows).
        action: ``[B, A']`` actions leading into the frame, or None.
        settings: sampler settings.
        generator: source of the initial and commit noise (for reproducible rollouts): one
            generator, or one per row.

    Returns:
        ``(latent [B, C, h, w], features [B, dim], new state)``.
    """
    b = state.batch_size
    shape = (b, *dit.cfg.latent_shape)
    x = randn(shape, generator, state.device)
    sigmas = flow_sigmas(settings.steps, settings.shift, device=state.device)
    for sigma, sigma_next in zip(sigmas[:-1].tolist(), sigmas[1:].tolist()):
        v, _ = dit.velocity_step(state, x, sigma, action, commit=False)
        if settings.guidance_scale != 1.0 and action is not None:
            v_free, _ = dit.velocity_step(state, x, sigma, None, commit=False)
            v = v_free + settings.guidance_scale * (v - v_free)
        x = x + (sigma_next - sigma) * v.float()
    committed = add_noise(x, settings.context_sigma, generator)
    _, features, state = dit.forward_step(state, committed, settings.context_sigma, action, commit=True)
    return x, features, state
