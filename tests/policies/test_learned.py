"""Tests of the behaviour-cloning policy: training, chunks, save/load, bad checkpoints, CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from kairos_gym.cli import main as cli_main
from kairos_gym.errors import CheckpointError, DatasetError, ShapeError
from kairos_gym.policies.learned import BCConfig, BCPolicy, train_bc
from tests.train.conftest import write_data


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return write_data(tmp_path_factory.mktemp("bc") / "episodes.hdf5", episodes=4, steps=12)


def test_bc_learns_a_constant_action_and_round_trips(data, tmp_path):
    torch.set_num_threads(1)
    policy = train_bc(data, BCConfig(steps=150, chunk=3, batch_size=16), progress=False)
    assert policy.image_key == "agentview_image" and policy.state_keys == ("state",)
    assert policy.config.camera == "agentview"  # the file's only camera, stored
    from kairos_gym.data import load_episodes

    ep = load_episodes(data, "agentview", split="all", state_keys=("state",))[0]
    obs = {"agentview_image": ep["frames"][0], "state": ep["state"][0]}
    chunk = policy.act(obs)
    assert chunk.shape == (3, 7) and chunk.dtype == np.float32 and np.all(np.abs(chunk) <= 1)
    # Training lowers the error against the recorded actions well below an untrained net's.
    untrained = train_bc(data, BCConfig(steps=1, chunk=3, batch_size=16), progress=False)
    target = ep["actions"][:3]
    assert np.abs(chunk - target).mean() < 0.5 * np.abs(untrained.act(obs) - target).mean()
    batch = {k: np.stack([v, v]) for k, v in obs.items()}
    np.testing.assert_allclose(policy.act_batch(batch), np.stack([chunk, chunk]), atol=1e-6)
    policy.save(tmp_path / "p")
    loaded = BCPolicy.load(tmp_path / "p")
    np.testing.assert_array_equal(loaded.act(obs), chunk)
    assert loaded.config == policy.config
    with pytest.raises(ShapeError, match=r"needs observation keys \['state'\]"):
        policy.act({"agentview_image": obs["agentview_image"]})


def _with_cameras(path, names):
    """A copy of the test episodes whose images are seen by the cameras ``names``."""
    import dataclasses

    import gymnasium as gym

    from kairos_gym.data.episodes import EpisodeWriter
    from tests.data.conftest import make_episode, make_spec

    spec = make_spec()
    spaces = {k: v for k, v in spec.observation_space.spaces.items() if k != "agentview_image"}
    for name in names:
        spaces[f"{name}_image"] = spec.observation_space["agentview_image"]
    spec = dataclasses.replace(spec, observation_space=gym.spaces.Dict(spaces), cameras=tuple(names))
    with EpisodeWriter(str(path), spec) as writer:
        for i in range(2):
            ep = make_episode(12, seed=i)
            for part in ("obs", "final_obs"):
                image = ep[part].pop("agentview_image")
                for name in names:
                    ep[part][f"{name}_image"] = image
            writer.write_episode(**ep)
    return path


def test_bc_sees_the_files_only_camera_unless_told(tmp_path):
    side = _with_cameras(tmp_path / "side.hdf5", ["sideview"])
    policy = train_bc(side, BCConfig(steps=2), progress=False)
    assert policy.image_key == "sideview_image" and policy.config.camera == "sideview"
    two = _with_cameras(tmp_path / "two.hdf5", ["sideview", "wrist"])
    with pytest.raises(DatasetError, match=r"2 camera images .*--camera"):
        train_bc(two, BCConfig(steps=2), progress=False)
    assert train_bc(two, BCConfig(steps=2, camera="wrist"), progress=False).image_key == "wrist_image"


def _with_object_state(path):
    """A copy of the test episodes with the privileged ``object_state`` [3] recorded too."""
    import dataclasses

    import gymnasium as gym

    from kairos_gym.data.episodes import EpisodeWriter
    from tests.data.conftest import make_episode, make_spec

    spec = make_spec()
    spaces = dict(spec.observation_space.spaces)
    spaces["object_state"] = gym.spaces.Box(-np.inf, np.inf, (3,), np.float32)
    spec = dataclasses.replace(spec, observation_space=gym.spaces.Dict(spaces))
    with EpisodeWriter(str(path), spec) as writer:
        for i in range(2):
            ep = make_episode(12, seed=i)
            ep["obs"]["object_state"] = np.full((12, 3), float(i), np.float32)
            ep["final_obs"]["object_state"] = np.full(3, float(i), np.float32)
            writer.write_episode(**ep)
    return path


def test_bc_never_reads_privileged_object_state_unless_told(tmp_path):
    path = _with_object_state(tmp_path / "objects.hdf5")
    policy = train_bc(path, BCConfig(steps=2), progress=False)
    assert policy.state_keys == ("state",) and policy.config.state_keys == ("state",)
    policy.save(tmp_path / "p")
    assert BCPolicy.load(tmp_path / "p").state_keys == ("state",)
    # Asked for explicitly, in any order: the file's order, which is how the state is built.
    both = train_bc(path, BCConfig(steps=2, state_keys=("state", "object_state")), progress=False)
    assert both.state_keys == ("object_state", "state") and both.net.state_mean.shape == (12,)
    with pytest.raises(DatasetError, match=r"no state keys \['nope'\]"):
        train_bc(path, BCConfig(steps=2, state_keys=("nope",)), progress=False)
    code = cli_main(["train-policy", "--data", str(path), "--output", str(tmp_path / "cli"),
                     "--steps", "2", "--state-keys", "state,object_state", "--no-progress"])
    assert code == 0 and BCPolicy.load(tmp_path / "cli").state_keys == ("object_state", "state")
    code = cli_main(["train-policy", "--data", str(path), "--output", str(tmp_path / "none"),
                     "--steps", "2", "--state-keys", ",", "--no-progress"])
    assert code == 2 and not (tmp_path / "none").exists()


def test_bc_uses_fewer_episodes_when_asked_and_is_seeded(data):
    a = train_bc(data, BCConfig(steps=5, max_episodes=1, seed=2), progress=False)
    b = train_bc(data, BCConfig(steps=5, max_episodes=1, seed=2), progress=False)
    for x, y in zip(a.net.state_dict().values(), b.net.state_dict().values()):
        torch.testing.assert_close(x, y)


def test_bad_configs_and_checkpoints(tmp_path, data):
    with pytest.raises(ValueError, match="BCConfig.steps must be a positive integer"):
        BCConfig(steps=0)
    with pytest.raises(ValueError, match="max_episodes"):
        BCConfig(max_episodes=0)
    with pytest.raises(ValueError, match="state_keys must name at least one key"):
        BCConfig(state_keys=())
    with pytest.raises(CheckpointError, match="no policy checkpoint"):
        BCPolicy.load(tmp_path / "missing")
    policy = train_bc(data, BCConfig(steps=1), progress=False)
    path = policy.save(tmp_path / "p")
    (path / "policy.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(CheckpointError, match="unreadable policy checkpoint"):
        BCPolicy.load(path)
    policy.save(path)
    meta = json.loads((path / "policy.json").read_text())
    meta["state_dim"] = 3
    (path / "policy.json").write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match="unreadable policy checkpoint"):
        BCPolicy.load(path)


def test_train_policy_command(data, tmp_path, capsys):
    out = tmp_path / "cli"
    code = cli_main(["train-policy", "--data", str(data), "--output", str(out), "--steps", "3",
                     "--episodes", "2", "--threads", "1", "--no-progress"])
    assert code == 0 and (out / "policy.safetensors").is_file()
    assert "policy written to" in capsys.readouterr().out
    assert BCPolicy.load(out).config.max_episodes == 2
    code = cli_main(["train-policy", "--data", str(tmp_path / "none.hdf5"), "--output", str(out),
                     "--steps", "3", "--no-progress"])
    assert code == 1 and "error" in capsys.readouterr().err


def test_bc_acts_within_an_action_space_that_is_not_minus_one_to_one(tmp_path):
    # ALOHA-like bounds: joint targets beyond 1 and a gripper in [0, 1]. A tanh head without
    # the bounds' map could neither reach 1.5 nor keep the gripper from going negative.
    import dataclasses

    import gymnasium as gym

    from kairos_gym.data.episodes import EpisodeWriter
    from tests.data.conftest import make_episode, make_spec

    low = np.array([-3.0] * 6 + [0.0], np.float32)
    high = np.array([3.0] * 6 + [1.0], np.float32)
    spec = dataclasses.replace(make_spec(), action_space=gym.spaces.Box(low, high, (7,), np.float32))
    path = str(tmp_path / "joints.hdf5")
    with EpisodeWriter(path, spec) as writer:
        for i in range(3):
            ep = make_episode(12, seed=i)
            ep["actions"] = np.tile(np.array([1.5] * 6 + [0.02], np.float32), (12, 1))
            writer.write_episode(**ep)
    torch.set_num_threads(1)
    policy = train_bc(path, BCConfig(steps=300, chunk=2, batch_size=16, lr=3e-3), progress=False)
    np.testing.assert_array_equal(policy.net.action_low.numpy(), low)
    from kairos_gym.data import load_episodes

    ep = load_episodes(path, "agentview", split="all", state_keys=("state",))[0]
    chunk = policy.act({"agentview_image": ep["frames"][0], "state": ep["state"][0]})
    assert np.all(chunk >= low) and np.all(chunk <= high)
    np.testing.assert_allclose(chunk[:, :6], 1.5, atol=0.1)
    # Saved and loaded with its bounds; a policy saved before bounds were stored acts in [-1, 1].
    policy.save(tmp_path / "p")
    np.testing.assert_array_equal(BCPolicy.load(tmp_path / "p").act(
        {"agentview_image": ep["frames"][0], "state": ep["state"][0]}), chunk)
    from safetensors.torch import load_file, save_file

    weights = load_file(str(tmp_path / "p" / "policy.safetensors"))
    del weights["action_low"], weights["action_high"]
    save_file(weights, str(tmp_path / "p" / "policy.safetensors"))
    old = BCPolicy.load(tmp_path / "p")
    assert old.net.action_low.tolist() == [-1.0] * 7 and old.net.action_high.tolist() == [1.0] * 7


def test_spatial_softmax_finds_where_a_map_peaks():
    from kairos_gym.policies.learned import SpatialSoftmax

    maps = torch.zeros(2, 3, 8, 8)
    maps[0, 0, 1, 6] = 50.0  # row 1, column 6: x = -1 + 6 * 2/7, y = -1 + 1 * 2/7
    maps[1, 2, 7, 0] = 50.0
    points = SpatialSoftmax()(maps)
    assert points.shape == (2, 6)
    torch.testing.assert_close(points[0, [0, 3]], torch.tensor([-1 + 12 / 7, -1 + 2 / 7]))
    torch.testing.assert_close(points[1, [2, 5]], torch.tensor([-1.0, 1.0]))
    torch.testing.assert_close(points[0, [1, 4]], torch.zeros(2))  # a flat map: the centre


def test_a_keypoint_policy_trains_saves_and_loads(data, tmp_path):
    torch.set_num_threads(1)
    config = BCConfig(steps=20, chunk=2, batch_size=8, pool="keypoints", keypoints=4)
    policy = train_bc(data, config, progress=False)
    assert policy.net.encoder[-2].out_channels == 4 and policy.net.head[0].in_features == 8 + 9
    policy.save(tmp_path / "k")
    loaded = BCPolicy.load(tmp_path / "k")
    assert loaded.config.pool == "keypoints"
    from kairos_gym.data import load_episodes

    ep = load_episodes(data, "agentview", split="all", state_keys=("state",))[0]
    obs = {"agentview_image": ep["frames"][0], "state": ep["state"][0]}
    np.testing.assert_array_equal(loaded.act(obs), policy.act(obs))
    # Policies saved before the option existed have no "pool" in their config: average.
    average = train_bc(data, BCConfig(steps=1), progress=False).save(tmp_path / "a")
    meta = json.loads((average / "policy.json").read_text())
    del meta["config"]["pool"], meta["config"]["keypoints"]
    (average / "policy.json").write_text(json.dumps(meta))
    assert BCPolicy.load(average).config.pool == "average"
    with pytest.raises(ValueError, match="pool must be one of"):
        BCConfig(pool="max")
    code = cli_main(["train-policy", "--data", str(data), "--output", str(tmp_path / "cli"),
                     "--steps", "2", "--pool", "keypoints", "--no-progress"])
    assert code == 0 and BCPolicy.load(tmp_path / "cli").config.pool == "keypoints"


def test_state_noise_is_training_only_seeded_stored_and_validated(data, tmp_path):
    torch.set_num_threads(1)
    clean = train_bc(data, BCConfig(steps=5, batch_size=8), progress=False)
    noisy = train_bc(data, BCConfig(steps=5, batch_size=8, state_noise=0.5), progress=False)
    again = train_bc(data, BCConfig(steps=5, batch_size=8, state_noise=0.5), progress=False)
    # The noise changes what is fitted, reproducibly; the normalisation is the data's either way.
    head = "head.0.weight"
    assert not torch.equal(clean.net.state_dict()[head], noisy.net.state_dict()[head])
    torch.testing.assert_close(noisy.net.state_dict()[head], again.net.state_dict()[head])
    torch.testing.assert_close(noisy.net.state_std, clean.net.state_std)
    # Acting is deterministic: no noise outside training.
    from kairos_gym.data import load_episodes

    ep = load_episodes(data, "agentview", split="all", state_keys=("state",))[0]
    obs = {"agentview_image": ep["frames"][0], "state": ep["state"][0]}
    np.testing.assert_array_equal(noisy.act(obs), noisy.act(obs))
    path = noisy.save(tmp_path / "n")
    assert BCPolicy.load(path).config.state_noise == 0.5
    meta = json.loads((path / "policy.json").read_text())
    del meta["config"]["state_noise"]  # a policy saved before the option existed
    (path / "policy.json").write_text(json.dumps(meta))
    assert BCPolicy.load(path).config.state_noise == 0.0
    for bad in (-0.1, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="state_noise must be a finite number >= 0"):
            BCConfig(state_noise=bad)
    code = cli_main(["train-policy", "--data", str(data), "--output", str(tmp_path / "cli"),
                     "--steps", "2", "--state-noise", "0.3", "--no-progress"])
    assert code == 0 and BCPolicy.load(tmp_path / "cli").config.state_noise == 0.3
    with pytest.raises(SystemExit) as exit_info:  # argparse refuses it
        cli_main(["train-policy", "--data", str(data), "--output", str(tmp_path / "neg"),
                  "--steps", "2", "--state-noise", "-1", "--no-progress"])
    assert exit_info.value.code == 2 and not (tmp_path / "neg").exists()
