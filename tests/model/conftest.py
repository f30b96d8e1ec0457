"""Shared fixtures for the world-model tests: tiny random models with non-trivial weights."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from kairos_gym.model import KairosDiT, WorldModel, WorldModelConfig


def randomize_(module: torch.nn.Module, scale: float = 0.1, seed: int = 0) -> torch.nn.Module:
    """Perturb every parameter: fresh models start with zero gates, which would hide bugs."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(torch.randn(p.shape, generator=gen) * scale)
    return module


def tiny_dit(**overrides) -> KairosDiT:
    cfg = dataclasses.replace(WorldModelConfig.preset("tiny"), **overrides)
    torch.manual_seed(0)
    return randomize_(KairosDiT(cfg)).eval()


@pytest.fixture
def tiny_world_model() -> WorldModel:
    torch.manual_seed(0)
    return randomize_(WorldModel(WorldModelConfig.preset("tiny"))).eval()
