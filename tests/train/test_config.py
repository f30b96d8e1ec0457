import itertools

import pytest

from kairos_gym.train.config import OptimConfig, TrainConfig, read_config_toml
from kairos_gym.train.trainer import load_config
from tests.train.conftest import CONFIGS, write_config, write_data


def test_load_config_takes_shapes_from_data_and_resolves_paths(tmp_path):
    data = write_data(tmp_path / "eps.hdf5", episodes=2)
    config = load_config(write_config(tmp_path, data))
    assert config.data.paths == (str(data.resolve()),)
    relative = tmp_path / "sub"
    relative.mkdir()
    (relative / "t.toml").write_text("[data]\npaths = [\"../eps.hdf5\"]\n")
    assert load_config(relative / "t.toml").data.paths == (str(data.resolve()),)
    assert config.model.image_size == (16, 16) and config.model.action_dim == 7
    assert config.model.state_dim == 9  # the synthetic spec's state vector
    assert config.model_preset == "tiny" and config.seed == 3
    assert config.world_model.clip_len == 4


@pytest.mark.parametrize("text, message", [
    ("[data]\npaths=['x.hdf5']\n[world_model]\nstepz = 3\n", "unknown keys"),
    ("[data]\npaths=['x.hdf5']\n[optimizer]\nlr = 1\n", "unknown training config keys"),
    ("[model]\npreset='huge'\n[data]\npaths=['x.hdf5']\n", "unknown model preset"),
    ("[model]\nwidth=3\n[data]\npaths=['x.hdf5']\n", "[model]"),
    ("[data]\npaths=['x.hdf5']\n[world_model]\nclip_len = 1\n", "clip_len"),
    ("[data]\npaths=['x.hdf5']\n[codec]\nsteps = 0\n", "steps"),
    ("[data]\npaths=[]\n", "data.paths"),
    ("[data\npaths=[]\n", "cannot read"),
])
def test_bad_configs_are_named(tmp_path, text, message):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(ValueError, match=message.replace("[", r"\[")):
        TrainConfig.from_toml(path)


def test_learning_rate_warms_up_then_decays_to_the_floor():
    cfg = OptimConfig(steps=100, lr=1.0, warmup_steps=10, min_lr_ratio=0.1)
    lrs = [cfg.learning_rate(s) for s in range(100)]
    assert lrs[0] == pytest.approx(0.1) and lrs[9] == pytest.approx(1.0)
    assert all(a >= b for a, b in itertools.pairwise(lrs[10:]))
    assert cfg.learning_rate(100) == pytest.approx(0.1)


def test_config_round_trips_to_a_json_dict(tmp_path):
    data = write_data(tmp_path / "eps.hdf5", episodes=2)
    config = load_config(write_config(tmp_path, data))
    d = config.to_dict()
    assert d["model"]["state_dim"] == 9 and d["world_model"]["clip_len"] == 4
    assert d["data"]["paths"] == [str(data.resolve())]


def test_state_keys_are_recorded_only_when_set():
    raw = {"data": {"paths": ["e.hdf5"]}}
    assert "state_keys" not in TrainConfig.from_dict(raw).to_dict()["data"]  # earlier runs resume
    config = TrainConfig.from_dict({"data": {**raw["data"], "state_keys": ["state", "joints"]}})
    assert config.data.state_keys == ("state", "joints")
    assert config.to_dict()["data"]["state_keys"] == ["state", "joints"]
    assert TrainConfig.from_dict({"data": config.to_dict()["data"]}).data == config.data
    for bad in ("state", ["state", "state"], ["state", ""], [1]):
        with pytest.raises(ValueError, match="state_keys must be a list of distinct"):
            TrainConfig.from_dict({"data": {**raw["data"], "state_keys": bad}})


def test_a_config_takes_its_base_and_replaces_what_it_sets(tmp_path):
    (tmp_path / "runs").mkdir()
    (tmp_path / "runs" / "base.toml").write_text(
        'seed = 1\ninit = "model"\n[model]\nproprio_conditioning = true\n[data]\npaths = ["a.hdf5", "b.hdf5"]\ncamera = "sideview"\n'
        '[proprio]\nsteps = 100\nlr = 1e-3\nwindow = 32\npaths = ["s.hdf5"]\n')
    (tmp_path / "middle.toml").write_text('base = "runs/base.toml"\n[proprio]\nwindow = 96\n')
    (tmp_path / "variant.toml").write_text(
        'base = "middle.toml"\nseed = 2\n[data]\npaths = ["c.hdf5"]\n[proprio]\nlr = 1e-4\n')
    raw = read_config_toml(tmp_path / "variant.toml")
    base_dir = (tmp_path / "runs").resolve()
    assert raw["seed"] == 2 and raw["init"] == str(base_dir / "model")  # the base's own directory
    assert raw["data"] == {"paths": [str(tmp_path.resolve() / "c.hdf5")], "camera": "sideview"}
    assert raw["proprio"] == {"steps": 100, "lr": 1e-4, "window": 96, "paths": [str(base_dir / "s.hdf5")]}
    config = TrainConfig.from_toml(tmp_path / "variant.toml", state_dim=9)
    assert config.proprio.window == 96 and config.proprio.lr == 1e-4 and config.data.camera == "sideview"
    assert config.init == str(base_dir / "model")

    (tmp_path / "loop.toml").write_text('base = "loop2.toml"\n')
    (tmp_path / "loop2.toml").write_text('base = "loop.toml"\n')
    with pytest.raises(ValueError, match="cycle"):
        read_config_toml(tmp_path / "loop.toml")
    (tmp_path / "orphan.toml").write_text('base = "missing.toml"\n')
    with pytest.raises(ValueError, match=r"missing.toml \(base of .*orphan.toml\)"):
        read_config_toml(tmp_path / "orphan.toml")
    (tmp_path / "bad.toml").write_text("base = 3\n")
    with pytest.raises(ValueError, match="base must be the path"):
        read_config_toml(tmp_path / "bad.toml")


def test_codec_weights_are_a_path_beside_the_config(tmp_path):
    raw = {"data": {"paths": ["e.hdf5"]}, "model": {"preset": "tiny-wan"}}
    config = TrainConfig.from_dict({**raw, "codec_weights": "vae/w.safetensors"}, base_dir=tmp_path)
    assert config.codec_weights == str(tmp_path.resolve() / "vae" / "w.safetensors")
    assert config.to_dict()["codec_weights"] == config.codec_weights
    assert "codec_weights" not in TrainConfig.from_dict(raw).to_dict()  # earlier runs resume
    with pytest.raises(ValueError, match="codec_weights must be a path"):
        TrainConfig.from_dict({**raw, "codec_weights": 1})


# The arm's 8 and Lift's cube position; Lift's 8, TransferCube's 14 and the 2-way one-hot;
# TransferCube's cube (3) and 14 joints; Door's 5 (handle position, hinge, latch) and the arm's 8.
STATE_WIDTHS = {"lift_object_frame.toml": 11, "lift_dynamics_arm.toml": 11, "lift_arm.toml": 11, "cross/joint.toml": 24,
                "lift_stochastic.toml": 11, "lift_adapt.toml": 11, "lift_adapt_mix.toml": 11,
                "door_adapt.toml": 13, "door_adapt_states.toml": 13, "door_adapt_rollouts.toml": 13,
                "door_adapt_rollouts_det.toml": 13, "door_object_frame.toml": 13,
                "door_adapt_more_rollouts.toml": 13, "door_adapt_frames.toml": 13,
                "door_adapt_frames_gentle.toml": 13, "door_adapt_long_windows.toml": 13,
                "door_adapt_windows96.toml": 13, "door_adapt_episode_windows.toml": 13,
                "door_adapt_reset_weighted.toml": 13, "door_adapt_windows96_seed1.toml": 13,
                "door_adapt_windows96_seed2.toml": 13, "door_adapt_windows96_continued.toml": 13,
                "door_history_wide_unweighted.toml": 13, "door_history_wide_unweighted_windows96.toml": 13,
                "door_adapt_reset_head.toml": 13,
                "door_history_wide.toml": 13, "door_history_wide_windows96.toml": 13,
                "door_joints.toml": 27, "door_joints_windows96.toml": 27,
                "transfer_cube_dynamics.toml": 17, "transfer_cube_state_targets.toml": 17,
                "transfer_cube_rollouts.toml": 17}
# Where a config's model reads action entries (ALOHA's 14 joint targets).
ACTION_WIDTHS = {"transfer_cube_dynamics.toml": 14, "transfer_cube_state_targets.toml": 14,
                 "transfer_cube_rollouts.toml": 14}


@pytest.mark.parametrize("name", sorted(str(p.relative_to(CONFIGS)) for p in CONFIGS.rglob("*.toml")))
def test_every_shipped_config_parses(name):
    # Parsing only (the data files are not read): a renamed or mistyped key fails here. The
    # state width, which the trainer reads from the data, is given as the data's: the arm's 8
    # numbers, plus the object's where the config's model reads positions from it.
    config = TrainConfig.from_toml(CONFIGS / name, state_dim=STATE_WIDTHS.get(name, 8),
                                   action_dim=ACTION_WIDTHS.get(name, 7))
    assert config.data.paths


def test_transfer_cube_config_is_the_proprio_recipe_on_the_top_camera():
    config = TrainConfig.from_toml(CONFIGS / "transfer_cube.toml", image_size=(64, 64),
                                   action_dim=14, state_dim=14)
    assert config.data.camera == "top" and config.model.proprio_conditioning
    assert config.proprio.steps > 0 and config.proprio.window == config.world_model.clip_len
    assert not any("heldout" in p for p in config.data.paths)


def test_options_added_later_are_stored_only_when_set():
    # A run's train_config.json is compared whole on resume: options added after it was
    # written must not appear at their defaults, or it would no longer resume.
    raw = {"data": {"paths": ["e.hdf5"]}, "model": {"preset": "tiny", "state_dim": 9,
                                                    "proprio_conditioning": True},
           "proprio": {"steps": 10}}
    plain = TrainConfig.from_dict(raw).to_dict()
    assert "input_noise" not in plain["proprio"] and "proprio_position_targets" not in plain["model"]
    assert "reset_windows" not in plain["proprio"] and "proprio_arm_entries" not in plain["model"]
    assert "proprio_action_history" not in plain["model"] and "step_normalised" not in plain["proprio"]
    assert "proprio_stochastic" not in plain["model"] and "proprio_noise_entries" not in plain["model"]
    assert "noise_steps" not in plain["proprio"]
    set_ = TrainConfig.from_dict({
        **raw, "model": {**raw["model"], "proprio_position_targets": [0, 0, 7],
                         "proprio_arm_entries": [3, 6]},
        "proprio": {"steps": 10, "input_noise": 0.05, "reset_windows": True}}).to_dict()
    assert set_["proprio"]["input_noise"] == 0.05 and set_["proprio"]["reset_windows"] is True
    assert set_["model"]["proprio_position_targets"] == [0, 0, 7]
    assert set_["model"]["proprio_arm_entries"] == [3, 6]
    with pytest.raises(ValueError, match="proprio.reset_windows"):
        TrainConfig.from_dict({**raw, "proprio": {"steps": 10, "reset_windows": "yes"}})
    with pytest.raises(ValueError, match="proprio.step_normalised"):
        TrainConfig.from_dict({**raw, "proprio": {"steps": 10, "step_normalised": 1}})
    with pytest.raises(ValueError, match="proprio_action_history"):
        TrainConfig.from_dict({**raw, "model": {**raw["model"], "proprio_action_history": "yes"}})
    with pytest.raises(ValueError, match="needs reset_windows"):
        TrainConfig.from_dict({**raw, "proprio": {"steps": 10, "reset_weight": 5.0}})
    for bad in (0.0, -1.0, "5", True):
        with pytest.raises(ValueError, match="proprio.reset_weight"):
            TrainConfig.from_dict({**raw, "proprio": {"steps": 10, "reset_windows": True, "reset_weight": bad}})
    weighted = TrainConfig.from_dict({**raw, "proprio": {"steps": 10, "reset_windows": True,
                                                         "reset_weight": 20.0}}).to_dict()
    assert weighted["proprio"]["reset_weight"] == 20.0
    assert "reset_weight_steps" not in weighted["proprio"]  # unset: earlier runs' configs compare equal
    head = TrainConfig.from_dict({**raw, "proprio": {"steps": 10, "reset_windows": True, "reset_weight": 20.0,
                                                     "reset_weight_steps": 8}}).to_dict()
    assert head["proprio"]["reset_weight_steps"] == 8
    for bad in (-1, 2.5, "8", True):
        with pytest.raises(ValueError, match="proprio.reset_weight_steps must"):
            TrainConfig.from_dict({**raw, "proprio": {"steps": 10, "reset_windows": True, "reset_weight": 20.0,
                                                      "reset_weight_steps": bad}})
    with pytest.raises(ValueError, match="needs reset_weight other than 1"):
        TrainConfig.from_dict({**raw, "proprio": {"steps": 10, "reset_windows": True, "reset_weight_steps": 8}})
    for bad in (-0.1, float("nan"), "0.1", True):
        with pytest.raises(ValueError, match="proprio.input_noise"):
            TrainConfig.from_dict({**raw, "proprio": {"steps": 10, "input_noise": bad}})
