"""Fine-tuning a denoiser from existing weights: everything, only the new pathway, or LoRA.

A run that starts from released (or earlier) weights chooses what trains with
``[finetune] mode`` (:class:`~kairos_gym.train.config.FinetuneConfig`):

- ``full``: every parameter;
- ``frozen``: only the parameters the starting weights lack (the *new pathway*: the action
  embedding and outcome head over a released DiT, the proprioceptive pathway over an
  environment checkpoint without it); the starting weights never change;
- ``lora``: the new pathway plus a low-rank update ``(alpha / r) * B @ A`` beside each target
  linear of every block (:class:`LoRALinear`); the starting weights never change.

Checkpoints: the resumable training state keeps the adapters as separate tensors
(``blocks.3.self_attn.q.lora_A`` / ``lora_B``) so an interrupted run continues exactly; the
environment checkpoint gets them merged into the weights (:func:`merge_lora`), so it has the
plain model's names and shapes and the imagined env loads it like any other.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch
import torch.nn.functional as F
from torch import nn

from kairos_gym.model.config import WorldModelConfig
from kairos_gym.model.dit import KairosDiT
from kairos_gym.model.layers import Block


class LoRALinear(nn.Module):
    """A linear layer with a frozen weight and a trainable low-rank update beside it.

    ``y = x W^T + b + (alpha / r) (x A^T) B^T`` with ``A`` ``[r, in]`` (Kaiming-uniform, as
    in the LoRA paper's reference code) and ``B`` ``[out, r]`` (zeros), so a fresh adapter
    leaves the layer's output exactly as it was. ``weight`` and ``bias`` are the wrapped
    layer's own parameters under their own names, so the starting weights keep their
    checkpoint names; only ``lora_A`` and ``lora_B`` are new.

    Args:
        base: the layer to adapt (its parameters are frozen here).
        rank: ``r``, the adapter's rank (>= 1).
        alpha: the scale numerator (> 0).
    """

    def __init__(self, base: nn.Linear, rank: int, alpha: float) -> None:
        super().__init__()
        if rank < 1 or not alpha > 0:
            raise ValueError(f"LoRA needs rank >= 1 and alpha > 0, got rank={rank}, alpha={alpha}")
        self.in_features, self.out_features = base.in_features, base.out_features
        self.rank, self.alpha = rank, float(alpha)
        self.scale = self.alpha / rank
        self.weight = base.weight
        self.bias = base.bias
        self.weight.requires_grad_(False)
        if self.bias is not None:
            self.bias.requires_grad_(False)
        like = {"device": base.weight.device, "dtype": base.weight.dtype}
        self.lora_A = nn.Parameter(torch.empty(rank, self.in_features, **like))
        self.lora_B = nn.Parameter(torch.zeros(self.out_features, rank, **like))
        nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` ``[..., in]`` -> ``[..., out]``."""
        update = F.linear(F.linear(x, self.lora_A), self.lora_B)
        return F.linear(x, self.weight, self.bias) + self.scale * update

    def merged(self) -> nn.Linear:
        """A plain ``nn.Linear`` computing the same function (``W + (alpha / r) B A``)."""
        layer = nn.Linear(
            self.in_features,
            self.out_features,
            bias=self.bias is not None,
            device=self.weight.device,
            dtype=self.weight.dtype,
        )
        with torch.no_grad():
            delta = self.scale * (self.lora_B.float() @ self.lora_A.float())
            layer.weight.copy_((self.weight.float() + delta).to(self.weight.dtype))
            if self.bias is not None:
                layer.bias.copy_(self.bias)
        return layer

    def extra_repr(self) -> str:
        return (
            f"in={self.in_features}, out={self.out_features}, rank={self.rank}, alpha={self.alpha}"
        )


def block_linear_names(cfg: WorldModelConfig) -> list[str]:
    """The names (inside a block) of every ``nn.Linear`` of the blocks ``cfg`` builds.

    Built on the ``meta`` device: no memory, whatever the model's size.
    """
    names: set[str] = set()
    with torch.device("meta"):
        for kind in sorted({cfg.layer_kind(i) for i in range(cfg.num_layers)}):
            block = Block(cfg, kind)
            names.update(n for n, m in block.named_modules() if isinstance(m, nn.Linear))
    return sorted(names)


def check_lora_targets(cfg: WorldModelConfig, targets: Iterable[str]) -> None:
    """Refuse target names that are no linear layer of any block of ``cfg``.

    Raises:
        ValueError: naming the unknown targets and the linears the blocks have.
    """
    available = block_linear_names(cfg)
    unknown = [t for t in targets if t not in available]
    if unknown:
        raise ValueError(
            f"finetune.lora_targets {unknown} are not linear layers of this model's blocks; "
            f"choose from {available}"
        )


def add_lora(dit: KairosDiT, targets: Iterable[str], rank: int, alpha: float) -> list[str]:
    """Wrap the ``targets`` linears of every block of ``dit`` in :class:`LoRALinear`, in place.

    A target a block does not have (``self_attn.q`` in a Gated DeltaNet block) is skipped
    in that block.

    Returns:
        The adapted modules' full names (``blocks.0.self_attn.q``, ...).
    """
    targets = set(targets)
    adapted = []
    for i, block in enumerate(dit.blocks):
        for name, module in list(block.named_modules()):
            if name in targets and isinstance(module, nn.Linear):
                parent_name, _, child = name.rpartition(".")
                parent = block.get_submodule(parent_name) if parent_name else block
                setattr(parent, child, LoRALinear(module, rank, alpha))
                adapted.append(f"blocks.{i}.{name}")
    return adapted


def has_lora(module: nn.Module) -> bool:
    """Whether ``module`` holds any :class:`LoRALinear`."""
    return any(isinstance(m, LoRALinear) for m in module.modules())


def merge_lora(module: nn.Module) -> int:
    """Replace every :class:`LoRALinear` in ``module`` by its merged ``nn.Linear``, in place.

    Afterwards ``module`` has exactly the parameter names and shapes of the model without
    adapters (what an environment checkpoint stores). Returns how many were merged.
    """
    found = [(n, m) for n, m in module.named_modules() if isinstance(m, LoRALinear)]
    for name, lora in found:
        parent_name, _, child = name.rpartition(".")
        parent = module.get_submodule(parent_name) if parent_name else module
        setattr(parent, child, lora.merged())
    return len(found)


def apply_finetune(
    dit: KairosDiT,
    mode: str,
    new: Iterable[str],
    lora_targets: Iterable[str] = (),
    lora_rank: int = 16,
    lora_alpha: float = 16.0,
) -> list[str]:
    """Choose what trains in ``dit``: everything, the new pathway, or it and LoRA adapters.

    Args:
        dit: the denoiser, already holding its starting weights.
        mode: ``full``, ``frozen`` or ``lora`` (see the module docstring).
        new: names of ``dit``'s parameters the starting weights did not provide.
        lora_targets, lora_rank, lora_alpha: the adapters of ``lora`` mode.

    Returns:
        The names of the parameters that train, sorted.

    Raises:
        ValueError: an unknown mode, or ``frozen`` with nothing new to train.
    """
    if mode not in ("full", "frozen", "lora"):
        raise ValueError(f"finetune mode must be 'full', 'frozen' or 'lora', got {mode!r}")
    new = set(new)
    if mode != "full":  # full: what trains stays as the caller set it
        params = dict(dit.named_parameters())
        if mode == "frozen" and not new & set(params):
            raise ValueError(
                "finetune.mode = 'frozen' trains only the parameters the starting weights lack, "
                "and they provide every one; use mode = 'lora' or 'full'"
            )
        for name, p in params.items():
            p.requires_grad_(name in new)
        if mode == "lora":
            add_lora(dit, lora_targets, lora_rank, lora_alpha)
    return sorted(n for n, p in dit.named_parameters() if p.requires_grad)
