"""Block-causal window attention over latent frames: the reference and the fast path.

A token of frame ``t`` attends to every token of the frames its window allows and to
nothing in the future. Which frames are allowed is a function of the frame offset
``delta = t - s`` alone (see :func:`frame_visible`), so the same rule drives the parallel
pass (a token-level mask) and the streaming pass (a mask over ring-buffer slots).

``window_attention`` is the entry point: on CUDA it uses PyTorch ``flex_attention`` with a
block mask when available, elsewhere ``scaled_dot_product_attention`` with a dense boolean
mask. ``window_attention_reference`` is the plain-PyTorch ground truth both are tested against.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def frame_visible(delta: torch.Tensor, kind: str, window: int, dilation: int) -> torch.Tensor:
    """Whether a query frame sees a key frame ``delta = t_query - t_key`` frames in the past.

    Args:
        delta: integer offsets, any shape.
        kind: ``"swa"`` (frames ``t-W+1..t``), ``"dswa"`` (``t, t-d, .., t-(W-1)d``) or
            ``"full"`` (every past frame).
        window: W.
        dilation: d.

    Returns:
        A bool tensor of the shape of ``delta``.
    """
    past = delta >= 0
    if kind == "full":
        return past
    if kind == "swa":
        return past & (delta < window)
    if kind == "dswa":
        return past & (delta % dilation == 0) & (delta < window * dilation)
    raise ValueError(f"no window rule for layer kind {kind!r}")


def parallel_mask(
    num_frames: int, tokens_per_frame: int, kind: str, window: int, dilation: int,
    device: torch.device | None = None,
) -> torch.Tensor:
    """Token-level mask ``[T*N, T*N]`` (True = may attend) for a whole clip."""
    frames = torch.arange(num_frames, device=device)
    visible = frame_visible(frames[:, None] - frames[None, :], kind, window, dilation)
    return visible.repeat_interleave(tokens_per_frame, 0).repeat_interleave(tokens_per_frame, 1)


def window_attention_reference(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor
) -> torch.Tensor:
    """Softmax attention under a boolean mask, written out in full.

    Args:
        q: ``[B, H, Lq, D]``.
        k, v: ``[B, H, Lk, D]``.
        mask: ``[Lq, Lk]`` or ``[B, 1, Lq, Lk]``, True where attention is allowed. Every
            query must see at least one key.

    Returns:
        ``[B, H, Lq, D]``.
    """
    scores = (q @ k.transpose(-1, -2)) / math.sqrt(q.shape[-1])
    scores = scores.masked_fill(~mask, float("-inf"))
    return scores.softmax(dim=-1) @ v


def window_attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor
) -> torch.Tensor:
    """Masked attention through PyTorch's fused kernel (same math as the reference).

    Shapes as in :func:`window_attention_reference`.
    """
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask)


_FLEX_CACHE: dict[tuple, object] = {}


def flex_window_attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, tokens_per_frame: int, kind: str,
    window: int, dilation: int,
) -> torch.Tensor:
    """The parallel pass through compiled ``flex_attention`` with a block mask (CUDA).

    Frames are contiguous runs of ``tokens_per_frame`` tokens in ``q``/``k``/``v``
    (``[B, H, T*N, D]``). Compiled once per (length, rule) and cached.
    """
    from torch.nn.attention.flex_attention import create_block_mask, flex_attention

    length = q.shape[-2]
    key = (length, tokens_per_frame, kind, window, dilation, q.device)
    if key not in _FLEX_CACHE:
        def mask_mod(b, h, q_idx, kv_idx):
            delta = q_idx // tokens_per_frame - kv_idx // tokens_per_frame
            return frame_visible(delta, kind, window, dilation)

        block_mask = create_block_mask(mask_mod, None, None, length, length, device=q.device)
        _FLEX_CACHE[key] = (block_mask, torch.compile(flex_attention, dynamic=False))
    block_mask, kernel = _FLEX_CACHE[key]
    return kernel(q, k, v, block_mask=block_mask)


def flex_available(device: torch.device) -> bool:
    """Whether the flex-attention fast path can run on ``device``."""
    if device.type != "cuda":
        return False
    try:
        import torch.nn.attention.flex_attention  # noqa: F401
    except ImportError:
        return False
    return True
