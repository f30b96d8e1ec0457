"""Benchmark: recorded episodes replayed through a model's dynamics alone; success compared.

For a model with ``state_outcomes``, each episode's first recorded state is carried through the
proprioceptive dynamics under the episode's recorded actions, and the outcome head reads
success off every carried state (:mod:`kairos_gym.evaluation.dynamics_replay`). No frame is
generated: seconds for hundreds of episodes, the quick check of a dynamics change before the
paired and closed-loop agreement runs. State-only files (``collect --cameras none``) work.

Run::

    python -m kairos_gym.eval.dynamics_replay --checkpoint kairos_gym/assets/lift_objects \
        --data data/lift_state/test_*.hdf5 --output results/dynamics_replay.json

Prints, per file, real and imagined success rates, their agreement per episode, and the mean
error of the last carried state and of the largest one along each episode; writes them with
the command line as JSON. ``--error-steps 50 100 --entry-errors`` adds, at those steps, the
mean absolute error of every state entry (``object_state[0]``, ..., ``state[7]``): where the
carried state drifts, entry by entry.
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from pathlib import Path

import torch

from kairos_gym.errors import KairosGymError
from kairos_gym.eval.script import entry_point, write_report
from kairos_gym.evaluation.dynamics_replay import replay_dynamics, summarize
from kairos_gym.imagined.checkpoint import load_env_checkpoint


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of the script."""
    parser.add_argument("--checkpoint", default=None,
                        help="environment checkpoint (default: the embedded default model)")
    parser.add_argument("--data", nargs="+", required=True, metavar="HDF5",
                        help="episode files recorded with the checkpoint's state keys")
    parser.add_argument("--episodes", type=int, default=None, help="at most this many per file")
    parser.add_argument("--error-steps", type=int, nargs="*", default=[], metavar="T",
                        help="also report the median state error at these steps")
    parser.add_argument("--entry-errors", action="store_true",
                        help="with --error-steps: also the mean absolute error of each state entry there")
    parser.add_argument("--threshold", type=float, default=0.5, help="success_prob threshold")
    parser.add_argument("--seed", type=int, default=0,
                        help="a stochastic dynamics draws episode i's states from seed + i (default 0)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    parser.add_argument("--output", default=None, help="JSON output path")


def run(args: argparse.Namespace, argv: list[str]) -> int:
    """Replay every file; print and write the results. Exit 2 on unusable input."""
    if args.entry_errors and not args.error_steps:
        print("error: --entry-errors reports at the --error-steps; give them (e.g. --error-steps 50 100)",
              file=sys.stderr)
        return 2
    torch.set_num_threads(max(args.threads, 1))
    start = time.perf_counter()
    try:
        ckpt = load_env_checkpoint(args.checkpoint)
        results = {path: replay_dynamics(ckpt, path, threshold=args.threshold,
                                         max_episodes=args.episodes, seed=args.seed) for path in args.data}
    except (KairosGymError, ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    rows = {path: summarize([r], args.error_steps, entries=args.entry_errors)
            for path, r in results.items()}
    labels = entry_labels(ckpt.observation_keys.state_widths)
    print(f"{'file':40s} {'episodes':>8s} {'real':>6s} {'imagined':>9s} {'agree':>6s} {'state err':>9s} {'peak err':>9s}")
    for path, row in rows.items():
        print(f"{Path(path).name:40s} {row['episodes']:8d} {row['real_success']:6.2f} "
              f"{row['imagined_success']:9.2f} {row['agreement']:6.2f} {row['final_state_error']:9.3f} "
              f"{row['peak_state_error']:9.3f}"
              + "".join(f"  @{t}: {v:.3g}" for t, v in row.get("state_error_at", {}).items()
                        if v is not None))
        for t, values in row.get("entry_error_at", {}).items():
            if values is not None:
                print(f"  @{t}: " + ", ".join(f"{n} {v:.3g}" for n, v in zip(labels, values)))
    if args.output:
        report = {
            "benchmark": "dynamics_replay",
            "command": "python -m kairos_gym.eval.dynamics_replay " + shlex.join(argv),
            "checkpoint": args.checkpoint,
            "threshold": args.threshold,
            "seconds": time.perf_counter() - start,
            **({"state_entries": labels} if args.entry_errors else {}),
            "files": {path: {**rows[path], "names": r.names,
                             "real": r.real_success.tolist(), "imagined": r.imagined_success.tolist()}
                      for path, r in results.items()},
        }
        write_report(args.output, report)
    return 0


def entry_labels(widths: dict[str, int]) -> list[str]:
    """``key[j]`` for every entry of the flat state, in its order (``{key: width}``)."""
    return [f"{key}[{j}]" for key, width in widths.items() for j in range(width)]


main = entry_point(__doc__, add_arguments, run)

if __name__ == "__main__":
    sys.exit(main())
