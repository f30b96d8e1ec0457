import numpy as np
import pytest
import torch

from kairos_gym.errors import ShapeError
from kairos_gym.model import WorldModel, WorldModelConfig
from tests.model.conftest import randomize_


def _frames(b, t, seed=0):
    return torch.randint(0, 256, (b, t, 16, 16, 3), dtype=torch.uint8, generator=torch.Generator().manual_seed(seed))


def test_observe_step_and_rollout_shapes(tiny_world_model):
    wm = tiny_world_model
    state = wm.observe(wm.init_state(2), _frames(2, 3))
    assert state.frame_index.tolist() == [3, 3]
    frames, out, state = wm.step(state, np.zeros((2, 7), dtype=np.float32))
    assert frames.shape == (2, 16, 16, 3) and frames.dtype == torch.uint8
    assert set(out) == {"reward", "success", "done"} and out["success"].shape == (2,)
    assert ((out["success"] >= 0) & (out["success"] <= 1)).all()
    frames, out, state = wm.rollout(state, torch.zeros(2, 4, 7))
    assert frames.shape == (2, 4, 16, 16, 3) and out["reward"].shape == (2, 4)
    assert state.frame_index.tolist() == [8, 8]


def test_same_seed_gives_the_same_rollout(tiny_world_model):
    wm = tiny_world_model
    actions = torch.randn(2, 5, 7, generator=torch.Generator().manual_seed(1))

    def run(seed):
        gen = torch.Generator().manual_seed(seed)
        state = wm.observe(wm.init_state(2), _frames(2, 2), generator=gen)
        return wm.rollout(state, actions, generator=gen)

    (f1, o1, _), (f2, o2, _), (f3, _, _) = run(0), run(0), run(1)
    assert torch.equal(f1, f2) and torch.equal(o1["reward"], o2["reward"])
    assert not torch.equal(f1, f3)


def test_forked_states_evolve_independently(tiny_world_model):
    wm = tiny_world_model
    state = wm.observe(wm.init_state(1), _frames(1, 2))
    forks = state.repeat(3)
    actions = torch.stack([torch.full((4, 7), v) for v in (-1.0, 0.0, 1.0)])
    frames, _, after = wm.rollout(forks, actions, generator=torch.Generator().manual_seed(0))
    # The parent is untouched and the forks went their own ways.
    assert state.frame_index.tolist() == [2] and after.frame_index.tolist() == [6, 6, 6]
    assert not torch.equal(frames[0], frames[2])
    # Changing what one fork does changes nothing for the others (same noise draws).
    other = actions.clone()
    other[1] = 0.5
    frames2, _, after2 = wm.rollout(forks, other, generator=torch.Generator().manual_seed(0))
    assert torch.equal(frames2[0], frames[0]) and torch.equal(frames2[2], frames[2])
    assert not torch.equal(frames2[1], frames[1])
    torch.testing.assert_close(after2.select([0, 2])["blocks.3.state"], after.select([0, 2])["blocks.3.state"])


def test_actions_are_validated_and_the_state_is_unchanged(tiny_world_model):
    wm = tiny_world_model
    state = wm.observe(wm.init_state(2), _frames(2, 1))
    with pytest.raises(ShapeError, match=r"actions must have shape \(2, 7\), got \(2, 6\)"):
        wm.step(state, torch.zeros(2, 6))
    with pytest.raises(ShapeError, match="actions contain NaN or inf"):
        wm.step(state, torch.full((2, 7), float("nan")))
    with pytest.raises(ShapeError, match=r"frames must be uint8 \[B, T, 16, 16, 3\], got \(2, 1, 8, 8, 3\)"):
        wm.observe(state, torch.zeros(2, 1, 8, 8, 3, dtype=torch.uint8))
    with pytest.raises(ShapeError, match="frames must be uint8, got torch.float32"):
        wm.observe(state, torch.zeros(2, 1, 16, 16, 3))
    assert state.frame_index.tolist() == [1, 1]


def test_sampler_fields_can_change_but_shapes_cannot(tiny_world_model):
    wm = tiny_world_model.with_config(sample_steps=1)
    assert wm.sampler.steps == 1
    with pytest.raises(ValueError, match="only sampler fields can change"):
        wm.with_config(dim=64)


def test_state_head_predicts_proprioception_in_env_units(tmp_path):
    torch.manual_seed(0)
    model = randomize_(WorldModel(WorldModelConfig.preset("tiny", state_dim=3))).eval()
    model.dit.state_mean.copy_(torch.tensor([10.0, -5.0, 0.0]))
    model.dit.state_std.copy_(torch.tensor([2.0, 1.0, 0.5]))
    state = model.observe(model.init_state(2), torch.zeros(2, 1, 16, 16, 3, dtype=torch.uint8))
    _, out, _ = model.step(state, torch.zeros(2, 7), generator=torch.Generator().manual_seed(0))
    assert out["state"].shape == (2, 3)
    raw = model.dit.outcomes(torch.zeros(1, model.config.dim))["state"]
    assert torch.allclose(model.dit.denormalize_state(raw), raw * model.dit.state_std + model.dit.state_mean)
    assert torch.allclose(model.dit.normalize_state(model.dit.denormalize_state(raw)), raw, atol=1e-6)
    # The normalisation travels with the checkpoint.
    loaded = WorldModel.from_pretrained(model.save_pretrained(tmp_path / "m"))
    assert torch.equal(loaded.dit.state_mean, model.dit.state_mean)
    assert loaded.config.state_dim == 3


def test_no_state_head_by_default(tiny_world_model):
    state = tiny_world_model.observe(tiny_world_model.init_state(1), torch.zeros(1, 1, 16, 16, 3, dtype=torch.uint8))
    _, out, _ = tiny_world_model.step(state, torch.zeros(1, 7))
    assert set(out) == {"reward", "success", "done"}


def test_a_rollout_of_no_steps_is_refused():
    model = WorldModel(WorldModelConfig.preset("tiny")).eval()
    state = model.observe(model.init_state(1), torch.zeros(1, 1, 16, 16, 3, dtype=torch.uint8))
    with pytest.raises(ShapeError, match=r"\[B, K >= 1, A\], got \(1, 0, 7\)"):
        model.rollout(state, torch.zeros(1, 0, 7))
