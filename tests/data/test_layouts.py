"""Reading official LIBERO and robomimic demo files (built by the fixtures in their layouts)."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

from kairos_gym.data.dataset import ClipDataset
from kairos_gym.data.episodes import open_episodes
from kairos_gym.errors import DatasetError


def test_libero_file(libero_file):
    with open_episodes(libero_file) as reader:
        assert reader.layout == "libero"
        assert len(reader) == 3 and reader.total == 36
        assert reader.instruction == "put the bowl on the plate"
        ep = reader[0]
        assert ep.instruction == "put the bowl on the plate"
        assert ep.obs_keys == ["agentview_rgb", "ee_states", "eye_in_hand_rgb", "gripper_states", "joint_states"]
        assert ep.obs("agentview_rgb").shape == (12, 16, 16, 3)
        assert not ep.has_final_obs and ep.num_frames == 12
        assert ep.success[-1] and not ep.success[:-1].any()  # from dones
        assert ep.read("robot_states").shape == (12, 9)
        spec = reader.env_spec
        assert spec.env_id == "libero:Libero_Tabletop_Manipulation"
        assert spec.control_freq == 20.0 and spec.action_space.shape == (7,)
        assert spec.observation_space["agentview_rgb"].dtype == np.uint8
        assert reader.env_args["bddl_file"].endswith(".bddl")


def test_robomimic_file(robomimic_file):
    with open_episodes(robomimic_file) as reader:
        assert reader.layout == "robomimic"
        assert reader.episodes == ["demo_0", "demo_1", "demo_2", "demo_3"]
        assert reader.filter_keys == {"train": ["demo_0", "demo_1", "demo_2"], "valid": ["demo_3"]}
        ep = reader["demo_1"]
        assert ep.has_final_obs and ep.num_frames == 11
        with h5py.File(robomimic_file, "r") as f:
            want = f["data/demo_1/next_obs/agentview_image"][-1]
        np.testing.assert_array_equal(ep.final_obs("agentview_image"), want)
        assert ep.frames("agentview_image", 0, 11).shape == (11, 16, 16, 3)
        spec = reader.env_spec
        assert spec.cameras == ("agentview", "robot0_eye_in_hand") and spec.image_size == (16, 16)
        assert spec.env_id == "robomimic:Lift"
        assert reader.instruction == ""


def test_demo_order_is_numeric(tmp_path, robomimic_file):
    import shutil

    path = str(tmp_path / "many.hdf5")
    shutil.copy(robomimic_file, path)
    with h5py.File(path, "a") as f:
        f.copy(f["data/demo_0"], "data/demo_10")
    with open_episodes(path) as reader:
        assert reader.episodes[-2:] == ["demo_3", "demo_10"]
        assert "mask" not in reader.episodes


def test_clip_dataset_on_libero_uses_rgb_keys_and_default_state(libero_file):
    ds = ClipDataset(libero_file, clip_len=4, cameras=["agentview", "eye_in_hand"], image_transform="rot180")
    item = ds[0]
    assert item["frames"].shape == (4, 2, 16, 16, 3)
    assert item["state"].shape == (4, 8)  # ee_states (6) + gripper_states (2), as VLA policies use
    with h5py.File(libero_file, "r") as f:
        raw = f["data/demo_0/obs/agentview_rgb"][:4]
    np.testing.assert_array_equal(item["frames"][:, 0].numpy(), raw[:, ::-1, ::-1])
    assert len(ds) == 3 * (12 - 4 + 1)  # no final observation: 12 frames per episode


def test_clip_dataset_on_robomimic_includes_the_final_frame(robomimic_file):
    ds = ClipDataset(robomimic_file, clip_len=11, cameras="agentview")
    assert len(ds) == 4
    item = ds[0]
    assert item["state"].shape == (11, 9)
    assert item["success"][-1] and not item["success"][:-1].any()


def test_missing_camera_in_foreign_file(libero_file):
    with pytest.raises(DatasetError, match=r"no image key for camera 'wrist' \(tried \['wrist', 'wrist_image', 'wrist_rgb'\]"):
        ClipDataset(libero_file, clip_len=2, cameras="wrist")
