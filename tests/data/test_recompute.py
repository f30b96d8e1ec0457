"""Observation keys recomputed from recorded simulator states equal those collected live."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

from kairos_gym.data.episodes import open_episodes
from kairos_gym.data.recompute import add_observation_key
from kairos_gym.data.recompute import main as recompute
from kairos_gym.errors import DatasetError
from tests.data.conftest import collect_small

pytestmark = pytest.mark.sim


def test_recomputed_joints_equal_the_live_ones_exactly(tmp_path):
    pytest.importorskip("robosuite")
    live, later = tmp_path / "live.hdf5", tmp_path / "later.hdf5"
    collect_small(live, "--joints", "--object-state", seed=5)
    collect_small(later, "--object-state", seed=5)
    assert recompute(["--key", "joints", str(later)]) == 0
    assert add_observation_key(later, "joints") == 0  # done: a rerun adds nothing
    with open_episodes(str(live)) as a, open_episodes(str(later)) as b:
        assert a.env_spec == b.env_spec
        assert b.env_spec.env_kwargs["joint_obs"] is True
        assert b.env_spec.env_kwargs["object_obs"] is True  # the other key is kept
        for x, y in zip(a, b):
            assert y.obs("joints").shape == (len(x), 14)
            # Read from the simulator's joints, not from sampled observables: exact.
            np.testing.assert_array_equal(y.obs("joints"), x.obs("joints"))
            np.testing.assert_array_equal(y.final_obs("joints"), x.final_obs("joints"))


def test_joints_are_refused_for_an_env_without_them(tmp_path):
    pytest.importorskip("mujoco")
    aloha = tmp_path / "aloha.hdf5"
    collect_small(aloha, env="kairos_gym/Aloha-TransferCube-v0", seed=5)
    with pytest.raises(DatasetError, match="joints is defined for the robosuite envs"):
        add_observation_key(aloha, "joints")
    with h5py.File(aloha) as f:  # nothing was written
        assert "joints" not in f["data/demo_0/obs"]
    with pytest.raises(ValueError, match="cannot recompute observation key 'cube'"):
        add_observation_key(aloha, "cube")
