"""Fixed-length clips from episode files, for training the codec, the world model and its heads.

:class:`ClipDataset` is a ``torch.utils.data.Dataset`` over one or more episode files
(kairos-gym, LIBERO or robomimic layout). Each item is one clip of ``T`` frames from one
episode (clips never cross episodes), as a dict of tensors.

Alignment: an episode is the frame sequence ``f_0 .. f_N`` where ``f_j = obs[j]`` and, when
the file stores it, ``f_T = final_obs`` (so ``N = T``; ``N = T - 1`` without it, as in
LIBERO files, whose last action and labels are then dropped). Frame ``f_j`` (``j >= 1``)
was produced by ``actions[j - 1]``; its labels are what that step returned:
``reward = rewards[j - 1]``, ``success = success[j - 1]``, ``done = dones[j - 1]``. Frame
``f_0`` has no action and labels 0 / False. So ``item["rewards"][t]`` is the label of
``item["frames"][t]``: a head that reads a committed frame predicts its own label.
"""

from __future__ import annotations

import bisect
import os
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from kairos_gym.data.keys import ObservationKeys
from kairos_gym.data.loading import SPLITS, check_split, resolve_image_key, split_of
from kairos_gym.data.reader import Episode, EpisodeReader
from kairos_gym.errors import DatasetError

__all__ = ["IMAGE_TRANSFORMS", "SPLITS", "ClipDataset", "group_by_latent", "split_of"]

IMAGE_TRANSFORMS = ("none", "vflip", "rot180")


class ClipDataset(torch.utils.data.Dataset):
    """Clips of ``clip_len`` frames (every ``frame_stride``-th frame) from episode files.

    Each item (``T = clip_len``, ``s = frame_stride``, ``A`` action size)::

        frames       uint8   [T, H, W, 3]  (one camera) or [T, V, H, W, 3] (a list of V cameras);
                                       absent with ``cameras=()`` (state-only clips)
        actions      float32 [T, s*A]  actions[t] = the s actions executed between frame t-1 and
                                       frame t, concatenated in time order (s = 1: the action
                                       that LED INTO frame t). actions[0] is all zeros.
        action_mask  bool    [T]       False where actions[t] is a zero placeholder: always at
                                       t = 0 (a clip starts without an action, like the first
                                       frame after reset), True elsewhere.
        first_frame  bool    [T]       True where frame t is the first frame of its episode.
        rewards      float32 [T]       label of frame t: the reward of the step(s) leading into
                                       it (summed over the s steps); 0 for an episode's first frame.
        success      bool    [T]       label of frame t: info["success"] after the step leading
                                       into it; False for an episode's first frame.
        done         bool    [T]       the episode terminated at frame t. An episode cut by its
                                       time limit (kairos-gym files record ``truncated``) did
                                       not terminate: its last ``dones`` flag is not a label.
        state        float32 [T, S]    state of frame t: its state keys flattened and
                                       concatenated in space order (``observation_keys``).
        sim_state    float32 [T, S']   only with ``sim_state=True``: simulator state of frame t.
        episode      int64   []        index of the episode in ``dataset.episodes``.
        start        int64   []        frame index of the clip's first frame in its episode.

    Args:
        paths: one episode file or several.
        clip_len: ``T`` frames per clip (>= 1).
        cameras: camera name (``"agentview"`` -> obs key ``agentview_image``, or
            ``agentview_rgb`` in LIBERO files) or a full obs key, or a list of them. An empty
            list gives state-only clips (no ``frames``): what a proprioceptive dynamics model
            learns from, and files recorded without cameras (``collect --cameras none``) hold.
        frame_stride: take every ``s``-th frame (``s`` actions per clip step).
        clip_step: distance in frames between the starts of consecutive clips (default 1:
            every possible clip).
        split: ``"train"``, ``"val"`` or ``"all"``; episodes are assigned by
            :func:`split_of` (deterministic, disjoint, covering, stable when files grow).
        val_fraction: expected fraction of episodes held out in ``"val"``.
        seed: seed of the split.
        state_keys: obs keys concatenated (in space order) into ``state``; default: each
            file's :meth:`ObservationKeys.from_reader` state keys: every non-image key of a
            kairos-gym file's env spec (what an environment checkpoint's state head
            predicts), and for LIBERO / robomimic files, which have no env spec, the
            layout's proprioception (:data:`~kairos_gym.data.keys.LAYOUT_STATE_KEYS`).
        sim_state: also return ``sim_state``.
        image_transform: ``"none"``, ``"vflip"`` or ``"rot180"``, applied to frames (LIBERO
            and robomimic files store images upside down as rendered; kairos-gym files are upright).
        in_memory: keep every episode read in memory (per worker) instead of re-reading.
        allow_external_links: follow HDF5 external links and external storage in the files
            (refused by default; see :class:`~kairos_gym.data.reader.EpisodeReader`).

    Attributes:
        observation_keys: per file, the :class:`ObservationKeys` whose state keys make up
            ``state`` (``observation_keys[i].state_width`` is ``S`` for file ``i``).

    Raises:
        DatasetError: unreadable or invalid file (every episode is validated when the
            dataset is built: widths, dtypes, image shapes, finite values), missing camera or
            state key, or no clip at all in the split.
        ValueError / TypeError: bad arguments (a non-integer seed is a TypeError).

    h5py handles are opened lazily and cached per process, so DataLoader workers each open
    their own; nothing but the index (episode names and lengths) is read at construction.
    """

    def __init__(
        self,
        paths: str | os.PathLike | Sequence[str | os.PathLike],
        *,
        clip_len: int,
        cameras: str | Sequence[str] = "agentview",
        frame_stride: int = 1,
        clip_step: int = 1,
        split: str = "all",
        val_fraction: float = 0.1,
        seed: int = 0,
        state_keys: Sequence[str] | None = None,
        sim_state: bool = False,
        image_transform: str = "none",
        in_memory: bool = False,
        allow_external_links: bool = False,
    ) -> None:
        if isinstance(paths, (str, os.PathLike)):
            paths = [paths]
        if not isinstance(paths, Sequence) or not all(
            isinstance(p, (str, os.PathLike)) for p in paths
        ):
            raise ValueError(f"paths must be an episode file or a list of them, got {paths!r}")
        self.paths = [os.fspath(p) for p in paths]
        if not self.paths:
            raise ValueError("ClipDataset needs at least one episode file, got none")
        for name, value in (
            ("clip_len", clip_len),
            ("frame_stride", frame_stride),
            ("clip_step", clip_step),
        ):
            if not isinstance(value, (int, np.integer)) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        check_split(split, val_fraction)
        if not isinstance(image_transform, str) or image_transform not in IMAGE_TRANSFORMS:
            raise ValueError(
                f"image_transform must be one of {IMAGE_TRANSFORMS}, got {image_transform!r}"
            )
        self.clip_len = int(clip_len)
        self.frame_stride = int(frame_stride)
        self.clip_step = int(clip_step)
        self.split = split
        self.val_fraction = float(val_fraction)
        self.seed = int(seed)
        self.multi_camera = not isinstance(cameras, str)
        if not isinstance(cameras, (str, Sequence)) or not all(
            isinstance(c, str) for c in ([cameras] if isinstance(cameras, str) else cameras)
        ):
            raise ValueError(f"cameras must be a camera name or a list of them, got {cameras!r}")
        self.cameras = [cameras] if isinstance(cameras, str) else list(cameras)
        if state_keys is not None and (
            isinstance(state_keys, str)
            or not isinstance(state_keys, Sequence)
            or not all(isinstance(k, str) for k in state_keys)
        ):
            raise ValueError(
                f"state_keys must be a list of observation keys or None, got {state_keys!r}"
            )
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
            raise TypeError(f"seed must be an integer, got {seed!r}")
        self.with_sim_state = bool(sim_state)
        self.image_transform = image_transform
        self.in_memory = bool(in_memory)
        self.allow_external_links = bool(allow_external_links)
        self._user_state_keys = None if state_keys is None else tuple(state_keys)

        # Per file: resolved image keys and observation keys. Per episode: (file, name, frames).
        self._image_keys: list[list[str]] = []
        self.observation_keys: list[ObservationKeys] = []
        self.episodes: list[tuple[int, str, int]] = []
        counts: list[int] = []
        span = (self.clip_len - 1) * self.frame_stride + 1
        for file_index, path in enumerate(self.paths):
            with EpisodeReader(path, allow_external_links=self.allow_external_links) as reader:
                self._resolve_keys(reader)
                for ep in reader:
                    side = split_of(path, ep.name, val_fraction=self.val_fraction, seed=self.seed)
                    if split != "all" and side != split:
                        continue
                    self._check_episode(ep, file_index)
                    n_frames = ep.num_frames
                    n_clips = 0 if n_frames < span else (n_frames - span) // self.clip_step + 1
                    self.episodes.append((file_index, ep.name, n_frames))
                    counts.append(n_clips)
        self._cumulative = np.cumsum(counts, dtype=np.int64).tolist()
        if not self._cumulative or self._cumulative[-1] == 0:
            raise DatasetError(
                f"no clip of {self.clip_len} frames (stride {self.frame_stride}) in split {split!r} "
                f"of {self.paths}: {len(self.episodes)} episodes, longest "
                f"{max((e[2] for e in self.episodes), default=0)} frames"
            )
        self._readers: dict[int, EpisodeReader] = {}
        self._cache: dict[tuple[int, str], dict[str, np.ndarray]] = {}
        self._pid = os.getpid()

    def _resolve_keys(self, reader: EpisodeReader) -> None:
        obs_keys = set(reader[0].obs_keys) if len(reader) else set()
        image_keys = []
        for cam in self.cameras:
            if len(reader):
                image_keys.append(resolve_image_key(obs_keys, cam, reader.path))
            else:
                image_keys.append(f"{cam}_image")  # no episode to check: nothing is read
        self._image_keys.append(image_keys)
        self.observation_keys.append(ObservationKeys.from_reader(reader, self._user_state_keys))

    def _check_episode(self, ep: Episode, file_index: int) -> None:
        keys = set(ep.obs_keys)
        wanted = self._image_keys[file_index] + list(self.observation_keys[file_index].state_keys)
        missing = [k for k in wanted if k not in keys]
        if missing:
            raise DatasetError(f"{ep.reader.path}: episode {ep.name!r} lacks obs keys {missing}")
        if self.with_sim_state:
            if not ep.has("states"):
                raise DatasetError(
                    f"{ep.reader.path}: episode {ep.name!r} has no 'states' (sim_state=True)"
                )
            if ep.has_final_obs and not ep.has("final_states"):
                raise DatasetError(
                    f"{ep.reader.path}: episode {ep.name!r} has a final observation "
                    "but no 'final_states' (sim_state=True)"
                )

    def __len__(self) -> int:
        return self._cumulative[-1]

    def clip_files(self) -> np.ndarray:
        """``[N]`` int64: for every clip, the index in ``paths`` of the file it comes from
        (what per-file sampling weights need)."""
        counts = np.diff(np.asarray([0, *self._cumulative], dtype=np.int64))
        files = np.asarray([e[0] for e in self.episodes], dtype=np.int64)
        return np.repeat(files, counts)

    def __getstate__(self) -> dict[str, Any]:
        # Open HDF5 handles cannot cross process boundaries; workers reopen their own.
        state = dict(self.__dict__)
        state["_readers"] = {}
        state["_cache"] = {}
        return state

    def _reader(self, file_index: int) -> EpisodeReader:
        if os.getpid() != self._pid:
            # A forked worker inherited the parent's handles: never share them.
            self._readers, self._cache, self._pid = {}, {}, os.getpid()
        reader = self._readers.get(file_index)
        if reader is None:
            # Validated when the dataset was built: reopening checks structure, not values.
            reader = EpisodeReader(
                self.paths[file_index],
                allow_external_links=self.allow_external_links,
                check_values=False,
            )
            self._readers[file_index] = reader
        return reader

    def locate(self, index: int) -> tuple[int, int]:
        """``(episode index, first frame)`` of clip ``index``."""
        if not -len(self) <= index < len(self):
            raise IndexError(f"clip index {index} out of range for {len(self)} clips")
        index = index % len(self)
        episode = bisect.bisect_right(self._cumulative, index)
        before = self._cumulative[episode - 1] if episode else 0
        return episode, (index - before) * self.clip_step

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        episode_index, start = self.locate(int(index))
        return self._clip(episode_index, start, self.clip_len)

    def whole_episode(self, episode_index: int) -> dict[str, torch.Tensor]:
        """Episode ``episode_index`` of :attr:`episodes` as one clip from its first frame to its
        last (every ``frame_stride``-th), with the keys and conventions of an item."""
        _, _, n_frames = self.episodes[episode_index]
        return self._clip(episode_index, 0, (n_frames - 1) // self.frame_stride + 1)

    def _clip(self, episode_index: int, start: int, T: int) -> dict[str, torch.Tensor]:
        file_index, name, _ = self.episodes[episode_index]
        ep = self._reader(file_index)[name]
        s = self.frame_stride
        stop = start + (T - 1) * s + 1
        frame_ids = np.arange(start, stop, s)
        data = self._episode_arrays(ep, file_index) if self.in_memory else None

        def frames_of(key: str) -> np.ndarray:
            if data is not None:
                return data[key][start:stop:s]
            return ep.frames(key, start, stop, s)

        images = [self._transform(frames_of(k)) for k in self._image_keys[file_index]]

        # Step-level arrays over the steps that lead into frames start-s+1 .. stop-1.
        lo = max(0, start - s)
        hi = stop - 1  # step j-1 leads into frame j; the last frame needs step stop-2
        if data is not None:
            acts, rews, succ, dones = (
                data[k][lo:hi] for k in ("actions", "rewards", "success", "dones")
            )
        else:
            steps = slice(lo, hi)
            acts, rews, dones = (ep.read(k, steps) for k in ("actions", "rewards", "dones"))
            # LIBERO / robomimic files have no success column: their dones mark success.
            succ = ep.read("success", steps) if ep.has("success") else dones
            if hi == ep.num_samples and _cut_by_time_limit(ep):
                dones = dones.copy()
                dones[-1] = False
        A = acts.shape[-1]
        actions = np.zeros((T, s * A), dtype=np.float32)
        rewards = np.zeros(T, dtype=np.float32)
        success = np.zeros(T, dtype=bool)
        done = np.zeros(T, dtype=bool)
        for t, j in enumerate(frame_ids):
            a, b = max(0, j - s) - lo, j - lo  # steps j-s .. j-1 (relative to lo)
            if b <= 0:
                continue  # the episode's first frame: no step leads into it
            rewards[t] = float(np.sum(rews[max(a, 0) : b]))
            success[t] = bool(succ[b - 1])
            done[t] = bool(np.any(dones[max(a, 0) : b]))
            if t > 0:
                actions[t] = np.asarray(acts[a:b], dtype=np.float32).reshape(-1)
        action_mask = np.ones(T, dtype=bool)
        action_mask[0] = False
        first_frame = frame_ids == 0

        item: dict[str, torch.Tensor] = {}
        if images:
            frames = np.stack(images, axis=1) if self.multi_camera else images[0]
            item["frames"] = torch.from_numpy(np.ascontiguousarray(frames))
        item |= {
            "actions": torch.from_numpy(actions),
            "action_mask": torch.from_numpy(action_mask),
            "first_frame": torch.from_numpy(first_frame),
            "rewards": torch.from_numpy(rewards),
            "success": torch.from_numpy(success),
            "done": torch.from_numpy(done),
            "state": torch.from_numpy(self._state(ep, file_index, data, start, stop)),
            "episode": torch.tensor(episode_index, dtype=torch.int64),
            "start": torch.tensor(start, dtype=torch.int64),
        }
        if self.with_sim_state:
            if data is not None:
                sim = data["sim_state"][start:stop:s]
            else:
                sim = self._sim_state(ep, start, stop)
            item["sim_state"] = torch.from_numpy(np.asarray(sim, dtype=np.float32))
        return item

    def _transform(self, images: np.ndarray) -> np.ndarray:
        if self.image_transform == "vflip":
            return images[:, ::-1]
        if self.image_transform == "rot180":
            return images[:, ::-1, ::-1]
        return images

    def _state(
        self,
        ep: Episode,
        file_index: int,
        data: dict[str, np.ndarray] | None,
        start: int,
        stop: int,
    ) -> np.ndarray:
        keys = self.observation_keys[file_index]
        s = self.frame_stride
        if not keys.state_keys:
            return np.zeros((self.clip_len, 0), dtype=np.float32)
        parts = {
            key: data[key][start:stop:s] if data is not None else ep.frames(key, start, stop, s)
            for key in keys.state_keys
        }
        return keys.concat_state(parts)

    def _sim_state(self, ep: Episode, start: int, stop: int) -> np.ndarray:
        T_ep = ep.num_samples
        ids = list(range(start, stop, self.frame_stride))
        in_states = [i for i in ids if i < T_ep]
        parts = []
        if in_states:
            parts.append(
                ep.read("states", slice(in_states[0], in_states[-1] + 1, self.frame_stride))
            )
        if ids[-1] == T_ep:
            parts.append(ep.read("final_states", slice(0, 1)))
        return np.concatenate(parts) if len(parts) > 1 else parts[0]

    def _episode_arrays(self, ep: Episode, file_index: int) -> dict[str, np.ndarray]:
        key = (file_index, ep.name)
        cached = self._cache.get(key)
        if cached is not None:
            return cached
        n = ep.num_frames
        arrays: dict[str, np.ndarray] = {}
        state_keys = self.observation_keys[file_index].state_keys
        for obs_key in set(self._image_keys[file_index]) | set(state_keys):
            arrays[obs_key] = ep.frames(obs_key, 0, n)
        arrays["actions"] = ep.actions
        arrays["rewards"] = ep.rewards
        arrays["success"] = ep.success
        arrays["dones"] = ep.dones
        if _cut_by_time_limit(ep) and len(arrays["dones"]):
            arrays["dones"] = arrays["dones"].copy()
            arrays["dones"][-1] = False
        if self.with_sim_state:
            arrays["sim_state"] = self._sim_state_full(ep, n)
        self._cache[key] = arrays
        return arrays

    def _sim_state_full(self, ep: Episode, n: int) -> np.ndarray:
        states = ep.states
        if n > ep.num_samples:
            states = np.concatenate([states, ep.read("final_states", slice(0, 1))])
        return states


def group_by_latent(
    item: dict[str, torch.Tensor], temporal_compression: int
) -> dict[str, torch.Tensor]:
    """A clip's per-frame labels regrouped per latent frame of a video codec.

    A video codec with temporal compression ``tc`` (the Wan VAE: 4) encodes a clip of
    ``T = 1 + tc k`` frames (``frame_stride`` 1) into ``1 + k`` latent frames: the first frame
    alone, then frames ``tc (j-1) + 1 .. tc j`` as latent frame ``j``. Latent frame ``j``
    takes what led into its frames, in the layout ``frame_stride = tc`` would give::

        frames       unchanged, [T, ...] (the codec encodes all of them)
        actions      [1 + k, tc*A]  the tc actions that led into latent j's frames, in time
                                    order (zeros for latent 0, which nothing leads into)
        action_mask  [1 + k]        False for latent 0, else all of its frames' flags
        first_frame  [1 + k]        the flag of frame tc j
        rewards      [1 + k]        summed over latent j's frames
        success      [1 + k]        the label of its last frame, tc j
        done         [1 + k]        any of its frames terminated
        state        [1 + k, S]     the state of its last frame (also ``sim_state``)

    ``episode`` and ``start`` are kept. ``tc = 1`` returns ``item`` unchanged.

    Raises:
        ValueError: ``T`` is not ``1 + tc k``, or actions of another layout than one per frame.
    """
    tc = int(temporal_compression)
    if tc == 1:
        return item
    t = item["actions"].shape[0]
    if tc < 1 or t < 1 or (t - 1) % tc:
        raise ValueError(
            f"a clip for temporal compression {tc} needs 1 + {tc}k frames (1, {1 + tc}, "
            f"{1 + 2 * tc}, ...), got {t}"
        )
    k = (t - 1) // tc
    out = dict(item)
    acts = item["actions"]
    grouped = acts[1:].reshape(k, tc * acts.shape[-1])
    out["actions"] = torch.cat([torch.zeros_like(grouped[:1]), grouped])
    mask = item["action_mask"]
    out["action_mask"] = torch.cat([mask[:1], mask[1:].reshape(k, tc).all(dim=1)])
    rewards = item["rewards"]
    out["rewards"] = torch.cat([rewards[:1], rewards[1:].reshape(k, tc).sum(dim=1)])
    done = item["done"]
    out["done"] = torch.cat([done[:1], done[1:].reshape(k, tc).any(dim=1)])
    for key in ("first_frame", "success", "state", "sim_state"):
        if key in item:
            out[key] = item[key][::tc]  # frames 0, tc, 2 tc, ...: each latent's last frame
    return out


def _cut_by_time_limit(ep: Episode) -> bool:
    """Whether the episode ended by truncation rather than termination (kairos-gym files say so)."""
    attrs = ep.attrs
    return bool(attrs.get("truncated", False)) and not bool(attrs.get("terminated", False))
