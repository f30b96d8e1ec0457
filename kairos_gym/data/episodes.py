"""Episode files: HDF5 in the robomimic / LIBERO layout, written atomically per episode.

Layout written by :class:`EpisodeWriter` (``T`` = number of actions in the episode)::

    data                      attrs: total (sum of num_samples), env_args (JSON, robomimic
                                     style: env_name, type=2 (gym), env_kwargs), env_spec
                                     (JSON, EpisodeEnvSpec), format, format_version
    data/demo_<i>             attrs: num_samples (T), seed, instruction, success (any step),
                                     plus whatever the collector adds (terminated, truncated...)
        obs/<key>             [T, ...]  observation seen BEFORE actions[t]
        final_obs/<key>       [1, ...]  observation after the last action
        actions               [T, A]    float32
        rewards               [T]       float64, reward returned by the step of actions[t]
        dones                 [T]       bool, the episode ended after actions[t]
        success               [T]       bool, info["success"] after actions[t]
        states                [T, S]    float64 simulator state when obs[t] was seen
        final_states          [1, S]    simulator state after the last action

``obs[t]`` is observed before ``actions[t]``; ``rewards[t]``, ``dones[t]`` and
``success[t]`` describe what ``actions[t]`` led to, i.e. the observation ``obs[t + 1]``
(``final_obs`` for the last one). Images are uint8, chunked one frame per chunk and
compressed (gzip by default: readable by every HDF5 tool; ``"lzf"`` decodes faster but
only h5py reads it).

Atomicity. Episodes are buffered in memory and each one is committed in one short
transaction with two phases: (1) open the file, write the episode into an *anonymous*
group (linked nowhere), flush; (2) link it as ``data/demo_<i>``, update ``total``, close,
fsync. Between commits the file is closed, so a crash (even ``kill -9``) while the
simulator runs - nearly all of the time - leaves every committed episode readable and the
file valid. A crash inside phase one leaves only unreachable bytes (a half-flushed group
that no link points to; a linked scratch group was tried first and a crash could leave it
unreadable). HDF5 has no journal, so a crash during phase two's few metadata writes could
still damage the ``data`` group; readers then raise
:class:`~kairos_gym.errors.DatasetError`. The
alternatives were rejected for cost: a temp copy + ``os.replace`` per episode rewrites the
whole file each time (quadratic I/O), and one file per episode breaks the single-file
layout every robomimic / LIBERO loader expects. The price of buffering is memory: one
episode of frames (``T * H * W * 3`` bytes per camera).

:class:`EpisodeReader` (and :func:`open_episodes`, from :mod:`kairos_gym.data.reader`,
re-exported here) reads these files, and also official LIBERO demo files
(``obs/agentview_rgb``, ``robot_states``, ``problem_info``...) and robomimic files
(``next_obs``, ``mask`` filter keys...).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import h5py
import numpy as np

from kairos_gym.data.reader import (
    FORMAT,
    FORMAT_VERSION,
    Episode,
    EpisodeReader,
    _demo_index,
    open_episodes,
    open_h5,
)
from kairos_gym.data.spaces import EpisodeEnvSpec
from kairos_gym.data.validation import check_finite
from kairos_gym.errors import DatasetError, ShapeError

if TYPE_CHECKING:
    from typing_extensions import Self

__all__ = ["Episode", "EpisodeReader", "EpisodeWriter", "open_episodes"]

# robomimic's EnvType.GYM_TYPE: robomimic rebuilds such envs with gym.make(env_name, **env_kwargs).
ROBOMIMIC_GYM_TYPE = 2


def _as_array(value: Any, dtype: Any, what: str) -> np.ndarray:
    """``value`` as an array of ``dtype`` (uint8 only from uint8: pixels are never cast).

    Raises:
        ShapeError: a ragged or non-numeric value, or a non-uint8 image.
    """
    try:
        arr = np.asarray(value)
    except (ValueError, TypeError) as exc:
        raise ShapeError(f"{what} is not an array ({exc})") from None
    if arr.dtype.kind not in "fiub":
        raise ShapeError(f"{what} must be numeric, got dtype {arr.dtype}")
    if dtype is not None:
        if np.dtype(dtype) == np.uint8 and arr.dtype != np.uint8:
            raise ShapeError(f"{what} must be uint8, got dtype {arr.dtype}")
        arr = arr.astype(dtype, copy=False)
    return arr


class EpisodeWriter:
    """Write episodes to an HDF5 file, one atomic commit per episode (see the module docstring).

    Step by step::

        with EpisodeWriter("lift.hdf5", EpisodeEnvSpec.from_env(env)) as writer:
            obs, info = env.reset(seed=0)
            for action in actions:
                state = env.unwrapped.get_sim_state()
                next_obs, reward, terminated, truncated, info = env.step(action)
                writer.add_step(obs, action, reward, terminated or truncated, info["success"], state)
                obs = next_obs
            writer.end_episode(obs, seed=0)          # commits demo_<i>

    or whole arrays at once with :meth:`write_episode`. An existing file is appended to
    (resume) after checking that its env spec equals ``env_spec``; an episode that was
    begun but not ended is never written.

    Args:
        path: the ``.hdf5`` file; its directory must exist.
        env_spec: the environment the episodes come from.
        compression: ``"gzip"`` (portable, default) or ``"lzf"`` (faster, h5py only) or ``None``.
        compression_opts: gzip level 0-9 (default 4).
        fsync: ``fsync`` the file after each commit (survives power loss, not only crashes).
        file_attrs: extra ``data`` attributes written when the file is created (e.g. the
            collection settings); ignored when appending to an existing file.

    Attributes:
        num_episodes / num_steps: episodes and steps in the file, committed ones included.
        seeds / successes: per committed episode, its reset seed and whether it succeeded.

    Raises:
        DatasetError: the existing file is not a kairos-gym episode file, is corrupt, or was
            written for a different environment (the message lists the differing fields).
    """

    def __init__(
        self,
        path: str | os.PathLike,
        env_spec: EpisodeEnvSpec,
        *,
        compression: str | None = "gzip",
        compression_opts: int | None = None,
        fsync: bool = True,
        file_attrs: Mapping[str, Any] | None = None,
    ) -> None:
        if not isinstance(env_spec, EpisodeEnvSpec):
            raise TypeError(f"env_spec must be an EpisodeEnvSpec, got {type(env_spec).__name__}")
        if compression not in ("gzip", "lzf", None):
            raise ValueError(f"compression must be 'gzip', 'lzf' or None, got {compression!r}")
        if compression == "gzip" and compression_opts is None:
            compression_opts = 4
        self.path = os.fspath(path)
        self.env_spec = env_spec
        self.compression = compression
        self.compression_opts = compression_opts if compression == "gzip" else None
        self.fsync = fsync
        self._file_attrs = dict(file_attrs or {})
        self._steps: list[tuple[Any, ...]] | None = None
        self._episode_meta: dict[str, Any] = {}
        parent = os.path.dirname(os.path.abspath(self.path))
        if not os.path.isdir(parent):
            raise FileNotFoundError(f"directory {parent} does not exist (for episode file {self.path})")
        if os.path.exists(self.path):
            self._open_existing()
        else:
            self._create()

    def _create(self) -> None:
        env_args = {
            "env_name": self.env_spec.env_id,
            "type": ROBOMIMIC_GYM_TYPE,
            "env_kwargs": self.env_spec.env_kwargs,
        }
        # Created under a temporary name and renamed, so the path never names a half-made file.
        directory, base = os.path.split(os.path.abspath(self.path))
        tmp = os.path.join(directory, f".{base}.{os.getpid()}.tmp")
        try:
            with h5py.File(tmp, "w") as f:
                data = f.create_group("data")
                data.attrs["total"] = 0
                data.attrs["env_args"] = json.dumps(env_args)
                data.attrs["env_spec"] = self.env_spec.to_json()
                data.attrs["format"] = FORMAT
                data.attrs["format_version"] = FORMAT_VERSION
                for key, value in self._file_attrs.items():
                    data.attrs[key] = value
            self._sync(tmp)
            os.replace(tmp, self.path)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise
        self._next_index = 0
        self.num_episodes = 0
        self.num_steps = 0
        self.seeds: list[int | None] = []
        self.successes: list[bool] = []

    def _open_existing(self) -> None:
        with EpisodeReader(self.path) as reader:
            if reader.layout != "kairos":
                raise DatasetError(
                    f"{self.path} is a {reader.layout} file, not a kairos-gym episode file; "
                    "refusing to append to it"
                )
            stored = reader.env_spec
            diffs = stored.differences(self.env_spec)
            if diffs:
                detail = "; ".join(
                    f"{d}: file has {getattr(stored, d)!r}, now {getattr(self.env_spec, d)!r}"
                    for d in diffs
                    if not d.endswith("_space")
                )
                raise DatasetError(
                    f"{self.path} was written for a different environment (fields {diffs} differ"
                    + (f": {detail}" if detail else "")
                    + "); write to a new file instead"
                )
            self._next_index = (_demo_index(reader.episodes[-1]) + 1) if reader.episodes else 0
            self.num_episodes = len(reader)
            self.num_steps = reader.total
            self.seeds = [reader[n].seed for n in reader.episodes]
            self.successes = [bool(reader[n].attrs.get("success", False)) for n in reader.episodes]

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Drop an episode that was begun but not ended (it is never written)."""
        self._steps = None

    @property
    def in_episode(self) -> bool:
        """Whether steps have been added since the last commit."""
        return self._steps is not None

    def begin_episode(self, *, seed: int | None = None, instruction: str | None = None) -> None:
        """Start buffering a new episode (optional: :meth:`add_step` starts one implicitly).

        Raises:
            RuntimeError: an episode is already in progress.
        """
        if self._steps is not None:
            raise RuntimeError("an episode is already in progress; end_episode() or discard_episode() first")
        self._steps = []
        self._episode_meta = {"seed": seed, "instruction": instruction}

    def add_step(
        self,
        obs: Mapping[str, np.ndarray],
        action: np.ndarray,
        reward: float,
        done: bool,
        success: bool,
        state: np.ndarray | None = None,
    ) -> None:
        """Buffer one step: ``obs`` seen before ``action``, then what the step returned.

        Args:
            obs: observation dict seen before the action (copied).
            action: ``[A]``.
            reward: reward returned by the step.
            done: the step ended the episode (terminated or truncated).
            success: ``info["success"]`` after the step.
            state: ``[S]`` simulator state when ``obs`` was seen (``env.get_sim_state()``).
        """
        # Converted before anything is buffered, so a bad step leaves the writer as it was.
        if not isinstance(obs, Mapping):
            raise ShapeError(f"obs must be a dict of arrays, got {type(obs).__name__}")
        reward_arr = _as_array(reward, np.float64, "reward")
        if reward_arr.size != 1:
            raise ShapeError(f"reward must be one number, got shape {reward_arr.shape}")
        step = (
            {k: np.array(_as_array(v, None, f"obs[{k!r}]"), copy=True) for k, v in obs.items()},
            np.array(_as_array(action, np.float32, "action"), copy=True),
            float(reward_arr.reshape(())),
            bool(done),
            bool(success),
            None if state is None else np.array(_as_array(state, np.float64, "state"), copy=True),
        )
        if self._steps is None:
            self.begin_episode()
        self._steps.append(step)  # type: ignore[union-attr]

    def discard_episode(self) -> None:
        """Forget the episode in progress without writing it."""
        self._steps = None
        self._episode_meta = {}

    def end_episode(
        self,
        final_obs: Mapping[str, np.ndarray] | None = None,
        *,
        final_state: np.ndarray | None = None,
        seed: int | None = None,
        instruction: str | None = None,
        attrs: Mapping[str, Any] | None = None,
    ) -> str:
        """Commit the buffered episode; returns its name (``"demo_<i>"``).

        Args:
            final_obs: observation after the last action (stored as ``final_obs/<key>`` ``[1, ...]``).
            final_state: simulator state after the last action ``[S]``.
            seed / instruction: override what :meth:`begin_episode` was given.
            attrs: extra per-episode attributes (JSON-able scalars or strings).

        Raises:
            RuntimeError: no steps were added.
        """
        if not self._steps:
            raise RuntimeError("end_episode() with no steps added; call add_step() first")
        steps, meta = self._steps, dict(self._episode_meta)
        self._steps, self._episode_meta = None, {}
        states = [s[5] for s in steps]
        try:
            obs_arrays = {k: np.stack([s[0][k] for s in steps]) for k in steps[0][0]}
            actions = np.stack([s[1] for s in steps])
            stacked_states = None if any(s is None for s in states) else np.stack(states)
        except (ValueError, KeyError) as exc:
            raise ShapeError(
                f"the {len(steps)} buffered steps do not stack into one episode ({exc}): every "
                "step needs the same observation keys and shapes"
            ) from None
        name = self.write_episode(
            obs=obs_arrays,
            actions=actions,
            rewards=np.array([s[2] for s in steps], dtype=np.float64),
            dones=np.array([s[3] for s in steps], dtype=bool),
            success=np.array([s[4] for s in steps], dtype=bool),
            states=stacked_states,
            final_obs=final_obs,
            final_state=final_state,
            seed=seed if seed is not None else meta.get("seed"),
            instruction=instruction if instruction is not None else meta.get("instruction"),
            attrs=attrs,
        )
        return name

    def _validate(
        self,
        obs: Mapping[str, np.ndarray],
        actions: np.ndarray,
        final_obs: Mapping[str, np.ndarray] | None,
    ) -> tuple[dict[str, np.ndarray], np.ndarray, dict[str, np.ndarray] | None]:
        space = self.env_spec.observation_space
        expected = list(space.spaces)
        if sorted(obs) != sorted(expected):
            raise ShapeError(f"observation keys {sorted(obs)} do not match the env spec's {sorted(expected)}")
        actions = _as_array(actions, np.float32, "actions")
        if actions.ndim != 2 or actions.shape[1:] != self.env_spec.action_space.shape:
            raise ShapeError(
                f"actions must be [T, {self.env_spec.action_dim}], got shape {actions.shape}"
            )
        T = actions.shape[0]
        if T == 0:
            raise ShapeError("an episode needs at least one step, got 0 actions")
        # The reader refuses files with NaN/inf in these: never write one.
        check_finite(actions, "actions", ShapeError)
        images = set(self.env_spec.image_keys)
        out_obs = {}
        for key in expected:
            sub = space[key]
            arr = _as_array(obs[key], sub.dtype, f"obs[{key!r}]")
            if arr.shape != (T, *sub.shape):
                raise ShapeError(f"obs[{key!r}] must have shape {(T, *sub.shape)}, got {arr.shape}")
            if key not in images:
                check_finite(arr, f"obs[{key!r}]", ShapeError)
            out_obs[key] = arr
        out_final = None
        if final_obs is not None:
            if sorted(final_obs) != sorted(expected):
                raise ShapeError(
                    f"final_obs keys {sorted(final_obs)} do not match the env spec's {sorted(expected)}"
                )
            out_final = {}
            for key in expected:
                sub = space[key]
                arr = _as_array(final_obs[key], sub.dtype, f"final_obs[{key!r}]")
                if arr.shape == sub.shape:
                    arr = arr[None]
                if arr.shape != (1, *sub.shape):
                    raise ShapeError(f"final_obs[{key!r}] must have shape {sub.shape}, got {arr.shape}")
                if key not in images:
                    check_finite(arr, f"final_obs[{key!r}]", ShapeError)
                out_final[key] = arr
        return out_obs, actions, out_final

    def write_episode(
        self,
        obs: Mapping[str, np.ndarray],
        actions: np.ndarray,
        rewards: np.ndarray,
        dones: np.ndarray,
        success: np.ndarray,
        states: np.ndarray | None = None,
        *,
        final_obs: Mapping[str, np.ndarray] | None = None,
        final_state: np.ndarray | None = None,
        seed: int | None = None,
        instruction: str | None = None,
        attrs: Mapping[str, Any] | None = None,
    ) -> str:
        """Commit one whole episode from arrays; returns its name (``"demo_<i>"``).

        Args:
            obs: ``{key: [T, ...]}`` for every key of the env spec's observation space.
            actions: ``[T, A]``; rewards ``[T]``; dones ``[T]``; success ``[T]``.
            states: ``[T, S]`` simulator states, or ``None``.
            final_obs: ``{key: [...]}`` observation after the last action, or ``None``.
            final_state: ``[S]`` simulator state after the last action, or ``None``.
            seed, instruction, attrs: stored as episode attributes (instruction defaults
                to the env spec's).

        Raises:
            ShapeError: wrong keys, shapes or dtypes (images must be uint8), or NaN/inf in
                actions, rewards or non-image observations (what the reader refuses).
        """
        if self._steps:
            raise RuntimeError("an episode is in progress; end_episode() or discard_episode() first")
        obs_arr, actions, final_arr = self._validate(obs, actions, final_obs)
        T = actions.shape[0]
        columns = {
            "rewards": _as_array(rewards, np.float64, "rewards"),
            "dones": _as_array(dones, None, "dones").astype(bool),
            "success": _as_array(success, None, "success").astype(bool),
        }
        for key, arr in columns.items():
            if arr.shape != (T,):
                raise ShapeError(f"{key} must have shape ({T},), got {arr.shape}")
        check_finite(columns["rewards"], "rewards", ShapeError)
        if states is not None:
            states = _as_array(states, np.float64, "states")
            if states.ndim != 2 or states.shape[0] != T:
                raise ShapeError(f"states must be [T={T}, S], got shape {states.shape}")
        if final_state is not None:
            final_state = _as_array(final_state, np.float64, "final_state").reshape(1, -1)
            if states is not None and final_state.shape[1] != states.shape[1]:
                raise ShapeError(
                    f"final_state has {final_state.shape[1]} values but states have "
                    f"{states.shape[1]} per step"
                )
        episode_attrs: dict[str, Any] = {
            "num_samples": T,
            "instruction": instruction if instruction is not None else self.env_spec.instruction,
            "success": bool(columns["success"].any()),
        }
        if seed is not None:
            episode_attrs["seed"] = int(seed)
        for key, value in (attrs or {}).items():
            episode_attrs[key] = value
        name = f"demo_{self._next_index}"
        self._commit(name, obs_arr, final_arr, actions, columns, states, final_state, episode_attrs)
        self._next_index += 1
        self.num_episodes += 1
        self.num_steps += T
        self.seeds.append(None if seed is None else int(seed))
        self.successes.append(episode_attrs["success"])
        return name

    def _dataset(self, group: h5py.Group, key: str, arr: np.ndarray) -> None:
        if arr.dtype == np.uint8 and arr.ndim == 4:
            chunks: tuple[int, ...] | bool = (1, *arr.shape[1:])  # one frame per chunk: clips read few frames
        else:
            chunks = True
        group.create_dataset(
            key,
            data=arr,
            chunks=chunks,
            compression=self.compression,
            compression_opts=self.compression_opts,
        )

    def _commit(
        self,
        name: str,
        obs: dict[str, np.ndarray],
        final_obs: dict[str, np.ndarray] | None,
        actions: np.ndarray,
        columns: dict[str, np.ndarray],
        states: np.ndarray | None,
        final_state: np.ndarray | None,
        attrs: dict[str, Any],
    ) -> None:
        try:
            with open_h5(self.path, "a") as f:
                data = f["data"]
                if name in data:
                    raise DatasetError(
                        f"{self.path} already has an episode {name!r}; is another process writing it?"
                    )
                group = f.create_group(None)  # anonymous: unreachable until linked below
                obs_group = group.create_group("obs")
                for key, arr in obs.items():
                    self._dataset(obs_group, key, arr)
                if final_obs is not None:
                    final_group = group.create_group("final_obs")
                    for key, arr in final_obs.items():
                        self._dataset(final_group, key, arr)
                self._dataset(group, "actions", actions)
                for key, arr in columns.items():
                    self._dataset(group, key, arr)
                if states is not None:
                    self._dataset(group, "states", states)
                if final_state is not None:
                    self._dataset(group, "final_states", final_state)
                for key, value in attrs.items():
                    group.attrs[key] = value
                # Phase one on disk before the episode becomes visible under data/.
                f.flush()
                data[name] = group
                data.attrs["total"] = int(data.attrs.get("total", 0)) + int(actions.shape[0])
        except OSError as exc:
            raise DatasetError(f"cannot write episode {name!r} to {self.path}: {exc}") from None
        self._sync(self.path)

    def _sync(self, path: str) -> None:
        if not self.fsync:
            return
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
