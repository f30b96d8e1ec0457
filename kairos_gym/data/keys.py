"""Observation keys: which entries of an observation are camera images and which are state.

An imagined environment generates its camera image and predicts everything else through
one flat state vector ``[S]``; the trainer, the clip dataset, open-loop evaluation and the
env checkpoint must therefore agree on which keys make up that vector, in which order, and
how wide each one is. :class:`ObservationKeys` is that single definition::

    keys = ObservationKeys.from_spec(spec)       # images: spec.cameras; state: every other key
    keys.state_keys                              # ("eef_pos", "gripper", "contact"), space order
    keys.state_width                             # S = 3 + 2 + 1
    flat = keys.concat_state(obs)                # {key: [..., *shape]} -> float32 [..., S]
    parts = keys.split_state(flat)               # float32 [..., S] -> {key: [..., *shape]}

:meth:`ObservationKeys.from_reader` gives the keys of an episode file: those of its env spec
for kairos-gym files, and for LIBERO / robomimic files (which carry no env spec) the
layout's usual proprioception (:data:`LAYOUT_STATE_KEYS`), which is what VLA policies read.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import gymnasium as gym
import numpy as np

from kairos_gym.data.spaces import EpisodeEnvSpec, spaces_equal
from kairos_gym.errors import DatasetError, ShapeError

if TYPE_CHECKING:
    from kairos_gym.data.reader import EpisodeReader

__all__ = ["CAMERA_SUFFIXES", "LAYOUT_STATE_KEYS", "PRIVILEGED_KEYS", "ObservationKeys"]

CAMERA_SUFFIXES = ("_image", "_rgb")
"""Suffixes of camera observation keys: kairos-gym and robomimic (``_image``), LIBERO (``_rgb``)."""

PRIVILEGED_KEYS = ("object_state",)
"""Observation keys of simulator ground truth (``object_obs=True``): world models may carry
them, policies that claim to see only observations must not read them."""

LAYOUT_STATE_KEYS: dict[str, tuple[str, ...]] = {
    "libero": ("ee_states", "gripper_states"),
    "robomimic": ("robot0_eef_pos", "robot0_eef_quat", "robot0_gripper_qpos"),
}
"""Default state keys of episode files without an env spec (those present are used, in this
order); a file whose observations hold a ``state`` key uses that one instead."""


@dataclasses.dataclass(frozen=True, eq=False)
class ObservationKeys:
    """The camera keys and the state keys of an observation space, and the state's layout.

    Attributes:
        image_keys: camera image keys, in the order of the observation space.
        state_keys: the keys concatenated into the state vector, in the order of the
            observation space (for :meth:`from_spec`: every key that is not a camera image).
        state_spaces: the ``Box`` of each state key (shape, dtype and bounds), aligned with
            ``state_keys``.

    Raises:
        ValueError: the tuples differ in length, or a key repeats (a state key that is also
            an image key). TypeError: a state space that is not a ``Box``.
    """

    image_keys: tuple[str, ...]
    state_keys: tuple[str, ...]
    state_spaces: tuple[gym.spaces.Box, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "image_keys", tuple(str(k) for k in self.image_keys))
        object.__setattr__(self, "state_keys", tuple(str(k) for k in self.state_keys))
        object.__setattr__(self, "state_spaces", tuple(self.state_spaces))
        if len(self.state_keys) != len(self.state_spaces):
            raise ValueError(
                f"{len(self.state_keys)} state keys {list(self.state_keys)} but "
                f"{len(self.state_spaces)} state spaces"
            )
        every = self.image_keys + self.state_keys
        repeated = sorted({k for k in every if every.count(k) > 1})
        if repeated:
            raise ValueError(
                f"observation keys {repeated} are listed twice (images {list(self.image_keys)}, "
                f"state {list(self.state_keys)})"
            )
        for key, sub in zip(self.state_keys, self.state_spaces):
            if not isinstance(sub, gym.spaces.Box):
                raise TypeError(f"state key {key!r} must have a Box space, got {sub!r}")

    @classmethod
    def from_space(
        cls,
        space: gym.spaces.Dict,
        *,
        image_keys: Sequence[str] | None = None,
        state_keys: Sequence[str] | None = None,
    ) -> ObservationKeys:
        """The keys of a flat ``Dict`` observation space.

        Args:
            space: a flat ``Dict`` of ``Box`` (every kairos-gym observation space).
            image_keys: the camera keys; default: keys ending in one of
                :data:`CAMERA_SUFFIXES` (``agentview_image``, LIBERO's ``agentview_rgb``).
            state_keys: the state keys; default: every key that is not an image. Either way
                they are kept in the order of ``space``.

        Raises:
            TypeError: ``space`` is not a flat ``Dict`` of ``Box``.
            ValueError: a named key is not in ``space``.
        """
        if not isinstance(space, gym.spaces.Dict):
            raise TypeError(f"an observation space must be a flat gymnasium Dict, got {space!r}")
        order = list(space.spaces)
        if image_keys is None:
            images = {k for k in order if k.endswith(CAMERA_SUFFIXES)}
        else:
            images = set(image_keys)
        if state_keys is None:
            states = {k for k in order if k not in images}
        else:
            states = set(state_keys)
        unknown = sorted((images | states) - set(order))
        if unknown:
            raise ValueError(f"keys {unknown} are not in the observation space (keys: {order})")
        picked = [k for k in order if k in states]
        return cls(
            image_keys=tuple(k for k in order if k in images),
            state_keys=tuple(picked),
            state_spaces=tuple(space[k] for k in picked),
        )

    @classmethod
    def from_spec(cls, spec: EpisodeEnvSpec) -> ObservationKeys:
        """The keys of an env spec: its cameras' ``<camera>_image`` keys are the images and
        every other key is state (what an imagined env predicts with its state head)."""
        return cls.from_space(spec.observation_space, image_keys=spec.image_keys)

    @classmethod
    def from_reader(
        cls, reader: EpisodeReader, state_keys: Sequence[str] | None = None
    ) -> ObservationKeys:
        """The keys of an open episode file.

        Args:
            reader: the file.
            state_keys: pick the state keys explicitly (kept in space order); default: for
                kairos-gym files those of :meth:`from_spec` on the stored env spec; for
                LIBERO / robomimic files ``("state",)`` when the file has that key, else
                those of :data:`LAYOUT_STATE_KEYS` that it has.

        Raises:
            DatasetError: a named state key the file does not have.
        """
        if reader.layout == "kairos":
            spec = reader.env_spec
            space, images = spec.observation_space, spec.image_keys
            if state_keys is None:
                return cls.from_spec(spec)
        elif len(reader):
            # The inferred spec knows no cameras for LIBERO (``_rgb`` keys): use the suffixes.
            space, images = reader.env_spec.observation_space, None
            if state_keys is None:
                present = set(space.spaces)
                if "state" in present:
                    state_keys = ("state",)
                else:
                    wanted = LAYOUT_STATE_KEYS.get(reader.layout, ())
                    state_keys = tuple(k for k in wanted if k in present)
        else:
            # A foreign file without episodes has no shapes to read; it yields no data either.
            return cls((), (), ())
        missing = [k for k in state_keys if k not in space.spaces]
        if missing:
            raise DatasetError(
                f"{reader.path}: no observation keys {missing} to use as state "
                f"(keys: {list(space.spaces)})"
            )
        return cls.from_space(space, image_keys=images, state_keys=state_keys)

    @property
    def state_shapes(self) -> dict[str, tuple[int, ...]]:
        """``{key: shape}`` of the state keys, in order."""
        return {
            k: tuple(int(d) for d in s.shape) for k, s in zip(self.state_keys, self.state_spaces)
        }

    @property
    def state_widths(self) -> dict[str, int]:
        """``{key: number of values}`` of the state keys (the flattened shape), in order."""
        return {k: int(np.prod(shape, dtype=np.int64)) for k, shape in self.state_shapes.items()}

    @property
    def state_width(self) -> int:
        """``S``: the length of the flat state vector (a state head's ``state_dim``)."""
        return sum(self.state_widths.values())

    @property
    def state_slices(self) -> dict[str, slice]:
        """``{key: slice}``: where each key's values lie in the flat state vector."""
        out, offset = {}, 0
        for key, width in self.state_widths.items():
            out[key] = slice(offset, offset + width)
            offset += width
        return out

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ObservationKeys):
            return NotImplemented
        return (
            self.image_keys == other.image_keys
            and self.state_keys == other.state_keys
            and all(spaces_equal(a, b) for a, b in zip(self.state_spaces, other.state_spaces))
        )

    def concat_state(self, obs: Mapping[str, Any]) -> np.ndarray:
        """Flatten the state keys of a (batch of) observation(s) into one vector each.

        Args:
            obs: ``{key: [..., *shape]}`` with every state key (other keys are ignored);
                the leading dimensions ``...`` (none, ``[B]``, ``[B, T]``...) must agree.

        Returns:
            float32 ``[..., S]``: each key flattened and concatenated in ``state_keys``
            order. Without state keys, ``[..., 0]`` with ``...`` taken from an image key.

        Raises:
            ShapeError: a missing key, a key whose trailing shape is not its space's, or
                leading dimensions that differ between keys.
        """
        missing = [k for k in self.state_keys if k not in obs]
        if missing:
            raise ShapeError(f"the observation lacks state keys {missing} (has {sorted(obs)})")
        lead: tuple[int, ...] | None = None
        parts = []
        widths = self.state_widths
        for key, shape in self.state_shapes.items():
            arr = np.asarray(obs[key])
            cut = arr.ndim - len(shape)
            if cut < 0 or tuple(arr.shape[cut:]) != shape:
                want = ", ".join(["...", *map(str, shape)])
                raise ShapeError(f"state key {key!r} must be [{want}], got {arr.shape}")
            if lead is None:
                lead = tuple(arr.shape[:cut])
            elif tuple(arr.shape[:cut]) != lead:
                raise ShapeError(
                    f"state key {key!r} has leading dimensions {arr.shape[:cut]}, but "
                    f"{self.state_keys[0]!r} has {lead}"
                )
            parts.append(arr.reshape((*lead, widths[key])).astype(np.float32, copy=False))
        if lead is None:
            lead = self._lead_from_images(obs)
            return np.zeros((*lead, 0), dtype=np.float32)
        return np.concatenate(parts, axis=-1)

    def _lead_from_images(self, obs: Mapping[str, Any]) -> tuple[int, ...]:
        for key in self.image_keys:
            if key in obs:
                arr = np.asarray(obs[key])
                return tuple(arr.shape[: max(arr.ndim - 3, 0)])
        raise ShapeError(
            "there are no state keys and the observation holds no image key "
            f"{list(self.image_keys)} to take its batch shape from (has {sorted(obs)})"
        )

    def split_state(self, state: Any) -> dict[str, np.ndarray]:
        """Split flat state vectors into observation entries that belong to the space.

        Each key's values are reshaped to its shape, clipped into its bounds (infinite
        bounds change nothing; finite ones keep a predicted value inside the space), rounded
        with ``np.rint`` for integer and bool dtypes, and cast to its dtype.

        Args:
            state: ``[..., S]`` (numpy or anything ``np.asarray`` takes), read as float32.

        Returns:
            ``{key: [..., *shape]}`` for every state key, in ``state_keys`` order.

        Raises:
            ShapeError: the last dimension is not ``S``.
        """
        flat = np.asarray(state, dtype=np.float32)
        width = self.state_width
        if flat.ndim < 1 or flat.shape[-1] != width:
            raise ShapeError(
                f"state must be [..., {width}] (the width of {list(self.state_keys)}), "
                f"got {flat.shape}"
            )
        lead = flat.shape[:-1]
        out = {}
        for (key, where), sub in zip(self.state_slices.items(), self.state_spaces):
            part = flat[..., where].reshape((*lead, *sub.shape))
            part = np.clip(part, sub.low, sub.high)
            if np.dtype(sub.dtype).kind in "iub":
                part = np.rint(part)
            out[key] = np.asarray(part.astype(sub.dtype))  # 0-d stays an array, not a scalar
        return out
