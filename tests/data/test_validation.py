"""Episode files are validated once, when opened: per-episode widths, dtypes, image shapes and
finite values against the file's env spec (or its first episode), the format version, and
nothing read from another file unless asked. The writer refuses what the reader refuses."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest

from kairos_gym.data import ClipDataset, list_episodes
from kairos_gym.data.episodes import EpisodeReader, EpisodeWriter, open_episodes
from kairos_gym.errors import DatasetError, ShapeError
from tests.data.conftest import make_episode, write_robomimic_file


def _file(path, spec, lengths=(6, 6, 6)) -> str:
    with EpisodeWriter(str(path), spec) as writer:
        for i, T in enumerate(lengths):
            writer.write_episode(**make_episode(T, seed=i), seed=i)
    return str(path)


def _replace(path: str, key: str, value: np.ndarray, episode: str = "demo_1") -> None:
    with h5py.File(path, "a") as f:
        group = f[f"data/{episode}"]
        del group[key]
        group.create_dataset(key, data=value)


def test_one_episode_with_other_action_widths_is_refused(tmp_path, spec):
    path = _file(tmp_path / "widths.hdf5", spec)
    _replace(path, "actions", np.zeros((6, 5), np.float32))
    match = r"widths.hdf5: episode 'demo_1': actions has shape \(6, 5\); the file's env spec needs \[6, 7\]"
    with pytest.raises(DatasetError, match=match):
        open_episodes(path)
    with pytest.raises(DatasetError, match=match):
        ClipDataset(path, clip_len=2)


def test_foreign_files_are_held_to_their_first_episode(tmp_path):
    path = str(tmp_path / "image.hdf5")
    write_robomimic_file(path)
    _replace(path, "actions", np.zeros((10, 5)), episode="demo_2")
    with pytest.raises(
        DatasetError,
        match=r"episode 'demo_2': actions has shape \(10, 5\); episode 'demo_0' \(the file has "
        r"no env spec\) needs \[10, 7\]",
    ):
        open_episodes(path)


def test_nan_actions_rewards_and_state_are_refused_on_open(tmp_path, spec):
    for key, make in (
        ("actions", lambda a: a.__setitem__((2, 3), np.nan)),
        ("rewards", lambda a: a.__setitem__(4, np.inf)),
        ("obs/state", lambda a: a.__setitem__((1, 0), np.nan)),
    ):
        path = _file(tmp_path / f"nan_{key.replace('/', '_')}.hdf5", spec)
        with h5py.File(path, "r") as f:
            values = f[f"data/demo_1/{key}"][()]
        make(values)
        _replace(path, key, values)
        with pytest.raises(DatasetError, match=rf"episode 'demo_1': {key} contains 1 NaN/inf"):
            EpisodeReader(path)
        with pytest.raises(DatasetError, match="NaN/inf"):
            ClipDataset(path, clip_len=2)


def test_an_episode_with_another_image_size_is_refused(tmp_path, spec):
    path = _file(tmp_path / "sizes.hdf5", spec)
    _replace(path, "obs/agentview_image", np.zeros((6, 8, 8, 3), np.uint8))
    with pytest.raises(
        DatasetError,
        match=r"episode 'demo_1': obs/agentview_image has shape \(6, 8, 8, 3\); the file's env "
        r"spec .*needs \[6, 16, 16, 3\]",
    ):
        open_episodes(path)


def test_float_images_are_refused_in_the_file_and_in_the_spec(tmp_path, spec):
    path = _file(tmp_path / "float.hdf5", spec)
    _replace(path, "obs/agentview_image", np.zeros((6, 16, 16, 3), np.float32))
    with pytest.raises(DatasetError, match=r"obs/agentview_image is float32; .* needs uint8"):
        open_episodes(path)

    path = _file(tmp_path / "float_spec.hdf5", spec)
    with h5py.File(path, "a") as f:
        data = json.loads(f["data"].attrs["env_spec"])
        data["observation_space"]["spaces"]["agentview_image"]["dtype"] = "float32"
        f["data"].attrs["env_spec"] = json.dumps(data)
    with pytest.raises(DatasetError, match=r"bad env_spec .*images must be uint8 \[H, W, 3\], got float32"):
        open_episodes(path)

    path = str(tmp_path / "image.hdf5")
    write_robomimic_file(path)
    _replace(path, "obs/agentview_image", np.zeros((10, 16, 16, 3), np.float32), episode="demo_0")
    with pytest.raises(DatasetError, match=r"demo_0': obs/agentview_image is float32"):
        open_episodes(path)


@pytest.mark.parametrize(
    "spec_text, match",
    [
        ("{not json", "not valid JSON"),
        ("[1, 2]", "must be a JSON object"),
        ('{"env_id": "x"}', "lacks the field 'observation_space'"),
        ("{}", "lacks the field"),
    ],
)
def test_bad_env_spec_json_is_refused_on_open(tmp_path, spec, spec_text, match):
    path = _file(tmp_path / "spec.hdf5", spec)
    with h5py.File(path, "a") as f:
        f["data"].attrs["env_spec"] = spec_text
    with pytest.raises(DatasetError, match=f"spec.hdf5: bad env_spec attribute .*{match}"):
        open_episodes(path)


def test_a_huge_space_in_the_env_spec_is_refused_before_allocating(tmp_path, spec):
    path = _file(tmp_path / "huge.hdf5", spec)
    with h5py.File(path, "a") as f:
        data = json.loads(f["data"].attrs["env_spec"])
        data["observation_space"]["spaces"]["state"]["shape"] = [100000, 100000]
        f["data"].attrs["env_spec"] = json.dumps(data)
    with pytest.raises(DatasetError, match=r"shape \(100000, 100000\) has 10000000000 elements"):
        open_episodes(path)


def test_a_newer_format_version_is_refused(tmp_path, spec):
    path = _file(tmp_path / "newer.hdf5", spec)
    with h5py.File(path, "a") as f:
        f["data"].attrs["format_version"] = 2
    with pytest.raises(DatasetError, match=r"episode format version 2, newer than this kairos-gym reads \(1\)"):
        open_episodes(path)


def test_external_links_are_refused_unless_allowed(tmp_path, spec):
    other = _file(tmp_path / "other.hdf5", spec, lengths=(9,))
    path = _file(tmp_path / "main.hdf5", spec, lengths=(6,))
    with h5py.File(path, "a") as f:
        f["data/demo_1"] = h5py.ExternalLink(other, "/data/demo_0")
    with pytest.raises(DatasetError, match=r"episode 'demo_1' is an external link to .*other.hdf5:/data/demo_0"):
        open_episodes(path)
    with pytest.raises(DatasetError, match="external link"):
        list_episodes(path, split="all")
    with open_episodes(path, allow_external_links=True) as reader:
        assert reader.episodes == ["demo_0", "demo_1"]
        assert reader["demo_1"].num_samples == 9
    # 7 and 10 frames (each with its final observation): 6 + 9 clips of 2.
    assert len(ClipDataset(path, clip_len=2, allow_external_links=True)) == 6 + 9
    assert [r.steps for r in list_episodes(path, split="all", allow_external_links=True)] == [6, 9]


def test_external_links_inside_an_episode_and_external_storage_are_refused(tmp_path, spec):
    other = _file(tmp_path / "other.hdf5", spec, lengths=(6,))
    path = _file(tmp_path / "inner.hdf5", spec, lengths=(6,))
    with h5py.File(path, "a") as f:
        del f["data/demo_0/actions"]
        f["data/demo_0/actions"] = h5py.ExternalLink(other, "/data/demo_0/actions")
    with pytest.raises(DatasetError, match=r"demo_0'/actions is an external link"):
        open_episodes(path)

    raw = tmp_path / "raw.bin"
    raw.write_bytes(np.zeros((6, 7), np.float32).tobytes())
    path = _file(tmp_path / "storage.hdf5", spec, lengths=(6,))
    with h5py.File(path, "a") as f:
        del f["data/demo_0/actions"]
        f["data/demo_0"].create_dataset(
            "actions", shape=(6, 7), dtype=np.float32, external=[(str(raw), 0, 6 * 7 * 4)]
        )
    with pytest.raises(DatasetError, match=r"actions stores its data in external file\(s\)"):
        open_episodes(path)

    path = _file(tmp_path / "toplevel.hdf5", spec, lengths=(6,))
    with h5py.File(path, "a") as f:
        del f["data"]
        f["data"] = h5py.ExternalLink(other, "/data")
    with pytest.raises(DatasetError, match=r"'data' is an external link to .*other.hdf5:/data"):
        open_episodes(path)


def test_reading_after_close_says_closed_not_corrupt(tmp_path, spec):
    path = _file(tmp_path / "closed.hdf5", spec)
    with open_episodes(path) as reader:
        episode = reader[0]
    with pytest.raises(DatasetError, match=r"closed.hdf5 was closed; reopen it with open_episodes"):
        _ = episode.actions
    with pytest.raises(DatasetError, match="was closed"):
        episode.obs("agentview_image")


def test_writer_refuses_what_the_reader_would_refuse(tmp_path, spec):
    path = str(tmp_path / "w.hdf5")
    writer = EpisodeWriter(path, spec)
    ep = make_episode(4)
    actions = ep["actions"].copy()
    actions[1, 2] = np.nan
    with pytest.raises(ShapeError, match=r"actions contains 1 NaN/inf value\(s\), the first at index \(1, 2\)"):
        writer.write_episode(**dict(ep, actions=actions))
    with pytest.raises(ShapeError, match=r"rewards contains 1 NaN/inf"):
        writer.write_episode(**dict(ep, rewards=np.array([0, np.inf, 0, 0.0])))
    state = ep["obs"]["state"].copy()
    state[3, 0] = np.nan
    with pytest.raises(ShapeError, match=r"obs\['state'\] contains 1 NaN/inf"):
        writer.write_episode(**dict(ep, obs={**ep["obs"], "state": state}))
    with pytest.raises(ShapeError, match=r"final_obs\['state'\] contains"):
        writer.write_episode(**dict(ep, final_obs={**ep["final_obs"], "state": np.full(9, np.inf)}))
    with pytest.raises(ShapeError, match="action is not an array"):
        writer.add_step(ep["final_obs"], [[1.0], [1.0, 2.0]], 0.0, False, False)
    assert not writer.in_episode  # a refused step leaves nothing buffered
    # Step by step: the NaN action is refused when the episode is committed.
    obs = {k: v[0] for k, v in ep["obs"].items()}
    writer.add_step(obs, np.full(7, np.nan, np.float32), 0.0, True, False)
    with pytest.raises(ShapeError, match="actions contains 7 NaN/inf"):
        writer.end_episode(ep["final_obs"])
    with open_episodes(path) as reader:
        assert len(reader) == 0
    writer.write_episode(**ep)  # the writer still works
    with open_episodes(path) as reader:
        assert len(reader) == 1


def test_a_non_finite_num_samples_attribute_is_a_dataset_error(tmp_path):
    import h5py

    from kairos_gym.data.reader import EpisodeReader
    from tests.train.conftest import write_data

    path = write_data(tmp_path / "ns.hdf5", episodes=2, steps=5)
    with h5py.File(path, "r+") as f:
        f["data/demo_0"].attrs["num_samples"] = float("inf")
    with pytest.raises(DatasetError, match="declares num_samples=.*inf.* but stores 5 actions"):
        EpisodeReader(str(path))
