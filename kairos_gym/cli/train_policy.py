"""``kairos-gym train-policy``: behaviour-clone an observation-only policy from episode files.

Example (a Lift policy from 40 expert episodes, 2000 steps)::

    kairos-gym train-policy --data data/lift/expert10.hdf5 --output runs/bc/lift \\
        --episodes 40 --steps 2000

The result is a :class:`~kairos_gym.policies.learned.BCPolicy` directory
(``policy.json`` + ``policy.safetensors``) that sees only the camera image and the state
keys, so it runs unchanged in the real simulator and in imagination
(``BCPolicy.load(dir)``; ``bc:DIR`` in ``eval/agreement.py``).
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time

from kairos_gym.cli.options import (
    non_negative_float,
    non_negative_int,
    positive_float,
    positive_int,
)

PROG = "kairos-gym train-policy"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``kairos-gym train-policy``."""
    from kairos_gym.policies.learned import POOLS, BCConfig

    defaults = BCConfig()
    add = parser.add_argument
    add("--data", required=True, nargs="+", metavar="HDF5", help="episode files to clone")
    add("--output", required=True, metavar="DIR", help="policy directory to write")
    add("--camera", default=defaults.camera,
        help="camera the policy sees (default: the data's only camera)")
    add("--state-keys", default=None, metavar="A,B",
        help="comma-separated observation keys the policy's state is made of (default: every "
             "non-image key except the privileged object_state)")
    add("--episodes", type=positive_int, default=None, metavar="N",
        help="train on N episodes of a seeded shuffle (default: all)")
    add("--steps", type=positive_int, default=defaults.steps, metavar="N",
        help=f"optimiser steps (default: {defaults.steps})")
    add("--chunk", type=positive_int, default=defaults.chunk, metavar="H",
        help=f"actions predicted per query (default: {defaults.chunk})")
    add("--batch-size", type=positive_int, default=defaults.batch_size, metavar="B",
        help=f"samples per step (default: {defaults.batch_size})")
    add("--lr", type=positive_float, default=defaults.lr, help=f"learning rate (default: {defaults.lr})")
    add("--pool", choices=POOLS, default=defaults.pool,
        help="image features: 'average' over a 2x2 grid, or 'keypoints' (spatial soft-argmax: "
             "finds small objects; default: %(default)s)")
    add("--state-noise", type=non_negative_float, default=defaults.state_noise, metavar="S",
        help="training only: Gaussian noise on the state input, in units of each entry's "
             "spread over the data, so the policy does not just copy the joints it reads "
             "(default: %(default)s)")
    add("--seed", type=non_negative_int, default=defaults.seed, help="seed (default: 0)")
    add("--threads", type=positive_int, default=None, metavar="N", help="torch CPU threads")
    add("--no-progress", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    """Train and save; returns a process exit code (2: bad arguments, 1: bad data)."""
    import torch

    from kairos_gym.errors import DatasetError
    from kairos_gym.policies.learned import BCConfig, train_bc

    if args.threads is not None:
        torch.set_num_threads(args.threads)
    try:
        config = BCConfig(camera=args.camera, chunk=args.chunk, steps=args.steps,
                          batch_size=args.batch_size, lr=args.lr, max_episodes=args.episodes,
                          seed=args.seed, pool=args.pool, state_noise=args.state_noise,
                          state_keys=None if args.state_keys is None else tuple(
                              k for k in args.state_keys.split(",") if k))
    except ValueError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 2
    started = time.perf_counter()
    try:
        policy = train_bc(args.data, config, progress=not args.no_progress)
    except (DatasetError, OSError) as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 1
    path = policy.save(args.output)
    print(f"policy written to {path} ({time.perf_counter() - started:.1f} s; "
          f"{dataclasses.asdict(policy.config)})")
    return 0
