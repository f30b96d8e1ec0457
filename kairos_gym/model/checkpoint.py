"""Checkpoint directories: ``config.json`` + safetensors, loaded strictly; released DiT weights.

A checkpoint directory holds ``config.json`` (``{"format": 1, "model": {...}, ...}`` plus
whatever the caller adds, e.g. the env spec), ``model.safetensors`` (the denoiser) and
``codec.safetensors``. Nothing is ever unpickled. Loading is strict: every missing,
unexpected or mis-shaped tensor is named in one :class:`~kairos_gym.errors.CheckpointError`.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from kairos_gym.errors import CheckpointError

CONFIG_NAME = "config.json"
MODEL_NAME = "model.safetensors"
CODEC_NAME = "codec.safetensors"
FORMAT_VERSION = 1

# Parameters the released (action-free) Kairos DiT does not have; they keep their fresh init.
NEW_IN_KAIROS_GYM = ("action_embedding.", "no_action_embedding", "outcome_head.", "state_mean", "state_std")


def _publish(tmp: str, path: Path) -> None:
    # mkstemp creates 0600 files; checkpoints are shared artifacts, so use the usual umask mode.
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)
    os.replace(tmp, path)


def write_json_atomic(path: Path, data: Mapping[str, Any]) -> None:
    """Write JSON through a temporary file and ``os.replace`` so readers never see half a file."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "w") as f:
        json.dump(data, f, indent=2)
    _publish(tmp, path)


def save_tensors_atomic(tensors: Mapping[str, torch.Tensor], path: Path, metadata: dict[str, str] | None = None) -> None:
    """Save a safetensors file through a temporary file and ``os.replace``."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    os.close(fd)
    save_file({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, tmp, metadata=metadata)
    _publish(tmp, path)


def read_config(directory: str | os.PathLike) -> dict[str, Any]:
    """The parsed ``config.json`` of a checkpoint directory.

    Raises:
        CheckpointError: missing directory or file, or invalid JSON.
    """
    path = Path(directory) / CONFIG_NAME
    if not path.is_file():
        raise CheckpointError(f"no {CONFIG_NAME} in checkpoint directory {str(directory)!r}")
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"{path} is not valid JSON: {exc}") from None
    if not isinstance(data, dict) or "model" not in data:
        raise CheckpointError(f"{path} has no 'model' section")
    return data


def load_tensors(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Read a safetensors file, turning every failure into a :class:`CheckpointError` naming it."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"missing checkpoint file {str(path)!r}")
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise CheckpointError(f"{path} is not a readable safetensors file (corrupt or truncated?): {exc}") from None


def load_state_strict(
    module: nn.Module, tensors: Mapping[str, torch.Tensor], source: str,
    allow_missing: tuple[str, ...] = (),
) -> list[str]:
    """Copy ``tensors`` into ``module``, failing on any mismatch.

    Args:
        module: the receiving module.
        tensors: name -> tensor.
        source: a name for messages (the file).
        allow_missing: name prefixes that may be absent (they keep their values).

    Returns:
        The names that were allowed to be missing and were.

    Raises:
        CheckpointError: listing missing, unexpected and mis-shaped tensors.
    """
    own = module.state_dict()
    missing = sorted(k for k in own if k not in tensors)
    tolerated = [k for k in missing if k.startswith(allow_missing)]
    missing = [k for k in missing if k not in tolerated]
    unexpected = sorted(k for k in tensors if k not in own)
    misshaped = sorted(
        f"{k}: checkpoint {tuple(tensors[k].shape)} vs model {tuple(own[k].shape)}"
        for k in tensors if k in own and tuple(tensors[k].shape) != tuple(own[k].shape))
    problems = []
    if missing:
        problems.append(f"missing keys ({len(missing)}): {_clip(missing)}")
    if unexpected:
        problems.append(f"unexpected keys ({len(unexpected)}): {_clip(unexpected)}")
    if misshaped:
        problems.append(f"mis-shaped tensors ({len(misshaped)}): {_clip(misshaped)}")
    if problems:
        raise CheckpointError(f"{source} does not match the model: " + "; ".join(problems))
    for k, v in tensors.items():
        if not torch.isfinite(v).all() and v.is_floating_point():
            raise CheckpointError(f"{source}: tensor {k} contains NaN or inf")
    module.load_state_dict(dict(tensors), strict=False)
    return tolerated


def _clip(names: list[str], limit: int = 12) -> str:
    shown = ", ".join(names[:limit])
    return shown + (f", ... (+{len(names) - limit} more)" if len(names) > limit else "")


def map_released_dit_keys(tensors: Mapping[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], list[str]]:
    """Rename released Kairos DiT tensors to this package's names.

    The released video DiT already uses this package's names (Wan layout); the
    world-action checkpoints prefix them with ``video_dit.`` and carry a separate
    ``action_dit.`` expert, which is dropped (video tokens never read it).

    Returns:
        ``(renamed tensors, dropped names)``.
    """
    renamed: dict[str, torch.Tensor] = {}
    dropped: list[str] = []
    for name, value in tensors.items():
        if name.startswith("action_dit."):
            dropped.append(name)
            continue
        renamed[name.removeprefix("video_dit.")] = value
    return renamed, dropped
