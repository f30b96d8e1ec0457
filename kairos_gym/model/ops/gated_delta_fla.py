"""flash-linear-attention's Triton kernels for the gated delta rule, behind one adapter.

The optional ``gpu`` extra installs ``fla-core`` (the code of the ``flash-linear-attention``
package), version 0.6.x. This module is the only place that touches it:

- :func:`fla_available` says whether the kernels can run on a device (CUDA, package present).
- :func:`gated_delta_rule_fla` calls ``chunk_gated_delta_rule`` or
  ``fused_recurrent_gated_delta_rule`` with every argument by keyword, in the dtypes the
  kernels expect, and returns what :func:`~kairos_gym.model.ops.gated_delta.gated_delta_rule`
  returns.

Kernel choice: the fused recurrent kernel has no backward pass (fla raises
``NotImplementedError`` there), so it only runs when no gradient is needed and the input is
short (:data:`RECURRENT_MAX_LEN` tokens, e.g. stepping one frame); everything else, training
included, goes to the chunked kernel.

Dtypes: the chunked kernel wants half-precision ``q, k, v, beta`` (float32 inputs become
bfloat16; float16 and bfloat16 pass through), while ``g``, the initial state and the returned
state stay float32 because the decay is accumulated as a cumulative sum over the sequence.
The recurrent kernel computes in float32 whatever it is given, so it gets the caller's
dtypes. The output comes back in ``v``'s dtype and the final state in float32.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import NamedTuple

import torch

# Longest input (tokens) sent to the fused recurrent kernel when no gradient is needed: it
# walks the tokens one by one, which beats the chunked kernel's fixed cost only when short.
RECURRENT_MAX_LEN = 64

# The chunked kernel's q, k, v and beta dtypes: these pass through, anything else becomes
# bfloat16.
_HALF_DTYPES = (torch.bfloat16, torch.float16)


class FlaKernels(NamedTuple):
    """The two flash-linear-attention entry points this adapter calls."""

    chunk: Callable[..., tuple[torch.Tensor, torch.Tensor]]
    fused_recurrent: Callable[..., tuple[torch.Tensor, torch.Tensor]]


@functools.lru_cache(maxsize=1)
def _import_fla() -> FlaKernels | str:
    """The kernels, or why they cannot be imported (imported once per process)."""
    try:
        from fla.ops.gated_delta_rule import (
            chunk_gated_delta_rule,
            fused_recurrent_gated_delta_rule,
        )
    # Not only ImportError: Triton can fail in other ways at import on a machine without a
    # usable driver, and that must leave the pure-PyTorch path working.
    except Exception as exc:  # noqa: BLE001
        return f"{type(exc).__name__}: {exc}"
    return FlaKernels(chunk_gated_delta_rule, fused_recurrent_gated_delta_rule)


def _fla_kernels() -> FlaKernels | None:
    """The kernels, or None when flash-linear-attention cannot be imported."""
    kernels = _import_fla()
    return kernels if isinstance(kernels, FlaKernels) else None


def fla_available(device: torch.device) -> bool:
    """Whether flash-linear-attention's Triton kernels can run on ``device`` (CUDA only)."""
    return device.type == "cuda" and _fla_kernels() is not None


def needs_grad(*tensors: torch.Tensor | None) -> bool:
    """Whether autograd will need a backward pass through an op on ``tensors``."""
    return torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in tensors)


def gated_delta_rule_fla(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, g: torch.Tensor, beta: torch.Tensor,
    scale: float | None = None, initial_state: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Gated delta rule through flash-linear-attention's kernels (differentiable).

    Args:
        q, k: ``[B, L, H, Dk]``, L2-normalised, on a CUDA device.
        v: ``[B, L, H, Dv]``.
        g: ``[B, L, H]`` log decay (<= 0).
        beta: ``[B, L, H]`` write strength in (0, 1).
        scale: query scale, default ``Dk ** -0.5``.
        initial_state: ``[B, H, Dk, Dv]`` or None (zeros).

    Returns:
        ``(o [B, L, H, Dv] in v's dtype, final_state [B, H, Dk, Dv] float32)``.

    Raises:
        RuntimeError: flash-linear-attention cannot be imported.

    Example::

        q = F.normalize(torch.randn(1, 16, 2, 64, device="cuda"), dim=-1)
        k = F.normalize(torch.randn(1, 16, 2, 64, device="cuda"), dim=-1)
        v = torch.randn(1, 16, 2, 128, device="cuda")
        g, beta = -torch.rand(1, 16, 2, device="cuda"), torch.rand(1, 16, 2, device="cuda")
        o, state = gated_delta_rule_fla(q, k, v, g, beta)   # [1, 16, 2, 128], [1, 2, 64, 128]
    """
    kernels = _fla_kernels()
    if kernels is None:
        raise RuntimeError(
            "the gated delta 'fla' backend needs flash-linear-attention "
            f"(pip install -e '.[gpu]'); importing it failed with {_import_fla()}"
        )
    scale = q.shape[-1] ** -0.5 if scale is None else float(scale)
    h0 = None if initial_state is None else initial_state.float()
    if q.shape[1] <= RECURRENT_MAX_LEN and not needs_grad(q, k, v, g, beta, initial_state):
        o, state = kernels.fused_recurrent(
            q=q, k=k, v=v, g=g.float(), beta=beta, scale=scale,
            initial_state=h0, output_final_state=True,
        )
    else:
        half = v.dtype if v.dtype in _HALF_DTYPES else torch.bfloat16
        o, state = kernels.chunk(
            q=q.to(half), k=k.to(half), v=v.to(half), g=g.float(), beta=beta.to(half),
            scale=scale, initial_state=h0, output_final_state=True,
        )
    return o.to(v.dtype), state.float()
