"""What an episode must be to be read or written: its layout, widths, dtypes and values.

One set of checks serves both ends of an episode file, so the writer never commits what
the reader would refuse:

- :class:`EpisodeLayout` is what every episode of one file must look like: per observation
  key its per-frame shape and dtype, and the shape of one action. A kairos-gym file takes it
  from its env spec (:meth:`EpisodeLayout.from_spec`); a LIBERO / robomimic file, which has
  none, from its first episode (:meth:`EpisodeLayout.from_group`), so one episode with
  5-wide actions among 7-wide ones is refused either way.
- :func:`check_episode_group` checks one stored episode against a layout (metadata, plus
  the values of actions, rewards and non-image observations when asked); the reader runs it
  on every episode when it opens a file.
- :func:`check_finite` is the value check both ends share.
- :func:`check_local` refuses HDF5 objects that make a read leave the file (external links,
  external raw storage, virtual datasets over other files, soft links to groups).

Every failure is a :class:`~kairos_gym.errors.DatasetError` (reading) or
:class:`~kairos_gym.errors.ShapeError` (writing) naming the file, the episode and the field.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import h5py
import numpy as np

from kairos_gym.data.keys import CAMERA_SUFFIXES
from kairos_gym.errors import DatasetError

if TYPE_CHECKING:
    from kairos_gym.data.spaces import EpisodeEnvSpec

__all__ = ["EpisodeLayout", "check_episode_group", "check_finite", "check_local"]

_NUMERIC = "fiub"


@dataclasses.dataclass(frozen=True)
class EpisodeLayout:
    """What every episode of one file must look like.

    Attributes:
        obs: ``{key: (per-frame shape, dtype)}``; the dtype is exact for files with an env
            spec and ``None`` (any numeric dtype) for files without one.
        image_keys: the camera keys among ``obs`` (always uint8).
        action_shape: the shape of one action (``(A,)``).
        source: where the layout comes from, for messages (``"the env spec"``, ``"demo_0"``).
    """

    obs: Mapping[str, tuple[tuple[int, ...], np.dtype | None]]
    image_keys: frozenset[str]
    action_shape: tuple[int, ...]
    source: str

    @classmethod
    def from_spec(cls, spec: EpisodeEnvSpec) -> EpisodeLayout:
        """The layout of a kairos-gym file: its env spec's spaces, exactly."""
        space = spec.observation_space
        return cls(
            obs={k: (tuple(s.shape), np.dtype(s.dtype)) for k, s in space.spaces.items()},
            image_keys=frozenset(spec.image_keys),
            action_shape=tuple(spec.action_space.shape),
            source="the file's env spec",
        )

    @classmethod
    def from_group(cls, group: h5py.Group, name: str) -> EpisodeLayout:
        """The layout of a file without an env spec, read from its episode ``name``.

        Raises:
            KeyError / AttributeError: the episode lacks ``obs`` or ``actions`` (the reader
                reports missing keys itself).
        """
        obs = {}
        images = set()
        for key, ds in group["obs"].items():
            shape = tuple(ds.shape[1:])
            obs[key] = (shape, None)
            if key.endswith(CAMERA_SUFFIXES) and len(shape) == 3 and shape[-1] == 3:
                images.add(key)
        return cls(
            obs=obs,
            image_keys=frozenset(images),
            action_shape=tuple(group["actions"].shape[1:]),
            source=f"episode {name!r} (the file has no env spec)",
        )

    @property
    def state_keys(self) -> tuple[str, ...]:
        """Observation keys that are not camera images (their values are checked)."""
        return tuple(k for k in self.obs if k not in self.image_keys)


def check_finite(values: np.ndarray, what: str, error: type[Exception] = DatasetError) -> None:
    """Raise ``error`` naming ``what`` and the first bad index when ``values`` has NaN or inf.

    Integer and bool arrays always pass.
    """
    arr = np.asarray(values)
    if arr.dtype.kind not in "fc" or arr.size == 0:
        return
    bad = ~np.isfinite(arr)
    if bad.any():
        first = np.unravel_index(int(np.flatnonzero(bad)[0]), arr.shape)
        index = tuple(int(i) for i in first)
        raise error(
            f"{what} contains {int(bad.sum())} NaN/inf value(s), the first at index "
            f"{index[0] if len(index) == 1 else index}: {arr[first]!r}"
        )


def check_local(group: h5py.Group, where: str) -> None:
    """Refuse anything under ``group`` that would make a read leave this file.

    External links, datasets with external raw storage and virtual datasets mapping other
    files are refused; soft links are allowed only to datasets (a soft link to a group could
    loop). Only metadata is read.

    Raises:
        DatasetError: naming the object and where it points.
    """
    for name in group:
        link = group.get(name, getlink=True)
        path = f"{where}/{name}"
        if isinstance(link, h5py.ExternalLink):
            raise DatasetError(
                f"{path} is an external link to {link.filename}:{link.path}; reading it would "
                "read another file (pass allow_external_links=True to follow it)"
            )
        obj = group[name]
        if isinstance(link, h5py.SoftLink) and not isinstance(obj, h5py.Dataset):
            raise DatasetError(
                f"{path} is a soft link to the group {link.path}; episode groups must be "
                "stored where they are named"
            )
        if isinstance(obj, h5py.Group):
            check_local(obj, path)
        elif isinstance(obj, h5py.Dataset):
            if obj.external:
                files = sorted({str(entry[0]) for entry in obj.external})
                raise DatasetError(
                    f"{path} stores its data in external file(s) {files} (pass "
                    "allow_external_links=True to read them)"
                )
            if obj.is_virtual:
                sources = sorted({m.file_name for m in obj.virtual_sources()} - {"."})
                if sources:
                    raise DatasetError(
                        f"{path} is a virtual dataset over other file(s) {sources} (pass "
                        "allow_external_links=True to read them)"
                    )


def _describe(shape: tuple[int, ...]) -> str:
    return "[" + ", ".join(str(s) for s in shape) + "]"


def _check_dataset(
    ds: Any,
    what: str,
    shape: tuple[int, ...],
    dtype: np.dtype | None,
    kinds: str,
    source: str,
) -> None:
    if not isinstance(ds, h5py.Dataset):
        raise DatasetError(f"{what} is a group, not a dataset")
    if tuple(ds.shape) != shape:
        raise DatasetError(f"{what} has shape {tuple(ds.shape)}; {source} needs {_describe(shape)}")
    if dtype is not None and ds.dtype != dtype:
        raise DatasetError(f"{what} is {ds.dtype}; {source} needs {dtype}")
    if ds.dtype.kind not in kinds:
        raise DatasetError(f"{what} has the non-numeric dtype {ds.dtype}")


def check_episode_group(
    group: h5py.Group,
    where: str,
    layout: EpisodeLayout,
    T: int,
    *,
    values: bool = True,
) -> None:
    """Check one stored episode of ``T`` steps against ``layout``.

    Checks the observation keys (exactly the layout's), every dataset's shape and dtype
    (camera images uint8, everything numeric), the columns' widths (``actions [T, *A]``,
    ``rewards``/``dones``/``success`` ``[T]``, ``states [T, S]``, ``final_obs`` ``[1, ...]``,
    ``final_states [1, S]``) and, with ``values``, that actions, rewards and non-image
    observations are finite (read in full: small next to the images, which are not read).

    Args:
        group: the episode group (lengths already checked equal to ``T``).
        where: ``"<file>: episode 'demo_3'"``, the start of every message.
        layout: what the file's episodes must look like.
        T: the number of steps.
        values: also read and check values.

    Raises:
        DatasetError: the first problem found, naming ``where`` and the field.
    """
    source = layout.source
    _check_dataset(group["actions"], f"{where}: actions", (T, *layout.action_shape), None,
                   "fiu", source)
    for key in ("rewards", "dones", "success"):
        if key in group:
            _check_dataset(group[key], f"{where}: {key}", (T,), None, _NUMERIC, f"a {T}-step episode")
    _check_obs_group(group["obs"], f"{where}: obs", layout, T)
    for final in ("final_obs", "next_obs"):
        if final in group:
            frames = 1 if final == "final_obs" else T
            _check_obs_group(group[final], f"{where}: {final}", layout, frames)
    width = None
    if "states" in group:
        ds = group["states"]
        if not isinstance(ds, h5py.Dataset) or ds.ndim != 2 or ds.dtype.kind not in _NUMERIC:
            raise DatasetError(
                f"{where}: states must be a numeric [T={T}, S] dataset, got "
                f"{getattr(ds, 'shape', 'a group')} {getattr(ds, 'dtype', '')}"
            )
        width = ds.shape[1]
    if "final_states" in group:
        ds = group["final_states"]
        expected = (1, width) if width is not None else None
        if (
            not isinstance(ds, h5py.Dataset)
            or ds.ndim != 2
            or ds.shape[0] != 1
            or (expected is not None and tuple(ds.shape) != expected)
        ):
            raise DatasetError(
                f"{where}: final_states must be [1, S] with the width of states ({width}), got "
                f"{getattr(ds, 'shape', 'a group')}"
            )
    if not values:
        return
    check_finite(group["actions"][()], f"{where}: actions")
    check_finite(group["rewards"][()], f"{where}: rewards")
    for obs_group in ("obs", "final_obs", "next_obs"):
        if obs_group not in group:
            continue
        for key in layout.state_keys:
            check_finite(group[obs_group][key][()], f"{where}: {obs_group}/{key}")


def _check_obs_group(obs: Any, where: str, layout: EpisodeLayout, frames: int) -> None:
    if not isinstance(obs, h5py.Group):
        raise DatasetError(f"{where} is a dataset, not a group of observation keys")
    keys = set(obs.keys())
    wanted = set(layout.obs)
    if keys != wanted:
        missing, extra = sorted(wanted - keys), sorted(keys - wanted)
        raise DatasetError(
            f"{where} has keys {sorted(keys)}; {layout.source} has {sorted(wanted)}"
            + (f" (missing {missing})" if missing else "")
            + (f" (unexpected {extra})" if extra else "")
        )
    for key, (shape, dtype) in layout.obs.items():
        if key in layout.image_keys:
            _check_dataset(obs[key], f"{where}/{key}", (frames, *shape), np.dtype(np.uint8), "u",
                           f"{layout.source} (camera images are uint8)")
        else:
            _check_dataset(obs[key], f"{where}/{key}", (frames, *shape), dtype, _NUMERIC,
                           layout.source)
