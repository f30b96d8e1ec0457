"""Seeded Gaussian noise for batches whose rows may each own a generator.

Shared by the frame sampler and the stochastic proprioceptive dynamics, so that both draw a
row's noise the same way: from that row's generator, exactly as a batch of one would.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

Generators = torch.Generator | Sequence[torch.Generator] | None
"""One generator for a whole batch, or one per row (so a row's noise never depends on the
batch it sits in: a vectorised env row reproduces a single env with the same seed)."""


def randn(shape: tuple[int, ...], generator: Generators, device: torch.device | str | None = None,
          dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Standard normal noise ``[B, ...]``; with a sequence of ``B`` generators, row ``i`` is
    drawn from ``generator[i]`` exactly as a batch of one would draw it."""
    if generator is None or isinstance(generator, torch.Generator):
        return torch.randn(shape, generator=generator, device=device, dtype=dtype)
    if len(generator) != shape[0]:
        raise ValueError(f"{len(generator)} generators for a batch of {shape[0]} rows")
    return torch.cat([torch.randn((1, *shape[1:]), generator=g, device=device, dtype=dtype) for g in generator])
