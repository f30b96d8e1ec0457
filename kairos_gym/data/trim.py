"""Copy an episode file with every episode cut before its state leaves a plausible range.

Some failures run away in the simulator. Under gym-aloha's undamped servos a random detour
can make the arms diverge (joint readings of 10^5 before the step that raises), and a cube
knocked off ALOHA's table falls without a floor, hundreds of metres in an episode. Such values
are not behaviour a world model should learn: they dominate a mean-squared-error fit and the
state normalisation of every other episode. This tool keeps each episode up to the last
observation whose non-image values all lie within ``[-max_abs, max_abs]`` (the arm's state,
the objects' state: environment units), so the run-away's beginning stays in the data as the
failure it is (the cube leaving the table, the arm swinging out) and its endless tail does not.

    python -m kairos_gym.data.trim data/tc_state/random.hdf5 data/tc_state_t/random.hdf5 --max-abs 5

An episode is cut before its first out-of-range observation: its last kept observation becomes
the final one, so an episode that leaves the range at observation ``k`` keeps ``k - 1``
actions. One that leaves it at its first or second observation has nothing left and is
dropped. Images, the simulator states, seeds and instructions are copied unchanged; the
output never overwrites a file.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from kairos_gym.data.episodes import EpisodeWriter
from kairos_gym.data.keys import CAMERA_SUFFIXES
from kairos_gym.data.reader import EpisodeReader
from kairos_gym.errors import DatasetError

__all__ = ["TrimReport", "trim_episodes"]


@dataclass(frozen=True)
class TrimReport:
    """What :func:`trim_episodes` did: episodes copied whole, cut short, and dropped."""

    whole: int
    cut: int
    dropped: int
    steps_kept: int
    steps_removed: int


def _kept_actions(values: np.ndarray, max_abs: float) -> int:
    """Actions to keep, given the ``[T + 1, D]`` non-image values of ``obs`` and the final one."""
    outside = np.flatnonzero(np.abs(values).max(axis=1) > max_abs)
    return len(values) - 1 if outside.size == 0 else int(outside[0]) - 1


def trim_episodes(
    source: str | os.PathLike, destination: str | os.PathLike, *, max_abs: float
) -> TrimReport:
    """Write ``destination``: ``source``'s episodes cut before any non-image observation value
    exceeds ``max_abs`` in magnitude (see the module docstring).

    Raises:
        ValueError: ``max_abs`` is not a positive number.
        FileExistsError: ``destination`` exists (it is never overwritten or appended to).
        DatasetError: ``source`` is not a readable episode file, or its episodes store no
            final observation (there would be no observation to end a cut episode on).
    """
    if not (isinstance(max_abs, (int, float)) and np.isfinite(max_abs) and max_abs > 0):
        raise ValueError(f"max_abs must be a positive number, got {max_abs!r}")
    if os.path.exists(destination):
        raise FileExistsError(f"{destination} exists; trim writes a new file")
    whole = cut = dropped = kept_steps = removed = 0
    with EpisodeReader(source) as reader:
        episodes = list(reader)
        missing = [ep.name for ep in episodes if not ep.has_final_obs]
        if missing:
            raise DatasetError(f"{source}: episodes {missing[:3]} store no final observation")
        with EpisodeWriter(os.fspath(destination), reader.env_spec) as writer:
            for episode in episodes:
                data = episode.load()
                T = len(data["actions"])
                keys = [k for k in data["obs"] if not k.endswith(CAMERA_SUFFIXES)]
                values = np.concatenate([
                    np.concatenate([data["obs"][k].reshape(T, -1) for k in keys], axis=1),
                    np.concatenate([np.reshape(data["final_obs"][k], (1, -1)) for k in keys], axis=1),
                ]).astype(np.float64)
                n = _kept_actions(values, max_abs)
                if n < 1:
                    dropped += 1
                    removed += T
                    continue
                states = data["states"]
                if n == T:
                    whole += 1
                    final_obs, final_state = data["final_obs"], data["final_state"]
                else:
                    cut += 1
                    final_obs = {k: v[n] for k, v in data["obs"].items()}
                    final_state = None if states is None else states[n]
                writer.write_episode(
                    obs={k: v[:n] for k, v in data["obs"].items()},
                    actions=data["actions"][:n],
                    rewards=data["rewards"][:n],
                    dones=data["dones"][:n],
                    success=data["success"][:n],
                    states=None if states is None else states[:n],
                    final_obs=final_obs,
                    final_state=final_state,
                    seed=episode.seed,
                    instruction=episode.instruction,
                )
                kept_steps += n
                removed += T - n
    return TrimReport(whole, cut, dropped, kept_steps, removed)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m kairos_gym.data.trim SOURCE DESTINATION --max-abs X``"""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("source", help="episode file to read")
    parser.add_argument("destination", help="episode file to write (must not exist)")
    parser.add_argument("--max-abs", type=float, required=True, metavar="X",
                        help="largest magnitude a non-image observation value may have")
    args = parser.parse_args(argv)
    try:
        report = trim_episodes(args.source, args.destination, max_abs=args.max_abs)
    except (DatasetError, FileExistsError, ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"{args.destination}: {report.whole} episodes whole, {report.cut} cut, "
          f"{report.dropped} dropped; {report.steps_kept} steps kept, {report.steps_removed} removed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
