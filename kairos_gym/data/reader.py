"""Reading episode files: kairos-gym's own, and official LIBERO and robomimic demo files.

The layout is described in :mod:`kairos_gym.data.episodes`. :class:`EpisodeReader`
validates every episode once, when it opens a file (:mod:`kairos_gym.data.validation`:
structure, widths, dtypes, image shapes against the file's env spec, finite actions, rewards
and non-image observations; images are not read), and reads data lazily through
:class:`Episode`; every problem is a :class:`~kairos_gym.errors.DatasetError` that names
the file, the episode and the field. Nothing is read from another file unless asked:
external links, external storage and virtual datasets over other files are refused by
default. LIBERO files (``obs/agentview_rgb``, ``robot_states``, ``data``
attrs ``problem_info`` / ``bddl_file_name``) and robomimic files (``next_obs``, the ``mask``
group of filter keys) are recognised by their attributes; both lack a ``success`` column,
so their ``dones`` stand in for it.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import gymnasium as gym
import h5py
import numpy as np

from kairos_gym.data.spaces import EpisodeEnvSpec
from kairos_gym.data.validation import EpisodeLayout, check_episode_group, check_local
from kairos_gym.errors import DatasetError

if TYPE_CHECKING:
    from typing_extensions import Self

_DEMO_RE = re.compile(r"^demo_(\d+)$")
FORMAT = "kairos-gym-episodes"
FORMAT_VERSION = 1
"""The version of the kairos-gym episode layout this code writes and the newest it reads."""
# A commit holds the file's lock for tens of milliseconds; waiting this long for it to be
# released covers commits, not a process that keeps the file open (that is an error).
LOCK_WAIT_S = 10.0


def open_h5(path: str, mode: str, *, wait_s: float = LOCK_WAIT_S) -> h5py.File:
    """``h5py.File(path, mode)``, retrying while another process holds the file's lock.

    Raises:
        DatasetError: the lock is still held after ``wait_s`` seconds (the message says so).
        OSError: any other failure to open, for the caller to explain.
    """
    deadline = time.monotonic() + wait_s
    delay = 0.01
    while True:
        try:
            return h5py.File(path, mode)
        except BlockingIOError as exc:
            if time.monotonic() >= deadline:
                raise DatasetError(
                    f"{path} is locked by another process that has it open ({exc}); HDF5 allows "
                    "one writer and no readers while it writes: close the other process first"
                ) from None
            time.sleep(delay)
            delay = min(delay * 2, 0.2)
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

    Opening validates every episode once (every episode has ``actions``, ``rewards``,
    ``dones`` and ``obs``, all ``T`` long, with the widths, dtypes and image shapes of the
    file's env spec, or of its first episode for LIBERO / robomimic files, and finite
    actions, rewards and non-image observations); data is read lazily through
    :class:`Episode`.

    Args:
        path: the ``.hdf5`` file.
        allow_external_links: follow HDF5 external links, external raw storage and virtual
            datasets over other files (refused by default: a file read should read that file).
        check_values: also read actions, rewards and non-image observations to check they
            are finite (off only to reopen a file already validated).

    Raises:
        DatasetError: missing, truncated or corrupt file, a newer format version, a bad env
            spec, an episode with missing keys, inconsistent lengths, widths or dtypes, or
            NaN/inf values, or data stored in another file (the message names the file, the
            episode and the field).

    Example::

        with open_episodes("lift.hdf5") as reader:
            ep = reader[0]
            frames = ep.obs("agentview_image")   # uint8 [T, H, W, 3]
            actions = ep.actions                 # float32 [T, A]
    """

    def __init__(
        self,
        path: str | os.PathLike,
        *,
        allow_external_links: bool = False,
        check_values: bool = True,
    ) -> None:
        self.path = os.fspath(path)
        self.allow_external_links = bool(allow_external_links)
        self._check_values = bool(check_values)
        if not os.path.exists(self.path):
            raise DatasetError(f"episode file {self.path} does not exist")
        try:
            self._file = open_h5(self.path, "r")
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
        for top in ("data", "mask"):
            self._check_top_link(top)
        try:
            data = self._file["data"]
        except (KeyError, OSError, RuntimeError):
            raise DatasetError(
                f"{self.path} has no 'data' group: not a robomimic/LIBERO/kairos-gym episode file"
            ) from None
        if not isinstance(data, h5py.Group):
            raise DatasetError(f"{self.path}: 'data' is a dataset, not the group of episodes")
        try:
            names = [n for n in data if _DEMO_RE.match(n)]
            self._attrs = {k: _decode_attr(v) for k, v in data.attrs.items()}
        except (OSError, RuntimeError) as exc:
            raise DatasetError(f"{self.path}: cannot list episodes ({exc}); the file is corrupt") from None
        self.episodes: list[str] = sorted(names, key=_demo_index)
        self.layout = self._detect_layout()
        self._env_spec: EpisodeEnvSpec | None = None
        required = _REQUIRED_KAIROS if self.layout == "kairos" else _REQUIRED
        if self.layout == "kairos":
            self._check_format()
            episode_layout: EpisodeLayout | None = EpisodeLayout.from_spec(self.env_spec)
        else:
            episode_layout = None  # from the first episode, once its structure is checked
        self._num_samples: dict[str, int] = {}
        for name in self.episodes:
            T = self._check_episode(name, required)
            if episode_layout is None:
                episode_layout = self._layout_of(name)
            self._validate_episode(name, episode_layout, T)
            self._num_samples[name] = T

    def _check_top_link(self, name: str) -> None:
        """Refuse a top-level ``data`` / ``mask`` that is not stored in this file."""
        try:
            link = self._file.get(name, getlink=True)
        except (OSError, RuntimeError, ValueError) as exc:
            raise DatasetError(f"{self.path}: cannot read the link {name!r} ({exc}); the file is corrupt") from None
        if isinstance(link, h5py.ExternalLink) and not self.allow_external_links:
            raise DatasetError(
                f"{self.path}: '{name}' is an external link to {link.filename}:{link.path}; reading "
                "it would read another file (pass allow_external_links=True to follow it)"
            )
        if isinstance(link, h5py.SoftLink):
            raise DatasetError(f"{self.path}: '{name}' is a soft link to {link.path}, not a group of this file")

    def _check_format(self) -> None:
        """Refuse kairos-gym files written by a newer layout than this code reads."""
        version = self._attrs.get("format_version")
        if version is None:
            return  # files from before the attribute was written: version 1
        if isinstance(version, bool) or not isinstance(version, int) or version < 1:
            raise DatasetError(f"{self.path}: format_version must be a positive integer, got {version!r}")
        if version > FORMAT_VERSION:
            raise DatasetError(
                f"{self.path} is in episode format version {version}, newer than this kairos-gym "
                f"reads ({FORMAT_VERSION}); upgrade kairos-gym"
            )

    def _demo_group(self, name: str) -> h5py.Group:
        if not self._file.id.valid:
            raise DatasetError(
                f"{self.path} was closed; reopen it with open_episodes({self.path!r}) to read "
                f"episode {name!r}"
            )
        try:
            return self._file["data"][name]
        except (KeyError, OSError, RuntimeError, ValueError):
            raise DatasetError(f"{self.path}: episode {name!r} cannot be opened; the file is corrupt") from None

    def _check_episode(self, name: str, required: Sequence[str]) -> int:
        link = self._file["data"].get(name, getlink=True)
        if isinstance(link, h5py.ExternalLink) and not self.allow_external_links:
            raise DatasetError(
                f"{self.path}: episode {name!r} is an external link to {link.filename}:{link.path}; "
                "reading it would read another file (pass allow_external_links=True to follow it)"
            )
        if isinstance(link, h5py.SoftLink):
            raise DatasetError(
                f"{self.path}: episode {name!r} is a soft link to {link.path}; episode groups "
                "must be stored where they are named"
            )
        group = self._demo_group(name)
        if not isinstance(group, h5py.Group):
            raise DatasetError(f"{self.path}: episode {name!r} is a dataset, not a group")
        try:
            if not self.allow_external_links:
                check_local(group, f"{self.path}: episode {name!r}")
            keys = set(group.keys())
            missing = [k for k in required if k not in keys]
            if missing:
                raise DatasetError(
                    f"{self.path}: episode {name!r} lacks {missing} (has {sorted(keys)})"
                )
            if not isinstance(group["obs"], h5py.Group):
                raise DatasetError(f"{self.path}: episode {name!r}: 'obs' is a dataset, not a group")
            shapes = {k: group[k].shape for k in required if k != "obs"}
            if "states" in keys:
                shapes["states"] = group["states"].shape
            for key, ds in group["obs"].items():
                shapes[f"obs/{key}"] = ds.shape
            declared = group.attrs.get("num_samples")
        except DatasetError:
            raise
        except (KeyError, OSError, RuntimeError, ValueError, AttributeError) as exc:
            raise DatasetError(f"{self.path}: episode {name!r} is corrupt ({exc})") from None
        scalar = sorted(k for k, shape in shapes.items() if not shape)
        if scalar:
            raise DatasetError(f"{self.path}: episode {name!r}: {scalar} are scalars, not [T, ...] arrays")
        T = int(shapes["actions"][0])
        wrong = {k: shape[0] for k, shape in shapes.items() if shape[0] != T}
        if wrong:
            raise DatasetError(
                f"{self.path}: episode {name!r} has {T} actions but these lengths differ: {wrong}"
            )
        if declared is not None:
            try:
                matches = float(declared) == T
            except (TypeError, ValueError):
                matches = False
            if not matches:
                raise DatasetError(
                    f"{self.path}: episode {name!r} declares num_samples={declared!r} but stores "
                    f"{T} actions"
                )
        return T

    def _layout_of(self, name: str) -> EpisodeLayout:
        try:
            return EpisodeLayout.from_group(self._demo_group(name), name)
        except (KeyError, OSError, RuntimeError, ValueError, AttributeError) as exc:
            raise DatasetError(f"{self.path}: episode {name!r} is corrupt ({exc})") from None

    def _validate_episode(self, name: str, layout: EpisodeLayout, T: int) -> None:
        where = f"{self.path}: episode {name!r}"
        try:
            check_episode_group(self._demo_group(name), where, layout, T, values=self._check_values)
        except DatasetError:
            raise
        except (KeyError, OSError, RuntimeError, ValueError, TypeError, AttributeError) as exc:
            raise DatasetError(f"{where} is corrupt ({exc})") from None

    def _detect_layout(self) -> str:
        if "env_spec" in self._attrs:
            return "kairos"
        if "problem_info" in self._attrs or "bddl_file_name" in self._attrs:
            return "libero"
        return "robomimic"

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
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
                raise IndexError(
                    f"episode index {key} out of range for {len(self.episodes)} episodes in {self.path}"
                )
            return Episode(self, self.episodes[key])
        if key not in self._num_samples:
            raise KeyError(
                f"{self.path} has no episode {key!r} (it has {len(self.episodes)}: {self.episodes[:5]}...)"
            )
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
                except (ValueError, TypeError, KeyError, AttributeError, AssertionError,
                        OverflowError) as exc:
                    # AssertionError / OverflowError: Gymnasium's Box on absurd shapes or bounds.
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


def open_episodes(path: str | os.PathLike, *, allow_external_links: bool = False) -> EpisodeReader:
    """Open and validate an episode file for reading (kairos-gym, LIBERO or robomimic layout);
    see :class:`EpisodeReader`."""
    return EpisodeReader(path, allow_external_links=allow_external_links)
