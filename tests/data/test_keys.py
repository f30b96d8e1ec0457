"""ObservationKeys: which keys are images and state, the state layout, concat/split, and the
keys of episode files in each layout."""

from __future__ import annotations

import dataclasses

import gymnasium as gym
import numpy as np
import pytest

from kairos_gym.data.episodes import EpisodeReader, EpisodeWriter
from kairos_gym.data.keys import ObservationKeys
from kairos_gym.errors import DatasetError, ShapeError
from tests.data.conftest import (
    MULTIKEY_STATE,
    make_multikey_episode,
    make_multikey_spec,
    make_spec,
)


@pytest.fixture
def keys() -> ObservationKeys:
    return ObservationKeys.from_spec(make_multikey_spec())


def _obs(batch: tuple[int, ...], seed: int = 0) -> dict[str, np.ndarray]:
    """Observations in make_multikey_spec's space with leading dimensions ``batch``."""
    space = make_multikey_spec().observation_space
    rng = np.random.default_rng(seed)
    return {
        "agentview_image": rng.integers(0, 256, (*batch, 16, 16, 3), dtype=np.uint8),
        "eef_pos": rng.standard_normal((*batch, 3)).astype(np.float32),
        "gripper": rng.uniform(-1, 1, (*batch, 2)).astype(np.float32),
        "joints": rng.standard_normal((*batch, 2, 2)).astype(np.float32),
        "n_contacts": rng.integers(0, 5, batch).astype(space["n_contacts"].dtype),
    }


def test_keys_order_shapes_and_widths(keys):
    assert keys.image_keys == ("agentview_image",)
    assert keys.state_keys == ("eef_pos", "gripper", "joints", "n_contacts")
    assert keys.state_shapes == MULTIKEY_STATE
    assert keys.state_widths == {"eef_pos": 3, "gripper": 2, "joints": 4, "n_contacts": 1}
    assert keys.state_width == 10
    assert keys.state_slices == {
        "eef_pos": slice(0, 3),
        "gripper": slice(3, 5),
        "joints": slice(5, 9),
        "n_contacts": slice(9, 10),
    }
    assert keys == ObservationKeys.from_spec(make_multikey_spec())
    assert keys != ObservationKeys.from_spec(make_spec())


def test_the_single_state_spec_has_one_key():
    keys = ObservationKeys.from_spec(make_spec())
    assert keys.state_keys == ("state",) and keys.state_width == 9


def test_other_cameras_are_images_not_state():
    spec = make_multikey_spec()
    spaces = {
        **spec.observation_space.spaces,
        "wrist_image": spec.observation_space["agentview_image"],
    }
    two = dataclasses.replace(
        spec, observation_space=gym.spaces.Dict(spaces), cameras=("wrist", "agentview")
    )
    keys = ObservationKeys.from_spec(two)
    assert keys.image_keys == ("agentview_image", "wrist_image")  # space order, not camera order
    assert keys.state_keys == ("eef_pos", "gripper", "joints", "n_contacts")


def test_from_space_defaults_to_camera_suffixes_and_keeps_space_order():
    space = gym.spaces.Dict(
        {
            "agentview_rgb": gym.spaces.Box(0, 255, (4, 4, 3), np.uint8),
            "wrist_image": gym.spaces.Box(0, 255, (4, 4, 3), np.uint8),
            "b": gym.spaces.Box(-1, 1, (2,), np.float32),
            "a": gym.spaces.Box(-1, 1, (1,), np.float32),
        }
    )
    keys = ObservationKeys.from_space(space)
    assert keys.image_keys == ("agentview_rgb", "wrist_image") and keys.state_keys == ("a", "b")
    picked = ObservationKeys.from_space(space, state_keys=["b", "a"])
    assert picked.state_keys == ("a", "b")  # always space order
    assert ObservationKeys.from_space(space, state_keys=()).state_width == 0
    with pytest.raises(ValueError, match=r"keys \['c'\] are not in the observation space"):
        ObservationKeys.from_space(space, state_keys=["a", "c"])
    with pytest.raises(ValueError, match=r"observation keys \['wrist_image'\] are listed twice"):
        ObservationKeys.from_space(space, state_keys=["wrist_image"])
    with pytest.raises(TypeError, match="must be a flat gymnasium Dict"):
        ObservationKeys.from_space(space["a"])


@pytest.mark.parametrize("batch", [(), (5,), (2, 3)])
def test_concat_then_split_is_the_identity(keys, batch):
    obs = _obs(batch)
    flat = keys.concat_state(obs)
    assert flat.shape == (*batch, 10) and flat.dtype == np.float32
    # Concatenation is plain flattening in state_keys order.
    manual = np.concatenate(
        [obs[k].reshape(*batch, -1).astype(np.float32) for k in keys.state_keys], axis=-1
    )
    np.testing.assert_array_equal(flat, manual)
    back = keys.split_state(flat)
    assert list(back) == list(keys.state_keys)
    assert all(isinstance(v, np.ndarray) for v in back.values())
    for key in keys.state_keys:
        assert back[key].dtype == obs[key].dtype and back[key].shape == obs[key].shape, key
        np.testing.assert_array_equal(back[key], obs[key])
    # Split values belong to the space.
    space = make_multikey_spec().observation_space
    for row in np.ndindex(*batch):
        assert all(space[k].contains(np.asarray(back[k][row])) for k in keys.state_keys)


def test_split_clips_into_finite_bounds_and_rounds_integers(keys):
    state = np.zeros((3, 10), dtype=np.float32)
    state[:, 0] = [-1e6, 0.5, 1e6]  # eef_pos: unbounded, kept as is
    state[:, 3] = [-3.0, 0.25, 7.0]  # gripper: clipped into [-1, 1]
    state[:, 9] = [-2.0, 2.6, 9.0]  # n_contacts: clipped into [0, 4], then rounded
    out = keys.split_state(state)
    np.testing.assert_array_equal(out["eef_pos"][:, 0], [-1e6, 0.5, 1e6])
    np.testing.assert_array_equal(out["gripper"][:, 0], np.float32([-1.0, 0.25, 1.0]))
    assert out["n_contacts"].dtype == np.int64 and out["n_contacts"].tolist() == [0, 3, 4]
    assert out["joints"].shape == (3, 2, 2)


def test_split_rounds_bool_keys_like_integers():
    space = gym.spaces.Dict(
        {
            "cam_image": gym.spaces.Box(0, 255, (4, 4, 3), np.uint8),
            "touch": gym.spaces.Box(0, 1, (2,), bool),
        }
    )
    keys = ObservationKeys.from_space(space)
    out = keys.split_state(np.array([[0.4, 0.6], [-5.0, 5.0]], dtype=np.float32))
    assert out["touch"].dtype == bool and out["touch"].tolist() == [[False, True], [False, True]]


def test_concat_and_split_reject_bad_shapes_with_clear_messages(keys):
    obs = _obs((4,))
    with pytest.raises(ShapeError, match=r"lacks state keys \['gripper'\]"):
        keys.concat_state({k: v for k, v in obs.items() if k != "gripper"})
    with pytest.raises(ShapeError, match=r"'joints' must be \[\.\.\., 2, 2\], got \(4, 4\)"):
        keys.concat_state({**obs, "joints": obs["joints"].reshape(4, 4)})
    with pytest.raises(
        ShapeError, match=r"'gripper' has leading dimensions \(3,\), but 'eef_pos' has \(4,\)"
    ):
        keys.concat_state({**obs, "gripper": obs["gripper"][:3]})
    with pytest.raises(ShapeError, match=r"state must be \[\.\.\., 10\] .*got \(4, 9\)"):
        keys.split_state(np.zeros((4, 9), np.float32))
    with pytest.raises(ShapeError, match=r"got \(\)"):
        keys.split_state(np.float32(0))


def test_no_state_keys_gives_an_empty_state_with_the_image_batch_shape():
    keys = ObservationKeys.from_space(make_spec().observation_space, state_keys=())
    obs = {"agentview_image": np.zeros((2, 5, 16, 16, 3), np.uint8)}
    assert keys.concat_state(obs).shape == (2, 5, 0)
    assert keys.split_state(np.zeros((2, 0), np.float32)) == {}
    with pytest.raises(ShapeError, match="no state keys and the observation holds no image key"):
        keys.concat_state({})


def test_keys_of_a_kairos_file_come_from_its_env_spec(tmp_path):
    path = str(tmp_path / "multi.hdf5")
    with EpisodeWriter(path, make_multikey_spec()) as writer:
        writer.write_episode(**make_multikey_episode(4))
    with EpisodeReader(path) as reader:
        keys = ObservationKeys.from_reader(reader)
        assert keys == ObservationKeys.from_spec(make_multikey_spec())
        assert ObservationKeys.from_reader(reader, ["gripper", "eef_pos"]).state_keys == (
            "eef_pos",
            "gripper",
        )
        with pytest.raises(DatasetError, match=r"multi.hdf5: no observation keys \['state'\]"):
            ObservationKeys.from_reader(reader, ["state"])


def test_keys_of_libero_and_robomimic_files_are_their_proprioception(libero_file, robomimic_file):
    with EpisodeReader(libero_file) as reader:
        keys = ObservationKeys.from_reader(reader)
        assert keys.image_keys == ("agentview_rgb", "eye_in_hand_rgb")
        assert keys.state_keys == ("ee_states", "gripper_states") and keys.state_width == 8
        explicit = ObservationKeys.from_reader(reader, ["joint_states", "gripper_states"])
        assert explicit.state_keys == ("gripper_states", "joint_states")
    with EpisodeReader(robomimic_file) as reader:
        keys = ObservationKeys.from_reader(reader)
        assert keys.state_keys == ("robot0_eef_pos", "robot0_eef_quat", "robot0_gripper_qpos")
        assert keys.state_width == 9
