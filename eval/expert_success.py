"""Success rate of the scripted experts over seeded episodes, per environment.

Runs ``make_policy("expert", env, noise=...)`` for ``--episodes`` episodes with seeds
``--seed``, ``--seed + 1``, ... and prints one row per environment: episodes, successes,
success rate, mean steps (to the first success, or to the end of a failed episode) and the
wall-clock time. An episode counts as a success if ``info["success"]`` is true at any step;
it ends there (``terminate_on_success=True``) or at the environment's step limit. No camera
is rendered (``cameras=()``) where the environment allows it, so the run is fast.

Run::

    python -m kairos_gym.eval.expert_success --env kairos_gym/Robosuite-Lift-v0 --episodes 20
    python -m kairos_gym.eval.expert_success \
        --env kairos_gym/Robosuite-Lift-v0,kairos_gym/Robosuite-Door-v0
    python -m kairos_gym.eval.expert_success --env all --episodes 20 --noise 0.0 --seed 0 \
        --json /tmp/experts.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict, dataclass
from typing import Any

import gymnasium as gym
import numpy as np

import kairos_gym  # noqa: F401  (registers the environment ids)
from kairos_gym.eval.script import entry_point
from kairos_gym.policies import make_policy
from kairos_gym.policies.registry import EXPERTS
from kairos_gym.rollout import run_episode


@dataclass
class ExpertResult:
    """Outcome of one environment's episodes.

    Attributes:
        env: gymnasium id.
        episodes: number of episodes run.
        successes: episodes with ``info["success"]`` at some step.
        success_rate: ``successes / episodes``.
        mean_steps: mean episode length (to the first success, or to the step limit).
        mean_steps_success: mean steps to success over successful episodes (NaN if none).
        seconds: wall-clock time of the whole run.
        per_episode: ``[(seed, success, steps), ...]``.
        note: how the environment was built (e.g. a camera fallback).
    """

    env: str
    episodes: int
    successes: int
    success_rate: float
    mean_steps: float
    mean_steps_success: float
    seconds: float
    per_episode: list[tuple[int, bool, int]]
    note: str = ""


def make_eval_env(env_id: str, max_episode_steps: int | None = None) -> tuple[gym.Env, str]:
    """Build ``env_id`` without cameras (fall back to its default cameras if it needs one).

    Returns:
        ``(env, note)``; ``note`` says what was built.
    """
    kwargs: dict[str, Any] = {"terminate_on_success": True}
    if max_episode_steps is not None:
        kwargs["max_episode_steps"] = max_episode_steps
    try:
        return gym.make(env_id, cameras=(), **kwargs), "no cameras"
    except (TypeError, ValueError) as exc:
        return gym.make(env_id, **kwargs), f"default cameras ({exc})"


def run_expert(
    env_id: str,
    *,
    episodes: int,
    noise: float = 0.0,
    seed: int = 0,
    max_episode_steps: int | None = None,
) -> ExpertResult:
    """Run the scripted expert of ``env_id`` for ``episodes`` seeded episodes.

    Raises:
        ValueError: ``episodes < 1`` or no expert exists for ``env_id``.
    """
    if episodes < 1:
        raise ValueError(f"episodes must be >= 1, got {episodes}")
    env, note = make_eval_env(env_id, max_episode_steps)
    try:
        policy = make_policy("expert", env, noise=noise)
        rows: list[tuple[int, bool, int]] = []
        start = time.perf_counter()
        for k in range(episodes):
            # The env terminates at the first success; stop_on_success says so for any env.
            episode = run_episode(env, policy, seed=seed + k, stop_on_success=True)
            rows.append((seed + k, episode.success, episode.length))
        seconds = time.perf_counter() - start
    finally:
        env.close()
    successes = sum(ok for _, ok, _ in rows)
    won = [n for _, ok, n in rows if ok]
    return ExpertResult(
        env=env_id,
        episodes=episodes,
        successes=successes,
        success_rate=successes / episodes,
        mean_steps=float(np.mean([n for _, _, n in rows])),
        mean_steps_success=float(np.mean(won)) if won else float("nan"),
        seconds=seconds,
        per_episode=rows,
        note=note,
    )


def format_table(results: list[ExpertResult]) -> str:
    """Markdown table of results, one row per environment."""
    lines = [
        (
            "| env | episodes | successes | success rate | mean steps | mean steps (success) "
            "| seconds |"
        ),
        "|---|---|---|---|---|---|---|",
    ]
    for r in results:
        lines.append(
            f"| {r.env} | {r.episodes} | {r.successes} | {r.success_rate:.0%} | {r.mean_steps:.1f} "
            f"| {r.mean_steps_success:.1f} | {r.seconds:.1f} |"
        )
    return "\n".join(lines)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Command-line options (shared with a ``kairos-gym`` sub-command)."""
    parser.add_argument(
        "--env",
        default="all",
        help=f"comma-separated ids with a scripted expert, or 'all' ({', '.join(EXPERTS)})",
    )
    parser.add_argument("--episodes", type=int, default=20, help="seeded episodes per environment")
    parser.add_argument(
        "--noise", type=float, default=0.0, help="std of the expert's Gaussian action noise"
    )
    parser.add_argument(
        "--seed", type=int, default=0, help="seed of the first episode (then +1 each)"
    )
    parser.add_argument("--max-steps", type=int, default=None, help="override the env's step limit")
    parser.add_argument(
        "--json", default=None, metavar="PATH", help="also write the results as JSON"
    )


def run(args: argparse.Namespace, argv: list[str] | None = None) -> int:
    """Run the experts named by ``args`` and print the table; returns an exit status."""
    if args.env == "all":
        env_ids = list(EXPERTS)
    else:
        env_ids = [e.strip() for e in args.env.split(",") if e.strip()]
    for env_id in env_ids:
        if env_id not in EXPERTS:
            print(
                f"error: no scripted expert for {env_id!r}; choose from {list(EXPERTS)} or 'all'",
                file=sys.stderr,
            )
            return 2
    results = []
    for env_id in env_ids:
        try:
            result = run_expert(
                env_id,
                episodes=args.episodes,
                noise=args.noise,
                seed=args.seed,
                max_episode_steps=args.max_steps,
            )
        except ImportError as exc:
            print(f"skipping {env_id}: {exc}", file=sys.stderr)
            continue
        results.append(result)
        print(
            f"{env_id}: {result.successes}/{result.episodes} successes, "
            f"{result.seconds:.1f}s ({result.note})",
            file=sys.stderr,
            flush=True,
        )
    print(format_table(results))
    if args.json:
        with open(args.json, "w") as f:
            rows = [asdict(r) for r in results]
            payload = {"noise": args.noise, "seed": args.seed, "results": rows}
            json.dump(payload, f, indent=2)
    return 0


main = entry_point(__doc__, add_arguments, run)


if __name__ == "__main__":
    sys.exit(main())
