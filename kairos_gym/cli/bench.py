"""``kairos-gym bench``: run a benchmark with any policy, resumable, on one process or Ray workers.

Examples::

    # the LIBERO-Plus camera variants of difficulty 1-2 with a served VLA, 8 Ray workers
    kairos-gym bench libero-plus --dimension camera --difficulty 1 2 \\
        --policy served:ws://gpu-box:8000 --out runs/bench/plus --workers 8 --execute 5
    # plain LIBERO, 50 trials per task of libero_spatial, failure videos
    kairos-gym bench libero --suite libero_spatial --policy expert --out runs/bench/spatial --videos
    # the robosuite tasks (no extra assets): a 2-minute smoke run
    kairos-gym bench robosuite --task Lift --trials 4 --policy expert --out runs/bench/lift
    # RoboTwin's protocol on ALOHA TransferCube with a RoboTwin policy folder
    kairos-gym bench robotwin --task TransferCube --episodes 100 --plugin policy/MyPolicy \\
        --out runs/bench/robotwin

``--out DIR`` receives ``results.jsonl`` (one line per episode, appended as episodes end),
``run.json`` (the settings), ``report.json``, ``report.png``, ``table.md`` and, with
``--videos``, ``videos/`` (failed episodes). Running the same command again resumes: only
the episodes missing from ``results.jsonl`` run. A different policy, ``--execute``, image
size, step limit or camera set in the same ``DIR`` is refused; ``--fresh`` deletes the
earlier results and starts over. ``--plugin DIR`` runs a RoboTwin policy folder instead of a
policy spec (recorded as the policy ``robotwin:DIR``) on benchmarks whose episodes can run
one (``robotwin``). Filters (``--suite``, ``--limit``, ``--trials``, ...) may
change between runs: the report covers the episodes the current command asks for.
"""

from __future__ import annotations

import os

# Headless rendering for MuJoCo-based simulators; must precede their import.
os.environ.setdefault("MUJOCO_GL", "egl")
os.environ.setdefault("PYOPENGL_PLATFORM", "egl")

import argparse
import json
import shutil
import sys
from typing import Any

from kairos_gym.cli.options import policy_spec, positive_int
from kairos_gym.cli.reporting import UsageError, run_reporting

PROG = "kairos-gym bench"
RESULTS = "results.jsonl"
RUN = "run.json"
# Files a run writes in --out; --fresh removes exactly these (and videos/).
OUTPUTS = (RESULTS, RUN, "report.json", "report.png", "table.md")
# The policy spec recorded for --plugin DIR: a RoboTwin-format policy folder.
PLUGIN_PREFIX = "robotwin:"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``kairos-gym bench``: one sub-command per registered benchmark."""
    from kairos_gym.benchmarks.registry import BENCHMARKS, load_benchmark

    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = __doc__.split("\n\n", 1)[1] if __doc__ else None
    sub = parser.add_subparsers(dest="benchmark", metavar="BENCHMARK", required=True)
    for name in BENCHMARKS:
        benchmark = load_benchmark(name)
        sp = sub.add_parser(name, help=benchmark.description, description=benchmark.description)
        benchmark.add_arguments(sp)
        _add_shared(sp)


def _add_shared(parser: argparse.ArgumentParser) -> None:
    add = parser.add_argument
    policy = parser.add_mutually_exclusive_group(required=True)
    policy.add_argument(
        "--policy",
        type=policy_spec,
        metavar="SPEC",
        help="policy spec: expert, random, zero, bc:DIR, served:ws://HOST:PORT, with modifiers "
        "(e.g. expert+noise=0.1); see kairos_gym.policies.registry",
    )
    policy.add_argument(
        "--plugin",
        default=None,
        metavar="DIR",
        help="a RoboTwin policy folder (deploy_policy.py + deploy_policy.yml) run by RoboTwin's "
        "episode loop, instead of --policy (benchmarks that support it: robotwin)",
    )
    add(
        "--out",
        required=True,
        metavar="DIR",
        help="output folder (results.jsonl, run.json, report.json/png, table.md, videos/)",
    )
    add(
        "--workers",
        type=positive_int,
        default=1,
        metavar="N",
        help="episodes in parallel: N > 1 runs N Ray actors (a local Ray cluster unless "
        "--address; default: 1, in this process)",
    )
    add(
        "--address",
        default=None,
        metavar="ADDR",
        help="an existing Ray cluster to run the workers on ('auto', 'ray://host:10001')",
    )
    add(
        "--limit",
        type=positive_int,
        default=None,
        metavar="N",
        help="run N episodes evenly spread over the selection (a stratified sample)",
    )
    add(
        "--image-size",
        type=positive_int,
        default=None,
        metavar="PX",
        help="camera image side in pixels (default: the benchmark's)",
    )
    add(
        "--max-steps",
        type=positive_int,
        default=None,
        metavar="N",
        help="cut episodes after N steps (default: the benchmark's step limits)",
    )
    add(
        "--execute",
        type=positive_int,
        default=None,
        metavar="K",
        help="actions of a policy's chunk executed before asking again (default: the whole chunk)",
    )
    add("--videos", action="store_true", help="write a video of every failed episode to DIR/videos")
    add(
        "--fresh",
        action="store_true",
        help="delete DIR's earlier results and start over (otherwise the run resumes)",
    )
    add("--no-progress", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    """Run the benchmark: 0 done, 2 bad arguments, 1 a refused or failed run, 130 on Ctrl-C."""
    return run_reporting(
        PROG, _bench, args, interrupted="interrupted; run the same command again to continue"
    )


def _settings(args: argparse.Namespace, benchmark: Any) -> dict[str, Any]:
    image_size = args.image_size if args.image_size is not None else benchmark.default_image_size
    return {
        "benchmark": benchmark.name,
        "policy": args.policy,
        "execute": args.execute,
        "image_size": image_size,
        "max_steps": args.max_steps,
        **benchmark.settings(args),
    }


def _prepare_out(out: str, settings: dict[str, Any], fresh: bool) -> None:
    """Create ``out``; with ``fresh`` delete an earlier run's files, else check it is the
    same run (same settings) before resuming it."""
    if os.path.exists(out) and not os.path.isdir(out):
        raise UsageError(f"--out {out} is a file; give a folder")
    os.makedirs(out, exist_ok=True)
    if fresh:
        for name in OUTPUTS:
            path = os.path.join(out, name)
            if os.path.exists(path):
                os.remove(path)
        shutil.rmtree(os.path.join(out, "videos"), ignore_errors=True)
        return
    run_path = os.path.join(out, RUN)
    if os.path.exists(run_path):
        with open(run_path) as fh:
            try:
                stored = json.load(fh).get("settings", {})
            except (json.JSONDecodeError, AttributeError):
                raise UsageError(f"{run_path} is not a run description; use --fresh") from None
        differ = {k: (stored.get(k), v) for k, v in settings.items() if stored.get(k) != v}
        if differ:
            detail = ", ".join(f"{k}: earlier {a!r}, now {b!r}" for k, (a, b) in differ.items())
            raise UsageError(
                f"{out} holds a run with other settings ({detail}); resuming would mix them. "
                f"Use another --out, or --fresh to delete the earlier results"
            )
    elif os.path.exists(os.path.join(out, RESULTS)):
        raise UsageError(
            f"{out} holds {RESULTS} without {RUN} (not written by this command); use another "
            f"--out, or --fresh to delete it"
        )


def _bench(args: argparse.Namespace) -> int:
    from kairos_gym.benchmarks.registry import load_benchmark
    from kairos_gym.benchmarks.report import write_report
    from kairos_gym.benchmarks.runner import run_benchmark

    benchmark = load_benchmark(args.benchmark)
    if args.image_size is None:
        args.image_size = benchmark.default_image_size
    if args.plugin is not None:
        if not os.path.isdir(args.plugin):
            raise UsageError(f"--plugin {args.plugin}: no such policy folder")
        args.policy = PLUGIN_PREFIX + os.path.abspath(args.plugin)
    try:
        settings = _settings(args, benchmark)
        jobs = benchmark.jobs(args)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    if not jobs:
        raise UsageError("no episodes match the filters")
    if args.plugin is not None and any(job.episode is None for job in jobs):
        raise UsageError(
            f"the {benchmark.name} benchmark runs policy specs only (--policy); --plugin needs "
            "a benchmark whose episodes run RoboTwin plug-ins (robotwin)"
        )
    out = args.out
    _prepare_out(out, settings, args.fresh)
    command = ["kairos-gym", "bench", *sys.argv[2:]] if sys.argv[1:2] == ["bench"] else None
    with open(os.path.join(out, RUN), "w") as fh:
        json.dump({"settings": settings, "command": command}, fh, indent=2)
        fh.write("\n")

    result = run_benchmark(
        jobs,
        args.policy,
        os.path.join(out, RESULTS),
        workers=args.workers,
        address=args.address,
        progress=not args.no_progress,
        videos_dir=os.path.join(out, "videos") if args.videos else None,
        execute=args.execute,
    )
    table = benchmark.table(result.records)
    with open(os.path.join(out, "table.md"), "w") as fh:
        fh.write(table + "\n")
    speed = {}
    if result.new and result.seconds > 0:
        per_hour = 3600 * result.new / result.seconds
        speed = {
            "episodes_per_hour": per_hour,
            "episodes_per_hour_per_worker": per_hour / args.workers,
        }
    write_report(
        result.records,
        os.path.join(out, "report.json"),
        os.path.join(out, "report.png"),
        groups=benchmark.groups,
        extra={
            "benchmark": benchmark.name,
            "settings": settings,
            "command": command,
            "run": {
                "new": result.new,
                "resumed": result.resumed,
                "seconds": result.seconds,
                "workers": args.workers,
                **speed,
            },
            "table": table,
        },
    )
    print(table)
    rate = result.success_rate
    line = (
        f"{benchmark.name}: {len(result.records)} episodes ({result.new} new, "
        f"{result.resumed} resumed), success {rate:.1%}, in {result.seconds:.1f} s"
    )
    if speed:
        line += (
            f" ({speed['episodes_per_hour']:.0f} episodes/h, "
            f"{speed['episodes_per_hour_per_worker']:.0f} per worker)"
        )
    print(line + f"; results in {out}")
    return 0
