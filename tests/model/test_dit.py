"""The invariant: committing frames one at a time reproduces the parallel pass."""

import pytest
import torch

from kairos_gym.errors import ShapeError
from tests.model.conftest import tiny_dit

SETTINGS = [(2, 2), (3, 4), (1, 1), (4, 3), (3, 1)]


def _clip(dit, b=2, t=26, seed=0):
    gen = torch.Generator().manual_seed(seed)
    cfg = dit.cfg
    latents = torch.randn(b, t, *cfg.latent_shape, generator=gen)
    sigmas = torch.rand(b, t, generator=gen)
    actions = torch.randn(b, t, cfg.action_dim, generator=gen)
    return latents, sigmas, actions


@torch.no_grad()
@pytest.mark.parametrize("window, dilation", SETTINGS)
def test_streaming_commits_reproduce_the_parallel_pass(window, dilation):
    dit = tiny_dit(window=window, dilation=dilation)
    latents, sigmas, actions = _clip(dit, t=26)  # > (W-1)*d + 1 for every setting: well past the windows
    parallel = dit.velocity(latents, sigmas, actions)
    state = dit.init_state(2)
    for t in range(latents.shape[1]):
        peek, same_state = dit.velocity_step(state, latents[:, t], sigmas[:, t], actions[:, t], commit=False)
        assert same_state is state
        step, state = dit.velocity_step(state, latents[:, t], sigmas[:, t], actions[:, t], commit=True)
        torch.testing.assert_close(step, parallel[:, t], atol=1e-4, rtol=0)
        torch.testing.assert_close(peek, parallel[:, t], atol=1e-4, rtol=0)
    assert state.frame_index.tolist() == [26, 26]


@torch.no_grad()
def test_invariant_holds_for_the_full_attention_baseline_and_with_cross_attention():
    dit = tiny_dit(layer_pattern=("full", "gated"), text_dim=8)
    latents, sigmas, actions = _clip(dit, t=24)
    context = torch.randn(2, 5, 8)
    parallel = dit.velocity(latents, sigmas, actions, context=context)
    state = dit.init_state(2, context=context)
    for t in range(24):
        step, state = dit.velocity_step(state, latents[:, t], sigmas[:, t], actions[:, t], commit=True)
        torch.testing.assert_close(step, parallel[:, t], atol=1e-4, rtol=0)
    assert state["blocks.0.k"].shape[1] == 24  # the baseline's cache grows with the episode


@torch.no_grad()
def test_the_state_is_bounded_by_the_windows():
    dit = tiny_dit(window=3, dilation=4)
    latents, sigmas, actions = _clip(dit, t=30)
    state = dit.init_state(2)
    sizes = []
    for t in range(30):
        _, state = dit.velocity_step(state, latents[:, t], sigmas[:, t], actions[:, t], commit=True)
        sizes.append(state.nbytes())
    assert len(set(sizes)) == 1
    assert state["blocks.0.k"].shape[1] == 2 and state["blocks.2.k"].shape[1] == 8


@torch.no_grad()
def test_the_first_frame_ignores_its_action():
    dit = tiny_dit()
    latents, sigmas, actions = _clip(dit, t=3)
    state = dit.init_state(2)
    with_action, _ = dit.velocity_step(state, latents[:, 0], sigmas[:, 0], actions[:, 0])
    without, _ = dit.velocity_step(state, latents[:, 0], sigmas[:, 0], None)
    torch.testing.assert_close(with_action, without)
    # ... and later frames do depend on it.
    _, state = dit.velocity_step(state, latents[:, 0], sigmas[:, 0], None, commit=True)
    a, _ = dit.velocity_step(state, latents[:, 1], sigmas[:, 1], actions[:, 1])
    b, _ = dit.velocity_step(state, latents[:, 1], sigmas[:, 1], None)
    assert (a - b).abs().max() > 1e-3


@torch.no_grad()
def test_rows_at_different_times_match_their_own_parallel_pass():
    dit = tiny_dit(window=2, dilation=3)
    latents, sigmas, actions = _clip(dit, b=2, t=12)
    state = dit.init_state(2)
    for t in range(5):
        _, state = dit.velocity_step(state, latents[:, t], sigmas[:, t], actions[:, t], commit=True)
    # Row 1 starts over (an env reset); row 0 goes on.
    fresh = dit.init_state(1)
    state = state.put_rows([1], fresh)
    parallel = dit.velocity(latents, sigmas, actions)
    for t in range(7):
        lat = torch.stack([latents[0, 5 + t], latents[1, t]])
        sig = torch.stack([sigmas[0, 5 + t], sigmas[1, t]])
        act = torch.stack([actions[0, 5 + t], actions[1, t]])
        step, state = dit.velocity_step(state, lat, sig, act, commit=True)
        torch.testing.assert_close(step[0], parallel[0, 5 + t], atol=1e-4, rtol=0)
        torch.testing.assert_close(step[1], parallel[1, t], atol=1e-4, rtol=0)


def test_parallel_pass_trains_every_frame():
    dit = tiny_dit()
    latents, sigmas, actions = _clip(dit, t=6)
    dit.velocity(latents, sigmas, actions).square().mean().backward()
    assert all(p.grad is not None for name, p in dit.named_parameters() if not name.startswith("outcome_head"))


@pytest.mark.parametrize("bad, message", [
    ("latent_shape", r"latents must have shape \[B, T, 4, 4, 4\], got \(2, 3, 4, 4, 5\)"),
    ("sigma_shape", r"sigmas must have shape \(2, 3\) \[B, T\], got \(2,\)"),
    ("action_shape", r"actions must have shape \(2, 3, 7\), got \(2, 3, 6\)"),
    ("nan", "latents contains NaN or inf"),
    ("nan_action", "actions contains NaN or inf"),
])
def test_bad_clip_inputs_raise_clear_errors(bad, message):
    dit = tiny_dit()
    latents, sigmas, actions = _clip(dit, t=3)
    if bad == "latent_shape":
        latents = torch.randn(2, 3, 4, 4, 5)
    elif bad == "sigma_shape":
        sigmas = sigmas[:, 0]
    elif bad == "action_shape":
        actions = actions[..., :6]
    elif bad == "nan":
        latents[0, 1, 0, 0, 0] = float("nan")
    else:
        actions[1, 2, 3] = float("inf")
    with pytest.raises(ShapeError, match=message):
        dit.velocity(latents, sigmas, actions)


def test_bad_step_inputs_raise_and_leave_the_state_alone():
    dit = tiny_dit()
    state = dit.init_state(2)
    before = state.clone()
    with pytest.raises(ShapeError, match=r"latent must have shape \(2, 4, 4, 4\) \[B, C, h, w\], got \(3, 4, 4, 4\)"):
        dit.velocity_step(state, torch.randn(3, 4, 4, 4), 0.5, commit=True)
    with pytest.raises(ShapeError, match=r"action must have shape \(2, 7\), got \(2, 8\)"):
        dit.velocity_step(state, torch.randn(2, 4, 4, 4), 0.5, torch.zeros(2, 8), commit=True)
    with pytest.raises(ShapeError, match="latent contains NaN or inf"):
        dit.velocity_step(state, torch.full((2, 4, 4, 4), float("nan")), 0.5, commit=True)
    for name, tensor in state.items():
        torch.testing.assert_close(tensor, before[name])


def test_patch_embedding_matmul_equals_the_released_conv3d():
    dit = tiny_dit(patch_size=2)
    latents = torch.randn(2, 3, *dit.cfg.latent_shape)
    conv = dit.patch_embedding(latents.transpose(1, 2)).flatten(3).permute(0, 2, 3, 1)
    torch.testing.assert_close(dit._patchify(latents), conv, atol=1e-5, rtol=1e-5)
