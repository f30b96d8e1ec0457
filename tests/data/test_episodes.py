"""EpisodeWriter / EpisodeReader: round trips, resume, validation, corrupt files."""

from __future__ import annotations

import dataclasses
import json
import os

import h5py
import numpy as np
import pytest

from kairos_gym.data.episodes import EpisodeReader, EpisodeWriter, open_episodes
from kairos_gym.errors import DatasetError


def _write(path, spec, episode_factory, lengths=(6, 9, 4)):
    episodes = [episode_factory(T, seed=i) for i, T in enumerate(lengths)]
    with EpisodeWriter(path, spec) as writer:
        for i, ep in enumerate(episodes):
            writer.write_episode(**ep, seed=100 + i)
    return episodes


def test_write_episode_roundtrip(tmp_path, spec, episode_factory):
    path = str(tmp_path / "eps.hdf5")
    episodes = _write(path, spec, episode_factory)
    with open_episodes(path) as reader:
        assert reader.layout == "kairos"
        assert reader.episodes == ["demo_0", "demo_1", "demo_2"]
        assert reader.total == 19 and reader.attrs["total"] == 19
        assert reader.env_spec == spec
        assert reader.instruction == "lift the cube"
        env_args = reader.env_args
        assert env_args["env_name"] == spec.env_id and env_args["type"] == 2
        assert env_args["env_kwargs"]["image_size"] == 16
        for ep, want in zip(reader, episodes):
            assert ep.num_samples == len(want["actions"])
            assert ep.seed == 100 + reader.episodes.index(ep.name)
            assert ep.instruction == "lift the cube"
            assert ep.attrs["success"] is True or ep.attrs["success"] == 1
            loaded = ep.load()
            for key in ("agentview_image", "state"):
                np.testing.assert_array_equal(loaded["obs"][key], want["obs"][key])
                np.testing.assert_array_equal(loaded["final_obs"][key], want["final_obs"][key])
            assert loaded["obs"]["agentview_image"].dtype == np.uint8
            assert loaded["actions"].dtype == np.float32
            np.testing.assert_array_equal(loaded["actions"], want["actions"])
            np.testing.assert_array_equal(loaded["rewards"], want["rewards"])
            np.testing.assert_array_equal(loaded["dones"], want["dones"])
            np.testing.assert_array_equal(loaded["success"], want["success"])
            np.testing.assert_array_equal(loaded["states"], want["states"])
            np.testing.assert_array_equal(loaded["final_state"], want["final_state"])


def test_storage_layout_chunks_images_per_frame(tmp_path, spec, episode_factory):
    path = str(tmp_path / "eps.hdf5")
    _write(path, spec, episode_factory, lengths=(5,))
    with h5py.File(path, "r") as f:
        ds = f["data/demo_0/obs/agentview_image"]
        assert ds.chunks == (1, 16, 16, 3) and ds.compression == "gzip"
        assert f["data/demo_0/final_obs/agentview_image"].shape == (1, 16, 16, 3)
        assert f["data/demo_0/final_states"].shape == (1, 5)
        assert f["data/demo_0"].attrs["num_samples"] == 5
        assert json.loads(f["data"].attrs["env_spec"])["env_id"] == spec.env_id
        assert list(f) == ["data"]  # commits leave no scratch groups behind


def test_lzf_compression(tmp_path, spec, episode_factory):
    path = str(tmp_path / "eps.hdf5")
    with EpisodeWriter(path, spec, compression="lzf") as writer:
        writer.write_episode(**episode_factory(4))
    with h5py.File(path, "r") as f:
        assert f["data/demo_0/obs/agentview_image"].compression == "lzf"


def test_step_api_matches_write_episode(tmp_path, spec, episode_factory):
    path = str(tmp_path / "steps.hdf5")
    want = episode_factory(7)
    with EpisodeWriter(path, spec) as writer:
        writer.begin_episode(seed=3, instruction="lift it")
        for t in range(7):
            obs = {k: v[t] for k, v in want["obs"].items()}
            writer.add_step(obs, want["actions"][t], want["rewards"][t], want["dones"][t], want["success"][t], want["states"][t])
        name = writer.end_episode(want["final_obs"], final_state=want["final_state"], attrs={"terminated": False, "truncated": True})
    assert name == "demo_0"
    with open_episodes(path) as reader:
        ep = reader["demo_0"]
        assert ep.seed == 3 and ep.instruction == "lift it"
        assert bool(ep.attrs["truncated"]) is True
        np.testing.assert_array_equal(ep.obs("agentview_image"), want["obs"]["agentview_image"])
        np.testing.assert_array_equal(ep.states, want["states"])
        np.testing.assert_array_equal(ep.final_obs("state"), want["final_obs"]["state"])


def test_add_step_copies_observations(tmp_path, spec, episode_factory):
    path = str(tmp_path / "copy.hdf5")
    want = episode_factory(2)
    obs = {k: v[0].copy() for k, v in want["obs"].items()}
    with EpisodeWriter(path, spec) as writer:
        writer.add_step(obs, want["actions"][0], 0.0, False, False)
        obs["agentview_image"][:] = 99  # an env reusing its buffer must not change the stored step
        writer.add_step(obs, want["actions"][1], 0.0, True, False)
        writer.end_episode()
    with open_episodes(path) as reader:
        frames = reader[0].obs("agentview_image")
        assert frames[0].max() == 0 and frames[1].min() == 99
        assert not reader[0].has_final_obs and not reader[0].has("states")


def test_unfinished_episode_is_never_written(tmp_path, spec, episode_factory):
    path = str(tmp_path / "partial.hdf5")
    want = episode_factory(3)
    with EpisodeWriter(path, spec) as writer:
        writer.write_episode(**want)
        writer.add_step({k: v[0] for k, v in want["obs"].items()}, want["actions"][0], 0.0, False, False)
        assert writer.in_episode
    with open_episodes(path) as reader:
        assert len(reader) == 1


def test_resume_appends_and_continues_numbering(tmp_path, spec, episode_factory):
    path = str(tmp_path / "resume.hdf5")
    _write(path, spec, episode_factory, lengths=(3, 4))
    with EpisodeWriter(path, spec) as writer:
        assert writer.num_episodes == 2 and writer.num_steps == 7
        assert writer.seeds == [100, 101]
        assert writer.write_episode(**episode_factory(5), seed=7) == "demo_2"
    with open_episodes(path) as reader:
        assert reader.episodes == ["demo_0", "demo_1", "demo_2"]
        assert reader.total == 12 and reader.attrs["total"] == 12
        assert reader[2].seed == 7


def test_resume_refuses_a_different_env_spec(tmp_path, spec, episode_factory):
    path = str(tmp_path / "spec.hdf5")
    _write(path, spec, episode_factory, lengths=(3,))
    other = dataclasses.replace(spec, control_freq=10.0)
    with pytest.raises(DatasetError, match=r"different environment \(fields \['control_freq'\].*file has 20.0, now 10.0"):
        EpisodeWriter(path, other)


def test_writer_refuses_foreign_files_and_missing_dirs(tmp_path, spec, libero_file):
    with pytest.raises(DatasetError, match="is a libero file, not a kairos-gym episode file"):
        EpisodeWriter(libero_file, spec)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        EpisodeWriter(str(tmp_path / "nope" / "x.hdf5"), spec)


def test_write_validates_arrays(tmp_path, spec, episode_factory):
    writer = EpisodeWriter(str(tmp_path / "v.hdf5"), spec)
    ep = episode_factory(4)
    bad = dict(ep, actions=np.zeros((4, 6), np.float32))
    with pytest.raises(ValueError, match=r"actions must be \[T, 7\], got shape \(4, 6\)"):
        writer.write_episode(**bad)
    bad = dict(ep, obs={**ep["obs"], "agentview_image": ep["obs"]["agentview_image"].astype(np.float32)})
    with pytest.raises(ValueError, match=r"obs\['agentview_image'\] must be uint8, got dtype float32"):
        writer.write_episode(**bad)
    bad = dict(ep, obs={"state": ep["obs"]["state"]})
    with pytest.raises(ValueError, match=r"observation keys \['state'\] do not match"):
        writer.write_episode(**bad)
    bad = dict(ep, rewards=np.zeros(3))
    with pytest.raises(ValueError, match=r"rewards must have shape \(4,\), got \(3,\)"):
        writer.write_episode(**bad)
    with pytest.raises(RuntimeError, match="no steps added"):
        writer.end_episode()
    with open_episodes(writer.path) as reader:
        assert len(reader) == 0


def test_missing_file_and_not_hdf5(tmp_path):
    with pytest.raises(DatasetError, match="does not exist"):
        EpisodeReader(str(tmp_path / "none.hdf5"))
    junk = tmp_path / "junk.hdf5"
    junk.write_bytes(b"not an hdf5 file at all" * 10)
    with pytest.raises(DatasetError, match=f"cannot open episode file {junk}.*not HDF5"):
        EpisodeReader(str(junk))
    with h5py.File(tmp_path / "empty.hdf5", "w"):
        pass
    with pytest.raises(DatasetError, match="has no 'data' group"):
        EpisodeReader(str(tmp_path / "empty.hdf5"))


def test_truncated_file_raises_dataset_error(tmp_path, spec, episode_factory):
    path = str(tmp_path / "trunc.hdf5")
    _write(path, spec, episode_factory, lengths=(20, 20))
    size = os.path.getsize(path)
    with open(path, "r+b") as f:
        f.truncate(size // 2)
    with pytest.raises(DatasetError, match="trunc.hdf5"), open_episodes(path) as reader:
        for ep in reader:
            ep.load()


def test_deleted_key_names_file_and_episode(tmp_path, spec, episode_factory):
    path = str(tmp_path / "missing.hdf5")
    _write(path, spec, episode_factory, lengths=(3, 3))
    with h5py.File(path, "a") as f:
        del f["data/demo_1/rewards"]
    with pytest.raises(DatasetError, match=r"missing.hdf5: episode 'demo_1' lacks \['rewards'\]"):
        open_episodes(path)


def test_inconsistent_lengths_are_reported(tmp_path, spec, episode_factory):
    path = str(tmp_path / "len.hdf5")
    _write(path, spec, episode_factory, lengths=(3,))
    with h5py.File(path, "a") as f:
        del f["data/demo_0/dones"]
        f["data/demo_0"].create_dataset("dones", data=np.zeros(5, bool))
    with pytest.raises(DatasetError, match=r"episode 'demo_0' has 3 actions but these lengths differ: \{'dones': 5\}"):
        open_episodes(path)


def test_reading_a_missing_obs_key_names_it(tmp_path, spec, episode_factory):
    path = str(tmp_path / "key.hdf5")
    _write(path, spec, episode_factory, lengths=(3,))
    with open_episodes(path) as reader:
        with pytest.raises(DatasetError, match=r"key.hdf5: episode 'demo_0': has no readable 'obs/wrist_image'"):
            reader[0].obs("wrist_image")
        with pytest.raises(IndexError, match="episode index 5 out of range"):
            reader[5]
        with pytest.raises(KeyError, match="no episode 'demo_9'"):
            reader["demo_9"]


def _hold_open(path: str, seconds: float):
    """A subprocess that keeps ``path`` open for reading (holding HDF5's file lock)."""
    import subprocess
    import sys

    code = f"import h5py, time\nf = h5py.File({path!r}, 'r')\nprint('open', flush=True)\ntime.sleep({seconds})\n"
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "open"
    return proc


def test_commit_waits_for_a_brief_reader(tmp_path, spec, episode_factory):
    path = str(tmp_path / "locked.hdf5")
    writer = EpisodeWriter(path, spec)
    proc = _hold_open(path, 0.5)
    try:
        assert writer.write_episode(**episode_factory(3)) == "demo_0"  # waited for the lock
    finally:
        proc.wait()
        proc.stdout.close()
    with open_episodes(path) as reader:
        assert len(reader) == 1


def test_lock_held_too_long_is_a_clear_error(tmp_path, spec):
    from kairos_gym.data.reader import open_h5

    path = str(tmp_path / "locked.hdf5")
    EpisodeWriter(path, spec)
    proc = _hold_open(path, 3.0)
    try:
        with pytest.raises(DatasetError, match="locked by another process that has it open"):
            open_h5(path, "a", wait_s=0.2)
    finally:
        proc.kill()
        proc.wait()
        proc.stdout.close()
