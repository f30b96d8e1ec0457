"""Benchmark: open-loop fidelity of an environment checkpoint on held-out episodes.

For each episode the model observes the first real frame(s), then imagines ``--horizon``
steps from the episode's recorded actions, never seeing another real frame; every imagined
frame is scored against the real one (PSNR, SSIM) beside the "repeat the last context frame"
baseline, and the heads against the recorded labels (success accuracy, reward and state
errors). See :mod:`kairos_gym.evaluation.open_loop` for the exact alignment. The state
scored is the checkpoint's observation keys (every non-image key, in space order).

Episodes come from ``--split`` of the episode files, assigned exactly as the trainer's
``ClipDataset`` does (``--val-fraction``, ``--split-seed``), so ``--split val`` scores
episodes the model never trained on. The camera is the one the checkpoint's env spec names,
and the files must have been recorded with the same env spec as the checkpoint.

Run::

    python -m kairos_gym.eval.fidelity --checkpoint runs/lift/model --data data/lift.hdf5 \
        --split val --episodes 24 --horizon 64 --output results/fidelity.json \
        --plot results/fidelity.png --threads 2

Writes JSON (the command line, checkpoint, data files, episode names, per-horizon curves of
the model and the baseline, success/reward/state scores, timing, torch threads) and
optionally a PNG of PSNR and SSIM against the horizon; prints a compact table.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import sys
import time
from pathlib import Path
from typing import Any

import torch

from kairos_gym.data.loading import list_episodes, load_episodes
from kairos_gym.data.reader import EpisodeReader
from kairos_gym.errors import KairosGymError
from kairos_gym.eval.script import entry_point
from kairos_gym.evaluation.open_loop import OpenLoopResult, open_loop_eval
from kairos_gym.imagined.checkpoint import EnvCheckpoint, load_env_checkpoint

TABLE_STEPS = (1, 2, 4, 8, 16, 32, 64)


class UsageError(Exception):
    """The data cannot answer the question asked (wrong env, too few long episodes)."""


def check_data(ckpt: EnvCheckpoint, paths: list[str]) -> None:
    """Raise :class:`UsageError` unless every file was recorded with the checkpoint's env spec.

    The message names each differing field with both values, so a mismatch (another task,
    camera or image size) is obvious.
    """
    for path in paths:
        with EpisodeReader(path) as reader:
            spec = reader.env_spec
        diffs = ckpt.env_spec.differences(spec)
        if diffs:
            ours, theirs = ckpt.env_spec.to_dict(), spec.to_dict()
            details = "; ".join(
                f"{field}: checkpoint {_short(ours.get(field))}, data {_short(theirs.get(field))}"
                for field in diffs
            )
            raise UsageError(
                f"{path} was recorded with a different environment than the checkpoint "
                f"{ckpt.path} ({details})"
            )


def _short(value: Any, limit: int = 120) -> str:
    text = json.dumps(value, sort_keys=True, default=str)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def select_episodes(args: argparse.Namespace, ckpt: EnvCheckpoint) -> list[dict[str, Any]]:
    """Load ``--episodes`` episodes of ``--split`` with enough steps for the horizon.

    Raises:
        UsageError: fewer long-enough episodes than asked for (the message says how many).
    """
    need = args.context_frames - 1 + args.horizon
    refs = list_episodes(
        args.data, split=args.split, val_fraction=args.val_fraction, seed=args.split_seed
    )
    long_enough = [r for r in refs if r.steps >= need]
    wanted = args.episodes if args.episodes > 0 else max(len(long_enough), 1)
    if len(long_enough) < wanted:
        longest = max((r.steps for r in refs), default=0)
        raise UsageError(
            f"only {len(long_enough)} of the {len(refs)} episodes in split {args.split!r} have the "
            f"{need} steps that --horizon {args.horizon} with --context-frames "
            f"{args.context_frames} needs (longest: {longest} steps); ask for fewer --episodes, "
            "a shorter --horizon, or another --split"
        )
    return load_episodes(
        args.data,
        ckpt.image_key,
        split=args.split,
        val_fraction=args.val_fraction,
        seed=args.split_seed,
        min_steps=need,
        max_steps=need,
        max_episodes=wanted,
        state_keys=ckpt.state_keys,
    )


def table_steps(horizon: int) -> list[int]:
    """The horizons printed in the table: 1, 2, 4, ..., 64 up to ``horizon``, and ``horizon``."""
    steps = [k for k in TABLE_STEPS if k <= horizon]
    return steps if steps and steps[-1] == horizon else [*steps, horizon]


def format_table(result: OpenLoopResult) -> str:
    """PSNR and SSIM of the model and the baseline at the table's horizons."""
    p, s = result.curve("psnr"), result.curve("ssim")
    bp, bs = result.curve("baseline_psnr"), result.curve("baseline_ssim")
    lines = [f"{'step':>5} {'PSNR':>7} {'repeat':>7} {'SSIM':>6} {'repeat':>6}"]
    for k in table_steps(result.horizon):
        i = k - 1
        lines.append(f"{k:>5} {p[i]:>7.2f} {bp[i]:>7.2f} {s[i]:>6.3f} {bs[i]:>6.3f}")
    lines.append(
        f"success accuracy {result.success_accuracy:.3f} per step, "
        f"{result.success_episode_agreement:.3f} per episode; reward MAE {result.reward_mae:.4f}"
        + (f"; state MAE {result.state_mae:.4f}" if result.state_mae is not None else "")
    )
    return "\n".join(lines)


def plot(result: OpenLoopResult, path: str, title: str) -> None:
    """PSNR and SSIM against the horizon, model against the repeat-last-frame baseline."""
    import matplotlib

    matplotlib.use("Agg")  # headless: no display on benchmark machines
    import matplotlib.pyplot as plt

    steps = list(range(1, result.horizon + 1))
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8), constrained_layout=True)
    for ax, name, unit in ((axes[0], "psnr", "PSNR (dB)"), (axes[1], "ssim", "SSIM")):
        mean, std = result.curve(name), getattr(result, name).std(axis=0)
        ax.plot(steps, mean, label="world model", color="tab:blue")
        ax.fill_between(steps, mean - std, mean + std, color="tab:blue", alpha=0.15, linewidth=0)
        ax.plot(steps, result.curve(f"baseline_{name}"), label="repeat last frame",
                color="tab:gray", linestyle="--")
        ax.set_xlabel("open-loop step")
        ax.set_ylabel(unit)
        ax.grid(alpha=0.3)
    axes[0].legend()
    fig.suptitle(title, fontsize=10)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Command-line options."""
    parser.add_argument("--checkpoint", default=None,
                        help="environment checkpoint directory (default: the embedded model)")
    parser.add_argument("--data", nargs="+", required=True, metavar="HDF5",
                        help="episode files recorded with the checkpoint's environment")
    parser.add_argument("--split", default="val", choices=("val", "train", "all"),
                        help="which episodes (the trainer's split; default val)")
    parser.add_argument("--val-fraction", type=float, default=0.1,
                        help="the trainer's data.val_fraction (default 0.1)")
    parser.add_argument("--split-seed", type=int, default=0,
                        help="the trainer's data.split_seed (default 0)")
    parser.add_argument("--episodes", type=int, default=24,
                        help="episodes to score; 0: every long-enough one (default 24)")
    parser.add_argument("--horizon", type=int, default=64, help="open-loop steps (default 64)")
    parser.add_argument("--context-frames", type=int, default=1,
                        help="real frames observed before imagining (default 1)")
    parser.add_argument("--batch-size", type=int, default=8, help="episodes imagined together")
    parser.add_argument("--seed", type=int, default=0, help="seed of the sampling noise")
    parser.add_argument("--sample-steps", type=int, default=None, metavar="N",
                        help="Euler steps per imagined frame (default: the checkpoint's)")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--device", default="cpu", help="torch device (default cpu)")
    parser.add_argument("--output", default="results/fidelity.json", help="JSON output path")
    parser.add_argument("--plot", default=None, metavar="PNG", help="also write a PNG figure")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args: argparse.Namespace, argv: list[str]) -> int:
    """Evaluate, print the table, write the JSON (and the plot); returns an exit status."""
    for name in ("horizon", "context_frames", "batch_size"):
        if getattr(args, name) < 1:
            print(f"error: --{name.replace('_', '-')} must be >= 1", file=sys.stderr)
            return 2
    if args.episodes < 0 or args.threads < 0:
        print("error: --episodes and --threads must be >= 0", file=sys.stderr)
        return 2
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        missing = [p for p in args.data if not os.path.isfile(p)]
        if missing:
            raise UsageError(f"no such episode file: {', '.join(missing)}")
        ckpt = load_env_checkpoint(args.checkpoint, device=args.device)
        if args.sample_steps is not None:
            if not 1 <= args.sample_steps <= 50:
                raise UsageError(f"--sample-steps must be in 1..50, got {args.sample_steps}")
            ckpt.model.with_config(sample_steps=args.sample_steps)
        check_data(ckpt, args.data)
        load_start = time.perf_counter()
        episodes = select_episodes(args, ckpt)
        load_s = time.perf_counter() - load_start
        result = open_loop_eval(
            ckpt.model, episodes, horizon=args.horizon, context_frames=args.context_frames,
            seed=args.seed, batch_size=args.batch_size, progress=not args.no_progress,
        )
    except (UsageError, KairosGymError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2

    frames = result.num_episodes * result.horizon
    report = {
        "benchmark": "fidelity",
        "command": shlex.join(["python", "-m", "kairos_gym.eval.fidelity", *argv]),
        "checkpoint": str(ckpt.path),
        "env_id": ckpt.env_spec.env_id,
        "image_key": ckpt.image_key,
        "model_config": ckpt.model.config.to_dict(),
        "training": ckpt.info.get("training"),
        "data": [os.path.abspath(p) for p in args.data],
        "split": args.split,
        "val_fraction": args.val_fraction,
        "split_seed": args.split_seed,
        "episode_names": result.episode_names,
        "timing": {
            "load_s": load_s,
            "eval_s": result.seconds,
            "imagined_frames": frames,
            "frames_per_s": frames / result.seconds if result.seconds > 0 else None,
        },
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "device": str(ckpt.model.device),
        "cpu": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs",
        **result.to_dict(),
    }
    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2, allow_nan=False) + "\n")

    print(f"{ckpt.env_spec.env_id} {ckpt.image_key}: {result.num_episodes} episodes (split "
          f"{args.split}), "
          f"horizon {result.horizon}, {result.context_frames} context frame(s), "
          f"{frames / result.seconds:.1f} imagined frames/s, {torch.get_num_threads()} threads")
    print(format_table(result))
    if args.plot:
        name = "/".join(Path(str(ckpt.path)).resolve().parts[-2:])
        title = (f"{name}: open loop on {result.num_episodes} episodes (split {args.split}), "
                 f"{ckpt.env_spec.env_id} {ckpt.image_key}")
        plot(result, args.plot, title)
        print(f"wrote {out} and {args.plot}")
    else:
        print(f"wrote {out}")
    return 0


main = entry_point(__doc__, add_arguments, run)


if __name__ == "__main__":
    sys.exit(main())
