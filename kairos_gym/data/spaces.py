"""Gymnasium spaces as JSON, and the environment description stored with every dataset.

Episode files and checkpoints must say exactly which environment produced them, so that
the imagined environment can later rebuild the real environment's spaces bit for bit and a
resumed collection can refuse to mix data from two different set-ups.

- :func:`space_to_json` / :func:`space_from_json`: ``Box`` and flat ``Dict`` of ``Box``
  round-trip exactly (shape, dtype, every bound). Uniform bounds are stored as one number
  so a ``64x64x3`` image space stays a few bytes; non-finite bounds are stored as the
  strings ``"inf"``, ``"-inf"``, ``"nan"`` so the JSON stays standard.
- :class:`EpisodeEnvSpec`: env id, ``gym.make`` kwargs, spaces, control rate, instruction,
  cameras, image size; ``to_json()`` / ``from_json()`` and :meth:`EpisodeEnvSpec.from_env`
  to describe a live environment; :func:`restrict_to_camera` for the one camera a model
  generates and :func:`restrict_to_state_keys` for the observation keys its state is made of.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Mapping, Sequence
from typing import Any

import gymnasium as gym
import numpy as np

from kairos_gym.errors import DatasetError

SPEC_FORMAT_VERSION = 1
MAX_SPACE_ELEMENTS = 2**26
"""The most elements one ``Box`` description may declare (a 4096 x 4096 x 3 image is 50M):
Gymnasium allocates full ``low``/``high`` arrays, so a hostile description could otherwise
ask for any amount of memory."""

_NONFINITE = {"inf": math.inf, "-inf": -math.inf, "nan": math.nan}


def _encode_number(value: Any) -> Any:
    """One scalar bound as JSON: int, float, or a string for inf/nan."""
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    value = float(value)
    if math.isnan(value):
        return "nan"
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    return value


def _decode_number(value: Any) -> Any:
    if isinstance(value, str):
        if value not in _NONFINITE:
            raise ValueError(
                f"bad bound {value!r} in a space description; expected a number or one of {sorted(_NONFINITE)}"
            )
        return _NONFINITE[value]
    return value


def _encode_bounds(array: np.ndarray) -> Any:
    """A bound array as one scalar when uniform (the common case), else a nested list."""
    flat = array.reshape(-1)
    if flat.size > 0 and np.array_equal(flat, np.full_like(flat, flat[0]), equal_nan=True):
        return _encode_number(flat[0])

    def nest(a: np.ndarray) -> Any:
        if a.ndim == 0:
            return _encode_number(a.item())
        return [nest(x) for x in a]

    return nest(array)


def _decode_bounds(value: Any, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    def unnest(v: Any) -> Any:
        return [unnest(x) for x in v] if isinstance(v, list) else _decode_number(v)

    arr = np.asarray(unnest(value), dtype=dtype)
    if arr.ndim == 0:
        return np.full(shape, arr, dtype=dtype)
    if arr.shape != shape:
        raise ValueError(f"bound of shape {arr.shape} does not match the space shape {shape}")
    return arr


def space_to_json(space: gym.Space) -> dict[str, Any]:
    """Describe a ``Box`` or a flat ``Dict`` of ``Box`` as a JSON-serialisable dict.

    ``Box`` -> ``{"type": "Box", "shape": [...], "dtype": "float32", "low": ..., "high": ...}``
    where ``low``/``high`` are one number when uniform, else nested lists of the full shape.
    ``Dict`` -> ``{"type": "Dict", "spaces": {key: <Box>, ...}}`` (key order kept).

    Raises:
        TypeError: for any other space, or a ``Dict`` nested inside a ``Dict``.
    """
    if isinstance(space, gym.spaces.Box):
        return {
            "type": "Box",
            "shape": [int(s) for s in space.shape],
            "dtype": np.dtype(space.dtype).name,
            "low": _encode_bounds(np.asarray(space.low)),
            "high": _encode_bounds(np.asarray(space.high)),
        }
    if isinstance(space, gym.spaces.Dict):
        out: dict[str, Any] = {}
        for key, sub in space.spaces.items():
            if not isinstance(sub, gym.spaces.Box):
                raise TypeError(
                    f"only flat Dict spaces of Box are supported; entry {key!r} is {sub!r}"
                )
            out[key] = space_to_json(sub)
        return {"type": "Dict", "spaces": out}
    raise TypeError(f"cannot describe space {space!r} as JSON: only Box and flat Dict of Box are supported")


def space_from_json(data: dict[str, Any]) -> gym.Space:
    """Rebuild the space described by :func:`space_to_json` (exact bounds, shape, dtype).

    Raises:
        ValueError: malformed description (unknown type, bound of the wrong shape).
    """
    if not isinstance(data, dict) or "type" not in data:
        raise ValueError(f"a space description must be a dict with a 'type', got {data!r}")
    kind = data["type"]
    if kind == "Box":
        try:
            shape_raw, dtype = data["shape"], np.dtype(data["dtype"])
            low_raw, high_raw = data["low"], data["high"]
        except KeyError as exc:
            raise ValueError(f"Box description lacks {exc.args[0]!r}: {data!r}") from None
        if (
            not isinstance(shape_raw, list)
            or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in shape_raw)
        ):
            raise ValueError(f"a Box shape must be a list of integers >= 0, got {shape_raw!r}")
        shape = tuple(shape_raw)
        if math.prod(shape) > MAX_SPACE_ELEMENTS:
            raise ValueError(
                f"a Box of shape {shape} has {math.prod(shape)} elements, more than the "
                f"{MAX_SPACE_ELEMENTS} a space description may declare"
            )
        if dtype.kind not in "fiub":
            raise ValueError(f"a Box dtype must be numeric, got {dtype}")
        low = _decode_bounds(low_raw, shape, dtype)
        high = _decode_bounds(high_raw, shape, dtype)
        return gym.spaces.Box(low=low, high=high, shape=shape, dtype=dtype)
    if kind == "Dict":
        spaces = data.get("spaces")
        if not isinstance(spaces, dict):
            raise ValueError(f"Dict description lacks a 'spaces' mapping: {data!r}")
        subs = {}
        for key, sub in spaces.items():
            if not isinstance(sub, dict) or sub.get("type") != "Box":
                raise ValueError(f"only flat Dict spaces of Box are supported; entry {key!r} is {sub!r}")
            subs[key] = space_from_json(sub)
        return gym.spaces.Dict(subs)
    raise ValueError(f"unknown space type {kind!r}; expected 'Box' or 'Dict'")


def spaces_equal(a: gym.Space, b: gym.Space) -> bool:
    """Exact equality of two Box / flat Dict spaces (gymnasium's ``==`` uses ``allclose``)."""
    if isinstance(a, gym.spaces.Dict) and isinstance(b, gym.spaces.Dict):
        return list(a.spaces) == list(b.spaces) and all(
            spaces_equal(a[k], b[k]) for k in a.spaces
        )
    if isinstance(a, gym.spaces.Box) and isinstance(b, gym.spaces.Box):
        return (
            a.shape == b.shape
            and a.dtype == b.dtype
            and np.array_equal(a.low, b.low, equal_nan=True)
            and np.array_equal(a.high, b.high, equal_nan=True)
        )
    return False


def _jsonable(value: Any, what: str) -> Any:
    """Normalise through JSON (tuples become lists) so live and loaded specs compare equal."""
    try:
        return json.loads(json.dumps(value, allow_nan=False))
    except (TypeError, ValueError) as exc:
        raise TypeError(f"{what} must be JSON-serialisable, got {value!r} ({exc})") from None


@dataclasses.dataclass(frozen=True, eq=False)
class EpisodeEnvSpec:
    """Everything needed to rebuild an environment's interface: stored in every episode file.

    Attributes:
        env_id: gymnasium id (``"kairos_gym/Robosuite-Lift-v0"``).
        env_kwargs: the ``gym.make`` keyword arguments that made it (``cameras``,
            ``image_size``, ``max_episode_steps``...), normalised through JSON.
        observation_space: flat ``Dict``: ``<camera>_image`` uint8 ``[H, W, 3]`` + ``state``.
        action_space: float32 ``Box`` ``[A]``.
        control_freq: control steps per second (Hz).
        instruction: the environment's task instruction.
        cameras: camera names, in order; each has an ``<camera>_image`` observation key.
        image_size: ``(H, W)`` of the camera images, ``None`` when there is no camera.
    """

    env_id: str
    env_kwargs: dict[str, Any]
    observation_space: gym.spaces.Dict
    action_space: gym.spaces.Box
    control_freq: float
    instruction: str = ""
    cameras: tuple[str, ...] = ()
    image_size: tuple[int, int] | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.env_id, str) or not self.env_id:
            raise ValueError(f"env_id must be a non-empty string, got {self.env_id!r}")
        object.__setattr__(self, "env_kwargs", _jsonable(dict(self.env_kwargs), "env_kwargs"))
        if not isinstance(self.observation_space, gym.spaces.Dict):
            raise TypeError(f"observation_space must be a flat gymnasium Dict, got {self.observation_space!r}")
        space_to_json(self.observation_space)  # rejects nested / non-Box entries
        if not isinstance(self.action_space, gym.spaces.Box):
            raise TypeError(f"action_space must be a gymnasium Box, got {self.action_space!r}")
        freq = float(self.control_freq)
        if not math.isfinite(freq) or freq <= 0:
            raise ValueError(f"control_freq must be a positive number, got {self.control_freq!r}")
        object.__setattr__(self, "control_freq", freq)
        object.__setattr__(self, "instruction", str(self.instruction))
        cameras = tuple(str(c) for c in self.cameras)
        object.__setattr__(self, "cameras", cameras)
        for cam in cameras:
            key = f"{cam}_image"
            if key not in self.observation_space.spaces:
                raise ValueError(
                    f"camera {cam!r} has no {key!r} entry in the observation space "
                    f"(keys: {list(self.observation_space.spaces)})"
                )
            image = self.observation_space[key]
            if image.dtype != np.uint8 or len(image.shape) != 3 or image.shape[-1] != 3:
                raise ValueError(
                    f"camera {cam!r} images must be uint8 [H, W, 3], got {image.dtype} "
                    f"{list(image.shape)}"
                )
        if self.image_size is not None:
            size = tuple(int(s) for s in self.image_size)
            if len(size) != 2 or min(size) <= 0:
                raise ValueError(f"image_size must be (H, W) with positive entries, got {self.image_size!r}")
            object.__setattr__(self, "image_size", size)
            for cam in cameras:
                shape = self.observation_space[f"{cam}_image"].shape
                if tuple(shape[:2]) != size:
                    raise ValueError(
                        f"camera {cam!r} images have shape {shape}, but image_size is {size}"
                    )

    @property
    def image_keys(self) -> tuple[str, ...]:
        """Observation keys of the camera images, in camera order."""
        return tuple(f"{cam}_image" for cam in self.cameras)

    @property
    def action_dim(self) -> int:
        """``A``: the length of one action."""
        return int(np.prod(self.action_space.shape))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, EpisodeEnvSpec):
            return NotImplemented
        return not self.differences(other)

    def differences(self, other: EpisodeEnvSpec) -> list[str]:
        """Names of the fields that differ from ``other`` (empty when the specs are equal)."""
        diffs = []
        for field in dataclasses.fields(self):
            mine, theirs = getattr(self, field.name), getattr(other, field.name)
            if field.name.endswith("_space"):
                same = spaces_equal(mine, theirs)
            else:
                same = mine == theirs
            if not same:
                diffs.append(field.name)
        return diffs

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable dict (spaces through :func:`space_to_json`)."""
        return {
            "format_version": SPEC_FORMAT_VERSION,
            "env_id": self.env_id,
            "env_kwargs": self.env_kwargs,
            "observation_space": space_to_json(self.observation_space),
            "action_space": space_to_json(self.action_space),
            "control_freq": self.control_freq,
            "instruction": self.instruction,
            "cameras": list(self.cameras),
            "image_size": list(self.image_size) if self.image_size is not None else None,
        }

    def to_json(self) -> str:
        """The spec as a JSON string (what episode files store in ``data.attrs["env_spec"]``)."""
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> EpisodeEnvSpec:
        """Inverse of :meth:`to_dict`.

        Raises:
            ValueError: a required field is missing or the format version is newer than this code.
        """
        version = data.get("format_version", 1)
        if not isinstance(version, int) or version > SPEC_FORMAT_VERSION:
            raise ValueError(
                f"env spec format_version {version!r} is newer than this kairos-gym understands "
                f"({SPEC_FORMAT_VERSION}); upgrade kairos-gym"
            )
        try:
            image_size = data.get("image_size")
            return cls(
                env_id=data["env_id"],
                env_kwargs=data.get("env_kwargs", {}),
                observation_space=space_from_json(data["observation_space"]),
                action_space=space_from_json(data["action_space"]),
                control_freq=data["control_freq"],
                instruction=data.get("instruction", ""),
                cameras=tuple(data.get("cameras", ())),
                image_size=tuple(image_size) if image_size is not None else None,
            )
        except KeyError as exc:
            raise ValueError(f"env spec lacks the field {exc.args[0]!r}") from None

    @classmethod
    def from_json(cls, text: str | bytes) -> EpisodeEnvSpec:
        """Parse a spec written by :meth:`to_json`."""
        if isinstance(text, bytes):
            text = text.decode("utf-8")
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError(f"env spec is not valid JSON ({exc}): {text[:200]!r}") from None
        if not isinstance(data, dict):
            # Malformed file content, not a wrong argument: a ValueError like every bad spec.
            raise ValueError(f"env spec must be a JSON object, got {text[:200]!r}")  # noqa: TRY004
        return cls.from_dict(data)

    @classmethod
    def from_env(cls, env: gym.Env, env_kwargs: dict[str, Any] | None = None) -> EpisodeEnvSpec:
        """Describe a live kairos-gym environment (wrapped or not).

        Args:
            env: an environment following the kairos-gym conventions (``instruction`` and
                ``control_freq`` attributes, ``<camera>_image`` observation keys).
            env_kwargs: the ``gym.make`` kwargs that built it; by default taken from
                ``env.spec.kwargs`` (plus ``max_episode_steps`` when the spec sets one).
        """
        base = env.unwrapped
        spec = env.spec
        env_id = spec.id if spec is not None else type(base).__name__
        if env_kwargs is None:
            env_kwargs = dict(spec.kwargs) if spec is not None else {}
            if spec is not None and spec.max_episode_steps is not None:
                env_kwargs.setdefault("max_episode_steps", spec.max_episode_steps)
        control_freq = getattr(base, "control_freq", None)
        if control_freq is None:
            control_freq = env.metadata.get("render_fps")
        if control_freq is None:
            raise ValueError(
                f"environment {env_id!r} has neither a control_freq attribute nor metadata['render_fps']"
            )
        obs_space = env.observation_space
        cameras = getattr(base, "cameras", None)
        if cameras is None and isinstance(obs_space, gym.spaces.Dict):
            cameras = [k[: -len("_image")] for k in obs_space.spaces if k.endswith("_image")]
        cameras = tuple(cameras or ())
        image_size = None
        if cameras:
            image_size = tuple(obs_space[f"{cameras[0]}_image"].shape[:2])
        return cls(
            env_id=env_id,
            env_kwargs=env_kwargs,
            observation_space=obs_space,
            action_space=env.action_space,
            control_freq=float(control_freq),
            instruction=str(getattr(base, "instruction", "")),
            cameras=cameras,
            image_size=image_size,
        )


def restrict_to_camera(spec: EpisodeEnvSpec, camera: str) -> EpisodeEnvSpec:
    """``spec`` with only ``camera``'s image in the observation space (the model generates one)."""
    if camera not in spec.cameras:
        raise DatasetError(f"the data has cameras {list(spec.cameras)}, not {camera!r}")
    if spec.cameras == (camera,):
        return spec
    others = {f"{c}_image" for c in spec.cameras if c != camera}
    space = gym.spaces.Dict(
        {k: v for k, v in spec.observation_space.spaces.items() if k not in others}
    )
    kwargs = dict(spec.env_kwargs)
    if "cameras" in kwargs:
        kwargs["cameras"] = [camera]
    return EpisodeEnvSpec(
        spec.env_id,
        kwargs,
        space,
        spec.action_space,
        spec.control_freq,
        spec.instruction,
        (camera,),
        spec.image_size,
    )


def restrict_to_state_keys(
    spec: EpisodeEnvSpec,
    keys: Sequence[str],
    env_options: Mapping[str, str] | None = None,
) -> EpisodeEnvSpec:
    """``spec`` with only ``keys`` beside the camera images in its observation space.

    A model's state is every non-image key of its spec; this chooses them, so that files
    recorded with an extra key (``joints``, ``object_state``) can train a model without it,
    beside files that never had it. Where an env option adds a dropped key (``env_options``:
    ``{key: option}``, e.g. ``{"joints": "joint_obs"}``), the option is removed from the env
    kwargs as well: the spec then describes the env the model imitates, and the real env
    rebuilt from it (an agreement run's) has the same keys as the imagined one.

    Args:
        spec: a file's spec.
        keys: non-image observation keys of ``spec`` to keep (any order: the state is
            concatenated in the observation space's own, sorted, order).
        env_options: the env option that adds each optional key.

    Raises:
        ValueError: ``keys`` not a list of strings. DatasetError: a key the spec does not
            have, an image key, or a key named twice.
    """
    if not isinstance(keys, (list, tuple)) or not all(isinstance(k, str) for k in keys):
        raise ValueError(f"state keys must be a list of observation keys, got {keys!r}")
    keys = list(keys)
    images = set(spec.image_keys)
    available = [k for k in spec.observation_space.spaces if k not in images]
    unknown = [k for k in keys if k not in available]
    if unknown or len(set(keys)) != len(keys):
        raise DatasetError(
            f"state keys {keys} must name each of them once, from the data's non-image "
            f"observation keys {available}" + (f" ({unknown} are not among them)" if unknown else "")
        )
    dropped = [k for k in available if k not in keys]
    if not dropped:
        return spec
    space = gym.spaces.Dict(
        {k: v for k, v in spec.observation_space.spaces.items() if k not in dropped}
    )
    options = {(env_options or {}).get(k) for k in dropped} - {None}
    kwargs = {k: v for k, v in spec.env_kwargs.items() if k not in options}
    return dataclasses.replace(spec, env_kwargs=kwargs, observation_space=space)
