"""Typed training configuration, read from TOML files.

A training run is described by one :class:`TrainConfig`::

    seed = 0

    [model]
    preset = "small"
    dim = 192                    # any WorldModelConfig field overrides the preset

    [data]
    paths = ["data/lift/expert10.hdf5"]
    camera = "agentview"

    [codec]
    steps = 2000

    [world_model]
    steps = 3000
    clip_len = 16

    [proprio]                    # optional (proprio_conditioning models): fit the dynamics first
    steps = 3000

    [parallel]                   # optional: how a multi-process run splits the model
    strategy = "fsdp"            # "ddp" (default) or "fsdp" for models that outgrow a device
    activation_checkpointing = true
    precision = "bf16"

    [finetune]                   # optional: start from released weights, train part of them
    released_dit = "Kairos-4B/dit.safetensors"
    mode = "lora"                # "full" (default), "frozen" or "lora"
    lora_rank = 16

A model over the Wan VAE takes the released VAE's weights from the top-level key
``codec_weights = "path"`` (or ``kairos-gym train --codec-weights PATH``).

Relative paths are resolved against the directory of the file that names them. Unknown keys
are an error (a typo must not silently train with a default), and so are out-of-range values.

A config may start from another: ``base = "door.toml"`` (relative to its own directory) takes
that file's keys, and the file's own keys replace them one by one (``[proprio] lr = 1e-4``
changes the rate and keeps the rest of ``[proprio]``; a list such as ``[data] paths`` is
replaced whole). A variant of a run is then the lines it changes (:func:`read_config_toml`).
"""

from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

try:  # Python 3.11+
    import tomllib
except ModuleNotFoundError:  # pragma: no cover - Python 3.10
    import tomli as tomllib

from kairos_gym.imagined.success import SuccessRule
from kairos_gym.model.config import PRESETS, WorldModelConfig


@dataclass(frozen=True)
class DataConfig:
    """Which episodes to train on."""

    paths: tuple[str, ...] = ()
    """HDF5 episode files (kairos-gym, LIBERO or robomimic layout) of one environment."""
    camera: str = "agentview"
    """The camera the model learns to generate."""
    val_fraction: float = 0.1
    """Fraction of episodes held out for validation (a stable per-episode hash)."""
    split_seed: int = 0
    """Seed of the train/validation split."""
    reset_observations: int = 64
    """How many training episodes' first observations the env checkpoint keeps for ``reset()``."""
    weights: tuple[float, ...] | None = None
    """Each file's share of the training batches, one positive number per path (normalised to
    sum to 1; within a file every clip is equally likely). Unset: every clip of every file is
    equally likely, so a file's share is its share of the clips. A mixture of embodiments or
    tasks sets it so that a small dataset is not drowned by a large one."""
    state_keys: tuple[str, ...] | None = None
    """The non-image observation keys the model's state is made of (in the observation
    space's sorted order, whatever the order here). Unset: every non-image key of the data.
    Files recorded with a key the model leaves out (``joints``, ``object_state``) then train
    beside files without it, and the checkpoint's env spec drops the key and the env option
    that adds it (:func:`~kairos_gym.data.spaces.restrict_to_state_keys`)."""

    def __post_init__(self) -> None:
        if self.state_keys is not None:
            keys = self.state_keys
            if (isinstance(keys, (str, bytes)) or not isinstance(keys, (list, tuple))
                    or not all(isinstance(k, str) and k for k in keys) or len(set(keys)) != len(keys)):
                raise ValueError(f"[data] state_keys must be a list of distinct observation keys, got {keys!r}")
            object.__setattr__(self, "state_keys", tuple(keys))
        if self.weights is None:
            return
        weights = self.weights
        if isinstance(weights, (str, bytes)) or not isinstance(weights, (list, tuple)):
            # ValueError, as for every bad config value: callers report one exception type.
            raise ValueError(f"[data] weights must be a list of numbers, got {weights!r}")  # noqa: TRY004
        if len(weights) != len(self.paths):
            raise ValueError(f"[data] weights has {len(weights)} entries for {len(self.paths)} paths; "
                             "give one weight per path")
        for w in weights:
            if isinstance(w, bool) or not isinstance(w, (int, float)) or not math.isfinite(w) or w <= 0:
                raise ValueError(f"[data] weights must be positive finite numbers, got {w!r}")
        object.__setattr__(self, "weights", tuple(float(w) for w in weights))


@dataclass(frozen=True)
class OptimConfig:
    """AdamW with linear warm-up and cosine decay to ``min_lr_ratio * lr``."""

    steps: int = 1000
    """Optimizer steps of the stage."""
    batch_size: int = 32
    """Global batch (split evenly over data-parallel processes)."""
    lr: float = 1e-3
    """Peak learning rate."""
    weight_decay: float = 0.0
    """AdamW weight decay."""
    warmup_steps: int = 100
    """Steps of linear learning-rate warm-up."""
    min_lr_ratio: float = 0.1
    """Final learning rate as a fraction of the peak."""
    grad_clip: float = 1.0
    """Global gradient-norm clip (0: none)."""
    log_every: int = 25
    """Steps between logged training losses."""
    checkpoint_every: int = 200
    """Steps between resumable checkpoints (and one at the end)."""
    eval_every: int = 500
    """Steps between held-out evaluations (and one at the end; 0: only at the end)."""

    def learning_rate(self, step: int) -> float:
        """Learning rate of optimizer step ``step`` (0-based)."""
        if step < self.warmup_steps:
            return self.lr * (step + 1) / self.warmup_steps
        span = max(1, self.steps - self.warmup_steps)
        progress = min(1.0, (step - self.warmup_steps) / span)
        cosine = 0.5 * (1.0 + math.cos(math.pi * progress))
        return self.lr * (self.min_lr_ratio + (1.0 - self.min_lr_ratio) * cosine)


@dataclass(frozen=True)
class CodecTrainConfig(OptimConfig):
    """Stage 1: the frame codec, trained on single frames with a reconstruction loss."""

    eval_frames: int = 256
    """Held-out frames scored (PSNR) at each evaluation."""
    statistics_frames: int = 2048
    """Training frames used to fit the latent normalisation at the end."""


@dataclass(frozen=True)
class WorldModelTrainConfig(OptimConfig):
    """Stage 2: the denoiser and its heads, by diffusion forcing on clips, codec frozen."""

    steps: int = 3000
    """Optimizer steps of the stage; with an ``init``, 0 keeps its frames as they are (a run
    that only refits the proprioceptive dynamics' heads)."""
    batch_size: int = 8
    lr: float = 3e-4
    weight_decay: float = 0.01
    warmup_steps: int = 200
    clip_len: int = 16
    """Frames per training clip."""
    context_fraction: float = 0.5
    """Probability that a frame is drawn as (lightly noised) context rather than a
    denoising target; the clip's first frame always is, as at reset."""
    context_noise_max: float = 0.2
    """Context-noise augmentation: context frames get a noise level in ``[0, max]``, so the
    model learns to read imperfect (imagined) memories."""
    action_dropout: float = 0.1
    """Probability of replacing a frame's action with the learned no-action embedding
    (enables classifier-free guidance on the action)."""
    head_sigma_max: float = 0.25
    """Heads (reward, success, done, state) learn from frames at or below this noise level,
    the regime in which they are read (frames committed at ``context_sigma``)."""
    outcome_weight: float = 1.0
    """Weight of the reward/success/termination losses."""
    state_weight: float = 1.0
    """Weight of the state-head loss."""
    proprio_weight: float = 1.0
    """Weight of the proprioceptive dynamics loss (models with ``proprio_conditioning``):
    one-step predictions from true states plus an open-loop unroll over the clip."""
    proprio_noise: float = 0.05
    """Gaussian noise (normalised units) on the true states the frames are conditioned on."""
    proprio_self_fraction: float = 0.5
    """Fraction of clips conditioned on the dynamics model's own open-loop unroll instead of
    the true states, so frames learn to follow the states they will be given in imagination."""
    eval_episodes: int = 8
    """Held-out episodes rolled out open loop at each evaluation."""
    eval_horizon: int = 16
    """Open-loop horizon of the held-out evaluation."""


STRATEGIES = ("ddp", "fsdp")
"""Data-parallel strategies (see :mod:`kairos_gym.train.distributed`)."""
PRECISIONS = ("fp32", "bf16")
"""Compute precisions: float32 throughout, or bf16 compute over float32 weights."""


@dataclass(frozen=True)
class ParallelConfig:
    """How training uses several processes and saves memory (``[parallel]`` in TOML)."""

    strategy: str = "ddp"
    """``ddp``: every process holds the whole model; ``fsdp``: parameters, gradients and
    optimizer state are sharded over the processes (the ``kairos-4b`` preset)."""
    activation_checkpointing: bool = False
    """Recompute the denoiser blocks' activations in the backward pass (less memory, about
    a third more compute)."""
    precision: str = "fp32"
    """``fp32`` or ``bf16`` (bf16 compute, float32 weights and gradient reduction)."""

    def __post_init__(self) -> None:
        if self.strategy not in STRATEGIES:
            raise ValueError(f"parallel.strategy must be one of {STRATEGIES}, got {self.strategy!r}")
        if self.precision not in PRECISIONS:
            raise ValueError(f"parallel.precision must be one of {PRECISIONS}, got {self.precision!r}")
        if type(self.activation_checkpointing) is not bool:
            raise ValueError("parallel.activation_checkpointing must be true or false, got "
                             f"{self.activation_checkpointing!r}")


FINETUNE_MODES = ("full", "frozen", "lora")
"""What trains when a run starts from existing weights (see :class:`FinetuneConfig`)."""

EXPORT_DTYPES = ("float32", "bfloat16")
"""``export_dtype`` values: names of the ``torch`` dtypes an exported model is stored in."""
DEFAULT_LORA_TARGETS = (
    "self_attn.q", "self_attn.k", "self_attn.v", "self_attn.o",
    "gated_delta.q_proj", "gated_delta.k_proj", "gated_delta.v_proj", "gated_delta.o_proj",
    "ffn.0", "ffn.2",
)
"""The attention, Gated DeltaNet and MLP linears of every denoiser block (names inside a block)."""


@dataclass(frozen=True)
class FinetuneConfig:
    """Fine-tuning from existing denoiser weights (``[finetune]`` in TOML).

    The starting weights are the released Kairos DiT (``released_dit``) or an environment
    checkpoint (the top-level ``init``). ``mode`` decides what trains:

    - ``full``: every parameter of the denoiser and heads;
    - ``frozen``: only the parameters the starting weights do not have: the new pathway
      (action conditioning and outcome head over a released DiT; the proprioceptive pathway
      added over an ``init``); every starting weight stays exactly as loaded;
    - ``lora``: the new pathway plus low-rank adapters (:mod:`kairos_gym.train.finetune`) on
      the ``lora_targets`` linears of every block; the starting weights stay frozen and the
      adapters are merged into them when the environment checkpoint is written.
    """

    mode: str = "full"
    """``full``, ``frozen`` or ``lora``."""
    released_dit: str | None = None
    """A released Kairos DiT ``.safetensors`` (local file; ``video_dit.`` prefixes stripped,
    ``action_dit.*`` dropped) the denoiser starts from. Needs ``model.codec = "wan"`` (the
    release denoises Wan VAE latents); not together with ``init``."""
    lora_rank: int = 16
    """Rank r of each adapter (``lora`` mode)."""
    lora_alpha: float = 16.0
    """Adapter scale numerator: the update is ``(lora_alpha / lora_rank) * B @ A``."""
    lora_targets: tuple[str, ...] = DEFAULT_LORA_TARGETS
    """Linears that get adapters, named inside a block (``self_attn.q``, ``ffn.0``, ...);
    each must be a linear of at least one block of the model."""

    def __post_init__(self) -> None:
        if self.mode not in FINETUNE_MODES:
            raise ValueError(f"finetune.mode must be one of {FINETUNE_MODES}, got {self.mode!r}")
        rank = self.lora_rank
        if isinstance(rank, bool) or not isinstance(rank, int) or rank < 1:
            raise ValueError(f"finetune.lora_rank must be a positive integer, got {rank!r}")
        if (
            isinstance(self.lora_alpha, bool)
            or not isinstance(self.lora_alpha, (int, float))
            or not math.isfinite(self.lora_alpha)
            or self.lora_alpha <= 0
        ):
            raise ValueError(f"finetune.lora_alpha must be a number > 0, got {self.lora_alpha!r}")
        targets = self.lora_targets
        if isinstance(targets, str) or not all(isinstance(t, str) and t for t in targets):
            raise ValueError(
                f"finetune.lora_targets must be a list of linear names inside a block "
                f"(e.g. {list(DEFAULT_LORA_TARGETS[:2])}), got {targets!r}"
            )
        object.__setattr__(self, "lora_targets", tuple(targets))
        object.__setattr__(self, "lora_alpha", float(self.lora_alpha))
        if self.mode == "lora" and not targets:
            raise ValueError("finetune.mode = 'lora' needs at least one finetune.lora_targets name")


@dataclass(frozen=True)
class ProprioTrainConfig(OptimConfig):
    """Stage 2a (models with ``proprio_conditioning``): the proprioceptive dynamics alone.

    Fitted on windows of whole episodes (one-step and open-loop unroll losses, as in the
    world-model stage but with far more windows per step, which a tiny network needs), before
    the frames learn to follow it; the world-model stage then keeps it frozen. ``steps = 0``
    (the default) skips the stage and trains the dynamics jointly with the frames instead;
    with an ``init``, ``steps = 0`` and ``noise_steps`` or ``outcome_steps`` keep the init's
    dynamics and fit only those heads on it.
    """

    steps: int = 0
    batch_size: int = 256
    lr: float = 1e-3
    warmup_steps: int = 50
    log_every: int = 100
    checkpoint_every: int = 500
    eval_every: int = 0
    window: int = 16
    """Actions per training window (the unroll length)."""
    input_noise: float = 0.0
    """Standard deviation (normalised units) of Gaussian noise on the states the one-step
    predictions start from, scored against the clean next states (see
    :func:`~kairos_gym.train.objectives.proprio_loss`): a dynamics that must run far past its
    training windows (hundreds of steps at 50 Hz) learns to correct a state that is off
    rather than carry the error on. 0: no noise."""
    outcome_steps: int = 0
    """``state_outcomes`` models: after the dynamics is fitted, refit its outcome head for this
    many steps on the states the dynamics itself imagines (every training episode unrolled
    open loop under its recorded actions from its start and from steps 20 and 40), together
    with the true states, against the real labels. The head then learns what an imagined state
    means, not only a real one: where the dynamics hedges between outcomes (a grasp that may
    or may not hold, imagined as a cube rising at half the arm's speed), the head answers how
    often such states succeeded. 0: the head learns on true states only."""
    noise_steps: int = 0
    """``proprio_stochastic`` models: after the dynamics is fitted (and before the outcome head
    is), fit its noise head for this many steps on the one-step errors of the fitted
    prediction over every training episode, by Gaussian likelihood: the head learns how far
    the real next state lies from the prediction, per entry and per situation (millimetres
    under an expert's smooth actions, several times more under jittery ones). The outcome head
    is then refitted on sampled unrolls, the states the imagined env will carry."""
    reset_windows: bool = False
    """Tell the loss which windows start at an episode's reset (see
    :func:`~kairos_gym.train.objectives.proprio_loss`). A window's first state has no previous
    one, so its first step is predicted from a zero previous difference: an arm at rest, as
    after a reset. Without this every window is scored so, and the dynamics learns that "at
    rest" may mean moving at any speed: replayed from a Lift reset, its first step misses by
    about a centimetre, and the gripper is 2-3 cm off after five steps. With it, mid-episode
    windows skip that step, and windows at a reset are unrolled from their one first state, as
    the imagined env does. False keeps the form earlier models were trained with."""
    reset_weight: float = 1.0
    """With ``reset_windows``: the weight of the windows that start at a reset against the
    others (one window of an episode's sixty-odd starts there, and every imagined episode
    does)."""
    reset_weight_steps: int = 0
    """With ``reset_weight``: weigh only this many of a reset window's first predicted states
    (0: the whole window). Weighted whole, a 96-step window at a reset takes about 29% of the
    loss at ten times, and the windows that reach a Door's opening lose a quarter of their
    share; every Door model so weighted lost the first BC family's calibration. Weighted on
    its first 8 steps only (``configs/door_adapt_reset_head.toml``), where every imagined
    episode starts, the Door dynamics kept that family and brought those steps closer."""
    step_normalised: bool = False
    """Measure one-step errors per state entry in units of that entry's typical step (the
    standard deviation of its one-step changes over the training windows, floored at a tenth
    of their median) instead of the state's own spread. An arm moves millimetres per step in
    a workspace of tens of centimetres: in state units a millimetre's error costs almost
    nothing, and forty such steps put the imagined gripper centimetres off. False keeps the
    loss earlier models were trained with."""
    refit: bool = False
    """Start the dynamics (and its outcome head) from fresh weights instead of the init's:
    a fine-tuning run with new data refits it rather than inheriting the old fit's biases."""
    paths: tuple[str, ...] = ()
    """State-only episode files (``kairos-gym collect --cameras none``: no rendering, several
    times cheaper) that this stage learns from besides ``data.paths``: what actions do to
    the state is learned from far more episodes than the frames are. Relative paths are
    resolved against the config file's directory."""

    @property
    def active(self) -> bool:
        """Whether the stage runs: it fits the dynamics or one of its heads."""
        return bool(self.steps or self.noise_steps or self.outcome_steps)


@dataclass(frozen=True)
class TrainConfig:
    """A whole training run: model shapes, data, and the two stages."""

    model: WorldModelConfig = field(default_factory=lambda: PRESETS["small"])
    """The model (a preset plus overrides in TOML; ``image_size``/``action_dim``/``state_dim``
    are taken from the data when not given)."""
    data: DataConfig = field(default_factory=DataConfig)
    codec: CodecTrainConfig = field(default_factory=CodecTrainConfig)
    world_model: WorldModelTrainConfig = field(default_factory=WorldModelTrainConfig)
    parallel: ParallelConfig = field(default_factory=ParallelConfig)
    """Data-parallel strategy, activation checkpointing and precision."""
    proprio: ProprioTrainConfig = field(default_factory=ProprioTrainConfig)
    """The proprioceptive dynamics stage (``[proprio]``; off unless it has steps to run)."""
    finetune: FinetuneConfig = field(default_factory=FinetuneConfig)
    """Released starting weights and what trains (``[finetune]``; default: everything)."""
    codec_weights: str | None = None
    """The released Wan2.1 VAE's weights (a local ``.safetensors`` file or diffusers VAE
    directory) for a model with ``codec = "wan"``; unset: the VAE of ``init``, or random
    weights (tests). Also ``kairos-gym train --codec-weights PATH``."""
    export_dtype: str = "float32"
    """Storage dtype of the exported denoiser's and codec's weights: ``"float32"`` or
    ``"bfloat16"`` (half the size, for embedded models; loaded back as float32). The
    proprioceptive dynamics, the state normalisation and the codec's latent normalisation stay
    float32: their rounding errors would compound over an episode or touch every latent. Not part of the run's identity: changing it and running again re-exports a
    finished run."""
    success_rule: str | None = None
    """How the exported checkpoint's imagined envs read success, ``"THRESHOLD[:HOLD]"``
    (:class:`~kairos_gym.imagined.success.SuccessRule`; unset: ``success_prob > 0.5`` for one
    step). A property of the trained model, found by measuring it (``eval/agreement.py
    --trace``, then ``--rescore``), never inherited from ``init``. Like ``export_dtype``, not
    part of the run's identity: set it and run again to re-export a finished run."""
    seed: int = 0
    """Seed of initialisation, batch order and noise: two runs with one config are identical."""
    model_preset: str = "small"
    """The preset the model config started from (for the record)."""
    model_overrides: dict[str, Any] = field(default_factory=dict)
    """Fields set on top of the preset."""
    init: str | None = None
    """An environment checkpoint to start from (fine-tuning): its codec is reused as it is
    (the codec stage is skipped) and the world model starts from its weights, including the
    state normalisation. Its model config must have the same shapes as ``model``, except that
    ``model`` may add the proprioceptive pathway (``proprio_conditioning``) it lacks."""

    def __post_init__(self) -> None:
        for stage in (self.codec, self.world_model):
            for name in ("steps", "batch_size", "log_every", "checkpoint_every"):
                value = getattr(stage, name)
                # An init brings trained frames: world_model.steps = 0 keeps them as they are.
                least = 0 if (name == "steps" and stage is self.world_model and self.init is not None) else 1
                if not isinstance(value, int) or value < least:
                    if stage is self.world_model and name == "steps":
                        raise ValueError(f"world_model.steps must be an integer >= 1 (0 keeps an init's "
                                         f"frames: it needs an init), got {value!r}")
                    raise ValueError(f"{name} must be a positive integer, got {value!r}")
            if not isinstance(stage.eval_every, int) or stage.eval_every < 0:
                raise ValueError(f"eval_every must be an integer >= 0, got {stage.eval_every!r}")
            if not stage.lr > 0 or stage.warmup_steps < 0 or not 0 <= stage.min_lr_ratio <= 1:
                raise ValueError("lr must be > 0, warmup_steps >= 0 and min_lr_ratio in [0, 1]")
        wm = self.world_model
        if wm.clip_len < 2:
            raise ValueError(f"world_model.clip_len must be >= 2, got {wm.clip_len}")
        for name in ("context_fraction", "action_dropout"):
            if not 0.0 <= getattr(wm, name) <= 1.0:
                raise ValueError(f"world_model.{name} must be in [0, 1], got {getattr(wm, name)}")
        if not 0.0 <= wm.context_noise_max < 1.0 or not 0.0 <= wm.head_sigma_max <= 1.0:
            raise ValueError("context_noise_max must be in [0, 1) and head_sigma_max in [0, 1]")
        pro = self.proprio
        if not isinstance(pro.steps, int) or pro.steps < 0:
            raise ValueError(f"proprio.steps must be an integer >= 0, got {pro.steps!r}")
        for name in ("noise_steps", "outcome_steps"):
            value = getattr(pro, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"proprio.{name} must be an integer >= 0, got {value!r}")
        if pro.noise_steps and not self.model.proprio_stochastic:
            raise ValueError("proprio.noise_steps fits the dynamics' noise head: it needs "
                             "[model] proprio_stochastic = true")
        if pro.refit and not pro.steps:
            raise ValueError("proprio.refit fits the dynamics anew: it needs proprio.steps > 0")
        if not pro.steps and (pro.noise_steps or pro.outcome_steps) and self.init is None:
            raise ValueError("proprio.noise_steps or outcome_steps with proprio.steps = 0 fit heads on "
                             "the init's dynamics: they need an init")
        if pro.active:
            if not self.model.proprio_conditioning:
                raise ValueError("[proprio] steps > 0 needs a model with proprio_conditioning = true")
            for name in ("batch_size", "log_every", "checkpoint_every", "window"):
                value = getattr(pro, name)
                if not isinstance(value, int) or value < 1:
                    raise ValueError(f"proprio.{name} must be a positive integer, got {value!r}")
            if pro.outcome_steps and not self.model.state_outcomes:
                raise ValueError("proprio.outcome_steps fits the state outcome head: it needs "
                                 "[model] state_outcomes = true")
            if pro.paths and not all(isinstance(p, str) for p in pro.paths):
                raise ValueError(f"proprio.paths must be a list of file paths, got {pro.paths!r}")
            if not pro.lr > 0:
                raise ValueError(f"proprio.lr must be > 0, got {pro.lr}")
            if not isinstance(pro.reset_windows, bool):
                raise ValueError(f"proprio.reset_windows must be true or false, got {pro.reset_windows!r}")
            if not isinstance(pro.step_normalised, bool):
                raise ValueError(f"proprio.step_normalised must be true or false, got {pro.step_normalised!r}")
            weight = pro.reset_weight
            if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not 0 < weight < 1e4:
                raise ValueError(f"proprio.reset_weight must be a number in (0, 10000), got {weight!r}")
            if weight != 1.0 and not pro.reset_windows:
                raise ValueError("proprio.reset_weight weighs the windows at a reset: it needs "
                                 "reset_windows = true")
            head = pro.reset_weight_steps
            if isinstance(head, bool) or not isinstance(head, int) or head < 0:
                raise ValueError(f"proprio.reset_weight_steps must be a whole number >= 0, got {head!r}")
            if head and weight == 1.0:
                raise ValueError("proprio.reset_weight_steps limits reset_weight to a reset window's "
                                 "first steps: it needs reset_weight other than 1")
            noise = pro.input_noise
            if isinstance(noise, bool) or not isinstance(noise, (int, float)) or not 0 <= noise < 10:
                raise ValueError(f"proprio.input_noise must be a number in [0, 10), got {noise!r}")
        if self.export_dtype not in EXPORT_DTYPES:
            raise ValueError(f"export_dtype must be one of {EXPORT_DTYPES}, got {self.export_dtype!r}")
        if self.success_rule is not None:
            SuccessRule.parse(self.success_rule)  # raises ValueError naming the format
        self._check_starting_weights()
        if not self.data.paths:
            raise ValueError("data.paths must name at least one episode file")
        if not 0.0 < self.data.val_fraction < 1.0:
            raise ValueError(f"data.val_fraction must be in (0, 1), got {self.data.val_fraction}")

    def _check_starting_weights(self) -> None:
        """Combinations of ``init``, ``codec_weights`` and ``[finetune]`` that cannot work."""
        ft = self.finetune
        if self.codec_weights is not None:
            if self.model.codec != "wan":
                raise ValueError(
                    f"codec_weights are the Wan VAE's weights; this model's codec is "
                    f"{self.model.codec!r} (set [model] preset = \"kairos-4b\" or codec = \"wan\")"
                )
            if self.init is not None:
                raise ValueError(
                    "codec_weights and init both give the codec: init's environment checkpoint "
                    "brings its own VAE; leave codec_weights out"
                )
        if ft.released_dit is not None:
            if self.init is not None:
                raise ValueError(
                    "finetune.released_dit and init both give the starting denoiser; set one"
                )
            if self.model.codec != "wan":
                raise ValueError(
                    f"finetune.released_dit denoises Wan VAE latents; this model's codec is "
                    f"{self.model.codec!r} (use a preset with codec = \"wan\", e.g. kairos-4b)"
                )
        if ft.mode != "full" and ft.released_dit is None and self.init is None:
            raise ValueError(
                f"finetune.mode = {ft.mode!r} keeps starting weights frozen, but there are none: "
                "set finetune.released_dit or init"
            )

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (stored with checkpoints, compared on resume)."""
        out = {
            "seed": self.seed,
            "model_preset": self.model_preset,
            "model": _model_dict(self.model),
            "data": _data_dict(self.data),
            "codec": dataclasses.asdict(self.codec),
            "world_model": dataclasses.asdict(self.world_model),
        }
        if self.parallel != ParallelConfig():
            # Only when set, so the stored configs of earlier runs still compare equal on resume.
            out["parallel"] = dataclasses.asdict(self.parallel)
        if self.proprio != ProprioTrainConfig():
            out["proprio"] = {**dataclasses.asdict(self.proprio), "paths": list(self.proprio.paths)}
            for name, default in (("input_noise", 0.0), ("reset_windows", False), ("reset_weight", 1.0),
                                  ("reset_weight_steps", 0), ("step_normalised", False),
                                  ("noise_steps", 0)):
                if getattr(self.proprio, name) == default:  # only when set (earlier runs resume)
                    del out["proprio"][name]
        if self.finetune != FinetuneConfig():
            out["finetune"] = {
                **dataclasses.asdict(self.finetune),
                "lora_targets": list(self.finetune.lora_targets),
            }
        if self.codec_weights is not None:
            out["codec_weights"] = self.codec_weights
        if self.export_dtype != "float32":
            out["export_dtype"] = self.export_dtype
        if self.success_rule is not None:
            out["success_rule"] = self.success_rule
        if self.init is not None:
            # Only when set, so the stored configs of earlier runs still compare equal on resume.
            out["init"] = self.init
        return out

    @classmethod
    def from_toml(cls, path: str | os.PathLike, **model_defaults: Any) -> TrainConfig:
        """Parse a TOML config file.

        Args:
            path: the file; relative ``data.paths`` are resolved against its directory.
            model_defaults: model fields to use when the file does not set them (the trainer
                passes ``image_size``, ``action_dim`` and ``state_dim`` read from the data).

        Raises:
            ValueError: unreadable TOML, unknown sections or keys, or invalid values.
        """
        path = Path(path)
        return cls.from_dict(read_config_toml(path), base_dir=path.parent, **model_defaults)

    @classmethod
    def from_dict(cls, raw: dict[str, Any], base_dir: str | os.PathLike = ".", **model_defaults: Any) -> TrainConfig:
        """Build from a TOML-shaped dict (see the module docstring)."""
        known = {
            "seed", "init", "codec_weights", "model", "data", "codec", "world_model", "parallel",
            "proprio", "finetune", "export_dtype", "success_rule",
        }
        unknown = sorted(set(raw) - known)
        if unknown:
            raise ValueError(f"unknown training config keys {unknown}; expected {sorted(known)}")
        model_raw = dict(raw.get("model", {}))
        preset = model_raw.pop("preset", "small")
        if preset not in PRESETS:
            raise ValueError(f"unknown model preset {preset!r}; choose one of {sorted(PRESETS)}")
        overrides = {**model_defaults, **model_raw}
        try:
            model = WorldModelConfig.preset(preset, **overrides)
        except TypeError as exc:
            raise ValueError(f"[model]: {exc}") from None
        raw = _resolve_paths(raw, base_dir)
        data_raw = dict(raw.get("data", {}))
        data_raw["paths"] = tuple(data_raw.get("paths", ()))
        proprio_raw = dict(raw.get("proprio", {}))
        if "paths" in proprio_raw:
            proprio_raw["paths"] = tuple(proprio_raw["paths"])
        finetune_raw = dict(raw.get("finetune", {}))
        return cls(
            model=model,
            data=_build(DataConfig, data_raw, "data"),
            codec=_build(CodecTrainConfig, raw.get("codec", {}), "codec"),
            world_model=_build(WorldModelTrainConfig, raw.get("world_model", {}), "world_model"),
            parallel=_build(ParallelConfig, raw.get("parallel", {}), "parallel"),
            proprio=_build(ProprioTrainConfig, proprio_raw, "proprio"),
            finetune=_build(FinetuneConfig, finetune_raw, "finetune"),
            codec_weights=raw.get("codec_weights"),
            export_dtype=str(raw.get("export_dtype", "float32")),
            success_rule=None if raw.get("success_rule") is None else str(raw["success_rule"]),
            seed=int(raw.get("seed", 0)),
            model_preset=preset,
            model_overrides=model_raw,
            init=raw.get("init"),
        )


# Model fields added after runs were stored, with their defaults: recorded only when set, so
# those runs resume.
LATE_MODEL_FIELDS = {"proprio_position_targets": None, "proprio_arm_entries": None,
                     "proprio_action_history": False, "proprio_stochastic": False, "proprio_noise_entries": None}


def _model_dict(model: WorldModelConfig) -> dict[str, Any]:
    """``[model]`` as JSON, without :data:`LATE_MODEL_FIELDS` left at their defaults."""
    out = model.to_dict()
    for name, default in LATE_MODEL_FIELDS.items():
        if name in out and out[name] == default:
            del out[name]
    return out


def _data_dict(data: DataConfig) -> dict[str, Any]:
    """``[data]`` as JSON; ``weights`` and ``state_keys`` only when set, so the stored configs
    of earlier runs still compare equal on resume."""
    out = {**dataclasses.asdict(data), "paths": list(data.paths)}
    for name in ("weights", "state_keys"):
        if getattr(data, name) is None:
            del out[name]
        else:
            out[name] = list(getattr(data, name))
    return out


# The fields that hold paths, as (table, key) with "" for the top level.
PATH_FIELDS = (("", "init"), ("", "codec_weights"), ("data", "paths"), ("proprio", "paths"),
               ("finetune", "released_dit"))


def _resolve_paths(raw: dict[str, Any], base_dir: str | os.PathLike) -> dict[str, Any]:
    """``raw`` (a TOML-shaped dict) with every :data:`PATH_FIELDS` entry made absolute against
    ``base_dir``; absolute paths stay as they are. ``raw`` itself is not changed."""
    out = {k: dict(v) if isinstance(v, dict) else v for k, v in raw.items()}
    for table_name, key in PATH_FIELDS:
        table = out if not table_name else out.get(table_name)
        if not isinstance(table, dict) or table.get(key) is None:
            continue
        label = f"{table_name}.{key}" if table_name else key
        table[key] = (list(_paths(table[key], base_dir)) if key == "paths"
                      else _path(table, key, base_dir, label))
    return out


def read_config_toml(path: str | os.PathLike) -> dict[str, Any]:
    """A training config file as a TOML-shaped dict, its ``base`` chain merged in.

    Each file's paths are resolved against its own directory first (so the result's paths are
    absolute), then its keys replace its base's: tables key by key, everything else (lists
    included) whole.

    Raises:
        ValueError: an unreadable file or base, a ``base`` that is not a path, or a cycle.
    """
    chain: list[Path] = []
    merged: dict[str, Any] = {}
    path = Path(path)
    while True:
        resolved = path.resolve()
        if resolved in chain:
            raise ValueError(f"training config {chain[0]}: base configs form a cycle through {path}")
        chain.append(resolved)
        try:
            raw = tomllib.loads(path.read_text())
        except (OSError, tomllib.TOMLDecodeError) as exc:
            where = "" if len(chain) == 1 else f" (base of {chain[-2]})"
            raise ValueError(f"cannot read training config {path}{where}: {exc}") from None
        base = raw.pop("base", None)
        raw = _resolve_paths(raw, path.parent)
        for key, value in merged.items():  # what the files above set wins
            if isinstance(value, dict) and isinstance(raw.get(key), dict):
                raw[key] = {**raw[key], **value}
            else:
                raw[key] = value
        merged = raw
        if base is None:
            return merged
        if not isinstance(base, str) or not base:
            raise ValueError(f"{path}: base must be the path of another training config, got {base!r}")
        path = path.parent / base


def _paths(value: str | list[str], base_dir: str | os.PathLike) -> tuple[str, ...]:
    """A path or a list of them (episode files) as absolute paths, relative to ``base_dir``."""
    paths = [value] if isinstance(value, str) else value
    return tuple(str((Path(base_dir) / p).resolve()) for p in paths)


def _path(
    raw: dict[str, Any], key: str, base_dir: str | os.PathLike, label: str | None = None
) -> str | None:
    """``raw[key]`` as an absolute path (relative to ``base_dir``), or None when unset."""
    value = raw.get(key)
    if value is None:
        return None
    if not isinstance(value, str) or not value:
        raise ValueError(f"{label or key} must be a path (a string), got {value!r}")
    return str((Path(base_dir) / value).resolve())


def _build(cls: type, values: dict[str, Any], section: str) -> Any:
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - names)
    if unknown:
        raise ValueError(f"[{section}]: unknown keys {unknown}; known: {sorted(names)}")
    return cls(**values)
