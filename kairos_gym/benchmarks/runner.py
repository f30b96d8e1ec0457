"""Run a benchmark: a list of episode jobs, on one process or spread over Ray workers, resumable.

A benchmark is a list of :class:`EpisodeJob` (one episode each: how to build the env, the
reset seed and options, the labels to report by, the step limit). :func:`run_benchmark`
skips the jobs whose key is already in the results file, runs the rest through
:func:`kairos_gym.rollout.run_episode` and appends one record per finished episode (see
:mod:`kairos_gym.benchmarks.results`), so a killed run resumes where it stopped.

Workers keep their env alive across consecutive jobs with the same :class:`EnvFactory`:
jobs are handed out grouped by env, so a task's env is built once per worker (a worker that
runs out of work takes over part of the largest remaining group). With ``workers > 1`` (or
an ``address``) the workers are Ray actors, each owning its env and policy; records stream
back to the driver, the only writer of the results file. Seeded resets make the records of
a deterministic policy independent of the number of workers.

Example (four seeded Lift episodes of the scripted expert on two local Ray workers)::

    from kairos_gym.benchmarks.runner import EnvFactory, EpisodeJob, run_benchmark

    lift = EnvFactory("kairos_gym/Robosuite-Lift-v0", {"cameras": [], "max_episode_steps": 50})
    jobs = [EpisodeJob(f"lift/{s}", lift, seed=s, groups={"task": "Lift"}) for s in range(4)]
    run = run_benchmark(jobs, "expert", "out/results.jsonl", workers=2)
    run.success_rate, len(run.records)
"""

from __future__ import annotations

import importlib
import json
import math
import os
import re
import sys
import time
import zlib
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from kairos_gym.benchmarks.results import EpisodeRecord, ResultsError, ResultsWriter

__all__ = [
    "BenchmarkRun",
    "EnvFactory",
    "EpisodeJob",
    "EpisodeSummary",
    "EpisodeWorker",
    "run_benchmark",
    "spread",
]

_SCALARS = (str, int, float, bool, type(None))


def _json_identity(value: Any, what: str) -> str:
    try:
        return json.dumps(value, sort_keys=True, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{what} must hold JSON values only (it is recorded): {exc}") from None


@dataclass(frozen=True)
class EnvFactory:
    """How a worker builds an env: a Gymnasium id or a ``module:callable``, with kwargs.

    Picklable (it travels to Ray workers), JSON-recordable, and compared by value: jobs with
    equal factories share a worker's env.

    Attributes:
        target: a registered Gymnasium id (``kind="gym"``, built with ``gym.make``) or
            ``"package.module:function"`` (``kind="callable"``, called with ``kwargs``).
        kwargs: keyword arguments, JSON values only (tuples are recorded as lists).
        kind: ``"gym"`` or ``"callable"``.
    """

    target: str
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    kind: str = "gym"

    def __post_init__(self) -> None:
        if self.kind not in ("gym", "callable"):
            raise ValueError(f"EnvFactory kind must be 'gym' or 'callable', got {self.kind!r}")
        if not isinstance(self.target, str) or not self.target:
            raise ValueError(f"EnvFactory target must be a non-empty string, got {self.target!r}")
        if self.kind == "callable" and not re.fullmatch(r"[\w.]+:[\w.]+", self.target):
            raise ValueError(
                f"a callable EnvFactory target is 'package.module:function', got {self.target!r}"
            )
        if not isinstance(self.kwargs, Mapping):
            raise TypeError(f"EnvFactory kwargs must be a mapping, got {self.kwargs!r}")
        object.__setattr__(self, "kwargs", dict(self.kwargs))
        _json_identity(self.describe(), f"the kwargs of env {self.target!r}")

    def describe(self) -> dict[str, Any]:
        """``{"kind", "target", "kwargs"}``, as recorded with every episode."""
        return {"kind": self.kind, "target": self.target, "kwargs": dict(self.kwargs)}

    @property
    def identity(self) -> str:
        """Canonical JSON of :meth:`describe`: equal for factories that build the same env."""
        return json.dumps(self.describe(), sort_keys=True)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, EnvFactory) and self.identity == other.identity

    def __hash__(self) -> int:
        return hash(self.identity)

    def make(self) -> Any:
        """Build the env (``gym.make`` or the callable).

        Raises:
            ValueError: an unknown Gymnasium id, or a callable that cannot be imported.
        """
        if self.kind == "gym":
            import gymnasium as gym

            import kairos_gym  # noqa: F401  (registers the kairos_gym/... ids)

            if self.target not in gym.registry:
                raise ValueError(f"unknown environment id {self.target!r}")
            return gym.make(self.target, **self.kwargs)
        return _import_target(self.target, "env factory")(**self.kwargs)


def _import_target(target: str, what: str) -> Any:
    """The object named by ``"package.module:attribute"`` (dotted attributes allowed)."""
    module_name, _, name = target.partition(":")
    try:
        obj = importlib.import_module(module_name)
        for part in name.split("."):
            obj = getattr(obj, part)
    except (ImportError, AttributeError) as exc:
        raise ValueError(f"cannot import the {what} {target!r}: {exc}") from None
    return obj


@dataclass(frozen=True)
class EpisodeJob:
    """One episode of a benchmark.

    Attributes:
        key: stable, unique key (what the results file and resuming match on), e.g.
            ``"libero/libero_spatial/3/7"``.
        env: the :class:`EnvFactory` of the env the episode runs in.
        seed: the reset seed (also the policy's episode seed); ``None``: unseeded.
        options: reset options (e.g. ``{"init_state": 7}``), JSON values only.
        groups: labels to report by (``{"suite": ..., "task": ..., "dimension": ...}``),
            JSON scalars only.
        max_steps: stop the episode after this many steps (``None``: the env's own limit).
        episode: ``"package.module:function"`` that runs the episode itself, for policies
            that drive the env rather than answer observations (a RoboTwin plug-in calls
            ``take_action``): called as ``function(env, policy_spec, job)`` in place of
            :func:`~kairos_gym.rollout.run_episode`, it returns an
            :class:`EpisodeSummary` (or any object with its attributes); no policy is built
            with ``make_policy`` for such a job and no video is written. ``None``: the
            policy loop.
    """

    key: str
    env: EnvFactory
    seed: int | None = None
    options: Mapping[str, Any] | None = None
    groups: Mapping[str, Any] = field(default_factory=dict)
    max_steps: int | None = None
    episode: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.key, str) or not self.key or "\n" in self.key:
            raise ValueError(f"a job key is a non-empty one-line string, got {self.key!r}")
        if not isinstance(self.env, EnvFactory):
            raise TypeError(f"job {self.key!r}: env must be an EnvFactory, got {self.env!r}")
        if self.seed is not None and (not _is_int(self.seed) or self.seed < 0):
            raise ValueError(
                f"job {self.key!r}: seed must be an int >= 0 or None, got {self.seed!r}"
            )
        if self.max_steps is not None and (not _is_int(self.max_steps) or self.max_steps < 1):
            raise ValueError(
                f"job {self.key!r}: max_steps must be a positive int or None, got {self.max_steps!r}"
            )
        if self.options is not None:
            if not isinstance(self.options, Mapping):
                raise TypeError(
                    f"job {self.key!r}: options must be a mapping, got {self.options!r}"
                )
            object.__setattr__(self, "options", dict(self.options))
            _json_identity(self.options, f"the options of job {self.key!r}")
        if not isinstance(self.groups, Mapping):
            raise TypeError(f"job {self.key!r}: groups must be a mapping, got {self.groups!r}")
        if self.episode is not None and not (
            isinstance(self.episode, str) and re.fullmatch(r"[\w.]+:[\w.]+", self.episode)
        ):
            raise ValueError(
                f"job {self.key!r}: episode is 'package.module:function' or None, "
                f"got {self.episode!r}"
            )
        bad = {
            k: v
            for k, v in self.groups.items()
            if not isinstance(k, str) or not isinstance(v, _SCALARS)
        }
        if bad:
            raise ValueError(f"job {self.key!r}: group labels are str -> JSON scalar, got {bad!r}")
        object.__setattr__(self, "groups", dict(self.groups))

    def __hash__(self) -> int:
        return hash(self.key)


@dataclass(frozen=True)
class EpisodeSummary:
    """What an episode function (:attr:`EpisodeJob.episode`) returns: the
    :class:`~kairos_gym.rollout.Episode` attributes the runner records.

    Attributes:
        success: whether the episode succeeded.
        total_reward: the episode's return.
        length: steps taken.
        first_success: the 1-based step of the first success, or ``None``.
        ended_by: why the episode stopped (``"success"``, ``"max_steps"``, ...).
        instruction: the task instruction, if any.
        env_seconds: time spent inside the env's ``step``.
    """

    success: bool
    total_reward: float
    length: int
    first_success: int | None
    ended_by: str
    instruction: str | None
    env_seconds: float


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def spread(jobs: Sequence[EpisodeJob], count: int | None) -> list[EpisodeJob]:
    """``count`` jobs evenly spaced over ``jobs`` (all of them when ``count`` is ``None`` or
    not smaller), keeping their order.

    Over a list sorted by strata (suite, dimension, ...) this is a stratified sample: every
    stratum keeps its share, and the same ``count`` always picks the same jobs.
    """
    if count is None or count >= len(jobs):
        return list(jobs)
    if count < 1:
        raise ValueError(f"count must be >= 1 or None, got {count!r}")
    return [jobs[(i * len(jobs)) // count] for i in range(count)]


class EpisodeWorker:
    """Runs jobs one at a time, keeping the env of the last job (and the policy built for it).

    The policy is built with :func:`kairos_gym.policies.make_policy` whenever the env
    changes (a scripted expert binds to its env's task); jobs with an ``episode`` function
    run without one. This is the body of both the single-process runner and each Ray actor.

    Args:
        policy_spec: the policy spec (``expert``, ``random``, ``bc:DIR+noise=0.1``, ...).
        worker: this worker's index (recorded with each episode).
        execute: actions executed per chunk (``None``: whole chunks).
        videos_dir: write an mp4 (gif without ffmpeg) of every failed episode here.
        stop_on_success: end an episode at its first success (the LIBERO protocol).
    """

    def __init__(
        self,
        policy_spec: str,
        *,
        worker: int = 0,
        execute: int | None = None,
        videos_dir: str | None = None,
        stop_on_success: bool = True,
    ) -> None:
        # Ray actors start in a fresh process: choose headless rendering before any simulator.
        os.environ.setdefault("MUJOCO_GL", "egl")
        os.environ.setdefault("PYOPENGL_PLATFORM", "egl")
        self.policy_spec = policy_spec
        self.worker = worker
        self.execute = execute
        self.videos_dir = videos_dir
        self.stop_on_success = stop_on_success
        self._factory: EnvFactory | None = None
        self._env: Any = None
        self._policy: Any = None
        self.envs_built = 0

    def run(self, job: EpisodeJob) -> EpisodeRecord:
        """Run ``job``'s episode and return its record (building its env if it changed)."""
        from kairos_gym.rollout import run_episode

        started = time.perf_counter()
        if job.episode is not None:
            env = self._env_of(job.env)
            episode = _import_target(job.episode, "episode function")(env, self.policy_spec, job)
            return self._record(job, episode, started, None)
        env, policy = self._env_for(job.env)
        frames_key = self._video_key(env) if self.videos_dir else None
        episode = run_episode(
            env,
            policy,
            seed=job.seed,
            options=dict(job.options) if job.options is not None else None,
            max_steps=job.max_steps,
            execute=self.execute,
            stop_on_success=self.stop_on_success,
            keep_observations=[frames_key] if frames_key else False,
        )
        video = None
        if frames_key and not episode.success and episode.observations is not None:
            fps = float(getattr(env, "metadata", {}).get("render_fps") or 20)
            video = _write_video(self.videos_dir, job.key, episode.observations[frames_key], fps)
        return self._record(job, episode, started, video)

    def _record(
        self, job: EpisodeJob, episode: Any, started: float, video: str | None
    ) -> EpisodeRecord:
        return EpisodeRecord(
            key=job.key,
            success=episode.success,
            episode_return=episode.total_reward,
            length=episode.length,
            first_success=episode.first_success,
            ended_by=episode.ended_by,
            groups=dict(job.groups),
            seed=job.seed,
            options=dict(job.options) if job.options is not None else None,
            max_steps=job.max_steps,
            instruction=episode.instruction,
            policy=self.policy_spec,
            execute=self.execute,
            env=job.env.describe(),
            seconds=time.perf_counter() - started,
            env_seconds=episode.env_seconds,
            worker=self.worker,
            video=video,
        )

    def ping(self) -> int:
        """This worker's index (the driver waits for it to know the actor is up)."""
        return self.worker

    def close(self) -> None:
        """Close the env this worker holds."""
        if self._env is not None:
            self._env.close()
        self._env = self._policy = self._factory = None

    def _env_of(self, factory: EnvFactory) -> Any:
        if self._env is None or factory != self._factory:
            self.close()
            self._env = factory.make()
            self._factory = factory
            self.envs_built += 1
        return self._env

    def _env_for(self, factory: EnvFactory) -> tuple[Any, Any]:
        env = self._env_of(factory)
        if self._policy is None:
            from kairos_gym.policies import make_policy

            self._policy = make_policy(self.policy_spec, env)
        return env, self._policy

    @staticmethod
    def _video_key(env: Any) -> str | None:
        keys = [k for k in getattr(env.observation_space, "spaces", {}) if k.endswith("_image")]
        return "agentview_image" if "agentview_image" in keys else (keys[0] if keys else None)


def _write_video(directory: str, key: str, frames: Any, fps: float) -> str:
    """Write ``frames`` (uint8 ``[T, H, W, 3]``) to ``directory``; the path written."""
    import imageio.v2 as imageio

    os.makedirs(directory, exist_ok=True)
    # The key made into a file name; the crc keeps keys that differ only in symbols apart.
    stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", key).strip("_")[:120]
    stem = f"{stem}-{zlib.crc32(key.encode()):08x}"
    try:
        import imageio_ffmpeg  # noqa: F401

        path = os.path.join(directory, stem + ".mp4")
        imageio.mimwrite(path, list(frames), fps=fps, macro_block_size=16)
    except ImportError:
        path = os.path.join(directory, stem + ".gif")
        imageio.mimwrite(path, list(frames), duration=1000.0 / fps)
    return path


class _Scheduler:
    """Hands out jobs grouped by env: a worker keeps its env's group until it is empty, then
    takes the first group nobody works on, else a share of the largest one."""

    def __init__(self, jobs: Sequence[EpisodeJob]) -> None:
        self.groups: dict[str, deque[EpisodeJob]] = {}
        for job in jobs:
            self.groups.setdefault(job.env.identity, deque()).append(job)
        self.busy: dict[str, int] = {}
        self.current: dict[int, str | None] = {}

    def next_for(self, worker: int) -> EpisodeJob | None:
        mine = self.current.get(worker)
        if mine is None or not self.groups.get(mine):
            if mine is not None:
                self.busy[mine] -= 1
            open_groups = [g for g, q in self.groups.items() if q]
            if not open_groups:
                self.current[worker] = None
                return None
            idle = [g for g in open_groups if not self.busy.get(g)]
            mine = idle[0] if idle else max(open_groups, key=lambda g: len(self.groups[g]))
            self.busy[mine] = self.busy.get(mine, 0) + 1
            self.current[worker] = mine
        return self.groups[mine].popleft()


@dataclass
class BenchmarkRun:
    """What :func:`run_benchmark` did.

    Attributes:
        records: the record of every job asked for (earlier runs' and this run's), in job order.
        new: episodes run by this call; resumed: jobs already in the results file.
        seconds: wall-clock time of this call.
    """

    records: list[EpisodeRecord]
    new: int
    resumed: int
    seconds: float

    @property
    def success_rate(self) -> float:
        """Successes over all records (NaN when there are none)."""
        n = len(self.records)
        return sum(r.success for r in self.records) / n if n else math.nan


def run_benchmark(
    jobs: Sequence[EpisodeJob],
    policy_spec: str,
    results_path: str,
    *,
    workers: int = 1,
    address: str | None = None,
    progress: bool = True,
    videos_dir: str | None = None,
    execute: int | None = None,
    stop_on_success: bool = True,
) -> BenchmarkRun:
    """Run every job not yet in ``results_path`` with the policy ``policy_spec``.

    Args:
        jobs: the benchmark's episodes (unique keys).
        policy_spec: built per env with :func:`kairos_gym.policies.make_policy` (jobs with an
            ``episode`` function receive it as it is).
        results_path: the JSON-lines results file; appended to, created when missing.
        workers: ``1``: run here, in this process. More: that many Ray actors, on a local
            Ray cluster started for the run (``num_cpus=workers``) unless ``address`` is given
            or Ray is already initialised.
        address: connect to this existing Ray cluster (``"auto"``, ``"ray://host:10001"``);
            ``workers`` actors are started on it.
        progress: show a progress bar with the success rate so far (stderr).
        videos_dir: write a video of every failed episode here (a path every worker can
            write to: on a multi-machine cluster, a shared filesystem).
        execute: actions executed per chunk before the policy is asked again.
        stop_on_success: end episodes at their first success (the LIBERO protocol).

    Returns:
        A :class:`BenchmarkRun` with the record of every job.

    Raises:
        ValueError: duplicate job keys, ``workers < 1``, or a bad ``execute``.
        ResultsError: the results file is corrupt, being written by another run, or holds
            episodes of another policy or ``execute`` (start a new file for those).
    """
    started = time.perf_counter()
    if not _is_int(workers) or workers < 1:
        raise ValueError(f"workers must be an int >= 1, got {workers!r}")
    if execute is not None and (not _is_int(execute) or execute < 1):
        raise ValueError(f"execute must be an int >= 1 or None, got {execute!r}")
    keys: dict[str, EpisodeJob] = {}
    for job in jobs:
        if job.key in keys:
            raise ValueError(f"two jobs have the key {job.key!r}; keys must be unique")
        keys[job.key] = job

    with ResultsWriter(results_path) as writer:
        _check_same_run(writer.records, policy_spec, execute, results_path)
        done = {r.key: r for r in writer.records if r.key in keys}
        todo = [job for job in jobs if job.key not in done]
        bar = _progress(len(jobs), done.values(), progress)
        try:
            for record in _execute(
                todo, policy_spec, workers, address, videos_dir, execute, stop_on_success
            ):
                writer.append(record)
                done[record.key] = record
                bar.set_postfix(success=_rate_text(done.values()), refresh=False)
                bar.update(1)
        finally:
            bar.close()
    return BenchmarkRun(
        records=[done[job.key] for job in jobs if job.key in done],
        new=len(todo),
        resumed=len(jobs) - len(todo),
        seconds=time.perf_counter() - started,
    )


def _check_same_run(
    records: Sequence[EpisodeRecord], policy_spec: str, execute: int | None, path: str
) -> None:
    for record in records:
        if record.policy != policy_spec or record.execute != execute:
            raise ResultsError(
                f"{path} holds episodes of policy {record.policy!r} (execute={record.execute}); "
                f"this run is policy {policy_spec!r} (execute={execute}); resuming would mix "
                f"them: use another results file"
            )


def _rate_text(records: Any) -> str:
    records = list(records)
    return f"{sum(r.success for r in records) / len(records):.1%}" if records else "-"


def _progress(total: int, done: Any, enabled: bool) -> Any:
    from tqdm import tqdm

    done = list(done)
    bar = tqdm(
        total=total,
        initial=len(done),
        unit="ep",
        desc="bench",
        disable=not enabled,
        file=sys.stderr,
        dynamic_ncols=True,
    )
    bar.set_postfix(success=_rate_text(done), refresh=False)
    return bar


def _execute(
    todo: Sequence[EpisodeJob],
    policy_spec: str,
    workers: int,
    address: str | None,
    videos_dir: str | None,
    execute: int | None,
    stop_on_success: bool,
) -> Any:
    """Yield one record per job, as episodes finish (order depends on the workers)."""
    if not todo:
        return
    options = {"execute": execute, "videos_dir": videos_dir, "stop_on_success": stop_on_success}
    if workers == 1 and address is None:
        worker = EpisodeWorker(policy_spec, worker=0, **options)
        scheduler = _Scheduler(todo)
        try:
            while (job := scheduler.next_for(0)) is not None:
                yield worker.run(job)
        finally:
            worker.close()
        return
    yield from _execute_ray(todo, policy_spec, workers, address, options)


def _execute_ray(
    todo: Sequence[EpisodeJob],
    policy_spec: str,
    workers: int,
    address: str | None,
    options: dict[str, Any],
) -> Any:
    import ray

    started_here = not ray.is_initialized()
    if started_here:
        if address is None:
            # The simulators print a lot at import; the driver reports errors itself.
            ray.init(num_cpus=workers, include_dashboard=False, log_to_driver=False)
        else:
            ray.init(address=address, log_to_driver=False)
    actor_class = ray.remote(num_cpus=1)(EpisodeWorker)
    actors = [actor_class.remote(policy_spec, worker=i, **options) for i in range(workers)]
    scheduler = _Scheduler(todo)
    in_flight: dict[Any, int] = {}
    try:
        for i, actor in enumerate(actors):
            job = scheduler.next_for(i)
            if job is not None:
                in_flight[actor.run.remote(job)] = i
        while in_flight:
            ready, _ = ray.wait(list(in_flight), num_returns=1)
            i = in_flight.pop(ready[0])
            record = ray.get(ready[0])
            job = scheduler.next_for(i)
            if job is not None:
                in_flight[actors[i].run.remote(job)] = i
            yield record
    finally:
        # Killing an actor also ends the episode it is running (interrupt, or an error).
        for actor in actors:
            ray.kill(actor)
        if started_here:
            ray.shutdown()
