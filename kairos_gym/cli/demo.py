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
import dataclasses
import json
import sys
import time

import numpy as np

from kairos_gym.cli.options import non_negative_int, positive_int, sample_steps

PROG = "kairos-gym demo"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``kairos-gym demo``."""
    add = parser.add_argument
    add("--checkpoint", default=None, metavar="DIR",
        help="environment checkpoint (default: the embedded robosuite Lift model)")
    add("--seed", type=non_negative_int, default=0,
        help="seed of the real reset and of the imagined noise (default: 0)")
    add("--steps", type=positive_int, default=None, metavar="N", help="steps to run (default: the episode limit)")
    add("--output", default="kairos_demo.mp4", metavar="PATH", help="side-by-side video (default: kairos_demo.mp4)")
    add("--scale", type=positive_int, default=4, metavar="K", help="upscale frames K times in the video (default: 4)")
    add("--sample-steps", type=sample_steps, default=None, metavar="N", help="Euler steps per imagined frame (1..50)")
    add("--json", default=None, metavar="PATH", help="also write the per-step figures as JSON")
    add("--threads", type=positive_int, default=None, metavar="N", help="torch CPU threads (default: torch's)")


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
    from kairos_gym.errors import CheckpointError, DependencyNotInstalled
    from kairos_gym.evaluation.real_vs_imagined import summarize
    from kairos_gym.imagined.checkpoint import load_env_checkpoint
    from kairos_gym.imagined.env import ImaginedEnv
    from kairos_gym.policies.registry import make_policy
    from kairos_gym.rollout import PairedStep, run_paired

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
    # The expert's real actions are replayed in imagination: a stochastic dynamics takes its
    # prediction (draws would add up with nothing to correct them).
    imagined = ImaginedEnv(ckpt, sample_steps=args.sample_steps, draw_state=False)
    expert = make_policy("expert", real)
    steps = args.steps or ckpt.max_episode_steps or 80
    print(f"{spec.env_id} ({spec.instruction!r}), seed {args.seed}: {steps} expert steps, "
          f"real vs imagined ({ckpt.path})")
    print(f"{'step':>4} {'PSNR dB':>8} {'repeat-first dB':>15} {'reward real/imag':>17} {'success real/imag':>18}")

    def show(r: PairedStep) -> None:
        if r.step == 1 or r.step % 10 == 0 or r.step == steps:
            print(f"{r.step:>4} {r.psnr:>8.2f} {r.baseline_psnr:>15.2f} {r.reward:>8.2f}/{r.imagined_reward:<8.2f} "
                  f"{r.success!s:>9}/{r.imagined_success!s:<8}")

    episode = run_paired(real, imagined, expert, seed=args.seed, max_steps=steps,
                         image_key=image_key, keep_frames=True, on_step=show)
    real.close()
    if episode.ended_by:
        print(f"episode over at step {len(episode.steps)} ({', '.join(episode.ended_by)})")

    scores = [float("inf")] + [r.psnr for r in episode.steps]
    video = [_panel(r, i, step, score, args.scale)
             for step, ((r, i), score) in enumerate(zip(episode.frames, scores))]
    imageio.mimwrite(args.output, video, fps=spec.control_freq, macro_block_size=1)
    summary = {"checkpoint": str(ckpt.path), "env_id": spec.env_id, **summarize(episode),
               "seconds": time.perf_counter() - started, "video": os.path.abspath(args.output)}
    print(f"\nPSNR real vs imagined: mean {summary['psnr_mean']:.2f} dB over {summary['steps']} steps "
          f"(first 10: {summary['psnr_first_10']:.2f}, last 10: {summary['psnr_last_10']:.2f}); "
          f"repeating the first frame scores {summary['baseline_psnr_mean']:.2f} dB")
    print(f"success agreement {summary['success_agreement']:.1%} of steps; first success at step "
          f"{summary['first_success_real']} (real) vs {summary['first_success_imagined']} (imagined); "
          f"reward MAE {summary['reward_mae']:.3f}")
    print(f"speed: real {summary['real_steps_per_s']:.1f} steps/s, imagined "
          f"{summary['imagined_steps_per_s']:.1f} steps/s; total {summary['seconds']:.1f} s")
    print(f"video (left real, right imagined): {summary['video']}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"summary": summary, "steps": [dataclasses.asdict(r) for r in episode.steps]}, f, indent=2)
    return 0
