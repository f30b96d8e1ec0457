"""The unified multi-embodiment layout: vectors, observations and whole files."""

from __future__ import annotations

import numpy as np
import pytest

from kairos_gym.data.episodes import EpisodeWriter
from kairos_gym.data.reader import EpisodeReader
from kairos_gym.data.unified import (
    UNIFIED_ENV_ID,
    Embodiment,
    UnifiedLayout,
    is_unified,
    main,
    unify_episodes,
)
from kairos_gym.errors import DatasetError, ShapeError
from tests.data.conftest import (
    make_bimanual_episode,
    make_bimanual_spec,
    make_episode,
    make_multikey_episode,
    make_multikey_spec,
    make_spec,
)


@pytest.fixture
def layout() -> UnifiedLayout:
    return UnifiedLayout((Embodiment("lift", make_multikey_spec()),
                          Embodiment("aloha", make_bimanual_spec())))


def test_each_embodiment_owns_its_slots_and_a_one_hot(layout):
    assert layout.action_dim == 7 + 14 + 2 and layout.state_dim == 10 + 14 + 2
    a = layout.unify_action("aloha", np.full((3, 14), 0.5, np.float32))
    assert a.shape == (3, 23)
    assert np.all(a[:, :7] == 0) and np.all(a[:, 7:21] == 0.5)
    assert a[:, 21:].tolist() == [[0.0, 1.0]] * 3
    with pytest.raises(ShapeError, match=r"\[\.\.\., 7\]"):
        layout.unify_action("lift", np.zeros(14))
    with pytest.raises(ValueError, match="unknown embodiment 'panda'"):
        layout.unify_action("panda", np.zeros(7))


def test_observations_round_trip_through_the_unified_layout(layout):
    ep = make_multikey_episode(5, seed=1)
    unified = layout.unify_observation("lift", ep["obs"])
    assert set(unified) == {"view_image", "state"} and unified["state"].shape == (5, 26)
    assert np.all(unified["state"][:, 10:24] == 0)
    assert layout.embodiment_of(unified["state"]).tolist() == [0] * 5
    back = layout.split_observation("lift", unified)
    assert list(back) == list(make_multikey_spec().observation_space.spaces)
    for key, value in ep["obs"].items():
        np.testing.assert_array_equal(back[key], value)
        assert back[key].dtype == value.dtype


def test_the_unified_spec_carries_the_layout_and_holds_every_action(layout):
    spec = layout.spec()
    assert is_unified(spec) and spec.env_id == UNIFIED_ENV_ID
    assert spec.cameras == ("view",) and spec.env_kwargs["max_episode_steps"] == 50
    # The gripper slots' bounds exclude 0 in the bimanual spec; the unified Box holds the
    # zeros that fill them in every Lift action.
    assert spec.action_space.contains(layout.unify_action("lift", np.zeros(7, np.float32)))
    assert spec.action_space.contains(layout.unify_action("aloha", np.full(14, 0.5, np.float32)))
    again = UnifiedLayout.from_spec(type(spec).from_json(spec.to_json()))
    assert again.names == ("lift", "aloha") and again.spec() == spec
    with pytest.raises(ValueError, match="not a unified spec"):
        UnifiedLayout.from_spec(make_spec())


def test_a_layout_refuses_repeated_names_and_mixed_frame_sizes():
    with pytest.raises(ValueError, match="repeat"):
        UnifiedLayout((Embodiment("a", make_spec()), Embodiment("a", make_bimanual_spec())))
    with pytest.raises(ValueError, match="frame size"):
        UnifiedLayout((Embodiment("a", make_spec(16)), Embodiment("b", make_bimanual_spec(8))))
    with pytest.raises(ValueError, match="identifier"):
        Embodiment("two words", make_spec())
    with pytest.raises(ValueError, match="at least one"):
        UnifiedLayout(())


def _write(path, spec, episode, n=2, T=6):
    with EpisodeWriter(str(path), spec) as writer:
        for i in range(n):
            writer.write_episode(**episode(T, seed=i), seed=10 + i)
    return path


def test_unify_episodes_converts_a_file_and_never_overwrites(tmp_path):
    lift = _write(tmp_path / "lift.hdf5", make_spec(), make_episode)
    aloha = _write(tmp_path / "aloha.hdf5", make_bimanual_spec(), make_bimanual_episode)
    layout = UnifiedLayout((Embodiment("lift", make_spec()), Embodiment("aloha", make_bimanual_spec())))
    out = tmp_path / "u_aloha.hdf5"
    assert unify_episodes(aloha, out, layout, "aloha") == 2
    source = make_bimanual_episode(6, seed=1)
    with EpisodeReader(out) as reader:
        assert reader.env_spec == layout.spec()
        ep = reader[1].load()
        assert reader[1].seed == 11
    np.testing.assert_array_equal(ep["obs"]["view_image"], source["obs"]["top_image"])
    np.testing.assert_allclose(ep["actions"], layout.unify_action("aloha", source["actions"]))
    np.testing.assert_array_equal(ep["obs"]["state"][:, layout.state_slice("aloha")], source["obs"]["state"])
    np.testing.assert_array_equal(ep["success"], source["success"])
    np.testing.assert_array_equal(ep["final_obs"]["view_image"], source["final_obs"]["top_image"])
    with pytest.raises(FileExistsError):
        unify_episodes(aloha, out, layout, "aloha")
    # A Lift file is not the bimanual embodiment's data.
    with pytest.raises(DatasetError, match="not embodiment 'aloha'"):
        unify_episodes(lift, tmp_path / "wrong.hdf5", layout, "aloha")
    with pytest.raises(DatasetError, match="different env than embodiment 'lift'"):
        unify_episodes(_write(tmp_path / "multikey.hdf5", make_multikey_spec(), make_multikey_episode),
                       tmp_path / "wrong.hdf5", layout, "lift")
    assert not (tmp_path / "wrong.hdf5").exists()


def test_the_command_converts_every_file_into_one_layout(tmp_path, capsys):
    lift = _write(tmp_path / "lift.hdf5", make_spec(), make_episode)
    aloha = _write(tmp_path / "aloha.hdf5", make_bimanual_spec(), make_bimanual_episode, n=3)
    out = tmp_path / "unified"
    assert main([str(out), "--embodiment", "lift", "agentview", str(lift),
                 "--embodiment", "aloha", "top", str(aloha)]) == 0
    with EpisodeReader(out / "lift" / "lift.hdf5") as a, EpisodeReader(out / "aloha" / "aloha.hdf5") as b:
        assert a.env_spec == b.env_spec and len(b) == 3
    assert "actions 23" in capsys.readouterr().out
    # Again into the same folder: nothing is overwritten, the error is named.
    assert main([str(out), "--embodiment", "lift", "agentview", str(lift)]) == 2
    assert "exists" in capsys.readouterr().err
    # A camera the file does not have.
    assert main([str(tmp_path / "x"), "--embodiment", "lift", "top", str(lift)]) == 2
    assert "not 'top'" in capsys.readouterr().err


def test_a_conversion_that_fails_half_way_leaves_no_file(tmp_path, monkeypatch):
    aloha = _write(tmp_path / "aloha.hdf5", make_bimanual_spec(), make_bimanual_episode, n=3)
    layout = UnifiedLayout((Embodiment("lift", make_spec()), Embodiment("aloha", make_bimanual_spec())))
    calls = []
    original = UnifiedLayout.unify_action

    def fail_on_the_second_episode(self, name, action):
        calls.append(name)
        if len(calls) == 2:
            raise ShapeError("interrupted")
        return original(self, name, action)

    monkeypatch.setattr(UnifiedLayout, "unify_action", fail_on_the_second_episode)
    out = tmp_path / "u.hdf5"
    with pytest.raises(ShapeError, match="interrupted"):
        unify_episodes(aloha, out, layout, "aloha")
    assert list(tmp_path.iterdir()) == [aloha]  # neither the file nor a partial one
    monkeypatch.undo()
    assert unify_episodes(aloha, out, layout, "aloha") == 3  # a second try goes through
