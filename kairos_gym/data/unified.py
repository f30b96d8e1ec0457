"""One observation and action layout for several embodiments, so one world model learns them all.

robosuite's Panda takes 7-D end-effector deltas at 20 Hz and reports an 8-D state; ALOHA's
two arms take 14-D joint targets at 50 Hz and report 14 joint readings. A single model needs
one layout for both. As in RDT's unified action space, every embodiment owns its own slots
of one wide vector, the other embodiments' slots stay zero, and a one-hot names the embodiment::

    action  [ A_lift (7) | A_transfer_cube (14) | one-hot (2) ]      23 values
    state   [ S_lift (8) | S_transfer_cube (14) | one-hot (2) ]      24 values
    image   view_image [H, W, 3]                                     each embodiment's camera

The model's first action layer therefore has separate weights for each embodiment's actions
(per-embodiment action encoding) and everything after it is shared; the state head predicts
each embodiment's state in its own slots. Frames keep one key, ``view_image``: the images of
all embodiments must have one size.

A :class:`UnifiedLayout` is stored in the unified env spec (``env_kwargs["embodiments"]``),
so episode files and checkpoints carry it and an imagined env can later present any one
embodiment with exactly its real env's spaces
(:class:`kairos_gym.imagined.embodiment.EmbodimentEnv`). Files are converted with::

    python -m kairos_gym.data.unified data/unified \\
        --embodiment lift agentview data/lift/expert0.hdf5 data/lift/heldout.hdf5 \\
        --embodiment transfer_cube top data/transfer_cube/expert0.hdf5

which writes ``data/unified/<embodiment>/<file name>`` for every input, all with one spec,
ready for ``kairos-gym train`` (``camera = "view"``). Nothing here imports torch.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np

from kairos_gym.data.episodes import EpisodeWriter
from kairos_gym.data.keys import ObservationKeys
from kairos_gym.data.reader import EpisodeReader
from kairos_gym.data.spaces import EpisodeEnvSpec, restrict_to_camera
from kairos_gym.errors import DatasetError, ShapeError

__all__ = ["UNIFIED_CAMERA", "UNIFIED_ENV_ID", "Embodiment", "UnifiedLayout", "unify_episodes"]

UNIFIED_ENV_ID = "kairos_gym/MultiEmbodiment"
"""The ``env_id`` of a unified spec: not a simulator (each embodiment has its own)."""
UNIFIED_CAMERA = "view"
"""The one camera of a unified spec: observation key ``view_image``."""


@dataclass(frozen=True)
class Embodiment:
    """One embodiment of a :class:`UnifiedLayout`: a name and its real env's spec, restricted
    to the one camera the model generates."""

    name: str
    spec: EpisodeEnvSpec

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name.isidentifier():
            raise ValueError(f"an embodiment name must be an identifier, got {self.name!r}")
        if len(self.spec.cameras) != 1:
            raise ValueError(f"embodiment {self.name!r}: its spec must have exactly one camera, "
                             f"has {list(self.spec.cameras)}")

    @property
    def keys(self) -> ObservationKeys:
        """The image and state keys of the embodiment's observations."""
        return ObservationKeys.from_spec(self.spec)

    @property
    def action_dim(self) -> int:
        """Width of the embodiment's actions."""
        return self.spec.action_dim

    @property
    def state_dim(self) -> int:
        """Width of the embodiment's non-image observations, flattened."""
        return self.keys.state_width

    @property
    def max_episode_steps(self) -> int | None:
        """The real env's episode limit (None: unlimited)."""
        value = self.spec.env_kwargs.get("max_episode_steps")
        return None if value is None else int(value)


@dataclass(frozen=True)
class UnifiedLayout:
    """Where each embodiment's actions and state lie in the unified vectors (module docstring).

    Attributes:
        embodiments: in slot order; names are unique and every camera has one image shape.

    Raises:
        ValueError: no embodiment, repeated names, or cameras of different image shapes.
    """

    embodiments: tuple[Embodiment, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "embodiments", tuple(self.embodiments))
        if not self.embodiments:
            raise ValueError("a unified layout needs at least one embodiment")
        names = [e.name for e in self.embodiments]
        if len(set(names)) != len(names):
            raise ValueError(f"embodiment names repeat: {names}")
        shapes = {e.name: tuple(e.spec.observation_space[e.spec.image_keys[0]].shape)
                  for e in self.embodiments}
        if len(set(shapes.values())) != 1:
            raise ValueError(f"one model generates one frame size, but the cameras' images are {shapes}")

    # --- geometry ---
    @property
    def names(self) -> tuple[str, ...]:
        """Embodiment names, in slot order."""
        return tuple(e.name for e in self.embodiments)

    @property
    def action_dim(self) -> int:
        """Width of a unified action: every embodiment's action slots plus the one-hot."""
        return sum(e.action_dim for e in self.embodiments) + len(self.embodiments)

    @property
    def state_dim(self) -> int:
        """Width of a unified state: every embodiment's state slots plus the one-hot."""
        return sum(e.state_dim for e in self.embodiments) + len(self.embodiments)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """``(H, W, 3)`` of every embodiment's frames."""
        e = self.embodiments[0]
        return tuple(e.spec.observation_space[e.spec.image_keys[0]].shape)  # type: ignore[return-value]

    def index(self, name: str) -> int:
        """The slot index of embodiment ``name``.

        Raises:
            ValueError: no such embodiment (the message lists the known ones).
        """
        if name not in self.names:
            raise ValueError(f"unknown embodiment {name!r}; this layout has {list(self.names)}")
        return self.names.index(name)

    def embodiment(self, name: str) -> Embodiment:
        """The embodiment called ``name`` (ValueError if there is none)."""
        return self.embodiments[self.index(name)]

    def _slices(self, widths: Sequence[int]) -> list[slice]:
        out, offset = [], 0
        for w in widths:
            out.append(slice(offset, offset + w))
            offset += w
        return out

    def action_slice(self, name: str) -> slice:
        """Where ``name``'s actions lie in a unified action."""
        return self._slices([e.action_dim for e in self.embodiments])[self.index(name)]

    def state_slice(self, name: str) -> slice:
        """Where ``name``'s flattened state lies in a unified state."""
        return self._slices([e.state_dim for e in self.embodiments])[self.index(name)]

    def _one_hot(self, name: str, lead: tuple[int, ...]) -> np.ndarray:
        hot = np.zeros((*lead, len(self.embodiments)), dtype=np.float32)
        hot[..., self.index(name)] = 1.0
        return hot

    # --- conversions ---
    def unify_action(self, name: str, action: Any) -> np.ndarray:
        """``[..., A_name]`` -> float32 ``[..., A]``: ``name``'s slots, zeros, the one-hot.

        Raises:
            ShapeError: the last dimension is not the embodiment's action width.
        """
        a = np.asarray(action, dtype=np.float32)
        e = self.embodiment(name)
        if a.ndim < 1 or a.shape[-1] != e.action_dim:
            raise ShapeError(f"{name} actions must be [..., {e.action_dim}], got {a.shape}")
        lead = a.shape[:-1]
        out = np.zeros((*lead, self.action_dim), dtype=np.float32)
        out[..., self.action_slice(name)] = a
        out[..., self.action_dim - len(self.embodiments):] = self._one_hot(name, lead)
        return out

    def unify_observation(self, name: str, obs: Mapping[str, Any]) -> dict[str, np.ndarray]:
        """``name``'s observation (or a batch ``[...]`` of them) -> ``{"view_image", "state"}``.

        Raises:
            ShapeError: a missing key or a wrong shape.
        """
        e = self.embodiment(name)
        keys = e.keys
        image_key = keys.image_keys[0]
        if image_key not in obs:
            raise ShapeError(f"a {name} observation needs {image_key!r} (has {sorted(obs)})")
        image = np.asarray(obs[image_key])
        state = keys.concat_state(obs)
        lead = state.shape[:-1]
        out = np.zeros((*lead, self.state_dim), dtype=np.float32)
        out[..., self.state_slice(name)] = state
        out[..., self.state_dim - len(self.embodiments):] = self._one_hot(name, lead)
        return {f"{UNIFIED_CAMERA}_image": image, "state": out}

    def split_observation(self, name: str, obs: Mapping[str, Any]) -> dict[str, np.ndarray]:
        """A unified observation (or batch) -> ``name``'s observation, in its space's key order
        (state values clipped into their bounds and cast, as the imagined env does)."""
        e = self.embodiment(name)
        keys = e.keys
        state = np.asarray(obs["state"], dtype=np.float32)[..., self.state_slice(name)]
        parts = keys.split_state(state)
        parts[keys.image_keys[0]] = np.asarray(obs[f"{UNIFIED_CAMERA}_image"])
        return {k: parts[k] for k in e.spec.observation_space.spaces}

    def embodiment_of(self, state: Any) -> np.ndarray:
        """``[..., S]`` unified states -> int ``[...]``: the slot index their one-hot names."""
        s = np.asarray(state, dtype=np.float32)
        return np.argmax(s[..., self.state_dim - len(self.embodiments):], axis=-1)

    # --- the unified spec ---
    def spec(self) -> EpisodeEnvSpec:
        """The unified env spec: ``view_image`` + ``state`` observations, the unified action
        ``Box`` (each slot with its embodiment's bounds widened to hold 0, the one-hot in
        [0, 1]), and this
        layout in ``env_kwargs["embodiments"]``. Control rate and episode limit are the
        largest of the embodiments' (each embodiment's own are in its spec)."""
        lows, highs = [], []
        for e in self.embodiments:
            # Widened to hold 0: the slots of the other embodiments are zero in every action.
            lows.append(np.minimum(np.asarray(e.spec.action_space.low, np.float32).reshape(-1), 0))
            highs.append(np.maximum(np.asarray(e.spec.action_space.high, np.float32).reshape(-1), 0))
        k = len(self.embodiments)
        action_space = gym.spaces.Box(
            np.concatenate([*lows, np.zeros(k, np.float32)]),
            np.concatenate([*highs, np.ones(k, np.float32)]), dtype=np.float32)
        h, w, _ = self.image_shape
        observation_space = gym.spaces.Dict({
            f"{UNIFIED_CAMERA}_image": gym.spaces.Box(0, 255, (h, w, 3), dtype=np.uint8),
            "state": gym.spaces.Box(-np.inf, np.inf, (self.state_dim,), dtype=np.float32),
        })
        limits = [e.max_episode_steps for e in self.embodiments]
        kwargs: dict[str, Any] = {
            "embodiments": [{"name": e.name, "spec": e.spec.to_dict()} for e in self.embodiments],
            "max_episode_steps": None if None in limits else max(limits),
        }
        return EpisodeEnvSpec(
            UNIFIED_ENV_ID, kwargs, observation_space, action_space,
            max(e.spec.control_freq for e in self.embodiments),
            " / ".join(e.spec.instruction for e in self.embodiments if e.spec.instruction),
            (UNIFIED_CAMERA,), (h, w),
        )

    @classmethod
    def from_spec(cls, spec: EpisodeEnvSpec) -> UnifiedLayout:
        """The layout a unified spec carries.

        Raises:
            ValueError: ``spec`` is not a unified spec, or its layout is malformed.
        """
        if not is_unified(spec):
            raise ValueError(f"{spec.env_id!r} is one embodiment's env, not a unified spec")
        try:
            layout = cls(tuple(Embodiment(str(d["name"]), EpisodeEnvSpec.from_dict(d["spec"]))
                               for d in spec.env_kwargs["embodiments"]))
        except (KeyError, TypeError) as exc:
            raise ValueError(f"malformed embodiments in a unified spec: {exc!r}") from None
        if layout.spec().differences(spec):
            raise ValueError(f"the unified spec's spaces do not match its layout "
                             f"(fields {layout.spec().differences(spec)})")
        return layout


def is_unified(spec: EpisodeEnvSpec) -> bool:
    """Whether ``spec`` is a unified (multi-embodiment) spec."""
    return spec.env_id == UNIFIED_ENV_ID


def unify_episodes(source: str | os.PathLike, destination: str | os.PathLike,
                   layout: UnifiedLayout, name: str) -> int:
    """Write ``destination``: ``source``'s episodes of embodiment ``name`` in the unified layout.

    Observations become ``view_image`` (the embodiment's camera) and the unified ``state``;
    actions the unified actions; rewards, dones, success, seeds and instructions are copied.
    Simulator states are left out (they differ in width between embodiments).

    Returns:
        The number of episodes written.

    Raises:
        FileExistsError: ``destination`` exists (it is never overwritten or appended to).
        DatasetError: ``source`` is unreadable or was recorded with another env than the
            embodiment's (its spec, restricted to the camera, differs).
        ValueError: ``name`` is not in ``layout``.
    """
    e = layout.embodiment(name)
    if os.path.exists(destination):
        raise FileExistsError(f"{destination} exists; unify writes a new file")
    with EpisodeReader(source) as reader:
        try:
            mine = restrict_to_camera(reader.env_spec, e.spec.cameras[0])
        except DatasetError as exc:
            raise DatasetError(f"{source} is not embodiment {name!r}'s data: {exc}") from None
        diffs = mine.differences(e.spec)
        if diffs:
            raise DatasetError(f"{source} was recorded with a different env than embodiment "
                               f"{name!r} (fields {diffs})")
        # Written beside the destination and moved into place whole: a conversion that fails
        # half-way leaves no partial file that a second try would refuse to overwrite.
        partial = f"{os.fspath(destination)}.partial"
        if os.path.exists(partial):
            os.remove(partial)
        try:
            written = _convert(reader, partial, layout, name)
        except BaseException:
            if os.path.exists(partial):
                os.remove(partial)
            raise
    os.replace(partial, destination)
    return written


def _convert(reader: EpisodeReader, path: str, layout: UnifiedLayout, name: str) -> int:
    """Write every episode of ``reader`` (embodiment ``name``) into a new file at ``path``."""
    written = 0
    with EpisodeWriter(path, layout.spec()) as writer:
        for episode in reader:
            data = episode.load()
            final = data["final_obs"]
            writer.write_episode(
                obs=layout.unify_observation(name, data["obs"]),
                actions=layout.unify_action(name, data["actions"]),
                rewards=data["rewards"], dones=data["dones"], success=data["success"],
                final_obs=None if final is None else layout.unify_observation(name, final),
                seed=episode.seed, instruction=episode.instruction,
            )
            written += 1
    return written


def layout_from_files(embodiments: Sequence[tuple[str, str, str]]) -> UnifiedLayout:
    """A layout from ``(name, camera, episode file)`` triples: each embodiment's spec is the
    file's, restricted to the camera.

    Raises:
        DatasetError: an unreadable file or a camera it does not have.
    """
    out = []
    for name, camera, path in embodiments:
        with EpisodeReader(path) as reader:
            out.append(Embodiment(name, restrict_to_camera(reader.env_spec, camera)))
    return UnifiedLayout(tuple(out))


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m kairos_gym.data.unified OUT_DIR --embodiment NAME CAMERA FILE... [...]``"""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("output", help="directory to write OUT/<embodiment>/<file name> into")
    parser.add_argument("--embodiment", action="append", nargs="+", required=True,
                        metavar="NAME CAMERA FILE", help="an embodiment, its camera and its files "
                        "(repeat per embodiment; the first file's env defines the embodiment)")
    args = parser.parse_args(argv)
    groups = []
    for group in args.embodiment:
        if len(group) < 3:
            parser.error(f"--embodiment needs NAME CAMERA FILE [FILE ...], got {group}")
        groups.append((group[0], group[1], group[2:]))
    try:
        layout = layout_from_files([(n, c, files[0]) for n, c, files in groups])
        for name, _, files in groups:
            os.makedirs(os.path.join(args.output, name), exist_ok=True)
            for path in files:
                out = os.path.join(args.output, name, os.path.basename(path))
                n = unify_episodes(path, out, layout, name)
                print(f"{out}: {n} episodes")
    except (DatasetError, FileExistsError, ShapeError, ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"layout: actions {layout.action_dim}, state {layout.state_dim}, "
          f"frames {layout.image_shape}, embodiments {list(layout.names)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
