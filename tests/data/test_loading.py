"""Listing and loading whole episodes: alignment with the clip dataset, the split, round-robin
over files, the state (ObservationKeys) and files in the LIBERO layout."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from kairos_gym.data import EpisodeRef, ObservationKeys, list_episodes, load_episodes
from kairos_gym.data.dataset import ClipDataset
from kairos_gym.data.episodes import EpisodeWriter
from kairos_gym.data.loading import split_of
from kairos_gym.errors import DatasetError
from tests.data.conftest import (
    make_episode,
    make_multikey_episode,
    make_multikey_spec,
    make_spec,
    write_libero_file,
)


def _write_file(path: str, lengths: list[int], multikey: bool = False) -> str:
    spec = make_multikey_spec() if multikey else make_spec()
    episode = make_multikey_episode if multikey else make_episode
    with EpisodeWriter(path, spec) as writer:
        for i, T in enumerate(lengths):
            writer.write_episode(**episode(T, seed=i), seed=i)
    return path


def test_load_episodes_aligns_like_the_clip_dataset(tmp_path):
    path = _write_file(str(tmp_path / "a.hdf5"), [12, 4, 9])
    eps = load_episodes(path, "agentview", split="all", min_steps=5, max_steps=6)
    assert [e["name"] for e in eps] == ["a.hdf5:demo_0", "a.hdf5:demo_2"]  # demo_1 is too short
    raw = make_episode(12, seed=0)
    ep = eps[0]
    assert ep["frames"].shape == (7, 16, 16, 3) and ep["frames"].dtype == np.uint8
    assert [int(f[0, 0, 0]) for f in ep["frames"]] == list(range(7))
    assert np.array_equal(ep["actions"], raw["actions"][:6]) and ep["actions"].dtype == np.float32
    assert np.array_equal(ep["rewards"], raw["rewards"][:6]) and ep["success"].dtype == bool
    assert np.array_equal(ep["state"], raw["obs"]["state"][:7])
    # Whole episode: the final observation is the last frame.
    full = load_episodes(path, "agentview_image", split="all", min_steps=12)[0]
    assert full["frames"].shape[0] == 13 and full["state"][12, 0] == 12
    assert "state" not in load_episodes(path, "agentview", split="all", state_keys=())[0]
    # The clip dataset's first clip of the episode holds the same frames and state.
    clip = ClipDataset(path, clip_len=7, split="all")[0]
    assert torch.equal(clip["frames"], torch.from_numpy(ep["frames"]))
    assert torch.equal(clip["state"], torch.from_numpy(ep["state"]))


def test_list_and_load_use_the_dataset_split_and_round_robin_files(tmp_path):
    a = _write_file(str(tmp_path / "a.hdf5"), [6] * 10)
    b = _write_file(str(tmp_path / "b.hdf5"), [6] * 10)
    val = list_episodes([a, b], split="val", val_fraction=0.5, seed=3)
    train = list_episodes([a, b], split="train", val_fraction=0.5, seed=3)
    assert 0 < len(val) < 20 and len(val) + len(train) == 20
    assert all(split_of(r.path, r.name, val_fraction=0.5, seed=3) == "val" for r in val)
    assert val[0] == EpisodeRef(val[0].path, val[0].name, 6)
    assert val[0].label == f"{val[0].path.rsplit('/', 1)[-1]}:{val[0].name}"
    eps = load_episodes([a, b], "agentview", split="all", max_episodes=3)
    assert [e["name"] for e in eps] == ["a.hdf5:demo_0", "b.hdf5:demo_0", "a.hdf5:demo_1"]
    with pytest.raises(
        DatasetError, match=r"has >= 7 steps \(20 episodes in the split, longest 6 steps\)"
    ):
        load_episodes([a, b], "agentview", split="all", min_steps=7)
    with pytest.raises(DatasetError, match="no image key for camera 'wrist'"):
        load_episodes(a, "wrist", split="all")
    with pytest.raises(ValueError, match="split must be one of"):
        list_episodes(a, split="test")
    with pytest.raises(ValueError, match="at least one episode file"):
        list_episodes([])


def test_load_episodes_state_is_every_non_image_key_of_the_spec(tmp_path):
    path = _write_file(str(tmp_path / "multi.hdf5"), [8, 6], multikey=True)
    keys = ObservationKeys.from_spec(make_multikey_spec())
    eps = load_episodes(path, "agentview", split="all", min_steps=5, max_steps=5)
    raw = make_multikey_episode(8, seed=0)
    state = eps[0]["state"]
    assert state.shape == (6, keys.state_width) == (6, 10) and state.dtype == np.float32
    np.testing.assert_array_equal(
        state, keys.concat_state({k: raw["obs"][k][:6] for k in raw["obs"]})
    )
    np.testing.assert_array_equal(state[:, 0], np.arange(6))  # eef_pos[:, 0] is the frame index
    np.testing.assert_array_equal(
        keys.split_state(state)["n_contacts"], raw["obs"]["n_contacts"][:6]
    )
    # Explicit keys are concatenated in space order.
    picked = load_episodes(path, "agentview", split="all", state_keys=["n_contacts", "gripper"])
    np.testing.assert_array_equal(picked[0]["state"][:8, :2], raw["obs"]["gripper"])
    assert picked[0]["state"].shape == (9, 3)
    with pytest.raises(DatasetError, match=r"no observation keys \['state'\] to use as state"):
        load_episodes(path, "agentview", split="all", state_keys=["state"])


def test_load_episodes_reads_libero_files_without_a_final_observation(tmp_path):
    path = str(tmp_path / "libero_demo.hdf5")
    write_libero_file(path, num_demos=2, T=12)
    eps = load_episodes(path, "agentview", split="all", min_steps=11)
    # 12 observations and no final one: 11 scoreable steps, the last action is dropped.
    assert len(eps) == 2 and eps[0]["frames"].shape == (12, 16, 16, 3)
    assert eps[0]["actions"].shape == (11, 7)
    # The layout's proprioception, as ClipDataset reads it: ee_states (6) + gripper_states (2).
    assert eps[0]["state"].shape == (12, 8)
    clip = ClipDataset(path, clip_len=12, cameras="agentview", split="all")[0]
    np.testing.assert_array_equal(clip["state"].numpy(), eps[0]["state"])
    assert eps[0]["success"].tolist() == [False] * 11  # dones stand in for success (last step only)
    with pytest.raises(DatasetError, match="longest 11 steps"):
        load_episodes(path, "agentview", split="all", min_steps=12)
