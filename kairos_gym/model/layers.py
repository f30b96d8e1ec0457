"""Building blocks of the Kairos denoiser, each usable over a whole clip or one frame.

Module and parameter names follow the released Kairos/Wan DiT (``self_attn.q``,
``gated_delta.q_proj``, ``modulation``, ...) so released weights map onto them by name.
Every temporal mixer has two entry points with one math: ``parallel`` over ``T`` frames
(training, the invariant's reference) and ``step`` over one frame against cached memory.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from kairos_gym.model.config import WorldModelConfig
from kairos_gym.model.ops.gated_delta import gated_delta_rule
from kairos_gym.model.ops.window_attention import (
    flex_available,
    flex_window_attention,
    frame_visible,
    window_attention,
)


class RMSNorm(nn.Module):
    """Root-mean-square normalisation with a learned gain over the last dimension."""

    def __init__(self, dim: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x.float() * torch.rsqrt(x.float().pow(2).mean(-1, keepdim=True) + self.eps)
        return y.to(x.dtype) * self.weight


def sinusoidal_embedding(values: torch.Tensor, dim: int) -> torch.Tensor:
    """Sin/cos features ``[..., dim]`` of scalar ``values`` ``[...]`` (flow time x 1000)."""
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, device=values.device) / half)
    angles = values.float()[..., None] * freqs
    return torch.cat([angles.cos(), angles.sin()], dim=-1)


class Rotary3D:
    """3-D rotary position angles split over (time, row, column) like the released DiT.

    A head of width ``D`` has ``D/2`` rotation pairs: ``D/2 - 2*(D/6)`` for time and
    ``D/6`` each for rows and columns (integer division).
    """

    def __init__(self, head_dim: int, grid: tuple[int, int], theta: float) -> None:
        pairs = head_dim // 2
        self.split = (pairs - 2 * (pairs // 3), pairs // 3, pairs // 3)
        self.grid = grid
        self.theta = theta

    def _freqs(self, n: int, device: torch.device) -> torch.Tensor:
        return 1.0 / self.theta ** (torch.arange(n, device=device, dtype=torch.float64) * 2 / (2 * n))

    def angles(self, frame_index: torch.Tensor) -> torch.Tensor:
        """Angles ``[*frame_index.shape, N, D/2]`` for every token of the given frames."""
        device = frame_index.device
        gh, gw = self.grid
        ft, fh, fw = (self._freqs(n, device) for n in self.split)
        rows = torch.arange(gh, device=device, dtype=torch.float64)
        cols = torch.arange(gw, device=device, dtype=torch.float64)
        spatial = torch.cat([
            (rows[:, None, None] * fh).expand(gh, gw, -1),
            (cols[None, :, None] * fw).expand(gh, gw, -1),
        ], dim=-1).reshape(gh * gw, -1)
        temporal = frame_index.double()[..., None] * ft
        n = gh * gw
        temporal = temporal[..., None, :].expand(*frame_index.shape, n, -1)
        return torch.cat([temporal, spatial.expand(*frame_index.shape, n, -1)], dim=-1).float()


def apply_rotary(x: torch.Tensor, angles: torch.Tensor) -> torch.Tensor:
    """Rotate adjacent pairs of ``x`` ``[B, L, H, D]`` by ``angles`` ``[B or 1, L, D/2]``."""
    cos, sin = angles.cos()[:, :, None], angles.sin()[:, :, None]
    x1, x2 = x.float()[..., 0::2], x.float()[..., 1::2]
    out = torch.stack([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1)
    return out.flatten(-2).to(x.dtype)


class _AttentionProjections(nn.Module):
    """The released attention layout: q/k/v/o projections and RMSNorm on q and k."""

    def __init__(self, cfg: WorldModelConfig) -> None:
        super().__init__()
        self.num_heads, self.head_dim = cfg.num_heads, cfg.head_dim
        self.q = nn.Linear(cfg.dim, cfg.dim)
        self.k = nn.Linear(cfg.dim, cfg.dim)
        self.v = nn.Linear(cfg.dim, cfg.dim)
        self.o = nn.Linear(cfg.dim, cfg.dim)
        self.norm_q = RMSNorm(cfg.dim, cfg.eps)
        self.norm_k = RMSNorm(cfg.dim, cfg.eps)


class WindowSelfAttention(_AttentionProjections):
    """Block-causal attention over latent frames under a window rule (``swa``/``dswa``/``full``)."""

    def __init__(self, cfg: WorldModelConfig, kind: str) -> None:
        super().__init__(cfg)
        self.kind, self.window, self.dilation = kind, cfg.window, cfg.dilation
        self.use_flex = True

    def _qkv(self, x: torch.Tensor, angles: torch.Tensor):
        b, length, _ = x.shape
        shape = (b, length, self.num_heads, self.head_dim)
        q = apply_rotary(self.norm_q(self.q(x)).view(shape), angles)
        k = apply_rotary(self.norm_k(self.k(x)).view(shape), angles)
        return q, k, self.v(x).view(shape)

    def parallel(self, x: torch.Tensor, angles: torch.Tensor, mask: torch.Tensor, tokens_per_frame: int) -> torch.Tensor:
        """Whole clip: ``x`` ``[B, T*N, dim]``, ``angles`` ``[1, T*N, D/2]``, ``mask`` ``[T*N, T*N]``."""
        q, k, v = (t.transpose(1, 2) for t in self._qkv(x, angles))
        if self.use_flex and flex_available(x.device):
            out = flex_window_attention(q, k, v, tokens_per_frame, self.kind, self.window, self.dilation)
        else:
            out = window_attention(q, k, v, mask)
        return self.o(out.transpose(1, 2).flatten(2))

    def step(
        self, x: torch.Tensor, angles: torch.Tensor, t: torch.Tensor, memory: dict[str, torch.Tensor],
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """One frame per row against cached keys/values.

        Args:
            x: ``[B, N, dim]`` tokens of the frame being denoised or committed.
            angles: ``[B, N, D/2]`` rotary angles at each row's frame index ``t``.
            t: ``[B]`` frame index of this frame per row.
            memory: ``k``/``v`` ``[B, S, N, H, Dh]`` and ``frame`` ``[B, S]`` (-1 = empty).

        Returns:
            The output ``[B, N, dim]`` and this frame's ``k``/``v`` ``[B, N, H, Dh]`` (for a commit).
        """
        b, n, _ = x.shape
        q, k, v = self._qkv(x, angles)
        cached_frames = memory["frame"]
        visible = frame_visible(t[:, None] - cached_frames, self.kind, self.window, self.dilation)
        visible = visible & (cached_frames >= 0)
        keys = torch.cat([memory["k"].flatten(1, 2), k], dim=1)
        values = torch.cat([memory["v"].flatten(1, 2), v], dim=1)
        mask = torch.cat([visible.repeat_interleave(n, 1), visible.new_ones(b, n)], dim=1)
        out = window_attention(q.transpose(1, 2), keys.transpose(1, 2), values.transpose(1, 2),
                               mask[:, None, None, :])
        return self.o(out.transpose(1, 2).flatten(2)), {"k": k, "v": v}


class ShortConv(nn.Conv1d):
    """Depthwise causal convolution over tokens, with the last ``K-1`` inputs as carried state."""

    def __init__(self, channels: int, kernel_size: int) -> None:
        super().__init__(channels, channels, kernel_size, groups=channels, bias=False)

    def forward(self, x: torch.Tensor, cache: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """``x`` ``[B, L, C]``, ``cache`` ``[B, K-1, C]`` -> ``(silu(conv) [B, L, C], new cache)``."""
        size = self.kernel_size[0]
        pad = size - 1
        if cache is None:
            cache = x.new_zeros(x.shape[0], pad, x.shape[2])
        full = torch.cat([cache.to(x.dtype), x], dim=1)
        length = x.shape[1]
        # A handful of shifted multiply-adds: much faster than a depthwise conv1d on CPU.
        weight = self.weight[:, 0]  # [C, K]
        y = full[:, 0:length] * weight[:, 0]
        for j in range(1, size):
            y = y + full[:, j:j + length] * weight[:, j]
        return F.silu(y), full[:, full.shape[1] - pad:]


class GatedRMSNorm(RMSNorm):
    """RMSNorm per head followed by a SiLU output gate (Gated DeltaNet's ``o_norm``)."""

    def forward(self, x: torch.Tensor, gate: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        return super().forward(x) * F.silu(gate)


class GatedDeltaNet(nn.Module):
    """Gated DeltaNet over the raster token order: the persistent memory of the model.

    q/k/v pass through short causal convolutions and SiLU; q and k are L2-normalised per
    head; the decay gate is ``g = -exp(A_log) * softplus(a_proj(x) + dt_bias)`` and the
    write strength ``beta = sigmoid(b_proj(x))``; the output is RMS-normalised per head and
    gated by ``silu(g_proj(x))``.
    """

    def __init__(self, cfg: WorldModelConfig) -> None:
        super().__init__()
        h, dk = cfg.gdn_num_heads, cfg.gdn_head_dim
        dv = dk * cfg.gdn_expand_v
        self.num_heads, self.key_dim, self.value_dim = h, dk, dv
        self.q_proj = nn.Linear(cfg.dim, h * dk, bias=False)
        self.k_proj = nn.Linear(cfg.dim, h * dk, bias=False)
        self.v_proj = nn.Linear(cfg.dim, h * dv, bias=False)
        self.a_proj = nn.Linear(cfg.dim, h, bias=False)
        self.b_proj = nn.Linear(cfg.dim, h, bias=False)
        self.g_proj = nn.Linear(cfg.dim, h * dv, bias=False)
        self.o_proj = nn.Linear(h * dv, cfg.dim, bias=False)
        self.q_conv1d = ShortConv(h * dk, cfg.gdn_conv_size)
        self.k_conv1d = ShortConv(h * dk, cfg.gdn_conv_size)
        self.v_conv1d = ShortConv(h * dv, cfg.gdn_conv_size)
        self.o_norm = GatedRMSNorm(dv, cfg.eps)
        # Decay rates spread over heads; dt_bias is the inverse softplus of a time step in [1e-3, 0.1].
        self.A_log = nn.Parameter(torch.log(torch.linspace(1.0, 16.0, h)))
        dt = torch.exp(torch.linspace(math.log(1e-3), math.log(0.1), h))
        self.dt_bias = nn.Parameter(dt + torch.log(-torch.expm1(-dt)))
        self.backend = "auto"

    def forward(
        self, x: torch.Tensor, memory: dict[str, torch.Tensor] | None = None,
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Run over ``x`` ``[B, L, dim]`` from ``memory`` (None: empty).

        Returns the output ``[B, L, dim]`` and the memory after the last token:
        ``state`` ``[B, H, Dk, Dv]`` and ``conv_q/conv_k/conv_v`` ``[B, K-1, C]``.
        """
        memory = memory or {}
        b, length, _ = x.shape
        h = self.num_heads
        q, conv_q = self.q_conv1d(self.q_proj(x), memory.get("conv_q"))
        k, conv_k = self.k_conv1d(self.k_proj(x), memory.get("conv_k"))
        v, conv_v = self.v_conv1d(self.v_proj(x), memory.get("conv_v"))
        q = F.normalize(q.view(b, length, h, -1).float(), dim=-1)
        k = F.normalize(k.view(b, length, h, -1).float(), dim=-1)
        v = v.view(b, length, h, -1)
        g = -self.A_log.float().exp() * F.softplus(self.a_proj(x).float() + self.dt_bias)
        beta = self.b_proj(x).float().sigmoid()
        o, state = gated_delta_rule(q, k, v.float(), g, beta, initial_state=memory.get("state"),
                                    backend=self.backend)
        gate = self.g_proj(x).view(b, length, h, -1)
        o = self.o_norm(o.to(x.dtype), gate).flatten(2)
        return self.o_proj(o), {"state": state, "conv_q": conv_q, "conv_k": conv_k, "conv_v": conv_v}


class CrossAttention(_AttentionProjections):
    """Attention from frame tokens to instruction tokens (no positions, no mask)."""

    def forward(self, x: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        """``x`` ``[B, L, dim]``, ``context`` ``[B, Lc, dim]`` -> ``[B, L, dim]``."""
        b = x.shape[0]
        q = self.norm_q(self.q(x)).view(b, -1, self.num_heads, self.head_dim).transpose(1, 2)
        k = self.norm_k(self.k(context)).view(b, -1, self.num_heads, self.head_dim).transpose(1, 2)
        v = self.v(context).view(b, -1, self.num_heads, self.head_dim).transpose(1, 2)
        out = F.scaled_dot_product_attention(q, k, v)
        return self.o(out.transpose(1, 2).flatten(2))


class Block(nn.Module):
    """One DiT block: modulated temporal mixer, optional cross-attention, modulated FFN.

    Conditioning is per frame: ``e`` ``[B, T, 6, dim]`` gives each frame its own shift,
    scale and gate for the mixer and the FFN (adaLN-zero: gates start at zero).
    """

    def __init__(self, cfg: WorldModelConfig, kind: str) -> None:
        super().__init__()
        self.kind = kind
        self.norm1 = nn.LayerNorm(cfg.dim, eps=cfg.eps, elementwise_affine=False)
        if kind == "gated":
            self.gated_delta = GatedDeltaNet(cfg)
        else:
            self.self_attn = WindowSelfAttention(cfg, kind)
        if cfg.text_dim is not None:
            self.norm3 = nn.LayerNorm(cfg.dim, eps=cfg.eps)
            self.cross_attn = CrossAttention(cfg)
        self.norm2 = nn.LayerNorm(cfg.dim, eps=cfg.eps, elementwise_affine=False)
        self.ffn = nn.Sequential(nn.Linear(cfg.dim, cfg.ffn_dim), nn.GELU(approximate="tanh"),
                                 nn.Linear(cfg.ffn_dim, cfg.dim))
        self.modulation = nn.Parameter(torch.zeros(1, 6, cfg.dim))

    def forward(
        self, x: torch.Tensor, e: torch.Tensor, mixer: Callable[[torch.Tensor], torch.Tensor],
        context: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """``x`` ``[B, T, N, dim]``, ``e`` ``[B, T, 6, dim]``; ``mixer`` maps ``[B, T, N, dim]`` to itself."""
        shift1, scale1, gate1, shift2, scale2, gate2 = (
            m.unsqueeze(2) for m in (self.modulation.unsqueeze(0) + e).unbind(2))
        x = x + gate1 * mixer(self.norm1(x) * (1 + scale1) + shift1)
        if context is not None:
            b, t, n, d = x.shape
            x = x + self.cross_attn(self.norm3(x).view(b, t * n, d), context).view(b, t, n, d)
        return x + gate2 * self.ffn(self.norm2(x) * (1 + scale2) + shift2)


class Head(nn.Module):
    """Final modulated projection from tokens to patch velocities."""

    def __init__(self, cfg: WorldModelConfig) -> None:
        super().__init__()
        out = cfg.patch_size * cfg.patch_size * cfg.latent_channels
        self.norm = nn.LayerNorm(cfg.dim, eps=cfg.eps, elementwise_affine=False)
        self.head = nn.Linear(cfg.dim, out)
        self.modulation = nn.Parameter(torch.zeros(1, 2, cfg.dim))

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        """``x`` ``[B, T, N, dim]``, ``c`` ``[B, T, dim]`` -> ``[B, T, N, p*p*C]``."""
        shift, scale = (m.unsqueeze(2) for m in (self.modulation.unsqueeze(0) + c.unsqueeze(2)).unbind(2))
        return self.head(self.norm(x) * (1 + scale) + shift)
