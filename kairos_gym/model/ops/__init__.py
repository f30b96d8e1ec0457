"""Sequence-mixing ops of the world model, each a plain-PyTorch reference beside its fast path.

- :mod:`.gated_delta`: the gated delta rule (Gated DeltaNet memory): the token-by-token
  reference, the exact chunked PyTorch form, and the ``gated_delta_rule`` dispatcher.
- :mod:`.gated_delta_fla`: the adapter to flash-linear-attention's Triton kernels (optional
  ``gpu`` extra); the only module that imports ``fla``.
- :mod:`.window_attention`: block-causal window attention over latent frames.
"""

from kairos_gym.model.ops.gated_delta import (
    fla_available,
    gated_delta_rule,
    gated_delta_rule_chunked,
    gated_delta_rule_recurrent,
)

__all__ = [
    "fla_available",
    "gated_delta_rule",
    "gated_delta_rule_chunked",
    "gated_delta_rule_recurrent",
]
