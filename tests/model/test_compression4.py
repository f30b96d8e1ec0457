"""Temporal compression 4 (the Wan VAE at tiny size): four actions per latent frame, the
streaming invariant, and the video decoder's memory carried in the state."""

from __future__ import annotations

import pytest
import torch

from kairos_gym.errors import ShapeError
from kairos_gym.model import WorldModel, WorldModelConfig
from kairos_gym.model.world_model import DECODER_PREFIX
from tests.model.conftest import randomize_

A = 3


@pytest.fixture(scope="module")
def wm() -> WorldModel:
    torch.manual_seed(0)
    cfg = WorldModelConfig.preset("tiny-wan", action_dim=A)
    return randomize_(WorldModel(cfg), seed=0).eval()


def clip(b: int, t: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (b, t, 16, 16, 3), generator=g, dtype=torch.uint8)


def test_streaming_equals_parallel_with_four_actions_per_latent(wm):
    """Committing latent frames one at a time reproduces the parallel pass (the invariant)."""
    g = torch.Generator().manual_seed(1)
    b, t = 2, 5
    latents = torch.randn(b, t, *wm.config.latent_shape, generator=g)
    sigmas = torch.rand(b, t, generator=g)
    actions = torch.randn(b, t, 4 * A, generator=g)
    parallel = wm.velocity(latents, sigmas, actions)
    state = wm.init_state(b)
    for i in range(t):
        v, state = wm.velocity_step(state, latents[:, i], sigmas[:, i], actions[:, i], commit=True)
        torch.testing.assert_close(v, parallel[:, i], atol=1e-4, rtol=1e-4)


def test_observe_groups_four_actions_per_latent(wm):
    """observe() of a 1 + 4k clip commits latent j with the actions that led into its frames:
    the same memory as committing the encoded latents by hand with grouped actions."""
    frames = clip(2, 9)
    actions = torch.randn(2, 9, A, generator=torch.Generator().manual_seed(2))
    wm.with_config(context_sigma=0.0)  # commits without context noise, to compare exactly
    try:
        state = wm.observe(wm.init_state(2), frames, actions)
    finally:
        wm.with_config(context_sigma=0.05)
    latents = wm.codec.encode(frames)
    grouped = actions[:, 1:].reshape(2, 2, 4 * A)
    by_hand = wm.init_state(2)
    _, by_hand = wm.velocity_step(by_hand, latents[:, 0], 0.0, None, commit=True)
    for j in (1, 2):
        _, by_hand = wm.velocity_step(by_hand, latents[:, j], 0.0, grouped[:, j - 1], commit=True)
    for key in by_hand:
        if not key.startswith(DECODER_PREFIX):
            torch.testing.assert_close(state[key], by_hand[key])
    assert state[DECODER_PREFIX + "t"].tolist() == [3, 3]


def test_step_frames_equal_decoding_the_whole_clip(wm):
    """Frames of step() (decoder memory packed in the state, rows selected) equal the video
    decoder run over the context and imagined latents as one clip."""
    frames = clip(2, 5, seed=3)
    state = wm.observe(wm.init_state(2), frames, generator=torch.Generator().manual_seed(0))
    gen = torch.Generator().manual_seed(4)
    acts = torch.rand(2, 8, A, generator=gen) * 2 - 1
    l1, _, s = wm.step_latent(state, acts[:, :4], generator=torch.Generator().manual_seed(5))
    l2, _, s = wm.step_latent(s, acts[:, 4:], generator=torch.Generator().manual_seed(6))
    f1, d = wm.decode_step(s, l1)
    # Row selection keeps each row's decoder memory with it.
    f2_row1, _ = wm.decode_step(d.select([1]), l2[1:])
    f2, _ = wm.decode_step(d, l2)
    whole = wm.codec.decode(torch.cat([wm.codec.encode(frames), l1[:, None], l2[:, None]], 1))
    # The same decoder math, but a streamed step and one whole-clip pass sum in different
    # orders, so an odd pixel may round to the neighbouring grey level (seen: 4 of 12,288).
    diff = (torch.cat([f1, f2], 1).int() - whole[:, 5:].int()).abs()
    assert diff.max() <= 1 and (diff > 0).float().mean() < 0.01
    # One row alone rounds differently from a batch of two: within one grey level.
    assert (f2_row1.int() - f2[1:].int()).abs().max() <= 1
    assert f1.shape == (2, 4, 16, 16, 3)


def test_step_and_rollout_agree(wm):
    frames = clip(1, 1, seed=7)
    state = wm.observe(wm.init_state(1), frames, generator=torch.Generator().manual_seed(0))
    acts = torch.rand(1, 8, A, generator=torch.Generator().manual_seed(8)) * 2 - 1
    g = torch.Generator().manual_seed(9)
    f_roll, out, end = wm.rollout(state, acts, generator=g)
    g = torch.Generator().manual_seed(9)
    f_a, _, s = wm.step(state, acts[:, :4], generator=g)
    f_b, _, s = wm.step(s, acts[:, 4:], generator=g)
    torch.testing.assert_close(f_roll, torch.cat([f_a, f_b], 1), atol=0, rtol=0)
    assert f_roll.shape == (1, 8, 16, 16, 3)
    assert out["reward"].shape == (1, 2)  # one outcome per latent step
    assert end.frame_index.tolist() == [3]


def test_bad_input_is_refused(wm):
    state = wm.init_state(1)
    with pytest.raises(ShapeError, match="1 \\+ 4k"):
        wm.observe(state, clip(1, 4))
    with pytest.raises(ShapeError, match=r"actions must have shape \(1, 5, 3\)"):
        wm.observe(state, clip(1, 5), torch.zeros(1, 4, A))
    observed = wm.observe(state, clip(1, 1))
    with pytest.raises(ShapeError, match="fresh state"):
        wm.observe(observed, clip(1, 5))
    with pytest.raises(ShapeError, match=r"actions must have shape \(1, 4, 3\)"):
        wm.step(observed, torch.zeros(1, A))
    with pytest.raises(ShapeError, match="multiple of temporal_compression 4"):
        wm.rollout(observed, torch.zeros(1, 6, A))
    latent, _, _ = wm.step_latent(observed, torch.zeros(1, 4, A))
    with pytest.raises(ValueError, match="decode_step"):
        wm.decode(latent)
    with pytest.raises(ValueError, match="in order"):
        wm.decode_step(observed, latent)  # nothing committed beyond what was decoded


def test_codec_that_does_not_fit_is_refused_before_the_denoiser():
    from kairos_gym.model.codec import ConvCodec

    wan = WorldModelConfig.preset("tiny-wan")
    conv = ConvCodec(
        WorldModelConfig.preset(
            "tiny", latent_channels=16, spatial_compression=8, codec_channels=(8, 8, 8)
        )
    )
    with pytest.raises(ValueError, match="temporal compression 1 != config 4"):
        WorldModel(wan, codec=conv)


def test_save_and_load_keeps_frames(wm, tmp_path):
    wm.save_pretrained(tmp_path / "m")
    loaded = WorldModel.from_pretrained(tmp_path / "m")
    frames = clip(1, 5, seed=11)
    acts = torch.zeros(1, 4, A)
    outs = []
    for model in (wm, loaded):
        s = model.observe(model.init_state(1), frames, generator=torch.Generator().manual_seed(0))
        outs.append(model.step(s, acts, generator=torch.Generator().manual_seed(1))[0])
    torch.testing.assert_close(outs[0], outs[1], atol=0, rtol=0)
    meta = WorldModel.build(wm.config, device="meta")
    assert meta.dit.patch_embedding.weight.device.type == "meta"
