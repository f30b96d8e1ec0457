"""Add observation keys, recomputed from the recorded simulator states, to episode files.

World models that carry more than the policy's ``state`` (the objects' positions of
``object_state``, the arm's ``joints``) need those keys in their training data, and the
imagined env then starts from them and predicts them, exactly like the arm's ``state``.
Episode files record the flat simulator state of every observation, so a key can be
recomputed for files collected without it: each recorded state is restored in a real
simulator (``observe_sim_state`` of the robosuite and ALOHA envs) and the observation read
there, as robomimic regenerates observations from states.

    python -m kairos_gym.data.recompute --key object_state data/lift/expert10.hdf5
    python -m kairos_gym.data.recompute --key joints data/door_joints/*.hdf5

The keys (:data:`RECOMPUTABLE`): ``object_state`` (robosuite and ALOHA: the task's object
positions, env option ``object_obs``) and ``joints`` (robosuite: the arm's joint angles and
velocities, env option ``joint_obs``).

The file is updated in place: per episode, ``obs/<key>`` ``[T, K]`` and ``final_obs/<key>``
``[1, K]``; then the file's environment spec gains the key and its env option, so envs
rebuilt from it (the real env of an agreement run, the imagined env's spaces) have it too.
Episodes that already hold the key are kept, so an interrupted run is finished by running it
again. New data can be collected with the keys directly (``kairos-gym collect
--object-state --joints``).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
from collections.abc import Sequence

import gymnasium as gym
import h5py
import numpy as np

from kairos_gym.data.spaces import EpisodeEnvSpec
from kairos_gym.errors import DatasetError


@dataclasses.dataclass(frozen=True)
class Recomputable:
    """An observation key that envs add on request and that can be read from a restored state.

    Attributes:
        option: the env's constructor option that adds the key (``object_obs=True``).
        families: the env-id families that have it (``"Robosuite-"`` matches
            ``kairos_gym/Robosuite-Lift-v0``).
        described: the families in words, for errors.
    """

    option: str
    families: tuple[str, ...]
    described: str


RECOMPUTABLE: dict[str, Recomputable] = {
    "object_state": Recomputable("object_obs", ("Robosuite-", "Aloha-"), "the robosuite and ALOHA envs"),
    "joints": Recomputable("joint_obs", ("Robosuite-",), "the robosuite envs"),
}
"""The keys :func:`add_observation_key` recomputes, and the env option that adds each."""


def add_observation_key(path: str | os.PathLike, key: str, *, progress: bool = False) -> int:
    """Recompute observation ``key`` for every episode of the file at ``path`` that lacks it.

    Args:
        path: an episode file with ``states`` of an env that has the key (see
            :data:`RECOMPUTABLE`).
        key: ``"object_state"`` or ``"joints"``.
        progress: show a progress bar over episodes.

    Returns:
        The number of episodes that were given the key.

    Raises:
        ValueError: an unknown key. DatasetError: not an episode file, an env without the
            key, or episodes without states (the file is left as it was).
    """
    import kairos_gym  # noqa: F401  (registers the env ids)

    if key not in RECOMPUTABLE:
        raise ValueError(f"cannot recompute observation key {key!r}; known: {sorted(RECOMPUTABLE)}")
    what = RECOMPUTABLE[key]
    path = os.fspath(path)
    try:
        with h5py.File(path, "r") as f:
            spec = EpisodeEnvSpec.from_json(f["data"].attrs["env_spec"])
            todo = [k for k in f["data"] if key not in f["data"][k]["obs"]]
            missing_states = [k for k in todo if "states" not in f["data"][k]]
    except (OSError, KeyError) as exc:
        raise DatasetError(f"{path}: not a kairos-gym episode file ({exc})") from None
    if not any(family in spec.env_id for family in what.families):
        raise DatasetError(f"{path}: {key} is defined for {what.described}, not {spec.env_id}")
    if missing_states:
        raise DatasetError(f"{path}: episodes {missing_states[:5]} record no simulator states")
    if not todo:
        if key not in spec.observation_space.spaces:  # interrupted after the last episode
            with h5py.File(path, "r") as f:
                names = list(f["data"])
                width = f["data"][names[0]]["obs"][key].shape[1] if names else 0
            if names:
                _declare_key(path, spec, key, width)
        return 0
    kwargs = {k: v for k, v in spec.env_kwargs.items() if k not in ("cameras", what.option)}
    env = gym.make(spec.env_id, **kwargs, cameras=(), **{what.option: True})
    try:
        base = env.unwrapped
        base.reset(seed=0)
        width = env.observation_space[key].shape[0]
        bar = _progress(len(todo), progress, os.path.basename(path))
        for name in todo:
            with h5py.File(path, "r") as f:
                group = f["data"][name]
                states, final = group["states"][()], group["final_states"][()]
            values = np.stack([base.observe_sim_state(s)[key] for s in states])
            last = np.stack([base.observe_sim_state(s)[key] for s in final])
            with h5py.File(path, "a") as f:
                group = f["data"][name]
                group["obs"].create_dataset(key, data=values)
                if "final_obs" in group:
                    group["final_obs"].create_dataset(key, data=last)
            bar.update(1)
        bar.close()
    finally:
        env.close()
    _declare_key(path, spec, key, width)
    return len(todo)


def _declare_key(path: str, spec: EpisodeEnvSpec, key: str, width: int) -> None:
    """Add the key to the file's env spec and its env option to the spec's env kwargs."""
    spaces = dict(spec.observation_space.spaces)
    spaces[key] = gym.spaces.Box(-np.inf, np.inf, (width,), np.float32)
    updated = dataclasses.replace(
        spec,
        env_kwargs={**spec.env_kwargs, RECOMPUTABLE[key].option: True},
        observation_space=gym.spaces.Dict(spaces),
    )
    with h5py.File(path, "a") as f:
        attrs = f["data"].attrs
        attrs["env_spec"] = updated.to_json()
        if "env_args" in attrs:
            args = json.loads(attrs["env_args"])
            args["env_kwargs"] = dict(updated.env_kwargs)
            attrs["env_args"] = json.dumps(args)
        f.flush()


def _progress(total: int, enabled: bool, name: str):
    from tqdm.auto import tqdm

    return tqdm(total=total, disable=not enabled, desc=name, unit="episode")


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m kairos_gym.data.recompute [--key KEY] FILE...``"""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--key", choices=sorted(RECOMPUTABLE), default="object_state",
                        help="the observation key to add (default: object_state)")
    parser.add_argument("files", nargs="+", help="episode files to update in place")
    args = parser.parse_args(argv)
    for path in args.files:
        try:
            count = add_observation_key(path, args.key, progress=True)
        except DatasetError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        print(f"{path}: {args.key} added to {count} episodes")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
