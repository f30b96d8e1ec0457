"""Property-based tests of episode files: whatever a writer is given or a file holds, the
writer commits it (and the reader reads it back) or refuses it on purpose leaving the file
as it was, and the reader opens a file (and every episode of it reads) or refuses it with a
``DatasetError``.

Random bytes written over a file are not among the mutations: HDF5 itself does not promise
to survive them (a corrupt B-tree can crash the C library), so only structured damage is
generated (wrong shapes, dtypes, values, keys, attributes, links, truncation).
"""

from __future__ import annotations

import json
import os
import shutil
import zlib
from pathlib import Path

import h5py
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from kairos_gym.data import ClipDataset
from kairos_gym.data.episodes import EpisodeReader, EpisodeWriter
from kairos_gym.errors import DatasetError, ShapeError
from tests.data.conftest import make_episode, make_spec
from tests.fuzz_helpers import JUNK, NUMBERS, arrays, fuzz, near, outcome

pytestmark = pytest.mark.fuzz
T = 5
FIELDS = {
    "actions": (T, 7),
    "rewards": (T,),
    "dones": (T,),
    "success": (T,),
    "states": (T, 5),
    "obs/agentview_image": (T, 16, 16, 3),
    "obs/state": (T, 9),
    "final_obs/state": (1, 9),
    "final_obs/agentview_image": (1, 16, 16, 3),
}


@pytest.fixture(scope="module")
def clean(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("fuzz") / "clean.hdf5"
    with EpisodeWriter(str(path), make_spec(), fsync=False) as writer:
        for i in range(3):
            writer.write_episode(**make_episode(T, seed=i), seed=i)
    return path


@pytest.fixture
def scratch(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("scratch")


def _summary(path: str) -> tuple[list[str], int]:
    with EpisodeReader(path) as reader:
        return list(reader.episodes), reader.total


def _arrays_near(shape: tuple[int, ...], dtype: type) -> st.SearchStrategy[np.ndarray]:
    real = np.dtype(dtype).kind == "f"
    valid = hnp.arrays(dtype, shape, elements=st.floats(-1, 1, width=32) if real else None)
    return st.one_of(valid, arrays(near(shape)))


EPISODE_FIELDS = st.fixed_dictionaries(
    {},
    optional={
        "actions": st.one_of(_arrays_near((T, 7), np.float32), JUNK),
        "rewards": st.one_of(_arrays_near((T,), np.float64), JUNK),
        "dones": _arrays_near((T,), np.bool_),
        "states": _arrays_near((T, 5), np.float64),
        "image": st.one_of(_arrays_near((T, 16, 16, 3), np.uint8), JUNK),
        "state": _arrays_near((T, 9), np.float32),
        "final_state_obs": _arrays_near((9,), np.float32),
    },
)


@fuzz(40)
@given(changes=EPISODE_FIELDS)
def test_the_writer_commits_or_refuses_without_touching_the_file(clean, scratch, changes):
    path = str(scratch / "w.hdf5")
    shutil.copy(clean, path)
    writer = EpisodeWriter(path, make_spec(), fsync=False)
    before = _summary(path)
    episode = make_episode(T, seed=7)
    obs, final = dict(episode["obs"]), dict(episode["final_obs"])
    for key, value in changes.items():
        if key == "image":
            obs["agentview_image"] = value
        elif key == "state":
            obs["state"] = value
        elif key == "final_state_obs":
            final["state"] = value
        else:
            episode[key] = value
    episode["obs"], episode["final_obs"] = obs, final
    name, error = outcome(lambda: writer.write_episode(**episode))
    if error is None:
        with EpisodeReader(path) as reader:  # what was written reads back
            assert reader[name].load()["actions"].shape == (T, 7)
    else:
        assert isinstance(error, (ShapeError, DatasetError)), error
        assert _summary(path) == before
    writer.write_episode(**make_episode(T, seed=8))  # still works


def _mutate(path: str, kind: str, field: str, episode: int, value: object, number: object) -> None:
    with h5py.File(path, "a") as f:
        group = f[f"data/demo_{episode}"]
        if kind == "replace":
            del group[field]
            try:
                group.create_dataset(field, data=value)
            except (TypeError, ValueError):  # h5py cannot store it (object arrays): drop it
                pass
        elif kind == "delete":
            del group[field]
        elif kind == "num_samples":
            group.attrs["num_samples"] = number if isinstance(number, (int, float)) else 0
        elif kind == "env_spec":
            data = json.loads(f["data"].attrs["env_spec"])
            data["action_space"]["shape"] = value if isinstance(value, list) else [number]
            f["data"].attrs["env_spec"] = json.dumps(data, default=str)
        elif kind == "format_version":
            f["data"].attrs["format_version"] = number if isinstance(number, (int, float)) else "x"
        elif kind == "external_link":
            del group[field]
            group[field] = h5py.ExternalLink(os.path.basename(path), f"/data/demo_0/{field}")
        elif kind == "soft_link":
            del f[f"data/demo_{episode}"]
            f[f"data/demo_{episode}"] = h5py.SoftLink("/data/demo_0")
    if kind == "truncate":
        size = os.path.getsize(path)
        with open(path, "r+b") as fh:
            # crc32, not hash(): str hashes change per process and the run must repeat.
            fh.truncate(int(size * (zlib.crc32(field.encode()) % 100) / 100))


MUTATIONS = st.tuples(
    st.sampled_from(["replace", "replace", "replace", "delete", "num_samples", "env_spec",
                     "format_version", "external_link", "soft_link", "truncate"]),
    st.sampled_from(sorted(FIELDS)),
    st.integers(0, 2),
    st.sampled_from(sorted(FIELDS)).flatmap(lambda k: arrays(near(FIELDS[k]))),
    NUMBERS,
)


@fuzz(50)
@given(mutations=st.lists(MUTATIONS, min_size=1, max_size=2))
def test_the_reader_reads_a_damaged_file_or_refuses_it(clean, scratch, mutations):
    path = str(scratch / "r.hdf5")
    shutil.copy(clean, path)
    for mutation in mutations:
        try:
            _mutate(path, *mutation)
        except (KeyError, OSError, RuntimeError):  # already gone, truncated, or a link loop
            continue
        except (TypeError, OverflowError):  # h5py cannot store the value (an int beyond int64)
            continue
    reader, error = outcome(lambda: EpisodeReader(path))
    if error is not None:
        assert isinstance(error, DatasetError), error
        return
    with reader:
        for episode in reader:
            _loaded, error = outcome(episode.load)
            assert error is None or isinstance(error, DatasetError), error
    dataset, error = outcome(lambda: ClipDataset(path, clip_len=2))
    assert error is None or isinstance(error, DatasetError), error
    if dataset is not None:
        for i in range(len(dataset)):
            _item, error = outcome(lambda i=i: dataset[i])
            assert error is None or isinstance(error, DatasetError), error


def _mostly(valid: st.SearchStrategy, junk: st.SearchStrategy = JUNK) -> st.SearchStrategy:
    """``valid`` about four times in five, else ``junk`` (``one_of`` would weigh each of
    junk's own alternatives like ``valid``)."""
    return st.integers(0, 4).flatmap(lambda i: junk if i == 0 else valid)


@fuzz(30)
@given(
    clip_len=_mostly(st.integers(1, 6), st.one_of(st.integers(-1, 0), st.integers(7, 99), JUNK)),
    frame_stride=_mostly(st.integers(1, 2), st.one_of(st.integers(-1, 0), JUNK)),
    split=_mostly(st.sampled_from(["train", "val", "all"])),
    val_fraction=_mostly(st.floats(0.0, 1.0), st.one_of(st.floats(), JUNK)),
    cameras=_mostly(st.sampled_from(["agentview", "agentview_image", ("agentview",)]),
                    st.one_of(st.sampled_from(["wrist", ["x"], []]), JUNK)),
)
def test_clip_dataset_arguments_work_or_are_refused(clean, clip_len, frame_stride, split, val_fraction, cameras):
    dataset, _error = outcome(lambda: ClipDataset(
        str(clean), clip_len=clip_len, frame_stride=frame_stride, split=split,
        val_fraction=val_fraction, cameras=cameras))
    if dataset is not None:
        item = dataset[len(dataset) - 1]
        assert item["frames"].shape[0] == clip_len
