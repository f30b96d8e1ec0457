"""The causal, action-conditioned Kairos denoiser in two forms with one math.

- :meth:`KairosDiT.velocity` runs a whole clip in parallel with a noise level per frame
  (diffusion forcing): training, and the reference the streaming form must reproduce.
- :meth:`KairosDiT.velocity_step` runs one latent frame per row against a
  :class:`~kairos_gym.model.state.WorldState`; ``commit=False`` only reads the memory
  (denoising passes), ``commit=True`` also writes the frame into it.

Committing frames one at a time reproduces the parallel pass over the same latents, noise
levels and actions (the invariant, tested to 1e-4 in float32).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from kairos_gym.errors import ShapeError
from kairos_gym.model.config import WorldModelConfig
from kairos_gym.model.layers import Block, Head, Rotary3D, sinusoidal_embedding
from kairos_gym.model.ops.window_attention import parallel_mask
from kairos_gym.model.proprio import ProprioDynamics
from kairos_gym.model.state import WorldState

OUTCOMES = ("reward", "success", "done")
"""What the outcome head predicts from a committed frame: a reward, and success / termination logits."""


class KairosDiT(nn.Module):
    """Kairos-architecture diffusion transformer over latent frames, causal in time.

    Parameter names follow the released DiT (``patch_embedding``, ``time_embedding``,
    ``blocks.{i}.self_attn.q``, ``blocks.{i}.gated_delta.q_proj``, ``head.head``, ...);
    ``action_embedding``, ``no_action_embedding`` and ``outcome_head`` are this project's
    additions for action conditioning and reward/success prediction; with
    ``proprio_conditioning``, ``proprio_dynamics`` and ``proprio_embedding`` carry the
    proprioceptive state (see :mod:`kairos_gym.model.proprio`).
    """

    def __init__(self, cfg: WorldModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        c, p, d = cfg.latent_channels, cfg.patch_size, cfg.dim
        self.patch_embedding = nn.Conv3d(c, d, kernel_size=(1, p, p), stride=(1, p, p))
        self.time_embedding = nn.Sequential(nn.Linear(cfg.freq_dim, d), nn.SiLU(), nn.Linear(d, d))
        self.time_projection = nn.Sequential(nn.SiLU(), nn.Linear(d, 6 * d))
        self.action_embedding = nn.Sequential(nn.Linear(cfg.action_dim_per_latent, d), nn.SiLU(), nn.Linear(d, d))
        self.no_action_embedding = nn.Parameter(torch.zeros(d))
        if cfg.proprio_conditioning:
            self.proprio_dynamics = ProprioDynamics(
                cfg.state_dim, cfg.action_dim_per_latent, cfg.proprio_hidden,
                outcomes=cfg.state_outcomes, object_frame=cfg.proprio_object_frame,
                position_targets=cfg.proprio_position_targets, arm_entries=cfg.proprio_arm_entries,
                action_history=cfg.proprio_action_history, stochastic=cfg.proprio_stochastic,
                noise_entries=cfg.proprio_noise_entries,
            )
            # Object-frame features and position targets are in environment units.
            self.proprio_dynamics.to_environment_units = self.denormalize_state
            self.proprio_dynamics.to_normalised_units = self.normalize_state
            self.proprio_embedding = nn.Sequential(nn.Linear(cfg.state_dim, d), nn.SiLU(), nn.Linear(d, d))
        if cfg.text_dim is not None:
            self.text_embedding = nn.Sequential(nn.Linear(cfg.text_dim, d), nn.GELU(approximate="tanh"),
                                                nn.Linear(d, d))
        self.blocks = nn.ModuleList([Block(cfg, cfg.layer_kind(i)) for i in range(cfg.num_layers)])
        self.head = Head(cfg)
        self.outcome_head = nn.Sequential(nn.LayerNorm(d, eps=cfg.eps), nn.Linear(d, len(OUTCOMES) + cfg.state_dim))
        # The state head predicts normalised proprioception; these map it back (set by training).
        self.register_buffer("state_mean", torch.zeros(cfg.state_dim))
        self.register_buffer("state_std", torch.ones(cfg.state_dim))
        self.rope = Rotary3D(cfg.head_dim, cfg.grid, cfg.rope_theta)
        self._masks: dict[tuple[int, str], torch.Tensor] = {}
        self.gradient_checkpointing = False
        """Recompute each block's activations in the backward pass of :meth:`forward_parallel`
        (memory for compute: large models in training); no effect without gradients."""
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Xavier linears; zero adaLN gates and output head so every block starts as identity."""
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.xavier_uniform_(module.weight)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
        nn.init.normal_(self.no_action_embedding, std=0.02)
        nn.init.zeros_(self.time_projection[1].weight)
        nn.init.zeros_(self.time_projection[1].bias)
        nn.init.zeros_(self.head.head.weight)
        nn.init.zeros_(self.head.head.bias)
        if self.cfg.proprio_conditioning:
            # Both start silent: a model fine-tuned with this pathway added begins as it was.
            lasts = [self.proprio_dynamics.net[-1], self.proprio_embedding[-1]]
            if self.proprio_dynamics.arm_net is not None:
                lasts.append(self.proprio_dynamics.arm_net[-1])
            for last in lasts:
                nn.init.zeros_(last.weight)
                nn.init.zeros_(last.bias)

    # --- shared pieces ---
    def _patchify(self, latents: torch.Tensor) -> torch.Tensor:
        """``[B, T, C, h, w]`` -> tokens ``[B, T, N, dim]``."""
        # The Conv3d with a (1, p, p) kernel and stride is a linear map of each patch; applied as a
        # matmul because the CPU Conv3d path is slow. The weight keeps the released Conv3d layout.
        b, t, c, h, w = latents.shape
        p = self.cfg.patch_size
        patches = latents.view(b, t, c, h // p, p, w // p, p).permute(0, 1, 3, 5, 2, 4, 6)
        weight = self.patch_embedding.weight.flatten(1)  # [dim, C*p*p], ordered (c, p_h, p_w)
        x = patches.reshape(b, t, (h // p) * (w // p), c * p * p) @ weight.T
        return x + self.patch_embedding.bias

    def _unpatchify(self, tokens: torch.Tensor) -> torch.Tensor:
        """``[B, T, N, p*p*C]`` -> ``[B, T, C, h, w]``."""
        b, t = tokens.shape[:2]
        (gh, gw), p, c = self.cfg.grid, self.cfg.patch_size, self.cfg.latent_channels
        x = tokens.view(b, t, gh, gw, p, p, c).permute(0, 1, 6, 2, 4, 3, 5)
        return x.reshape(b, t, c, gh * p, gw * p)

    def _condition(self, sigmas: torch.Tensor, actions: torch.Tensor | None,
                   has_action: torch.Tensor, proprio: torch.Tensor | None = None) -> torch.Tensor:
        """Per-frame conditioning ``c`` ``[B, T, dim]`` from noise levels, actions and (with
        ``proprio_conditioning``) the normalised proprioceptive state ``[B, T, S]`` of each frame."""
        c = self.time_embedding(sinusoidal_embedding(sigmas * 1000.0, self.cfg.freq_dim).to(self.dtype))
        if self.cfg.proprio_conditioning:
            if proprio is None:
                raise ShapeError("this model conditions on the proprioceptive state: give proprio [B, T, S]")
            c = c + self.proprio_embedding(proprio.to(c.dtype))
        no_action = self.no_action_embedding.to(c.dtype).expand_as(c)
        if actions is None:
            return c + no_action
        a = self.action_embedding(actions.to(c.dtype))
        return c + torch.where(has_action[..., None], a, no_action)

    def _context(self, context: torch.Tensor | None) -> torch.Tensor | None:
        if context is None:
            return None
        if self.cfg.text_dim is None:
            raise ValueError("this model has no cross-attention (text_dim=None) but a context was given")
        return self.text_embedding(context.to(self.dtype))

    @property
    def dtype(self) -> torch.dtype:
        """Parameter dtype."""
        return self.patch_embedding.weight.dtype

    def outcomes(self, features: torch.Tensor) -> dict[str, torch.Tensor]:
        """Heads of a frame from its features ``[..., dim]``.

        Returns reward ``[...]``, success/termination logits ``[...]`` and, when
        ``state_dim > 0``, ``state`` ``[..., state_dim]`` in normalised units (see
        :meth:`denormalize_state`).
        """
        out = self.outcome_head(features).float()
        heads = {name: out[..., i] for i, name in enumerate(OUTCOMES)}
        if self.cfg.state_dim:
            heads["state"] = out[..., len(OUTCOMES):]
        return heads

    def normalize_state(self, state: torch.Tensor) -> torch.Tensor:
        """Proprioception ``[..., state_dim]`` -> the state head's normalised units."""
        return (state.float() - self.state_mean) / self.state_std

    def denormalize_state(self, state: torch.Tensor) -> torch.Tensor:
        """The state head's output ``[..., state_dim]`` -> proprioception in environment units."""
        return state.float() * self.state_std + self.state_mean

    # --- parallel form ---
    def velocity(
        self, latents: torch.Tensor, sigmas: torch.Tensor, actions: torch.Tensor | None = None,
        action_mask: torch.Tensor | None = None, context: torch.Tensor | None = None,
        proprio: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Velocity ``eps - x0`` for every frame of a clip ``[B, T, C, h, w]``.

        Args:
            latents: noisy latents ``[B, T, C, h, w]``.
            sigmas: per-frame noise levels ``[B, T]`` in [0, 1].
            actions: ``[B, T, A']`` where ``actions[:, t]`` led into frame ``t`` (``A' =
                action_dim * temporal_compression``); None for no actions at all.
            action_mask: ``[B, T]`` bool, which frames have an action; default all but frame 0.
            context: instruction tokens ``[B, L, text_dim]`` for cross-attention.
            proprio: normalised proprioceptive states ``[B, T, S]`` (``proprio_conditioning`` only).
        """
        return self.forward_parallel(latents, sigmas, actions, action_mask, context, proprio)[0]

    def forward_parallel(
        self, latents: torch.Tensor, sigmas: torch.Tensor, actions: torch.Tensor | None = None,
        action_mask: torch.Tensor | None = None, context: torch.Tensor | None = None,
        proprio: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """:meth:`velocity` plus per-frame features ``[B, T, dim]`` for the outcome head.

        ``proprio``: the normalised proprioceptive state of every frame ``[B, T, S]``, required
        by (and only by) models with ``proprio_conditioning``.
        """
        b, t = self._check_clip(latents, sigmas, actions, action_mask)
        if proprio is not None:
            _check_actions(proprio, (b, t, self.cfg.state_dim), "proprio")
        if action_mask is None:
            action_mask = torch.ones(b, t, dtype=torch.bool, device=latents.device)
            action_mask[:, 0] = False
        x = self._patchify(latents.to(self.dtype))
        c = self._condition(sigmas, actions, action_mask, proprio)
        e = self.time_projection(c).unflatten(-1, (6, self.cfg.dim))
        n = self.cfg.tokens_per_frame
        angles = self.rope.angles(torch.arange(t, device=x.device)).reshape(1, t * n, -1)
        ctx = self._context(context)
        for block in self.blocks:
            mixer = self._parallel_mixer(block, angles, t)
            if self.gradient_checkpointing and torch.is_grad_enabled():
                x = checkpoint(block, x, e, mixer, ctx, use_reentrant=False)
            else:
                x = block(x, e, mixer, ctx)
        return self._unpatchify(self.head(x, c)), x.mean(2)

    def _parallel_mixer(self, block: Block, angles: torch.Tensor, t: int) -> Callable:
        n = self.cfg.tokens_per_frame
        if block.kind == "gated":
            return lambda h: block.gated_delta(h.flatten(1, 2))[0].view_as(h)
        key = (t, block.kind)
        if key not in self._masks or self._masks[key].device != angles.device:
            self._masks[key] = parallel_mask(t, n, block.kind, self.cfg.window, self.cfg.dilation, angles.device)
        mask = self._masks[key]
        return lambda h: block.self_attn.parallel(h.flatten(1, 2), angles, mask, n).view_as(h)

    # --- streaming form ---
    def init_state(
        self, batch_size: int, device: torch.device | str | None = None,
        context: torch.Tensor | None = None,
    ) -> WorldState:
        """An empty memory for ``batch_size`` rows (optionally with instruction tokens)."""
        cfg = self.cfg
        device = torch.device(device) if device is not None else self.patch_embedding.weight.device
        n, h, dh = cfg.tokens_per_frame, cfg.num_heads, cfg.head_dim
        tensors: dict[str, torch.Tensor] = {"t": torch.zeros(batch_size, dtype=torch.long, device=device)}
        for i, block in enumerate(self.blocks):
            prefix = f"blocks.{i}."
            if block.kind == "gated":
                g = block.gated_delta
                tensors[prefix + "state"] = torch.zeros(batch_size, g.num_heads, g.key_dim, g.value_dim, device=device)
                for name, conv in (("conv_q", g.q_conv1d), ("conv_k", g.k_conv1d), ("conv_v", g.v_conv1d)):
                    tensors[prefix + name] = torch.zeros(batch_size, conv.kernel_size[0] - 1, conv.in_channels,
                                                         device=device, dtype=self.dtype)
            else:
                span = max(cfg.memory_span(i), 0)
                tensors[prefix + "k"] = torch.zeros(batch_size, span, n, h, dh, device=device, dtype=self.dtype)
                tensors[prefix + "v"] = torch.zeros(batch_size, span, n, h, dh, device=device, dtype=self.dtype)
                tensors[prefix + "frame"] = torch.full((batch_size, span), -1, dtype=torch.long, device=device)
        if cfg.proprio_conditioning:
            # The normalised proprioceptive state of the latest frame and of the one before.
            for name in ("proprio", "proprio_prev"):
                tensors[name] = torch.zeros(batch_size, cfg.state_dim, device=device)
            if cfg.proprio_action_history:
                # The history: the state before those two, and the action that led into the
                # latest frame (none, at rest, before the first).
                tensors["proprio_before"] = torch.zeros(batch_size, cfg.state_dim, device=device)
                tensors["proprio_action"] = torch.zeros(batch_size, cfg.action_dim_per_latent, device=device)
        if context is not None:
            if context.ndim != 3 or context.shape[0] != batch_size:
                raise ShapeError(f"context must be [{batch_size}, L, text_dim], got {tuple(context.shape)}")
            tensors["context"] = context.to(device)
        return WorldState(tensors)

    def velocity_step(
        self, state: WorldState, latent: torch.Tensor, sigma: torch.Tensor | float,
        action: torch.Tensor | None = None, commit: bool = False,
    ) -> tuple[torch.Tensor, WorldState]:
        """Velocity of one latent frame per row, reading (and with ``commit``, writing) memory.

        Args:
            state: the memory before this frame.
            latent: ``[B, C, h, w]`` noisy latent of frame ``state.frame_index``.
            sigma: its noise level, a float or ``[B]``.
            action: ``[B, A']`` the action leading into this frame, or None (no action). Rows
                at frame 0 never take an action (nothing leads into a first frame). With
                ``proprio_conditioning`` the frame is conditioned on ``state["proprio"]``,
                which the caller sets to this frame's state first (:class:`WorldModel` does).
            commit: write this frame into the memory and advance ``t``.

        Returns:
            ``(velocity [B, C, h, w], state)``; the state is the input one when not committing.
        """
        v, _, new_state = self.forward_step(state, latent, sigma, action, commit)
        return v, new_state

    def forward_step(
        self, state: WorldState, latent: torch.Tensor, sigma: torch.Tensor | float,
        action: torch.Tensor | None = None, commit: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor, WorldState]:
        """:meth:`velocity_step` plus the frame's features ``[B, dim]`` for the outcome head."""
        b = state.batch_size
        self._check_frame(latent, b, "latent")
        sigma = torch.as_tensor(sigma, dtype=torch.float32, device=latent.device)
        sigma = sigma.expand(b) if sigma.ndim == 0 else sigma
        if sigma.shape != (b,):
            raise ShapeError(f"sigma must be a float or [{b}], got {tuple(sigma.shape)}")
        if action is not None:
            _check_actions(action, (b, self.cfg.action_dim_per_latent), "action")
        t = state.frame_index
        x = self._patchify(latent[:, None].to(self.dtype))
        has_action = (t > 0)[:, None]
        proprio = state["proprio"][:, None] if self.cfg.proprio_conditioning else None
        c = self._condition(sigma[:, None], None if action is None else action[:, None], has_action, proprio)
        e = self.time_projection(c).unflatten(-1, (6, self.cfg.dim))
        angles = self.rope.angles(t)
        ctx = self._context(state.get("context"))
        writes: dict[str, torch.Tensor] = {}
        for i, block in enumerate(self.blocks):
            x = block(x, e, self._step_mixer(i, block, state, angles, writes), ctx)
        v = self._unpatchify(self.head(x, c))[:, 0]
        features = x.mean(2)[:, 0]
        if not commit:
            return v, features, state
        return v, features, self._commit(state, writes)

    def _step_mixer(self, i: int, block: Block, state: WorldState, angles: torch.Tensor,
                    writes: dict[str, torch.Tensor]) -> Callable:
        prefix = f"blocks.{i}."
        if block.kind == "gated":
            memory = {k: state[prefix + k] for k in ("state", "conv_q", "conv_k", "conv_v")}

            def gated(h: torch.Tensor) -> torch.Tensor:
                out, new = block.gated_delta(h[:, 0], memory)
                writes.update({prefix + k: val for k, val in new.items()})
                return out[:, None]
            return gated
        memory = {k: state[prefix + k] for k in ("k", "v", "frame")}

        def attend(h: torch.Tensor) -> torch.Tensor:
            out, kv = block.self_attn.step(h[:, 0], angles, state.frame_index, memory)
            writes.update({prefix + "new_k": kv["k"], prefix + "new_v": kv["v"]})
            return out[:, None]
        return attend

    def _commit(self, state: WorldState, writes: dict[str, torch.Tensor]) -> WorldState:
        t = state.frame_index
        rows = torch.arange(state.batch_size, device=t.device)
        changes: dict[str, torch.Tensor] = {"t": t + 1}
        for i, block in enumerate(self.blocks):
            prefix = f"blocks.{i}."
            if block.kind == "gated":
                for k in ("state", "conv_q", "conv_k", "conv_v"):
                    changes[prefix + k] = writes[prefix + k]
                continue
            new_k, new_v = writes[prefix + "new_k"], writes[prefix + "new_v"]
            if block.kind == "full":
                changes[prefix + "k"] = torch.cat([state[prefix + "k"], new_k[:, None]], dim=1)
                changes[prefix + "v"] = torch.cat([state[prefix + "v"], new_v[:, None]], dim=1)
                changes[prefix + "frame"] = torch.cat([state[prefix + "frame"], t[:, None]], dim=1)
                continue
            span = state[prefix + "frame"].shape[1]
            if span == 0:
                continue
            slot = t % span
            for name, value in (("k", new_k), ("v", new_v), ("frame", t)):
                buffer = state[prefix + name].clone()
                buffer[rows, slot] = value.to(buffer.dtype)
                changes[prefix + name] = buffer
        return state.replace(changes)

    # --- validation ---
    def _check_frame(self, latent: torch.Tensor, batch: int, name: str) -> None:
        expected = (batch, *self.cfg.latent_shape)
        if not isinstance(latent, torch.Tensor) or tuple(latent.shape) != expected:
            got = tuple(latent.shape) if isinstance(latent, torch.Tensor) else type(latent).__name__
            raise ShapeError(f"{name} must have shape {expected} [B, C, h, w], got {got}")
        _check_finite(latent, name)

    def _check_clip(self, latents, sigmas, actions, action_mask) -> tuple[int, int]:
        if not isinstance(latents, torch.Tensor) or latents.ndim != 5 or tuple(latents.shape[2:]) != self.cfg.latent_shape:
            got = tuple(latents.shape) if isinstance(latents, torch.Tensor) else type(latents).__name__
            raise ShapeError(f"latents must have shape [B, T, {', '.join(map(str, self.cfg.latent_shape))}], got {got}")
        b, t = latents.shape[:2]
        _check_finite(latents, "latents")
        if tuple(sigmas.shape) != (b, t):
            raise ShapeError(f"sigmas must have shape ({b}, {t}) [B, T], got {tuple(sigmas.shape)}")
        _check_finite(sigmas, "sigmas")
        if actions is not None:
            _check_actions(actions, (b, t, self.cfg.action_dim_per_latent), "actions")
        if action_mask is not None and tuple(action_mask.shape) != (b, t):
            raise ShapeError(f"action_mask must have shape ({b}, {t}) [B, T], got {tuple(action_mask.shape)}")
        return b, t


@contextlib.contextmanager
def init_context(device: torch.device | str | None = None,
                 dtype: torch.dtype | None = None) -> Iterator[None]:
    """Build modules directly on ``device`` and in ``dtype`` (restored on exit).

    ``device="meta"`` gives shapes without memory (the 4B preset in a second);
    ``dtype=torch.bfloat16`` allocates the weights in bf16 instead of float32 then casting::

        with init_context("meta", torch.bfloat16):
            wm = WorldModel(cfg, codec=build_codec(cfg))
    """
    previous = torch.get_default_dtype()
    with contextlib.ExitStack() as stack:
        if device is not None:
            stack.enter_context(torch.device(device))
        if dtype is not None:
            if not dtype.is_floating_point:
                raise ValueError(f"dtype must be a floating-point dtype, got {dtype}")
            torch.set_default_dtype(dtype)
            stack.callback(torch.set_default_dtype, previous)
        yield


def _check_finite(x: torch.Tensor, name: str) -> None:
    if x.is_floating_point() and not torch.isfinite(x).all():
        raise ShapeError(f"{name} contains NaN or inf")


def _check_actions(actions: torch.Tensor, expected: tuple[int, ...], name: str) -> None:
    if not isinstance(actions, torch.Tensor) or tuple(actions.shape) != expected:
        got = tuple(actions.shape) if isinstance(actions, torch.Tensor) else type(actions).__name__
        raise ShapeError(f"{name} must have shape {expected}, got {got}")
    _check_finite(actions, name)
