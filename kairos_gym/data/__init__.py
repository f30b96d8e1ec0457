"""Episode data: env specs, observation keys, episode files, listing/loading, clip datasets.

- :mod:`kairos_gym.data.spaces`: :class:`EpisodeEnvSpec` and exact JSON for gym spaces.
- :mod:`kairos_gym.data.keys`: :class:`ObservationKeys`, the one definition of which keys
  are camera images and which make up the flat state vector (order, shapes, width).
- :mod:`kairos_gym.data.episodes`: :class:`EpisodeWriter` / :class:`EpisodeReader` for
  the robomimic / LIBERO HDF5 layout (atomic per episode, resumable).
- :mod:`kairos_gym.data.loading`: the train/val split, :func:`list_episodes` and
  :func:`load_episodes` (whole episodes, e.g. for open-loop evaluation).
- :mod:`kairos_gym.data.dataset`: :class:`ClipDataset`, fixed-length clips as tensors.
- :mod:`kairos_gym.data.unified`: one action/state layout for several embodiments
  (:class:`~kairos_gym.data.unified.UnifiedLayout`), so one model learns them together.

``ClipDataset`` is imported lazily so that reading and writing episodes never imports torch.
"""

from __future__ import annotations

from typing import Any

from kairos_gym.data.episodes import Episode, EpisodeReader, EpisodeWriter, open_episodes
from kairos_gym.data.keys import ObservationKeys
from kairos_gym.data.loading import EpisodeRef, list_episodes, load_episodes, split_of
from kairos_gym.data.spaces import EpisodeEnvSpec, space_from_json, space_to_json

__all__ = [
    "ClipDataset",
    "Episode",
    "EpisodeEnvSpec",
    "EpisodeReader",
    "EpisodeRef",
    "EpisodeWriter",
    "ObservationKeys",
    "list_episodes",
    "load_episodes",
    "open_episodes",
    "space_from_json",
    "space_to_json",
    "split_of",
]


def __getattr__(name: str) -> Any:
    if name == "ClipDataset":
        from kairos_gym.data.dataset import ClipDataset

        return ClipDataset
    raise AttributeError(f"module 'kairos_gym.data' has no attribute {name!r}")
