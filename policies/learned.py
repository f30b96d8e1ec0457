"""A policy that sees only observations: behaviour cloning from episode files.

:class:`BCPolicy` maps one camera image and the state keys to an action chunk ``[H, A]``
(openpi-style: the loops execute the chunk through :class:`~kairos_gym.policies.ChunkedPolicy`).
It reads nothing but the observation, so the same weights run closed-loop in the real
simulator and in imagination, which is what the agreement benchmark needs::

    from kairos_gym.policies.learned import BCConfig, BCPolicy, train_bc

    policy = train_bc(["data/lift/expert.hdf5"], BCConfig(steps=2000, max_episodes=50))
    policy.save("runs/bc/lift")
    policy = BCPolicy.load("runs/bc/lift")
    chunk = policy.act(obs)            # float32 [H, 7] in [-1, 1]

Policies of varied skill come from the same class by varying the data (``max_episodes``),
the training length (``steps``) and, at run time, execution noise
(:class:`~kairos_gym.policies.NoisyPolicy`). Weights are safetensors and the config JSON:
nothing is unpickled.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn
from tqdm import tqdm

from kairos_gym.errors import CheckpointError, ShapeError
from kairos_gym.policies.base import Policy

__all__ = ["BCConfig", "BCNet", "BCPolicy", "SpatialSoftmax", "train_bc"]

POOLS = ("average", "keypoints")
CONFIG_NAME = "policy.json"
WEIGHTS_NAME = "policy.safetensors"


@dataclasses.dataclass(frozen=True)
class BCConfig:
    """Behaviour-cloning settings (saved beside the weights).

    Attributes:
        camera: the camera whose image the policy sees (``<camera>_image``); ``None``: the
            training files' only camera (:func:`train_bc` stores the one it found).
        chunk: ``H``, actions predicted per query.
        channels: output channels of the stride-2 convolution stages.
        hidden: width of the MLP head.
        steps: optimiser steps.
        batch_size: samples per step.
        lr: AdamW learning rate.
        weight_decay: AdamW weight decay.
        max_episodes: train on at most this many episodes (``None``: all of the split).
        split: which episodes of the files (``"train"``, ``"val"`` or ``"all"``).
        seed: seeds the initialisation, the episode choice and the batches.
        augment_shift: random image shifts of up to this many pixels (0: none).
        state_keys: the observation keys concatenated into the policy's state; ``None``: every
            non-image key of the training files except the privileged ones
            (:data:`~kairos_gym.data.keys.PRIVILEGED_KEYS`, e.g. ``object_state``), so a
            policy trained on files recorded for a world model still sees only what a real
            robot observes (:func:`train_bc` stores the keys it used).
        pool: how the image features become a vector. ``"average"``: each channel averaged
            over a 2 x 2 grid (cheap; where things are is kept only coarsely).
            ``"keypoints"``: a spatial soft-argmax (robomimic's and diffusion policy's
            ``SpatialSoftmax``), each of ``keypoints`` maps giving the expected image
            position of what it responds to, so a policy can find a small object, such as
            a cube a few pixels wide, to well under a feature cell.
        keypoints: the number of keypoint maps (``pool = "keypoints"``).
        state_noise: training only: Gaussian noise added to the state input, in units of
            each entry's standard deviation over the data (0: none). Where the action is a
            joint target that the arm reaches within a step (ALOHA), the current joints
            predict the next target almost exactly, and a policy that learns to copy them
            feeds its own errors back in closed loop (the "copycat" failure of behaviour
            cloning with proprioception). Noise on the state makes it look at the rest of
            the observation as well.
    """

    camera: str | None = None
    chunk: int = 4
    channels: tuple[int, ...] = (32, 64, 64)
    hidden: int = 256
    steps: int = 2000
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 1e-4
    max_episodes: int | None = None
    split: str = "all"
    seed: int = 0
    augment_shift: int = 2
    state_keys: tuple[str, ...] | None = None
    pool: str = "average"
    keypoints: int = 32
    state_noise: float = 0.0

    def __post_init__(self) -> None:
        if self.pool not in POOLS:
            raise ValueError(f"BCConfig.pool must be one of {POOLS}, got {self.pool!r}")
        for name in ("chunk", "hidden", "steps", "batch_size", "keypoints"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"BCConfig.{name} must be a positive integer, got {value!r}")
        if not self.channels or any(int(c) < 1 for c in self.channels):
            raise ValueError(f"BCConfig.channels must be positive integers, got {self.channels!r}")
        if not (self.lr > 0 and self.weight_decay >= 0 and self.augment_shift >= 0):
            raise ValueError("BCConfig needs lr > 0, weight_decay >= 0 and augment_shift >= 0")
        if not (math.isfinite(self.state_noise) and self.state_noise >= 0):
            raise ValueError(f"BCConfig.state_noise must be a finite number >= 0, got {self.state_noise!r}")
        if self.max_episodes is not None and self.max_episodes < 1:
            raise ValueError(f"BCConfig.max_episodes must be >= 1 or None, got {self.max_episodes}")
        if self.state_keys is not None and not self.state_keys:
            raise ValueError("BCConfig.state_keys must name at least one key, or be None")

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> BCConfig:
        """Rebuild from :func:`dataclasses.asdict` output (JSON lists become tuples)."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown BCConfig fields {unknown}")
        values = dict(data)
        if "channels" in values:
            values["channels"] = tuple(values["channels"])
        if values.get("state_keys") is not None:
            values["state_keys"] = tuple(values["state_keys"])
        return cls(**values)


class SpatialSoftmax(nn.Module):
    """Feature maps ``[B, K, h, w]`` -> expected positions ``[B, 2K]`` (``x`` then ``y`` of each
    map, in ``[-1, 1]`` image coordinates) under a softmax over each map's cells."""

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        b, k, h, w = features.shape
        weights = features.flatten(2).softmax(dim=-1).view(b, k, h, w)
        xs = torch.linspace(-1.0, 1.0, w, device=features.device, dtype=weights.dtype)
        ys = torch.linspace(-1.0, 1.0, h, device=features.device, dtype=weights.dtype)
        x = (weights.sum(dim=2) * xs).sum(dim=-1)  # marginal over rows, then the mean column
        y = (weights.sum(dim=3) * ys).sum(dim=-1)
        return torch.cat([x, y], dim=-1)


class BCNet(nn.Module):
    """Image ``[B, H, W, 3]`` uint8 + state ``[B, S]`` -> action chunk ``[B, chunk, A]`` within
    the action space's bounds.

    Stride-2 convolutions with GroupNorm, pooled by ``config.pool`` (an average over a 2 x 2
    grid, or keypoints: :class:`SpatialSoftmax`), the normalised state concatenated, and an MLP head with ``tanh``, mapped linearly
    from ``[-1, 1]`` onto ``[action_low, action_high]`` (buffers; ``[-1, 1]`` by default, the
    robosuite and LIBERO space, where the map is the identity). So every action it gives is
    one the env accepts, ALOHA's joint targets in radians and grippers in ``[0, 1]`` included.
    """

    def __init__(self, config: BCConfig, state_dim: int, action_dim: int) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        c_in = 3
        for c in config.channels:
            layers += [nn.Conv2d(c_in, c, 3, stride=2, padding=1), nn.GroupNorm(8, c), nn.SiLU()]
            c_in = c
        if config.pool == "keypoints":
            pool: list[nn.Module] = [nn.Conv2d(c_in, config.keypoints, 1), SpatialSoftmax()]
            features = 2 * config.keypoints
        else:
            pool, features = [nn.AdaptiveAvgPool2d(2), nn.Flatten()], c_in * 4
        self.encoder = nn.Sequential(*layers, *pool)
        self.head = nn.Sequential(
            nn.Linear(features + state_dim, config.hidden), nn.SiLU(),
            nn.Linear(config.hidden, config.hidden), nn.SiLU(),
            nn.Linear(config.hidden, config.chunk * action_dim),
        )
        self.chunk, self.action_dim = config.chunk, action_dim
        self.register_buffer("state_mean", torch.zeros(state_dim))
        self.register_buffer("state_std", torch.ones(state_dim))
        self.register_buffer("action_low", -torch.ones(action_dim))
        self.register_buffer("action_high", torch.ones(action_dim))

    def forward_normalized(self, images: torch.Tensor, state: torch.Tensor) -> torch.Tensor:
        """The chunk ``[B, chunk, A]`` in ``[-1, 1]`` per entry (what training fits)."""
        x = images.permute(0, 3, 1, 2).float() / 127.5 - 1.0
        z = torch.cat([self.encoder(x), (state - self.state_mean) / self.state_std], dim=-1)
        return torch.tanh(self.head(z)).view(-1, self.chunk, self.action_dim)

    def normalize_actions(self, actions: torch.Tensor) -> torch.Tensor:
        """Actions ``[..., A]`` in env units -> ``[-1, 1]`` per entry (the inverse of the map)."""
        scale = (self.action_high - self.action_low) / 2
        return ((actions - self.action_low) / scale - 1.0).clamp(-1.0, 1.0)

    def forward(self, images: torch.Tensor, state: torch.Tensor) -> torch.Tensor:
        u = self.forward_normalized(images, state)
        return self.action_low + (u + 1.0) * ((self.action_high - self.action_low) / 2)


class BCPolicy(Policy):
    """A trained :class:`BCNet` as a :class:`~kairos_gym.policies.Policy` (chunks ``[H, A]``).

    Args:
        net: the network (put in eval mode).
        config: its training settings.
        image_key: the observation key of the camera it sees.
        state_keys: the observation keys concatenated (in this order) into its state.
    """

    def __init__(
        self, net: BCNet, config: BCConfig, image_key: str, state_keys: Sequence[str]
    ) -> None:
        self.net = net.eval()
        self.config = config
        self.image_key = image_key
        self.state_keys = tuple(state_keys)

    def act(self, observation: dict[str, np.ndarray], instruction: str = "") -> np.ndarray:
        """An action chunk ``[H, A]`` for one observation."""
        batch = {k: np.asarray(v)[None] for k, v in observation.items()}
        return self.act_batch(batch, [instruction])[0]

    @torch.no_grad()
    def act_batch(
        self, observations: Mapping[str, np.ndarray], instructions: Sequence[str] | None = None
    ) -> np.ndarray:
        """Action chunks ``[N, H, A]`` for a batch ``{key: [N, ...]}`` in one forward pass."""
        missing = [k for k in (self.image_key, *self.state_keys) if k not in observations]
        if missing:
            raise ShapeError(f"the policy needs observation keys {missing}, got {sorted(observations)}")
        images = torch.from_numpy(np.ascontiguousarray(observations[self.image_key]))
        state = _concat(observations, self.state_keys)
        return self.net(images, torch.from_numpy(state)).numpy().astype(np.float32)

    def save(self, directory: str | os.PathLike) -> Path:
        """Write ``policy.json`` and ``policy.safetensors`` into ``directory``."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        tensors = {k: v.detach().contiguous() for k, v in self.net.state_dict().items()}
        save_file(tensors, str(directory / WEIGHTS_NAME))
        meta = {
            "config": dataclasses.asdict(self.config),
            "image_key": self.image_key,
            "state_keys": list(self.state_keys),
            "state_dim": int(self.net.state_mean.numel()),
            "action_dim": self.net.action_dim,
        }
        (directory / CONFIG_NAME).write_text(json.dumps(meta, indent=2))
        return directory

    @classmethod
    def load(cls, directory: str | os.PathLike) -> BCPolicy:
        """Load a directory written by :meth:`save`.

        Raises:
            CheckpointError: missing, corrupt or mismatched files (names the file).
        """
        directory = Path(directory)
        try:
            meta = json.loads((directory / CONFIG_NAME).read_text())
            config = BCConfig.from_dict(meta["config"])
            net = BCNet(config, int(meta["state_dim"]), int(meta["action_dim"]))
            state = load_file(str(directory / WEIGHTS_NAME))
            # Policies saved before the action bounds were stored acted in [-1, 1].
            for name in ("action_low", "action_high"):
                state.setdefault(name, getattr(net, name))
            net.load_state_dict(state, strict=True)
        except FileNotFoundError as exc:
            raise CheckpointError(f"{directory}: no policy checkpoint ({exc.filename})") from None
        except (ValueError, KeyError, TypeError, RuntimeError, OSError, SafetensorError) as exc:
            raise CheckpointError(f"{directory}: unreadable policy checkpoint: {exc}") from None
        return cls(net, config, meta["image_key"], meta["state_keys"])


def _concat(observations: Mapping[str, np.ndarray], keys: Sequence[str]) -> np.ndarray:
    """float32 ``[N, S]``: the keys' values flattened per row and concatenated."""
    parts = [np.asarray(observations[k], dtype=np.float32) for k in keys]
    return np.concatenate([p.reshape(len(p), -1) for p in parts], axis=1)


def _samples(episodes: Sequence[Mapping[str, Any]], chunk: int) -> tuple[np.ndarray, ...]:
    """``(images [N, H, W, 3], state [N, S], chunks [N, chunk, A], mask [N, chunk])``.

    Sample ``t`` of an episode is frame ``t`` with its state and actions ``t .. t + chunk - 1``;
    the chunk is padded with the last action past the episode's end and masked there.
    """
    images, states, chunks, masks = [], [], [], []
    for ep in episodes:
        actions = np.asarray(ep["actions"], dtype=np.float32)
        steps = len(actions)
        padded = np.concatenate([actions, np.repeat(actions[-1:], chunk, axis=0)])
        index = np.arange(steps)[:, None] + np.arange(chunk)[None]
        images.append(np.asarray(ep["frames"])[:steps])
        states.append(np.asarray(ep["state"], dtype=np.float32)[:steps])
        chunks.append(padded[index])
        masks.append(index < steps)
    return (np.concatenate(images), np.concatenate(states), np.concatenate(chunks),
            np.concatenate(masks))


def _only_camera(image_keys: tuple[str, ...], where: str) -> str:
    """The camera name of the single image key of an episode file (``sideview_image`` ->
    ``sideview``), for a policy not told which camera to see."""
    from kairos_gym.data.keys import CAMERA_SUFFIXES
    from kairos_gym.errors import DatasetError

    if len(image_keys) != 1:
        raise DatasetError(f"{where}: {len(image_keys)} camera images {list(image_keys)}; "
                           "choose the one the policy sees (BCConfig.camera, --camera)")
    key = image_keys[0]
    for suffix in CAMERA_SUFFIXES:
        if key.endswith(suffix):
            return key[: -len(suffix)]
    return key


def train_bc(
    paths: str | os.PathLike | Sequence[str | os.PathLike],
    config: BCConfig = BCConfig(),
    *,
    progress: bool = True,
) -> BCPolicy:
    """Behaviour-clone the actions of episode files into a :class:`BCPolicy`.

    Args:
        paths: episode files (kairos-gym layout; their env spec names the state keys).
        config: the settings; ``max_episodes`` takes the first episodes of a seeded shuffle.
        progress: show a progress bar.

    Raises:
        DatasetError: unreadable files, no episode, or ``config.state_keys`` the files lack.
    """
    from kairos_gym.data import load_episodes
    from kairos_gym.data.keys import PRIVILEGED_KEYS, ObservationKeys
    from kairos_gym.data.loading import as_paths, resolve_image_key
    from kairos_gym.data.reader import EpisodeReader
    from kairos_gym.errors import DatasetError

    files = as_paths(paths)
    with EpisodeReader(files[0]) as reader:
        keys = ObservationKeys.from_reader(reader)
        if config.camera is None:
            config = dataclasses.replace(config, camera=_only_camera(keys.image_keys, files[0]))
        image_key = resolve_image_key(reader[0].obs_keys, config.camera, files[0])
        action_space = getattr(reader.env_spec, "action_space", None)
    wanted = (
        [k for k in keys.state_keys if k not in PRIVILEGED_KEYS]
        if config.state_keys is None else list(config.state_keys)
    )
    unknown = sorted(set(wanted) - set(keys.state_keys))
    if unknown:
        raise DatasetError(
            f"{files[0]}: no state keys {unknown}; its non-image keys are {list(keys.state_keys)}"
        )
    # The file's order, which is the order load_episodes concatenates them in.
    config = dataclasses.replace(
        config, state_keys=tuple(k for k in keys.state_keys if k in set(wanted))
    )
    episodes = load_episodes(files, config.camera, split=config.split,
                             state_keys=config.state_keys)
    rng = np.random.default_rng(config.seed)
    order = rng.permutation(len(episodes))
    if config.max_episodes is not None:
        order = order[: config.max_episodes]
    images, states, chunks, masks = _samples([episodes[i] for i in order], config.chunk)
    torch.manual_seed(config.seed)
    net = BCNet(config, states.shape[1], chunks.shape[2])
    net.state_mean.copy_(torch.from_numpy(states.mean(0)))
    net.state_std.copy_(torch.from_numpy(states.std(0) + 1e-3))
    low, high = _action_bounds(action_space, chunks)
    net.action_low.copy_(torch.from_numpy(low))
    net.action_high.copy_(torch.from_numpy(high))
    optim = torch.optim.AdamW(net.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optim, config.steps)
    images_t, states_t = torch.from_numpy(images), torch.from_numpy(states)
    chunks_t, masks_t = net.normalize_actions(torch.from_numpy(chunks)), torch.from_numpy(masks).float()
    bar = tqdm(range(config.steps), desc="bc", unit="step", disable=not progress, mininterval=1.0)
    net.train()
    for _ in bar:
        batch = torch.from_numpy(rng.integers(len(images), size=config.batch_size))
        frames = images_t[batch]
        if config.augment_shift:
            frames = _shift(frames, config.augment_shift, rng)
        states = states_t[batch]
        if config.state_noise:
            states = states + config.state_noise * net.state_std * torch.randn(states.shape)
        pred = net.forward_normalized(frames, states)
        err = (pred - chunks_t[batch]).square().mean(-1)
        loss = (err * masks_t[batch]).sum() / masks_t[batch].sum()
        optim.zero_grad(set_to_none=True)
        loss.backward()
        optim.step()
        schedule.step()
        bar.set_postfix(loss=f"{loss.item():.4f}", refresh=False)
    return BCPolicy(net, config, image_key, config.state_keys)


def _action_bounds(space: Any, chunks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """float32 ``(low, high)`` ``[A]``: the action space's bounds, or for an unbounded entry the
    recorded actions' range (widened by a tenth, so the policy can still reach it)."""
    actions = chunks.reshape(-1, chunks.shape[-1]).astype(np.float64)
    seen_low, seen_high = actions.min(0), actions.max(0)
    margin = 0.1 * np.maximum(seen_high - seen_low, 1e-3)
    low = np.asarray(getattr(space, "low", np.full(actions.shape[1], -np.inf)), np.float64).reshape(-1)
    high = np.asarray(getattr(space, "high", np.full(actions.shape[1], np.inf)), np.float64).reshape(-1)
    if low.shape != seen_low.shape:  # not a flat Box of the actions' width: use what was recorded
        low, high = np.full_like(seen_low, -np.inf), np.full_like(seen_high, np.inf)
    low = np.where(np.isfinite(low), low, seen_low - margin)
    high = np.where(np.isfinite(high), high, seen_high + margin)
    return low.astype(np.float32), high.astype(np.float32)


def _shift(frames: torch.Tensor, pad: int, rng: np.random.Generator) -> torch.Tensor:
    """The batch ``[B, H, W, 3]`` shifted by one random offset in ``[-pad, pad]`` (edge padded):
    a cheap augmentation against overfitting to exact pixel positions."""
    dy, dx = (int(v) for v in rng.integers(-pad, pad + 1, size=2))
    padded = torch.nn.functional.pad(frames.permute(0, 3, 1, 2).float(), (pad,) * 4, mode="replicate")
    h, w = frames.shape[1:3]
    out = padded[:, :, pad + dy : pad + dy + h, pad + dx : pad + dx + w]
    return out.permute(0, 2, 3, 1).to(frames.dtype)
