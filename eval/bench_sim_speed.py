"""Benchmark: real-simulator steps per second, by image size and number of cameras.

For each environment id, steps random actions (seeded; uniform over the action space, or
a bounded random walk with ``--actions walk``) with
one camera and with two cameras, at 64x64 and 128x128, and reports steps/s over ``--steps``
timed steps after ``--warmup`` untimed ones (an episode that ends is reset inside the warm-up
or the timed loop; the reset time then counts). A configuration an environment does not
support (a camera it lacks) is listed as skipped with the reason. ``--no-render`` adds a row
without any camera.

Cameras: robosuite ``agentview`` (+ ``robot0_eye_in_hand``); ALOHA ``top`` (+ ``left_wrist``).

Run::

    python -m kairos_gym.eval.bench_sim_speed --env kairos_gym/Robosuite-Lift-v0 --steps 100
    python -m kairos_gym.eval.bench_sim_speed --env all --steps 100 --no-render \
        --json /tmp/sim_speed.json
    python -m kairos_gym.eval.bench_sim_speed --env kairos_gym/Aloha-TransferCube-v0 --actions walk
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from dataclasses import asdict, dataclass

import gymnasium as gym
import numpy as np

import kairos_gym  # noqa: F401  (registers the environment ids)
from kairos_gym.eval.script import entry_point

# Camera pairs per family of ids: the first is the default camera, the second a wrist view.
CAMERAS: dict[str, tuple[str, str]] = {
    "kairos_gym/Robosuite-": ("agentview", "robot0_eye_in_hand"),
    "kairos_gym/Aloha-": ("top", "left_wrist"),
}
ACTION_MODES = ("uniform", "walk")
ENV_IDS = (
    "kairos_gym/Robosuite-Lift-v0",
    "kairos_gym/Robosuite-Stack-v0",
    "kairos_gym/Robosuite-PickPlaceCan-v0",
    "kairos_gym/Robosuite-Door-v0",
    "kairos_gym/Aloha-TransferCube-v0",
    "kairos_gym/Aloha-Insertion-v0",
)


@dataclass
class SpeedResult:
    """One timed configuration.

    Attributes:
        env: gymnasium id.
        cameras: cameras rendered into the observation.
        image_size: side of the square images (0 when no camera).
        steps: timed steps.
        steps_per_s: timed steps per wall-clock second (NaN when skipped).
        skipped: why the configuration did not run ("" when it did).
    """

    env: str
    cameras: tuple[str, ...]
    image_size: int
    steps: int
    steps_per_s: float
    skipped: str = ""


def camera_pair(env_id: str) -> tuple[str, str]:
    """The (default, wrist) camera names benchmarked for ``env_id``.

    Raises:
        ValueError: no camera pair is known for this family of ids.
    """
    for prefix, pair in CAMERAS.items():
        if env_id.startswith(prefix):
            return pair
    raise ValueError(f"no benchmark cameras known for {env_id!r}; known prefixes: {list(CAMERAS)}")


class RandomActions:
    """Seeded random actions for a Box space.

    ``mode="uniform"``: i.i.d. uniform samples. ``mode="walk"``: a clipped Gaussian random
    walk (step std 5% of each range) that starts from the no-op: the measured ``state`` when
    it has the action's shape (absolute joint-position actions such as ALOHA's), else the
    middle of the range (delta actions such as robosuite's). Uniform joint-position targets
    jump across the whole workspace every step, which some simulators do not survive.
    """

    def __init__(self, space: gym.spaces.Box, mode: str, seed: int) -> None:
        if mode not in ACTION_MODES:
            raise ValueError(f"unknown action mode {mode!r}; choose one of {ACTION_MODES}")
        self.space, self.mode = space, mode
        self.rng = np.random.default_rng(seed)
        self.current = (space.low + space.high) / 2.0

    def start(self, obs: dict[str, np.ndarray]) -> None:
        """Restart the walk from the no-op of a fresh episode."""
        state = np.asarray(obs.get("state", ()), dtype=np.float32)
        if state.shape == self.space.shape and self.space.contains(state):
            self.current = state.copy()
        else:
            self.current = ((self.space.low + self.space.high) / 2.0).astype(np.float32)

    def __call__(self) -> np.ndarray:
        low, high = self.space.low, self.space.high
        if self.mode == "uniform":
            return self.rng.uniform(low, high).astype(np.float32)
        step = self.rng.normal(0.0, 0.05 * (high - low))
        self.current = np.clip(self.current + step, low, high).astype(np.float32)
        return self.current


def time_steps(
    env_id: str,
    cameras: tuple[str, ...],
    image_size: int,
    *,
    steps: int,
    warmup: int,
    seed: int,
    actions: str = "uniform",
) -> SpeedResult:
    """Steps/s of ``env_id`` with ``cameras`` at ``image_size``, random actions.

    A configuration the environment rejects at construction (``ValueError``/``TypeError``,
    e.g. an unknown camera), or whose simulation fails under random actions, is returned
    with ``skipped`` set instead of raising, so one bad configuration does not end the run.
    """
    try:
        env = gym.make(env_id, cameras=cameras, image_size=image_size)
    except (ValueError, TypeError) as exc:
        return SpeedResult(env_id, cameras, image_size, 0, float("nan"), skipped=str(exc))
    try:
        policy = RandomActions(env.action_space, actions, seed)
        obs, _ = env.reset(seed=seed)
        policy.start(obs)

        def run(n: int) -> None:
            for _ in range(n):
                _, _, terminated, truncated, _ = env.step(policy())
                if terminated or truncated:
                    policy.start(env.reset()[0])

        run(warmup)
        start = time.perf_counter()
        run(steps)
        elapsed = time.perf_counter() - start
    except Exception as exc:  # noqa: BLE001  a simulator blowing up is reported, not fatal
        reason = f"failed: {type(exc).__name__}: {exc}"
        return SpeedResult(env_id, cameras, image_size, 0, float("nan"), skipped=reason)
    finally:
        env.close()
    return SpeedResult(env_id, cameras, image_size if cameras else 0, steps, steps / elapsed)


def benchmark(
    env_id: str,
    *,
    sizes: tuple[int, ...] = (64, 128),
    steps: int = 100,
    warmup: int = 10,
    seed: int = 0,
    no_render: bool = False,
    actions: str = "uniform",
) -> list[SpeedResult]:
    """Every configuration of one env: optionally no camera, then 1 and 2 cameras per size."""
    first, second = camera_pair(env_id)
    # image_size is irrelevant without cameras; any valid value will do.
    configs: list[tuple[tuple[str, ...], int]] = [((), sizes[0])] if no_render else []
    for size in sizes:
        configs += [((first,), size), ((first, second), size)]
    return [
        time_steps(env_id, cams, size, steps=steps, warmup=warmup, seed=seed, actions=actions)
        for cams, size in configs
    ]


def format_table(results: list[SpeedResult]) -> str:
    """Markdown table: env, cameras, image size, steps/s (or why it was skipped)."""
    lines = ["| env | cameras | image | steps/s |", "|---|---|---|---|"]
    for r in results:
        cams = " + ".join(r.cameras) if r.cameras else "(none)"
        image = f"{r.image_size}x{r.image_size}" if r.image_size else "-"
        speed = f"skipped: {r.skipped}" if r.skipped else f"{r.steps_per_s:.1f}"
        lines.append(f"| {r.env} | {cams} | {image} | {speed} |")
    return "\n".join(lines)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Command-line options (shared with a ``kairos-gym`` sub-command)."""
    parser.add_argument(
        "--env", default="kairos_gym/Robosuite-Lift-v0", help="comma-separated ids, or 'all'"
    )
    parser.add_argument("--sizes", default="64,128", help="comma-separated square image sizes")
    parser.add_argument("--steps", type=int, default=100, help="timed steps per configuration")
    parser.add_argument("--warmup", type=int, default=10, help="untimed steps before timing")
    parser.add_argument(
        "--seed", type=int, default=0, help="seed of the reset and of the random actions"
    )
    parser.add_argument(
        "--actions",
        default="uniform",
        choices=ACTION_MODES,
        help="random action stream (see RandomActions)",
    )
    parser.add_argument(
        "--no-render", action="store_true", help="also time the env without any camera"
    )
    parser.add_argument(
        "--json", default=None, metavar="PATH", help="also write the results as JSON"
    )


def run(args: argparse.Namespace, argv: list[str] | None = None) -> int:
    """Benchmark the ids named by ``args`` and print the table; returns an exit status."""
    if args.steps < 1 or args.warmup < 0:
        print(
            f"error: need --steps >= 1 and --warmup >= 0, got {args.steps} and {args.warmup}",
            file=sys.stderr,
        )
        return 2
    if args.env == "all":
        env_ids = list(ENV_IDS)
    else:
        env_ids = [e.strip() for e in args.env.split(",") if e.strip()]
    sizes = tuple(int(s) for s in args.sizes.split(","))
    results: list[SpeedResult] = []
    for env_id in env_ids:
        try:
            rows = benchmark(
                env_id,
                sizes=sizes,
                steps=args.steps,
                warmup=args.warmup,
                seed=args.seed,
                no_render=args.no_render,
                actions=args.actions,
            )
        except (ImportError, gym.error.Error, ValueError) as exc:
            reason = f"{type(exc).__name__}: {exc}"
            rows = [SpeedResult(env_id, (), 0, 0, float("nan"), skipped=reason)]
        results += rows
        for row in rows:
            print(format_table([row]).splitlines()[-1], file=sys.stderr, flush=True)
    header = (
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
        f"MUJOCO_GL={os.environ.get('MUJOCO_GL', '')}, {args.actions} random actions, "
        f"{args.steps} timed steps after {args.warmup} warm-up"
    )
    print(header)
    print(format_table(results))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"setup": header, "results": [asdict(r) for r in results]}, f, indent=2)
    return 0


main = entry_point(__doc__, add_arguments, run)


if __name__ == "__main__":
    sys.exit(main())
