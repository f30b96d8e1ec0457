"""The two-stage trainer: the codec, then the world model and its heads, then an env checkpoint.

Output directory of a run::

    <output>/
      train_config.json          the resolved TrainConfig (a resumed run must match it)
      metrics.jsonl              losses every log_every steps, held-out metrics every eval_every
      codec/trainer_state.pt     resumable stage state (+ trainer_state.prev.pt)
      world_model/trainer_state.pt
      model/                     the environment checkpoint (kairos_gym.imagined.checkpoint)

Every batch and every noise draw is a function of ``(seed, stage, step, rank)``, so a run
that is interrupted and started again with the same command ends with exactly the weights
an uninterrupted run would have (on the same hardware and thread count).

A model over the Wan2.1 video VAE (``model.codec = "wan"``) skips the codec stage: the codec
is the released VAE, loaded from a local weights file (``codec_weights`` in the config, or
``kairos-gym train --codec-weights``), or random at test sizes. Its clips hold ``1 + 4k``
frames (``world_model.clip_len``) and every latent frame takes the four actions that led into
its frames (:func:`group_by_latent`).
The ``[parallel]`` section wraps the loss for DDP or FSDP (:mod:`kairos_gym.train.distributed`);
under FSDP every process gathers the full weights for a checkpoint and rank 0 writes it.

The world model may start from the released Kairos DiT (``[finetune] released_dit``) or an
environment checkpoint (``init``), and train all of it, only the pathway the starting
weights lack (``mode = "frozen"``), or that pathway and LoRA adapters (``mode = "lora"``,
merged into the weights of the exported model); see :mod:`kairos_gym.train.finetune`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import platform
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from kairos_gym.data.dataset import ClipDataset, group_by_latent
from kairos_gym.data.keys import ObservationKeys
from kairos_gym.data.loading import list_episodes, load_episodes
from kairos_gym.data.reader import EpisodeReader
from kairos_gym.data.recompute import RECOMPUTABLE
from kairos_gym.data.spaces import EpisodeEnvSpec, restrict_to_camera, restrict_to_state_keys
from kairos_gym.errors import CheckpointError, DatasetError
from kairos_gym.evaluation.open_loop import open_loop_eval
from kairos_gym.imagined.checkpoint import save_env_checkpoint
from kairos_gym.imagined.success import SuccessRule
from kairos_gym.model import checkpoint as ckpt
from kairos_gym.model.codec import Codec, ConvCodec, build_codec
from kairos_gym.model.config import ADDED_PATHWAY_FIELDS, SAMPLER_FIELDS, WorldModelConfig
from kairos_gym.model.dit import OUTCOMES, KairosDiT
from kairos_gym.model.proprio import ProprioDynamics
from kairos_gym.model.video_codec import vae_weights_file
from kairos_gym.model.world_model import WorldModel
from kairos_gym.train.checkpointing import (
    METRICS_NAME,
    MetricsLog,
    load_training_state,
    save_training_state,
)
from kairos_gym.train.config import OptimConfig, TrainConfig, read_config_toml
from kairos_gym.train.distributed import (
    Distributed,
    clip_grad_norm,
    denoisers,
    full_state_dict,
    wrap_with_config,
)
from kairos_gym.train.finetune import (
    add_lora,
    apply_finetune,
    check_lora_targets,
    merge_lora,
)
from kairos_gym.train.objectives import (
    CodecObjective,
    ProprioObjective,
    WorldModelObjective,
    noise_nll,
    state_outcome_loss,
    step_scale,
)

STAGES = ("codec", "world_model")

DYNAMICS_FORM_FIELDS = ("proprio_object_frame", "proprio_position_targets", "proprio_arm_entries",
                        "proprio_action_history", "proprio_hidden")
"""Model fields that change the proprioceptive dynamics' inputs or form (its width
included): a fine-tuning run that changes one must refit the dynamics (``[proprio] refit``).
The frames' state embedding does not depend on them and keeps its weights."""


def seed_for(*parts: Any) -> int:
    """A 63-bit seed from any tuple of values (stable across processes and Python runs)."""
    digest = hashlib.blake2b(repr(parts).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 1


def read_env_spec(
    paths: tuple[str, ...], camera: str, state_keys: Sequence[str] | None = None
) -> EpisodeEnvSpec:
    """The env spec shared by every data file, restricted to ``camera`` and, when given, to
    ``state_keys`` (the keys each file's first, so files that differ only in keys left out
    agree; files that differ in their cameras do not).

    Raises:
        DatasetError: a file without a usable spec, files from different environments, or
            a camera or state key the data does not have.
    """
    options = {key: r.option for key, r in RECOMPUTABLE.items()}
    specs = []
    for path in paths:
        with EpisodeReader(path) as reader:
            spec = reader.env_spec
        if state_keys is not None:
            try:
                spec = restrict_to_state_keys(spec, state_keys, options)
            except DatasetError as exc:
                raise DatasetError(f"{path}: {exc}") from None
        specs.append((path, spec))
    first_path, spec = specs[0]
    for path, other in specs[1:]:
        diffs = spec.differences(other)
        if diffs:
            raise DatasetError(
                f"{path} was recorded with a different environment than {first_path} "
                f"(fields {diffs}); train on files of one environment"
            )
    return restrict_to_camera(spec, camera)


def model_defaults_from_data(spec: EpisodeEnvSpec) -> dict[str, Any]:
    """Model fields the data decides: frame size, action size and state-head width (the
    :class:`ObservationKeys` state width of ``spec``: every non-image key)."""
    return {
        "image_size": tuple(spec.image_size),
        "action_dim": spec.action_dim,
        "state_dim": ObservationKeys.from_spec(spec).state_width,
    }


def check_init(config: TrainConfig) -> None:
    """Refuse an ``init`` checkpoint whose model shapes differ from ``config.model``.

    Raises:
        CheckpointError: missing or unreadable files, or differing shape fields (named).
    """
    init = Path(config.init)
    data = ckpt.read_config(init)
    for name in (ckpt.MODEL_NAME, ckpt.CODEC_NAME):
        if not (init / name).exists() and not (init / name).is_symlink():
            raise CheckpointError(f"init {init}: no {name}")
        ckpt.checkpoint_file(init, name)
    try:
        # Fields the init's config does not name take their defaults, as when it is loaded.
        declared = WorldModelConfig.from_dict(data.get("model", {})).to_dict()
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"init {init}: invalid model config: {exc}") from None
    theirs = {k: v for k, v in json.loads(json.dumps(declared)).items() if k not in SAMPLER_FIELDS}
    mine = {
        k: v
        for k, v in json.loads(json.dumps(config.model.to_dict())).items()
        if k not in SAMPLER_FIELDS
    }
    if not theirs.get("proprio_conditioning", False):
        # Fine-tuning may add the proprioceptive pathway to a model without it.
        mine = {k: v for k, v in mine.items() if k not in ADDED_PATHWAY_FIELDS}
        theirs = {k: v for k, v in theirs.items() if k not in ADDED_PATHWAY_FIELDS}
    if mine.get("state_outcomes") and not theirs.get("state_outcomes"):
        # ... or outcome heads on its carried state ...
        mine.pop("state_outcomes")
        theirs.pop("state_outcomes", None)
    if mine.get("proprio_stochastic"):
        # ... or a noise head on its dynamics (which entries are drawn is no shape) ...
        mine.pop("proprio_noise_entries", None)
        theirs.pop("proprio_noise_entries", None)
        if not theirs.get("proprio_stochastic"):
            mine.pop("proprio_stochastic")
            theirs.pop("proprio_stochastic", None)
    # (A config without the pathway has no dynamics to refit: its difference is reported below.)
    for name in DYNAMICS_FORM_FIELDS if mine.get("proprio_conditioning") else ():
        if mine.get(name) == theirs.get(name):
            continue
        # ... or change what its dynamics sees or predicts, when that dynamics is fitted anew.
        if not config.proprio.refit:
            raise CheckpointError(
                f"init {init}: {name} {theirs.get(name)!r} -> {mine.get(name)!r} changes the "
                "dynamics' inputs or form; set [proprio] refit = true to fit it anew")
        mine.pop(name)
        theirs.pop(name, None)
    if mine.get("proprio_conditioning") and 0 < theirs.get("state_dim", 0) < mine["state_dim"]:
        # ... and may widen its state with new keys (see widen_state_tensors).
        mine.pop("state_dim")
        theirs.pop("state_dim")
    differ = sorted(k for k in set(mine) | set(theirs) if mine.get(k) != theirs.get(k))
    if differ:
        detail = ", ".join(f"{k}: init {theirs.get(k)!r}, config {mine.get(k)!r}" for k in differ)
        raise CheckpointError(
            f"init {init} has another model shape ({detail}); set [model] to match"
        )


def widen_state_tensors(
    tensors: dict[str, torch.Tensor], dit: nn.Module, index: torch.Tensor
) -> dict[str, torch.Tensor]:
    """Fit an init checkpoint with a narrower state into ``dit``, whose state has new keys
    (e.g. ``object_state`` beside the arm's ``state``).

    The init's state entries keep their trained weights and normalisation; the new ones start
    where they change nothing: their columns of the state embedding are zero and their rows
    of the outcome head and their normalisation (already fitted to the data) are ``dit``'s
    own. The proprioceptive dynamics, whose every layer depends on the width, is dropped so
    that it is fitted anew (the ``[proprio]`` stage).

    Args:
        tensors: the init's denoiser tensors, with ``state_mean`` ``[S_old]``.
        dit: the receiving denoiser, with state width ``S > S_old`` and the proprioceptive
            path.
        index: ``[S_old]`` long, where each of the init's state entries lies in ``dit``'s
            state vector (keys are matched by name: see :func:`state_index`).

    Returns:
        Tensors that load into ``dit`` (missing only ``proprio_dynamics.*``).
    """
    own = dit.state_dict()
    out = {k: v for k, v in tensors.items() if not k.startswith("proprio_dynamics.")}
    for name in ("state_mean", "state_std"):
        merged = own[name].clone().to(tensors[name].dtype)
        merged[index] = tensors[name]
        out[name] = merged
    n = len(OUTCOMES)
    for name in ("outcome_head.1.weight", "outcome_head.1.bias"):
        merged = own[name].clone().to(tensors[name].dtype)
        merged[:n] = tensors[name][:n]
        merged[n + index] = tensors[name][n:]
        out[name] = merged
    first = "proprio_embedding.0.weight"
    if first in tensors:  # an init that already had the path: zero columns for the new keys
        merged = tensors[first].new_zeros(own[first].shape)
        merged[:, index] = tensors[first]
        out[first] = merged
    return out


def state_index(old: ObservationKeys, new: ObservationKeys, source: str) -> torch.Tensor:
    """``[S_old]``: where each entry of ``old``'s flat state lies in ``new``'s.

    Raises:
        CheckpointError: a state key of ``old`` that ``new`` lacks or holds with another width.
    """
    slices, widths = new.state_slices, new.state_widths
    parts = []
    for key, width in old.state_widths.items():
        if widths.get(key) != width:
            raise CheckpointError(
                f"{source}: its state key {key!r} ({width} values) is not in the data's state "
                f"{dict(widths)}; a model's state can only gain keys"
            )
        parts.append(torch.arange(slices[key].start, slices[key].stop))
    return torch.cat(parts)


def load_config(path: str | os.PathLike) -> TrainConfig:
    """Parse a TOML training config, taking frame size, action size and state width from its data.

    Raises:
        ValueError: an invalid config; DatasetError: unreadable or inconsistent data files.
    """

    path = Path(path)
    raw = read_config_toml(path)  # its paths absolute, each against its own file's directory
    data = raw.get("data", {})
    paths = tuple(data.get("paths", ()))
    if not paths:
        raise ValueError(f"{path}: [data] paths must name at least one episode file")
    spec = read_env_spec(paths, data.get("camera", "agentview"), data.get("state_keys"))
    return TrainConfig.from_dict(raw, base_dir=path.parent, **model_defaults_from_data(spec))


class Trainer:
    """Runs the stages of one training config into one output directory.

    Args:
        config: the run.
        output: the run's directory (created; resumed when it holds the same run).
        dist: data-parallel placement (default: one process on CPU).
        progress: show progress bars (rank 0 only).
        stop_after: stop (with a checkpoint) once a stage reaches this step (>= 1), e.g. to
            split a long run into sessions; running again resumes.
        evaluate_open_loop: run open-loop rollouts on held-out episodes at each evaluation.
        codec_weights: overrides the config's ``codec_weights`` (the released Wan2.1 VAE's
            weights: a local ``.safetensors`` file or diffusers VAE directory, for a model
            with ``codec = "wan"``); ``None`` keeps the config's.

    Everything that can be checked before training is checked here, so a bad run fails in
    seconds rather than after a stage: the data files (every episode validated when read,
    one environment, the camera), the model fields the data decides, the ``init``
    checkpoint, the codec and released denoiser weights (files present, shapes from the
    header), the fine-tuning mode, and that every stage finds clips of its length in both
    splits.

    Raises:
        ValueError: ``stop_after`` not a positive integer, a model config that does not
            fit the data, a clip length a video codec cannot encode, ``codec_weights`` for
            a model without the Wan codec, LoRA targets the blocks do not have, or
            ``frozen`` fine-tuning with nothing new to train.
        DatasetError: unreadable or inconsistent data, or no clip of a stage's length in a
            split (naming the stage setting and the longest episode).
        CheckpointError: an ``init`` checkpoint or released DiT of another shape, or a
            missing weights file.
    """

    def __init__(
        self,
        config: TrainConfig,
        output: str | os.PathLike,
        dist: Distributed | None = None,
        progress: bool = True,
        stop_after: int | None = None,
        evaluate_open_loop: bool = True,
        codec_weights: str | os.PathLike | None = None,
    ) -> None:
        if stop_after is not None and (
            isinstance(stop_after, bool) or not isinstance(stop_after, int) or stop_after < 1
        ):
            raise ValueError(f"stop_after must be a positive integer or None, got {stop_after!r}")
        if codec_weights is not None:
            # One place holds it (the config): recorded with the run and compared on resume.
            config = dataclasses.replace(config, codec_weights=str(codec_weights))
        self.config = config
        self.output = Path(output)
        self.dist = dist or Distributed()
        self.progress = progress and self.dist.is_main
        self.stop_after = stop_after
        self.evaluate_open_loop = evaluate_open_loop
        self.log = MetricsLog(self.output / METRICS_NAME, enabled=self.dist.is_main)
        self.spec = read_env_spec(config.data.paths, config.data.camera, config.data.state_keys)
        # The state the model learns is the state the env checkpoint splits: every non-image
        # key of the spec, whatever the files' layout would choose by default.
        self.keys = ObservationKeys.from_spec(self.spec)
        needed = model_defaults_from_data(self.spec)
        have = {
            "image_size": tuple(config.model.image_size),
            "action_dim": config.model.action_dim,
            "state_dim": config.model.state_dim,
        }
        if have != needed:
            raise ValueError(
                f"the model config {have} does not fit the data {needed}; leave these "
                "fields out of [model] to take them from the data"
            )
        if config.init is not None:
            check_init(config)
        tc = config.model.temporal_compression
        if (config.world_model.clip_len - 1) % tc:
            raise ValueError(
                f"world_model.clip_len = {config.world_model.clip_len}: a model with temporal "
                f"compression {tc} trains on clips of 1 + {tc}k frames (e.g. {1 + 2 * tc})"
            )
        if config.codec_weights is not None:
            vae_weights_file(config.codec_weights)
        self._check_finetune()
        self.model: WorldModel | None = None
        self._trainable_parameters = 0
        self._codec: Codec | None = None
        self._final_states: dict[str, dict[str, torch.Tensor]] = {}
        self._datasets: dict[tuple[Any, ...], ClipDataset] = {}
        self._check_data()

    def _added_pathways(self) -> tuple[str, ...]:
        """Parameter-name prefixes the starting weights may lack (they keep their init)."""
        added = ("proprio_dynamics.", "proprio_embedding.")
        proprio = added if self.config.model.proprio_conditioning else ()
        if self.config.model.state_outcomes:
            proprio = (*proprio, "proprio_dynamics.outcome_head.")
        if self.config.finetune.released_dit is not None:
            return ckpt.NEW_IN_KAIROS_GYM + proprio
        return proprio

    def _check_finetune(self) -> None:
        """Dry-run the fine-tuning setup on a ``meta`` denoiser (shapes only, no memory): the
        released DiT's tensors against the model (from its header), the LoRA targets, and
        that ``frozen`` leaves something to train."""
        ft = self.config.finetune
        if ft.mode == "lora":
            check_lora_targets(self.config.model, ft.lora_targets)
        if ft.released_dit is None and ft.mode == "full":
            return
        with torch.device("meta"):
            dit = KairosDiT(self.config.model)
        expected = {k: tuple(v.shape) for k, v in dit.state_dict().items()}
        if ft.released_dit is not None:
            path = ckpt.released_dit_file(ft.released_dit)
            header = {k: shape for k, (_, shape) in ckpt.read_header(path).items()}
            provided, _ = ckpt.map_released_dit_keys(header)
            problems = ckpt.shape_problems(expected, provided, self._added_pathways())
            if problems:
                raise CheckpointError(
                    f"finetune.released_dit {path} does not fit [model] ({self.config.model_preset}"
                    f" preset): " + "; ".join(problems)
                )
        else:  # init: check_init has compared its shapes already
            provided = ckpt.read_header(ckpt.checkpoint_file(self.config.init, ckpt.MODEL_NAME))
        new = [k for k in expected if k not in provided]
        apply_finetune(dit, ft.mode, new, ft.lora_targets, ft.lora_rank, ft.lora_alpha)

    def _check_data(self) -> None:
        """Index the clip datasets of every stage now (cheap: metadata and small arrays), so
        a clip length the data cannot serve fails before the codec trains, not after."""
        lengths = {"world_model.clip_len": self.config.world_model.clip_len}
        if self.config.init is None and self.config.model.codec == "conv":
            lengths["the codec (single frames)"] = 1
        for what, clip_len in lengths.items():
            for split in ("train", "val"):
                try:
                    self._dataset(clip_len, split)
                except DatasetError as exc:
                    raise DatasetError(
                        f"{what} = {clip_len} does not fit the data: {exc}"
                    ) from None
        if self.config.proprio.active and self.config.proprio.paths:
            window = self.config.proprio.window
            for split in ("train", "val"):
                try:
                    self._state_dataset(window + 1, split)
                except DatasetError as exc:
                    raise DatasetError(f"proprio.paths with window = {window}: {exc}") from None

    # --- orchestration ---
    def run(self) -> Path | None:
        """Train every stage not yet done and write the environment checkpoint.

        Returns:
            the checkpoint directory, or None when ``stop_after`` paused the run first.
        """
        self._check_output()
        if not self.train_codec():
            return None
        if not self.train_world_model():
            return None
        return self.export()

    def _check_output(self) -> None:
        path = self.output / "train_config.json"
        mine = self.config.to_dict()
        if path.exists():
            try:
                theirs = json.loads(path.read_text())
            except json.JSONDecodeError:
                theirs = None
            # How the result is stored and read is not what was trained.
            exported = ("export_dtype", "success_rule")
            if isinstance(theirs, dict):
                for key in exported:
                    theirs.pop(key, None)
            if theirs != json.loads(json.dumps({k: v for k, v in mine.items() if k not in exported})):
                raise CheckpointError(
                    f"{self.output} holds a run with a different config; resume it with its own "
                    f"config ({path}) or train into a new --output directory"
                )
        elif self.dist.is_main:
            self.output.mkdir(parents=True, exist_ok=True)
            ckpt.write_json_atomic(path, mine)
        self.dist.barrier()

    def _dataset(self, clip_len: int, split: str) -> ClipDataset:
        """The clips of one split (built once: indexing validates every episode)."""
        return self._cached_clips(self.config.data.paths, self.config.data.camera, clip_len, split)

    def _cached_clips(self, paths: tuple[str, ...], cameras: str | tuple[str, ...],
                      clip_len: int, split: str) -> ClipDataset:
        """The clips of ``paths`` seen through ``cameras`` (``()``: state only), one split of
        them as ``[data]`` splits episodes; built once per run."""
        key = (tuple(paths), cameras, clip_len, split)
        if key not in self._datasets:
            d = self.config.data
            self._datasets[key] = ClipDataset(
                list(paths),
                clip_len=clip_len,
                cameras=cameras,
                split=split,
                val_fraction=d.val_fraction,
                seed=d.split_seed,
                state_keys=self.keys.state_keys,
                in_memory=True,
            )
        return self._datasets[key]

    def _indices(self, stage: str, step: int, n: int, batch: int,
                 probabilities: np.ndarray | None = None) -> np.ndarray:
        """This rank's share of the global batch of ``step``: uniform over the ``n`` items, or
        drawn with ``probabilities`` ``[n]`` (per-file weights, :meth:`_clip_probabilities`)."""
        rng = np.random.default_rng(seed_for(self.config.seed, stage, "batch", step))
        if probabilities is None:
            idx = rng.integers(0, n, size=batch)
        else:
            idx = rng.choice(n, size=batch, p=probabilities)
        return idx[self.dist.rank :: self.dist.world_size]

    def _clip_probabilities(self, dataset: ClipDataset) -> np.ndarray | None:
        """``[N]`` sampling probabilities of ``dataset``'s clips under ``[data] weights`` (each
        file its weight's share, split evenly over its clips); None when no weights are set.

        Raises:
            DatasetError: a weighted file has no clip in this split.
        """
        weights = self.config.data.weights
        if weights is None:
            return None
        files = dataset.clip_files()
        counts = np.bincount(files, minlength=len(weights))
        empty = [self.config.data.paths[i] for i, c in enumerate(counts) if c == 0]
        if empty:
            raise DatasetError(f"[data] weights: {empty} have no training clip to draw from")
        w = np.asarray(weights, dtype=np.float64)
        p = (w / w.sum())[files] / counts[files]
        return p / p.sum()

    # --- the generic loop ---
    def _run_stage(
        self,
        stage: str,
        cfg: OptimConfig,
        module: nn.Module,
        trainable: nn.Module,
        make_batch: Callable[[int], Any],
        evaluate: Callable[[], dict[str, float]],
    ) -> bool:
        """Optimise ``trainable`` through the loss ``module`` from the stage's last checkpoint.

        Returns:
            True when the stage is complete, False when ``stop_after`` paused it.
        """
        if cfg.batch_size % self.dist.world_size:
            raise ValueError(
                f"{stage}.batch_size {cfg.batch_size} must be divisible by the "
                f"{self.dist.world_size} data-parallel processes"
            )
        directory = self.output / stage
        state = load_training_state(directory)
        step, elapsed_before = 0, 0.0
        if state is not None:
            # Into the plain module, before FSDP shards it: every process reads the whole state.
            ckpt.load_state_strict(trainable, state["model"], str(directory / "trainer_state.pt"))
            step = int(state["step"])
            elapsed_before = float(state.get("elapsed_s", 0.0))
            self.log.truncate_after(stage, step)
        if step >= cfg.steps:
            # A stage of no steps (an init's frames kept as they are) ends where it starts.
            self._final_states[stage] = trainable.state_dict() if state is None else state["model"]
            return True
        # Wrapped before the optimizer is built: FSDP replaces the parameters with shards.
        parallel = self.config.parallel
        if parallel.strategy == "fsdp" and not denoisers(module):
            # FSDP shards denoiser blocks; a small codec is replicated (DDP) instead.
            parallel = dataclasses.replace(parallel, strategy="ddp")
        wrapped = wrap_with_config(module, self.dist, parallel)
        sharded = self._sharded(module)
        params = [p for p in trainable.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
        if state is not None:
            self._load_optimizer(module, optimizer, state["optimizer"], sharded)
        module.train()
        bar = tqdm(
            total=cfg.steps,
            initial=step,
            desc=stage,
            disable=not self.progress,
            dynamic_ncols=True,
            smoothing=0.1,
        )
        started, running = time.perf_counter(), {}
        while step < cfg.steps:
            for group in optimizer.param_groups:
                group["lr"] = cfg.learning_rate(step)
            batch = make_batch(step)
            generator = torch.Generator(self.dist.device).manual_seed(
                seed_for(self.config.seed, stage, "noise", step)
            )
            loss, metrics = wrapped(batch, generator)
            if not torch.isfinite(loss):
                raise FloatingPointError(
                    f"{stage}: the loss is {float(loss)} at step {step}; lower the "
                    f"learning rate (checkpoints up to step {step} are kept)"
                )
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.grad_clip > 0:
                metrics["grad_norm"] = clip_grad_norm(params, cfg.grad_clip)
            optimizer.step()
            step += 1
            for k, v in metrics.items():
                running[k] = running.get(k, 0.0) + v
            bar.update(1)
            if step % cfg.log_every == 0 or step == cfg.steps:
                count = cfg.log_every if step % cfg.log_every == 0 else step % cfg.log_every
                record = {k: self.dist.mean(v / count) for k, v in sorted(running.items())}
                running = {}
                bar.set_postfix(loss=f"{record['loss']:.4f}")
                self.log.write(
                    {
                        "stage": stage,
                        "step": step,
                        "lr": cfg.learning_rate(step - 1),
                        "elapsed_s": round(elapsed_before + time.perf_counter() - started, 2),
                        **record,
                    }
                )
            final = step == cfg.steps
            if (cfg.eval_every and step % cfg.eval_every == 0) or final:
                module.eval()
                scores = evaluate(sharded) if sharded else evaluate()
                module.train()
                self.log.write({"stage": stage, "step": step, "eval": scores})
                bar.write(
                    f"[{stage} step {step}] "
                    + ", ".join(
                        f"{k} {v:.4g}" for k, v in scores.items() if isinstance(v, (int, float))
                    )
                )
            paused = self.stop_after is not None and step >= self.stop_after and not final
            if step % cfg.checkpoint_every == 0 or final or paused:
                # Under FSDP gathering the full weights is a collective: every process takes part.
                weights = full_state_dict(trainable) if sharded else trainable.state_dict()
                optim_state = self._optimizer_state(module, optimizer, sharded)
                if self.dist.is_main:
                    save_training_state(
                        directory,
                        {
                            "step": step,
                            "model": weights,
                            "optimizer": optim_state,
                            "config": self.config.to_dict(),
                            "done": final,
                            "elapsed_s": elapsed_before + time.perf_counter() - started,
                        },
                    )
                if final:
                    self._final_states[stage] = weights
                self.dist.barrier()
            if paused:
                bar.close()
                return False
        bar.close()
        return True

    @staticmethod
    def _sharded(module: nn.Module) -> bool:
        """Whether FSDP sharded ``module`` (its parameters are then ``DTensor`` shards)."""
        from torch.distributed.fsdp import FSDPModule

        return any(isinstance(m, FSDPModule) for m in module.modules())

    @staticmethod
    def _optimizer_state(
        module: nn.Module, optimizer: torch.optim.Optimizer, sharded: bool
    ) -> dict[str, Any]:
        """The optimizer's state to save: whole tensors keyed by name under FSDP (a collective)."""
        if not sharded:
            return optimizer.state_dict()
        from torch.distributed.checkpoint.state_dict import (
            StateDictOptions,
            get_optimizer_state_dict,
        )

        return get_optimizer_state_dict(
            module, optimizer, options=StateDictOptions(full_state_dict=True, cpu_offload=True)
        )

    @staticmethod
    def _load_optimizer(
        module: nn.Module, optimizer: torch.optim.Optimizer, saved: dict[str, Any], sharded: bool
    ) -> None:
        if not sharded:
            optimizer.load_state_dict(saved)
            return
        from torch.distributed.checkpoint.state_dict import (
            StateDictOptions,
            set_optimizer_state_dict,
        )

        set_optimizer_state_dict(
            module, optimizer, saved, options=StateDictOptions(full_state_dict=True)
        )

    # --- stage 1: codec ---
    def train_codec(self) -> bool:
        """Train (or resume, or load the finished) codec. Returns False when paused.

        A Wan VAE codec (``model.codec = "wan"``) is not trained: it is the released VAE
        (the config's ``codec_weights``), the ``init`` checkpoint's, or random at test sizes.
        """
        cfg = self.config.codec
        if self.config.model.codec != "conv":
            return self._load_video_codec()
        torch.manual_seed(seed_for(self.config.seed, "codec", "init"))
        codec = ConvCodec(self.config.model).to(self.dist.device)
        done = self.output / "codec" / ckpt.CODEC_NAME
        if self.config.init is not None:
            done = ckpt.checkpoint_file(self.config.init, ckpt.CODEC_NAME)
        if done.exists():
            ckpt.load_state_strict(codec, ckpt.load_tensors(done), str(done))
            self._codec = codec.eval()
            return True
        train = self._dataset(1, "train")
        val = self._dataset(1, "val")
        eval_ids = np.random.default_rng(seed_for(self.config.seed, "codec", "eval")).choice(
            len(val), size=min(cfg.eval_frames, len(val)), replace=False
        )
        eval_frames = self._frames(val, eval_ids)

        probabilities = self._clip_probabilities(train)

        def make_batch(step: int) -> torch.Tensor:
            return self._frames(
                train, self._indices("codec", step, len(train), cfg.batch_size, probabilities)
            )

        def evaluate() -> dict[str, float]:
            with torch.no_grad():
                mse = float(codec.reconstruction_loss(eval_frames))
            return {"val_mse": mse, "val_psnr": 10 * math.log10(4.0 / max(mse, 1e-12))}

        if not self._run_stage("codec", cfg, CodecObjective(codec), codec, make_batch, evaluate):
            return False
        codec.eval()
        stats_ids = np.random.default_rng(seed_for(self.config.seed, "codec", "stats")).choice(
            len(train), size=min(cfg.statistics_frames, len(train)), replace=False
        )
        codec.set_latent_statistics(self._frames(train, stats_ids))
        if self.dist.is_main:
            ckpt.save_tensors_atomic(codec.state_dict(), done, {"format": "pt"})
        self.dist.barrier()
        self._codec = codec
        return True

    def _load_video_codec(self) -> bool:
        torch.manual_seed(seed_for(self.config.seed, "codec", "init"))
        codec = build_codec(self.config.model)
        if self.config.init is not None:
            path = ckpt.checkpoint_file(self.config.init, ckpt.CODEC_NAME)
            ckpt.load_state_strict(codec, ckpt.load_tensors(path), str(path))
        elif self.config.codec_weights is not None:
            codec.load_vae_weights(self.config.codec_weights)
        self._codec = codec.to(self.dist.device).eval()
        return True

    def _frames(self, dataset: ClipDataset, ids: np.ndarray) -> torch.Tensor:
        return torch.stack([dataset[int(i)]["frames"][0] for i in ids]).to(self.dist.device)

    # --- stage 2: world model ---
    def train_world_model(self) -> bool:
        """Train (or resume) the denoiser and heads with the codec frozen. False when paused."""
        cfg = self.config.world_model
        torch.manual_seed(seed_for(self.config.seed, "world_model", "init"))
        model = WorldModel(self.config.model, codec=self._codec).to(self.dist.device)
        for p in model.codec.parameters():
            p.requires_grad_(False)
        train = self._dataset(cfg.clip_len, "train")
        val = self._dataset(cfg.clip_len, "val")
        if self.config.model.state_dim:
            self._fit_state_normalisation(model, train)
        # After the fit: the initial weights bring their own state normalisation.
        new = self._load_starting_weights(model)
        ft = self.config.finetune
        apply_finetune(model.dit, ft.mode, new, ft.lora_targets, ft.lora_rank, ft.lora_alpha)
        self._trainable_parameters = sum(
            p.numel() for p in model.dit.parameters() if p.requires_grad
        )
        if self.config.proprio.active and not self.train_proprio(model):
            return False
        objective = WorldModelObjective(
            model.dit, cfg, shard=(self.dist.rank, self.dist.world_size)
        )
        val_batches = [
            self._clips(
                model,
                val,
                np.random.default_rng(seed_for(self.config.seed, "val", i)).integers(
                    0, len(val), size=cfg.batch_size
                ),
            )
            for i in range(4)
        ]

        probabilities = self._clip_probabilities(train)

        def make_batch(step: int) -> dict[str, torch.Tensor]:
            return self._clips(
                model, train,
                self._indices("world_model", step, len(train), cfg.batch_size, probabilities),
            )

        def evaluate(sharded: bool = False) -> dict[str, Any]:
            losses = []
            with torch.no_grad():
                for i, batch in enumerate(val_batches):
                    g = torch.Generator(self.dist.device).manual_seed(
                        seed_for(self.config.seed, "val-noise", i)
                    )
                    losses.append(objective(batch, g)[1])
            scores = {f"val_{k}": float(np.mean([m[k] for m in losses])) for k in losses[0]}
            # A sharded denoiser runs only when every process calls it: all roll out the same.
            if self.evaluate_open_loop and (self.dist.is_main or sharded):
                scores.update(self._open_loop(model))
            return scores

        self.model = model
        done = self._run_stage("world_model", cfg, objective, model.dit, make_batch, evaluate)
        if done and self._sharded(model) and self.dist.is_main:
            # The export (rank 0) needs plain tensors: a fresh copy holding the gathered
            # weights, which only rank 0 receives (gathered to its CPU).
            plain = WorldModel(self.config.model, codec=self._codec).to(self.dist.device)
            if ft.mode == "lora":
                add_lora(plain.dit, ft.lora_targets, ft.lora_rank, ft.lora_alpha)
            plain.dit.load_state_dict(self._final_states["world_model"])
            self.model = plain
        if done and not self._sharded(self.model):
            # The environment checkpoint holds the plain model: adapters merged into weights.
            # (Not on the other ranks' sharded copies: merging DTensors is a collective, and
            # only rank 0 exports.)
            merge_lora(self.model.dit)
        return done

    def _load_starting_weights(self, model: WorldModel) -> list[str]:
        """Load ``init``'s or the released DiT's weights into ``model.dit``.

        Returns:
            The names the starting weights did not provide (all of them when there are none).
        """
        if self.config.init is not None:
            path = ckpt.checkpoint_file(self.config.init, ckpt.MODEL_NAME)
            tensors = ckpt.load_tensors(path)
            init_width = int(tensors["state_mean"].shape[0]) if "state_mean" in tensors else 0
            if 0 < init_width < self.config.model.state_dim:
                # A proprioceptive model whose state gains keys (see widen_state_tensors).
                theirs = EpisodeEnvSpec.from_dict(ckpt.read_config(self.config.init)["env_spec"])
                index = state_index(ObservationKeys.from_spec(theirs), self.keys, str(path))
                tensors = widen_state_tensors(tensors, model.dit, index)
            allow = self._added_pathways()
            if self._dynamics_inputs_change():
                # Its dynamics is refitted (see check_init): start it from fresh weights.
                tensors = {k: v for k, v in tensors.items() if not k.startswith("proprio_dynamics.")}
                allow = (*allow, "proprio_dynamics.")
            return ckpt.load_state_strict(model.dit, tensors, str(path), allow_missing=allow)
        if self.config.finetune.released_dit is not None:
            return ckpt.load_released_dit(
                model.dit, self.config.finetune.released_dit, self._added_pathways()
            )
        return [name for name, _ in model.dit.named_parameters()]

    def _dynamics_inputs_change(self) -> bool:
        """Whether ``init``'s dynamics has other inputs or another form than this config's
        (:data:`DYNAMICS_FORM_FIELDS`)."""
        # Parsed as when the init is loaded: fields its config does not name take their defaults.
        theirs = WorldModelConfig.from_dict(ckpt.read_config(Path(self.config.init)).get("model", {}))
        return any(getattr(theirs, name) != getattr(self.config.model, name) for name in DYNAMICS_FORM_FIELDS)

    def train_proprio(self, model: WorldModel) -> bool:
        """Fit the proprioceptive dynamics alone (``[proprio]``), then its noise and outcome
        heads, then freeze it for the world-model stage. With ``steps = 0`` the init's
        dynamics is kept and only the heads are fitted. False when paused."""
        cfg = self.config.proprio
        dynamics = model.dit.proprio_dynamics
        if cfg.steps and not self._fit_dynamics(model):
            return False
        if cfg.noise_steps:
            self._fit_noise_head(model)
        if cfg.outcome_steps:
            self._fit_outcomes_on_unrolls(model)
        for p in dynamics.parameters():
            p.requires_grad_(False)
        return True

    def _fit_dynamics(self, model: WorldModel) -> bool:
        """The ``[proprio]`` optimisation of the dynamics' prediction (resumable). False when
        paused."""
        cfg = self.config.proprio
        dynamics = model.dit.proprio_dynamics
        if cfg.refit:
            with torch.random.fork_rng(devices=[]):  # the rest of the run draws as without it
                torch.manual_seed(seed_for(self.config.seed, "proprio", "refit"))
                fresh = ProprioDynamics(dynamics.state_dim, dynamics.action_dim,
                                        model.config.proprio_hidden,
                                        outcomes=dynamics.outcome_head is not None,
                                        object_frame=dynamics.object_frame,
                                        position_targets=dynamics.position_targets,
                                        arm_entries=dynamics.arm_entries,
                                        action_history=dynamics.action_history,
                                        stochastic=dynamics.stochastic,
                                        noise_entries=dynamics.noise_entries)
            dynamics.load_state_dict(fresh.state_dict())
        train = self._proprio_windows(model, "train")
        val = self._proprio_windows(model, "val")
        objective = ProprioObjective(dynamics, cfg.input_noise, cfg.reset_weight,
                                     step_scale(train["state"]) if cfg.step_normalised else None,
                                     cfg.reset_weight_steps)

        def make_batch(step: int) -> dict[str, torch.Tensor]:
            rows = self._indices("proprio", step, len(train["state"]), cfg.batch_size)
            return {k: v[torch.as_tensor(rows, device=v.device)] for k, v in train.items()}

        def evaluate(*_: Any) -> dict[str, float]:
            with torch.no_grad():
                return {f"val_{k}": v for k, v in objective(val)[1].items()}

        return self._run_stage("proprio", cfg, objective, dynamics, make_batch, evaluate)

    def _fit_noise_head(self, model: WorldModel) -> None:
        """Fit the dynamics' noise head (``[proprio] noise_steps``) by Gaussian likelihood on the
        one-step errors of its prediction over every training episode (held-out ones scored).
        Deterministic given the seed and the fitted dynamics, and short: a resumed run repeats
        it and ends with the same head."""
        cfg = self.config.proprio
        dynamics = model.dit.proprio_dynamics
        assert dynamics.noise_head is not None
        inputs, residuals = self._one_step_errors(model, "train")
        val_inputs, val_residuals = self._one_step_errors(model, "val")
        n = len(residuals)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed_for(self.config.seed, "proprio", "noise"))
            dynamics.reset_noise_head(residuals.std(0) if n > 1 else None)
        optimizer = torch.optim.AdamW(dynamics.noise_head.parameters(), lr=cfg.lr, weight_decay=0.0)
        batch = max(cfg.batch_size, 1024)
        bar = tqdm(total=cfg.noise_steps, desc="proprio noise", disable=not self.progress, dynamic_ncols=True)
        for step in range(cfg.noise_steps):
            rows = torch.as_tensor(self._indices("proprio-noise", step, n, batch), device=residuals.device)
            loss = noise_nll(dynamics.log_scale(*(x[rows] for x in inputs)), residuals[rows])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            bar.update(1)
        bar.close()
        metrics = {"nll": float(loss.detach())}
        if len(val_residuals):
            with torch.no_grad():
                log_scale = dynamics.log_scale(*val_inputs)
                z = (val_residuals * torch.exp(-log_scale)).abs()
                metrics.update(val_nll=float(noise_nll(log_scale, val_residuals)),
                               val_within_1sd=float((z < 1).float().mean()),
                               val_within_2sd=float((z < 2).float().mean()))
        if self.dist.is_main:
            self.log.write({"stage": "proprio_noise", "step": cfg.noise_steps, "samples": n, **metrics})

    def _whole_episodes(self, model: WorldModel, split: str
                        ) -> Iterator[tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]]:
        """Every episode of the ``[proprio]`` stage's ``split`` (the frame files' and the
        state-only files'), whole: normalised states ``[T, S]``, actions ``[T, A]`` (as
        :meth:`~kairos_gym.data.dataset.ClipDataset.whole_episode` aligns them) and the episode."""
        window = self.config.proprio.window + 1  # the stage's datasets, already indexed
        datasets = [self._dataset(window, split)]
        if self.config.proprio.paths:
            datasets.append(self._state_dataset(window, split))
        for dataset in datasets:
            for i in range(len(dataset.episodes)):
                ep = dataset.whole_episode(i)
                yield (model.dit.normalize_state(ep["state"].to(self.dist.device)),
                       ep["actions"].to(self.dist.device, torch.float32), ep)

    def _one_step_errors(self, model: WorldModel, split: str
                         ) -> tuple[tuple[torch.Tensor, ...], torch.Tensor]:
        """The dynamics' inputs for every one-step prediction of ``split``'s episodes (each
        from its reset on, as the imagined env carries it; see
        :meth:`~kairos_gym.model.proprio.ProprioDynamics.teacher_forced_inputs`) and the true next
        normalised states less the predictions ``[N, S]``."""
        dit = model.dit
        inputs: list[tuple[torch.Tensor, ...]] = []
        residuals = []
        with torch.no_grad():
            for true, actions, _ in self._whole_episodes(model, split):
                if len(true) < 2:
                    continue
                args, _ = dit.proprio_dynamics.teacher_forced_inputs(true[None], actions[None])
                inputs.append(args)
                residuals.append(true[1:] - dit.proprio_dynamics(*args))
        if not residuals:
            return (), torch.zeros(0, dit.proprio_dynamics.state_dim, device=self.dist.device)
        return tuple(torch.cat(parts) for parts in zip(*inputs)), torch.cat(residuals)

    # Where the outcome head also learns from the dynamics' own unrolls (see outcome_steps).
    UNROLL_STARTS = (0, 20, 40)

    def _fit_outcomes_on_unrolls(self, model: WorldModel) -> None:
        """Refit the dynamics' outcome head (``[proprio] outcome_steps``) on true and imagined
        states of the training episodes. Deterministic given the seed and the fitted dynamics,
        and short: a resumed run repeats it from the stage's final checkpoint and ends with
        the same head."""
        cfg = self.config.proprio
        dynamics = model.dit.proprio_dynamics
        assert dynamics.outcome_head is not None
        states, labels = self._outcome_samples(model)
        n = len(states)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed_for(self.config.seed, "proprio", "outcomes"))
            for layer in dynamics.outcome_head:
                if isinstance(layer, nn.Linear):
                    layer.reset_parameters()
        optimizer = torch.optim.AdamW(dynamics.outcome_head.parameters(), lr=cfg.lr, weight_decay=0.0)
        batch = max(cfg.batch_size, 1024)
        metrics: dict[str, float] = {}
        for step in range(cfg.outcome_steps):
            rows = torch.as_tensor(self._indices("proprio-outcomes", step, n, batch), device=states.device)
            loss, metrics = state_outcome_loss(
                dynamics, states[rows][:, None], {k: v[rows][:, None] for k, v in labels.items()}
            )
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        if self.dist.is_main:
            self.log.write({"stage": "proprio_outcomes", "step": cfg.outcome_steps,
                            "samples": n, **metrics})

    def _outcome_samples(self, model: WorldModel) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """True normalised states of every training episode and the dynamics' open-loop unrolls
        of them (drawn, for a stochastic dynamics) from :attr:`UNROLL_STARTS` ``[N, S]``, with
        the labels of the frames they stand for (``rewards``/``success``/``done`` ``[N]``)."""
        dit = model.dit
        states, labels = [], {k: [] for k in ("rewards", "success", "done")}
        # A stochastic dynamics' unrolls are drawn, as the imagined env draws them.
        sampled = dit.proprio_dynamics.stochastic
        generator = torch.Generator(self.dist.device).manual_seed(
            seed_for(self.config.seed, "proprio", "outcome-unrolls"))
        with torch.no_grad():
            for true, actions, ep in self._whole_episodes(model, "train"):
                starts = [t for t in self.UNROLL_STARTS if t < len(true) - 1]
                states.append(true)
                states.extend(
                    dit.proprio_dynamics.unroll(true[None, t:], actions[None, t:], start=1,
                                                sample=sampled, generator=generator)[0]
                    for t in starts
                )
                for key, pieces in labels.items():
                    value = ep[key].to(self.dist.device, torch.float32)
                    pieces.append(value)  # the true states' labels
                    pieces.extend(value[t:] for t in starts)
        return torch.cat(states), {k: torch.cat(v) for k, v in labels.items()}

    def _proprio_windows(self, model: WorldModel, split: str) -> dict[str, torch.Tensor]:
        """Every window of ``window + 1`` states of a split, from the frame files and the
        state-only ``[proprio] paths``: normalised ``state`` ``[N, W+1, S]``, ``actions``
        ``[N, W+1, A]`` (``actions[:, t]`` leads into state ``t``), the labels
        ``rewards``/``success``/``done`` ``[N, W+1]`` and ``at_reset`` ``[N]``: the window
        starts at its episode's first state (see :func:`~kairos_gym.train.objectives.proprio_loss`)."""
        datasets = [self._dataset(self.config.proprio.window + 1, split)]
        if self.config.proprio.paths:
            datasets.append(self._state_dataset(self.config.proprio.window + 1, split))
        items = [d[i] for d in datasets for i in range(len(d))]
        device = self.dist.device
        out = {k: torch.stack([it[k] for it in items]).to(device)
               for k in ("state", "actions", "rewards", "success", "done")}
        if self.config.proprio.reset_windows:
            out["at_reset"] = torch.stack([it["first_frame"][0] for it in items]).to(device)
        out["state"] = model.dit.normalize_state(out["state"])
        out["actions"] = out["actions"].float()
        return out

    def _state_dataset(self, clip_len: int, split: str) -> ClipDataset:
        """State-only clips of the ``[proprio] paths`` (no frames are read; built once, as
        :meth:`_dataset`)."""
        return self._cached_clips(self.config.proprio.paths, (), clip_len, split)

    def _fit_state_normalisation(self, model: WorldModel, train: ClipDataset) -> None:
        ids = np.random.default_rng(seed_for(self.config.seed, "state-stats")).integers(
            0, len(train), size=min(512, len(train))
        )
        states = torch.cat([train[int(i)]["state"] for i in ids])
        model.dit.state_mean.copy_(states.mean(0))
        model.dit.state_std.copy_(states.std(0).clamp_min(1e-3))

    def _clips(
        self, model: WorldModel, dataset: ClipDataset, ids: np.ndarray
    ) -> dict[str, torch.Tensor]:
        # A video codec's latent frame covers several frames: labels and actions per latent.
        tc = self.config.model.temporal_compression
        items = [group_by_latent(dataset[int(i)], tc) for i in ids]
        batch = {
            k: torch.stack([it[k] for it in items]).to(self.dist.device)
            for k in ("actions", "action_mask", "rewards", "success", "done", "state")
        }
        with torch.no_grad():
            batch["latents"] = model.codec.encode(
                torch.stack([it["frames"] for it in items]).to(self.dist.device)
            )
        return batch

    def _open_loop(self, model: WorldModel) -> dict[str, float]:
        """Open-loop PSNR/SSIM, the repeat-last-frame baseline and head accuracy on held-out episodes."""
        cfg, d = self.config.world_model, self.config.data
        if cfg.eval_episodes == 0:
            return {}
        try:
            episodes = load_episodes(
                list(d.paths),
                d.camera,
                split="val",
                val_fraction=d.val_fraction,
                seed=d.split_seed,
                min_steps=cfg.eval_horizon,
                max_steps=cfg.eval_horizon,
                max_episodes=cfg.eval_episodes,
                state_keys=self.keys.state_keys,
            )
            if not episodes:
                return {}
            r = open_loop_eval(
                model, episodes, horizon=cfg.eval_horizon, seed=self.config.seed, progress=False
            )
        except Exception as exc:  # noqa: BLE001 - an auxiliary metric must not end a long run
            warnings.warn(f"open-loop evaluation failed: {type(exc).__name__}: {exc}", stacklevel=2)
            return {}
        k = cfg.eval_horizon
        scores = {
            "open_loop_psnr": float(r.psnr.mean()),
            f"open_loop_psnr_h{k}": float(r.curve("psnr")[-1]),
            "open_loop_ssim": float(r.ssim.mean()),
            "baseline_psnr": float(r.baseline_psnr.mean()),
            "baseline_ssim": float(r.baseline_ssim.mean()),
            "success_accuracy": r.success_accuracy,
            "reward_mae": r.reward_mae,
        }
        if r.state_mae is not None:
            scores["state_mae"] = r.state_mae
        return scores

    # --- export ---
    def export(self) -> Path:
        """Write ``<output>/model``: the environment checkpoint (rank 0)."""
        assert self.model is not None
        model = self.model.eval()
        if self.dist.is_main:
            directory = self.output / "model"
            name = self.config.export_dtype
            save_env_checkpoint(
                directory, model, self.spec, self._reset_observations(), self._training_info(),
                dtype=None if name == "float32" else getattr(torch, name),
                success_rule=None if self.config.success_rule is None
                else SuccessRule.parse(self.config.success_rule),
            )
        self.dist.barrier()
        return self.output / "model"

    def _reset_observations(self) -> dict[str, np.ndarray]:
        """First observations of the first ``data.reset_observations`` training episodes; with
        ``data.weights``, of each file's first episodes in proportion to its weight (so every
        embodiment of a mixture has its own starts)."""
        d = self.config.data
        refs = list_episodes(
            list(d.paths), split="train", val_fraction=d.val_fraction, seed=d.split_seed
        )
        if d.weights is None:
            refs = refs[: d.reset_observations]
        else:
            w = np.asarray(d.weights) / sum(d.weights) * d.reset_observations
            counts = np.floor(w).astype(int)
            # The remaining starts go to the largest remainders (the file order breaks ties).
            for i in np.argsort(-(w - counts), kind="stable")[: d.reset_observations - counts.sum()]:
                counts[i] += 1
            refs = [r for path, k in zip(d.paths, counts)
                    for r in [r for r in refs if r.path == path][:k]]
        keys = list(self.spec.observation_space.spaces)
        out: dict[str, list[np.ndarray]] = {k: [] for k in keys}
        for ref in refs:
            with EpisodeReader(ref.path) as reader:
                ep = reader[ref.name]
                for k in keys:
                    out[k].append(ep.obs(k, 0))
        return {k: np.stack(v) for k, v in out.items()}

    def _training_info(self) -> dict[str, Any]:
        records = self.log.read()
        evals = [r for r in records if r.get("stage") == "world_model" and "eval" in r]
        data = []
        for path in self.config.data.paths:
            with EpisodeReader(path) as reader:
                data.append(
                    {
                        "file": os.path.basename(path),
                        "episodes": len(reader),
                        "steps": int(sum(reader[i].num_samples for i in range(len(reader)))),
                    }
                )
        device = (
            torch.cuda.get_device_name(self.dist.device)
            if self.dist.device.type == "cuda"
            else f"{platform.processor() or platform.machine()} CPU"
        )
        return {
            "config": self.config.to_dict(),
            "init": self.config.init,
            "finetune": {
                "mode": self.config.finetune.mode,
                "released_dit": self.config.finetune.released_dit,
                "trainable_parameters": self._trainable_parameters,
            },
            "data": data,
            "steps": {
                "codec": self.config.codec.steps,
                "world_model": self.config.world_model.steps,
            },
            "hardware": {
                "device": device,
                "processes": self.dist.world_size,
                "torch_threads": torch.get_num_threads(),
                "cpu_count": os.cpu_count(),
            },
            "elapsed_s": {
                s: max(
                    (r.get("elapsed_s", 0.0) for r in records if r.get("stage") == s), default=0.0
                )
                for s in STAGES
            },
            "final_eval": evals[-1]["eval"] if evals else {},
            "torch": torch.__version__,
        }
