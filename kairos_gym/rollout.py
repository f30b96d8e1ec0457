"""The episode loop: one policy in one env, in a real and an imagined env side by side, or
in every row of a vector env.

Every command and benchmark that rolls a policy goes through these three functions, so
action chunks, seeding and success bookkeeping mean the same thing everywhere:

* :func:`run_episode` - one episode of ``policy`` in a Gymnasium env (real or imagined);
  ``on_reset`` / ``on_step`` callbacks see every transition (``kairos-gym collect`` writes
  episodes through them).
* :func:`run_paired` - the paired protocol: the policy acts on the *real* observations and
  every action also goes to the imagined env, which starts from the real reset observation;
  per-step PSNR, rewards and success flags of both.
* :func:`run_batched` - ``episodes`` episodes over the rows of a Gymnasium 1.x ``VectorEnv``
  with one :meth:`~kairos_gym.policies.Policy.act_batch` call per step.

Policies may return one action ``[A]`` or a chunk ``[H, A]``; the loops wrap them in
:class:`~kairos_gym.policies.ChunkedPolicy` (``execute=k``: re-plan every ``k`` steps;
``None``: execute whole chunks). Example::

    import gymnasium as gym, kairos_gym
    from kairos_gym.policies import RandomPolicy
    from kairos_gym.rollout import run_episode

    env = gym.make("kairos_gym/Imagined-v0")
    policy = RandomPolicy(env.action_space, horizon=5)        # chunks [5, 7]
    episode = run_episode(env, policy, seed=0, max_steps=20, execute=3)
    episode.total_reward, episode.success, episode.actions.shape   # (..., ..., (20, 7))
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium.vector import AutoresetMode, VectorEnv

from kairos_gym.evaluation.metrics import psnr
from kairos_gym.policies.base import ChunkedPolicy, Policy

__all__ = [
    "Episode",
    "PairedEpisode",
    "PairedStep",
    "Transition",
    "run_batched",
    "run_episode",
    "run_paired",
]

@dataclass
class Transition:
    """One step, as :func:`run_episode` hands it to ``on_step``.

    The observations are the env's own arrays (not copied): copy what you keep beyond the
    callback if the env reuses its buffers.

    Attributes:
        step: 1 for the first step of the episode, then 2, 3, ...
        observation: what the policy saw before ``action``.
        action: float32 ``[A]``, the action executed (one of a chunk's).
        reward, terminated, truncated, info: what ``env.step(action)`` returned.
        next_observation: the observation ``env.step`` returned.
    """

    step: int
    observation: dict[str, np.ndarray]
    action: np.ndarray
    reward: float
    terminated: bool
    truncated: bool
    info: dict[str, Any]
    next_observation: dict[str, np.ndarray]


@dataclass
class Episode:
    """What one episode did, step by step.

    Attributes:
        seed: the env's reset seed (``None``: unseeded, e.g. a vector env's autoreset).
        instruction: the task instruction the policy was given (from the reset ``info``).
        actions: float32 ``[T, A]``, the executed actions.
        rewards: float64 ``[T]``.
        successes: bool ``[T]``, ``info["success"]`` after each step (``False`` if absent).
        terminated, truncated: the env's flags at the last step.
        ended_by: why the loop stopped: ``"terminated"``, ``"truncated"``, ``"max_steps"``,
            ``"success"`` (``stop_on_success``) or ``"callback"`` (``on_step`` returned true).
        final_observation: the observation after the last step.
        observations: ``{key: [T + 1, ...]}``, the reset observation then one per step, for
            the keys asked for (``keep_observations``); ``None`` otherwise.
        row: the vector env row that ran the episode (:func:`run_batched`), else ``None``.
        env_seconds: wall-clock time spent inside ``env.step`` (single-env loops).
    """

    seed: int | None
    instruction: str
    actions: np.ndarray
    rewards: np.ndarray
    successes: np.ndarray
    terminated: bool
    truncated: bool
    ended_by: str
    final_observation: dict[str, np.ndarray]
    observations: dict[str, np.ndarray] | None = None
    row: int | None = None
    env_seconds: float = 0.0

    @property
    def length(self) -> int:
        """Steps taken ``T``."""
        return len(self.rewards)

    @property
    def total_reward(self) -> float:
        """The return: the sum of the rewards."""
        return float(np.sum(self.rewards))

    @property
    def success(self) -> bool:
        """``info["success"]`` was true after some step."""
        return bool(np.any(self.successes))

    @property
    def first_success(self) -> int | None:
        """The step (1-based, like :attr:`Transition.step`) of the first success, or ``None``."""
        hits = np.flatnonzero(self.successes)
        return int(hits[0]) + 1 if hits.size else None


@dataclass
class PairedStep:
    """One step of a paired episode (:func:`run_paired`).

    Attributes:
        step: 1-based step.
        psnr: PSNR (dB) of the imagined frame against the real one.
        baseline_psnr: PSNR of the reset frame against the real one ("nothing moves").
        reward, imagined_reward: the real env's and the imagined env's reward.
        success, imagined_success: both envs' ``info["success"]``.
        imagined_success_prob: the imagined env's predicted success probability.
    """

    step: int
    psnr: float
    baseline_psnr: float
    reward: float
    imagined_reward: float
    success: bool
    imagined_success: bool
    imagined_success_prob: float


@dataclass
class PairedEpisode:
    """A policy's episode in the real env and the same actions in imagination.

    Attributes:
        seed: the real env's reset seed (the imagined env's noise seed too).
        steps: one :class:`PairedStep` per step.
        frames: ``(real, imagined)`` uint8 ``[H, W, 3]`` pairs, reset first, when kept.
        ended_by: which env flags ended the episode before ``max_steps``
            (``["real: terminated", "imagined: truncated", ...]``), or ``[]``.
        real_seconds, imagined_seconds: time spent stepping each env.
        real: the real env's :class:`Episode` (actions, rewards, successes).
    """

    seed: int | None
    steps: list[PairedStep] = field(default_factory=list)
    frames: list[tuple[np.ndarray, np.ndarray]] = field(default_factory=list)
    ended_by: list[str] = field(default_factory=list)
    real_seconds: float = 0.0
    imagined_seconds: float = 0.0
    real: Episode | None = None


def _executor(policy: Policy, execute: int | None, action_dim: int | None) -> ChunkedPolicy:
    """``policy`` as a :class:`ChunkedPolicy` executing ``execute`` actions per chunk.

    A policy that is already a :class:`ChunkedPolicy` is used as it is (its own ``execute``).

    Raises:
        ValueError: ``execute`` given for a :class:`ChunkedPolicy` with a different one.
    """
    if isinstance(policy, ChunkedPolicy):
        if execute is not None and execute != policy.execute:
            raise ValueError(
                f"execute={execute} but the policy is a ChunkedPolicy with "
                f"execute={policy.execute}; pass one or the other"
            )
        return policy
    return ChunkedPolicy(policy, execute, action_dim=action_dim)


def run_episode(
    env: gym.Env,
    policy: Policy,
    *,
    seed: int | None = None,
    options: dict[str, Any] | None = None,
    max_steps: int | None = None,
    execute: int | None = None,
    stop_on_success: bool = False,
    keep_observations: bool | Sequence[str] = False,
    on_reset: Callable[[dict[str, np.ndarray], dict[str, Any]], None] | None = None,
    on_step: Callable[[Transition], bool | None] | None = None,
) -> Episode:
    """Run one episode of ``policy`` in ``env``.

    Resets ``env`` (``seed``, ``options``), then the policy (``policy.reset(seed=seed,
    env=env)``: scripted experts bind to the env there), then steps until the env
    terminates or truncates, ``max_steps`` steps were taken, the first success
    (``stop_on_success``) or ``on_step`` returns true.

    Args:
        env: a Gymnasium env with a 1-D ``Box`` action space ``[A]``.
        policy: returns ``[A]`` or chunks ``[H, A]``; acts on every observation it is asked
            about, with the reset ``info["instruction"]`` (or ``env.unwrapped.instruction``).
        seed, options: passed to ``env.reset``.
        max_steps: stop after this many steps (``None``: only the env ends the episode).
        execute: actions executed per chunk before the policy is asked again (``None``: the
            whole chunk).
        stop_on_success: stop at the first step whose ``info["success"]`` is true.
        keep_observations: ``True`` keeps every observation entry, a sequence of keys keeps
            those (e.g. the camera frames), in :attr:`Episode.observations`.
        on_reset: called with the reset ``(observation, info)`` before the policy acts.
        on_step: called after every step with its :class:`Transition`; returning true ends
            the episode after this step.

    Returns:
        The :class:`Episode`.

    Raises:
        ValueError: ``max_steps`` not a positive int, an action space that is not a 1-D Box,
            or a policy output of the wrong shape.
        KeyError: ``keep_observations`` names a key the observation lacks.
    """
    _check_max_steps(max_steps)
    actor = _executor(policy, execute, _action_dim(env.action_space))
    obs, info = env.reset(seed=seed, options=options)
    actor.reset(seed=seed, env=env)
    instruction = _instruction(info, env)
    if on_reset is not None:
        on_reset(obs, info)
    keys = _kept_keys(keep_observations, obs)
    kept: dict[str, list[np.ndarray]] = {k: [np.array(obs[k], copy=True)] for k in keys}
    actions: list[np.ndarray] = []
    rewards: list[float] = []
    successes: list[bool] = []
    terminated = truncated = False
    ended_by = "max_steps"
    env_seconds = 0.0
    while max_steps is None or len(actions) < max_steps:
        action = actor.act(obs, instruction)
        started = time.perf_counter()
        next_obs, reward, terminated, truncated, info = env.step(action)
        env_seconds += time.perf_counter() - started
        terminated, truncated = bool(terminated), bool(truncated)
        success = bool(info.get("success", False))
        actions.append(action)
        rewards.append(float(reward))
        successes.append(success)
        for k in keys:
            kept[k].append(np.array(next_obs[k], copy=True))
        stop = False
        if on_step is not None:
            stop = bool(
                on_step(Transition(len(actions), obs, action, float(reward), terminated,
                                   truncated, info, next_obs))
            )
        obs = next_obs
        if terminated or truncated:
            ended_by = "terminated" if terminated else "truncated"
            break
        if stop_on_success and success:
            ended_by = "success"
            break
        if stop:
            ended_by = "callback"
            break
    return Episode(
        seed=seed,
        instruction=instruction,
        actions=np.stack(actions),
        rewards=np.asarray(rewards, dtype=np.float64),
        successes=np.asarray(successes, dtype=bool),
        terminated=terminated,
        truncated=truncated,
        ended_by=ended_by,
        final_observation=obs,
        observations={k: np.stack(v) for k, v in kept.items()} if keys else None,
        env_seconds=env_seconds,
    )


def run_paired(
    real: gym.Env,
    imagined: gym.Env,
    policy: Policy,
    *,
    seed: int | None,
    image_key: str,
    max_steps: int | None = None,
    execute: int | None = None,
    keep_frames: bool = False,
    on_step: Callable[[PairedStep], None] | None = None,
) -> PairedEpisode:
    """The paired protocol: ``policy`` acts in ``real``; every action also goes to ``imagined``.

    ``real`` is reset with ``seed``; ``imagined`` is reset with the same seed (its noise)
    and ``options={"observation": real_reset_observation}``, so both start from the same
    frame. The policy only ever sees the real observations (an imagined env that drifts
    cannot steer it). The episode stops when either env ends or after ``max_steps``.

    Args:
        real: the real environment (a kairos-gym env with the checkpoint's spec).
        imagined: an imagined env accepting ``reset(options={"observation": ...})`` and
            reporting ``info["success"]`` (and ``info["success_prob"]``).
        policy: reset with ``seed`` and the real env (which scripted experts read).
        seed: reset seed of the real env and noise seed of the imagined one.
        image_key: the camera compared by PSNR (``"agentview_image"``).
        max_steps: at most this many steps (``None``: until an env ends).
        execute: actions executed per chunk (see :func:`run_episode`).
        keep_frames: keep every ``(real, imagined)`` frame pair (for videos).
        on_step: called with each step's :class:`PairedStep` (progress printing).

    Raises:
        KeyError: ``image_key`` is not an observation key of both envs.
    """
    paired = PairedEpisode(seed=seed)
    first: list[np.ndarray] = []
    imagined_ended: list[str] = []

    def reset_imagined(obs: dict[str, np.ndarray], info: dict[str, Any]) -> None:
        imagined_obs, _ = imagined.reset(seed=seed, options={"observation": obs})
        real_frame, imagined_frame = _frame(obs, image_key, "real"), _frame(
            imagined_obs, image_key, "imagined")
        first.append(real_frame.copy())
        if keep_frames:
            paired.frames.append((real_frame.copy(), imagined_frame.copy()))

    def step_imagined(t: Transition) -> bool:
        started = time.perf_counter()
        imagined_obs, imagined_reward, term, trunc, imagined_info = imagined.step(t.action)
        paired.imagined_seconds += time.perf_counter() - started
        real_frame, imagined_frame = t.next_observation[image_key], imagined_obs[image_key]
        imagined_success = bool(imagined_info.get("success", False))
        record = PairedStep(
            step=t.step,
            psnr=float(psnr(imagined_frame, real_frame)),
            baseline_psnr=float(psnr(first[0], real_frame)),
            reward=t.reward,
            imagined_reward=float(imagined_reward),
            success=bool(t.info.get("success", False)),
            imagined_success=imagined_success,
            imagined_success_prob=float(imagined_info.get("success_prob", imagined_success)),
        )
        paired.steps.append(record)
        if keep_frames:
            paired.frames.append((np.array(real_frame), np.array(imagined_frame)))
        if on_step is not None:
            on_step(record)
        imagined_ended[:] = [name for name, flag in (("imagined: terminated", term),
                                                     ("imagined: truncated", trunc)) if flag]
        return bool(imagined_ended)

    episode = run_episode(real, policy, seed=seed, max_steps=max_steps, execute=execute,
                          on_reset=reset_imagined, on_step=step_imagined)
    paired.real = episode
    paired.real_seconds = episode.env_seconds
    ended = [name for name, flag in (("real: terminated", episode.terminated),
                                     ("real: truncated", episode.truncated)) if flag]
    ended += imagined_ended
    # Ending exactly at max_steps is the limit doing its job, not an env cutting it short.
    if ended and (max_steps is None or episode.length < max_steps):
        paired.ended_by = ended
    return paired


def run_batched(
    envs: VectorEnv,
    policy: Policy,
    *,
    episodes: int,
    seed: int | None = None,
    max_steps: int | None = None,
    execute: int | None = None,
) -> list[Episode]:
    """Run ``episodes`` episodes of ``policy`` over the rows of a vector env.

    Each step is one ``policy.act_batch`` call (through :class:`ChunkedPolicy`, so rows keep
    their own chunk queues) and one ``envs.step``. Episodes are numbered in the order they
    start (row order at the first reset, then as rows free up, lower rows first); exactly
    ``episodes`` are started, and each runs to its end, so short episodes are not favoured.
    Rows with no episode left keep stepping (the env steps every row) with a neutral action.

    Autoreset follows ``envs.metadata["autoreset_mode"]`` (Gymnasium's default
    ``NEXT_STEP`` when absent):

    * ``NEXT_STEP``: a finished row is reset by the next ``step``, whose action for it is
      ignored; its next episode starts from that reset (unseeded: ``Episode.seed`` is
      ``None``).
    * ``SAME_STEP``: the row is reset within the step; the last step's success comes from
      ``infos["final_info"]`` and the final observation from ``infos["final_obs"]``.
    * ``DISABLED``: the loop resets finished rows itself with
      ``reset(seed=..., options={"reset_mask": ...})``, episode ``k`` with ``seed + k``.

    A row cut by ``max_steps`` is reset the same way (``reset_mask``; seed ``seed + k``), which
    ``gymnasium`` 1.x ``SyncVectorEnv`` / ``AsyncVectorEnv`` and ``ImaginedVectorEnv`` accept.

    Args:
        envs: a Gymnasium 1.x ``VectorEnv`` with a ``Box`` single action space ``[A]`` (e.g.
            ``kairos_gym.make_vec(num_envs=4)`` or ``gymnasium.make_vec(id, 2,
            vectorization_mode="sync")``).
        policy: its :meth:`~kairos_gym.policies.Policy.act_batch` gets ``{key: [M, ...]}`` for
            the rows that need a new action or chunk; ``reset(seed=seed, env=None)`` is called
            once, ``reset_rows(rows)`` whenever rows start new episodes.
        episodes: number of episodes to return.
        seed: ``envs.reset(seed=seed)`` (row ``i`` gets ``seed + i``) and the policy's seed.
        max_steps: cut episodes after this many steps.
        execute: actions executed per chunk (see :func:`run_episode`).

    Returns:
        ``episodes`` :class:`Episode` objects in start order, each with its ``row``.

    Raises:
        ValueError: ``episodes < 1``, a bad ``max_steps``, an unknown autoreset mode, or an
            action space that is not a 1-D Box.
    """
    if not isinstance(episodes, (int, np.integer)) or isinstance(episodes, bool) or episodes < 1:
        raise ValueError(f"episodes must be a positive int, got {episodes!r}")
    _check_max_steps(max_steps)
    mode = _autoreset_mode(envs)
    n = envs.num_envs
    space = envs.single_action_space
    actor = _executor(policy, execute, _action_dim(space))
    filler = _neutral_action(space)

    obs, infos = envs.reset(seed=seed)
    actor.reset(seed=seed, env=None)
    instructions = [""] * n
    _update_instructions(instructions, infos, range(n))
    running: list[_EpisodeBuilder | None] = [None] * n
    done: dict[int, Episode] = {}
    started = 0
    for i in range(min(n, episodes)):
        running[i] = _EpisodeBuilder(i, None if seed is None else seed + i, i, instructions[i])
        started += 1
    pending = np.zeros(n, dtype=bool)  # NEXT_STEP rows the next step resets

    while len(done) < episodes:
        active = np.array([b is not None for b in running]) & ~pending
        actions = actor.act_batch(obs, instructions, active=active)
        actions[~active] = filler
        obs, rewards, terminated, truncated, infos = envs.step(actions)
        _update_instructions(instructions, infos, range(n))
        fresh: list[int] = []  # rows whose new episode starts from this step's observation
        to_reset: list[int] = []  # rows the loop resets itself
        for i in range(n):
            if pending[i]:
                pending[i] = False
                fresh.append(i)
                continue
            ended = bool(terminated[i] or truncated[i])
            builder = running[i]
            if builder is None:
                if ended and mode == AutoresetMode.DISABLED:
                    to_reset.append(i)  # an idle row must still be steppable
                continue
            same_step_end = ended and mode == AutoresetMode.SAME_STEP
            final_info = _final(infos, "final_info", i) if same_step_end else None
            success = (
                final_info.get("success", False)
                if final_info is not None
                else _row_value(infos, "success", i, False)
            )
            builder.add(actions[i], float(rewards[i]), bool(success))
            cut = max_steps is not None and builder.length >= max_steps
            if not (ended or cut):
                continue
            if same_step_end:
                last = _final(infos, "final_obs", i)
            else:
                last = {k: v[i] for k, v in obs.items()}
            done[builder.index] = builder.finish(bool(terminated[i]), bool(truncated[i]), last)
            running[i] = None
            if (cut and not ended) or mode == AutoresetMode.DISABLED:
                to_reset.append(i)
            elif mode == AutoresetMode.NEXT_STEP:
                pending[i] = True
            else:  # SAME_STEP: obs[i] is already the next episode's reset observation
                fresh.append(i)
        new_rows = sorted(fresh + to_reset)
        # Number the new episodes first: a row the loop resets itself is seeded with seed + k.
        indices: dict[int, int] = {}
        for i in new_rows:
            if started < episodes:
                indices[i] = started
                started += 1
        seeds: list[int | None] = [None] * n
        if to_reset:
            mask = np.zeros(n, dtype=bool)
            mask[to_reset] = True
            for i in to_reset:
                if seed is not None and i in indices:
                    seeds[i] = seed + indices[i]
            reset_obs, reset_infos = envs.reset(seed=seeds, options={"reset_mask": mask})
            for k in obs:
                obs[k][mask] = reset_obs[k][mask]
            _update_instructions(instructions, reset_infos, to_reset)
            pending[mask] = False
        if new_rows:
            actor.reset_rows(new_rows)
        for i, k in indices.items():
            running[i] = _EpisodeBuilder(k, seeds[i], i, instructions[i])
    return [done[k] for k in range(episodes)]


class _EpisodeBuilder:
    """One row's episode in progress (:func:`run_batched`)."""

    def __init__(self, index: int, seed: int | None, row: int, instruction: str) -> None:
        self.index, self.seed, self.row, self.instruction = index, seed, row, instruction
        self.actions: list[np.ndarray] = []
        self.rewards: list[float] = []
        self.successes: list[bool] = []

    @property
    def length(self) -> int:
        return len(self.rewards)

    def add(self, action: np.ndarray, reward: float, success: bool) -> None:
        self.actions.append(np.array(action, dtype=np.float32, copy=True))
        self.rewards.append(reward)
        self.successes.append(success)

    def finish(self, terminated: bool, truncated: bool, final_obs: dict[str, Any]) -> Episode:
        """The finished :class:`Episode`; ending neither terminated nor truncated means cut."""
        return Episode(
            seed=self.seed,
            instruction=self.instruction,
            actions=np.stack(self.actions),
            rewards=np.asarray(self.rewards, dtype=np.float64),
            successes=np.asarray(self.successes, dtype=bool),
            terminated=terminated,
            truncated=truncated,
            ended_by="terminated" if terminated else "truncated" if truncated else "max_steps",
            final_observation={k: np.array(v, copy=True) for k, v in final_obs.items()},
            row=self.row,
        )


def _check_max_steps(max_steps: int | None) -> None:
    if max_steps is not None and (
        not isinstance(max_steps, (int, np.integer)) or isinstance(max_steps, bool) or max_steps < 1
    ):
        raise ValueError(f"max_steps must be a positive int or None, got {max_steps!r}")


def _action_dim(space: gym.Space) -> int:
    if not isinstance(space, gym.spaces.Box) or len(space.shape) != 1:
        raise ValueError(f"the episode loops need a 1-D Box action space [A], got {space!r}")
    return int(space.shape[0])


def _neutral_action(space: gym.spaces.Box) -> np.ndarray:
    """A valid action for rows whose action is not used: the middle of the bounds (or 0)."""
    low = np.where(np.isfinite(space.low), space.low, 0.0)
    high = np.where(np.isfinite(space.high), space.high, 0.0)
    middle = np.where(np.isfinite(space.low) & np.isfinite(space.high), (low + high) / 2, 0.0)
    return np.clip(middle, space.low, space.high).astype(np.float32)


def _instruction(info: dict[str, Any], env: gym.Env) -> str:
    text = info.get("instruction")
    if text is None:
        text = getattr(env.unwrapped, "instruction", "")
    return str(text or "")


def _kept_keys(keep: bool | Sequence[str], obs: dict[str, np.ndarray]) -> list[str]:
    if keep is True:
        return list(obs)
    if keep is False:
        return []
    keys = [keep] if isinstance(keep, str) else list(keep)
    missing = [k for k in keys if k not in obs]
    if missing:
        raise KeyError(f"keep_observations names {missing}; the observation keys are {list(obs)}")
    return keys


def _frame(obs: dict[str, np.ndarray], key: str, which: str) -> np.ndarray:
    if key not in obs:
        raise KeyError(f"image_key {key!r} is not in the {which} observation keys {list(obs)}")
    return np.asarray(obs[key])


def _autoreset_mode(envs: VectorEnv) -> AutoresetMode:
    mode = envs.metadata.get("autoreset_mode", AutoresetMode.NEXT_STEP)
    try:
        mode = AutoresetMode(mode)
    except ValueError:
        raise ValueError(
            f"run_batched handles the autoreset modes {[m.value for m in AutoresetMode]}, "
            f"got metadata['autoreset_mode']={mode!r}"
        ) from None
    return mode


def _row_value(infos: dict[str, Any], key: str, row: int, default: Any) -> Any:
    """``infos[key][row]`` from a vector env's dict-of-arrays infos (``_key`` masks rows)."""
    if key not in infos:
        return default
    mask = infos.get(f"_{key}")
    if mask is not None and not mask[row]:
        return default
    return infos[key][row]


def _update_instructions(texts: list[str], infos: dict[str, Any], rows: Any) -> None:
    for i in rows:
        value = _row_value(infos, "instruction", i, None)
        if value is not None:
            texts[i] = str(value)


def _final(infos: dict[str, Any], key: str, row: int) -> dict[str, Any]:
    """Row ``row`` of ``infos["final_info"]`` / ``infos["final_obs"]`` (``SAME_STEP`` mode).

    Gymnasium stores them either as a dict of arrays (``{name: [N, ...], _name: [N]}``) or as
    an object array of per-row dicts (``final_obs`` of dict observations); both are read.
    """
    final = infos.get(key)
    if isinstance(final, dict):
        return {
            name: _row_value(final, name, row, None)
            for name in final
            if not name.startswith("_") and _row_value(final, name, row, None) is not None
        }
    if isinstance(final, np.ndarray) and final.dtype == object and isinstance(final[row], dict):
        return final[row]
    raise TypeError(
        f"a SAME_STEP vector env must report infos[{key!r}] for its finished row {row}; "
        f"got infos keys {sorted(infos)}"
    )
