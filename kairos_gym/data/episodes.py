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

:class:`EpisodeReader` (and :func:`open_episodes`) reads these files, and also official
LIBERO demo files (``obs/agentview_rgb``, ``robot_states``, ``problem_info``...) and
robomimic files (``next_obs``, ``mask`` filter keys...).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import gymnasium as gym
import h5py
import numpy as np

from kairos_gym.data.spaces import EpisodeEnvSpec
from kairos_gym.errors import DatasetError

FORMAT = "kairos-gym-episodes"
FORMAT_VERSION = 1
# robomimic's EnvType.GYM_TYPE: robomimic rebuilds such envs with gym.make(env_name, **env_kwargs).
ROBOMIMIC_GYM_TYPE = 2

_DEMO_RE = re.compile(r"^demo_(\d+)$")
_REQUIRED = ("actions", "rewards", "dones", "obs")
_REQUIRED_KAIROS = _REQUIRED + ("success",)


def _demo_index(name: str) -> int:
    return int(_DEMO_RE.match(name).group(1))  # type: ignore[union-attr]


def _decode_attr(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.decode("utf-8")
    if isinstance(value, np.generic):
        return value.item()
    return value


def _json_attr(attrs: Mapping[str, Any], key: str) -> dict[str, Any] | None:
    if key not in attrs:
        return None
    value = _decode_attr(attrs[key])
    if isinstance(value, dict):
        return value
    try:
        parsed = json.loads(value)
    except (TypeError, json.JSONDecodeError):
        return None
    return parsed if isinstance(parsed, dict) else None


class Episode:
    """Lazy view of one episode (``data/demo_<i>``) of an open :class:`EpisodeReader`.

    Nothing is read until asked: ``ep.actions`` reads ``[T, A]``, ``ep.obs("agentview_image")``
    reads ``[T, H, W, 3]``, ``ep.obs("agentview_image", slice(10, 20))`` reads ten frames.
    Every read error is a :class:`DatasetError` naming the file, the episode and the key.
    """

    def __init__(self, reader: EpisodeReader, name: str) -> None:
        self.reader = reader
        self.name = name

    def __repr__(self) -> str:
        return f"Episode({self.reader.path!r}, {self.name!r}, num_samples={self.num_samples})"

    @property
    def _group(self) -> h5py.Group:
        return self.reader._demo_group(self.name)

    def _error(self, message: str) -> DatasetError:
        return DatasetError(f"{self.reader.path}: episode {self.name!r}: {message}")

    def read(self, key: str, index: Any = ()) -> np.ndarray:
        """Read dataset ``key`` (``"actions"``, ``"obs/state"``...) of this episode, optionally sliced."""
        try:
            ds = self._group[key]
        except (KeyError, OSError, RuntimeError, ValueError):
            raise self._error(f"has no readable {key!r} (keys: {self.keys()})") from None
        if not isinstance(ds, h5py.Dataset):
            raise self._error(f"{key!r} is a group, not a dataset")
        try:
            return ds[index]
        except (OSError, RuntimeError, ValueError, TypeError) as exc:
            raise self._error(f"cannot read {key!r} ({exc}); the file may be truncated or corrupt") from None

    def has(self, key: str) -> bool:
        """Whether dataset or group ``key`` exists in this episode."""
        try:
            return key in self._group
        except (OSError, RuntimeError):
            return False

    def keys(self) -> list[str]:
        """Top-level keys of the episode group."""
        try:
            return sorted(self._group.keys())
        except (OSError, RuntimeError):
            return []

    @property
    def attrs(self) -> dict[str, Any]:
        """Episode attributes (``num_samples``, ``seed``, ``instruction``...), decoded."""
        return {k: _decode_attr(v) for k, v in self._group.attrs.items()}

    @property
    def num_samples(self) -> int:
        """``T``: the number of actions (and of observations before them)."""
        return self.reader._num_samples[self.name]

    def __len__(self) -> int:
        return self.num_samples

    @property
    def seed(self) -> int | None:
        """The reset seed of the episode, when recorded."""
        seed = self._group.attrs.get("seed")
        return None if seed is None else int(seed)

    @property
    def instruction(self) -> str:
        """The episode's instruction (the file's instruction when the episode has none)."""
        value = self._group.attrs.get("instruction")
        return str(_decode_attr(value)) if value is not None else self.reader.instruction

    @property
    def obs_keys(self) -> list[str]:
        """Observation keys stored for this episode."""
        return sorted(self._group["obs"].keys()) if self.has("obs") else []

    def obs(self, key: str, index: Any = slice(None)) -> np.ndarray:
        """Observation ``key``: ``[T, ...]``, or the part selected by ``index``."""
        return self.read(f"obs/{key}", index)

    @property
    def has_final_obs(self) -> bool:
        """Whether the observation after the last action is stored (``final_obs`` or ``next_obs``)."""
        return self.has("final_obs") or self.has("next_obs")

    def final_obs(self, key: str) -> np.ndarray | None:
        """Observation ``key`` after the last action ``[...]`` (robomimic: ``next_obs[-1]``), or ``None``."""
        if self.has("final_obs"):
            return self.read(f"final_obs/{key}", 0)
        if self.has("next_obs"):
            return self.read(f"next_obs/{key}", -1)
        return None

    @property
    def num_frames(self) -> int:
        """Observations available: ``T + 1`` with a final observation, else ``T``."""
        return self.num_samples + (1 if self.has_final_obs else 0)

    def frames(self, key: str, start: int, stop: int, step: int = 1) -> np.ndarray:
        """Frames ``start:stop:step`` of the sequence ``obs[0..T-1], final_obs`` for ``key``."""
        T = self.num_samples
        indices = range(start, stop, step)
        if len(indices) == 0 or indices[0] < 0 or indices[-1] >= self.num_frames:
            raise IndexError(f"frames {start}:{stop}:{step} out of range for {self.num_frames} frames")
        in_obs = [i for i in indices if i < T]
        parts = []
        if in_obs:
            parts.append(self.obs(key, slice(in_obs[0], in_obs[-1] + 1, step)))
        if indices[-1] == T:
            parts.append(self.final_obs(key)[None])
        return parts[0] if len(parts) == 1 else np.concatenate(parts)

    @property
    def actions(self) -> np.ndarray:
        """``[T, A]`` actions (as stored; kairos-gym files use float32)."""
        return self.read("actions")

    @property
    def rewards(self) -> np.ndarray:
        """``[T]`` reward of each step."""
        return self.read("rewards")

    @property
    def dones(self) -> np.ndarray:
        """``[T]`` bool: the episode ended after this step."""
        return self.read("dones").astype(bool)

    @property
    def success(self) -> np.ndarray:
        """``[T]`` bool success after each step. Files without it (LIBERO, robomimic) use ``dones``."""
        if self.has("success"):
            return self.read("success").astype(bool)
        return self.dones

    @property
    def states(self) -> np.ndarray:
        """``[T, S]`` flat simulator state when each observation was seen."""
        return self.read("states")

    @property
    def final_state(self) -> np.ndarray | None:
        """``[S]`` simulator state after the last action, or ``None`` when not stored."""
        return self.read("final_states", 0) if self.has("final_states") else None

    def load(self) -> dict[str, Any]:
        """Read the whole episode: ``{"obs": {key: [T,...]}, "final_obs": {...} | None, "actions", ...}``."""
        out: dict[str, Any] = {"obs": {k: self.obs(k) for k in self.obs_keys}}
        out["final_obs"] = (
            {k: self.final_obs(k) for k in self.obs_keys} if self.has_final_obs else None
        )
        out["actions"] = self.actions
        out["rewards"] = self.rewards
        out["dones"] = self.dones
        out["success"] = self.success
        out["states"] = self.states if self.has("states") else None
        out["final_state"] = self.final_state
        return out


class EpisodeReader:
    """Read an episode file: kairos-gym's own, or official LIBERO / robomimic demo files.

    Opening checks the structure (every episode has ``actions``, ``rewards``, ``dones``
    and ``obs``, all ``T`` long); data is read lazily through :class:`Episode`.

    Args:
        path: the ``.hdf5`` file.

    Raises:
        DatasetError: missing, truncated or corrupt file, or an episode with missing keys
            or inconsistent lengths (the message names the file and the episode).

    Example::

        with open_episodes("lift.hdf5") as reader:
            ep = reader[0]
            frames = ep.obs("agentview_image")   # uint8 [T, H, W, 3]
            actions = ep.actions                 # float32 [T, A]
    """

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = os.fspath(path)
        if not os.path.exists(self.path):
            raise DatasetError(f"episode file {self.path} does not exist")
        try:
            self._file = h5py.File(self.path, "r")
        except OSError as exc:
            raise DatasetError(
                f"cannot open episode file {self.path}: {exc} (truncated, corrupt, or not HDF5)"
            ) from None
        try:
            self._index()
        except BaseException:
            self._file.close()
            raise

    def _index(self) -> None:
        try:
            data = self._file["data"]
        except (KeyError, OSError, RuntimeError):
            raise DatasetError(f"{self.path} has no 'data' group: not a robomimic/LIBERO/kairos-gym episode file") from None
        try:
            names = [n for n in data.keys() if _DEMO_RE.match(n)]
            self._attrs = {k: _decode_attr(v) for k, v in data.attrs.items()}
        except (OSError, RuntimeError) as exc:
            raise DatasetError(f"{self.path}: cannot list episodes ({exc}); the file is corrupt") from None
        self.episodes: list[str] = sorted(names, key=_demo_index)
        self.layout = self._detect_layout()
        required = _REQUIRED_KAIROS if self.layout == "kairos" else _REQUIRED
        self._num_samples: dict[str, int] = {}
        for name in self.episodes:
            self._num_samples[name] = self._check_episode(name, required)
        self._env_spec: EpisodeEnvSpec | None = None

    def _demo_group(self, name: str) -> h5py.Group:
        try:
            return self._file["data"][name]
        except (KeyError, OSError, RuntimeError, ValueError):
            raise DatasetError(f"{self.path}: episode {name!r} cannot be opened; the file is corrupt") from None

    def _check_episode(self, name: str, required: Sequence[str]) -> int:
        group = self._demo_group(name)
        try:
            keys = set(group.keys())
            missing = [k for k in required if k not in keys]
            if missing:
                raise DatasetError(
                    f"{self.path}: episode {name!r} lacks {missing} (has {sorted(keys)})"
                )
            T = int(group["actions"].shape[0])
            lengths = {k: group[k].shape[0] for k in required if k != "obs"}
            if "states" in keys:
                lengths["states"] = group["states"].shape[0]
            for key, ds in group["obs"].items():
                lengths[f"obs/{key}"] = ds.shape[0]
            declared = group.attrs.get("num_samples")
        except DatasetError:
            raise
        except (KeyError, OSError, RuntimeError, ValueError, AttributeError) as exc:
            raise DatasetError(f"{self.path}: episode {name!r} is corrupt ({exc})") from None
        wrong = {k: n for k, n in lengths.items() if n != T}
        if wrong:
            raise DatasetError(
                f"{self.path}: episode {name!r} has {T} actions but these lengths differ: {wrong}"
            )
        if declared is not None and int(declared) != T:
            raise DatasetError(
                f"{self.path}: episode {name!r} declares num_samples={int(declared)} but stores {T} actions"
            )
        return T

    def _detect_layout(self) -> str:
        if "env_spec" in self._attrs:
            return "kairos"
        if "problem_info" in self._attrs or "bddl_file_name" in self._attrs:
            return "libero"
        return "robomimic"

    def __enter__(self) -> EpisodeReader:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def close(self) -> None:
        """Close the HDF5 file (idempotent)."""
        if self._file.id.valid:
            self._file.close()

    def __len__(self) -> int:
        return len(self.episodes)

    def __iter__(self) -> Iterator[Episode]:
        return (Episode(self, name) for name in self.episodes)

    def __getitem__(self, key: int | str) -> Episode:
        """An episode by position (``reader[0]``) or by name (``reader["demo_3"]``)."""
        if isinstance(key, (int, np.integer)):
            if not -len(self.episodes) <= key < len(self.episodes):
                raise IndexError(f"episode index {key} out of range for {len(self.episodes)} episodes in {self.path}")
            return Episode(self, self.episodes[key])
        if key not in self._num_samples:
            raise KeyError(f"{self.path} has no episode {key!r} (it has {len(self.episodes)}: {self.episodes[:5]}...)")
        return Episode(self, key)

    def episode(self, key: int | str) -> Episode:
        """Same as ``reader[key]``."""
        return self[key]

    @property
    def attrs(self) -> dict[str, Any]:
        """Attributes of the ``data`` group, decoded."""
        return dict(self._attrs)

    @property
    def total(self) -> int:
        """Total number of steps over all episodes."""
        return sum(self._num_samples.values())

    @property
    def env_args(self) -> dict[str, Any]:
        """robomimic-style ``env_args`` (``env_name``, ``type``, ``env_kwargs``), ``{}`` if absent."""
        return _json_attr(self._attrs, "env_args") or {}

    @property
    def filter_keys(self) -> dict[str, list[str]]:
        """robomimic filter keys from the ``mask`` group: ``{"train": ["demo_0", ...], ...}``."""
        if "mask" not in self._file:
            return {}
        return {
            key: [_decode_attr(n) for n in ds[()]]
            for key, ds in self._file["mask"].items()
            if isinstance(ds, h5py.Dataset)
        }

    @property
    def instruction(self) -> str:
        """The task instruction: env spec, else LIBERO's ``problem_info``, else ``""``."""
        if self.layout == "kairos":
            return self.env_spec.instruction
        info = _json_attr(self._attrs, "problem_info") or {}
        return str(info.get("language_instruction", "")).strip()

    @property
    def env_spec(self) -> EpisodeEnvSpec:
        """The stored :class:`EpisodeEnvSpec`; for LIBERO / robomimic files one inferred from
        the data (spaces from dataset shapes and dtypes, images 0..255, actions [-1, 1],
        ``control_freq`` from ``env_args`` or 20 Hz)."""
        if self._env_spec is None:
            if self.layout == "kairos":
                try:
                    self._env_spec = EpisodeEnvSpec.from_json(self._attrs["env_spec"])
                except (ValueError, TypeError) as exc:
                    raise DatasetError(f"{self.path}: bad env_spec attribute ({exc})") from None
            else:
                self._env_spec = self._infer_env_spec()
        return self._env_spec

    def _infer_env_spec(self) -> EpisodeEnvSpec:
        if not self.episodes:
            raise DatasetError(f"{self.path} has no episodes to infer an environment from")
        group = self._demo_group(self.episodes[0])
        spaces = {}
        for key, ds in group["obs"].items():
            shape, dtype = tuple(ds.shape[1:]), ds.dtype
            if dtype == np.uint8:
                spaces[key] = gym.spaces.Box(0, 255, shape, np.uint8)
            else:
                spaces[key] = gym.spaces.Box(-np.inf, np.inf, shape, dtype)
        action_shape = tuple(group["actions"].shape[1:])
        args = self.env_args
        kwargs = args.get("env_kwargs", {}) if isinstance(args.get("env_kwargs"), dict) else {}
        cameras = tuple(k[: -len("_image")] for k in spaces if k.endswith("_image") and len(spaces[k].shape) == 3)
        image_size = tuple(spaces[f"{cameras[0]}_image"].shape[:2]) if cameras else None
        name = args.get("env_name") or args.get("problem_name") or "unknown"
        return EpisodeEnvSpec(
            env_id=f"{self.layout}:{name}",
            env_kwargs=kwargs,
            observation_space=gym.spaces.Dict(spaces),
            action_space=gym.spaces.Box(-1.0, 1.0, action_shape, np.float32),
            control_freq=float(kwargs.get("control_freq", 20.0)),
            instruction=self.instruction,
            cameras=cameras,
            image_size=image_size,
        )


def open_episodes(path: str | os.PathLike) -> EpisodeReader:
    """Open an episode file for reading (kairos-gym, LIBERO or robomimic layout)."""
    return EpisodeReader(path)


def _as_array(value: Any, dtype: Any, what: str) -> np.ndarray:
    arr = np.asarray(value)
    if dtype is not None:
        if np.dtype(dtype) == np.uint8 and arr.dtype != np.uint8:
            raise ValueError(f"{what} must be uint8, got dtype {arr.dtype}")
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
                    f"{self.path} is a {reader.layout} file, not a kairos-gym episode file; refusing to append to it"
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

    def __enter__(self) -> EpisodeWriter:
        return self

    def __exit__(self, *exc: Any) -> None:
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
        if self._steps is None:
            self.begin_episode()
        steps: list[tuple[Any, ...]] = self._steps  # type: ignore[assignment]
        steps.append(
            (
                {k: np.array(v, copy=True) for k, v in obs.items()},
                np.array(action, dtype=np.float32, copy=True),
                float(reward),
                bool(done),
                bool(success),
                None if state is None else np.array(state, dtype=np.float64, copy=True),
            )
        )

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
        name = self.write_episode(
            obs={k: np.stack([s[0][k] for s in steps]) for k in steps[0][0]},
            actions=np.stack([s[1] for s in steps]),
            rewards=np.array([s[2] for s in steps], dtype=np.float64),
            dones=np.array([s[3] for s in steps], dtype=bool),
            success=np.array([s[4] for s in steps], dtype=bool),
            states=None if any(s is None for s in states) else np.stack(states),
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
            raise ValueError(f"observation keys {sorted(obs)} do not match the env spec's {sorted(expected)}")
        actions = _as_array(actions, np.float32, "actions")
        if actions.ndim != 2 or actions.shape[1:] != self.env_spec.action_space.shape:
            raise ValueError(
                f"actions must be [T, {self.env_spec.action_dim}], got shape {actions.shape}"
            )
        T = actions.shape[0]
        if T == 0:
            raise ValueError("an episode needs at least one step, got 0 actions")
        out_obs = {}
        for key in expected:
            sub = space[key]
            arr = _as_array(obs[key], sub.dtype, f"obs[{key!r}]")
            if arr.shape != (T, *sub.shape):
                raise ValueError(f"obs[{key!r}] must have shape {(T, *sub.shape)}, got {arr.shape}")
            out_obs[key] = arr
        out_final = None
        if final_obs is not None:
            if sorted(final_obs) != sorted(expected):
                raise ValueError(f"final_obs keys {sorted(final_obs)} do not match the env spec's {sorted(expected)}")
            out_final = {}
            for key in expected:
                sub = space[key]
                arr = _as_array(final_obs[key], sub.dtype, f"final_obs[{key!r}]")
                if arr.shape == sub.shape:
                    arr = arr[None]
                if arr.shape != (1, *sub.shape):
                    raise ValueError(f"final_obs[{key!r}] must have shape {sub.shape}, got {arr.shape}")
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
            ValueError: wrong keys, shapes or dtypes (images must be uint8).
        """
        if self._steps:
            raise RuntimeError("an episode is in progress; end_episode() or discard_episode() first")
        obs_arr, actions, final_arr = self._validate(obs, actions, final_obs)
        T = actions.shape[0]
        columns = {
            "rewards": np.asarray(rewards, dtype=np.float64),
            "dones": np.asarray(dones).astype(bool),
            "success": np.asarray(success).astype(bool),
        }
        for key, arr in columns.items():
            if arr.shape != (T,):
                raise ValueError(f"{key} must have shape ({T},), got {arr.shape}")
        if states is not None:
            states = np.asarray(states, dtype=np.float64)
            if states.ndim != 2 or states.shape[0] != T:
                raise ValueError(f"states must be [T={T}, S], got shape {states.shape}")
        if final_state is not None:
            final_state = np.asarray(final_state, dtype=np.float64).reshape(1, -1)
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
            with h5py.File(self.path, "a") as f:
                data = f["data"]
                if name in data:
                    raise DatasetError(f"{self.path} already has an episode {name!r}; was it written by another process?")
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
