"""Episode data: spaces as JSON, HDF5 episode files, and clip datasets for training.

- :mod:`kairos_gym.data.spaces`: :class:`EpisodeEnvSpec` and exact JSON for gym spaces.
- :mod:`kairos_gym.data.episodes`: :class:`EpisodeWriter` / :class:`EpisodeReader` for
  the robomimic / LIBERO HDF5 layout (atomic per episode, resumable).
- :mod:`kairos_gym.data.dataset`: :class:`ClipDataset`, fixed-length clips as tensors.

``ClipDataset`` is imported lazily so that reading and writing episodes never imports torch.
"""

from __future__ import annotations

from typing import Any

from kairos_gym.data.episodes import Episode, EpisodeReader, EpisodeWriter, open_episodes
from kairos_gym.data.spaces import EpisodeEnvSpec, space_from_json, space_to_json

__all__ = [
    "ClipDataset",
    "Episode",
    "EpisodeEnvSpec",
    "EpisodeReader",
    "EpisodeWriter",
    "open_episodes",
    "space_from_json",
    "space_to_json",
]


def __getattr__(name: str) -> Any:
    if name == "ClipDataset":
        from kairos_gym.data.dataset import ClipDataset

        return ClipDataset
    raise AttributeError(f"module 'kairos_gym.data' has no attribute {name!r}")
