"""``kairos-gym train``: train the codec and the world model on episode files.

Example (the embedded default model)::

    kairos-gym train --config configs/lift.toml --output runs/lift

Running the same command again resumes an interrupted run from its last checkpoint and
ends with the weights an uninterrupted run would have. Data parallel over N processes::

    torchrun --nproc_per_node N -m kairos_gym.cli train --config configs/lift.toml --output runs/lift

A model over the Wan2.1 VAE (``[model] preset = "kairos-4b"``) reads the released VAE's
weights from a local file: ``--codec-weights Wan2.1-VAE/diffusion_pytorch_model.safetensors``
(or a diffusers VAE directory; overrides ``codec_weights`` in the config).

The result, ``<output>/model``, is an environment checkpoint for
``gym.make("kairos_gym/Imagined-v0", checkpoint="<output>/model")``.
"""

from __future__ import annotations

import argparse
import sys

from kairos_gym.cli.options import device_name, positive_int

PROG = "kairos-gym train"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``kairos-gym train``."""
    add = parser.add_argument
    add("--config", required=True, metavar="TOML", help="training config file (see configs/lift.toml)")
    add("--output", required=True, metavar="DIR", help="run directory; resumed when it holds the same run")
    add("--device", type=device_name, default="auto",
        help="cpu, cuda, cuda:N or auto (CUDA when available; default: auto)")
    add("--threads", type=positive_int, default=None, metavar="N",
        help="torch CPU threads (default: torch's)")
    add("--codec-weights", default=None, metavar="PATH",
        help="the Wan2.1 VAE's weights (.safetensors file or diffusers VAE folder) for a model "
             "with codec = \"wan\"; overrides codec_weights in the config")
    add("--stop-after", type=positive_int, default=None, metavar="STEP",
        help="pause each stage at this step (>= 1) with a checkpoint (run again to resume)")
    add("--no-open-loop", action="store_true", help="skip open-loop rollouts in held-out evaluations")
    add("--no-progress", action="store_true", help="no progress bars")


def run(args: argparse.Namespace) -> int:
    """Train; returns a process exit code."""
    import dataclasses
    from pathlib import Path

    import torch

    from kairos_gym.errors import CheckpointError, DatasetError
    from kairos_gym.train.distributed import init_distributed, shutdown
    from kairos_gym.train.trainer import Trainer, load_config

    if args.threads is not None:
        torch.set_num_threads(args.threads)
    try:
        config = load_config(args.config)
        if args.codec_weights is not None:
            # Relative to the working directory, as a command-line path is.
            weights = str(Path(args.codec_weights).resolve())
            config = dataclasses.replace(config, codec_weights=weights)
    except (ValueError, DatasetError) as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 2
    try:
        dist = init_distributed(args.device)
    except ValueError as exc:  # DeviceUnavailable: e.g. cuda on a CPU-only build
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 2
    try:
        trainer = Trainer(config, args.output, dist, progress=not args.no_progress,
                          stop_after=args.stop_after, evaluate_open_loop=not args.no_open_loop)
        result = trainer.run()
    except (ValueError, DatasetError, CheckpointError, FloatingPointError) as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 1
    finally:
        shutdown(dist)
    if dist.is_main:
        if result is None:
            print(f"paused at step {args.stop_after}; run the same command again to resume")
        else:
            print(f"environment checkpoint written to {result}")
    return 0
