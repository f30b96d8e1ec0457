"""FSDP (and DDP, activation checkpointing, bf16) over two gloo processes equal one process."""

import os

import pytest
import torch
import torch.multiprocessing as mp
import torch.nn.functional as F
from torch import nn

from kairos_gym.model.config import WorldModelConfig
from kairos_gym.model.dit import KairosDiT
from kairos_gym.train.config import ParallelConfig, TrainConfig
from kairos_gym.train.distributed import (
    Autocast,
    Distributed,
    clip_grad_norm,
    full_state_dict,
    wrap_for_training,
    wrap_with_config,
)
from tests.train.conftest import gloo_group

STEPS = 3
BATCH = 4
VARIANTS = {
    "fsdp": {"strategy": "fsdp"},
    "fsdp_checkpointing": {"strategy": "fsdp", "activation_checkpointing": True},
    "fsdp_bf16": {"strategy": "fsdp", "precision": "bf16"},
    "ddp_checkpointing": {"strategy": "ddp", "activation_checkpointing": True},
}


class VelocityLoss(nn.Module):
    """Mean squared error of the denoiser's velocity against a target, plus a reward term so
    that every parameter gets a gradient (as in the trainer's objective)."""

    def __init__(self, dit: KairosDiT) -> None:
        super().__init__()
        self.dit = dit

    def forward(self, latents, sigmas, actions, target):
        v, features = self.dit.forward_parallel(latents, sigmas, actions)
        reward = self.dit.outcomes(features)["reward"]
        return F.mse_loss(v.float(), target) + 0.1 * reward.pow(2).mean()


def _config():
    return WorldModelConfig.preset("tiny", num_layers=4)


def _dit():
    # Random weights everywhere (not the zero-initialised gates of a fresh model), so every
    # parameter has a gradient well above rounding noise from the first step.
    torch.manual_seed(0)
    dit = KairosDiT(_config())
    with torch.no_grad():
        for p in dit.parameters():
            p.normal_(0.0, 0.1)
    return dit


def _batch(step):
    cfg = _config()
    g = torch.Generator().manual_seed(100 + step)
    latents = torch.randn(BATCH, 3, *cfg.latent_shape, generator=g)
    sigmas = torch.rand(BATCH, 3, generator=g)
    actions = torch.randn(BATCH, 3, cfg.action_dim_per_latent, generator=g)
    target = torch.randn(BATCH, 3, *cfg.latent_shape, generator=g)
    return latents, sigmas, actions, target


def _train(d, strategy="none", **options):
    """A few AdamW steps; each process takes rows ``rank::world`` of the global batch."""
    loss_module = VelocityLoss(_dit())
    model = (
        loss_module
        if strategy == "none"
        else wrap_for_training(loss_module, d, strategy, **options)
    )
    # SGD: the update is linear in the gradient, so equal gradients give equal weights (Adam's
    # normalisation would magnify rounding differences of near-zero gradients).
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    for step in range(STEPS):
        rows = [x[d.rank :: d.world_size] for x in _batch(step)]
        loss = model(*rows)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        clip_grad_norm(model.parameters(), 0.5)  # bites: the gradient norm is larger
        optimizer.step()
    return full_state_dict(loss_module)


def _worker(rank, world, out_dir):
    with gloo_group(rank, world, os.path.join(out_dir, "rendezvous")):
        d = Distributed(rank=rank, world_size=world)
        for name, options in VARIANTS.items():
            state = _train(d, **options)
            if rank == 0:
                torch.save(state, os.path.join(out_dir, f"{name}.pt"))


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    out = tmp_path_factory.mktemp("fsdp")
    mp.spawn(_worker, args=(2, str(out)), nprocs=2, join=True)
    return {name: torch.load(out / f"{name}.pt") for name in VARIANTS}


@pytest.fixture(scope="module")
def one_process():
    return _train(Distributed())


def _assert_states_close(got, expected, atol):
    assert got.keys() == expected.keys()
    for name, value in expected.items():
        err = (got[name].float() - value.float()).abs().amax().item() if value.numel() else 0.0
        assert err <= atol, f"{name}: max difference {err:.3g} > {atol}"


@pytest.mark.parametrize("name", ["fsdp", "fsdp_checkpointing", "ddp_checkpointing"])
def test_two_processes_train_the_same_weights_as_one(results, one_process, name):
    _assert_states_close(results[name], one_process, atol=1e-5)


def test_training_moved_the_weights(one_process):
    initial = _dit().state_dict()
    moved = max(
        (one_process[f"dit.{k}"] - v).abs().amax().item() for k, v in initial.items() if v.numel()
    )
    assert moved > 1e-3


def test_bf16_compute_stays_near_float32(results, one_process):
    # bf16 matmuls over float32 master weights: the same run to bf16 precision.
    _assert_states_close(results["fsdp_bf16"], one_process, atol=2e-2)
    assert all(
        v.dtype == torch.float32 for v in results["fsdp_bf16"].values() if v.is_floating_point()
    )


def test_activation_checkpointing_gives_the_same_gradients():
    dit = _dit()
    latents, sigmas, actions, target = _batch(0)
    grads = []
    for flag in (False, True):
        dit.gradient_checkpointing = flag
        dit.zero_grad()
        VelocityLoss(dit)(latents, sigmas, actions, target).backward()
        grads.append({k: p.grad.clone() for k, p in dit.named_parameters() if p.grad is not None})
    assert grads[0].keys() == grads[1].keys()
    for k in grads[0]:
        torch.testing.assert_close(grads[1][k], grads[0][k], msg=k)


def test_bad_options_are_refused():
    module = VelocityLoss(KairosDiT(_config()))
    with pytest.raises(ValueError, match=r"strategy must be one of \('ddp', 'fsdp'\), got 'zero3'"):
        wrap_for_training(module, Distributed(), "zero3")
    with pytest.raises(ValueError, match=r"precision must be one of \('fp32', 'bf16'\), got 'fp8'"):
        wrap_for_training(module, Distributed(), precision="fp8")


def test_the_training_config_selects_the_strategy():
    raw = {"data": {"paths": ["episodes.hdf5"]}}
    parallel = {"strategy": "fsdp", "activation_checkpointing": True, "precision": "bf16"}
    cfg = TrainConfig.from_dict({**raw, "parallel": parallel})
    assert cfg.parallel == ParallelConfig("fsdp", True, "bf16")
    assert cfg.to_dict()["parallel"] == parallel
    assert "parallel" not in TrainConfig.from_dict(raw).to_dict()  # earlier runs still resume
    with pytest.raises(ValueError, match=r"\[parallel\]: unknown keys \['shards'\]"):
        TrainConfig.from_dict({**raw, "parallel": {"shards": 2}})
    with pytest.raises(ValueError, match="activation_checkpointing must be true or false, got 1"):
        ParallelConfig(activation_checkpointing=1)
    module = VelocityLoss(_dit())
    wrapped = wrap_with_config(module, Distributed(), cfg.parallel)  # alone: autocast, no sharding
    assert isinstance(wrapped, Autocast) and module.dit.gradient_checkpointing
    latents, sigmas, actions, target = _batch(0)
    assert torch.isfinite(wrapped(latents, sigmas, actions, target))
