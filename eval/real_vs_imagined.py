"""Benchmark: a policy's episodes in the real simulator and in imagination, compared.

For each policy and each seed, the real env (built from the checkpoint's env spec) and the
imagined env start from the same real reset; the policy acts on the real observations and
every action goes to both (``kairos_gym.rollout.run_paired``; the figures come from
``kairos_gym.evaluation.real_vs_imagined``). Reported per policy, averaged over episodes:
PSNR of imagined against real frames (and of "the first frame repeated"), per-step success
agreement, whether each episode's success agrees, the real and the predicted return, and the
error of the first-success step.

The random policy probes what a model does away from expert data: a model that ignores its
actions imagines the expert's motion anyway and predicts rewards the real env never gives.

Run::

    python -m kairos_gym.eval.real_vs_imagined --checkpoint kairos_gym/assets/lift \\
        --policies expert random --episodes 8 --threads 2 --output results/real_vs_imagined.json
"""

from __future__ import annotations

import os

# Headless MuJoCo rendering; must be set before robosuite (or mujoco) is first imported.
os.environ.setdefault("MUJOCO_GL", "egl")
os.environ.setdefault("PYOPENGL_PLATFORM", "egl")

import argparse
import json
import platform
import shlex
import sys
import time
from pathlib import Path
from typing import Any

from kairos_gym.eval.script import entry_point
from kairos_gym.evaluation.real_vs_imagined import aggregate, open_env_pair, summarize

__all__ = ["add_arguments", "aggregate", "main", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Command-line options."""
    parser.add_argument("--checkpoint", default=None,
                        help="environment checkpoint directory (default: the embedded model)")
    parser.add_argument("--policies", nargs="+", default=["expert", "random"], choices=("expert", "random"),
                        help="policies to compare (default: expert random)")
    parser.add_argument("--noise", type=float, default=0.0, help="expert action noise (default 0)")
    parser.add_argument("--episodes", type=int, default=8, help="episodes per policy (default 8)")
    parser.add_argument("--seed", type=int, default=100, help="episode k is reset with seed + k (default 100)")
    parser.add_argument("--steps", type=int, default=None, help="steps per episode (default: the episode limit)")
    parser.add_argument("--sample-steps", type=int, default=None, help="Euler steps per imagined frame")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--output", default="results/real_vs_imagined.json", help="JSON output path")


def run(args: argparse.Namespace, argv: list[str]) -> int:
    """Run every policy's episodes, print the table, write the JSON; returns an exit status."""
    import gymnasium as gym
    import torch

    import kairos_gym  # noqa: F401  (registers the environments)
    from kairos_gym.errors import CheckpointError, DependencyNotInstalled
    from kairos_gym.policies.registry import make_policy
    from kairos_gym.rollout import run_paired

    if args.episodes < 1 or args.threads < 0 or (args.steps is not None and args.steps < 1) or args.noise < 0:
        print("error: --episodes and --steps must be >= 1, --threads and --noise >= 0", file=sys.stderr)
        return 2
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        # The policy's real actions are replayed in imagination: a stochastic dynamics takes
        # its prediction (draws would add up with nothing to correct them).
        ckpt, real, imagined = open_env_pair(args.checkpoint, sample_steps=args.sample_steps,
                                             draw_state=False)
    except (CheckpointError, ValueError, DependencyNotInstalled, gym.error.Error) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    steps = args.steps or ckpt.max_episode_steps or 80
    started = time.perf_counter()
    results: dict[str, Any] = {}
    for name in args.policies:
        policy = make_policy(name, real, noise=args.noise if name == "expert" else 0.0)
        episodes = []
        for k in range(args.episodes):
            episode = run_paired(real, imagined, policy, seed=args.seed + k, max_steps=steps,
                                 image_key=ckpt.image_key)
            episodes.append(summarize(episode))
            print(f"  {name} seed {args.seed + k}: PSNR {episodes[-1]['psnr_mean']:.2f} dB, return "
                  f"{episodes[-1]['return']:.1f} real / {episodes[-1]['imagined_return']:.1f} imagined", flush=True)
        results[name] = {"summary": aggregate(episodes), "episodes": episodes}
    real.close()

    print(f"\n{ckpt.env_spec.env_id}: {args.episodes} episodes x {steps} steps per policy, "
          f"sample_steps {imagined.settings.steps}")
    print(f"{'policy':<8} {'PSNR':>6} {'repeat':>7} {'succ/step':>10} {'succ/ep':>8} {'real ret':>9} "
          f"{'imag ret':>9} {'first-succ err':>15}")
    for name, result in results.items():
        s = result["summary"]
        err = "-" if s["first_success_step_error"] is None else f"{s['first_success_step_error']:.1f}"
        print(f"{name:<8} {s['psnr']:>6.2f} {s['baseline_psnr']:>7.2f} {s['success_step_agreement']:>10.3f} "
              f"{s['success_episode_agreement']:>8.3f} {s['return']:>9.2f} {s['imagined_return']:>9.2f} {err:>15}")
    report = {
        "benchmark": "real_vs_imagined",
        "command": shlex.join(["python", "-m", "kairos_gym.eval.real_vs_imagined", *argv]),
        "checkpoint": str(ckpt.path), "env_id": ckpt.env_spec.env_id, "steps": steps,
        "sample_steps": imagined.settings.steps, "seed": args.seed, "noise": args.noise,
        "torch_threads": torch.get_num_threads(), "cpu": platform.machine(),
        "seconds": time.perf_counter() - started, "policies": results,
    }
    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2))
    print(f"wrote {out}")
    return 0


main = entry_point(__doc__, add_arguments, run)


if __name__ == "__main__":
    sys.exit(main())
