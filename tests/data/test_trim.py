"""Cutting episodes before their state runs away: what is kept, what is dropped, bad input."""

from __future__ import annotations

import numpy as np
import pytest

from kairos_gym.data.episodes import EpisodeWriter
from kairos_gym.data.reader import EpisodeReader
from kairos_gym.data.trim import main, trim_episodes
from kairos_gym.errors import DatasetError
from tests.data.conftest import make_episode, make_spec

T = 12


@pytest.fixture
def source(tmp_path) -> str:
    """Two episodes whose state[0] counts the observations (0, 1, ..., T) and frames show j."""
    path = str(tmp_path / "source.hdf5")
    with EpisodeWriter(path, make_spec()) as writer:
        for i in range(2):
            writer.write_episode(**make_episode(T, seed=i), seed=10 + i)
    return path


def test_episodes_end_at_their_last_observation_in_range(source, tmp_path):
    out = tmp_path / "cut.hdf5"
    report = trim_episodes(source, out, max_abs=5.5)
    # state[0] of observation 6 is 6 > 5.5: 5 actions are kept and observation 5 ends it.
    assert (report.whole, report.cut, report.dropped) == (0, 2, 0)
    assert report.steps_kept == 10 and report.steps_removed == 2 * T - 10
    with EpisodeReader(source) as original, EpisodeReader(str(out)) as trimmed:
        assert trimmed.env_spec == original.env_spec and len(trimmed) == 2
        for a, b in zip(original, trimmed):
            assert b.num_samples == 5 and b.seed == a.seed
            np.testing.assert_array_equal(b.actions, a.actions[:5])
            np.testing.assert_array_equal(b.obs("state"), a.obs("state")[:5])
            np.testing.assert_array_equal(b.final_obs("state"), a.obs("state")[5])
            np.testing.assert_array_equal(b.frames("agentview_image", 0, 6), a.frames("agentview_image", 0, 6))
            np.testing.assert_array_equal(b.final_state, a.states[5])
    # In range throughout: copied whole.
    whole = trim_episodes(source, tmp_path / "whole.hdf5", max_abs=100.0)
    assert (whole.whole, whole.cut, whole.dropped, whole.steps_removed) == (2, 0, 0, 0)
    with EpisodeReader(str(tmp_path / "whole.hdf5")) as copy, EpisodeReader(source) as original:
        for a, b in zip(original, copy):
            np.testing.assert_array_equal(b.final_obs("state"), a.final_obs("state"))
            assert b.num_samples == T


def test_nothing_left_is_dropped_and_bad_input_is_refused(source, tmp_path, capsys):
    # Observation 1 already has state[0] = 1 > 0.5: no action is left to keep.
    report = trim_episodes(source, tmp_path / "none.hdf5", max_abs=0.5)
    assert (report.whole, report.cut, report.dropped) == (0, 0, 2)
    with pytest.raises(FileExistsError, match="exists"):
        trim_episodes(source, source, max_abs=5.0)
    for bad in (0, -1.0, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="max_abs"):
            trim_episodes(source, tmp_path / "x.hdf5", max_abs=bad)
    with pytest.raises(DatasetError):
        trim_episodes(tmp_path / "missing.hdf5", tmp_path / "y.hdf5", max_abs=5.0)
    assert main([source, str(tmp_path / "cli.hdf5"), "--max-abs", "5.5"]) == 0
    assert "0 episodes whole, 2 cut" in capsys.readouterr().out
    assert main([source, str(tmp_path / "cli.hdf5"), "--max-abs", "5.5"]) == 2
    assert "exists" in capsys.readouterr().err
