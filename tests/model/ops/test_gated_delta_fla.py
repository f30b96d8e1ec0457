"""Tests of the flash-linear-attention adapter (kairos_gym.model.ops.gated_delta_fla).

On CPU the two fla entry points are replaced by recording functions that compute the
PyTorch reference, so the argument mapping (keywords, dtypes, kernel choice) is checked
without fla or a GPU. The ``gpu`` tests run the real kernels against the chunked reference.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from typing import Any

import pytest
import torch

from kairos_gym.model.ops import gated_delta_fla
from kairos_gym.model.ops.gated_delta import (
    fla_available,
    gated_delta_rule,
    gated_delta_rule_chunked,
)
from kairos_gym.model.ops.gated_delta_fla import RECURRENT_MAX_LEN, FlaKernels, gated_delta_rule_fla
from tests.model.ops.test_gated_delta import _inputs

KEYWORDS = {"q", "k", "v", "g", "beta", "scale", "initial_state", "output_final_state"}


@dataclass
class _Recorder:
    """Stands in for one fla entry point: records each call, returns the reference result."""

    name: str
    calls: list[dict[str, Any]] = field(default_factory=list)

    def __call__(self, *args: Any, **kwargs: Any) -> tuple[torch.Tensor, torch.Tensor]:
        if args:
            raise AssertionError(f"{self.name} got {len(args)} positional argument(s)")
        self.calls.append(kwargs)
        o, state = gated_delta_rule_chunked(
            kwargs["q"], kwargs["k"], kwargs["v"], kwargs["g"], kwargs["beta"],
            scale=kwargs["scale"], initial_state=kwargs["initial_state"],
        )
        # As fla: the chunked kernel returns q's dtype, the recurrent one v's; state float32.
        out_dtype = kwargs["q" if self.name == "chunk" else "v"].dtype
        return o.to(out_dtype), state


@pytest.fixture
def fake_fla(monkeypatch: pytest.MonkeyPatch) -> FlaKernels:
    kernels = FlaKernels(_Recorder("chunk"), _Recorder("fused_recurrent"))
    monkeypatch.setattr(gated_delta_fla, "_fla_kernels", lambda: kernels)
    return kernels


def _only_call(kernels: FlaKernels, name: str) -> dict[str, Any]:
    """The single call made, checking it went to kernel ``name`` and the other was idle."""
    other = "fused_recurrent" if name == "chunk" else "chunk"
    assert getattr(kernels, other).calls == [], f"{other} kernel ran, expected {name}"
    calls = getattr(kernels, name).calls
    assert len(calls) == 1, f"{name} kernel ran {len(calls)} times"
    assert set(calls[0]) == KEYWORDS
    assert calls[0]["output_final_state"] is True
    return calls[0]


def test_training_uses_the_chunk_kernel_with_half_qkv_and_float32_gate_and_state(fake_fla):
    # A short input would have gone to the recurrent kernel, which has no backward.
    q, k, v, g, beta, s0 = _inputs(2, 10, 3, 8, 16, requires_grad=True)
    o, state = gated_delta_rule_fla(q, k, v, g, beta, initial_state=s0)

    call = _only_call(fake_fla, "chunk")
    for name in ("q", "k", "v", "beta"):
        assert call[name].dtype == torch.bfloat16, name
    assert call["g"].dtype == torch.float32 and call["initial_state"].dtype == torch.float32
    assert call["scale"] == 8 ** -0.5
    assert o.dtype == torch.float32 and state.dtype == torch.float32
    o_ref, s_ref = gated_delta_rule_chunked(q, k, v, g, beta, initial_state=s0)
    torch.testing.assert_close(o, o_ref, atol=3e-2, rtol=3e-2)  # bf16 inputs
    torch.testing.assert_close(state, s_ref, atol=3e-2, rtol=3e-2)

    # Gradients reach every input through the dtype casts.
    grads = torch.autograd.grad(o.square().sum() + state.sum(), (q, k, v, g, beta, s0))
    for grad in grads:
        assert grad is not None and torch.isfinite(grad).all() and grad.abs().sum() > 0


@pytest.mark.parametrize(
    ("case", "length", "grad_inputs", "no_grad", "kernel"),
    [
        ("inference under no_grad", 10, True, True, "fused_recurrent"),
        ("no input requires grad", 10, False, False, "fused_recurrent"),
        ("longest recurrent input", RECURRENT_MAX_LEN, False, False, "fused_recurrent"),
        ("too long for the recurrent kernel", RECURRENT_MAX_LEN + 1, False, True, "chunk"),
        ("short, training", 1, True, False, "chunk"),
    ],
)
def test_the_recurrent_kernel_runs_only_without_grad_on_short_inputs(
    fake_fla, case, length, grad_inputs, no_grad, kernel
):
    q, k, v, g, beta, s0 = _inputs(1, length, 2, 8, 4, requires_grad=grad_inputs)
    with torch.set_grad_enabled(not no_grad):
        o, state = gated_delta_rule_fla(q, k, v, g, beta, scale=0.5, initial_state=s0)
    call = _only_call(fake_fla, kernel)
    assert call["scale"] == 0.5
    assert call["g"].dtype == torch.float32 and call["initial_state"].dtype == torch.float32
    if kernel == "fused_recurrent":
        # fla's 5th positional parameter here is gk: g and beta must arrive under their names.
        assert call["g"] is g and call["beta"] is beta
        assert call["q"].dtype == call["v"].dtype == torch.float32  # computed in float32 anyway
    assert o.dtype == v.dtype and state.dtype == torch.float32


def test_a_gradient_through_the_initial_state_alone_needs_the_chunk_kernel(fake_fla):
    q, k, v, g, beta, s0 = _inputs(1, 4, 2, 8, 4)
    s0.requires_grad_(True)
    gated_delta_rule_fla(q, k, v, g, beta, initial_state=s0)
    _only_call(fake_fla, "chunk")


def test_half_inputs_keep_their_dtype_and_no_initial_state_stays_none(fake_fla):
    q, k, v, g, beta, _ = _inputs(1, 80, 2, 8, 4)
    q, k, v, beta = (x.half() for x in (q, k, v, beta))
    o, state = gated_delta_rule_fla(q, k, v, g, beta)
    call = _only_call(fake_fla, "chunk")
    assert {call[name].dtype for name in ("q", "k", "v", "beta")} == {torch.float16}
    assert call["initial_state"] is None
    assert o.dtype == torch.float16 and state.dtype == torch.float32


def test_missing_fla_raises_with_the_install_hint_and_the_reason(monkeypatch):
    monkeypatch.setattr(
        gated_delta_fla, "_import_fla", lambda: "ModuleNotFoundError: No module named 'fla'"
    )
    assert not fla_available(torch.device("cuda"))
    q, k, v, g, beta, _ = _inputs(1, 4, 1, 4, 4)
    with pytest.raises(
        RuntimeError,
        match=r"needs flash-linear-attention \(pip install -e '\.\[gpu\]'\); importing it "
        r"failed with ModuleNotFoundError: No module named 'fla'",
    ):
        gated_delta_rule_fla(q, k, v, g, beta)


def test_the_dispatcher_keeps_cpu_tensors_on_the_pytorch_path(fake_fla):
    q, k, v, g, beta, s0 = _inputs(1, 20, 2, 8, 4)
    assert not fla_available(torch.device("cpu"))
    o, state = gated_delta_rule(q, k, v, g, beta, initial_state=s0)
    assert fake_fla.chunk.calls == [] and fake_fla.fused_recurrent.calls == []
    o_ref, s_ref = gated_delta_rule_chunked(q, k, v, g, beta, initial_state=s0)
    torch.testing.assert_close(o, o_ref)
    torch.testing.assert_close(state, s_ref)
    with pytest.raises(RuntimeError, match="'fla' backend runs on CUDA tensors, got device cpu"):
        gated_delta_rule(q, k, v, g, beta, backend="fla")


def test_our_keywords_are_named_parameters_of_the_installed_fla(fake_fla):
    real = gated_delta_fla._import_fla()
    if not isinstance(real, FlaKernels):
        pytest.skip(f"flash-linear-attention is not importable: {real}")
    # Record what the adapter passes to each kernel, then look each name up in fla's own
    # signature; a name caught by fla's **kwargs would be silently ignored, so it must be
    # an explicit parameter.
    for requires_grad, kernel in ((True, "chunk"), (False, "fused_recurrent")):
        q, k, v, g, beta, s0 = _inputs(1, 4, 1, 4, 4, requires_grad=requires_grad)
        gated_delta_rule_fla(q, k, v, g, beta, initial_state=s0)
        names = set(getattr(fake_fla, kernel).calls[-1])
        parameters = inspect.signature(getattr(real, kernel)).parameters
        named = {
            name for name, p in parameters.items()
            if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
        }
        assert names <= named, f"{kernel}: {sorted(names - named)} not parameters of fla's"


def _spy_on_fla(monkeypatch: pytest.MonkeyPatch) -> dict[str, int]:
    """Count the calls to each real fla kernel (which still run)."""
    real = gated_delta_fla._fla_kernels()
    counts = {"chunk": 0, "fused_recurrent": 0}

    def counting(name: str):
        def kernel(**kwargs: Any) -> tuple[torch.Tensor, torch.Tensor]:
            counts[name] += 1
            return getattr(real, name)(**kwargs)

        return kernel

    spies = FlaKernels(counting("chunk"), counting("fused_recurrent"))
    monkeypatch.setattr(gated_delta_fla, "_fla_kernels", lambda: spies)
    return counts


def _assert_rel_rms(got: torch.Tensor, want: torch.Tensor, tol: float, what: str) -> None:
    """Relative RMS error, the measure fla's own tests use for bf16 kernels."""
    err = (got.float() - want.float()).square().mean().sqrt()
    ref = want.float().square().mean().sqrt().clamp_min(1e-12)
    assert err / ref <= tol, f"{what}: relative RMS error {float(err / ref):.2e} > {tol:.0e}"


# Evaluated at collection; without CUDA, fla is never imported.
requires_fla = pytest.mark.skipif(
    not (torch.cuda.is_available() and fla_available(torch.device("cuda"))),
    reason="needs CUDA and flash-linear-attention",
)


def _bf16_rounded(*tensors: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """The values the chunk kernel sees, as float32 (differentiable to the originals)."""
    return tuple(x.bfloat16().float() for x in tensors)


@pytest.mark.gpu
@requires_fla
@pytest.mark.parametrize("length", [16, 63, 500, 1000])
def test_fla_forward_matches_the_reference(monkeypatch, length):
    counts = _spy_on_fla(monkeypatch)
    q, k, v, g, beta, s0 = _inputs(2, length, 4, 64, 128, device="cuda")
    o, s = gated_delta_rule(q, k, v, g, beta, initial_state=s0)
    assert o.dtype == torch.float32 and s.dtype == torch.float32
    if length <= RECURRENT_MAX_LEN:
        # No gradient and short: the recurrent kernel, which computes in float32.
        assert counts == {"chunk": 0, "fused_recurrent": 1}
        o_ref, s_ref = gated_delta_rule_chunked(q, k, v, g, beta, initial_state=s0)
        torch.testing.assert_close(o, o_ref, atol=2e-4, rtol=2e-4)
        torch.testing.assert_close(s, s_ref, atol=2e-4, rtol=2e-4)
    else:
        assert counts == {"chunk": 1, "fused_recurrent": 0}
        rq, rk, rv, rbeta = _bf16_rounded(q, k, v, beta)
        o_ref, s_ref = gated_delta_rule_chunked(rq, rk, rv, g, rbeta, initial_state=s0)
        _assert_rel_rms(o, o_ref, 1e-2, "output")
        _assert_rel_rms(s, s_ref, 1e-2, "final state")


@pytest.mark.gpu
@requires_fla
@pytest.mark.parametrize("length", [1, 16, 100])
def test_fla_training_gradients_match_the_reference(monkeypatch, length):
    counts = _spy_on_fla(monkeypatch)
    inputs = _inputs(2, length, 4, 64, 128, device="cuda", requires_grad=True)
    q, k, v, g, beta, s0 = inputs
    o, s = gated_delta_rule(q, k, v, g, beta, initial_state=s0)
    assert counts == {"chunk": 1, "fused_recurrent": 0}  # even when short
    gen = torch.Generator(device="cuda").manual_seed(1)
    do = torch.randn(o.shape, device="cuda", generator=gen)
    ds = torch.randn(s.shape, device="cuda", generator=gen)
    grads = torch.autograd.grad((o * do).sum() + (s * ds).sum(), inputs)

    rq, rk, rv, rbeta = _bf16_rounded(q, k, v, beta)
    o_ref, s_ref = gated_delta_rule_chunked(rq, rk, rv, g, rbeta, initial_state=s0)
    grads_ref = torch.autograd.grad((o_ref * do).sum() + (s_ref * ds).sum(), inputs)
    _assert_rel_rms(o, o_ref, 1e-2, "output")
    _assert_rel_rms(s, s_ref, 1e-2, "final state")
    for name, got, want in zip(("q", "k", "v", "g", "beta", "initial_state"), grads, grads_ref):
        _assert_rel_rms(got, want, 2e-2, f"d{name}")


@pytest.mark.gpu
@requires_fla
@pytest.mark.parametrize("length", [1, 16])
def test_fla_short_inference_uses_the_recurrent_kernel(monkeypatch, length):
    counts = _spy_on_fla(monkeypatch)
    # Inputs that require grad (a trained layer's activations) under no_grad, as when stepping.
    q, k, v, g, beta, s0 = _inputs(2, length, 4, 64, 128, device="cuda", requires_grad=True)
    with torch.no_grad():
        o, s = gated_delta_rule(q, k, v, g, beta, initial_state=s0)
        o_ref, s_ref = gated_delta_rule_chunked(q, k, v, g, beta, initial_state=s0)
    assert counts == {"chunk": 0, "fused_recurrent": 1}
    torch.testing.assert_close(o, o_ref, atol=2e-4, rtol=2e-4)
    torch.testing.assert_close(s, s_ref, atol=2e-4, rtol=2e-4)
