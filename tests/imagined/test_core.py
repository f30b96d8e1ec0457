"""Tests of ImaginedCore and of the single and vector envs as its views: one stepping core."""

from __future__ import annotations

import subprocess
import sys
import warnings
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch

import kairos_gym
from kairos_gym.errors import DeviceUnavailable, InvalidAction, ResetNeeded, ShapeError
from kairos_gym.imagined.checkpoint import load_env_checkpoint
from kairos_gym.imagined.core import ImaginedCore, ImaginedSnapshot
from kairos_gym.imagined.env import ImaginedEnv
from kairos_gym.imagined.success import SuccessRule
from kairos_gym.imagined.vector import ImaginedVectorEnv
from kairos_gym.model.world_model import WorldModel
from tests.imagined_helpers import lift_spec, sample_actions, write_checkpoint

LIMIT = 12  # lift_spec's max_episode_steps


@pytest.fixture(scope="module")
def ckpt_dir(tmp_path_factory):
    return write_checkpoint(tmp_path_factory.mktemp("core") / "lift")


@pytest.fixture(scope="module")
def ckpt(ckpt_dir):
    return load_env_checkpoint(ckpt_dir)


def assert_frames_close(a: np.ndarray, b: np.ndarray) -> None:
    """Within 1 grey level: batched matrix products round differently from batches of one."""
    diff = np.abs(a.astype(int) - b.astype(int))
    assert diff.max() <= 1 and diff.mean() < 0.01


def test_single_env_vector_env_and_core_agree_row_for_row(ckpt):
    seeds, steps = [3, 8, 3], 5
    actions = sample_actions(steps, rows=3, seed=4)
    core = ImaginedCore(ckpt, 3, done_threshold=1.0)
    core_start = core.start(seeds=seeds)
    core_frames = [core.step(actions[k]).observations for k in range(steps)]
    envs = ImaginedVectorEnv(ckpt, 3, done_threshold=1.0)
    vec_start, _ = envs.reset(seed=seeds)
    vec_frames = [envs.step(actions[k])[0] for k in range(steps)]
    for row, seed in enumerate(seeds):
        env = ImaginedEnv(ckpt, done_threshold=1.0)
        obs, _ = env.reset(seed=seed)
        for key in obs:
            np.testing.assert_array_equal(obs[key], core_start[key][row])
            np.testing.assert_array_equal(obs[key], vec_start[key][row])
        for k in range(steps):
            obs, *_ = env.step(actions[k, row])
            assert_frames_close(obs["agentview_image"], core_frames[k]["agentview_image"][row])
            # The vector env is the same core: bit-identical to the direct use.
            for key in obs:
                np.testing.assert_array_equal(vec_frames[k][key][row], core_frames[k][key][row])
            np.testing.assert_allclose(obs["state"], core_frames[k]["state"][row], atol=1e-4)
    # Rows 0 and 2 share a seed and actions differ: their frames differ after the start.
    assert not np.array_equal(core_frames[-1]["agentview_image"][0], core_frames[-1]["agentview_image"][2])


def test_step_result_info_carries_is_success_and_gymnasium_error_types(ckpt):
    env = ImaginedEnv(ckpt, success_threshold=0.0, done_threshold=1.0)
    with pytest.raises(gym.error.ResetNeeded, match="reset"):
        env.step(np.zeros(7, np.float32))
    _, info = env.reset(seed=0)
    assert info == {"success": False, "is_success": False, "instruction": "lift the red cube"}
    _, _, _, _, info = env.step(np.zeros(7, np.float32))
    assert info["success"] is True and info["is_success"] is True
    with pytest.raises(gym.error.InvalidAction, match="shape"):
        env.step(np.zeros(3, np.float32))
    envs = ImaginedVectorEnv(ckpt, 2, done_threshold=1.0)
    envs.reset(seed=0)
    _, _, _, _, infos = envs.step(np.zeros((2, 7), np.float32))
    np.testing.assert_array_equal(infos["is_success"], infos["success"])
    assert infos["_is_success"].all()


def test_fork_copies_a_row_exactly_and_seeds_diverse_futures(ckpt):
    core = ImaginedCore(ckpt, 2, done_threshold=1.0)
    core.start(seeds=[1, 2])
    core.step(sample_actions(1, rows=2, seed=0)[0])
    futures = core.fork(1, 4)
    assert futures.num_rows == 4 and futures.model is core.model
    assert futures.steps.tolist() == [1] * 4
    for key, value in core.observations([1]).items():
        np.testing.assert_array_equal(futures.observations()[key], np.repeat(value, 4, axis=0))
    # Same actions, same noise (common random numbers): identical futures, equal to the parent's.
    action = sample_actions(1, seed=7)[0]
    out = futures.step(np.repeat(action[None], 4, axis=0))
    parent = core.step(np.stack([action, action]), [0, 1])
    for row in range(4):
        np.testing.assert_array_equal(out.observations["agentview_image"][row], out.observations["agentview_image"][0])
    assert_frames_close(out.observations["agentview_image"][0], parent.observations["agentview_image"][1])
    # seed= gives each copy its own noise stream.
    diverse = core.fork(0, 3, seed=5)
    frames = diverse.step(np.repeat(action[None], 3, axis=0)).observations["agentview_image"]
    assert not np.array_equal(frames[0], frames[1])
    with pytest.raises(ValueError, match="row must be in 0..1"):
        core.fork(2, 3)


def test_snapshot_restore_reproduces_rows_exactly(ckpt):
    core = ImaginedCore(ckpt, 3, done_threshold=1.0)
    core.start(seeds=[0, 1, 2])
    actions = sample_actions(4, rows=3, seed=1)
    core.step(actions[0])
    snap = core.snapshot()
    first = [core.step(actions[k]) for k in (1, 2, 3)]
    core.restore(snap)
    assert core.steps.tolist() == [1, 1, 1]
    again = [core.step(actions[k]) for k in (1, 2, 3)]
    for a, b in zip(first, again):
        for key in a.observations:
            np.testing.assert_array_equal(a.observations[key], b.observations[key])
        np.testing.assert_array_equal(a.reward, b.reward)
    # One row's snapshot restored into another row (and another core) continues identically.
    row = core.snapshot([2])
    other = ImaginedCore(ckpt, 2, done_threshold=1.0)
    other.start(seeds=[9, 9])
    other.restore(row, [0])
    core.restore(row, [0])
    a = core.step(actions[1, :1], [0]).observations["agentview_image"]
    b = other.step(actions[1, :1], [0]).observations["agentview_image"]
    np.testing.assert_array_equal(a, b)
    assert isinstance(row, ImaginedSnapshot) and row.num_rows == 1
    with pytest.raises(ValueError, match="holds 1 rows but this env has 2"):
        other.restore(row)
    with pytest.raises(TypeError, match="ImaginedSnapshot"):
        other.restore({"state": None})
    with pytest.raises(ResetNeeded, match="before snapshot"):
        ImaginedCore(ckpt, 1, done_threshold=1.0).snapshot()


def test_latent_only_steps_predict_the_same_outcomes_and_decode_lazily(ckpt):
    a, b = ImaginedCore(ckpt, 2, done_threshold=1.0), ImaginedCore(ckpt, 2, done_threshold=1.0)
    a.start(seeds=[4, 5])
    b.start(seeds=[4, 5])
    actions = sample_actions(3, rows=2, seed=2)
    decoded = [a.step(actions[k]) for k in range(3)]
    latent = [b.step(actions[k], decode=False) for k in range(3)]
    for x, y in zip(decoded, latent):
        assert y.observations is None
        np.testing.assert_array_equal(x.reward, y.reward)
        np.testing.assert_array_equal(x.success_prob, y.success_prob)
    # The frame is decoded on demand, and a snapshot keeps an undecoded row undecoded.
    snap = b.snapshot()
    assert snap.latents is not None and snap.stale == (True, True)
    np.testing.assert_array_equal(b.observations()["agentview_image"], decoded[-1].observations["agentview_image"])
    np.testing.assert_array_equal(b.observations()["state"], decoded[-1].observations["state"])
    c = ImaginedCore(ckpt, 2, done_threshold=1.0)
    c.restore(snap)
    np.testing.assert_array_equal(c.observations()["agentview_image"], decoded[-1].observations["agentview_image"])


def test_rollout_of_chunks_equals_stepping_and_stops_ended_rows(ckpt):
    chunk = np.stack([sample_actions(5, seed=s) for s in (1, 2)])  # [2, 5, 7]
    a = ImaginedCore(ckpt, 2, max_episode_steps=3, done_threshold=1.0)
    a.start(seeds=[0, 1])
    out = a.rollout(chunk, decode=True)
    b = ImaginedCore(ckpt, 2, max_episode_steps=3, done_threshold=1.0)
    b.start(seeds=[0, 1])
    for h in range(3):
        step = b.step(chunk[:, h])
        np.testing.assert_array_equal(out.reward[:, h], step.reward)
        np.testing.assert_array_equal(out.frames[:, h], step.observations["agentview_image"])
    assert out.alive.tolist() == [[True] * 3 + [False] * 2] * 2
    assert out.truncated[:, 2].all() and (out.reward[:, 3:] == 0).all()
    np.testing.assert_allclose(out.returns, out.reward[:, :3].sum(1))
    with pytest.raises(ResetNeeded, match="has ended"):
        a.step(chunk[:, 0])
    with pytest.raises(InvalidAction, match=r"shape \(2, H, 7\)"):
        b.rollout(chunk[0])


def test_bad_rows_and_not_started_rows_are_refused(ckpt):
    core = ImaginedCore(ckpt, 2, done_threshold=1.0)
    with pytest.raises(ResetNeeded, match="reset"):
        core.step(np.zeros((2, 7), np.float32))
    core.start([0], seeds=[0])
    with pytest.raises(ResetNeeded, match="reset"):
        core.step(np.zeros((2, 7), np.float32))
    core.step(np.zeros((1, 7), np.float32), [0])
    assert core.world_state.batch_size == 2 and core.world_state.frame_index.tolist() == [2, 0]
    core.start([1], seeds=[1])
    core.step(np.zeros((2, 7), np.float32))
    assert core.world_state.frame_index.tolist() == [3, 2]
    with pytest.raises(ValueError, match="distinct indices in 0..1"):
        core.step(np.zeros((2, 7), np.float32), [0, 0])
    with pytest.raises(InvalidAction, match="env 0: action contains NaN"):
        core.step(np.full((1, 7), np.nan, np.float32), [0])
    assert core.steps.tolist() == [2, 1]


def test_gym_make_vec_on_the_imagined_id_loads_one_model(ckpt_dir, monkeypatch):
    loads = []
    real_load = WorldModel.from_pretrained.__func__

    def counting(cls, *args, **kwargs):
        loads.append(args)
        return real_load(cls, *args, **kwargs)

    monkeypatch.setattr(WorldModel, "from_pretrained", classmethod(counting))
    envs = gym.make_vec("kairos_gym/Imagined-v0", 3, checkpoint=str(ckpt_dir))
    assert isinstance(envs.unwrapped, ImaginedVectorEnv) and len(loads) == 1
    assert envs.num_envs == 3 and envs.spec.id == "kairos_gym/Imagined-v0"
    envs = kairos_gym.make_vec(num_envs=2, checkpoint=str(ckpt_dir))
    assert len(loads) == 2 and envs.spec is not None and envs.spec.kwargs["num_envs"] == 2


def _episode_length(env, single: bool) -> int:
    env.reset(seed=0)
    for n in range(1, 1000):
        if single:
            _, _, terminated, truncated, _ = env.step(np.zeros(7, np.float32))
        else:
            _, _, terminated, truncated, _ = env.step(np.zeros((env.num_envs, 7), np.float32))
            terminated, truncated = terminated[0], truncated[0]
        if terminated or truncated:
            assert truncated and not terminated
            return n
    raise AssertionError("no truncation")


@pytest.mark.parametrize("limit", [3, LIMIT + 5])
def test_max_episode_steps_means_the_same_via_gym_make_and_directly(ckpt_dir, ckpt, limit):
    kwargs = {"done_threshold": 1.0}
    with warnings.catch_warnings():
        # The limit is given, so gym.make's TimeLimit keeps it: nothing to warn about.
        warnings.filterwarnings("error", message=".*is registered with max_episode_steps")
        made = gym.make("kairos_gym/Imagined-v0", checkpoint=ckpt_dir, max_episode_steps=limit, **kwargs)
    assert made.spec.max_episode_steps == limit
    direct = ImaginedEnv(ckpt, max_episode_steps=limit, **kwargs)
    vec = gym.make_vec("kairos_gym/Imagined-v0", 2, checkpoint=ckpt, max_episode_steps=limit, **kwargs)
    ours = kairos_gym.make_vec(num_envs=2, checkpoint=ckpt, max_episode_steps=limit, **kwargs)
    assert vec.spec.max_episode_steps == limit and ours.max_episode_steps == limit
    assert _episode_length(made, True) == limit == _episode_length(direct, True)
    assert _episode_length(vec, False) == limit == _episode_length(ours, False)


def test_episode_limit_defaults(ckpt_dir, ckpt):
    # Directly built and through kairos_gym.make_vec: the checkpoint's real env limit.
    assert ImaginedEnv(ckpt).max_episode_steps == LIMIT
    assert kairos_gym.make_vec(num_envs=2, checkpoint=ckpt_dir).max_episode_steps == LIMIT
    # gym.make: the registered (embedded model's) limit, with a warning for this checkpoint.
    registered = gym.spec("kairos_gym/Imagined-v0").max_episode_steps
    assert registered == 80
    with pytest.warns(UserWarning, match=f"pass max_episode_steps={LIMIT}"):
        made = gym.make("kairos_gym/Imagined-v0", checkpoint=ckpt_dir)
    assert made.spec.max_episode_steps == registered and made.unwrapped.max_episode_steps is None
    # A checkpoint without a limit never truncates by itself.
    spec = lift_spec(max_episode_steps=None)
    assert ImaginedEnv(write_checkpoint(ckpt_dir.parent / "unlimited", spec)).max_episode_steps is None


def test_per_row_generators_consume_noise_like_a_batch_of_one(ckpt):
    model = ckpt.model
    frames = torch.from_numpy(ckpt.reset_observations["agentview_image"][:2])
    actions = torch.from_numpy(sample_actions(1, 2)[0])
    gens = [torch.Generator().manual_seed(s) for s in (1, 2)]
    state = model.observe(model.init_state(2), frames[:, None], generator=gens)
    out_frames, out, _ = model.step(state, actions, generator=gens)
    for i, seed in enumerate((1, 2)):
        g = torch.Generator().manual_seed(seed)
        single = model.observe(model.init_state(1), frames[i, None, None], generator=g)
        torch.testing.assert_close(
            state.select([i])["blocks.3.state"], single["blocks.3.state"], atol=1e-5, rtol=0
        )
        f, o, _ = model.step(single, actions[i, None], generator=g)
        assert (f[0].int() - out_frames[i].int()).abs().max() <= 1
        torch.testing.assert_close(o["state"][0], out["state"][i], atol=1e-4, rtol=0)
    # A row's result does not depend on the other rows of the batch.
    gens = [torch.Generator().manual_seed(s) for s in (1, 9)]
    other_state = model.observe(model.init_state(2), frames[:, None], generator=gens)
    other_frames, _, _ = model.step(other_state, actions, generator=gens)
    assert (other_frames[0].int() - out_frames[0].int()).abs().max() <= 1
    with pytest.raises(ValueError, match="1 generators for a batch of 2 rows"):
        model.observe(model.init_state(2), frames[:, None], generator=gens[:1])


def test_random_shooting_example_runs(ckpt_dir):
    script = Path(__file__).resolve().parents[2] / "examples" / "plan_random_shooting.py"
    done = subprocess.run(
        [sys.executable, str(script), "--checkpoint", str(ckpt_dir), "--candidates", "4",
         "--horizon", "2", "--steps", "3", "--threads", "1"],
        check=False, capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "predicted return over 3 steps: planned" in done.stdout
    assert "24 imagined candidate steps" in done.stdout


def test_inputs_the_core_refuses_cleanly(ckpt):
    core = ImaginedCore(ckpt, 1, done_threshold=1.0)
    core.start(seeds=[0])
    with pytest.raises(InvalidAction, match="rectangular array"):
        core.step([[0.0] * 7, [0.0] * 3])
    with pytest.raises(InvalidAction, match="rectangular array"):
        core.rollout([[[0.0] * 7], [[0.0]]])
    obs = {k: v[0] for k, v in ckpt.reset_observations.items()}
    wide = dict(obs, agentview_image=np.full(obs["agentview_image"].shape, 300, np.uint16))
    with pytest.raises(ShapeError, match=r"values in \[300, 300\], outside what uint8 holds"):
        core.parse_start({"observation": wide}, 1, batched=False)
    fits = dict(obs, agentview_image=obs["agentview_image"].astype(np.uint16))
    core.parse_start({"observation": fits}, 1, batched=False)
    with pytest.raises(DeviceUnavailable, match="not a device name"):
        ImaginedCore(str(ckpt.path), 1, device="tpu")
    assert core.steps.tolist() == [0]


def test_the_success_rule_holds_over_steps_and_survives_fork_snapshot_and_restart(ckpt):
    # Threshold 0: every step passes (a probability is > 0), so success comes at step `hold`.
    core = ImaginedCore(ckpt, 2, done_threshold=1.0, success_threshold=0.0, success_hold=3)
    assert core.success_rule == SuccessRule(0.0, 3)
    core.start(seeds=[0, 1])
    actions = sample_actions(4, rows=2, seed=2)
    met = [core.step(actions[k]).success.tolist() for k in range(2)]
    assert met == [[False, False], [False, False]]
    snap = core.snapshot()
    futures = core.fork(1, 2)
    assert futures.success_rule == core.success_rule
    assert futures.step(actions[2]).success.tolist() == [True, True]  # the run was copied
    assert core.step(actions[2]).success.tolist() == [True, True]
    other = ImaginedCore(ckpt, 2, done_threshold=1.0, success_threshold=0.0, success_hold=3)
    other.start(seeds=[5, 5])
    other.restore(snap)
    assert other.step(actions[2]).success.tolist() == [True, True]  # and restored
    core.start(seeds=[3], rows=[0])  # a new episode starts its run again
    assert core.step(actions[3]).success.tolist() == [False, True]
    # Each field can change alone; a threshold of 1 never passes.
    core.success_hold = 1
    assert core.success_rule == SuccessRule(0.0, 1)
    core.success_threshold = 1.0
    assert core.step(actions[3]).success.tolist() == [False, False]
    for bad in (0, True, 1.5):
        with pytest.raises(ValueError, match="success_hold"):
            ImaginedCore(ckpt, 1, success_hold=bad)
    with pytest.raises(TypeError, match="SuccessRule"):
        core.success_rule = (0.5, 2)


def test_the_checkpoint_success_rule_is_the_default(ckpt_dir, tmp_path):
    import json
    import shutil

    from kairos_gym.errors import CheckpointError

    ruled = tmp_path / "ruled"
    shutil.copytree(ckpt_dir, ruled)
    config = json.loads((ruled / "config.json").read_text())
    config["success_rule"] = {"threshold": 0.0, "hold": 2}
    (ruled / "config.json").write_text(json.dumps(config))
    assert load_env_checkpoint(ruled).success_rule == SuccessRule(0.0, 2)
    env = ImaginedEnv(ruled, done_threshold=1.0)
    assert (env.success_threshold, env.success_hold) == (0.0, 2)
    env.reset(seed=0)
    assert [env.step(np.zeros(7, np.float32))[4]["success"] for _ in range(2)] == [False, True]
    # An explicit option overrides its field only.
    assert ImaginedVectorEnv(ruled, 2, success_hold=4).success_rule == SuccessRule(0.0, 4)
    assert ImaginedEnv(ruled, success_threshold=0.7).success_rule == SuccessRule(0.7, 2)
    config["success_rule"] = {"threshold": 0.5, "hold": 0}
    (ruled / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match="invalid success_rule"):
        load_env_checkpoint(ruled)
