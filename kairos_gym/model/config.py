"""Typed configuration of the world model: codec shapes, denoiser shapes, sampler defaults.

One frozen dataclass, :class:`WorldModelConfig`, describes a whole model; it is saved as
``config.json`` beside every checkpoint and validated on construction. Named presets:

============ ===================================================================
``tiny``     unit tests: milliseconds per call
``small``    the CPU default model (64x64 frames -> 8x8x16 latents)
``base``     a GPU-sized model (128x128 frames)
``kairos-4b`` the released Kairos DiT's shapes (32 x 2560, 20 heads, W=3, d=4) over the
             Wan2.1 VAE (``codec="wan"``: 8x spatial, 4x temporal compression)
``tiny-wan`` ``tiny`` over a random-weight miniature of the Wan VAE (tests of
             temporal compression 4)
============ ===================================================================

The codec is chosen by ``codec``: ``"conv"`` (:class:`~kairos_gym.model.codec.ConvCodec`,
per frame) or ``"wan"`` (:class:`~kairos_gym.model.video_codec.WanVideoCodec`). Combinations
a codec cannot build are refused here, before any weight is allocated.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from typing import Any

LAYER_KINDS = ("swa", "dswa", "gated", "full")
CODECS = ("conv", "wan")
"""Codec kinds: ``conv`` (per-frame convolutional autoencoder), ``wan`` (the Wan2.1 video VAE)."""
WAN_SPATIAL_COMPRESSION = 8
"""Pixels per latent cell of the Wan2.1 VAE along each side (three spatial halvings)."""
WAN_TEMPORAL_COMPRESSION = 4
"""Frames per latent frame of the Wan2.1 VAE after its first frame (two temporal halvings)."""
WAN_LATENT_CHANNELS = 16
"""Latent channels of the Wan2.1 VAE (its per-channel statistics have 16 entries)."""
SAMPLER_FIELDS = frozenset({"sample_steps", "timestep_shift", "context_sigma", "guidance_scale"})
"""Config fields that only set how frames are sampled: they may change on a trained model
(``WorldModel.with_config``) and do not count as its shape (fine-tuning's ``init`` check)."""
ADDED_PATHWAY_FIELDS = frozenset({"proprio_conditioning", "proprio_hidden"})
"""Config fields that only add a pathway with parameters of its own: fine-tuning may start
from a checkpoint without it (the new parameters keep their initialisation, which leaves
the model's output unchanged)."""


@dataclass(frozen=True)
class WorldModelConfig:
    """Every shape and default of a Kairos-architecture world model.

    The temporal layer of block ``i`` is ``layer_pattern[i % len(layer_pattern)]``:
    ``swa`` attends to frames ``t-W+1 .. t``; ``dswa`` to ``t, t-d, .., t-(W-1)d``;
    ``gated`` is a Gated DeltaNet over the raster token order (the persistent memory);
    ``full`` attends to every past frame (a baseline whose cost grows with the episode).
    """

    # --- frames and codec ---
    image_size: tuple[int, int] = (64, 64)
    """Frame height and width in pixels."""
    latent_channels: int = 16
    """Channels of one latent frame."""
    spatial_compression: int = 8
    """Pixels per latent cell along each side (the codec's downsampling)."""
    temporal_compression: int = 1
    """Video frames (= environment steps) per latent frame; 4 for the Wan2.1 VAE."""
    codec_channels: tuple[int, ...] = (32, 64, 128)
    """Widths of the convolutional codec's stages (one stride-2 stage each)."""
    codec: str = "conv"
    """Codec kind: ``conv`` (per frame, needs ``temporal_compression=1``) or ``wan`` (the
    Wan2.1 video VAE: ``spatial_compression=8``, ``temporal_compression=4``, 16 channels)."""
    wan_base_dim: int = 96
    """Width of the Wan VAE's first stage (96 in the released VAE; small for tests)."""
    wan_dim_mult: tuple[int, ...] = (1, 2, 4, 4)
    """Width multipliers of the Wan VAE's four stages (the released VAE's by default)."""
    wan_res_blocks: int = 2
    """Residual blocks per Wan VAE stage (2 in the released VAE)."""

    # --- denoiser ---
    patch_size: int = 2
    """Spatial patch size over the latent grid."""
    dim: int = 256
    """Transformer width."""
    num_layers: int = 8
    """Number of blocks."""
    num_heads: int = 4
    """Attention heads of the window-attention blocks."""
    ffn_dim: int = 1024
    """Hidden width of each block's feed-forward network."""
    layer_pattern: tuple[str, ...] = ("swa", "swa", "dswa", "gated")
    """Temporal mixer per block, repeated over the depth."""
    window: int = 3
    """Window W in latent frames (the current frame included)."""
    dilation: int = 4
    """Stride d between the frames a dilated window sees."""
    gdn_num_heads: int = 4
    """Heads of the Gated DeltaNet layers."""
    gdn_head_dim: int = 32
    """Key/query width per Gated DeltaNet head."""
    gdn_expand_v: int = 2
    """Value width = ``gdn_expand_v * gdn_head_dim``."""
    gdn_conv_size: int = 4
    """Kernel of the short causal convolutions on q, k, v."""
    freq_dim: int = 256
    """Width of the sinusoidal flow-time features."""
    action_dim: int = 7
    """Dimension of one environment action."""
    state_dim: int = 0
    """Size of the proprioceptive state vector the outcome head also predicts (0: none)."""
    proprio_conditioning: bool = False
    """Carry the proprioceptive state through a learned low-dimensional dynamics model
    (:class:`~kairos_gym.model.proprio.ProprioDynamics`) and condition every frame on it, so
    the motion an action causes reaches the frames directly (needs ``state_dim > 0``)."""
    proprio_hidden: int = 256
    """Hidden width of the proprioceptive dynamics model."""
    state_outcomes: bool = False
    """Read an imagined step's reward, success and termination from the carried state (heads
    of :class:`~kairos_gym.model.proprio.ProprioDynamics`, fitted with it on the simulator's
    labels) instead of from the frame's features. Where the state holds what the task is
    about (a Lift cube's height), success then follows the physics the actions caused rather
    than what the frames look like (needs ``proprio_conditioning``)."""
    proprio_object_frame: tuple[int, int] | None = None
    """``(object_start, gripper_start)``: the dynamics also sees the object's position in the
    gripper's frame, computed from the carried state, which holds the object's position at
    ``object_start`` and the gripper's position and axis-angle at ``gripper_start`` (robosuite
    with ``object_state``: ``(0, K)``, ``K`` the object state's width). Whether a grasp holds
    depends on that offset; see :func:`~kairos_gym.model.proprio.object_in_gripper_frame`."""
    proprio_position_targets: tuple[int, int, int] | None = None
    """``(state_start, action_start, width)``: the state entries from ``state_start`` are
    positions that the action entries from ``action_start`` command in the same units
    (absolute joint-position actions: ALOHA with ``object_state`` is ``(K, 0, 14)``, ``K`` the
    object state's width). The dynamics predicts them as the commanded target plus a learned
    residual rather than as the previous state plus a step, so its error stays bounded over
    long episodes instead of accumulating (see :class:`~kairos_gym.model.proprio.ProprioDynamics`)."""
    proprio_arm_entries: tuple[int, int] | None = None
    """``(start, stop)``: the carried state's entries ``[start, stop)`` hold the arm's pose
    (robosuite with ``object_state``: ``(K, K + 6)``, the end effector's position and
    axis-angle); a second network predicts them from the robot's entries ``[start, state_dim)``
    and the action only, blind to the objects laid before ``start``, so the imagined arm goes
    where the actions send it rather than towards the object the expert data always reached
    (see :class:`~kairos_gym.model.proprio.ProprioDynamics`)."""
    proprio_action_history: bool = False
    """The dynamics also reads the previous action and the difference of states before the last
    one: where an arm ends a step depends on how fast it moves at the step's start, which the
    last difference only averages over the step before. Under jittery actions (execution
    noise, a weak policy) that average is a poor guess; on Lift the history removes about 40%
    of the end effector's one-step error (``results/lift_dream/README.md``). The imagined state
    carries the previous action beside the two latest states (zero, with the arm at rest, after
    a reset)."""
    proprio_stochastic: bool = False
    """The dynamics also predicts how far the next state may lie from its prediction (a
    standard deviation per entry) and the imagined env draws the carried state from that
    distribution instead of taking the prediction. The state leaves out what decides a step
    exactly, so the real next state scatters around any prediction from it, most under jittery
    actions; a deterministic dynamics imagines the average and its noisy arm grasps more
    cleanly than the real one (see :class:`~kairos_gym.model.proprio.ProprioDynamics`; fitted by
    ``[proprio] noise_steps``). Needs ``proprio_conditioning``."""
    proprio_noise_entries: tuple[int, int] | None = None
    """``(start, stop)``: with ``proprio_stochastic``, only the carried state's entries
    ``[start, stop)`` are drawn, the others take the prediction (``None``: every entry).
    robosuite with ``object_state``: ``(K, S)``, the robot's entries after the object's ``K``:
    the scatter comes from the arm, and an object moves only as the drawn arm moves it, where
    noise on a cube's own height would let it drift up off the table and succeed."""
    text_dim: int | None = None
    """Width of instruction tokens for cross-attention; ``None`` disables cross-attention."""
    rope_theta: float = 10000.0
    """Base of the rotary position frequencies."""
    eps: float = 1e-6
    """Epsilon of the normalisation layers."""

    # --- sampler defaults ---
    sample_steps: int = 4
    """Euler steps per imagined frame (1 to 50)."""
    timestep_shift: float = 3.0
    """Shift of the flow-time schedule toward the noisy end (1 = no shift)."""
    context_sigma: float = 0.05
    """Noise level at which a frame is committed to memory (fights drift)."""
    guidance_scale: float = 1.0
    """Classifier-free guidance on the action (1 = off)."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "image_size", _pair(self.image_size, "image_size"))
        object.__setattr__(self, "codec_channels", tuple(int(c) for c in self.codec_channels))
        object.__setattr__(self, "wan_dim_mult", tuple(int(c) for c in self.wan_dim_mult))
        object.__setattr__(self, "layer_pattern", tuple(str(k) for k in self.layer_pattern))
        for name in ("latent_channels", "spatial_compression", "temporal_compression", "patch_size",
                     "dim", "num_layers", "num_heads", "ffn_dim", "window", "dilation",
                     "gdn_num_heads", "gdn_head_dim", "gdn_expand_v", "gdn_conv_size",
                     "freq_dim", "action_dim", "wan_base_dim", "wan_res_blocks"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if not isinstance(self.state_dim, int) or self.state_dim < 0:
            raise ValueError(f"state_dim must be an integer >= 0, got {self.state_dim!r}")
        if self.proprio_conditioning and self.state_dim == 0:
            raise ValueError("proprio_conditioning needs a state (state_dim > 0)")
        if self.state_outcomes and not self.proprio_conditioning:
            raise ValueError("state_outcomes reads the carried state: it needs proprio_conditioning")
        if not isinstance(self.proprio_hidden, int) or self.proprio_hidden < 1:
            raise ValueError(f"proprio_hidden must be a positive integer, got {self.proprio_hidden!r}")
        if self.proprio_object_frame is not None:
            try:
                frame = tuple(int(i) for i in self.proprio_object_frame)
            except (TypeError, ValueError):
                frame = ()
            if len(frame) != 2 or not self.proprio_conditioning or min(frame) < 0 or (
                    frame[0] + 3 > self.state_dim or frame[1] + 6 > self.state_dim):
                raise ValueError(
                    f"proprio_object_frame must be (object_start, gripper_start) with the object's "
                    f"3 and the gripper's 6 values inside the state ({self.state_dim}) of a model "
                    f"with proprio_conditioning, got {self.proprio_object_frame!r}")
            object.__setattr__(self, "proprio_object_frame", frame)
        if self.proprio_position_targets is not None:
            try:
                targets = tuple(int(i) for i in self.proprio_position_targets)
            except (TypeError, ValueError):
                targets = ()
            if len(targets) != 3 or not self.proprio_conditioning or min(targets) < 0 or (
                    targets[2] < 1 or targets[0] + targets[2] > self.state_dim
                    or targets[1] + targets[2] > self.action_dim_per_latent):
                raise ValueError(
                    f"proprio_position_targets must be (state_start, action_start, width) inside "
                    f"the state ({self.state_dim}) and the action ({self.action_dim_per_latent}) of "
                    f"a model with proprio_conditioning, got {self.proprio_position_targets!r}")
            object.__setattr__(self, "proprio_position_targets", targets)
        if self.proprio_arm_entries is not None:
            try:
                arm = tuple(int(i) for i in self.proprio_arm_entries)
            except (TypeError, ValueError):
                arm = ()
            if len(arm) != 2 or not self.proprio_conditioning or not 0 < arm[0] < arm[1] <= self.state_dim:
                raise ValueError(
                    f"proprio_arm_entries must be (start, stop) with 0 < start < stop <= the state's "
                    f"width ({self.state_dim}) in a model with proprio_conditioning, got "
                    f"{self.proprio_arm_entries!r}")
            object.__setattr__(self, "proprio_arm_entries", arm)
        history = self.proprio_action_history
        if not isinstance(history, bool) or (
                history and (not self.proprio_conditioning or self.temporal_compression > 1)):
            raise ValueError(f"proprio_action_history must be true or false, and true only with "
                             f"proprio_conditioning and one frame per latent (temporal_compression "
                             f"= 1); got {history!r}")
        if not isinstance(self.proprio_stochastic, bool) or (
                self.proprio_stochastic and not self.proprio_conditioning):
            raise ValueError(f"proprio_stochastic must be true or false, and true only with "
                             f"proprio_conditioning; got {self.proprio_stochastic!r}")
        if self.proprio_noise_entries is not None:
            try:
                entries = tuple(int(i) for i in self.proprio_noise_entries)
            except (TypeError, ValueError):
                entries = ()
            if len(entries) != 2 or not self.proprio_stochastic or not 0 <= entries[0] < entries[1] <= self.state_dim:
                raise ValueError(
                    f"proprio_noise_entries must be (start, stop) with 0 <= start < stop <= the state's "
                    f"width ({self.state_dim}) in a model with proprio_stochastic, got "
                    f"{self.proprio_noise_entries!r}")
            object.__setattr__(self, "proprio_noise_entries", entries)
        bad = [k for k in self.layer_pattern if k not in LAYER_KINDS]
        if not self.layer_pattern or bad:
            raise ValueError(f"layer_pattern entries must be in {LAYER_KINDS}, got {self.layer_pattern!r}")
        if self.dim % self.num_heads:
            raise ValueError(f"dim ({self.dim}) must be divisible by num_heads ({self.num_heads})")
        if (self.dim // self.num_heads) % 2:
            raise ValueError(f"head dim {self.dim // self.num_heads} must be even for rotary embeddings")
        h, w = self.image_size
        if h % self.spatial_compression or w % self.spatial_compression:
            raise ValueError(
                f"image_size {self.image_size} must be divisible by spatial_compression "
                f"({self.spatial_compression})")
        lh, lw = h // self.spatial_compression, w // self.spatial_compression
        if lh % self.patch_size or lw % self.patch_size:
            raise ValueError(f"latent grid {(lh, lw)} must be divisible by patch_size ({self.patch_size})")
        self._check_codec()
        if not 1 <= self.sample_steps <= 50:
            raise ValueError(f"sample_steps must be in 1..50, got {self.sample_steps}")
        if self.timestep_shift <= 0:
            raise ValueError(f"timestep_shift must be > 0, got {self.timestep_shift}")
        if not 0.0 <= self.context_sigma < 1.0:
            raise ValueError(f"context_sigma must be in [0, 1), got {self.context_sigma}")
        if self.text_dim is not None and self.text_dim < 1:
            raise ValueError(f"text_dim must be positive or None, got {self.text_dim}")

    def _check_codec(self) -> None:
        """Refuse a codec/compression combination the codec cannot build (cheap: no weights)."""
        if self.codec not in CODECS:
            raise ValueError(f"codec must be one of {CODECS}, got {self.codec!r}")
        if self.codec == "conv":
            if self.temporal_compression != 1:
                raise ValueError(
                    f"codec 'conv' encodes frames one by one (temporal_compression 1), but "
                    f"temporal_compression is {self.temporal_compression}; use codec='wan' for 4")
            if 2 ** len(self.codec_channels) != self.spatial_compression:
                raise ValueError(
                    f"the codec halves the resolution once per entry of codec_channels: "
                    f"{len(self.codec_channels)} stages give {2 ** len(self.codec_channels)}x, "
                    f"but spatial_compression is {self.spatial_compression}")
            return
        wanted = {"spatial_compression": WAN_SPATIAL_COMPRESSION,
                  "temporal_compression": WAN_TEMPORAL_COMPRESSION,
                  "latent_channels": WAN_LATENT_CHANNELS}
        for name, value in wanted.items():
            if getattr(self, name) != value:
                raise ValueError(
                    f"codec 'wan' (the Wan2.1 VAE) has {name}={value}, but the config asks "
                    f"for {getattr(self, name)}")
        if len(self.wan_dim_mult) != 4 or min(self.wan_dim_mult) < 1:
            raise ValueError(
                f"wan_dim_mult must hold 4 positive multipliers (three spatial halvings), got "
                f"{self.wan_dim_mult!r}")

    # --- derived shapes ---
    @property
    def latent_shape(self) -> tuple[int, int, int]:
        """``(C, h, w)`` of one latent frame."""
        h, w = self.image_size
        s = self.spatial_compression
        return (self.latent_channels, h // s, w // s)

    @property
    def frame_shape(self) -> tuple[int, int, int]:
        """``(H, W, 3)`` of one video frame."""
        return (*self.image_size, 3)

    @property
    def grid(self) -> tuple[int, int]:
        """Token grid ``(h', w')`` of one latent frame after patchifying."""
        _, h, w = self.latent_shape
        return (h // self.patch_size, w // self.patch_size)

    @property
    def tokens_per_frame(self) -> int:
        """Tokens one latent frame becomes."""
        gh, gw = self.grid
        return gh * gw

    @property
    def head_dim(self) -> int:
        """Width of one window-attention head."""
        return self.dim // self.num_heads

    @property
    def action_dim_per_latent(self) -> int:
        """Width of the action vector conditioning one latent frame (``action_dim * temporal_compression``)."""
        return self.action_dim * self.temporal_compression

    def layer_kind(self, index: int) -> str:
        """Temporal mixer kind of block ``index``."""
        return self.layer_pattern[index % len(self.layer_pattern)]

    def memory_span(self, index: int) -> int:
        """Past latent frames block ``index`` must keep to step (0 for gated blocks, unbounded -1 for full)."""
        kind = self.layer_kind(index)
        if kind == "swa":
            return self.window - 1
        if kind == "dswa":
            return (self.window - 1) * self.dilation
        if kind == "full":
            return -1
        return 0

    # --- presets and serialisation ---
    @classmethod
    def preset(cls, name: str, **overrides: Any) -> WorldModelConfig:
        """A named preset (``tiny``, ``tiny-wan``, ``small``, ``base``, ``kairos-4b``), with field
        overrides; the result is validated (a bad combination raises ``ValueError`` here)."""
        if name not in PRESETS:
            raise ValueError(f"unknown preset {name!r}; choose one of {sorted(PRESETS)}")
        return dataclasses.replace(PRESETS[name], **overrides)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict of every field."""
        return {f.name: _jsonable(getattr(self, f.name)) for f in dataclasses.fields(self)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> WorldModelConfig:
        """Rebuild from :meth:`to_dict` output; unknown keys are an error, missing keys take defaults."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ValueError(f"unknown WorldModelConfig fields: {unknown}")
        return cls(**data)

    def to_json(self) -> str:
        """The config as indented JSON."""
        return json.dumps(self.to_dict(), indent=2)


def _pair(value: Any, name: str) -> tuple[int, int]:
    if isinstance(value, int):
        return (value, value)
    try:
        h, w = (int(v) for v in value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be an int or a pair of ints, got {value!r}") from None
    if h < 1 or w < 1:
        raise ValueError(f"{name} must be positive, got {value!r}")
    return (h, w)


def _jsonable(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


PRESETS: dict[str, WorldModelConfig] = {
    "tiny": WorldModelConfig(
        image_size=(16, 16), latent_channels=4, spatial_compression=4, codec_channels=(8, 16),
        patch_size=1, dim=32, num_layers=4, num_heads=2, ffn_dim=64, window=2, dilation=2,
        gdn_num_heads=2, gdn_head_dim=8, freq_dim=32, sample_steps=2,
    ),
    "tiny-wan": WorldModelConfig(
        image_size=(16, 16), latent_channels=16, spatial_compression=8, temporal_compression=4,
        codec="wan", wan_base_dim=8, wan_dim_mult=(1, 1, 1, 1), wan_res_blocks=1,
        patch_size=1, dim=32, num_layers=4, num_heads=2, ffn_dim=64, window=2, dilation=2,
        gdn_num_heads=2, gdn_head_dim=8, freq_dim=32, sample_steps=2,
    ),
    "small": WorldModelConfig(),
    "base": WorldModelConfig(
        image_size=(128, 128), codec_channels=(64, 128, 256), dim=768, num_layers=16, num_heads=12,
        ffn_dim=3072, gdn_num_heads=6, gdn_head_dim=64,
    ),
    "kairos-4b": WorldModelConfig(
        image_size=(480, 832), latent_channels=16, spatial_compression=8, temporal_compression=4,
        codec="wan", patch_size=2, dim=2560, num_layers=32, num_heads=20, ffn_dim=10240, window=3, dilation=4,
        gdn_num_heads=20, gdn_head_dim=256, gdn_expand_v=2, gdn_conv_size=4, text_dim=3584,
        sample_steps=4, timestep_shift=5.0,
    ),
}
