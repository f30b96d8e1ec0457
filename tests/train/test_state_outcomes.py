"""Outcomes read from the carried state, and the state-only episodes the dynamics learns from."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch

from kairos_gym.data.dataset import ClipDataset
from kairos_gym.data.episodes import EpisodeWriter
from kairos_gym.errors import CheckpointError, DatasetError
from kairos_gym.imagined.checkpoint import load_env_checkpoint
from kairos_gym.imagined.env import ImaginedEnv
from kairos_gym.imagined.success import SuccessRule
from kairos_gym.model import checkpoint as ckpt
from kairos_gym.model.proprio import LOG_SCALE_RANGE
from kairos_gym.train.trainer import Trainer, load_config
from tests.data.conftest import make_episode, make_spec
from tests.train.conftest import write_config, write_data

PROPRIO = 'preset = "tiny"\nproprio_conditioning = true\nproprio_hidden = 16'


def write_state_only(path: Path, episodes: int = 6, steps: int = 12) -> Path:
    """Episodes as ``kairos-gym collect --cameras none`` writes them: no image key at all."""
    spec = dataclasses.replace(
        make_spec(),
        observation_space=gym.spaces.Dict({"state": gym.spaces.Box(-np.inf, np.inf, (9,), np.float32)}),
        env_kwargs={"cameras": [], "max_episode_steps": 50},
        cameras=(),
        image_size=None,
    )
    with EpisodeWriter(str(path), spec) as writer:
        for i in range(episodes):
            ep = make_episode(steps, seed=50 + i)
            ep["obs"] = {"state": ep["obs"]["state"]}
            ep["final_obs"] = {"state": ep["final_obs"]["state"]}
            writer.write_episode(**ep, seed=i)
    return path


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("data")
    return write_data(root / "eps.hdf5"), write_state_only(root / "state_only.hdf5")


def _train(config: Path, output: Path) -> Path:
    torch.set_num_threads(1)
    out = Trainer(load_config(config), output, progress=False).run()
    assert out is not None
    return out


def _config(directory: Path, data: Path, model: str, proprio: str, init: Path | None = None) -> Path:
    directory.mkdir()
    config = write_config(directory, data)
    text = config.read_text().replace('preset = "tiny"', model)
    if init is not None:
        text = text.replace("seed = 3", f'seed = 3\ninit = "{init}"')
    config.write_text(text + f"\n[proprio]\nsteps = 8\nbatch_size = 16\nwindow = 3\nlog_every = 2\n"
                             f"checkpoint_every = 4\n{proprio}\n")
    return config


def test_state_only_clips_have_no_frames_and_the_same_states(files):
    data, state_only = files
    plain = ClipDataset(state_only, clip_len=4, cameras=())
    assert "frames" not in plain[0] and plain[0]["state"].shape == (4, 9)
    # A file with frames read state-only gives what the full reader gives, minus the frames.
    full, bare = ClipDataset(data, clip_len=4), ClipDataset(data, clip_len=4, cameras=())
    for i in (0, len(full) - 1):
        for key, value in bare[i].items():
            torch.testing.assert_close(value, full[i][key], msg=key)
    with pytest.raises(DatasetError, match="agentview"):
        ClipDataset(state_only, clip_len=4)  # frames asked of a file that has none


def test_state_outcomes_are_added_at_fine_tuning_and_fitted_on_state_only_episodes(tmp_path, files):
    data, state_only = files
    first = _train(_config(tmp_path / "a", data, PROPRIO, ""), tmp_path / "first")
    config = _config(tmp_path / "b", data, PROPRIO + "\nstate_outcomes = true",
                     f'paths = ["{state_only}"]', init=first)
    loaded = load_config(config)
    assert loaded.proprio.paths == (str(state_only),)
    trainer = Trainer(loaded, tmp_path / "tuned", progress=False)
    out = trainer.run()
    assert out is not None
    tensors = ckpt.load_tensors(out / "model.safetensors")
    head = {k: v for k, v in tensors.items() if k.startswith("proprio_dynamics.outcome_head.")}
    assert head, "the exported model lacks the outcome head"
    records = [r for r in trainer.log.read() if r.get("stage") == "proprio"]
    assert records and "success_bce" in records[0] and "success_acc" in records[0]
    # The windows the stage learned from include the state-only file's.
    windows = trainer._proprio_windows(trainer.model, "train")
    with_frames = len(trainer._dataset(4, "train"))
    assert len(windows["state"]) == with_frames + len(trainer._state_dataset(4, "train"))

    env = ImaginedEnv(out)
    env.reset(seed=0)
    dyn = env.core.model.dit.proprio_dynamics
    # Success is the head's reading of the carried state: force it and the env follows.
    with torch.no_grad():
        dyn.outcome_head[-1].weight.zero_()
        dyn.outcome_head[-1].bias.copy_(torch.tensor([2.5, 20.0, -20.0]))
    _, reward, terminated, _, info = env.step(env.action_space.sample())
    assert info["success"] and info["success_prob"] > 0.99 and reward == pytest.approx(2.5)
    assert not terminated
    with torch.no_grad():
        dyn.outcome_head[-1].bias.copy_(torch.tensor([0.0, -20.0, 20.0]))
    _, reward, terminated, _, info = env.step(env.action_space.sample())
    assert not info["success"] and terminated
    env.close()


def test_state_outcomes_need_the_proprioceptive_path(tmp_path, files):
    config = _config(tmp_path / "c", files[0], 'preset = "tiny"\nstate_outcomes = true', "")
    with pytest.raises(ValueError, match="state_outcomes .*proprio_conditioning"):
        load_config(config)


def test_a_missing_state_only_file_fails_before_training(tmp_path, files):
    config = _config(tmp_path / "d", files[0], PROPRIO, f'paths = ["{tmp_path / "nope.hdf5"}"]')
    with pytest.raises(DatasetError, match="nope.hdf5"):
        Trainer(load_config(config), tmp_path / "run", progress=False)


def test_refit_starts_the_dynamics_afresh_and_keeps_the_frames(tmp_path, files):
    data, _ = files
    first = _train(_config(tmp_path / "a", data, PROPRIO, ""), tmp_path / "first")
    base = ckpt.load_tensors(first / "model.safetensors")
    # No proprio step at all would leave the fresh dynamics untouched: one tiny step shows it.
    config = _config(tmp_path / "b", data, PROPRIO, "refit = true", init=first)
    text = config.read_text().replace("steps = 8\nbatch_size = 16", "steps = 1\nbatch_size = 16\nlr = 1e-12")
    config.write_text(text.replace("[world_model]\nsteps = 6", "[world_model]\nsteps = 1\nlr = 1e-12"))
    tuned = ckpt.load_tensors(_train(config, tmp_path / "refit") / "model.safetensors")
    last = "proprio_dynamics.net.4.weight"  # the output layer: fitted before, zero when fresh
    assert base[last].abs().sum() > 0 and tuned[last].abs().max() < 1e-6
    assert not torch.allclose(tuned["proprio_dynamics.net.0.weight"], base["proprio_dynamics.net.0.weight"])
    torch.testing.assert_close(tuned["proprio_embedding.0.weight"], base["proprio_embedding.0.weight"],
                               atol=1e-6, rtol=0)


def test_the_outcome_head_is_refitted_on_the_dynamics_own_unrolls(tmp_path, files):
    data, state_only = files
    config = _config(tmp_path / "e", data, PROPRIO + "\nstate_outcomes = true",
                     f'paths = ["{state_only}"]\noutcome_steps = 5')
    trainer = Trainer(load_config(config), tmp_path / "run", progress=False)
    out = trainer.run()
    assert out is not None
    record = [r for r in trainer.log.read() if r.get("stage") == "proprio_outcomes"]
    # Every training episode (13 frames) gives its true states and its unroll from frame 0;
    # frames 20 and 40 lie past its end.
    n_train = len(trainer._dataset(4, "train").episodes) + len(trainer._state_dataset(4, "train").episodes)
    assert record and record[0]["samples"] == n_train * 13 * 2
    # Resuming repeats the refit from the stage's final checkpoint: the same head.
    again = Trainer(load_config(config), tmp_path / "run", progress=False).run()
    first = ckpt.load_tensors(out / "model.safetensors")
    second = ckpt.load_tensors(again / "model.safetensors")
    for key in first:
        if key.startswith("proprio_dynamics.outcome_head."):
            torch.testing.assert_close(first[key], second[key], msg=key)
    bad = _config(tmp_path / "f", data, PROPRIO, "outcome_steps = 5")
    with pytest.raises(ValueError, match="outcome_steps .*state_outcomes"):
        load_config(bad)


def test_a_bfloat16_export_halves_the_weights_and_keeps_the_dynamics_exact(tmp_path, files):
    data, _ = files
    config = _config(tmp_path / "g", data, PROPRIO + "\nstate_outcomes = true", "")
    out = _train(config, tmp_path / "run")
    full = ckpt.load_tensors(out / "model.safetensors")
    # export_dtype is not part of the run: set on a finished run, it re-exports it.
    config.write_text('export_dtype = "bfloat16"\n' + config.read_text())
    half_dir = _train(config, tmp_path / "run")
    half = ckpt.load_tensors(half_dir / "model.safetensors")
    for key, value in full.items():
        if key.startswith(("proprio_dynamics.", "state_mean", "state_std")):
            assert half[key].dtype == torch.float32
            torch.testing.assert_close(half[key], value, rtol=0, atol=0, msg=key)
        else:
            assert half[key].dtype == torch.bfloat16, key
            torch.testing.assert_close(half[key].float(), value, rtol=1e-2, atol=1e-2, msg=key)
    full_codec = ckpt.load_tensors(out / "codec.safetensors")
    half_codec = ckpt.load_tensors(half_dir / "codec.safetensors")
    for key, value in full_codec.items():
        if key.rsplit(".", 1)[-1] in ("latent_mean", "latent_std"):
            torch.testing.assert_close(half_codec[key], value, rtol=0, atol=0, msg=key)
        elif value.is_floating_point():
            assert half_codec[key].dtype == torch.bfloat16, key
    env = ImaginedEnv(half_dir)  # loads into float32 parameters
    env.reset(seed=0)
    assert next(env.core.model.dit.parameters()).dtype == torch.float32
    env.step(env.action_space.sample())
    env.close()
    # So is success_rule: the checkpoint carries it and the imagined envs read success by it.
    assert load_env_checkpoint(half_dir).success_rule == SuccessRule()  # unset: > 0.5, one step
    config.write_text('success_rule = "0.6:4"\n' + config.read_text())
    ruled = _train(config, tmp_path / "run")
    assert load_env_checkpoint(ruled).success_rule == SuccessRule(0.6, 4)
    assert ImaginedEnv(ruled).success_rule == SuccessRule(0.6, 4)
    config.write_text(config.read_text().replace('"0.6:4"', '"0.6:0"'))
    with pytest.raises(ValueError, match="success rule"):
        load_config(config)
    config.write_text(config.read_text().replace('"0.6:0"', '"0.6"').replace('"bfloat16"', '"float16"'))
    with pytest.raises(ValueError, match="export_dtype"):
        load_config(config)


@pytest.fixture(scope="module")
def trained(tmp_path_factory, files) -> Path:
    """A proprioceptive model to fine-tune: the init of the dynamics-form tests below."""
    root = tmp_path_factory.mktemp("trained")
    return _train(_config(root / "config", files[0], PROPRIO, ""), root / "first")


def _refit_into(tmp_path: Path, files: tuple[Path, Path], trained: Path, field: str,
                proprio: str = "refit = true") -> Path:
    """Fine-tune ``trained`` with the ``[model]`` line ``field`` changing its dynamics' form:
    refused without a refit, then trained with ``[proprio]`` ``proprio``; the imagined env of
    the result steps."""
    name = field.split(" =")[0]
    kept = "\n".join(line for line in PROPRIO.splitlines() if not line.startswith(f"{name} ="))
    model = f"{kept}\n{field}"
    with pytest.raises(CheckpointError, match=f"{name}.*refit"):
        Trainer(load_config(_config(tmp_path / "b", files[0], model, "", init=trained)), tmp_path / "no",
                progress=False)
    out = _train(_config(tmp_path / "c", files[0], model, proprio, init=trained), tmp_path / "tuned")
    env = ImaginedEnv(out)
    env.reset(seed=0)
    env.step(env.action_space.sample())
    env.close()
    return out


def _model_config(out: Path) -> dict:
    return ckpt.read_config(out)["model"]


def test_an_object_frame_is_added_to_a_trained_model_only_with_a_refit(tmp_path, files, trained):
    out = _refit_into(tmp_path, files, trained, "proprio_object_frame = [0, 3]")
    # The dynamics' first layer takes the three object-frame features besides [s, s - s', a].
    assert ckpt.load_tensors(out / "model.safetensors")["proprio_dynamics.net.0.weight"].shape == (16, 2 * 9 + 7 + 3)
    assert _model_config(out)["proprio_object_frame"] == [0, 3]


def test_position_targets_change_a_trained_dynamics_only_with_a_refit(tmp_path, files, trained):
    out = _refit_into(tmp_path, files, trained, "proprio_position_targets = [0, 0, 7]")
    assert _model_config(out)["proprio_position_targets"] == [0, 0, 7]


def test_an_arm_blind_to_the_objects_is_added_only_with_a_refit(tmp_path, files, trained):
    # With the windows at a reset told apart, on frame and state-only episodes.
    out = _refit_into(tmp_path, files, trained, "proprio_arm_entries = [3, 6]",
                      f'refit = true\nreset_windows = true\npaths = ["{files[1]}"]')
    tensors = ckpt.load_tensors(out / "model.safetensors")
    # The arm's three entries, from the robot's six (of nine) entries, their differences and the action.
    assert tensors["proprio_dynamics.arm_net.0.weight"].shape == (16, 2 * 6 + 7)
    assert tensors["proprio_dynamics.arm_net.4.weight"].abs().sum() > 0  # fitted
    assert _model_config(out)["proprio_arm_entries"] == [3, 6]


def test_an_action_history_is_added_only_with_a_refit_and_step_normalised_losses_train(tmp_path, files, trained):
    out = _refit_into(tmp_path, files, trained, "proprio_action_history = true",
                      f'refit = true\nreset_windows = true\nstep_normalised = true\npaths = ["{files[1]}"]')
    tensors = ckpt.load_tensors(out / "model.safetensors")
    # [s, s - s', s' - s'', a, a'] over nine entries and seven action dimensions.
    assert tensors["proprio_dynamics.net.0.weight"].shape == (16, 3 * 9 + 2 * 7)
    assert _model_config(out)["proprio_action_history"] is True
    # A fine-tune of the result keeps the form without a refit (the stored flag reads back).
    again = _train(_config(tmp_path / "d", files[0], f"{PROPRIO}\nproprio_action_history = true", "", init=out),
                   tmp_path / "again")
    assert _model_config(again)["proprio_action_history"] is True


def test_a_wider_dynamics_replaces_a_trained_one_only_with_a_refit(tmp_path, files, trained):
    out = _refit_into(tmp_path, files, trained, "proprio_hidden = 24")
    assert ckpt.load_tensors(out / "model.safetensors")["proprio_dynamics.net.0.weight"].shape[0] == 24
    assert _model_config(out)["proprio_hidden"] == 24


def test_a_noise_head_is_fitted_on_a_kept_dynamics_and_the_env_draws_from_it(tmp_path, files, trained):
    data, state_only = files
    model = f"{PROPRIO}\nstate_outcomes = true\nproprio_stochastic = true"
    config = _config(tmp_path / "n", data, model,
                     f'paths = ["{state_only}"]\nnoise_steps = 40\noutcome_steps = 5', init=trained)
    # Only the heads: the init's dynamics and frames are kept as they are.
    text = config.read_text().replace("[proprio]\nsteps = 8", "[proprio]\nsteps = 0")
    config.write_text(text.replace("[world_model]\nsteps = 6", "[world_model]\nsteps = 0"))
    trainer = Trainer(load_config(config), tmp_path / "run", progress=False)
    out = trainer.run()
    assert out is not None
    base = ckpt.load_tensors(trained / "model.safetensors")
    tuned = ckpt.load_tensors(out / "model.safetensors")
    for key, value in base.items():
        torch.testing.assert_close(tuned[key], value, rtol=0, atol=0, msg=key)
    assert _model_config(out)["proprio_stochastic"] is True
    record = [r for r in trainer.log.read() if r.get("stage") == "proprio_noise"]
    assert record and record[0]["samples"] > 0 and 0 < record[0]["val_within_2sd"] <= 1
    # The head learned the spread of the one-step errors: on the training episodes it is
    # close to their own, entry by entry (up to the bound; these random states jump far).
    dynamics = trainer.model.dit.proprio_dynamics
    inputs, residuals = trainer._one_step_errors(trainer.model, "train")
    with torch.no_grad():
        predicted = dynamics.log_scale(*inputs).exp().mean(0)
    ratio = predicted / residuals.std(0).clamp(max=math.exp(LOG_SCALE_RANGE[1]))
    assert float(ratio.min()) > 0.5 and float(ratio.max()) < 2.0, ratio
    # The imagined env draws the carried state: a seed repeats it, another seed does not.
    env = ImaginedEnv(out)
    action = np.full(env.action_space.shape, 0.3, np.float32)
    states = []
    for seed in (0, 0, 1):
        env.reset(seed=seed)
        states.append(env.step(action)[0]["state"])  # the carried state, as observed
    env.close()
    np.testing.assert_array_equal(states[0], states[1])
    assert not np.allclose(states[0], states[2])


@pytest.mark.parametrize(("model", "proprio", "world_model", "message"), [
    ("", "noise_steps = 5", 6, "noise_steps .*proprio_stochastic"),
    ("\nproprio_stochastic = true", "refit = true", 6, "refit .*steps > 0"),
])
def test_head_only_stages_are_checked(tmp_path, files, trained, model, proprio, world_model, message):
    config = _config(tmp_path / "x", files[0], PROPRIO + model, proprio, init=trained)
    config.write_text(config.read_text().replace("[proprio]\nsteps = 8", "[proprio]\nsteps = 0"))
    with pytest.raises(ValueError, match=message):
        load_config(config)


def test_kept_frames_and_dynamics_need_an_init(tmp_path, files):
    config = _config(tmp_path / "y", files[0], PROPRIO + "\nproprio_stochastic = true", "noise_steps = 5")
    text = config.read_text().replace("[proprio]\nsteps = 8", "[proprio]\nsteps = 0")
    config.write_text(text)
    with pytest.raises(ValueError, match="noise_steps or outcome_steps with proprio.steps = 0 .*init"):
        load_config(config)
    config.write_text(text.replace("noise_steps = 5", "").replace("[world_model]\nsteps = 6", "[world_model]\nsteps = 0"))
    with pytest.raises(ValueError, match=r"world_model.steps must be an integer >= 1 \(0 keeps an init.s frames: it needs an init\), got 0"):
        load_config(config)
