"""The proprioceptive path: dynamics, conditioning, the invariant, and stepping with it."""

import dataclasses
import math

import numpy as np
import pytest
import torch

from kairos_gym.errors import ShapeError
from kairos_gym.model import WorldModel, WorldModelConfig
from kairos_gym.model.proprio import (
    LOG_SCALE_RANGE,
    ProprioDynamics,
    object_in_gripper_frame,
)
from kairos_gym.train.config import WorldModelTrainConfig
from kairos_gym.train.objectives import WorldModelObjective
from tests.model.conftest import randomize_, tiny_dit

S = 5


def _proprio_model(seed: int = 0, **fields) -> WorldModel:
    cfg = WorldModelConfig.preset("tiny", state_dim=S, proprio_conditioning=True, proprio_hidden=16, **fields)
    torch.manual_seed(seed)
    return randomize_(WorldModel(cfg), seed=seed).eval()


def test_the_pathway_needs_a_state():
    with pytest.raises(ValueError, match="state_dim"):
        WorldModelConfig.preset("tiny", proprio_conditioning=True)


def test_a_fresh_dynamics_model_predicts_no_motion_and_unrolls_from_given_states():
    dyn = ProprioDynamics(S, 3, hidden=8)
    states = torch.randn(2, 6, S)
    actions = torch.randn(2, 6, 3)
    torch.testing.assert_close(dyn.teacher_forced(states, actions), states[:, :-1])
    unrolled = dyn.unroll(states, actions, start=2)
    torch.testing.assert_close(unrolled[:, :2], states[:, :2])
    torch.testing.assert_close(unrolled[:, 2:], states[:, 1:2].expand(2, 4, S))


def test_unroll_matches_stepping_one_at_a_time():
    dyn = randomize_(ProprioDynamics(S, 3, hidden=8), scale=0.3)
    states, actions = torch.randn(2, 7, S), torch.randn(2, 7, 3)
    unrolled = dyn.unroll(states, actions, start=1)
    s, prev = states[:, 0], states[:, 0]
    for t in range(1, 7):
        s, prev = dyn(s, prev, actions[:, t]), s
        torch.testing.assert_close(unrolled[:, t], s)


@torch.no_grad()
def test_streaming_with_proprio_reproduces_the_parallel_pass():
    dit = tiny_dit(state_dim=S, proprio_conditioning=True, proprio_hidden=16)
    gen = torch.Generator().manual_seed(7)
    b, t = 2, 12
    latents = torch.randn(b, t, *dit.cfg.latent_shape, generator=gen)
    sigmas = torch.rand(b, t, generator=gen)
    actions = torch.randn(b, t, dit.cfg.action_dim, generator=gen)
    proprio = torch.randn(b, t, S, generator=gen)
    parallel = dit.forward_parallel(latents, sigmas, actions, proprio=proprio)[0]
    state = dit.init_state(b)
    for i in range(t):
        state = state.updated(proprio=proprio[:, i])
        step, state = dit.velocity_step(state, latents[:, i], sigmas[:, i], actions[:, i], commit=True)
        torch.testing.assert_close(step, parallel[:, i], atol=1e-4, rtol=0)


@torch.no_grad()
def test_the_frames_depend_on_the_proprioceptive_state():
    dit = tiny_dit(state_dim=S, proprio_conditioning=True, proprio_hidden=16)
    latents = torch.randn(1, 3, *dit.cfg.latent_shape)
    sigmas = torch.full((1, 3), 0.5)
    a = dit.forward_parallel(latents, sigmas, proprio=torch.zeros(1, 3, S))[0]
    b = dit.forward_parallel(latents, sigmas, proprio=torch.ones(1, 3, S))[0]
    assert (a - b).abs().max() > 1e-3
    with pytest.raises(ShapeError, match="proprio"):
        dit.forward_parallel(latents, sigmas)


@torch.no_grad()
def test_stepping_carries_the_state_through_the_dynamics():
    model = _proprio_model()
    frames = torch.randint(0, 256, (2, 1, *model.config.frame_shape), dtype=torch.uint8)
    real = torch.randn(2, 1, S).numpy()
    with pytest.raises(ShapeError, match="proprio"):
        model.observe(model.init_state(2), frames)
    with pytest.raises(ShapeError, match="proprio"):
        model.observe(model.init_state(2), frames, proprio=np.zeros((2, 1, S + 1)))
    with pytest.raises(ShapeError, match="NaN"):
        model.observe(model.init_state(2), frames, proprio=np.full((2, 1, S), np.nan))
    state = model.observe(model.init_state(2), frames, proprio=real)
    torch.testing.assert_close(model.dit.denormalize_state(state["proprio"]), torch.from_numpy(real[:, 0]))
    torch.testing.assert_close(state["proprio_prev"], state["proprio"])
    action = torch.randn(2, model.config.action_dim)
    _, out, after = model.step(state, action, generator=torch.Generator().manual_seed(7))
    expected = model.dit.proprio_dynamics(state["proprio"], state["proprio_prev"], action)
    torch.testing.assert_close(after["proprio"], expected)
    torch.testing.assert_close(after["proprio_prev"], state["proprio"])
    torch.testing.assert_close(out["state"], model.dit.denormalize_state(expected))


def test_the_objective_trains_the_dynamics_and_conditions_on_states():
    model = _proprio_model()
    cfg = WorldModelTrainConfig(proprio_self_fraction=0.5)
    objective = WorldModelObjective(model.dit, cfg)
    b, t = 3, 6
    gen = torch.Generator().manual_seed(7)
    batch = {
        "latents": torch.randn(b, t, *model.config.latent_shape, generator=gen),
        "actions": torch.randn(b, t, model.config.action_dim, generator=gen),
        "action_mask": torch.ones(b, t, dtype=torch.bool),
        "rewards": torch.zeros(b, t), "success": torch.zeros(b, t), "done": torch.zeros(b, t),
        "state": torch.randn(b, t, S, generator=gen),
    }
    model.train()
    loss, metrics = objective(batch, torch.Generator().manual_seed(1))
    assert metrics["proprio"] > 0
    loss.backward()
    assert model.dit.proprio_dynamics.net[0].weight.grad.abs().sum() > 0
    assert model.dit.proprio_embedding[0].weight.grad.abs().sum() > 0


def test_a_checkpoint_keeps_the_pathway(tmp_path):
    model = _proprio_model()
    model.save_pretrained(tmp_path / "m")
    loaded = WorldModel.from_pretrained(tmp_path / "m")
    assert loaded.config.proprio_conditioning
    for name, value in model.dit.state_dict().items():
        torch.testing.assert_close(loaded.dit.state_dict()[name], value)
    plain = dataclasses.replace(model.config, proprio_conditioning=False)
    assert "proprio" not in WorldModel(plain).dit.init_state(1)


def test_the_object_is_expressed_in_the_gripper_frame():
    gripper = torch.tensor([1.0, 2.0, 3.0])
    state = torch.cat([gripper + torch.tensor([0.1, 0.0, -0.05]), gripper, torch.zeros(3)])
    level = object_in_gripper_frame(state, 0, 3)  # no rotation: the world offset
    torch.testing.assert_close(level, torch.tensor([0.1, 0.0, -0.05]))
    yawed = state.clone()
    yawed[6:9] = torch.tensor([0.0, 0.0, math.pi / 2])  # the gripper turned 90 degrees about z
    torch.testing.assert_close(object_in_gripper_frame(yawed, 0, 3), torch.tensor([0.0, -0.1, -0.05]))
    down = state.clone()
    down[6:9] = torch.tensor([math.pi, 0.0, 0.0])  # pointing down, as robosuite's grippers do
    torch.testing.assert_close(object_in_gripper_frame(down, 0, 3), torch.tensor([0.1, 0.0, 0.05]))
    # Moving the object and the gripper together changes nothing.
    moved = yawed.clone()
    moved[0:3] += 0.3
    moved[3:6] += 0.3
    torch.testing.assert_close(object_in_gripper_frame(moved, 0, 3), object_in_gripper_frame(yawed, 0, 3))


def test_an_object_frame_dynamics_reads_the_state_in_environment_units():
    cfg = WorldModelConfig.preset("tiny", state_dim=9, proprio_conditioning=True, proprio_hidden=16,
                                  proprio_object_frame=(0, 3))
    dit = randomize_(WorldModel(cfg), seed=1).dit
    dyn = dit.proprio_dynamics
    assert dyn.net[0].in_features == 2 * 9 + cfg.action_dim + 3
    state, action = torch.randn(2, 9), torch.randn(2, cfg.action_dim)
    before = dyn(state, state, action)
    with torch.no_grad():
        dit.state_mean[0] += 0.2  # the same normalised state now puts the object elsewhere
    assert not torch.allclose(dyn(state, state, action), before)
    for bad in ((0, 4), (7, 0), (0,), "ab"):
        with pytest.raises(ValueError, match="proprio_object_frame"):
            dataclasses.replace(cfg, proprio_object_frame=bad)
    with pytest.raises(ValueError, match="proprio_object_frame"):
        WorldModelConfig.preset("tiny", state_dim=9, proprio_object_frame=(0, 3))
    assert WorldModelConfig.from_dict(cfg.to_dict()).proprio_object_frame == (0, 3)


def test_position_targets_are_predicted_from_the_command_not_the_last_state():
    # State: an object's 3 values, then 4 joints that actions [1, 5) command in the same units.
    cfg = WorldModelConfig.preset("tiny", state_dim=7, action_dim=6, proprio_conditioning=True,
                                  proprio_hidden=16, proprio_position_targets=(3, 1, 4))
    dit = WorldModel(cfg).dit
    with torch.no_grad():
        dit.state_mean.copy_(torch.linspace(-1.0, 1.0, 7))
        dit.state_std.copy_(torch.linspace(0.5, 2.0, 7))
    dyn = dit.proprio_dynamics  # fresh: the residual is zero
    state, action = torch.randn(2, 7), torch.randn(2, 6)
    nxt = dit.denormalize_state(dyn(state, state, action))
    torch.testing.assert_close(nxt[:, 3:], action[:, 1:5])  # the joints go where commanded
    torch.testing.assert_close(nxt[:, :3], dit.denormalize_state(state)[:, :3])  # the rest stays
    # However far the carried joints are off, one step under a command puts them back on it:
    # an error does not survive to the next step, where a residual on the state would carry it.
    far = state.clone()
    far[:, 3:] += 50.0
    torch.testing.assert_close(dit.denormalize_state(dyn(far, far, action))[:, 3:], action[:, 1:5])
    assert WorldModelConfig.from_dict(cfg.to_dict()).proprio_position_targets == (3, 1, 4)
    for bad in ((3, 1, 5), (4, 0, 4), (0, 0, 0), (3, 1), "abc", (-1, 0, 2)):
        with pytest.raises(ValueError, match="proprio_position_targets"):
            dataclasses.replace(cfg, proprio_position_targets=bad)
    with pytest.raises(ValueError, match="position_targets"):
        ProprioDynamics(7, 6, position_targets=(3, 3, 4))


def test_the_arm_entries_are_predicted_blind_to_the_objects():
    # State: an object's 3 values, then the arm's pose (4 entries) and a gripper (1).
    cfg = WorldModelConfig.preset("tiny", state_dim=8, proprio_conditioning=True, proprio_hidden=16,
                                  proprio_arm_entries=(3, 7))
    dit = randomize_(WorldModel(cfg), seed=2).dit
    dyn = dit.proprio_dynamics
    assert dyn.arm_net is not None and dyn.arm_net[-1].out_features == 4
    state, action = torch.randn(2, 8), torch.randn(2, cfg.action_dim)
    moved = state.clone()
    moved[:, :3] += 1.0  # the object elsewhere, in the current and the previous state
    before, after = dyn(state, state, action), dyn(moved, moved, action)
    torch.testing.assert_close(after[:, 3:7], before[:, 3:7])  # the arm goes the same way
    assert not torch.allclose(after[:, 7:], before[:, 7:])  # the gripper may feel the object
    assert not torch.allclose(after[:, :3] - moved[:, :3], before[:, :3] - state[:, :3])
    fresh = WorldModel(cfg).dit.proprio_dynamics  # both residuals start at zero
    torch.testing.assert_close(fresh(state, state, action), state)
    assert WorldModelConfig.from_dict(cfg.to_dict()).proprio_arm_entries == (3, 7)
    for bad in ((0, 4), (3, 9), (5, 5), (3,), "ab"):
        with pytest.raises(ValueError, match="proprio_arm_entries"):
            dataclasses.replace(cfg, proprio_arm_entries=bad)
    with pytest.raises(ValueError, match="proprio_arm_entries"):
        WorldModelConfig.preset("tiny", state_dim=8, proprio_arm_entries=(3, 7))
    with pytest.raises(ValueError, match="arm_entries"):
        ProprioDynamics(8, 3, arm_entries=(0, 3))


def test_input_noise_starts_one_step_predictions_off_the_true_state():
    from kairos_gym.train.objectives import ProprioObjective, proprio_loss

    dyn = ProprioDynamics(S, 3, hidden=8)  # fresh: predicts no motion
    torch.manual_seed(0)
    states = torch.randn(256, 6, S)
    actions = torch.randn(256, 6, 3)
    clean, _ = proprio_loss(dyn, states, actions)
    g = torch.Generator().manual_seed(7)
    noisy, _ = proprio_loss(dyn, states, actions, input_noise=0.5, generator=g)
    # Scored against the clean next states: the noise adds about its variance to the one-step term.
    assert noisy.item() == pytest.approx(clean.item() + 0.25, abs=0.1)
    again, _ = proprio_loss(dyn, states, actions, input_noise=0.5, generator=torch.Generator().manual_seed(7))
    assert again.item() == noisy.item()  # seeded by the stage's generator
    objective = ProprioObjective(dyn, input_noise=0.5)
    batch = {"state": states, "actions": actions}
    assert objective.eval()(batch)[0].item() == pytest.approx(clean.item())  # validation: clean


def test_only_windows_at_a_reset_score_a_step_from_rest():
    from kairos_gym.train.objectives import proprio_loss

    dyn = randomize_(ProprioDynamics(S, 3, hidden=8), scale=0.3)
    torch.manual_seed(1)
    states, actions = torch.randn(4, 6, S), torch.randn(4, 6, 3)
    at_reset = torch.tensor([True, False, False, True])
    loss, unrolled = proprio_loss(dyn, states, actions, at_reset=at_reset)
    # Windows at a reset unroll from their one first state (as the imagined env does), the
    # others from their first two.
    torch.testing.assert_close(unrolled[at_reset], dyn.unroll(states[at_reset], actions[at_reset], start=1))
    torch.testing.assert_close(unrolled[~at_reset], dyn.unroll(states[~at_reset], actions[~at_reset], start=2))
    one = (dyn.teacher_forced(states, actions) - states[:, 1:]).square().mean(-1)
    roll = (unrolled - states).square().mean(-1)
    keep = torch.ones(4, 5)
    keep[~at_reset, 0] = 0  # a moving arm's first state presented as at rest: not scored
    expected = (one * keep).sum() / keep.sum() + (roll[:, 1:] * keep).sum() / keep.sum()
    torch.testing.assert_close(loss, expected)
    heavy = keep * torch.where(at_reset, 10.0, 1.0)[:, None]  # windows at a reset weigh 10x
    weighted, _ = proprio_loss(dyn, states, actions, at_reset=at_reset, reset_weight=10.0)
    torch.testing.assert_close(weighted, (one * heavy).sum() / heavy.sum() + (roll[:, 1:] * heavy).sum() / heavy.sum())
    # Weighted on its first two predicted states only: the rest of a reset window weighs as any.
    head = keep.clone()
    head[at_reset, :2] *= 10.0
    first, _ = proprio_loss(dyn, states, actions, at_reset=at_reset, reset_weight=10.0, reset_weight_steps=2)
    torch.testing.assert_close(first, (one * head).sum() / head.sum() + (roll[:, 1:] * head).sum() / head.sum())
    assert not torch.allclose(first, weighted)
    whole, _ = proprio_loss(dyn, states, actions, at_reset=at_reset, reset_weight=10.0, reset_weight_steps=5)
    torch.testing.assert_close(whole, weighted)  # as many steps as the window predicts: all of it
    # Mid-episode windows: nothing depends on what the first state would do from rest.
    mid = ~at_reset
    base, _ = proprio_loss(dyn, states[mid], actions[mid], at_reset=at_reset[mid])
    changed = actions[mid].clone()
    changed[:, 1] += 5.0  # the action out of the first state: scored only through the unroll from two
    moved, _ = proprio_loss(dyn, states[mid], changed, at_reset=at_reset[mid])
    old, _ = proprio_loss(dyn, states[mid], changed)
    torch.testing.assert_close(moved, base)
    assert not torch.allclose(old, base)


def test_an_action_history_reads_the_previous_action_and_the_difference_before():
    dyn = randomize_(ProprioDynamics(S, 3, hidden=8, action_history=True), scale=0.3)
    s, prev, before = torch.randn(2, S), torch.randn(2, S), torch.randn(2, S)
    a, pa = torch.randn(2, 3), torch.randn(2, 3)
    out = dyn(s, prev, a, pa, before)
    assert not torch.allclose(out, dyn(s, prev, a, pa + 1.0, before))
    assert not torch.allclose(out, dyn(s, prev, a, pa, before + 1.0))
    # None means at rest: a zero previous action and no difference before the last.
    torch.testing.assert_close(dyn(s, prev, a), dyn(s, prev, a, torch.zeros(2, 3), prev))
    # The unroll and the one-step predictions feed the same history as stepping by hand.
    states, actions = torch.randn(2, 7, S), torch.randn(2, 7, 3)
    actions[:, 0] = 0  # no action leads into a window's first state
    unrolled = dyn.unroll(states, actions, start=1)
    cur, prv, bef = states[:, 0], states[:, 0], states[:, 0]
    for t in range(1, 7):
        cur, prv, bef = dyn(cur, prv, actions[:, t], actions[:, t - 1], bef), cur, prv
        torch.testing.assert_close(unrolled[:, t], cur)
    one = dyn.teacher_forced(states, actions)
    for t in range(1, 7):
        p = states[:, max(t - 2, 0)]
        b = states[:, max(t - 3, 0)]
        torch.testing.assert_close(one[:, t - 1], dyn(states[:, t - 1], p, actions[:, t], actions[:, t - 1], b))
    plain = ProprioDynamics(S, 3, hidden=8)
    assert dyn.net[0].in_features == plain.net[0].in_features + S + 3


@torch.no_grad()
def test_the_imagined_state_carries_the_action_history():
    model = _proprio_model(proprio_action_history=True)
    cfg = model.config
    frames = torch.randint(0, 256, (2, 1, *cfg.frame_shape), dtype=torch.uint8)
    real = torch.randn(2, 1, S).numpy()
    state = model.observe(model.init_state(2), frames, proprio=real)
    torch.testing.assert_close(state["proprio_action"], torch.zeros(2, cfg.action_dim))
    torch.testing.assert_close(state["proprio_before"], state["proprio"])
    actions = torch.randn(3, 2, cfg.action_dim)
    gen = torch.Generator().manual_seed(7)
    for a in actions:
        _, _, state = model.step(state, a, generator=gen)
    torch.testing.assert_close(state["proprio_action"], actions[-1])
    # Three steps from a reset carry the state exactly as the dynamics unrolls from rest.
    dyn = model.dit.proprio_dynamics
    start = model.dit.normalize_state(torch.from_numpy(real))
    window = torch.cat([start, torch.zeros(2, 3, S)], dim=1)
    acts = torch.cat([torch.zeros(2, 1, cfg.action_dim), actions.transpose(0, 1)], dim=1)
    torch.testing.assert_close(state["proprio"], dyn.unroll(window, acts, start=1)[:, -1])
    # Observed context with actions: the history is the frames' own.
    frames3 = torch.randint(0, 256, (2, 3, *cfg.frame_shape), dtype=torch.uint8)
    real3 = torch.randn(2, 3, S).numpy()
    seen = model.observe(model.init_state(2), frames3, actions=acts[:, :3], proprio=real3)
    norm = model.dit.normalize_state(torch.from_numpy(real3))
    torch.testing.assert_close(seen["proprio_action"], acts[:, 2])
    torch.testing.assert_close(seen["proprio_prev"], norm[:, 1])
    torch.testing.assert_close(seen["proprio_before"], norm[:, 0])
    assert WorldModelConfig.from_dict(cfg.to_dict()).proprio_action_history
    with pytest.raises(ValueError, match="proprio_action_history"):
        WorldModelConfig.preset("tiny", state_dim=S, proprio_action_history=True)


def test_with_an_action_history_windows_off_a_reset_score_from_their_third_state():
    from kairos_gym.train.objectives import proprio_loss

    dyn = randomize_(ProprioDynamics(S, 3, hidden=8, action_history=True), scale=0.3)
    torch.manual_seed(1)
    states, actions = torch.randn(4, 6, S), torch.randn(4, 6, 3)
    actions[:, 0] = 0
    at_reset = torch.tensor([True, False, False, True])
    loss, unrolled = proprio_loss(dyn, states, actions, at_reset=at_reset)
    torch.testing.assert_close(unrolled[~at_reset], dyn.unroll(states[~at_reset], actions[~at_reset], start=3))
    one = (dyn.teacher_forced(states, actions) - states[:, 1:]).square().mean(-1)
    roll = (unrolled - states).square().mean(-1)
    keep = torch.ones(4, 5)
    keep[~at_reset, :2] = 0  # their history reaches before the window
    expected = (one * keep).sum() / keep.sum() + (roll[:, 1:] * keep).sum() / keep.sum()
    torch.testing.assert_close(loss, expected)


def test_step_normalised_one_step_errors_are_in_units_of_each_entrys_step():
    from kairos_gym.train.objectives import proprio_loss, step_scale

    dyn = randomize_(ProprioDynamics(S, 3, hidden=8), scale=0.3)
    torch.manual_seed(2)
    states, actions = torch.randn(3, 6, S), torch.randn(3, 6, 3)
    states[..., 0] *= 0.01  # an entry that moves a hundredth as much
    scale = step_scale(states)
    changes = (states[:, 1:] - states[:, :-1]).reshape(-1, S).std(dim=0)
    assert scale[0] == pytest.approx(0.1 * float(changes.median()))  # floored
    torch.testing.assert_close(scale[1:], changes[1:])
    loss, unrolled = proprio_loss(dyn, states, actions, step_scale=scale)
    one = ((dyn.teacher_forced(states, actions) - states[:, 1:]) / scale).square().mean()
    roll = (unrolled[:, 2:] - states[:, 2:]).square().mean()  # the unroll stays in state units
    torch.testing.assert_close(loss, one + roll)


@torch.no_grad()
def test_a_stochastic_dynamics_draws_around_its_prediction():
    dyn = randomize_(ProprioDynamics(S, 3, hidden=8, stochastic=True), scale=0.3)
    s, prev, a = torch.randn(4, S), torch.randn(4, S), torch.randn(4, 3)
    low, high = LOG_SCALE_RANGE
    log_scale = dyn.log_scale(s, prev, a)
    assert log_scale.shape == (4, S) and log_scale.min() >= low and log_scale.max() <= high
    draw = dyn.sample(s, prev, a, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(draw, dyn.sample(s, prev, a, generator=torch.Generator().manual_seed(1)))
    assert not torch.allclose(draw, dyn.sample(s, prev, a, generator=torch.Generator().manual_seed(2)))
    # A row drawn from its own generator is the draw of a batch of one.
    rows = [torch.Generator().manual_seed(10 + i) for i in range(4)]
    batched = dyn.sample(s, prev, a, generator=rows)
    torch.testing.assert_close(batched[2:3], dyn.sample(s[2:3], prev[2:3], a[2:3],
                                                        generator=torch.Generator().manual_seed(12)))
    # Many draws average to the prediction and spread by exp(log_scale).
    many = dyn.sample(s[:1].expand(20000, S), prev[:1].expand(20000, S), a[:1].expand(20000, 3),
                      generator=torch.Generator().manual_seed(3))
    scale = log_scale[0].exp()
    torch.testing.assert_close(many.mean(0), dyn(s, prev, a)[0], atol=float(4 * scale.max() / 100), rtol=0)
    torch.testing.assert_close(many.std(0), scale, atol=0, rtol=0.05)
    # A sampled unroll is the same draws stepped by hand; unsampled it is the prediction.
    states, actions = torch.randn(2, 6, S), torch.randn(2, 6, 3)
    unrolled = dyn.unroll(states, actions, start=1, sample=True, generator=torch.Generator().manual_seed(5))
    gen = torch.Generator().manual_seed(5)
    cur, prv = states[:, 0], states[:, 0]
    for t in range(1, 6):
        cur, prv = dyn.sample(cur, prv, actions[:, t], actions[:, t - 1], None, gen), cur
        torch.testing.assert_close(unrolled[:, t], cur)
    torch.testing.assert_close(dyn.unroll(states, actions, start=1), _stepped_means(dyn, states, actions))
    # The one-step spreads line up with the one-step predictions.
    torch.testing.assert_close(dyn.teacher_forced_log_scale(states, actions)[:, 2],
                               dyn.log_scale(states[:, 2], states[:, 1], actions[:, 3], actions[:, 2], states[:, 0]))


def _stepped_means(dyn: ProprioDynamics, states: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
    out, cur, prv = [states[:, 0]], states[:, 0], states[:, 0]
    for t in range(1, states.shape[1]):
        cur, prv = dyn(cur, prv, actions[:, t]), cur
        out.append(cur)
    return torch.stack(out, dim=1)


def test_a_fresh_noise_head_adds_almost_nothing_and_a_deterministic_dynamics_draws_its_prediction():
    fresh = ProprioDynamics(S, 3, hidden=8, stochastic=True)
    s, prev, a = torch.randn(2, S), torch.randn(2, S), torch.randn(2, 3)
    torch.testing.assert_close(fresh.log_scale(s, prev, a), torch.full((2, S), LOG_SCALE_RANGE[0]))
    fresh.reset_noise_head(torch.full((S,), 0.1))
    torch.testing.assert_close(fresh.log_scale(s, prev, a), torch.full((2, S), math.log(0.1)))
    plain = randomize_(ProprioDynamics(S, 3, hidden=8), scale=0.3)
    assert not plain.stochastic and fresh.stochastic
    torch.testing.assert_close(plain.sample(s, prev, a, generator=torch.Generator().manual_seed(0)), plain(s, prev, a))
    with pytest.raises(RuntimeError, match="no noise head"):
        plain.log_scale(s, prev, a)


@torch.no_grad()
def test_the_imagined_state_is_drawn_from_a_stochastic_dynamics():
    model = _proprio_model(proprio_stochastic=True)
    cfg = model.config
    frames = torch.randint(0, 256, (2, 1, *cfg.frame_shape), dtype=torch.uint8)
    state = model.observe(model.init_state(2), frames, proprio=torch.randn(2, 1, S).numpy())
    action = torch.randn(2, cfg.action_dim)
    _, out, after = model.step(state, action, generator=torch.Generator().manual_seed(7))
    dyn = model.dit.proprio_dynamics
    expected = dyn.sample(state["proprio"], state["proprio_prev"], action,
                          generator=torch.Generator().manual_seed(7))
    torch.testing.assert_close(after["proprio"], expected)
    torch.testing.assert_close(out["state"], model.dit.denormalize_state(expected))
    _, _, other = model.step(state, action, generator=torch.Generator().manual_seed(8))
    assert not torch.allclose(other["proprio"], after["proprio"])
    # Replaying actions open loop, the prediction is taken instead of a draw.
    predicted = dataclasses.replace(model.sampler, draw_state=False)
    _, out, mean = model.step(state, action, generator=torch.Generator().manual_seed(7), settings=predicted)
    torch.testing.assert_close(mean["proprio"], dyn(state["proprio"], state["proprio_prev"], action))
    assert WorldModelConfig.from_dict(cfg.to_dict()).proprio_stochastic
    with pytest.raises(ValueError, match="proprio_stochastic"):
        WorldModelConfig.preset("tiny", state_dim=S, proprio_stochastic=True)


@torch.no_grad()
def test_only_the_noise_entries_are_drawn():
    dyn = randomize_(ProprioDynamics(S, 3, hidden=8, stochastic=True, noise_entries=(2, S)), scale=0.3)
    s, prev, a = torch.randn(3, S), torch.randn(3, S), torch.randn(3, 3)
    draw = dyn.sample(s, prev, a, generator=torch.Generator().manual_seed(0))
    mean = dyn(s, prev, a)
    torch.testing.assert_close(draw[:, :2], mean[:, :2], rtol=0, atol=0)
    assert (draw[:, 2:] - mean[:, 2:]).abs().min() > 0
    for bad in ((0, S + 1), (3, 3), (-1, 2)):
        with pytest.raises(ValueError, match="noise_entries"):
            ProprioDynamics(S, 3, hidden=8, stochastic=True, noise_entries=bad)
    with pytest.raises(ValueError, match="noise_entries"):
        ProprioDynamics(S, 3, hidden=8, noise_entries=(0, 2))  # nothing is drawn without a head
    cfg = WorldModelConfig.preset("tiny", state_dim=S, proprio_conditioning=True, proprio_stochastic=True,
                                  proprio_noise_entries=[2, S])
    assert cfg.proprio_noise_entries == (2, S)
    assert WorldModel(cfg).dit.proprio_dynamics.noise_entries == (2, S)
    with pytest.raises(ValueError, match="proprio_noise_entries"):
        WorldModelConfig.preset("tiny", state_dim=S, proprio_conditioning=True, proprio_noise_entries=(0, 2))
