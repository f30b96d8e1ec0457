"""Benchmark: imagined against real environment steps per second, in one run.

Three measurements on the same machine, one after the other, each after untimed warm-up
steps, all with seeded uniform random actions:

1. ``imagined_vector``: ``kairos_gym.make_vec("kairos_gym/Imagined-v0", num_envs=N,
   checkpoint=...)`` stepped ``--steps`` times; every batched step counts ``N`` env-steps.
2. ``imagined_single``: one ``gym.make("kairos_gym/Imagined-v0", checkpoint=...)``, the
   latency of each of ``--single-steps`` steps (median, p90, mean).
3. ``real``: the real environment the checkpoint imitates, ``gym.make(spec.env_id,
   **spec.env_kwargs)`` rendering only the checkpoint's camera at its resolution, for the
   same number of env-steps as (1) (``--real-steps`` to change it).

Episodes that end are reset inside the timed loops (the vector env autoresets), so resets
count, as they would in training. Reports env-steps/s of each and the ratios imagined / real.

Run::

    python -m kairos_gym.eval.bench_imagined_speed --checkpoint runs/lift/model --num-envs 16 \
        --steps 200 --threads 2 --output results/speed.json
"""

from __future__ import annotations

import os

# Headless MuJoCo rendering; must be set before robosuite (or mujoco) is first imported.
os.environ.setdefault("MUJOCO_GL", "egl")
if os.environ["MUJOCO_GL"] in ("egl", "osmesa"):
    os.environ.setdefault("PYOPENGL_PLATFORM", os.environ["MUJOCO_GL"])

import argparse
import json
import platform
import shlex
import sys
import time
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch

import kairos_gym  # registers the environment ids; make_vec
from kairos_gym.errors import KairosGymError
from kairos_gym.eval.script import entry_point
from kairos_gym.imagined.checkpoint import EnvCheckpoint, load_env_checkpoint

IMAGINED_ID = "kairos_gym/Imagined-v0"


def _uniform(rng: np.random.Generator, space: gym.spaces.Box, rows: int | None) -> np.ndarray:
    """Uniform random actions ``[A]`` (``rows=None``) or ``[rows, A]`` inside a Box."""
    shape = space.shape if rows is None else (rows, *space.shape)
    return rng.uniform(space.low, space.high, size=shape).astype(space.dtype)


def _latency_stats(seconds: list[float]) -> dict[str, float]:
    """Median, p90, mean, min and max of per-step latencies, in milliseconds."""
    ms = np.asarray(seconds) * 1000.0
    return {"median": float(np.median(ms)), "p90": float(np.percentile(ms, 90)),
            "mean": float(ms.mean()), "min": float(ms.min()), "max": float(ms.max())}


def time_imagined_vector(checkpoint: str | None, num_envs: int, steps: int, warmup: int, seed: int,
                         device: str) -> dict[str, Any]:
    """Env-steps/s of ``num_envs`` imagined envs stepped together ``steps`` times.

    Raises:
        RuntimeError: this version of kairos_gym has no ``make_vec``.
    """
    make_vec = getattr(kairos_gym, "make_vec", None)
    if make_vec is None:
        raise RuntimeError("kairos_gym.make_vec is not available in this version of kairos-gym")
    envs = make_vec(IMAGINED_ID, num_envs=num_envs, checkpoint=checkpoint, device=device)
    try:
        rng = np.random.default_rng(seed)
        envs.reset(seed=seed)
        space = envs.single_action_space
        for _ in range(warmup):
            envs.step(_uniform(rng, space, num_envs))
        latencies = []
        start = time.perf_counter()
        for _ in range(steps):
            t0 = time.perf_counter()
            envs.step(_uniform(rng, space, num_envs))
            latencies.append(time.perf_counter() - t0)
        elapsed = time.perf_counter() - start
    finally:
        envs.close()
    return {
        "num_envs": num_envs,
        "batched_steps": steps,
        "env_steps": steps * num_envs,
        "seconds": elapsed,
        "env_steps_per_s": steps * num_envs / elapsed,
        "batched_step_ms": _latency_stats(latencies),
    }


def _time_single(env: gym.Env, steps: int, warmup: int, seed: int) -> tuple[float, list[float]]:
    """Step ``env`` with uniform random actions; ``(elapsed seconds, per-step latencies)``."""
    rng = np.random.default_rng(seed)
    env.reset(seed=seed)

    def one() -> float:
        t0 = time.perf_counter()
        _, _, terminated, truncated, _ = env.step(_uniform(rng, env.action_space, None))
        if terminated or truncated:
            env.reset()
        return time.perf_counter() - t0

    for _ in range(warmup):
        one()
    start = time.perf_counter()
    latencies = [one() for _ in range(steps)]
    return time.perf_counter() - start, latencies


def time_imagined_single(checkpoint: str | None, steps: int, warmup: int, seed: int,
                         device: str, max_episode_steps: int | None = None) -> dict[str, Any]:
    """Per-step latency of one imagined env (``gym.make("kairos_gym/Imagined-v0")``), episodes
    cut at ``max_episode_steps`` (the checkpoint's real env limit, as the vector env keeps)."""
    env = gym.make(IMAGINED_ID, checkpoint=checkpoint, device=device,
                   max_episode_steps=max_episode_steps)
    try:
        elapsed, latencies = _time_single(env, steps, warmup, seed)
    finally:
        env.close()
    return {"env_steps": steps, "seconds": elapsed, "env_steps_per_s": steps / elapsed,
            "step_ms": _latency_stats(latencies)}


def real_env_kwargs(ckpt: EnvCheckpoint) -> dict[str, Any]:
    """The real env's ``gym.make`` kwargs from the checkpoint's spec, rendering only the
    checkpoint's camera at the checkpoint's resolution (what the model generates)."""
    spec = ckpt.env_spec
    kwargs = dict(spec.env_kwargs)
    kwargs["cameras"] = (spec.cameras[0],)  # the camera of ckpt.image_key
    h, w = spec.image_size if spec.image_size is not None else ckpt.model.config.frame_shape[:2]
    kwargs["image_size"] = h if h == w else (h, w)
    return kwargs


def time_real(ckpt: EnvCheckpoint, steps: int, warmup: int, seed: int) -> dict[str, Any]:
    """Env-steps/s of the real environment the checkpoint imitates."""
    kwargs = real_env_kwargs(ckpt)
    env = gym.make(ckpt.env_spec.env_id, **kwargs)
    try:
        elapsed, latencies = _time_single(env, steps, warmup, seed)
    finally:
        env.close()
    return {"env_id": ckpt.env_spec.env_id, "env_kwargs": json.loads(json.dumps(kwargs)),
            "env_steps": steps, "seconds": elapsed, "env_steps_per_s": steps / elapsed,
            "step_ms": _latency_stats(latencies)}


def _ratio(a: dict[str, Any], b: dict[str, Any]) -> float | None:
    if "env_steps_per_s" not in a or "env_steps_per_s" not in b:
        return None
    return a["env_steps_per_s"] / b["env_steps_per_s"]


def _skipped(exc: BaseException) -> dict[str, Any]:
    return {"skipped": f"{type(exc).__name__}: {exc}"}


def format_table(report: dict[str, Any]) -> str:
    """The three measurements and the ratios, one line each."""
    lines = [f"{'what':<28} {'env-steps':>9} {'seconds':>8} {'env-steps/s':>11} {'ms/step':>8}"]
    rows = (("imagined_vector", f"imagined vector ({report['num_envs']} envs)", "batched_step_ms"),
            ("imagined_single", "imagined single env", "step_ms"),
            ("real", "real simulator", "step_ms"))
    for key, label, latency in rows:
        r = report[key]
        if "skipped" in r:
            lines.append(f"{label:<28} skipped: {r['skipped']}")
            continue
        lines.append(f"{label:<28} {r['env_steps']:>9} {r['seconds']:>8.2f} "
                     f"{r['env_steps_per_s']:>11.1f} {r[latency]['median']:>8.1f}")
    ratios = report["ratios"]
    if ratios["vector_over_real"] is not None:
        lines.append(f"imagined vector / real: {ratios['vector_over_real']:.2f}x; "
                     f"imagined single / real: {ratios['single_over_real']:.2f}x "
                     "(ms/step of the vector env: per batched step; medians)")
    return "\n".join(lines)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Command-line options."""
    parser.add_argument("--checkpoint", default=None,
                        help="environment checkpoint directory (default: the embedded model)")
    parser.add_argument("--num-envs", type=int, default=16, help="rows of the imagined vector env")
    parser.add_argument("--steps", type=int, default=200,
                        help="timed batched steps of the vector env (each counts --num-envs)")
    parser.add_argument("--real-steps", type=int, default=None,
                        help="timed real env-steps (default: --steps x --num-envs, the same count)")
    parser.add_argument("--single-steps", type=int, default=50,
                        help="timed steps of the single imagined env (latency)")
    parser.add_argument("--warmup", type=int, default=5, help="untimed steps before each timing")
    parser.add_argument("--seed", type=int, default=0, help="seed of the resets and the actions")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--device", default="cpu", help="torch device of the world model")
    parser.add_argument("--no-real", action="store_true", help="skip the real simulator")
    parser.add_argument("--output", default="results/speed.json", help="JSON output path")


def run(args: argparse.Namespace, argv: list[str]) -> int:
    """Run the measurements, print the table and write the JSON; returns an exit status
    (1 when a measurement could not run; the JSON then says why)."""
    if min(args.num_envs, args.steps, args.single_steps) < 1 or args.warmup < 0 or args.threads < 0:
        print("error: --num-envs, --steps and --single-steps must be >= 1; --warmup and "
              "--threads >= 0", file=sys.stderr)
        return 2
    if args.real_steps is not None and args.real_steps < 1:
        print("error: --real-steps must be >= 1", file=sys.stderr)
        return 2
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        ckpt = load_env_checkpoint(args.checkpoint, device=args.device)
    except KairosGymError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    checkpoint = None if args.checkpoint is None else str(ckpt.path)
    report: dict[str, Any] = {
        "benchmark": "imagined_speed",
        "command": shlex.join(["python", "-m", "kairos_gym.eval.bench_imagined_speed", *argv]),
        "checkpoint": str(ckpt.path),
        "env_id": ckpt.env_spec.env_id,
        "image_key": ckpt.image_key,
        "frame_shape": list(ckpt.model.config.frame_shape),
        "sample_steps": ckpt.model.config.sample_steps,
        "model_config": ckpt.model.config.to_dict(),
        "num_envs": args.num_envs,
        "warmup": args.warmup,
        "seed": args.seed,
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "device": args.device,
        "cpu": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs",
        "mujoco_gl": os.environ.get("MUJOCO_GL", ""),
    }
    measurements = (
        ("imagined_vector", lambda: time_imagined_vector(checkpoint, args.num_envs, args.steps,
                                                         args.warmup, args.seed, args.device)),
        ("imagined_single", lambda: time_imagined_single(checkpoint, args.single_steps,
                                                         args.warmup, args.seed, args.device,
                                                         ckpt.max_episode_steps)),
    )
    failed = False
    for key, measure in measurements:
        print(f"timing {key} ...", file=sys.stderr, flush=True)
        try:
            report[key] = measure()
        except Exception as exc:  # noqa: BLE001  reported in the JSON, the other timings still run
            report[key], failed = _skipped(exc), True
    if args.no_real:
        report["real"] = {"skipped": "--no-real"}
    else:
        real_steps = args.real_steps or args.steps * args.num_envs
        print(f"timing real ({real_steps} steps) ...", file=sys.stderr, flush=True)
        try:
            report["real"] = time_real(ckpt, real_steps, args.warmup, args.seed)
        except Exception as exc:  # noqa: BLE001  a missing simulator is reported, not fatal
            report["real"], failed = _skipped(exc), True
    report["ratios"] = {
        "vector_over_real": _ratio(report["imagined_vector"], report["real"]),
        "single_over_real": _ratio(report["imagined_single"], report["real"]),
    }
    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2, allow_nan=False) + "\n")
    h, w = report["frame_shape"][:2]
    print(f"{report['env_id']} {report['image_key']} {h}x{w}, "
          f"sample_steps {report['sample_steps']}, torch threads {report['torch_threads']}, device {args.device}, {report['cpu']}")
    print(format_table(report))
    print(f"wrote {out}")
    if failed:
        print("warning: some measurements did not run (see 'skipped' in the JSON)", file=sys.stderr)
    return 1 if failed else 0


main = entry_point(__doc__, add_arguments, run)


if __name__ == "__main__":
    sys.exit(main())
