"""``WorldState``: the streaming memory of a batch of imagined worlds.

A flat mapping from names to tensors whose first dimension is the batch row, so cloning,
selecting rows, forking (repeating rows) and device moves are one loop each:

- ``t`` ``[B]``: latent frames committed so far per row (the next frame's index).
- ``blocks.{i}.k`` / ``.v`` ``[B, S, N, H, Dh]`` and ``blocks.{i}.frame`` ``[B, S]``: ring
  buffers of window-attention blocks, ``S = (W-1)`` for SWA and ``(W-1)*d`` for DSWA; slot
  ``t % S`` holds frame ``t``, ``frame = -1`` marks an empty slot. Full-attention blocks
  (the growing baseline) append instead.
- ``blocks.{i}.state`` ``[B, H, Dk, Dv]`` and ``blocks.{i}.conv_{q,k,v}`` ``[B, K-1, C]``:
  Gated DeltaNet recurrent and short-convolution states.
- ``context`` ``[B, L, text_dim]`` (optional): instruction tokens.

Every tensor is bounded except the full-attention baseline's, so memory is flat in ``t``.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence

import torch


class WorldState:
    """Immutable-by-convention container of per-row memory tensors (see module docstring).

    Model calls return new states; a state passed in is never modified, so keeping a
    reference is a snapshot.
    """

    def __init__(self, tensors: Mapping[str, torch.Tensor]) -> None:
        sizes = {name: t.shape[0] for name, t in tensors.items()}
        if len(set(sizes.values())) > 1:
            raise ValueError(f"all state tensors need the same batch size, got {sizes}")
        if "t" not in tensors:
            raise ValueError("a WorldState needs the frame counter 't'")
        self._tensors = dict(tensors)

    # --- mapping access ---
    def __getitem__(self, name: str) -> torch.Tensor:
        return self._tensors[name]

    def __contains__(self, name: object) -> bool:
        return name in self._tensors

    def __iter__(self) -> Iterator[str]:
        return iter(self._tensors)

    def get(self, name: str, default: torch.Tensor | None = None) -> torch.Tensor | None:
        """The tensor ``name`` or ``default``."""
        return self._tensors.get(name, default)

    def items(self):
        """``(name, tensor)`` pairs."""
        return self._tensors.items()

    def updated(self, **changes: torch.Tensor) -> WorldState:
        """A new state with some tensors replaced (keyword names may not contain dots)."""
        return WorldState({**self._tensors, **changes})

    def replace(self, changes: Mapping[str, torch.Tensor]) -> WorldState:
        """A new state with the tensors in ``changes`` replaced or added."""
        return WorldState({**self._tensors, **changes})

    # --- batch operations ---
    @property
    def batch_size(self) -> int:
        """Number of rows."""
        return int(self._tensors["t"].shape[0])

    @property
    def device(self) -> torch.device:
        """Device of the tensors."""
        return self._tensors["t"].device

    @property
    def frame_index(self) -> torch.Tensor:
        """``[B]`` index of the next latent frame per row."""
        return self._tensors["t"]

    def clone(self) -> WorldState:
        """A deep copy."""
        return WorldState({k: v.clone() for k, v in self._tensors.items()})

    def select(self, rows: Sequence[int] | torch.Tensor) -> WorldState:
        """The rows ``rows`` (indices or a bool mask), in that order."""
        index = _as_index(rows, self.batch_size, self.device)
        return WorldState({k: v.index_select(0, index) for k, v in self._tensors.items()})

    def repeat(self, n: int) -> WorldState:
        """Fork: every row repeated ``n`` times consecutively (``[B] -> [B*n]``)."""
        if n < 1:
            raise ValueError(f"repeat needs n >= 1, got {n}")
        return WorldState({k: v.repeat_interleave(n, dim=0) for k, v in self._tensors.items()})

    def to(self, device: torch.device | str) -> WorldState:
        """The state on ``device``."""
        return WorldState({k: v.to(device) for k, v in self._tensors.items()})

    def put_rows(self, rows: Sequence[int] | torch.Tensor, other: WorldState) -> WorldState:
        """A new state whose ``rows`` are replaced by the rows of ``other`` (in order).

        Raises:
            ValueError: if the two states do not hold the same tensors.
        """
        if set(other._tensors) != set(self._tensors):
            raise ValueError("states with different memory layouts cannot be combined")
        index = _as_index(rows, self.batch_size, self.device)
        if other.batch_size != index.numel():
            raise ValueError(f"put_rows got {index.numel()} rows but a state of {other.batch_size}")
        out = {}
        for k, v in self._tensors.items():
            new = v.clone()
            new[index] = other._tensors[k].to(v.dtype)
            out[k] = new
        return WorldState(out)

    @staticmethod
    def concat(states: Sequence[WorldState]) -> WorldState:
        """Stack the rows of several states with the same layout."""
        keys = set(states[0]._tensors)
        if any(set(s._tensors) != keys for s in states):
            raise ValueError("states with different memory layouts cannot be concatenated")
        return WorldState({k: torch.cat([s._tensors[k] for s in states]) for k in states[0]._tensors})

    def nbytes(self) -> int:
        """Bytes held by the tensors."""
        return sum(v.numel() * v.element_size() for v in self._tensors.values())

    def __repr__(self) -> str:
        return f"WorldState(batch_size={self.batch_size}, t={self.frame_index.tolist()}, tensors={len(self._tensors)})"


def _as_index(rows: Sequence[int] | torch.Tensor, batch: int, device: torch.device) -> torch.Tensor:
    index = torch.as_tensor(rows, device=device)
    if index.dtype == torch.bool:
        if index.shape != (batch,):
            raise ValueError(f"a row mask needs shape ({batch},), got {tuple(index.shape)}")
        index = index.nonzero().flatten()
    index = index.long().flatten()
    if index.numel() and (index.min() < -batch or index.max() >= batch):
        raise IndexError(f"row index out of range for a batch of {batch}: {index.tolist()}")
    return index
