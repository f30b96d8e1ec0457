"""RoboTwin 2.0's evaluation protocol on the bimanual ALOHA tasks (TransferCube, Insertion).

RoboTwin evaluates a policy on N episodes per task. Candidate seeds start at
``100000 * (1 + seed)`` (``seed`` is the run's seed, 0 by default) and go up by one; a
candidate is kept only when the task's scripted expert solves it, so every episode is
solvable. Success is the share of the N kept seeds the policy solves, within the task's step
limit (400 actions here, :data:`~kairos_gym.envs.registration.ALOHA_LIMITS`).

The expert check is itself a benchmark run: the expert (state-only, the same step limit as
the evaluated policy) plays the candidates in order through
:func:`~kairos_gym.benchmarks.runner.run_benchmark`, into its own results file
(``expert_seeds.jsonl`` in the output folder). That file is the kept-seed cache: a resumed or
repeated run, any policy, reads it instead of re-running the expert, and asking for more
episodes only checks the candidates not yet checked. ``--workers`` spreads the expert
check over Ray workers too.

The evaluated policy is either a kairos-gym policy spec (``--policy expert``,
``bc:DIR``, ``served:HOST:PORT``, ...) run by the runner's policy loop, or a RoboTwin policy
folder (``--plugin DIR``: ``deploy_policy.py`` + ``deploy_policy.yml``, recorded as the
policy ``robotwin:DIR``) run by RoboTwin's own loop through
:class:`~kairos_gym.robotwin.task_env.TaskEnvAdapter`: each job carries the episode
function :func:`plugin_episode`, which loads the folder once per worker and calls
:func:`~kairos_gym.robotwin.task_env.run_plugin_episode` on the worker's env. With Ray
workers on several machines the folder must be at the same path on each.

Cameras: none for the state-only policies (``expert``, ``zero``, ``random``: fastest), the
three RoboTwin cameras (``head_camera``, ``left_camera``, ``right_camera``) for plug-ins,
the env's default (``top``) for learned and served policies; ``--cameras`` and
``--image-size`` (square, 64 px by default; RoboTwin renders 240x320) choose others::

    kairos-gym bench robotwin --task TransferCube --episodes 10 --policy expert \\
        --out results/robotwin/transfer_cube_expert
    kairos-gym bench robotwin --task TransferCube Insertion --episodes 100 \\
        --plugin policy/MyPolicy --out runs/robotwin/my_policy --workers 4

In imagination (``--checkpoint DIR``, a world model of the task): the same kept seeds (the
expert check stays in the real simulator), each episode in ``kairos_gym/Imagined-v0``
started from the real reset of its seed (:mod:`kairos_gym.benchmarks.imagined`). Policies
and plug-ins act closed-loop on imagined observations (the model's one camera); the
scripted expert, which reads the simulator, runs paired (its real actions replayed in
imagination)::

    kairos-gym bench robotwin --task TransferCube --episodes 10 --policy bc:runs/bc/tc \\
        --checkpoint runs/transfer_cube_rollouts/model --out results/robotwin/tc_bc_imagined
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kairos_gym.benchmarks.imagined import PAIRED_EPISODE, imagined_factory
from kairos_gym.benchmarks.options import (
    add_cameras_argument,
    add_seed_argument,
    add_task_argument,
    env_options,
    parse_cameras,
    shared_job_options,
    task_jobs,
    task_table,
)
from kairos_gym.benchmarks.registry import Benchmark
from kairos_gym.benchmarks.runner import (
    EnvFactory,
    EpisodeJob,
    EpisodeSummary,
    run_benchmark,
    spread,
)
from kairos_gym.cli.options import positive_int
from kairos_gym.envs.registration import ALOHA_LIMITS
from kairos_gym.policies.registry import is_privileged

__all__ = [
    "PLUGIN_PREFIX",
    "ROBOTWIN",
    "ROBOTWIN_CAMERAS",
    "SEED_CACHE",
    "PluginOutcome",
    "SeedSelection",
    "default_cameras",
    "first_seed",
    "plugin_episode",
    "robotwin_jobs",
    "select_seeds",
]

TASKS = tuple(ALOHA_LIMITS)
SEED_STRIDE = 100000
# The policy spec recorded for a RoboTwin-format policy folder (``kairos-gym bench --plugin``).
PLUGIN_PREFIX = "robotwin:"
# The expert check's results file, in the output folder: the kept-seed cache.
SEED_CACHE = "expert_seeds.jsonl"
EXPERT = "expert"
# RoboTwin's camera names, in the order plug-ins list them (the ALOHA env renders each).
ROBOTWIN_CAMERAS = ("head_camera", "left_camera", "right_camera")
# Policy bases that read no camera (the expert reads the simulator itself).
STATE_ONLY = ("expert", "zero", "random")
# The function each plug-in job names (see EpisodeJob.episode).
PLUGIN_EPISODE = "kairos_gym.benchmarks.robotwin:plugin_episode"


def first_seed(seed: int = 0) -> int:
    """RoboTwin's first candidate seed for the run seed ``seed``: ``100000 * (1 + seed)``."""
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"the run seed must be an int >= 0, got {seed!r}")
    return SEED_STRIDE * (1 + seed)


def env_id(task: str) -> str:
    """The registered id of an ALOHA task (``kairos_gym/Aloha-<task>-v0``)."""
    return f"kairos_gym/Aloha-{task}-v0"


@dataclass(frozen=True)
class SeedSelection:
    """The seeds of one task kept by the expert check.

    Attributes:
        task: the ALOHA task.
        first: the first candidate (``100000 * (1 + seed)``).
        step_limit: the steps the expert was given (the evaluated policy's limit).
        kept: the first N candidates the expert solved, in order.
        skipped: the candidates before the last kept one that the expert failed.
        checked_now: expert episodes run by this call (0 when the cache answered).
    """

    task: str
    first: int
    step_limit: int
    kept: list[int]
    skipped: list[int]
    checked_now: int


def select_seeds(
    task: str,
    episodes: int,
    cache: str | os.PathLike[str],
    *,
    seed: int = 0,
    max_steps: int | None = None,
    workers: int = 1,
    address: str | None = None,
    progress: bool = True,
    max_candidates: int | None = None,
) -> SeedSelection:
    """Find ``episodes`` seeds of ``task`` the scripted expert solves, RoboTwin's way.

    Candidates ``first_seed(seed), first_seed(seed) + 1, ...`` are checked in order, in
    batches (at least ``workers`` at a time), until ``episodes`` of them are solved; the
    expert's episodes go to the results file ``cache`` and are never run twice.

    Args:
        task: an ALOHA task (:data:`TASKS`).
        episodes: seeds to keep (N).
        cache: the expert check's results file (created when missing).
        seed: the run seed.
        max_steps: the step limit (``None``: the task's, 400).
        workers, address: Ray workers for the expert episodes (see ``run_benchmark``).
        progress: show the expert check's progress bar.
        max_candidates: give up after this many candidates (default ``10 * episodes + 10``).

    Raises:
        ValueError: an unknown task, ``episodes < 1``, or fewer than ``episodes`` seeds
            solved among ``max_candidates`` (a step limit too short for the expert).
    """
    _check_task(task)
    if isinstance(episodes, bool) or not isinstance(episodes, int) or episodes < 1:
        raise ValueError(f"episodes must be an int >= 1, got {episodes!r}")
    start = first_seed(seed)
    limit = max_steps if max_steps is not None else ALOHA_LIMITS[task]
    cap = max_candidates if max_candidates is not None else 10 * episodes + 10
    # State-only: the expert reads the simulator, and rendering does not change the physics.
    env = EnvFactory(env_id(task), {"cameras": []})
    outcomes: list[tuple[int, bool]] = []
    checked_now = 0
    while sum(ok for _, ok in outcomes) < episodes:
        begin = start + len(outcomes)
        count = min(max(episodes - sum(ok for _, ok in outcomes), workers), start + cap - begin)
        if count <= 0:
            solved = sum(ok for _, ok in outcomes)
            raise ValueError(
                f"the scripted expert solved {solved} of {cap} candidate seeds of {task} "
                f"({start}..{start + cap - 1}) within {limit} steps; {episodes} are needed. "
                f"RoboTwin keeps only seeds the expert solves: give more steps (--max-steps)"
            )
        jobs = [
            EpisodeJob(
                key=f"expert/{task}/steps={limit}/{candidate}",
                env=env,
                seed=candidate,
                groups={"task": task},
                max_steps=limit,
            )
            for candidate in range(begin, begin + count)
        ]
        run = run_benchmark(
            jobs, EXPERT, os.fspath(cache), workers=workers, address=address, progress=progress
        )
        checked_now += run.new
        outcomes += [(record.seed, record.success) for record in run.records]
    kept: list[int] = []
    skipped: list[int] = []
    for candidate, ok in outcomes:
        if len(kept) == episodes:
            break
        (kept if ok else skipped).append(candidate)
    return SeedSelection(task, start, limit, kept, skipped, checked_now)


def default_cameras(policy_spec: str | None, plugin: bool) -> tuple[str, ...] | None:
    """The cameras a run renders by default (``None``: the env's default, ``top``).

    Plug-ins get RoboTwin's three cameras, state-only policies (:data:`STATE_ONLY`) none,
    learned and served policies the env's default.
    """
    if plugin:
        return ROBOTWIN_CAMERAS
    base = (policy_spec or "").split("+")[0]
    return () if base in STATE_ONLY else None


def robotwin_jobs(
    tasks: Sequence[str] = ("TransferCube",),
    *,
    episodes: int = 100,
    seed: int = 0,
    out: str | os.PathLike[str],
    plugin: bool = False,
    max_steps: int | None = None,
    cameras: Sequence[str] | None = (),
    image_size: int | None = None,
    limit: int | None = None,
    workers: int = 1,
    address: str | None = None,
    progress: bool = True,
    checkpoint: str | os.PathLike[str] | None = None,
    paired: bool = False,
    object_obs: bool = False,
) -> list[EpisodeJob]:
    """One job per kept seed (:func:`select_seeds`) and task, keyed ``robotwin/<task>/<seed>``.

    Args:
        tasks: ALOHA tasks (:data:`TASKS`).
        episodes: kept seeds (episodes) per task.
        seed: the run seed (candidates from ``100000 * (1 + seed)``).
        out: the output folder; the expert check's cache :data:`SEED_CACHE` is kept there.
        plugin: the jobs run :func:`plugin_episode` (the policy is ``robotwin:DIR``).
        max_steps: the step limit, for the expert check and the episodes (``None``: the
            task's).
        cameras: cameras to render (``None``: the env's default; ``()``: state only).
        image_size: camera image side (``None``: the env's default, 64).
        limit: keep this many jobs, evenly spread (see
            :func:`~kairos_gym.benchmarks.runner.spread`).
        workers, address, progress: for the expert check (see :func:`select_seeds`).
        checkpoint: run the episodes in imagination, in this environment checkpoint of the
            task (:func:`~kairos_gym.benchmarks.imagined.imagined_factory`; ``cameras`` and
            ``image_size`` are then the model's).
        paired: with ``checkpoint``, the jobs run
            :func:`~kairos_gym.benchmarks.imagined.paired_episode` (for privileged policies).
        object_obs: the real env adds the privileged ``object_state`` observation (the
            objects' positions), for policies trained with it. An imagined env observes what
            its checkpoint's real env did.

    Raises:
        ValueError: an unknown task, ``episodes < 1``, too few solvable seeds, a checkpoint
            of another task, or ``paired`` without a checkpoint or with ``plugin``.
        CheckpointError: ``checkpoint`` is not an environment checkpoint.
    """
    if paired and (checkpoint is None or plugin):
        raise ValueError("paired runs a policy spec in imagination: it needs a checkpoint and no plugin")
    if not tasks:
        raise ValueError(f"no task given; choose from {list(TASKS)}")
    for task in tasks:
        _check_task(task)
    kwargs = env_options(image_size, cameras)
    if object_obs:
        kwargs["object_obs"] = True
    factories = {}
    for task in dict.fromkeys(tasks):
        # Built (and a checkpoint checked) before the expert check, which takes a while.
        if checkpoint is None:
            factories[task] = EnvFactory(env_id(task), kwargs)
        else:
            step_limit = max_steps if max_steps is not None else ALOHA_LIMITS[task]
            factories[task] = imagined_factory(
                checkpoint, env_id(task), max_episode_steps=step_limit
            )
    os.makedirs(out, exist_ok=True)
    cache = os.path.join(out, SEED_CACHE)
    jobs = []
    for task, factory in factories.items():
        if progress:
            print(
                f"robotwin: checking {task} seeds from {first_seed(seed)} with the scripted "
                f"expert until {episodes} are solved (cached in {cache})",
                file=sys.stderr,
            )
        chosen = select_seeds(
            task,
            episodes,
            cache,
            seed=seed,
            max_steps=max_steps,
            workers=workers,
            address=address,
            progress=progress,
        )
        if progress:
            print(
                f"robotwin: {task}: kept {len(chosen.kept)} seeds, skipped {chosen.skipped} "
                f"(expert failed), {chosen.checked_now} checked now",
                file=sys.stderr,
            )
        episode = PLUGIN_EPISODE if plugin else (PAIRED_EPISODE if paired else None)
        jobs += task_jobs(
            "robotwin", task, factory, chosen.kept, max_steps=max_steps, episode=episode
        )
    return spread(jobs, limit)


@dataclass(frozen=True)
class PluginOutcome(EpisodeSummary):
    """A plug-in episode as the runner records it.

    ``length`` counts ``take_action`` calls (RoboTwin's ``take_action_cnt``, one env step
    each); ``ended_by`` is ``"success"``, ``"max_steps"`` (the step limit) or
    ``"truncated"`` (the env ended the episode); ``env_seconds`` is the time inside
    ``env.step``.
    """


_ENDED_BY = {"success": "success", "step_limit": "max_steps", "env_end": "truncated"}
# (folder, task) -> the loaded plug-in: its model is built once per worker, as in RoboTwin.
_PLUGINS: dict[tuple[str, str], Any] = {}


def plugin_folder(policy_spec: str) -> Path:
    """The folder of a ``robotwin:DIR`` policy spec.

    Raises:
        ValueError: a spec without the ``robotwin:`` prefix or without a folder.
    """
    if not isinstance(policy_spec, str) or not policy_spec.startswith(PLUGIN_PREFIX):
        raise ValueError(
            f"a RoboTwin plug-in policy is {PLUGIN_PREFIX!r} + a policy folder, got {policy_spec!r}"
        )
    folder = policy_spec[len(PLUGIN_PREFIX) :]
    if not folder:
        raise ValueError(f"the policy spec {policy_spec!r} names no folder")
    return Path(folder)


def plugin_episode(env: Any, policy_spec: str, job: EpisodeJob) -> PluginOutcome:
    """Run ``job``'s episode with the RoboTwin plug-in of ``policy_spec`` (``robotwin:DIR``).

    The episode function of plug-in jobs (:attr:`EpisodeJob.episode`): RoboTwin's loop
    (:func:`~kairos_gym.robotwin.task_env.run_plugin_episode`) over ``env`` with the job's
    seed and step limit (``None``: the env's). The folder is loaded once per process and
    task (``usr_args["task_name"]`` is the task when its YAML leaves it empty).

    Raises:
        PluginError: the folder breaks the plug-in contract, or the plug-in stalls.
        InvalidAction / EpisodeOver: the plug-in sent a bad action (see the adapter).
    """
    from kairos_gym.robotwin.plugin import load_plugin
    from kairos_gym.robotwin.task_env import run_plugin_episode

    folder = plugin_folder(policy_spec)
    task = job.groups.get("task") or job.env.target.split("Aloha-")[-1].rsplit("-v", 1)[0]
    key = (str(folder), task)
    if key not in _PLUGINS:
        plugin = load_plugin(folder)
        if plugin.usr_args.get("task_name") is None:
            plugin.usr_args["task_name"] = task
        _PLUGINS[key] = plugin
    timed = _TimedSteps(env)
    result = run_plugin_episode(_PLUGINS[key], timed, job.seed, step_lim=job.max_steps)
    return PluginOutcome(
        success=result.success,
        total_reward=result.total_reward,
        length=result.steps,
        first_success=result.steps if result.success else None,
        ended_by=_ENDED_BY[result.end],
        instruction=result.instruction,
        env_seconds=timed.seconds,
    )


class _TimedSteps:
    """A pass-through env view that adds up the time spent in ``step``."""

    def __init__(self, env: Any) -> None:
        self._env = env
        self.seconds = 0.0

    def step(self, action: Any) -> Any:
        started = time.perf_counter()
        try:
            return self._env.step(action)
        finally:
            self.seconds += time.perf_counter() - started

    def __getattr__(self, name: str) -> Any:
        return getattr(self._env, name)


def _check_task(task: str) -> None:
    if task not in ALOHA_LIMITS:
        raise ValueError(f"unknown RoboTwin task {task!r}; choose from {list(TASKS)}")


def _add_arguments(parser: argparse.ArgumentParser) -> None:
    add_task_argument(parser, TASKS, "TransferCube")
    parser.add_argument(
        "--episodes",
        type=positive_int,
        default=100,
        metavar="N",
        help="episodes per task, on the first N seeds the scripted expert solves (default: "
        "100, RoboTwin's)",
    )
    add_seed_argument(parser, "candidate seeds start at 100000 * (1 + S) (default: 0)")
    add_cameras_argument(
        parser,
        "'' for none; default: none for expert/zero/random, "
        "head_camera,left_camera,right_camera for --plugin, the env's otherwise",
    )
    parser.add_argument(
        "--object-obs",
        action="store_true",
        help="the real env also observes the objects' positions (object_state), for "
        "policies trained with it (RoboTwin's own policies never see it)",
    )
    parser.add_argument(
        "--checkpoint",
        default=None,
        metavar="DIR",
        help="run the episodes in imagination: a world model of the task (an environment "
        "checkpoint); each episode starts from the real reset of its seed, the scripted expert "
        "runs paired (its real actions replayed in imagination)",
    )


def _cameras(args: argparse.Namespace) -> list[str] | None:
    if getattr(args, "checkpoint", None) is not None:
        if args.cameras is not None:
            raise ValueError(
                "--cameras does not apply with --checkpoint: an imagined env observes the one "
                "camera its model generates"
            )
        return None
    if args.cameras is not None:
        return parse_cameras(args.cameras)
    cameras = default_cameras(args.policy, getattr(args, "plugin", None) is not None)
    return None if cameras is None else list(cameras)


def _checkpoint(args: argparse.Namespace) -> str | None:
    """The ``--checkpoint`` folder as recorded (absolute), or ``None`` for the real simulator."""
    return None if args.checkpoint is None else os.fspath(Path(args.checkpoint).resolve())


def _jobs(args: argparse.Namespace) -> list[EpisodeJob]:
    plugin = getattr(args, "plugin", None)
    if plugin is not None:
        from kairos_gym.robotwin.plugin import load_plugin

        # Refuse a broken folder now, before the expert check.
        load_plugin(plugin_folder(args.policy))
    return robotwin_jobs(
        args.task,
        episodes=args.episodes,
        seed=args.seed,
        out=args.out,
        plugin=plugin is not None,
        cameras=_cameras(args),
        workers=args.workers,
        address=args.address,
        progress=not args.no_progress,
        checkpoint=args.checkpoint,
        paired=args.checkpoint is not None and plugin is None and is_privileged(args.policy),
        object_obs=args.object_obs,
        **shared_job_options(args),
    )


ROBOTWIN = Benchmark(
    name="robotwin",
    description="RoboTwin 2.0's protocol on the ALOHA tasks: N expert-solvable seeds per task "
    "from 100000 * (1 + seed), a policy spec or a RoboTwin plug-in folder (--plugin)",
    add_arguments=_add_arguments,
    jobs=_jobs,
    table=task_table,
    settings=lambda args: {
        "cameras": _cameras(args),
        "checkpoint": _checkpoint(args),
        # None when off: runs recorded before the option resume unchanged.
        "object_obs": args.object_obs or None,
    },
    default_image_size=64,
    groups=("task",),
)
