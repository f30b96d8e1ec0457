import pytest
import torch
import torch.nn.functional as F

from kairos_gym.model.ops.gated_delta import (
    gated_delta_rule,
    gated_delta_rule_chunked,
    gated_delta_rule_recurrent,
)


def _inputs(b, length, h, dk, dv, seed=0, device="cpu", requires_grad=False):
    gen = torch.Generator().manual_seed(seed)
    q = F.normalize(torch.randn(b, length, h, dk, generator=gen), dim=-1)
    k = F.normalize(torch.randn(b, length, h, dk, generator=gen), dim=-1)
    v = torch.randn(b, length, h, dv, generator=gen)
    g = -torch.rand(b, length, h, generator=gen) * 0.3
    beta = torch.rand(b, length, h, generator=gen)
    s0 = torch.randn(b, h, dk, dv, generator=gen) * 0.1
    out = [x.to(device).requires_grad_(requires_grad) for x in (q, k, v, g, beta, s0)]
    return out


@pytest.mark.parametrize("length", [1, 63, 100, 257])
@pytest.mark.parametrize("chunk", [16, 64])
def test_chunked_matches_recurrent_outputs_and_state(length, chunk):
    q, k, v, g, beta, s0 = _inputs(2, length, 3, 8, 16)
    o_ref, s_ref = gated_delta_rule_recurrent(q, k, v, g, beta, initial_state=s0)
    o, s = gated_delta_rule_chunked(q, k, v, g, beta, initial_state=s0, chunk_size=chunk)
    torch.testing.assert_close(o, o_ref, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(s, s_ref, atol=1e-5, rtol=1e-4)


def test_chunked_matches_recurrent_gradients():
    inputs = _inputs(1, 70, 2, 8, 8, requires_grad=True)
    o, s = gated_delta_rule_recurrent(*inputs[:5], initial_state=inputs[5])
    grads_ref = torch.autograd.grad((o.square().sum() + s.sum()), inputs)
    o, s = gated_delta_rule_chunked(*inputs[:5], initial_state=inputs[5], chunk_size=32)
    grads = torch.autograd.grad((o.square().sum() + s.sum()), inputs)
    for got, want in zip(grads, grads_ref):
        torch.testing.assert_close(got, want, atol=1e-4, rtol=1e-3)


def test_splitting_a_sequence_carries_the_state_exactly():
    q, k, v, g, beta, s0 = _inputs(2, 96, 2, 8, 16)
    o_full, s_full = gated_delta_rule(q, k, v, g, beta, initial_state=s0)
    o1, s1 = gated_delta_rule(q[:, :40], k[:, :40], v[:, :40], g[:, :40], beta[:, :40], initial_state=s0)
    o2, s2 = gated_delta_rule(q[:, 40:], k[:, 40:], v[:, 40:], g[:, 40:], beta[:, 40:], initial_state=s1)
    torch.testing.assert_close(torch.cat([o1, o2], 1), o_full, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(s2, s_full, atol=1e-5, rtol=1e-4)


def test_delta_rule_recalls_a_written_value():
    # With no decay and full write strength, writing v under key k makes S^T k == v.
    k = F.normalize(torch.randn(1, 1, 1, 8), dim=-1)
    v = torch.randn(1, 1, 1, 4)
    _, state = gated_delta_rule_recurrent(k, k, v, torch.zeros(1, 1, 1), torch.ones(1, 1, 1))
    torch.testing.assert_close(torch.einsum("bhkv,bhk->bhv", state, k[:, 0]), v[:, 0])


def test_unknown_backend_is_rejected():
    q, k, v, g, beta, _ = _inputs(1, 4, 1, 4, 4)
    with pytest.raises(ValueError, match="unknown gated delta backend 'magic'"):
        gated_delta_rule(q, k, v, g, beta, backend="magic")
