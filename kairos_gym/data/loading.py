"""Listing episodes and loading whole episodes from episode files.

The trainer, open-loop evaluation and the benchmark scripts all pick episodes the same way:
a seeded hash of ``(file name, episode name)`` puts every episode in ``"train"`` or ``"val"``
(:func:`split_of`), so held-out episodes stay held out when a file grows::

    from kairos_gym.data import list_episodes, load_episodes

    refs = list_episodes(["lift.hdf5"], split="val")           # metadata only
    episodes = load_episodes(["lift.hdf5"], "agentview", split="val", min_steps=64,
                             max_steps=64, max_episodes=24)   # arrays, for open_loop_eval

A loaded episode (``T`` steps, ``T + 1`` frames) is a dict::

    frames   uint8   [T + 1, H, W, 3]  frames[j]; frames[j] (j >= 1) was produced by actions[j - 1]
    actions  float32 [T, A]            actions[j] leads from frame j into frame j + 1
    rewards  float32 [T]               reward of step j: the label of frame j + 1
    success  bool    [T]               info["success"] after step j: the label of frame j + 1
    state    float32 [T + 1, S]        state of frame j (see ObservationKeys), when there is one
    name     str                       "<file name>:<episode>"

which is the alignment of :class:`~kairos_gym.data.dataset.ClipDataset`. Nothing here
imports torch.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
from collections.abc import Collection, Sequence
from typing import Any

import numpy as np

from kairos_gym.data.keys import ObservationKeys
from kairos_gym.data.reader import Episode, EpisodeReader
from kairos_gym.errors import DatasetError

__all__ = [
    "SPLITS",
    "EpisodeRef",
    "image_key_candidates",
    "list_episodes",
    "load_episodes",
    "resolve_image_key",
    "split_of",
]

SPLITS = ("train", "val", "all")


def split_of(file_path: str, episode: str, *, val_fraction: float, seed: int) -> str:
    """``"train"`` or ``"val"`` for one episode: a seeded hash of ``(file name, episode name)``.

    Hashing each episode on its own (rather than shuffling the list) keeps the split of
    existing episodes fixed when a file grows by resumed collection, so held-out episodes
    never leak into training.
    """
    key = f"{seed}:{os.path.basename(file_path)}:{episode}".encode()
    u = int.from_bytes(hashlib.blake2b(key, digest_size=8).digest(), "little") / 2.0**64
    return "val" if u < val_fraction else "train"


def check_split(split: str, val_fraction: float) -> None:
    """Raise ``ValueError`` unless ``split`` is one of :data:`SPLITS` and ``val_fraction``
    is in ``[0, 1]``."""
    if not isinstance(split, str) or split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    if (
        isinstance(val_fraction, bool)
        or not isinstance(val_fraction, (int, float, np.integer, np.floating))
        or not 0.0 <= val_fraction <= 1.0
    ):
        raise ValueError(f"val_fraction must be in [0, 1], got {val_fraction!r}")


def image_key_candidates(camera: str) -> list[str]:
    """Observation keys that may hold ``camera``'s images, in the order they are tried:
    the name itself (a full key), ``<camera>_image`` (kairos-gym, robomimic) and
    ``<camera>_rgb`` (LIBERO)."""
    return [camera, f"{camera}_image", f"{camera}_rgb"]


def resolve_image_key(obs_keys: Collection[str], camera: str, where: str) -> str:
    """The observation key of ``camera`` among ``obs_keys`` (see :func:`image_key_candidates`).

    Raises:
        DatasetError: none of the candidates is there; the message starts with ``where``.
    """
    candidates = image_key_candidates(camera)
    for key in candidates:
        if key in obs_keys:
            return key
    raise DatasetError(
        f"{where}: no image key for camera {camera!r} "
        f"(tried {candidates}; obs keys: {sorted(obs_keys)})"
    )


@dataclasses.dataclass(frozen=True)
class EpisodeRef:
    """One episode of an episode file, without its data.

    Attributes:
        path: the episode file.
        name: the episode's group name (``"demo_3"``).
        steps: actions with a following frame: ``num_frames - 1`` (the last action of files
            without a final observation, such as LIBERO's, has no frame to score).
    """

    path: str
    name: str
    steps: int

    @property
    def label(self) -> str:
        """``"<file name>:<episode>"``, the name used in results."""
        return f"{os.path.basename(self.path)}:{self.name}"


def as_paths(paths: str | os.PathLike | Sequence[str | os.PathLike]) -> list[str]:
    """One path or several, as a non-empty list of strings.

    Raises:
        ValueError: no path at all.
    """
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    out = [os.fspath(p) for p in paths]
    if not out:
        raise ValueError("need at least one episode file, got none")
    return out


def list_episodes(
    paths: str | os.PathLike | Sequence[str | os.PathLike],
    *,
    split: str = "val",
    val_fraction: float = 0.1,
    seed: int = 0,
    allow_external_links: bool = False,
) -> list[EpisodeRef]:
    """The episodes of ``split`` in ``paths``, in file then episode order (metadata only).

    Args:
        paths: one episode file or several (kairos-gym, LIBERO or robomimic layout).
        split: ``"train"``, ``"val"`` or ``"all"``; assigned by :func:`split_of`, exactly as
            :class:`~kairos_gym.data.dataset.ClipDataset` does, so ``split="val"`` with the
            trainer's ``val_fraction`` and ``seed`` is the held-out set.
        val_fraction: expected fraction of episodes in ``"val"``.
        seed: seed of the split.
        allow_external_links: follow HDF5 external links (see
            :class:`~kairos_gym.data.reader.EpisodeReader`; refused by default).

    Raises:
        DatasetError: an unreadable or invalid file.
        ValueError: bad arguments.
    """
    check_split(split, val_fraction)
    refs = []
    for path in as_paths(paths):
        with EpisodeReader(path, allow_external_links=allow_external_links) as reader:
            for ep in reader:
                if (
                    split != "all"
                    and split_of(path, ep.name, val_fraction=val_fraction, seed=seed) != split
                ):
                    continue
                refs.append(EpisodeRef(path, ep.name, ep.num_frames - 1))
    return refs


def read_episode(ep: Episode, camera: str, steps: int, keys: ObservationKeys) -> dict[str, Any]:
    """The first ``steps`` steps (``steps + 1`` frames) of ``ep`` as a loaded episode dict
    (see the module docstring), with ``state`` when ``keys`` has state keys.

    Raises:
        DatasetError: the episode lacks the camera or a state key.
    """
    where = f"{ep.reader.path}: episode {ep.name!r}"
    window = slice(0, steps)
    out: dict[str, Any] = {
        "name": f"{os.path.basename(ep.reader.path)}:{ep.name}",
        "frames": ep.frames(resolve_image_key(ep.obs_keys, camera, where), 0, steps + 1),
        "actions": np.asarray(ep.read("actions", window), dtype=np.float32),
        "rewards": np.asarray(ep.read("rewards", window), dtype=np.float32),
        # LIBERO / robomimic files have no success column: their dones mark success.
        "success": np.asarray(ep.read("success" if ep.has("success") else "dones", window)).astype(
            bool
        ),
    }
    if keys.state_keys:
        missing = [k for k in keys.state_keys if k not in ep.obs_keys]
        if missing:
            raise DatasetError(f"{where} lacks state keys {missing}")
        out["state"] = keys.concat_state({k: ep.frames(k, 0, steps + 1) for k in keys.state_keys})
    return out


def load_episodes(
    paths: str | os.PathLike | Sequence[str | os.PathLike],
    camera: str,
    *,
    split: str = "val",
    val_fraction: float = 0.1,
    seed: int = 0,
    min_steps: int = 1,
    max_steps: int | None = None,
    max_episodes: int | None = None,
    state_keys: Sequence[str] | None = None,
    allow_external_links: bool = False,
) -> list[dict[str, Any]]:
    """Read whole episodes (held-out ones by default), e.g. for open-loop evaluation.

    Args:
        paths: one episode file or several.
        camera: camera name (``"agentview"``) or full obs key (``"agentview_image"``).
        split, val_fraction, seed: which episodes, as in :func:`list_episodes`.
        min_steps: skip episodes with fewer steps (pass the horizon plus ``context_frames - 1``).
        max_steps: read only the first ``max_steps`` steps of each episode (``None``: all).
        max_episodes: at most this many, taken round-robin over the files in episode order
            (stable when files grow by resumed collection); ``None``: all.
        state_keys: obs keys concatenated (in space order) into ``state``; default: the
            file's :meth:`ObservationKeys.from_reader` state keys, i.e. every non-image key
            of a kairos-gym file's env spec (what an environment checkpoint's state head
            predicts) and the layout's proprioception for LIBERO / robomimic files, exactly
            as :class:`~kairos_gym.data.dataset.ClipDataset`; ``()``: no state.
        allow_external_links: follow HDF5 external links (refused by default).

    Returns:
        Episode dicts (see the module docstring): ``frames`` uint8 ``[T + 1, H, W, 3]``,
        ``actions`` float32 ``[T, A]``, ``rewards`` float32 ``[T]``, ``success`` bool ``[T]``,
        ``state`` float32 ``[T + 1, S]`` (when there are state keys), ``name``.

    Raises:
        DatasetError: unreadable files, a missing camera or state key, or no episode of
            ``split`` with ``min_steps`` steps (the message gives the counts).
        ValueError: bad arguments.
    """
    if min_steps < 1:
        raise ValueError(f"min_steps must be >= 1, got {min_steps}")
    if max_steps is not None and max_steps < min_steps:
        raise ValueError(f"max_steps ({max_steps}) must be >= min_steps ({min_steps})")
    if max_episodes is not None and max_episodes < 1:
        raise ValueError(f"max_episodes must be >= 1 or None, got {max_episodes}")
    paths = as_paths(paths)
    refs = list_episodes(paths, split=split, val_fraction=val_fraction, seed=seed,
                         allow_external_links=allow_external_links)
    long_enough = [r for r in refs if r.steps >= min_steps]
    if not long_enough:
        longest = max((r.steps for r in refs), default=0)
        raise DatasetError(
            f"no episode of split {split!r} in {paths} has >= {min_steps} steps "
            f"({len(refs)} episodes in the split, longest {longest} steps)"
        )
    # Round-robin over files so a small max_episodes still samples every file.
    per_file = [[r for r in long_enough if r.path == p] for p in paths]
    chosen: list[EpisodeRef] = []
    for i in range(max(len(f) for f in per_file)):
        chosen += [f[i] for f in per_file if i < len(f)]
    if max_episodes is not None:
        chosen = chosen[:max_episodes]
    episodes = []
    for path in paths:
        mine = [r for r in chosen if r.path == path]
        if not mine:
            continue
        # list_episodes validated these files a moment ago.
        with EpisodeReader(path, allow_external_links=allow_external_links, check_values=False) as reader:
            keys = ObservationKeys.from_reader(reader, state_keys)
            for ref in mine:
                steps = ref.steps if max_steps is None else min(ref.steps, max_steps)
                episodes.append(
                    (chosen.index(ref), read_episode(reader[ref.name], camera, steps, keys))
                )
    return [ep for _, ep in sorted(episodes, key=lambda pair: pair[0])]
