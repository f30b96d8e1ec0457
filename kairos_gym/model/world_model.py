"""``WorldModel``: the denoiser, the codec and the sampler behind one frame-level API.

Latent level (the invariant)::

    v = wm.velocity(latents, sigmas, actions)                    # [B,T,C,h,w]
    v_t, state = wm.velocity_step(state, latent_t, sigma_t, action_t, commit=True)

Frame level::

    state = wm.init_state(batch_size=B)
    state = wm.observe(state, frames)                            # uint8 [B,T,H,W,3]
    frames, out, state = wm.step(state, actions)                 # [B,H,W,3], {"reward", "success", "done"}
    frames, out, state = wm.rollout(state, actions)              # actions [B,K,A] -> frames [B,K,H,W,3]

Temporal compression (``temporal_compression = tc > 1``, the Wan2.1 VAE: ``tc = 4``): one
latent frame covers ``tc`` video frames and ``tc`` actions, except the first latent frame of
a clip, which is one frame alone. ``observe`` takes a clip of ``1 + tc k`` frames into a fresh
state; ``step`` takes ``[B, tc, A]`` actions and returns the ``tc`` frames ``[B, tc, H, W, 3]``
they lead into; ``rollout`` takes ``K`` actions, ``K`` a multiple of ``tc``, and returns ``K``
frames with one outcome per latent step. The video decoder is causal in time: its memory of
the latents decoded so far (:class:`~kairos_gym.model.video_codec.WanDecodeCache`, packed to
fixed shapes) lives in the state beside the denoiser's, under ``decoder.*`` keys, so it is
selected, forked and snapshotted with the rows.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from kairos_gym.devices import check_device
from kairos_gym.errors import CheckpointError, ShapeError
from kairos_gym.model import checkpoint as ckpt
from kairos_gym.model.codec import Codec, build_codec
from kairos_gym.model.config import SAMPLER_FIELDS, WorldModelConfig
from kairos_gym.model.dit import KairosDiT
from kairos_gym.model.sampler import Generators, SamplerSettings, add_noise, sample_frame
from kairos_gym.model.state import WorldState

DECODER_PREFIX = "decoder."
"""State keys of the video decoder's memory (``decoder.{i}`` per cache entry, ``decoder.t``)."""

FULL_PRECISION_PREFIXES = ("proprio_dynamics.", "state_mean", "state_std")
"""Denoiser tensors a reduced-precision export keeps as trained: the proprioceptive dynamics
is applied once per step to its own output, so its rounding errors compound over an episode,
and the state normalisation maps every state."""
CODEC_FULL_PRECISION_PREFIXES = ("latent_mean", "latent_std")
"""Codec tensors a reduced-precision export keeps as trained: the latent normalisation, which
maps every latent. In bfloat16 the rest of the 64 px codec decodes frames within 58 dB PSNR
of the float32 one."""


def _cast_weights(tensors: dict[str, torch.Tensor], dtype: torch.dtype | None,
                  keep: tuple[str, ...]) -> dict[str, torch.Tensor]:
    """``tensors`` with every floating-point one not under a ``keep`` prefix cast to ``dtype``
    (``None``: unchanged)."""
    if dtype is None:
        return tensors
    return {k: v.to(dtype) if v.is_floating_point() and not k.startswith(keep) else v
            for k, v in tensors.items()}


class WorldModel(nn.Module):
    """A Kairos-architecture world model that steps like an environment.

    Args:
        config: shapes and sampler defaults.
        codec: a frames <-> latents codec; default a fresh one of the kind ``config.codec``
            names (:func:`~kairos_gym.model.codec.build_codec`).

    Raises:
        ValueError: a codec whose latent shape or temporal compression differs from the
            config (checked before the denoiser is allocated).
    """

    def __init__(self, config: WorldModelConfig, codec: Codec | None = None) -> None:
        super().__init__()
        self.config = config
        if codec is not None:
            _check_codec(codec, config)
        self.dit = KairosDiT(config)
        # The denoiser is built first so a seeded model keeps the weights it always had; the
        # config has already refused a codec it cannot build, so nothing large is wasted.
        self.codec = codec if codec is not None else build_codec(config)
        _check_codec(self.codec, config)

    @classmethod
    def build(
        cls,
        config: WorldModelConfig,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> WorldModel:
        """A fresh model built directly on ``device`` in ``dtype`` (``"meta"``: shapes only).

        The config is validated when it is made, so a bad combination fails before any
        weight is allocated; see :func:`~kairos_gym.model.dit.init_context`.
        """
        from kairos_gym.model.dit import init_context

        with init_context(device, dtype):
            return cls(config)

    @property
    def device(self) -> torch.device:
        """Device of the denoiser's parameters."""
        return self.dit.patch_embedding.weight.device

    @property
    def sampler(self) -> SamplerSettings:
        """The sampler settings from the config."""
        c = self.config
        return SamplerSettings(c.sample_steps, c.timestep_shift, c.guidance_scale, c.context_sigma)

    # --- latent level ---
    def velocity(
        self,
        latents: torch.Tensor,
        sigmas: torch.Tensor,
        actions: torch.Tensor | None = None,
        action_mask: torch.Tensor | None = None,
        context: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Parallel velocity over a clip; see :meth:`KairosDiT.velocity`."""
        return self.dit.velocity(latents, sigmas, actions, action_mask, context)

    def velocity_step(
        self,
        state: WorldState,
        latent: torch.Tensor,
        sigma: torch.Tensor | float,
        action: torch.Tensor | None = None,
        commit: bool = False,
    ) -> tuple[torch.Tensor, WorldState]:
        """Streaming velocity of one frame; see :meth:`KairosDiT.velocity_step`."""
        return self.dit.velocity_step(state, latent, sigma, action, commit)

    def init_state(self, batch_size: int = 1, context: torch.Tensor | None = None) -> WorldState:
        """An empty memory for ``batch_size`` rows on the model's device."""
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        state = self.dit.init_state(batch_size, self.device, context)
        if self.config.temporal_compression == 1:
            return state
        # The video decoder's memory: zeros until observe() decodes the first latent frame.
        dtype = getattr(self.codec, "dtype", torch.float32)
        memory = {
            f"{DECODER_PREFIX}{i}": torch.zeros(
                (batch_size, *shape), device=state.device, dtype=dtype
            )
            for i, shape in enumerate(self.codec.decode_cache_shapes())
            if shape is not None
        }
        memory[DECODER_PREFIX + "t"] = torch.zeros(
            batch_size, dtype=torch.long, device=state.device
        )
        return state.replace(memory)

    # --- frame level ---
    def _actions(self, actions: Any, batch: int, steps: int | None) -> torch.Tensor:
        """Validate actions ``[B, A]`` (or ``[B, K, A]`` when ``steps`` is given) as float32."""
        a = _float_tensor(actions, "actions").to(self.device)
        tc, dim = self.config.temporal_compression, self.config.action_dim
        per = (tc, dim) if tc > 1 else (dim,)
        expected = (batch, *per) if steps is None else (batch, steps * tc, dim)
        if tuple(a.shape) != expected:
            raise ShapeError(f"actions must have shape {expected}, got {tuple(a.shape)}")
        if not torch.isfinite(a).all():
            raise ShapeError("actions contain NaN or inf")
        return a

    @torch.no_grad()
    def observe(
        self,
        state: WorldState,
        frames: torch.Tensor | np.ndarray,
        actions: Any = None,
        generator: Generators = None,
        proprio: Any = None,
    ) -> WorldState:
        """Commit real context frames into the memory.

        Args:
            state: memory of ``B`` rows.
            frames: uint8 ``[B, T, H, W, 3]``.
            actions: optional ``[B, T, A]``; ``actions[:, t]`` led into frame ``t``.
            generator: noise for the context-noise commit (one generator, or one per row).
            proprio: the real proprioceptive state of each frame ``[B, T, S]`` in environment
                units; required by models with ``proprio_conditioning`` (ignored otherwise).

        With temporal compression ``tc > 1`` the frames are one clip of ``T = 1 + tc k``
        frames observed into a fresh state (the video encoder starts a clip with its first
        frame alone): latent frame ``j >= 1`` takes the actions ``actions[:, tc(j-1)+1 ..
        tc j]`` that led into its frames (``actions[:, 0]`` is not read) and the state of
        its last frame; the decoder's memory is filled by decoding the clip's latents.
        """
        _check_state(state)
        if self.config.temporal_compression > 1:
            return self._observe_clip(state, frames, actions, generator, proprio)
        latents = self.codec.encode(frames)
        b, t = latents.shape[:2]
        if b != state.batch_size:
            raise ShapeError(f"frames have {b} rows but the state has {state.batch_size}")
        tc = self.config.temporal_compression
        if actions is not None:
            acts = self._actions(actions, b, t)
            acts = acts.view(b, t, tc * self.config.action_dim)
        norm = self._proprio(proprio, b, t) if self.config.proprio_conditioning else None
        sigma = self.config.context_sigma
        for i in range(t):
            if norm is not None:
                # A row's first frame has no predecessor: its previous state is itself (at rest).
                first = (state.frame_index == 0)[:, None]
                previous = torch.where(first, norm[:, i], state["proprio"])
                history = {}
                if "proprio_action" in state:
                    # The history: the state before the previous one and the action into this
                    # frame (at rest, zero, before a row's first frame).
                    rest = torch.zeros_like(state["proprio_action"])
                    into = rest if actions is None else acts[:, i]
                    history = {"proprio_before": torch.where(first, previous, state["proprio_prev"]),
                               "proprio_action": torch.where(first, rest, into)}
                state = state.updated(proprio=norm[:, i], proprio_prev=previous, **history)
            latent = add_noise(latents[:, i].float(), sigma, generator)
            _, state = self.dit.velocity_step(
                state, latent, sigma, None if actions is None else acts[:, i], commit=True
            )
        return state

    def _observe_clip(
        self, state: WorldState, frames: Any, actions: Any, generator: Generators, proprio: Any
    ) -> WorldState:
        """:meth:`observe` for a video codec (``tc > 1``): one clip into fresh rows."""
        tc, dim = self.config.temporal_compression, self.config.action_dim
        if bool((state.frame_index != 0).any()):
            raise ShapeError(
                f"a video codec (temporal compression {tc}) encodes a clip from its first frame: "
                "observe all context frames in one call into a fresh state (init_state)"
            )
        latents = self.codec.encode(frames)  # checks T = 1 + tc k
        b, t = latents.shape[:2]
        n_frames = 1 + tc * (t - 1)
        if b != state.batch_size:
            raise ShapeError(f"frames have {b} rows but the state has {state.batch_size}")
        acts = None
        if actions is not None:
            a = _float_tensor(actions, "actions").to(self.device)
            if tuple(a.shape) != (b, n_frames, dim):
                raise ShapeError(
                    f"actions must have shape {(b, n_frames, dim)} [B, T, A], got {tuple(a.shape)}"
                )
            if not torch.isfinite(a).all():
                raise ShapeError("actions contain NaN or inf")
            # Latent j >= 1 covers frames tc(j-1)+1 .. tc j and the actions that led into them.
            grouped = a[:, 1:].reshape(b, t - 1, tc * dim)
            acts = torch.cat([grouped.new_zeros(b, 1, tc * dim), grouped], dim=1)
        norm = None
        if self.config.proprio_conditioning:
            # The state of a latent frame is the state of its last video frame.
            norm = self._proprio(proprio, b, n_frames)[:, ::tc]
        sigma = self.config.context_sigma
        for i in range(t):
            if norm is not None:
                previous = norm[:, i - 1] if i > 0 else norm[:, 0]
                state = state.updated(proprio=norm[:, i], proprio_prev=previous)
            latent = add_noise(latents[:, i].float(), sigma, generator)
            _, state = self.dit.velocity_step(
                state, latent, sigma, None if acts is None else acts[:, i], commit=True
            )
        # The decoder's memory must hold the context before it decodes imagined latents.
        cache = None
        for i in range(t):
            _, cache = self.codec.decode_step(latents[:, i], cache)
        return self._with_decoder(state, cache, torch.full_like(state.frame_index, t))

    def _with_decoder(self, state: WorldState, cache: Any, decoded: torch.Tensor) -> WorldState:
        packed = self.codec.pack_decode_cache(cache)
        memory = {f"{DECODER_PREFIX}{i}": f for i, f in enumerate(packed) if f is not None}
        memory[DECODER_PREFIX + "t"] = decoded
        return state.replace(memory)

    @torch.no_grad()
    def decode_step(
        self, state: WorldState, latent: torch.Tensor
    ) -> tuple[torch.Tensor, WorldState]:
        """Decode each row's next latent frame through its decoder memory (video codecs).

        Args:
            state: memory of ``B`` rows whose decoder has decoded fewer latent frames than
                the denoiser has committed (at least the observed first one).
            latent: ``[B, C, h, w]``, each row's next undecoded latent frame, in order.

        Returns:
            ``(frames, state)``: uint8 ``[B, tc, H, W, 3]`` and the state with the decoder's
            memory advanced (the denoiser's memory untouched).

        Raises:
            ValueError: a per-frame codec, or rows with nothing left to decode.
        """
        _check_state(state)
        if self.config.temporal_compression == 1:
            raise ValueError(
                "decode_step is for video codecs; decode() a per-frame codec's latents"
            )
        from kairos_gym.model.video_codec import WanDecodeCache

        decoded = state[DECODER_PREFIX + "t"]
        if bool((decoded < 1).any()) or bool((decoded >= state.frame_index).any()):
            raise ValueError(
                "decode_step decodes the latent frames committed after the observed ones, in "
                f"order; rows have decoded {decoded.tolist()} of {state.frame_index.tolist()}"
            )
        shapes = self.codec.decode_cache_shapes()
        cache = WanDecodeCache(
            tuple(
                state[f"{DECODER_PREFIX}{i}"] if shape is not None else None
                for i, shape in enumerate(shapes)
            )
        )
        frames, cache = self.codec.decode_step(latent, cache)
        return frames, self._with_decoder(state, cache, decoded + 1)

    @torch.no_grad()
    def step(
        self,
        state: WorldState,
        actions: Any,
        generator: Generators = None,
        settings: SamplerSettings | None = None,
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor], WorldState]:
        """Imagine the next frame of every row from its action.

        Args:
            state: memory of ``B`` rows (at least one committed frame each).
            actions: ``[B, A]`` (``[B, temporal_compression, A]`` for video codecs).
            generator: source of sampling noise: one generator, or one per row (a row's
                frames then never depend on the other rows).
            settings: sampler settings (default: the config's).

        Returns:
            ``(frames, outcomes, new state)``: uint8 frames ``[B, H, W, 3]`` (``[B, tc, H, W, 3]``
            for video codecs); outcomes ``reward`` ``[B]``, probabilities ``success``/``done`` ``[B]``
            and, when the config has ``state_dim > 0``, the predicted proprioception ``state`` ``[B, S]``.
        """
        latent, out, state = self.step_latent(state, actions, generator, settings)
        if self.config.temporal_compression > 1:
            frames, state = self.decode_step(state, latent)
            return frames, out, state
        return self.decode(latent), out, state

    @torch.no_grad()
    def step_latent(
        self,
        state: WorldState,
        actions: Any,
        generator: Generators = None,
        settings: SamplerSettings | None = None,
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor], WorldState]:
        """:meth:`step` without decoding: ``(latent [B, C, h, w], outcomes, new state)``.

        Planners that score many candidates by their predicted outcomes skip the decoder this
        way; :meth:`decode` turns the latents into the same frames :meth:`step` returns
        (:meth:`decode_step`, in order, for video codecs, whose decoder is causal in time).
        """
        _check_state(state)
        settings = settings or self.sampler
        a = self._actions(actions, state.batch_size, None).reshape(state.batch_size, -1)
        if self.config.proprio_conditioning:
            # The action moves the proprioceptive state first (a draw, for a stochastic
            # dynamics, from the rows' generators); the frame is imagined from it.
            dynamics = self.dit.proprio_dynamics
            inputs = (state["proprio"], state["proprio_prev"], a,
                      state.get("proprio_action"), state.get("proprio_before"))
            moved = (dynamics.sample(*inputs, generator=generator) if settings.draw_state
                     else dynamics(*inputs))
            history = ({"proprio_before": state["proprio_prev"], "proprio_action": a}
                       if dynamics.action_history else {})
            state = state.updated(proprio=moved, proprio_prev=state["proprio"], **history)
        latent, features, state = sample_frame(self.dit, state, a, settings, generator)
        out = self.outcomes(features)
        if self.config.proprio_conditioning:
            out["state"] = self.dit.denormalize_state(state["proprio"])
        if self.config.state_outcomes:
            raw = self.dit.proprio_dynamics.outcomes(state["proprio"])
            out.update(reward=raw["reward"], success=raw["success"].sigmoid(),
                       done=raw["done"].sigmoid())
        return latent, out, state

    def _proprio(self, proprio: Any, batch: int, steps: int) -> torch.Tensor:
        """Validate real proprioception ``[B, T, S]`` (environment units) and normalise it."""
        if proprio is None:
            raise ShapeError(
                "this model conditions on the proprioceptive state: observe() needs proprio "
                f"[{batch}, {steps}, {self.config.state_dim}] beside the frames"
            )
        p = _float_tensor(proprio, "proprio").to(self.device)
        expected = (batch, steps, self.config.state_dim)
        if tuple(p.shape) != expected:
            raise ShapeError(f"proprio must have shape {expected} [B, T, S], got {tuple(p.shape)}")
        if not torch.isfinite(p).all():
            raise ShapeError("proprio contains NaN or inf")
        return self.dit.normalize_state(p)

    @torch.no_grad()
    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Frames of imagined latents ``[B, C, h, w]``: uint8 ``[B, H, W, 3]`` (per-frame codecs).

        Raises:
            ValueError: a video codec: its frames depend on the latents before, so they are
                decoded in order through the row's memory with :meth:`decode_step`.
        """
        if self.config.temporal_compression > 1:
            raise ValueError(
                "a video codec decodes latent frames in order through each row's decoder "
                "memory: use decode_step(state, latent)"
            )
        return self.codec.decode(latents[:, None])[:, 0]

    @torch.no_grad()
    def rollout(
        self,
        state: WorldState,
        actions: Any,
        generator: Generators = None,
        settings: SamplerSettings | None = None,
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor], WorldState]:
        """Imagine ``K`` steps open loop: actions ``[B, K, A]`` -> frames ``[B, K, H, W, 3]``.

        Outcomes are one per latent step: ``[B, K]``, or ``[B, K / tc]`` with temporal
        compression ``tc`` (``K`` must then be a multiple of ``tc``).
        """
        a = _float_tensor(actions, "rollout actions")
        if a.ndim != 3 or a.shape[1] < 1:
            raise ShapeError(f"rollout actions must be [B, K >= 1, A], got {tuple(a.shape)}")
        tc = self.config.temporal_compression
        if a.shape[1] % tc:
            raise ShapeError(
                f"rollout length {a.shape[1]} must be a multiple of temporal_compression {tc}"
            )
        frames, outs = [], []
        for k in range(a.shape[1] // tc):
            chunk = a[:, k * tc : (k + 1) * tc]
            f, out, state = self.step(state, chunk if tc > 1 else chunk[:, 0], generator, settings)
            frames.append(f if tc > 1 else f[:, None])
            outs.append(out)
        stacked = {name: torch.stack([o[name] for o in outs], dim=1) for name in outs[0]}
        return torch.cat(frames, dim=1), stacked, state

    def outcomes(self, features: torch.Tensor) -> dict[str, torch.Tensor]:
        """Heads of committed frames from their features ``[..., dim]``: ``reward``, the
        probabilities ``success`` and ``done``, and ``state`` in environment units (if any)."""
        raw = self.dit.outcomes(features)
        out = {
            "reward": raw["reward"],
            "success": raw["success"].sigmoid(),
            "done": raw["done"].sigmoid(),
        }
        if "state" in raw:
            out["state"] = self.dit.denormalize_state(raw["state"])
        return out

    # --- checkpoints ---
    def save_pretrained(
        self, directory: str | os.PathLike, extra: dict[str, Any] | None = None,
        dtype: torch.dtype | None = None,
    ) -> Path:
        """Write ``config.json``, ``model.safetensors`` and ``codec.safetensors`` to ``directory``.

        Args:
            extra: more top-level entries for ``config.json`` (env spec, training info).
            dtype: store the floating-point weights of the denoiser and the codec in this
                dtype (e.g. ``torch.bfloat16``: half the size; :meth:`from_pretrained` loads
                them back into float32 parameters). Denoiser tensors under
                :data:`FULL_PRECISION_PREFIXES` and codec tensors under
                :data:`CODEC_FULL_PRECISION_PREFIXES` stay as they are. ``None``: as trained.
        """
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        tensors = _cast_weights(self.dit.state_dict(), dtype, FULL_PRECISION_PREFIXES)
        codec = _cast_weights(self.codec.state_dict(), dtype, CODEC_FULL_PRECISION_PREFIXES)
        ckpt.save_tensors_atomic(tensors, directory / ckpt.MODEL_NAME, {"format": "pt"})
        ckpt.save_tensors_atomic(codec, directory / ckpt.CODEC_NAME, {"format": "pt"})
        data = {"format": ckpt.FORMAT_VERSION, "model": self.config.to_dict(), **(extra or {})}
        ckpt.write_json_atomic(directory / ckpt.CONFIG_NAME, data)
        return directory

    @classmethod
    def from_pretrained(
        cls, directory: str | os.PathLike, device: torch.device | str = "cpu"
    ) -> WorldModel:
        """Load a directory written by :meth:`save_pretrained` (strict; never unpickles).

        Before anything is allocated, the model ``config.json`` declares is built on the
        ``meta`` device (shapes only) and compared with the tensors the safetensors headers
        list, and the memory one env row would need is bounded (:func:`check_runtime_size`):
        a config cannot make the loader build more than its files hold.

        Raises:
            CheckpointError: missing/corrupt/symlinked files, an unknown format, a config the
                files do not hold, or tensors that do not match the config.
            DeviceUnavailable: ``device`` does not exist here (CUDA on a CPU-only build).
        """
        device = check_device(device)
        directory = Path(directory)
        data = ckpt.read_config(directory)
        where = directory / ckpt.CONFIG_NAME
        try:
            config = WorldModelConfig.from_dict(data["model"])
        except (TypeError, ValueError) as exc:
            raise CheckpointError(f"{where}: invalid model config: {exc}") from None
        files = {
            name: ckpt.checkpoint_file(directory, name)
            for name in (ckpt.MODEL_NAME, ckpt.CODEC_NAME)
        }
        headers = {name: ckpt.read_header(path) for name, path in files.items()}
        _check_depth(config, headers, where)
        try:
            with torch.device("meta"):
                skeleton = cls(config)
        except (TypeError, ValueError, RuntimeError, OverflowError) as exc:
            raise CheckpointError(f"{where}: the model config cannot be built: {exc}") from None
        ckpt.check_header(
            skeleton.dit.state_dict(), headers[ckpt.MODEL_NAME], str(files[ckpt.MODEL_NAME])
        )
        ckpt.check_header(
            skeleton.codec.state_dict(), headers[ckpt.CODEC_NAME], str(files[ckpt.CODEC_NAME])
        )
        check_runtime_size(skeleton, where)
        model = cls(config)
        ckpt.load_state_strict(
            model.dit, ckpt.load_tensors(files[ckpt.MODEL_NAME]), str(files[ckpt.MODEL_NAME])
        )
        ckpt.load_state_strict(
            model.codec, ckpt.load_tensors(files[ckpt.CODEC_NAME]), str(files[ckpt.CODEC_NAME])
        )
        model.checkpoint_info = data
        return model.to(device).eval()

    @classmethod
    def from_released_dit(
        cls, path: str | os.PathLike, config: WorldModelConfig, codec: Codec | None = None
    ) -> WorldModel:
        """Build a model whose denoiser holds released Kairos DiT weights.

        The released DiT has no action conditioning and no outcome head: those parameters
        keep their fresh initialisation (and need training); every other tensor must match
        ``config`` exactly. ``action_dit.*`` tensors of world-action checkpoints are dropped.
        """
        model = cls(config, codec)
        ckpt.load_released_dit(model.dit, path)
        return model

    def with_config(self, **changes: Any) -> WorldModel:
        """Change sampler fields of the config in place (shapes cannot change); returns self."""
        shape_fields = {f.name for f in dataclasses.fields(WorldModelConfig)} - SAMPLER_FIELDS
        bad = sorted(set(changes) & shape_fields)
        if bad:
            raise ValueError(f"only sampler fields can change on a built model, not {bad}")
        self.config = dataclasses.replace(self.config, **changes)
        return self


MIN_ROW_BUDGET_BYTES = 2**30
"""Memory one env row may always use (1 GiB); larger models may use as much as their weights."""
MAX_FRAME_PIXELS = 2**24
"""The largest frame a loaded config may declare (4096 x 4096)."""


def check_runtime_size(model: WorldModel, where: str | os.PathLike) -> None:
    """Refuse a config whose sizes that no tensor holds would need unbounded memory at run time.

    The frame size, the windows and the dilation shape no weight, so the header cannot bound
    them: one row of memory (:meth:`KairosDiT.init_state`, measured on the ``meta`` device)
    may use at most ``max(1 GiB, 2 x the weights)`` and a frame at most 4096 x 4096 pixels.
    The largest preset, ``kairos-4b``, needs 3 GiB per row beside 15 GiB of weights.

    Raises:
        CheckpointError: naming the sizes and the budget.
    """
    cfg = model.config
    h, w = cfg.image_size
    if h * w > MAX_FRAME_PIXELS:
        raise CheckpointError(
            f"{where}: image_size {cfg.image_size} has more than {MAX_FRAME_PIXELS} pixels"
        )
    weights = sum(t.numel() * t.element_size() for t in model.state_dict().values())
    try:
        state = model.dit.init_state(1, device="meta")
    except (RuntimeError, ValueError, OverflowError) as exc:
        raise CheckpointError(f"{where}: the memory of one row cannot be sized: {exc}") from None
    row = sum(state[name].numel() * state[name].element_size() for name in state)
    budget = max(MIN_ROW_BUDGET_BYTES, 2 * weights)
    if row > budget:
        raise CheckpointError(
            f"{where}: one env row's memory would take {row / 2**30:.1f} GiB (window {cfg.window}, "
            f"dilation {cfg.dilation}, {cfg.tokens_per_frame} tokens per frame), more than the "
            f"{budget / 2**30:.1f} GiB a model of {weights / 2**20:.1f} MiB may ask for"
        )


def _check_depth(config: WorldModelConfig, headers: dict[str, dict[str, Any]], where: Path) -> None:
    """Refuse a depth the files do not hold before building even a shape-only model (its cost
    grows with the number of blocks and codec stages)."""
    blocks = {name.split(".")[1] for name in headers[ckpt.MODEL_NAME] if name.startswith("blocks.")}
    if config.num_layers != len(blocks):
        raise CheckpointError(
            f"{where} declares num_layers={config.num_layers} but {ckpt.MODEL_NAME} holds "
            f"{len(blocks)} blocks"
        )
    if len(config.codec_channels) > len(headers[ckpt.CODEC_NAME]):
        raise CheckpointError(
            f"{where} declares {len(config.codec_channels)} codec stages but {ckpt.CODEC_NAME} "
            f"holds {len(headers[ckpt.CODEC_NAME])} tensors"
        )


def _check_codec(codec: Codec, config: WorldModelConfig) -> None:
    if tuple(codec.latent_shape) != config.latent_shape:
        raise ValueError(f"codec latent shape {codec.latent_shape} != config {config.latent_shape}")
    if codec.temporal_compression != config.temporal_compression:
        raise ValueError(
            f"codec temporal compression {codec.temporal_compression} != config "
            f"{config.temporal_compression}"
        )


def _float_tensor(value: Any, what: str) -> torch.Tensor:
    """``value`` (a tensor, array or nested list of real numbers) as a float32 tensor.

    Raises:
        ShapeError: a ragged list, or values that are not real numbers.
    """
    if isinstance(value, torch.Tensor):
        if value.is_complex() or value.dtype == torch.bool:
            raise ShapeError(f"{what} must be real numbers, got a {value.dtype} tensor")
        return value.detach().to(torch.float32)
    try:
        arr = np.asarray(value)
    except (ValueError, TypeError, OverflowError) as exc:
        raise ShapeError(f"{what} must be a rectangular array of numbers ({exc})") from None
    if arr.dtype.kind not in "fiu":
        raise ShapeError(f"{what} must be real numbers, got dtype {arr.dtype}")
    with np.errstate(over="ignore"):  # beyond float32 becomes inf, refused as such
        return torch.from_numpy(arr.astype(np.float32))


def _check_state(state: Any) -> None:
    if not isinstance(state, WorldState):
        raise TypeError(
            f"state must be a WorldState (from init_state, observe or step), got {type(state).__name__}"
        )
