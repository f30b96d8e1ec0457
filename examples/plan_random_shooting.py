"""Plan in imagination: random shooting over batched forks of one imagined episode.

    .venv/bin/python examples/plan_random_shooting.py                       # the embedded Lift model
    .venv/bin/python examples/plan_random_shooting.py --candidates 32 --horizon 6 --steps 10

At every control step the planner forks the current imagined episode into ``--candidates``
copies (``env.core.fork``: one batched memory, no reload), imagines a random action sequence
of ``--horizon`` steps for each in latent space (``rollout(..., decode=False)``: no frames
are decoded), and executes the first action of the sequence with the highest predicted
return (model-predictive control). Forks share the episode's noise stream, so candidates are
compared under the same noise. It prints the predicted return of the planned episode beside
that of uniform random actions from the same start. Both are the model's own predictions: a
planner is judged in the real simulator, and the embedded model's reward head is optimistic
away from expert actions (see its model card).
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np
import torch

from kairos_gym import ImaginedEnv
from kairos_gym.errors import CheckpointError


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--checkpoint", default=None, help="environment checkpoint (default: embedded)")
    parser.add_argument("--candidates", type=int, default=32, help="action sequences per step")
    parser.add_argument("--horizon", type=int, default=6, help="imagined steps per sequence")
    parser.add_argument("--steps", type=int, default=10, help="control steps to plan")
    parser.add_argument("--seed", type=int, default=0, help="seed of the start and the candidates")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = parser.parse_args(argv)
    if min(args.candidates, args.horizon, args.steps) < 1 or args.threads < 0:
        parser.error("--candidates, --horizon and --steps must be >= 1, --threads >= 0")
    return args


def plan_step(env: ImaginedEnv, rng: np.random.Generator, candidates: int, horizon: int) -> np.ndarray:
    """The first action of the best of ``candidates`` random sequences ``[horizon, A]``."""
    space = env.action_space
    plans = rng.uniform(space.low, space.high, (candidates, horizon, *space.shape))
    futures = env.core.fork(0, candidates)
    outcome = futures.rollout(plans.astype(np.float32), decode=False)
    return plans[int(outcome.returns.argmax()), 0].astype(np.float32)


def episode_return(env: ImaginedEnv, seed: int, steps: int, act) -> float:
    """Predicted return of ``steps`` steps from the seeded start, actions from ``act(env)``."""
    env.reset(seed=seed)
    total = 0.0
    for _ in range(steps):
        _, reward, terminated, truncated, _ = env.step(act(env))
        total += reward
        if terminated or truncated:
            break
    return total


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        env = ImaginedEnv(args.checkpoint)
    except CheckpointError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    rng = np.random.default_rng(args.seed)
    start = time.perf_counter()
    planned = episode_return(
        env, args.seed, args.steps, lambda e: plan_step(e, rng, args.candidates, args.horizon)
    )
    seconds = time.perf_counter() - start
    random_return = episode_return(
        env, args.seed, args.steps, lambda e: rng.uniform(-1, 1, e.action_space.shape).astype(np.float32)
    )
    imagined = args.steps * args.candidates * args.horizon
    print(
        f"predicted return over {args.steps} steps: planned {planned:.3f}, random {random_return:.3f} "
        f"({imagined} imagined candidate steps in {seconds:.1f} s)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
