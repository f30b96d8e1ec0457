"""Benchmark: how differently a policy acts on imagined observations than on real ones.

Each recorded episode (a real rollout of the policy) is replayed in imagination from its first
observation under its recorded actions; at every step the policy acts on the real observation,
the imagined one, and the two mixtures (imagined frames with the real state, real frames with
the imagined state) (:mod:`kairos_gym.evaluation.policy_divergence`). The divergences are in
units of the policy's own action spread: where the closed-loop agreement benchmark finds a
gap and the dynamics replay does not, this says whether the frames or the carried state
steer the policy away from its real behaviour. Pass the policy without execution modifiers
(the rollouts of ``bc:DIR+noise=0.3`` are judged with ``bc:DIR``).

Run::

    python -m kairos_gym.eval.policy_divergence --checkpoint kairos_gym/assets/door \
        --policy bc:runs/bc_door/n60_s2000 --data data/door_roll/n60_s2000_noise03.hdf5 \
        --episodes 6 --horizon 64 --output results/door/policy_divergence.json

Prints, per file, the mean divergence of each input; writes them, the per-step curves and the
command line as JSON.
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
from kairos_gym.evaluation.policy_divergence import INPUTS, policy_divergence, summarize
from kairos_gym.imagined.checkpoint import load_env_checkpoint
from kairos_gym.imagined.env import ImaginedEnv
from kairos_gym.policies import make_policy
from kairos_gym.policies.registry import parse_spec


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of the script."""
    parser.add_argument("--checkpoint", default=None,
                        help="environment checkpoint (default: the embedded default model)")
    parser.add_argument("--policy", required=True, metavar="SPEC",
                        help="a memoryless policy without modifiers, e.g. bc:runs/bc/n4_s800")
    parser.add_argument("--data", nargs="+", required=True, metavar="HDF5",
                        help="episode files with every observation key of the checkpoint's env")
    parser.add_argument("--episodes", type=int, default=None, help="at most this many per file")
    parser.add_argument("--horizon", type=int, default=None, help="at most this many steps per episode")
    parser.add_argument("--seed", type=int, default=0, help="imagined noise seed of episode 0")
    parser.add_argument("--sample-steps", type=int, default=None,
                        help="denoising steps per imagined frame (default: the checkpoint's)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    parser.add_argument("--output", default=None, help="JSON output path")


def run(args: argparse.Namespace, argv: list[str]) -> int:
    """Measure every file; print and write the results. Exit 2 on unusable input."""
    torch.set_num_threads(max(args.threads, 1))
    start = time.perf_counter()
    try:
        _, modifiers = parse_spec(args.policy)
        if modifiers:
            raise ValueError(
                f"--policy {args.policy!r} has execution modifiers; pass its base spec (the "
                "policy is judged on what it would do, not on the noise or detours added to it)"
            )
        ckpt = load_env_checkpoint(args.checkpoint)
        policy = make_policy(args.policy, ImaginedEnv(ckpt))
        results = {
            path: policy_divergence(ckpt, policy, path, horizon=args.horizon,
                                    max_episodes=args.episodes, seed=args.seed,
                                    sample_steps=args.sample_steps)
            for path in args.data
        }
    except (KairosGymError, ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"{'file':40s} {'episodes':>8s} {'steps':>6s} " + " ".join(f"{n:>16s}" for n in INPUTS))
    rows = {path: summarize([r]) for path, r in results.items()}
    for path, row in rows.items():
        print(f"{Path(path).name:40s} {int(row['episodes']):8d} {int(row['steps']):6d} "
              + " ".join(f"{row[n]:16.3f}" for n in INPUTS))
    if args.output:
        report = {
            "benchmark": "policy_divergence",
            "command": "python -m kairos_gym.eval.policy_divergence " + shlex.join(argv),
            "checkpoint": args.checkpoint,
            "policy": args.policy,
            "seconds": time.perf_counter() - start,
            "all": summarize(list(results.values())),
            "files": {
                path: {**rows[path], "names": r.names,
                       "episodes_detail": {n: r.divergence[n].tolist() for n in INPUTS},
                       "per_step": {n: r.per_step[n].tolist() for n in INPUTS},
                       "action_scale": r.action_scale.tolist()}
                for path, r in results.items()
            },
        }
        write_report(args.output, report)
    return 0


main = entry_point(__doc__, add_arguments, run)

if __name__ == "__main__":
    sys.exit(main())
