"""Benchmark: the cost of one imagined step against the episode length.

Steps a world model for ``--steps`` latent frames (each: ``sample_steps`` denoising passes
that read the memory plus one commit pass) and records, per step, the wall-clock latency
and the bytes of memory state. Two models of the same size run in the same process, one
after the other:

- ``hybrid``: the preset's Kairos pattern (SWA, SWA, DSWA, GATED): bounded memory.
- ``full-attention``: every window block replaced by full causal attention over all past
  frames (a KV cache that grows), the gated blocks kept.

Prints a table and the ratio latency(step 2000) / latency(step 20), each taken as the
median over 20 steps around that step. Run::

    python -m kairos_gym.eval.bench_step_cost --preset small --steps 2010
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import resource
import statistics
import sys
import time

import torch
from tqdm import tqdm

from kairos_gym.model import KairosDiT, WorldModelConfig
from kairos_gym.model.sampler import SamplerSettings, sample_frame


def full_attention_variant(cfg: WorldModelConfig) -> WorldModelConfig:
    """The same model with every window block made full causal attention."""
    pattern = tuple("full" if kind in ("swa", "dswa") else kind for kind in cfg.layer_pattern)
    return dataclasses.replace(cfg, layer_pattern=pattern)


@torch.no_grad()
def measure(cfg: WorldModelConfig, steps: int, batch: int, seed: int, label: str) -> dict[str, list[float]]:
    """Per-step latency (seconds) and state bytes of ``steps`` imagined frames."""
    torch.manual_seed(seed)
    dit = KairosDiT(cfg).eval()
    state = dit.init_state(batch)
    settings = SamplerSettings(cfg.sample_steps, cfg.timestep_shift, cfg.guidance_scale, cfg.context_sigma)
    gen = torch.Generator().manual_seed(seed)
    actions = torch.randn(steps, batch, cfg.action_dim_per_latent, generator=gen).clamp(-1, 1)
    latency, state_bytes = [], []
    for t in tqdm(range(steps), desc=label, unit="step", mininterval=2.0):
        start = time.perf_counter()
        _, _, state = sample_frame(dit, state, actions[t], settings, gen)
        latency.append(time.perf_counter() - start)
        state_bytes.append(float(state.nbytes()))
    return {"latency_s": latency, "state_bytes": state_bytes}


def window_median(values: list[float], step: int, half: int = 10) -> float:
    """Median of ``values`` over steps ``step-half+1 .. step+half`` (1-based step numbers)."""
    lo, hi = max(step - half, 0), min(step + half, len(values))
    return statistics.median(values[lo:hi])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="small", help="WorldModelConfig preset (default: small)")
    parser.add_argument("--steps", type=int, default=2010, help="imagined steps per model (>= 2010 for the 2000/20 ratio)")
    parser.add_argument("--batch", type=int, default=1, help="rows stepped together")
    parser.add_argument("--seed", type=int, default=0, help="random seed")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--json", default=None, help="write the per-step series and the summary here")
    args = parser.parse_args(argv)
    if args.steps < 40:
        parser.error(f"--steps must be >= 40, got {args.steps}")
    if args.threads:
        torch.set_num_threads(args.threads)

    base = WorldModelConfig.preset(args.preset)
    variants = {"hybrid": base, "full-attention": full_attention_variant(base)}
    results = {name: measure(cfg, args.steps, args.batch, args.seed, name) for name, cfg in variants.items()}

    late = min(2000, args.steps - 10)
    checkpoints = [s for s in (20, 100, 500, 1000, 2000) if s <= late] + ([late] if late not in (20, 100, 500, 1000, 2000) else [])
    print(f"\npreset={args.preset} batch={args.batch} sample_steps={base.sample_steps} "
          f"torch={torch.__version__} threads={torch.get_num_threads()} cpu={platform.processor() or platform.machine()}")
    header = f"{'model':<16}" + "".join(f"{'ms@' + str(s):>10}" for s in checkpoints) + f"{'state MB@' + str(late):>14}{'ratio':>8}"
    print(header)
    summary = {}
    for name, series in results.items():
        ms = [window_median(series["latency_s"], s) * 1e3 for s in checkpoints]
        ratio = window_median(series["latency_s"], late) / window_median(series["latency_s"], 20)
        mem_early, mem_late = series["state_bytes"][19], series["state_bytes"][late - 1]
        print(f"{name:<16}" + "".join(f"{m:>10.2f}" for m in ms) + f"{mem_late / 2**20:>14.2f}{ratio:>8.3f}")
        summary[name] = {"latency_ms": dict(zip(map(str, checkpoints), ms)), "ratio": ratio,
                         "state_bytes_step20": mem_early, f"state_bytes_step{late}": mem_late}
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"ratio = latency(step {late}) / latency(step 20), medians over 20 steps; peak RSS {rss_mb:.0f} MB")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"args": vars(args), "summary": summary, "series": results}, f)
    return 0


if __name__ == "__main__":
    sys.exit(main())
