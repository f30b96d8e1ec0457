"""The Wan2.1 video VAE behind the :class:`~kairos_gym.model.codec.Codec` interface.

Wraps diffusers' ``AutoencoderKLWan``: 8x spatial and 4x temporal compression, causal in
time. The first frame is encoded alone, then every group of four frames becomes one latent
frame, so ``T = 1 + 4k`` video frames give ``1 + k`` latent frames (and decode back to
``T``). Latents are normalised per channel with the Wan2.1 statistics
(``(z - mean) / std``, as the diffusers Wan pipelines do), so the denoiser sees roughly unit
variance.

Weights come from a local file only (the diffusers-format ``safetensors`` of the released
VAE, or one written by :meth:`WanVideoCodec.save_vae_weights`); nothing here downloads.
A small config (``WorldModelConfig.preset("tiny-wan")``) gives a random-weight miniature for
tests::

    cfg = WorldModelConfig.preset("kairos-4b")
    codec = WanVideoCodec(cfg, weights="Wan2.1_VAE/diffusion_pytorch_model.safetensors")
    z = codec.encode(frames)          # uint8 [B, 1 + 4k, 480, 832, 3] -> [B, 1 + k, 16, 60, 104]
    frames = codec.decode(z)          # -> uint8 [B, 1 + 4k, 480, 832, 3]

For stepping an environment, :meth:`WanVideoCodec.decode_step` decodes one latent frame at
a time through an explicit :class:`WanDecodeCache` (the decoder's causal convolution
memory): the first latent frame gives one video frame, each later one gives four; the frames
equal those of :meth:`WanVideoCodec.decode` over the whole clip.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from kairos_gym.errors import CheckpointError, ShapeError
from kairos_gym.model import checkpoint as ckpt
from kairos_gym.model.codec import Codec
from kairos_gym.model.config import WAN_TEMPORAL_COMPRESSION, WorldModelConfig

WAN21_LATENT_MEAN = (
    -0.7571,
    -0.7089,
    -0.9113,
    0.1075,
    -0.1745,
    0.9653,
    -0.1517,
    1.5508,
    0.4134,
    -0.0715,
    0.5517,
    -0.3632,
    -0.1922,
    -0.9497,
    0.2503,
    -0.2921,
)
"""Per-channel mean of the Wan2.1 VAE's latents (``latents_mean`` of its diffusers config)."""
WAN21_LATENT_STD = (
    2.8184,
    1.4541,
    2.3275,
    2.6558,
    1.2196,
    1.7708,
    2.6052,
    2.0743,
    3.2687,
    2.1526,
    2.8652,
    1.5579,
    1.6382,
    1.1253,
    2.8251,
    1.9160,
)
"""Per-channel standard deviation of the Wan2.1 VAE's latents (``latents_std``)."""
VAE_WEIGHTS_NAME = "diffusion_pytorch_model.safetensors"
"""The weights file of a diffusers-format VAE directory."""


@dataclass(frozen=True)
class WanDecodeCache:
    """The decoder's causal memory after some latent frames (one entry per causal conv).

    Entries are tensors ``[B, C, t, h, w]`` (the last frames each convolution needs), the
    marker ``"Rep"`` diffusers uses after a first chunk, or ``None``. Immutable: a step
    returns a new cache, so a cache can be reused to branch.
    """

    features: tuple[Any, ...]

    def select(self, rows: torch.Tensor | list[int]) -> WanDecodeCache:
        """The cache of the given batch rows (index or bool mask over ``B``)."""
        return WanDecodeCache(
            tuple(f[rows] if isinstance(f, torch.Tensor) else f for f in self.features)
        )


def _check_temporal(latents: torch.Tensor, shape: tuple[int, ...], what: str) -> None:
    if (
        not isinstance(latents, torch.Tensor)
        or latents.ndim != 5
        or tuple(latents.shape[2:]) != shape
    ):
        got = tuple(latents.shape) if isinstance(latents, torch.Tensor) else type(latents).__name__
        raise ShapeError(f"{what} must be [B, T, {', '.join(map(str, shape))}], got {got}")


def vae_weights_file(path: str | os.PathLike) -> Path:
    """The safetensors file a VAE weights path names: the file itself, or a diffusers VAE
    directory's ``diffusion_pytorch_model.safetensors``. Checks only that it exists (cheap:
    a trainer calls it before anything trains).

    Raises:
        CheckpointError: not a ``.safetensors`` file, or no such file.
    """
    path = Path(path)
    if path.is_dir():
        path = path / VAE_WEIGHTS_NAME
    if path.suffix != ".safetensors":
        raise CheckpointError(f"VAE weights must be a .safetensors file, got {str(path)!r}")
    if not path.is_file():
        raise CheckpointError(
            f"missing VAE weights file {str(path)!r} (weights are read from local files only; "
            f"download the Wan2.1 VAE in diffusers format first)"
        )
    return path


class WanVideoCodec(Codec):
    """Frames <-> normalised Wan2.1 VAE latents (8x spatial, 4x temporal, 16 channels).

    Args:
        cfg: a config with ``codec="wan"``; ``wan_base_dim``/``wan_dim_mult``/
            ``wan_res_blocks`` set the VAE's widths (the released VAE's by default).
        weights: optional local weights: a ``.safetensors`` file in diffusers' names, or a
            diffusers VAE directory holding ``diffusion_pytorch_model.safetensors``.

    Raises:
        ValueError: ``cfg.codec`` is not ``"wan"``.
        CheckpointError: ``weights`` is missing, unreadable, or does not match the config.
    """

    temporal_compression = WAN_TEMPORAL_COMPRESSION

    def __init__(self, cfg: WorldModelConfig, weights: str | os.PathLike | None = None) -> None:
        if cfg.codec != "wan":
            raise ValueError(
                f"WanVideoCodec needs a config with codec='wan', got codec={cfg.codec!r}"
            )
        super().__init__(cfg.frame_shape, cfg.latent_shape)
        from diffusers import AutoencoderKLWan  # the heavy import only where the codec is used

        self.vae = AutoencoderKLWan(
            base_dim=cfg.wan_base_dim,
            z_dim=cfg.latent_channels,
            dim_mult=list(cfg.wan_dim_mult),
            num_res_blocks=cfg.wan_res_blocks,
            temperal_downsample=[False, True, True],
            latents_mean=list(WAN21_LATENT_MEAN),
            latents_std=list(WAN21_LATENT_STD),
        )
        self.register_buffer("latent_mean", torch.tensor(WAN21_LATENT_MEAN))
        self.register_buffer("latent_std", torch.tensor(WAN21_LATENT_STD))
        self._cache_shapes: tuple[tuple[int, ...] | None, ...] | None = None
        if weights is not None:
            self.load_vae_weights(weights)

    @property
    def device(self) -> torch.device:
        """Device of the VAE's parameters."""
        return self.latent_mean.device

    @property
    def dtype(self) -> torch.dtype:
        """Dtype of the VAE's parameters (float32, or bfloat16 after ``.to``)."""
        return self.vae.post_quant_conv.weight.dtype

    # --- frame counts ---
    def num_latent_frames(self, frames: int) -> int:
        """``1 + (frames - 1) / 4``: the first frame alone, then groups of four.

        Raises:
            ShapeError: ``frames`` is not ``1 + 4k`` (``k >= 0``).
        """
        tc = self.temporal_compression
        if frames < 1 or (frames - 1) % tc:
            raise ShapeError(
                f"the Wan VAE encodes the first frame alone, then groups of {tc}: the number of "
                f"frames must be 1 + {tc}k (1, 5, 9, ...), got {frames}"
            )
        return 1 + (frames - 1) // tc

    def num_frames(self, latent_frames: int) -> int:
        """``1 + 4 (latent_frames - 1)`` video frames for ``latent_frames >= 1``."""
        return 1 + self.temporal_compression * (latent_frames - 1)

    # --- weights ---
    def load_vae_weights(self, path: str | os.PathLike) -> None:
        """Load released (diffusers-format) VAE weights from a local file or directory.

        Reads safetensors only (never unpickles, never downloads); every tensor of the VAE
        must be present with its shape.

        Raises:
            CheckpointError: the file is missing or corrupt, or names/shapes do not match.
        """
        path = vae_weights_file(path)
        ckpt.load_state_strict(self.vae, ckpt.load_tensors(path), str(path))

    def save_vae_weights(self, path: str | os.PathLike) -> Path:
        """Write the VAE's weights (diffusers' names) to a ``.safetensors`` file, atomically."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tensors = {k: v.detach().contiguous() for k, v in self.vae.state_dict().items()}
        ckpt.save_tensors_atomic(tensors, path, {"format": "pt"})
        return path

    # --- normalisation ---
    def _normalise(self, z: torch.Tensor) -> torch.Tensor:
        """VAE latents ``[B, C, T', h, w]`` -> normalised ``[B, T', C, h, w]``."""
        z = (z.float() - self.latent_mean[:, None, None, None]) / self.latent_std[
            :, None, None, None
        ]
        return z.permute(0, 2, 1, 3, 4)

    def _denormalise(self, latents: torch.Tensor) -> torch.Tensor:
        """Normalised ``[B, T', C, h, w]`` -> VAE latents ``[B, C, T', h, w]`` in the VAE's dtype."""
        z = latents.to(self.device).float().permute(0, 2, 1, 3, 4)
        z = z * self.latent_std[:, None, None, None] + self.latent_mean[:, None, None, None]
        return z.to(self.dtype)

    def _check_latents(self, latents: torch.Tensor) -> None:
        _check_temporal(latents, self.latent_shape, "latents")
        if latents.shape[1] < 1:
            raise ShapeError("latents must hold at least one latent frame, got T=0")
        if latents.is_floating_point() and not torch.isfinite(latents).all():
            raise ShapeError("latents contain NaN or inf")

    # --- codec interface ---
    def encode(self, frames: torch.Tensor | np.ndarray) -> torch.Tensor:
        """uint8 frames ``[B, 1 + 4k, H, W, 3]`` -> normalised latents ``[B, 1 + k, 16, H/8, W/8]``.

        Deterministic: the posterior's mean. Causal: latent ``j`` depends only on frames up to
        ``4j``, so encoding a prefix of a clip gives the prefix of its latents.
        """
        frames = self.check_frames(frames).to(self.device)
        video = frames.permute(0, 4, 1, 2, 3).to(self.dtype) / 127.5 - 1.0  # [B, 3, T, H, W]
        z = self.vae.encode(video).latent_dist.mode()
        return self._normalise(z)

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Normalised latents ``[B, T', 16, h, w]`` -> uint8 frames ``[B, 1 + 4(T'-1), H, W, 3]``."""
        self._check_latents(latents)
        video = self.vae.decode(self._denormalise(latents)).sample  # [B, 3, T, H, W] in [-1, 1]
        return _to_uint8(video)

    def decode_step(
        self,
        latent: torch.Tensor,
        cache: WanDecodeCache | None = None,
    ) -> tuple[torch.Tensor, WanDecodeCache]:
        """Decode one latent frame per row, continuing from ``cache``.

        Args:
            latent: normalised latent ``[B, 16, h, w]``.
            cache: the decoder memory after the previous latent frames; ``None`` for the
                first latent frame of a clip.

        Returns:
            ``(frames, cache)``: uint8 ``[B, 1, H, W, 3]`` for the first latent frame, ``[B, 4,
            H, W, 3]`` after it; frames equal :meth:`decode` of the whole clip.
        """
        if not isinstance(latent, torch.Tensor) or latent.ndim != 4:
            got = tuple(latent.shape) if isinstance(latent, torch.Tensor) else type(latent).__name__
            raise ShapeError(
                f"latent must be [B, {', '.join(map(str, self.latent_shape))}], got {got}"
            )
        self._check_latents(latent[:, None])
        first = cache is None
        if first:
            features: list[Any] = [None] * self.vae._cached_conv_counts["decoder"]
        else:
            # The decoder replaces entries of the list; the caller's cache stays as it was.
            features = list(cache.features)
            batch = next(
                (f.shape[0] for f in features if isinstance(f, torch.Tensor)), latent.shape[0]
            )
            if batch != latent.shape[0]:
                raise ShapeError(f"the cache holds {batch} rows but latent has {latent.shape[0]}")
        x = self.vae.post_quant_conv(self._denormalise(latent[:, None]))
        out = self.vae.decoder(x, feat_cache=features, feat_idx=[0], first_chunk=first)
        return _to_uint8(out.clamp(-1.0, 1.0)), WanDecodeCache(tuple(features))

    def decode_cache_shapes(self) -> tuple[tuple[int, ...] | None, ...]:
        """Per-row shapes ``(C, 2, h, w)`` of the cache entries after two latent frames
        (``None`` for entries the decoder never fills), found on the ``meta`` device.

        After two latent frames every used entry holds the last two frames of its
        convolution's input; :meth:`pack_decode_cache` brings a cache after one latent frame
        to the same shapes, so rows at any point of their clips batch together.
        """
        if self._cache_shapes is None:
            from diffusers import AutoencoderKLWan

            with torch.device("meta"):
                vae = AutoencoderKLWan.from_config(self.vae.config)
            z = torch.zeros(1, self.latent_shape[0], 1, *self.latent_shape[1:], device="meta")
            features: list[Any] = [None] * vae._cached_conv_counts["decoder"]
            for first in (True, False):
                vae.decoder(
                    vae.post_quant_conv(z), feat_cache=features, feat_idx=[0], first_chunk=first
                )
            self._cache_shapes = tuple(
                tuple(f.shape[1:]) if isinstance(f, torch.Tensor) else None for f in features
            )
        return self._cache_shapes

    def pack_decode_cache(self, cache: WanDecodeCache) -> tuple[torch.Tensor | None, ...]:
        """The cache with every used entry a tensor of :meth:`decode_cache_shapes` (plus the
        batch), equivalent to ``cache`` for later steps.

        A causal convolution pads missing past frames with zeros, so a one-frame entry
        equals that frame behind a zero frame, and the ``"Rep"`` marker (no past at all)
        equals two zero frames. Pass the result back as ``WanDecodeCache(packed)``.
        """
        like = next((f for f in cache.features if isinstance(f, torch.Tensor)), None)
        out: list[torch.Tensor | None] = []
        for entry, shape in zip(cache.features, self.decode_cache_shapes()):
            if shape is None:
                out.append(None)
            elif isinstance(entry, str) and like is not None:
                out.append(like.new_zeros((like.shape[0], *shape)))
            elif isinstance(entry, torch.Tensor):
                missing = shape[1] - entry.shape[2]
                if missing > 0:
                    pad = entry.new_zeros((entry.shape[0], shape[0], missing, *shape[2:]))
                    entry = torch.cat([pad, entry], dim=2)
                out.append(entry)
            else:
                raise ValueError("pack_decode_cache needs a cache after at least one latent frame")
        return tuple(out)


def _to_uint8(video: torch.Tensor) -> torch.Tensor:
    """Float video ``[B, 3, T, H, W]`` in [-1, 1] -> uint8 frames ``[B, T, H, W, 3]``."""
    frames = ((video.float().clamp(-1, 1) + 1.0) * 127.5).round().to(torch.uint8)
    return frames.permute(0, 2, 3, 4, 1)
