"""``kairos-gym demo``: one policy's actions in the real simulator and in imagination.

From one real robosuite Lift reset (seeded), the scripted expert acts in the real
simulator; the imagined environment (the embedded default model, or ``--checkpoint``)
starts from the same reset observation and receives the same actions. The demo writes an
mp4 with the real camera on the left and the imagined frame on the right, and prints the
per-step PSNR between them and how well the predicted reward and success agree with the
simulator's. It runs in well under 3 minutes on 2 CPU cores.

Example::

    kairos-gym demo --seed 0 --output kairos_demo.mp4
"""

from __future__ import annotations

import os

# Headless rendering for MuJoCo; must precede the simulator's import.
os.environ.setdefault("MUJOCO_GL", "egl")
os.environ.setdefault("PYOPENGL_PLATFORM", "egl")

import argparse
import json
import sys
import time
from typing import Any

import numpy as np

PROG = "kairos-gym demo"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``kairos-gym demo``."""
    add = parser.add_argument
    add("--checkpoint", default=None, metavar="DIR",
        help="environment checkpoint (default: the embedded robosuite Lift model)")
    add("--seed", type=int, default=0, help="seed of the real reset and of the imagined noise (default: 0)")
    add("--steps", type=int, default=None, metavar="N", help="steps to run (default: the episode limit)")
    add("--output", default="kairos_demo.mp4", metavar="PATH", help="side-by-side video (default: kairos_demo.mp4)")
    add("--scale", type=int, default=4, metavar="K", help="upscale frames K times in the video (default: 4)")
    add("--sample-steps", type=int, default=None, metavar="N", help="Euler steps per imagined frame")
    add("--json", default=None, metavar="PATH", help="also write the per-step figures as JSON")
    add("--threads", type=int, default=None, metavar="N", help="torch CPU threads (default: torch's)")


def _label(frame: np.ndarray, text: str) -> np.ndarray:
    """``frame`` with a caption bar on top (Pillow ships with imageio)."""
    from PIL import Image, ImageDraw

    bar = np.full((18, frame.shape[1], 3), 255, np.uint8)
    image = Image.fromarray(np.concatenate([bar, frame]))
    ImageDraw.Draw(image).text((4, 3), text, fill=(0, 0, 0))
    return np.asarray(image)


def _panel(real: np.ndarray, imagined: np.ndarray, step: int, psnr_db: float, scale: int) -> np.ndarray:
    up = [np.kron(f, np.ones((scale, scale, 1), np.uint8)) for f in (real, imagined)]
    left = _label(up[0], f"real  step {step}")
    right = _label(up[1], f"imagined  PSNR {psnr_db:.1f} dB" if step else "imagined (= real reset)")
    gap = np.full((left.shape[0], 4, 3), 255, np.uint8)
    return np.concatenate([left, gap, right], axis=1)


def run(args: argparse.Namespace) -> int:
    """Run the demo; returns a process exit code."""
    import gymnasium as gym
    import imageio.v2 as imageio
    import torch

    import kairos_gym  # noqa: F401  (registers the environments)
    from kairos_gym.env_checkpoint import load_env_checkpoint
    from kairos_gym.errors import CheckpointError, DependencyNotInstalled
    from kairos_gym.imagined_env import ImaginedEnv
    from kairos_gym.metrics import psnr
    from kairos_gym.policies.registry import make_policy

    if args.threads is not None:
        torch.set_num_threads(args.threads)
    started = time.perf_counter()
    try:
        ckpt = load_env_checkpoint(args.checkpoint)
    except CheckpointError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 1
    spec = ckpt.env_spec
    image_key = ckpt.image_key
    try:
        real = gym.make(spec.env_id, **spec.env_kwargs)
    except (DependencyNotInstalled, gym.error.Error) as exc:
        print(f"{PROG}: error: cannot build the real environment {spec.env_id}: {exc}", file=sys.stderr)
        return 1
    imagined = ImaginedEnv(ckpt, sample_steps=args.sample_steps)
    expert = make_policy("expert", real)
    steps = args.steps or ckpt.max_episode_steps or 80

    obs, info = real.reset(seed=args.seed)
    expert.reset(seed=args.seed, env=real)
    imagined_obs, _ = imagined.reset(seed=args.seed, options={"observation": obs})
    first = obs[image_key].copy()
    video = [_panel(obs[image_key], imagined_obs[image_key], 0, float("inf"), args.scale)]
    rows: list[dict[str, Any]] = []
    print(f"{spec.env_id} ({spec.instruction!r}), seed {args.seed}: {steps} expert steps, "
          f"real vs imagined ({ckpt.path})")
    print(f"{'step':>4} {'PSNR dB':>8} {'repeat-first dB':>15} {'reward real/imag':>17} {'success real/imag':>18}")
    real_s = imagined_s = 0.0
    for step in range(1, steps + 1):
        action = expert.act(obs, spec.instruction)
        t0 = time.perf_counter()
        obs, reward, terminated, truncated, info = real.step(action)
        t1 = time.perf_counter()
        imagined_obs, imagined_reward, imagined_term, imagined_trunc, imagined_info = imagined.step(action)
        t2 = time.perf_counter()
        real_s, imagined_s = real_s + t1 - t0, imagined_s + t2 - t1
        score = float(psnr(imagined_obs[image_key], obs[image_key]))
        baseline = float(psnr(first, obs[image_key]))
        rows.append({"step": step, "psnr": score, "baseline_psnr": baseline, "reward": float(reward),
                     "imagined_reward": float(imagined_reward), "success": bool(info["success"]),
                     "imagined_success": bool(imagined_info["success"]),
                     "imagined_success_prob": float(imagined_info["success_prob"])})
        video.append(_panel(obs[image_key], imagined_obs[image_key], step, score, args.scale))
        if step == 1 or step % 10 == 0 or step == steps:
            print(f"{step:>4} {score:>8.2f} {baseline:>15.2f} {reward:>8.2f}/{imagined_reward:<8.2f} "
                  f"{info['success']!s:>9}/{imagined_info['success']!s:<8}")
        if terminated or truncated or imagined_term or imagined_trunc:
            ended = [name for name, flag in (("real: terminated", terminated), ("real: truncated", truncated),
                                             ("imagined: terminated", imagined_term),
                                             ("imagined: truncated", imagined_trunc)) if flag]
            if step < steps:
                print(f"episode over at step {step} ({', '.join(ended)})")
            break
    real.close()

    fps = spec.control_freq
    imageio.mimwrite(args.output, video, fps=fps, macro_block_size=1)
    scores = np.array([r["psnr"] for r in rows])
    agree = np.mean([r["success"] == r["imagined_success"] for r in rows])
    first_real = next((r["step"] for r in rows if r["success"]), None)
    first_imagined = next((r["step"] for r in rows if r["imagined_success"]), None)
    summary = {
        "checkpoint": str(ckpt.path), "env_id": spec.env_id, "seed": args.seed, "steps": len(rows),
        "psnr_mean": float(scores.mean()), "psnr_first_10": float(scores[:10].mean()),
        "psnr_last_10": float(scores[-10:].mean()),
        "baseline_psnr_mean": float(np.mean([r["baseline_psnr"] for r in rows])),
        "success_agreement": float(agree),
        "reward_mae": float(np.mean([abs(r["reward"] - r["imagined_reward"]) for r in rows])),
        "first_success_real": first_real, "first_success_imagined": first_imagined,
        "real_steps_per_s": len(rows) / real_s, "imagined_steps_per_s": len(rows) / imagined_s,
        "seconds": time.perf_counter() - started, "video": os.path.abspath(args.output),
    }
    print(f"\nPSNR real vs imagined: mean {summary['psnr_mean']:.2f} dB over {len(rows)} steps "
          f"(first 10: {summary['psnr_first_10']:.2f}, last 10: {summary['psnr_last_10']:.2f}); "
          f"repeating the first frame scores {summary['baseline_psnr_mean']:.2f} dB")
    print(f"success agreement {agree:.1%} of steps; first success at step {first_real} (real) vs "
          f"{first_imagined} (imagined); reward MAE {summary['reward_mae']:.3f}")
    print(f"speed: real {summary['real_steps_per_s']:.1f} steps/s, imagined {summary['imagined_steps_per_s']:.1f} "
          f"steps/s; total {summary['seconds']:.1f} s")
    print(f"video (left real, right imagined): {summary['video']}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"summary": summary, "steps": rows}, f, indent=2)
    return 0
