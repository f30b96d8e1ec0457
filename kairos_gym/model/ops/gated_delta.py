"""The gated delta rule: recurrent reference, chunked PyTorch form, and the dispatcher.

Per head, with a state ``S`` of shape ``[Dk, Dv]``, decay ``alpha_t = exp(g_t)`` and write
strength ``beta_t``::

    S_t = alpha_t (I - beta_t k_t k_t^T) S_{t-1} + beta_t k_t v_t^T
    o_t = S_t^T (scale * q_t)

which is one step of online gradient descent on ``||S^T k - v||^2`` with forgetting. The
layout ``[Dk, Dv]`` and the tensor shapes match flash-linear-attention, so its kernels are
drop-in.

- :func:`gated_delta_rule_recurrent` loops over tokens: the readable ground truth.
- :func:`gated_delta_rule_chunked` is exact too but processes chunks of tokens with matrix
  products (the WY/UT form: a unit-lower-triangular solve per chunk); it is the CPU path.
- :func:`gated_delta_rule` picks flash-linear-attention's Triton kernels on CUDA when the
  package is installed (the adapter lives in :mod:`.gated_delta_fla`), else the chunked
  PyTorch form.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from kairos_gym.model.ops.gated_delta_fla import fla_available, gated_delta_rule_fla

__all__ = [
    "fla_available",
    "gated_delta_rule",
    "gated_delta_rule_chunked",
    "gated_delta_rule_recurrent",
]


def gated_delta_rule_recurrent(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, g: torch.Tensor, beta: torch.Tensor,
    scale: float | None = None, initial_state: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Token-by-token gated delta rule (reference).

    Args:
        q, k: ``[B, L, H, Dk]`` (callers L2-normalise them).
        v: ``[B, L, H, Dv]``.
        g: ``[B, L, H]`` log decay (<= 0).
        beta: ``[B, L, H]`` write strength in (0, 1).
        scale: query scale, default ``Dk ** -0.5``.
        initial_state: ``[B, H, Dk, Dv]`` or None (zeros).

    Returns:
        ``(o [B, L, H, Dv], final_state [B, H, Dk, Dv])`` in float32.
    """
    b, length, h, dk = q.shape
    dv = v.shape[-1]
    scale = dk ** -0.5 if scale is None else scale
    q, k, v, g, beta = (x.float() for x in (q, k, v, g, beta))
    state = q.new_zeros(b, h, dk, dv) if initial_state is None else initial_state.float().clone()
    outputs = []
    for t in range(length):
        state = state * g[:, t].exp()[..., None, None]
        k_t = k[:, t]
        # Delta rule: write the error between the target value and what the state recalls.
        recalled = torch.einsum("bhkv,bhk->bhv", state, k_t)
        update = beta[:, t, :, None] * (v[:, t] - recalled)
        state = state + k_t[..., :, None] * update[..., None, :]
        outputs.append(torch.einsum("bhkv,bhk->bhv", state, q[:, t] * scale))
    o = torch.stack(outputs, dim=1) if outputs else v.new_zeros(b, 0, h, dv)
    return o, state


def gated_delta_rule_chunked(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, g: torch.Tensor, beta: torch.Tensor,
    scale: float | None = None, initial_state: torch.Tensor | None = None, chunk_size: int = 64,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The same recurrence, one chunk of tokens at a time (exact, differentiable).

    Within a chunk with cumulative log decay ``c_i``, the delta-rule updates
    ``u_i = beta_i (v_i - S_{i-1}'^T k_i)`` solve the unit-lower-triangular system
    ``(I + A) U = beta * (V - exp(c) * K S_0)`` with
    ``A_ij = beta_i exp(c_i - c_j) k_i.k_j`` for ``j < i``; outputs and the next state then
    follow from matrix products. Shapes and returns as :func:`gated_delta_rule_recurrent`.
    """
    b, length, h, dk = q.shape
    dv = v.shape[-1]
    scale = dk ** -0.5 if scale is None else scale
    # [B, H, L, D] layout, float32 for the solve.
    q, k, v = (x.float().transpose(1, 2) for x in (q, k, v))
    g, beta = (x.float().transpose(1, 2) for x in (g, beta))
    pad = (-length) % chunk_size
    if pad:
        # Padding tokens carry k = v = beta = g = 0: they leave the state untouched.
        q, k, v = (F.pad(x, (0, 0, 0, pad)) for x in (q, k, v))
        g, beta = (F.pad(x, (0, pad)) for x in (g, beta))
    n = (length + pad) // chunk_size
    q, k, v = (x.reshape(b, h, n, chunk_size, -1) for x in (q, k, v))
    g, beta = (x.reshape(b, h, n, chunk_size) for x in (g, beta))
    q = q * scale

    cum = g.cumsum(-1)
    tril = torch.ones(chunk_size, chunk_size, dtype=torch.bool, device=q.device).tril()
    strict = torch.ones_like(tril).tril(-1)
    # exp(c_i - c_j) for j <= i; masked before exp so the upper triangle cannot overflow.
    diff = (cum[..., :, None] - cum[..., None, :]).masked_fill(~tril, float("-inf")).exp()
    kk = k @ k.transpose(-1, -2)
    a = (beta[..., :, None] * diff * kk).masked_fill(~strict, 0.0)
    eye = torch.eye(chunk_size, device=q.device, dtype=q.dtype)
    qk = (q @ k.transpose(-1, -2)) * diff

    state = q.new_zeros(b, h, dk, dv) if initial_state is None else initial_state.float()
    outputs = []
    for i in range(n):
        decay = cum[:, :, i].exp()[..., None]
        rhs = beta[:, :, i, :, None] * (v[:, :, i] - decay * (k[:, :, i] @ state))
        u = torch.linalg.solve_triangular(eye + a[:, :, i], rhs, upper=False, unitriangular=True)
        outputs.append(decay * (q[:, :, i] @ state) + qk[:, :, i] @ u)
        to_end = (cum[:, :, i, -1:] - cum[:, :, i]).exp()[..., None]
        state = cum[:, :, i, -1].exp()[..., None, None] * state + k[:, :, i].transpose(-1, -2) @ (to_end * u)
    o = torch.stack(outputs, dim=2).reshape(b, h, n * chunk_size, dv)[:, :, :length]
    return o.transpose(1, 2), state


def gated_delta_rule(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, g: torch.Tensor, beta: torch.Tensor,
    scale: float | None = None, initial_state: torch.Tensor | None = None, backend: str = "auto",
) -> tuple[torch.Tensor, torch.Tensor]:
    """Gated delta rule through the best available implementation.

    Args:
        q, k, v, g, beta, scale, initial_state: as :func:`gated_delta_rule_recurrent`.
        backend: ``"auto"`` (flash-linear-attention on CUDA when installed, else chunked
            PyTorch), ``"fla"`` (see :func:`.gated_delta_fla.gated_delta_rule_fla`),
            ``"chunked"`` or ``"recurrent"``.

    Returns:
        ``(o [B, L, H, Dv] in v's dtype, final_state [B, H, Dk, Dv] float32)``.

    Raises:
        ValueError: unknown ``backend``.
        RuntimeError: ``backend="fla"`` without flash-linear-attention or off CUDA.
    """
    if backend == "auto":
        backend = "fla" if fla_available(q.device) else "chunked"
    if backend == "recurrent":
        o, state = gated_delta_rule_recurrent(q, k, v, g, beta, scale, initial_state)
    elif backend == "chunked":
        # Short inputs (one frame while stepping) use a chunk just large enough for them.
        chunk = min(64, 1 << max(q.shape[1] - 1, 0).bit_length())
        o, state = gated_delta_rule_chunked(q, k, v, g, beta, scale, initial_state, chunk_size=chunk)
    elif backend == "fla":
        if q.device.type != "cuda":
            raise RuntimeError(
                f"the gated delta 'fla' backend runs on CUDA tensors, got device {q.device}"
            )
        o, state = gated_delta_rule_fla(q, k, v, g, beta, scale, initial_state)
    else:
        raise ValueError(
            f"unknown gated delta backend {backend!r}; expected 'auto', 'fla', 'chunked' or "
            "'recurrent'"
        )
    return o.to(v.dtype), state
