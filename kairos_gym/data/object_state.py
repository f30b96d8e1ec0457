"""Add the privileged ``object_state`` observation to episode files that lack it.

World models that carry the objects' state (the cube's position in Lift) need it in their
training data, and the imagined env then starts from it and predicts it, exactly like the
arm's ``state``. Episode files record the flat simulator state of every observation, so the
key can be recomputed for files collected without it: each recorded state is restored in a
real simulator (``observe_sim_state`` of the robosuite and ALOHA envs) and the observation
read there, as robomimic regenerates observations from states.

    python -m kairos_gym.data.object_state data/lift/expert10.hdf5 data/lift/random.hdf5

The file is updated in place: per episode, ``obs/object_state`` ``[T, K]`` and
``final_obs/object_state`` ``[1, K]``; then the file's environment spec gains the key and
``object_obs=True``, so envs rebuilt from it (the real env of an agreement run, the imagined
env's spaces) have it too. Episodes that already hold the key are kept, so an interrupted
run is finished by running it again. New data can be collected with the key directly
(``kairos-gym collect --object-state``).
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

KEY = "object_state"


def add_object_state(path: str | os.PathLike, *, progress: bool = False) -> int:
    """Recompute ``object_state`` for every episode of the file at ``path`` that lacks it.

    Args:
        path: an episode file of a robosuite or ALOHA env (``kairos_gym/Robosuite-*``,
            ``kairos_gym/Aloha-*``) with ``states``.
        progress: show a progress bar over episodes.

    Returns:
        The number of episodes that were given the key.

    Raises:
        DatasetError: not an episode file, another env, or episodes without states.
    """
    import kairos_gym  # noqa: F401  (registers the env ids)

    path = os.fspath(path)
    try:
        with h5py.File(path, "r") as f:
            spec = EpisodeEnvSpec.from_json(f["data"].attrs["env_spec"])
            todo = [k for k in f["data"] if KEY not in f["data"][k]["obs"]]
            missing_states = [k for k in todo if "states" not in f["data"][k]]
    except (OSError, KeyError) as exc:
        raise DatasetError(f"{path}: not a kairos-gym episode file ({exc})") from None
    if not any(family in spec.env_id for family in ("Robosuite-", "Aloha-")):
        raise DatasetError(
            f"{path}: object_state is defined for the robosuite and ALOHA envs, not {spec.env_id}")
    if missing_states:
        raise DatasetError(f"{path}: episodes {missing_states[:5]} record no simulator states")
    if not todo:
        if KEY not in spec.observation_space.spaces:  # interrupted after the last episode
            with h5py.File(path, "r") as f:
                names = list(f["data"])
                width = f["data"][names[0]]["obs"][KEY].shape[1] if names else 0
            if names:
                _declare_key(path, spec, width)
        return 0
    kwargs = {k: v for k, v in spec.env_kwargs.items() if k not in ("cameras", "object_obs")}
    env = gym.make(spec.env_id, **kwargs, cameras=(), object_obs=True)
    try:
        base = env.unwrapped
        base.reset(seed=0)
        width = env.observation_space[KEY].shape[0]
        bar = _progress(len(todo), progress, os.path.basename(path))
        for name in todo:
            with h5py.File(path, "r") as f:
                group = f["data"][name]
                states, final = group["states"][()], group["final_states"][()]
            values = np.stack([base.observe_sim_state(s)[KEY] for s in states])
            last = np.stack([base.observe_sim_state(s)[KEY] for s in final])
            with h5py.File(path, "a") as f:
                group = f["data"][name]
                group["obs"].create_dataset(KEY, data=values)
                if "final_obs" in group:
                    group["final_obs"].create_dataset(KEY, data=last)
            bar.update(1)
        bar.close()
    finally:
        env.close()
    _declare_key(path, spec, width)
    return len(todo)


def _declare_key(path: str, spec: EpisodeEnvSpec, width: int) -> None:
    """Add the key to the file's env spec and ``object_obs=True`` to its env kwargs."""
    spaces = dict(spec.observation_space.spaces)
    spaces[KEY] = gym.spaces.Box(-np.inf, np.inf, (width,), np.float32)
    updated = dataclasses.replace(
        spec,
        env_kwargs={**spec.env_kwargs, "object_obs": True},
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
    """``python -m kairos_gym.data.object_state FILE...``"""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("files", nargs="+", help="episode files to update in place")
    args = parser.parse_args(argv)
    for path in args.files:
        try:
            count = add_object_state(path, progress=True)
        except DatasetError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        print(f"{path}: object_state added to {count} episodes")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
