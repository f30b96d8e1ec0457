import pytest
import torch

from kairos_gym.model.ops.window_attention import (
    flex_available,
    flex_window_attention,
    frame_visible,
    parallel_mask,
    window_attention,
    window_attention_reference,
)


def _visible_offsets(kind, window, dilation, horizon=20):
    delta = torch.arange(-3, horizon)
    return delta[frame_visible(delta, kind, window, dilation)].tolist()


def test_window_rules_match_the_design():
    assert _visible_offsets("swa", 3, 4) == [0, 1, 2]
    assert _visible_offsets("dswa", 3, 4) == [0, 4, 8]
    assert _visible_offsets("full", 3, 4, horizon=6) == [0, 1, 2, 3, 4, 5]
    with pytest.raises(ValueError, match="no window rule for layer kind 'gated'"):
        frame_visible(torch.arange(3), "gated", 3, 4)


def test_parallel_mask_is_block_causal():
    mask = parallel_mask(5, 2, "swa", 2, 1)
    assert mask.shape == (10, 10)
    # Tokens of one frame see each other (bidirectional inside a frame) ...
    assert mask[0, 1] and mask[1, 0]
    # ... never the future, and only the previous frame in the past.
    assert not mask[2, 4] and mask[4, 2] and not mask[6, 2]


@pytest.mark.parametrize("kind", ["swa", "dswa", "full"])
def test_fused_attention_matches_the_reference(kind):
    gen = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(2, 3, 8 * 4, 16, generator=gen) for _ in range(3))
    mask = parallel_mask(8, 4, kind, 3, 2)
    torch.testing.assert_close(window_attention(q, k, v, mask), window_attention_reference(q, k, v, mask),
                               atol=1e-5, rtol=1e-4)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("kind", ["swa", "dswa"])
def test_flex_attention_matches_the_reference(kind):
    assert flex_available(torch.device("cuda"))
    gen = torch.Generator(device="cuda").manual_seed(0)
    q, k, v = (torch.randn(2, 4, 32 * 64, 64, generator=gen, device="cuda") for _ in range(3))
    mask = parallel_mask(32, 64, kind, 3, 4, device="cuda")
    out = flex_window_attention(q, k, v, 64, kind, 3, 4)
    torch.testing.assert_close(out, window_attention_reference(q, k, v, mask), atol=2e-3, rtol=2e-3)
