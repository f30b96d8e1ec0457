"""Benchmark: do policies score the same in imagination as in the real simulator?

``--mode closed`` (default): every policy runs ``--episodes`` episodes closed-loop in the real
simulator and closed-loop in imagination, from the same real resets (episode ``k`` uses seed
``--seed + k`` on both sides; the imagined env starts from the real reset observation and the
policy then sees only imagined observations). ``--mode paired``: the policy acts on the real
observations and every action also goes to imagination (for policies that read privileged
state, such as the scripted expert). Reported per policy: real and imagined success rates
with Wilson 95% intervals, mean returns and first-success steps; across policies: Pearson,
Spearman, MMRV and the mean absolute success gap. Writes JSON and a scatter PNG.

Policy specs (``--policies``) are ``kairos_gym.policies.make_policy`` specs, ``BASE[+MOD...]``:
``bc:DIR`` (``kairos-gym train-policy``), ``random``, ``zero``, ``expert`` (privileged: paired
mode only), modified by ``noise=S``, ``open``, ``interrupt=R``, ``hold=R``, ``gripper=R``,
``execute=K``.

Run::

    python -m kairos_gym.eval.agreement --checkpoint kairos_gym/assets/lift --episodes 10 \\
        --policies bc:runs/bc/a bc:runs/bc/a+noise=0.3 bc:runs/bc/a+open random zero \\
        --output results/lift/agreement.json

``--combine A.json B.json --output C.json`` joins reports of the same policies over disjoint
seeds (``--seed 100 --episodes 5`` and ``--seed 105 --episodes 5``) into the report of one
run over all of them, without running anything; given one report, it recomputes its
statistics (the bootstrap intervals and the calibrated reference came later than some reports).

``--trace`` runs every imagined episode to its end and keeps each step's success probability
and reward; ``--combine A.json --rescore 0.8:3 --output B.json`` then scores those episodes
again, an imagined success being 3 consecutive steps above 0.8, without running them. One
traced run answers for every threshold (the real side is the real simulator's, unchanged).

An imagined step's success is read by the checkpoint's success rule
(:class:`kairos_gym.imagined.success.SuccessRule`, ``success_prob > 0.5`` for one step unless
the checkpoint carries another); ``--success-threshold`` and ``--success-hold`` override it,
and the report records the rule it ran with.
"""

from __future__ import annotations

import os

# Headless MuJoCo rendering; must be set before robosuite (or mujoco) is first imported.
os.environ.setdefault("MUJOCO_GL", "egl")
os.environ.setdefault("PYOPENGL_PLATFORM", "egl")

import argparse
import json
import platform
import re
import shlex
import sys
import time
from pathlib import Path
from typing import Any

from kairos_gym.cli.options import policy_spec
from kairos_gym.eval.script import entry_point


def load_real_side(path: str, args: argparse.Namespace,
                   weights: dict[str, str | None]) -> dict[str, Any]:
    """The real-side :class:`PolicyScores` of an earlier closed-loop report, by policy name.

    ``weights`` is ``policy_weights(args.policies)``, the weights the policies hold now.

    Raises:
        ValueError: the report was made in another mode or with other seeds or steps, or
            with policies whose weights differ from ``weights``.
    """
    from kairos_gym.evaluation.agreement import PolicyScores, check_same_policies

    report = json.loads(Path(path).read_text())
    same = {"mode": "closed", "seed": args.seed, "steps": args.steps}
    differ = {k: report.get(k) for k, v in same.items() if report.get(k) != v}
    if differ:
        raise ValueError(f"made with other settings {differ}; need {same}")
    check_same_policies(report.get("policy_weights", {}), weights)
    out = {}
    for d in report["episodes_detail"]:
        out[d["name"]] = PolicyScores(d["name"], real=d["real"], imagined=[],
                                      real_returns=d.get("real_returns", []),
                                      real_first_success=d["real_first_success"])
    return out


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Command-line options."""
    add = parser.add_argument
    add("--checkpoint", default=None, help="environment checkpoint (default: the embedded model)")
    add("--policies", nargs="+", type=policy_spec, metavar="SPEC",
        help="policy specs (see above; required unless --combine)")
    add("--mode", choices=("closed", "paired"), default="closed", help="protocol (default: closed)")
    add("--episodes", type=int, default=10, help="episodes per policy and side (default 10)")
    add("--seed", type=int, default=100, help="episode k uses seed + k (default 100)")
    add("--steps", type=int, default=None, help="steps per episode (default: the episode limit)")
    add("--sample-steps", type=int, default=None, help="Euler steps per imagined frame")
    add("--success-threshold", type=float, default=None, metavar="P",
        help="an imagined step passes when success_prob > P (default: the checkpoint's success "
             "rule; 0.5 when it has none)")
    add("--success-hold", type=int, default=None, metavar="N",
        help="an imagined episode succeeds at the N-th consecutive passing step (default: the "
             "checkpoint's success rule; 1 when it has none)")
    add("--embodiment", default=None, metavar="NAME",
        help="with a multi-embodiment checkpoint: the embodiment to compare (its real env)")
    add("--draw-state", action=argparse.BooleanOptionalAction, default=None,
        help="a model with a stochastic dynamics draws the carried state (default in closed loop) "
             "or takes its prediction (--no-draw-state; default paired, which replays actions "
             "open loop)")
    add("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    add("--output", default="results/agreement.json", help="JSON path (the PNG goes beside it)")
    add("--no-plot", action="store_true", help="skip the scatter PNG")
    add("--no-progress", action="store_true", help="no progress bar (as collect and train)")
    add("--combine", nargs="+", default=None, metavar="JSON",
        help="join earlier reports of the same policies, mode and checkpoint over disjoint "
             "seeds into one report, or rescore one report with this version's statistics "
             "(nothing is run)")
    add("--real-from", default=None, metavar="JSON",
        help="reuse the real-side episodes of an earlier closed-loop report with the same "
             "policies, seeds and steps (only the imagined side runs; for comparing models)")
    add("--trace", action="store_true",
        help="closed loop: run every imagined episode to its end and keep each step's success "
             "probability and reward in the report, for --rescore")
    add("--rescore", default=None, metavar="THRESHOLD[:HOLD]",
        help="with --combine of traced reports: score the imagined side again, a success being "
             "HOLD consecutive steps (default 1) with success_prob > THRESHOLD")


def run(args: argparse.Namespace, argv: list[str]) -> int:
    """Run the protocol, print the table, write JSON (+ PNG); returns an exit status."""
    import gymnasium as gym
    import torch

    from kairos_gym.errors import CheckpointError, DependencyNotInstalled
    from kairos_gym.evaluation.agreement import policy_weights, run_agreement, run_paired_agreement
    from kairos_gym.evaluation.real_vs_imagined import open_env_pair
    from kairos_gym.policies.registry import is_privileged, make_policy

    if args.combine:
        return combine(args, argv)
    if args.rescore:
        print("error: --rescore scores earlier reports again: use it with --combine", file=sys.stderr)
        return 2
    if args.trace and args.mode != "closed":
        print("error: --trace is for the closed loop (--mode closed)", file=sys.stderr)
        return 2
    if not args.policies:
        print("error: --policies is required (unless --combine)", file=sys.stderr)
        return 2
    if args.episodes < 1 or args.threads < 0 or (args.steps is not None and args.steps < 1):
        print("error: --episodes and --steps must be >= 1, --threads >= 0", file=sys.stderr)
        return 2
    if args.threads:
        torch.set_num_threads(args.threads)
    # Closed loop draws a stochastic dynamics' states; the paired protocol replays actions open
    # loop and takes its prediction (see ImaginedCore's draw_state).
    draw_state = args.mode == "closed" if args.draw_state is None else args.draw_state
    try:
        ckpt, real, imagined = open_env_pair(args.checkpoint, sample_steps=args.sample_steps,
                                             embodiment=args.embodiment,
                                             success_threshold=args.success_threshold,
                                             success_hold=args.success_hold,
                                             draw_state=draw_state)
        policies = {spec: make_policy(spec, real) for spec in args.policies}
    except (CheckpointError, ValueError, DependencyNotInstalled, gym.error.Error) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.mode == "closed" and any(is_privileged(s) for s in args.policies):
        print("error: the scripted expert reads the real simulator; use --mode paired",
              file=sys.stderr)
        return 2
    weights = policy_weights(args.policies)
    started = time.perf_counter()
    if args.mode == "closed":
        try:
            known = load_real_side(args.real_from, args, weights) if args.real_from else None
        except (OSError, ValueError, KeyError) as exc:
            print(f"error: --real-from {args.real_from}: {exc}", file=sys.stderr)
            return 2
        rows = run_agreement(policies, real, imagined, episodes=args.episodes, seed=args.seed,
                             max_steps=args.steps, known_real=known, trace=args.trace,
                             progress=not args.no_progress)
    else:
        rows = run_paired_agreement(policies, real, imagined, episodes=args.episodes,
                                    image_key=ckpt.image_key, seed=args.seed, max_steps=args.steps,
                                    progress=not args.no_progress)
    real.close()
    header = f"{ckpt.env_spec.env_id}, {args.mode} loop, {args.episodes} episodes per policy"
    stats, summaries = print_table(rows, header)
    report = {
        "benchmark": "agreement",
        "command": shlex.join(["python", "-m", "kairos_gym.eval.agreement", *argv]),
        "mode": args.mode,
        "checkpoint": str(ckpt.path),
        "env_id": ckpt.env_spec.env_id,
        "episodes": args.episodes,
        "seed": args.seed,
        "steps": args.steps,
        "real_from": args.real_from,
        "embodiment": args.embodiment,
        "sample_steps": imagined.unwrapped.settings.steps,
        "draw_state": draw_state,
        "success_threshold": imagined.unwrapped.success_threshold,
        "success_hold": imagined.unwrapped.success_hold,
        "policy_weights": weights,
        "traced": bool(args.trace),
        "torch_threads": torch.get_num_threads(),
        "cpu": platform.machine(),
        "seconds": time.perf_counter() - started,
        "stats": stats,
        "policies": summaries,
        "episodes_detail": episodes_detail(rows),
    }
    write_report(report, rows, stats, args)
    return 0


def episodes_detail(rows: list[Any]) -> list[dict[str, Any]]:
    """The per-episode record of each policy, as the report stores it (with the imagined
    traces, rounded to 4 decimals, where the run kept them)."""
    out = []
    for row in rows:
        detail = {"name": row.name, "real": row.real, "imagined": row.imagined,
                  "real_returns": row.real_returns, "imagined_returns": row.imagined_returns,
                  "real_first_success": row.real_first_success,
                  "imagined_first_success": row.imagined_first_success}
        for key in ("imagined_success_probs", "imagined_step_rewards"):
            traces = getattr(row, key)
            if traces:
                detail[key] = [[round(float(v), 4) for v in trace] for trace in traces]
        out.append(detail)
    return out


def print_table(rows: list[Any], header: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Print the per-policy table and the statistics; returns ``(stats, summaries)``."""
    from kairos_gym.evaluation.agreement import STAT_NAMES, agreement_stats

    stats = agreement_stats(rows) if len(rows) >= 2 else {}
    summaries = [row.summary() for row in rows]
    print(f"\n{header}")
    print(f"{'policy':<44} {'real':>6} {'imagined':>9} {'gap':>6} {'ret real':>9} {'ret imag':>9}")
    for s in summaries:
        r, i = s["real"], s["imagined"]
        print(f"{s['name'][-44:]:<44} {r['success_rate']:>6.2f} {i['success_rate']:>9.2f} "
              f"{s['gap']:>+6.2f} {r['mean_return']:>9.2f} {i['mean_return']:>9.2f}")
    if stats:
        print(f"Pearson {stats['pearson']:.3f}, Spearman {stats['spearman']:.3f}, "
              f"MMRV {stats['mmrv']:.3f}, mean |gap| {stats['mean_abs_gap']:.3f}, "
              f"episode agreement {stats['episode_agreement']:.3f}")
        for key, label in (("bootstrap", "90% bootstrap interval over episodes"),
                           ("calibrated_reference",
                            "a calibrated imagination drawing outcomes independently (median, 90%)")):
            parts = [f"{name} {_interval(stats[key][name])}" for name in STAT_NAMES]
            print(f"  {label}: " + ", ".join(parts))
    return stats, summaries


def _interval(spread: dict[str, float | None]) -> str:
    """``median [p05, p95]`` of a statistic's spread (``-`` where it is undefined)."""
    if spread["median"] is None:
        return "-"
    return f"{spread['median']:.2f} [{spread['p05']:.2f}, {spread['p95']:.2f}]"


def write_report(report: dict[str, Any], rows: list[Any], stats: dict[str, Any],
                 args: argparse.Namespace) -> None:
    """Write the JSON report to ``--output`` and, unless ``--no-plot``, the scatter PNG."""
    from kairos_gym.evaluation.agreement import scatter_plot

    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(_one_line_number_lists(json.dumps(report, indent=2, allow_nan=True)) + "\n")
    print(f"wrote {out}")
    if stats and not args.no_plot:
        scatter_plot(rows, stats, str(out.with_suffix(".png")))
        print(f"wrote {out.with_suffix('.png')}")


_NUMBER_LIST = re.compile(r"\[\s+([-+0-9.eE,\s]+?)\s+\]")


def _one_line_number_lists(text: str) -> str:
    """``json.dumps(indent=2)`` with every list of plain numbers on one line: a traced report
    holds a probability per imagined step, one per line otherwise (twice the size)."""
    return _NUMBER_LIST.sub(lambda m: "[" + " ".join(m.group(1).split()) + "]", text)


def combine(args: argparse.Namespace, argv: list[str]) -> int:
    """``--combine``: join earlier reports over disjoint seeds into one report."""
    from kairos_gym.evaluation.agreement import combine_reports, rescore
    from kairos_gym.imagined.success import SuccessRule

    try:
        reports = [json.loads(Path(p).read_text()) for p in args.combine]
        rows = combine_reports(reports)
        rule = SuccessRule.parse(args.rescore) if args.rescore else None
        if rule is not None:
            rows = rescore(rows, rule)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        print(f"error: --combine: {exc}", file=sys.stderr)
        return 2
    first = min(reports, key=lambda r: int(r["seed"]))
    episodes = sum(int(r["episodes"]) for r in reports)
    scoring = f", imagined success: {rule.hold} step(s) > {rule.threshold:g}" if rule else ""
    stats, summaries = print_table(
        rows, f"{first['env_id']}, {first['mode']} loop, {episodes} episodes per policy "
              f"(from {len(reports)} report{'s' if len(reports) > 1 else ''}{scoring})")
    report = {
        **{k: first.get(k) for k in ("benchmark", "mode", "checkpoint", "env_id", "steps",
                                     "embodiment", "sample_steps")},
        "success_threshold": rule.threshold if rule else first.get("success_threshold", 0.5),
        "success_hold": rule.hold if rule else first.get("success_hold", 1),
        "policy_weights": first.get("policy_weights"),
        "traced": all(r.get("traced", False) for r in reports),
        "command": shlex.join(["python", "-m", "kairos_gym.eval.agreement", *argv]),
        "combined_from": [{"path": p, "seed": r["seed"], "episodes": r["episodes"],
                           "command": r.get("command")} for p, r in zip(args.combine, reports)],
        "episodes": episodes,
        "seeds": sorted(int(r["seed"]) + k for r in reports for k in range(int(r["episodes"]))),
        "seed": first["seed"],
        "stats": stats,
        "policies": summaries,
        "episodes_detail": episodes_detail(rows),
    }
    write_report(report, rows, stats, args)
    return 0


main = entry_point(__doc__, add_arguments, run)


if __name__ == "__main__":
    sys.exit(main())
