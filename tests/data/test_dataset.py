"""ClipDataset: clip shapes, action/label alignment, strides, splits, workers."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from kairos_gym.data.dataset import ClipDataset, split_of
from kairos_gym.data.episodes import EpisodeWriter
from kairos_gym.errors import DatasetError


@pytest.fixture
def episode_file(tmp_path, spec, episode_factory):
    """Episodes of 10, 6 and 3 actions (11, 7 and 4 frames with the final observation)."""
    path = str(tmp_path / "eps.hdf5")
    with EpisodeWriter(path, spec) as writer:
        for i, T in enumerate((10, 6, 3)):
            writer.write_episode(**episode_factory(T, seed=i), seed=i)
    return path


def test_clip_shapes_and_dtypes(episode_file):
    ds = ClipDataset(episode_file, clip_len=4, cameras="agentview", sim_state=True)
    # (11 - 4 + 1) + (7 - 4 + 1) + (4 - 4 + 1) clips; none crosses an episode.
    assert len(ds) == 8 + 4 + 1
    item = ds[0]
    assert item["frames"].shape == (4, 16, 16, 3) and item["frames"].dtype == torch.uint8
    assert item["actions"].shape == (4, 7) and item["actions"].dtype == torch.float32
    assert item["action_mask"].dtype == torch.bool and item["first_frame"].dtype == torch.bool
    assert item["rewards"].shape == (4,) and item["rewards"].dtype == torch.float32
    assert item["success"].dtype == torch.bool and item["done"].dtype == torch.bool
    assert item["state"].shape == (4, 9) and item["state"].dtype == torch.float32
    assert item["sim_state"].shape == (4, 5)
    batch = next(iter(torch.utils.data.DataLoader(ds, batch_size=5)))
    assert batch["frames"].shape == (5, 4, 16, 16, 3)


def test_action_leads_into_its_frame(episode_file):
    ds = ClipDataset(episode_file, clip_len=5, cameras="agentview", sim_state=True)
    for index in range(len(ds)):
        item = ds[index]
        start = int(item["start"])
        frame_ids = item["frames"][:, 0, 0, 0].numpy().astype(int)  # pixels encode the frame index
        np.testing.assert_array_equal(frame_ids, np.arange(start, start + 5))
        np.testing.assert_array_equal(item["state"][:, 0].numpy(), frame_ids)
        np.testing.assert_array_equal(item["sim_state"][:, 0].numpy(), frame_ids)
        # Action t led into frame j = start + t: it is actions[j - 1] = (j - 1) / 1000.
        np.testing.assert_allclose(item["actions"][1:, 0].numpy(), (frame_ids[1:] - 1) / 1000)
        assert (item["actions"][0] == 0).all()
        assert item["action_mask"].tolist() == [False, True, True, True, True]
        assert item["first_frame"].tolist() == [start == 0] + [False] * 4
        # Rewards label the frame they led into: rewards[j - 1] = j; the first frame has 0.
        want = np.where(frame_ids > 0, frame_ids, 0).astype(np.float32)
        np.testing.assert_array_equal(item["rewards"].numpy(), want)


def test_success_and_done_label_the_frame_they_lead_into(episode_file):
    ds = ClipDataset(episode_file, clip_len=11, cameras="agentview")
    assert len(ds) == 1  # only the 10-step episode has 11 frames
    item = ds[0]
    # success[t] of the episode is True from step 5 on, so frames 6..10 are successful.
    assert item["success"].tolist() == [False] * 6 + [True] * 5
    assert item["done"].tolist() == [False] * 10 + [True]
    # The last frame is the final observation (after the last action).
    assert int(item["frames"][-1, 0, 0, 0]) == 10


def test_frame_stride_concatenates_the_skipped_actions(episode_file):
    ds = ClipDataset(episode_file, clip_len=3, frame_stride=2, cameras="agentview")
    # frames span 5: 11-5+1 + 7-5+1 + 0 clips
    assert len(ds) == 7 + 3
    item = ds[1]  # start 1: frames 1, 3, 5
    assert item["frames"][:, 0, 0, 0].tolist() == [1, 3, 5]
    assert item["actions"].shape == (3, 14)
    # Frame 3 was reached by actions 1 and 2, frame 5 by actions 3 and 4.
    np.testing.assert_allclose(item["actions"][1].numpy(), np.repeat([0.001, 0.002], 7))
    np.testing.assert_allclose(item["actions"][2].numpy(), np.repeat([0.003, 0.004], 7))
    # Rewards are summed over the steps leading into the frame: 2+3 and 4+5; frame 1 got step 0.
    assert item["rewards"].tolist() == [1.0, 5.0, 9.0]


def test_clip_step_and_in_memory_agree(episode_file):
    lazy = ClipDataset(episode_file, clip_len=3, clip_step=2, cameras="agentview", sim_state=True)
    cached = ClipDataset(episode_file, clip_len=3, clip_step=2, cameras="agentview", sim_state=True, in_memory=True)
    assert len(lazy) == len(cached) == 5 + 3 + 1
    assert [int(lazy[i]["start"]) for i in range(5)] == [0, 2, 4, 6, 8]
    for i in range(len(lazy)):
        a, b = lazy[i], cached[i]
        for key in a:
            assert torch.equal(a[key], b[key]), key


def test_multi_camera_stacks_views(tmp_path, spec, episode_factory):
    import dataclasses

    import gymnasium as gym

    spaces = dict(spec.observation_space.spaces)
    spaces["wrist_image"] = spaces["agentview_image"]
    two = dataclasses.replace(spec, observation_space=gym.spaces.Dict(spaces), cameras=("agentview", "wrist"))
    path = str(tmp_path / "two.hdf5")
    ep = episode_factory(4)
    ep["obs"]["wrist_image"] = 255 - ep["obs"]["agentview_image"]
    ep["final_obs"]["wrist_image"] = 255 - ep["final_obs"]["agentview_image"]
    with EpisodeWriter(path, two) as writer:
        writer.write_episode(**ep)
    item = ClipDataset(path, clip_len=2, cameras=["agentview", "wrist_image"])[0]
    assert item["frames"].shape == (2, 2, 16, 16, 3)
    assert item["frames"][1, 1, 0, 0, 0] == 254


def test_split_is_deterministic_disjoint_and_covering(tmp_path, spec, episode_factory):
    path = str(tmp_path / "many.hdf5")
    with EpisodeWriter(path, spec) as writer:
        for i in range(40):
            writer.write_episode(**episode_factory(3, seed=i))
    kwargs = {"clip_len": 2, "cameras": "agentview", "val_fraction": 0.25, "seed": 3}
    train = ClipDataset(path, split="train", **kwargs)
    val = ClipDataset(path, split="val", **kwargs)
    every = ClipDataset(path, split="all", **kwargs)
    train_names = {name for _, name, _ in train.episodes}
    val_names = {name for _, name, _ in val.episodes}
    assert train_names.isdisjoint(val_names)
    assert train_names | val_names == {name for _, name, _ in every.episodes}
    assert 4 <= len(val_names) <= 16  # about a quarter of 40
    assert len(train) + len(val) == len(every)
    again = ClipDataset(path, split="val", **kwargs)
    assert [n for _, n, _ in again.episodes] == [n for _, n, _ in val.episodes]
    other_seed = ClipDataset(path, split="val", **{**kwargs, "seed": 4})
    assert {n for _, n, _ in other_seed.episodes} != val_names
    # Growing the file (resumed collection) keeps every old episode on its side.
    with EpisodeWriter(path, spec) as writer:
        writer.write_episode(**episode_factory(3, seed=99))
    grown = {n for _, n, _ in ClipDataset(path, split="val", **kwargs).episodes}
    assert val_names <= grown and grown - val_names <= {"demo_40"}
    assert split_of(path, "demo_0", val_fraction=0.0, seed=0) == "train"
    assert split_of(path, "demo_0", val_fraction=1.0, seed=0) == "val"


def test_several_files(episode_file, tmp_path, spec, episode_factory):
    other = str(tmp_path / "other.hdf5")
    with EpisodeWriter(other, spec) as writer:
        writer.write_episode(**episode_factory(5))
    ds = ClipDataset([episode_file, other], clip_len=4, cameras="agentview")
    assert len(ds) == 13 + 3
    assert ds.episodes[-1][:2] == (1, "demo_0")
    assert int(ds[len(ds) - 1]["start"]) == 2


def test_dataloader_workers_open_their_own_handles(episode_file):
    ds = ClipDataset(episode_file, clip_len=3, cameras="agentview")
    ds[0]  # opens a handle in this process first
    loader = torch.utils.data.DataLoader(ds, batch_size=4, num_workers=2)
    starts = torch.cat([b["start"] for b in loader])
    assert len(starts) == len(ds)


def test_bad_arguments(episode_file):
    with pytest.raises(ValueError, match="clip_len must be a positive integer, got 0"):
        ClipDataset(episode_file, clip_len=0)
    with pytest.raises(ValueError, match="split must be one of .* got 'test'"):
        ClipDataset(episode_file, clip_len=2, split="test")
    with pytest.raises(ValueError, match=r"val_fraction must be in \[0, 1\], got 1.5"):
        ClipDataset(episode_file, clip_len=2, val_fraction=1.5)
    with pytest.raises(DatasetError, match="no clip of 50 frames"):
        ClipDataset(episode_file, clip_len=50)
    with pytest.raises(DatasetError, match="no image key for camera 'wrist'"):
        ClipDataset(episode_file, clip_len=2, cameras="wrist")
    ds = ClipDataset(episode_file, clip_len=2)
    with pytest.raises(IndexError, match="clip index 999 out of range"):
        ds[999]


def test_a_time_limit_is_not_a_termination_label(tmp_path):
    from kairos_gym.data.dataset import ClipDataset
    from kairos_gym.data.episodes import EpisodeWriter
    from tests.data.conftest import make_episode, make_spec

    path = tmp_path / "eps.hdf5"
    with EpisodeWriter(str(path), make_spec()) as writer:
        for i, attrs in enumerate(({"terminated": True, "truncated": False},
                                   {"terminated": False, "truncated": True})):
            writer.write_episode(**make_episode(6, seed=i), attrs=attrs)
    for in_memory in (False, True):
        ds = ClipDataset(path, clip_len=3, in_memory=in_memory)
        last = [ds[ds._cumulative[e] - 1]["done"] for e in range(2)]
        assert last[0].tolist() == [False, False, True]  # terminated at its last frame
        assert last[1].tolist() == [False, False, False]  # cut by the time limit


def test_state_is_the_concatenation_of_every_non_image_key(tmp_path):
    from kairos_gym.data.keys import ObservationKeys
    from tests.data.conftest import make_multikey_episode, make_multikey_spec

    path = str(tmp_path / "multi.hdf5")
    with EpisodeWriter(path, make_multikey_spec()) as writer:
        for i in range(2):
            writer.write_episode(**make_multikey_episode(7, seed=i))
    keys = ObservationKeys.from_spec(make_multikey_spec())
    for in_memory in (False, True):
        ds = ClipDataset(path, clip_len=3, frame_stride=2, in_memory=in_memory)
        assert ds.observation_keys == [keys]
        for index in range(len(ds)):
            item = ds[index]
            episode, start = ds.locate(index)
            raw = make_multikey_episode(7, seed=episode)
            frames = {
                k: np.concatenate([raw["obs"][k], raw["final_obs"][k][None]]) for k in raw["obs"]
            }
            ids = np.arange(start, start + 5, 2)
            want = keys.concat_state({k: v[ids] for k, v in frames.items()})
            assert item["state"].shape == (3, 10) and item["state"].dtype == torch.float32
            np.testing.assert_array_equal(item["state"].numpy(), want)
            split = keys.split_state(item["state"].numpy())
            np.testing.assert_array_equal(split["joints"], frames["joints"][ids])
            np.testing.assert_array_equal(split["n_contacts"], frames["n_contacts"][ids])
    picked = ClipDataset(path, clip_len=2, state_keys=["n_contacts", "eef_pos"])
    assert picked.observation_keys[0].state_keys == ("eef_pos", "n_contacts")
    assert picked[0]["state"].shape == (2, 4)
    with pytest.raises(DatasetError, match=r"no observation keys \['state'\] to use as state"):
        ClipDataset(path, clip_len=2, state_keys=["state"])
