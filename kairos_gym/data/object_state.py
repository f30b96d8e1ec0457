"""Add the privileged ``object_state`` observation to episode files that lack it.

The ``object_state`` case of :mod:`kairos_gym.data.recompute`, kept under its own name:

    python -m kairos_gym.data.object_state data/lift/expert10.hdf5 data/lift/random.hdf5
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from kairos_gym.data.recompute import add_observation_key
from kairos_gym.data.recompute import main as _recompute_main

__all__ = ["add_object_state", "main"]


def add_object_state(path: str | os.PathLike, *, progress: bool = False) -> int:
    """Recompute ``object_state`` for every episode of the file at ``path`` that lacks it
    (:func:`~kairos_gym.data.recompute.add_observation_key`); the number of episodes given it."""
    return add_observation_key(path, "object_state", progress=progress)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m kairos_gym.data.object_state FILE...``"""
    import sys

    files = list(sys.argv[1:] if argv is None else argv)
    return _recompute_main(["--key", "object_state", *files])


if __name__ == "__main__":
    raise SystemExit(main())
